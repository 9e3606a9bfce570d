"""curl 7.88's -v, --trace and --trace-ascii layouts (packetlab.cli.curl_trace) over
made-up events, the bytes curl 7.88.1 printed for the same events (taken from its
--trace/--trace-ascii/-v of a POST to a loopback server), and the options' parsing."""

from __future__ import annotations

import io

import pytest

from packetlab.cli.curl_trace import ASCII, BIN, PLAIN, CurlTrace, chosen, dump
from packetlab.cli.run import RunError
from packetlab.cli.run_command import parse_args
from packetlab.cli.run_http import COMMAND
from packetlab.measure.certname import host_match
from packetlab.measure.http_trace import (
    DATA_IN,
    DATA_OUT,
    HEADER_IN,
    HEADER_OUT,
    SSL_DATA_OUT,
    TEXT,
    asn1_time,
    header_in,
    lines,
    sent_out,
)

REQUEST = (b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:33951\r\nUser-Agent: curl/7.88.1\r\n"
           b"Accept: */*\r\nContent-Length: 7\r\nContent-Type: application/x-www-form-"
           b"urlencoded\r\n\r\na=1&b=2")  # fmt: skip
RESPONSE = b"HTTP/1.1 200 OK\r\nServer: test/1\r\nContent-Length: 97\r\n\r\n"


def events(trace: CurlTrace) -> None:
    trace(TEXT, b"  Trying 127.0.0.1:33951...\n")
    sent_out(trace, REQUEST)
    header_in(trace, RESPONSE)
    trace(DATA_IN, b'{"method": "POST"}')
    trace(DATA_IN, b"more")
    trace(TEXT, b"Connection #0 to host 127.0.0.1 left intact\n")


def test_verbose_lines_as_curl() -> None:
    out = io.BytesIO()
    events(CurlTrace(PLAIN, out))
    assert out.getvalue() == (
        b"*   Trying 127.0.0.1:33951...\n> POST /echo HTTP/1.1\r\n> Host: 127.0.0.1:33951\r\n"
        b"> User-Agent: curl/7.88.1\r\n> Accept: */*\r\n> Content-Length: 7\r\n"
        b"> Content-Type: application/x-www-form-urlencoded\r\n> \r\n} [7 bytes data]\n"
        b"< HTTP/1.1 200 OK\r\n< Server: test/1\r\n< Content-Length: 97\r\n< \r\n"
        b"{ [18 bytes data]\n* Connection #0 to host 127.0.0.1 left intact\n"
    )  # one data line for the two data events in a row, as curl's
    out = io.BytesIO()
    events(CurlTrace(PLAIN, out, hide_data=True))  # curl: the body on a terminal
    assert b"bytes data" not in out.getvalue()


def test_trace_dump_as_curl() -> None:
    out = io.BytesIO()
    trace = CurlTrace(BIN, out)
    trace(TEXT, b"Connected to 127.0.0.1 (127.0.0.1) port 33951 (#0)\n")
    trace(HEADER_IN, b"HTTP/1.1 200 OK\r\n")
    trace(DATA_OUT, b"a=1&b=2")
    assert out.getvalue() == (
        b"== Info: Connected to 127.0.0.1 (127.0.0.1) port 33951 (#0)\n"
        b"<= Recv header, 17 bytes (0x11)\n"
        b"0000: 48 54 54 50 2f 31 2e 31 20 32 30 30 20 4f 4b 0d HTTP/1.1 200 OK.\n"
        b"0010: 0a                                              .\n"
        b"=> Send data, 7 bytes (0x7)\n"
        b"0000: 61 3d 31 26 62 3d 32                            a=1&b=2\n"
    )


def test_trace_ascii_as_curl() -> None:
    head = REQUEST[: REQUEST.index(b"\r\n\r\n") + 4]
    assert dump(head, True) == (
        b"0000: POST /echo HTTP/1.1\n0015: Host: 127.0.0.1:33951\n"
        b"002c: User-Agent: curl/7.88.1\n0045: Accept: */*\n0052: Content-Length: 7\n"
        b"0065: Content-Type: application/x-www-form-urlencoded\n0096: \n"
    )
    body = b'{"method": "POST", "path": "/echo", "body": "a=1&b=2", "ct": "application/x-www-form-urlencoded"}'  # noqa: E501
    assert dump(body, True) == (
        b'0000: {"method": "POST", "path": "/echo", "body": "a=1&b=2", "ct": "ap\n'
        b'0040: plication/x-www-form-urlencoded"}\n'
    )
    # below 0x20 and 0x80 up: "." (0x7f as is, as curl's)
    assert dump(b"\x00\xff\x7fA", False) == b"0000: 00 ff 7f 41 " + b"   " * 12 + b"..\x7fA\n"
    assert dump(b"\x00\xff\x7fA", True) == b"0000: ..\x7fA\n"


def test_trace_time_and_ssl_data() -> None:
    out = io.BytesIO()
    trace = CurlTrace(ASCII, out, stamp=True)
    trace(SSL_DATA_OUT, b"\x16\x03\x01\x02\x00")
    text = out.getvalue().decode()
    assert text[15:] == " => Send SSL data, 5 bytes (0x5)\n0000: .....\n"
    assert text[2] == text[5] == ":" and text[8] == "." and text[:15].replace(":", "").replace(
        ".", "").isdigit()  # fmt: skip
    out = io.BytesIO()
    trace = CurlTrace(PLAIN, out)
    trace(HEADER_OUT, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    trace(SSL_DATA_OUT, b"x" * 5)
    assert out.getvalue().endswith(b"> \r\n} [5 bytes data]\n")


def test_options_override_as_curl() -> None:
    assert chosen([]) == ("none", None, [])
    assert chosen([(PLAIN, "%")]) == (PLAIN, "%", [])
    kind, target, warnings = chosen([(PLAIN, "%"), (BIN, "t.txt"), (BIN, "u.txt")])
    assert (kind, target) == (BIN, "u.txt")
    assert warnings == ["--trace overrides an earlier trace/verbose option"]
    assert chosen([(ASCII, "-"), (PLAIN, "%")])[2] == [
        "-v, --verbose overrides an earlier trace/verbose option"
    ]
    assert chosen([(PLAIN, "%"), ("none", None)])[0] == "none"
    args = parse_args(COMMAND, ["-v", "--trace-time", "--link-log", "http://h/"])
    assert args.trace_opts == [(PLAIN, "%")] and args.trace_time and args.verbose
    args = parse_args(COMMAND, ["--trace-ascii", "-", "http://h/"])
    assert args.trace_opts == [(ASCII, "-")] and not args.verbose


def test_a_trace_file_that_cannot_be_made(tmp_path: object) -> None:
    from types import SimpleNamespace

    from packetlab.cli.curl_trace import tracer

    args = SimpleNamespace(trace_opts=[(BIN, "/nonexistent/dir/t")], trace_time=False)
    with pytest.raises(RunError, match="--trace /nonexistent/dir/t"):
        tracer(args, io.BytesIO(), io.StringIO(), print, False)  # type: ignore[arg-type]
    # eyes19b: --trace-ascii's own name (it said `--trace /tmp: Is a directory`)
    args = SimpleNamespace(trace_opts=[(ASCII, str(tmp_path))], trace_time=False)
    with pytest.raises(RunError, match=f"^--trace-ascii {tmp_path}: Is a directory$"):
        tracer(args, io.BytesIO(), io.StringIO(), print, False)  # type: ignore[arg-type]


def test_header_block_notes_and_helpers() -> None:
    got: list[tuple[str, bytes]] = []
    header_in(lambda k, d: got.append((k, d)),
              b"HTTP/1.0 302 Found\r\nLocation: /x\r\nConnection: keep-alive\r\n\r\n",
              rewind=True)  # fmt: skip
    assert [d for _, d in got] == [
        b"HTTP 1.0, assume close after body\n", b"HTTP/1.0 302 Found\r\n",
        b"Please rewind output before next send\n", b"Location: /x\r\n",
        b"HTTP/1.0 connection set to keep alive\n", b"Connection: keep-alive\r\n", b"\r\n",
    ]  # fmt: skip
    assert lines(b"a\r\nb") == [b"a\r\n", b"b"]
    assert asn1_time(b"20261204175248Z") == "Dec  4 17:52:48 2026 GMT"
    assert host_match("*.example.com", "www.example.com")
    assert not host_match("*.com", "example.com") and not host_match("*.a.b", "x.y.a.b")
