"""`pktlab run http` with curl's -L, -X, -d, -I, -o, -s and -w: option parsing and early
errors, curl 7.88's --write-out syntax, and whole runs over the scripted endpoint (what
goes to stdout, to -o files and to stderr)."""

from __future__ import annotations

import argparse
import io
import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from http_fake import Answer, H2Server
from stream_fakes import StreamRig
from test_http_redirects import Server, echo, response

from packetlab.cli import run_http, run_http_body, run_http_writeout
from packetlab.cli.run import RunError, build_parser
from packetlab.cli.run_command import Progress

VALUES = {
    "http_code": 200, "response_code": 200, "time_total": 0.0123456, "time_connect": 0.0,
    "size_download": 58, "url_effective": "http://a.test/x", "errormsg": None, "exitcode": 0,
    "content_type": None,
}  # fmt: skip


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["http", *argv])


def render(fmt: str, values: dict[str, Any] = VALUES, headers: Any = ()) -> list[Any]:
    warned: list[str] = []
    out = run_http_writeout.write_out(fmt, values, list(headers), warned.append)
    return [*out, *(("warn", w) for w in warned)]


def test_write_out_as_curl_7_88() -> None:
    # each case checked against /usr/bin/curl 7.88.1
    assert render("%{http_code} %{time_total}\\n") == [("stdout", "200 0.012346\n")]
    assert render("%{time_connect}|%{content_type}|%{errormsg}") == [("stdout", "0.000000||")]
    assert render("100%% \\t|\\r|\\z|\\\\n|%z") == [("stdout", "100% \t|\r|\\z|\\\\n|%z")]
    # an unknown variable: nothing printed for it, a warning (curl: on stderr, exit 0)
    assert render("a%{bogus}b") == [
        ("stdout", "ab"), ("warn", "unknown --write-out variable: 'bogus'"),
    ]  # fmt: skip
    # a %{ never closed: printed as is, and the rest too
    assert render("a%{http_codeb %%") == [
        ("stdout", "a%{http_codeb %"),
        ("warn", "--write-out: '%{' without '}' at character 2: printed as is"),
    ]
    # %{onerror}: the rest only for a failed fetch
    assert render("x%{onerror}y") == [("stdout", "x")]
    assert render("x%{onerror}y", {**VALUES, "errormsg": "no"}) == [("stdout", "xy")]
    assert render("a%{stderr}b%{stdout}c") == [("stdout", "a"), ("stderr", "b"), ("stdout", "c")]
    headers = [("Content-Type", "text/html"), ("X-A", "1")]
    assert render("%header{content-type}|%header{nope}", headers=headers) == [
        ("stdout", "text/html|")
    ]
    assert json.loads(render("%{json}")[0][1])["http_code"] == 200
    assert render("%{http_code}", {**VALUES, "http_code": 0}) == [("stdout", "000")]
    assert run_http_writeout.format_warnings("%%{x} %{bogus} %{http_code}%{onerror} %{x") == [
        "unknown --write-out variable: 'bogus'",
        "--write-out: '%{' without '}' at character 39: printed as is",
    ]


def test_write_out_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "fmt"
    f.write_text("code=%{http_code}\\n")
    assert run_http_writeout.write_out_format(f"@{f}") == "code=%{http_code}\\n"
    with pytest.raises(RunError, match=r"--write-out @.*nope: No such file"):
        run_http_writeout.write_out_format(f"@{tmp_path / 'nope'}")
    # curl 7.88.1's file2string: each fgets() piece (<= 255 bytes) cut at its CR or LF
    # (ours sent the file as is: its last line end printed, a CR kept)
    f.write_bytes(b"a\rb\nc%{http_code}\n\nd\n" + b"x" * 300 + b"\ry\n")
    assert run_http_writeout.write_out_format(f"@{f}") == "ac%{http_code}d" + "x" * 300


def test_data_options_as_curl(tmp_path: Path) -> None:
    f = tmp_path / "d"
    f.write_bytes(b"x=1\ny=2\r\n")
    a = parse("-d", f"@{f}", "--data-binary", f"@{f}", "--data-raw", "@lit", "-d", "z=3", "u")
    # curl: -d @file loses CR and LF, --data-binary keeps them, all joined with &
    assert run_http_body.request_body(a.data) == b"x=1y=2&x=1\ny=2\r\n&@lit&z=3"
    assert run_http_body.request_body(parse("u").data) is None
    # a file that cannot be opened: curl's warning and an empty POST (this test held our
    # old refusal until session 24: curl 7.88.1 sends `Content-Length: 0`, exit 0)
    said: list[str] = []
    missing = str(tmp_path / "missing")
    assert run_http_body.request_body(parse("-d", f"@{missing}", "u").data, -1, said.append) == b""
    assert said == [f'Couldn\'t read data from file "{missing}", this makes an empty POST.']
    assert run_http_body.request_body(parse("-d", f"@{tmp_path}", "u").data) == b""  # a dir


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-I", "-d", "a=1", "http://a.test/"], "one request method only"),
        (["-o", "/nonexistent/dir/f", "http://a.test/"], "no such directory /nonexistent/dir"),
        (["-w", "%{http_code}", "--json", "http://a.test/"], "choose one output"),
        (["-L", "--max-redirs=-2", "http://a.test/"], "--max-redirs -2"),
        (["-X", "GET /x", "http://a.test/"], "not an HTTP method"),
    ],
)
def test_bad_options_are_one_line_errors(argv: list[str], message: str) -> None:
    with pytest.raises(RunError, match=message):
        run_http.experiment(parse(*argv), lambda r: None, Progress())


def test_output_to_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="is a directory"):
        run_http.experiment(parse("-o", str(tmp_path), "http://a.test/"), lambda r: None,
                            Progress())  # fmt: skip


def run(
    *argv: str, handler: Any = echo, server: Any = None, peers: Any = None
) -> tuple[int, str, bytes, str, list[dict[str, Any]]]:
    """`pktlab run http ARGV` over the scripted endpoint (server 192.0.2.80:80, `handler`'s
    or a `server()`; `peers`: more, {(address, port): handler}): (exit status, text
    stdout, binary stdout, stderr, records)."""
    from twisted.internet.defer import Deferred

    from packetlab.cli.run_command import begun, measure
    from packetlab.controller.stop import StopSignal

    rig = StreamRig()
    rig.endpoint.peers[("192.0.2.80", 80)] = server or (lambda: Server(handler))
    for peer, answer in (peers or {}).items():
        rig.endpoint.peers[peer] = partial(Server, answer)
    args = parse(*argv)
    args._stdout, args._stderr = io.BytesIO(), io.StringIO()
    records: list[dict[str, Any]] = []

    async def link(reactor: object, a: argparse.Namespace, emit: Any, p: Progress) -> None:
        def keep(r: dict[str, Any]) -> None:
            records.append(r)
            emit(r)

        await begun(a._command.experiment(a, keep, p), p)(rig.session)

    out = io.StringIO()
    code = rig.run(Deferred.fromCoroutine(measure(rig.clock, args, StopSignal(), out, run=link)))
    return code, out.getvalue(), args._stdout.getvalue(), args._stderr.getvalue(), records


def test_write_out_replaces_the_table_body_then_write_out() -> None:
    code, text, raw, err, _ = run(
        "-L", "-d", "a=1", "-w", "%{http_code} %{num_redirects} %{url_effective} %{method}\\n",
        "http://192.0.2.80/r/302?to=/echo", "http://192.0.2.80/r/307?to=/echo",
    )  # fmt: skip
    assert code == 0 and text == "" and err == ""  # no table, no summary line
    lines = raw.decode().splitlines()
    assert json.loads(lines[0].split("}")[0] + "}")["method"] == "GET"  # 302: POST -> GET
    assert lines[0].endswith("}200 1 http://192.0.2.80/echo GET")
    assert json.loads(lines[1].split("}")[0] + "}")["body"] == "a=1"  # 307 keeps it
    assert lines[1].endswith("}200 1 http://192.0.2.80/echo POST")


def test_write_out_of_a_failure_and_silent() -> None:
    def loop(*a: Any) -> bytes:
        return response(302, Location="/loop")

    fmt = "%{http_code} %{num_redirects} %{exitcode} %{errormsg}"
    code, text, raw, err, _ = run("-L", "--max-redirs", "2", "-w", fmt,
                                        "http://192.0.2.80/loop", handler=loop)  # fmt: skip
    assert code == 1 and text == ""
    why = "maximum (2) redirects followed (the next to http://192.0.2.80/loop)"
    assert raw.decode() == "302 2 47 Maximum (2) redirects followed"  # curl's (s26; ours before)
    assert err == f"pktlab run http: http://192.0.2.80/loop: {why}\n"
    _, _, _, err, _ = run("-s", "-L", "--max-redirs", "2", "-w", fmt, "http://192.0.2.80/loop",
                          handler=loop)  # fmt: skip
    assert err == ""
    _, _, raw, err, _ = run("-w", "%{bogus}%{http_code}", "http://192.0.2.80/echo")
    assert raw == b'{"method": "GET", "target": "/echo", "body": "", "ct": null, "auth": null}200'
    assert err == "pktlab run http: unknown --write-out variable: 'bogus'\n"


def test_http2_options_include_and_write_out() -> None:
    def missing(method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        return 404, [("content-length", "4")], b"gone"

    url = "http://192.0.2.80/a"
    w = "%{http_code} %{http_version} %{num_connects}\\n"
    code, text, raw, err, _ = run("--http2-prior-knowledge", "-i", "-w", w, url, url,
                                  server=H2Server)  # fmt: skip
    assert (code, text, err) == (0, "", "")
    block = b"HTTP/2 200 \r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\n"
    assert raw == (block + b"ok GET /a 0200 2 1\n") + (block + b"ok GET /a 0200 2 0\n")
    # --http2 on http://: the Upgrade; -f over HTTP/2 (no reason phrase)
    _, _, raw, _, _ = run("--http2", "-w", w, url, server=lambda: H2Server(upgrade=True))
    assert raw == b"ok GET /a 0200 2 1\n"
    code, _, _, _, records = run("--json", "-f", "--http2-prior-knowledge", url,
                                 server=lambda: H2Server(missing))  # fmt: skip
    assert code == 1 and records[0]["error"] == "the server answered 404 (--fail)"
    assert records[0]["http_version"] == "2"
    with pytest.raises(SystemExit):  # one version option only
        parse("--http1.1", "--http2", url)


def test_outputs_pair_with_urls_in_order(tmp_path: Path) -> None:
    o1, o2 = tmp_path / "o1", tmp_path / "o2"
    code, text, raw, _, records = run(
        "-o", str(o1), "-o", str(o2), "http://192.0.2.80/echo?1", "http://192.0.2.80/echo?2",
        "http://192.0.2.80/echo?3",
    )  # fmt: skip
    assert code == 0 and raw == b""  # the table on the text stdout, no body there
    assert json.loads(o1.read_bytes())["target"] == "/echo?1"
    assert json.loads(o2.read_bytes())["target"] == "/echo?2"
    assert [r.get("output") for r in records] == [str(o1), str(o2), None]
    assert text.splitlines()[0].startswith("code") and text.splitlines()[-1].startswith("# 3 of 3")
    # with -w, a URL without -o has its body on stdout, as curl
    _, _, raw, _, _ = run("-o", str(o1), "-w", "[%{filename_effective}]",
                          "http://192.0.2.80/echo?4", "http://192.0.2.80/echo?5")  # fmt: skip
    assert raw.startswith(f"[{o1}]".encode()) and raw.endswith(b"null}[]")
    assert json.loads(o1.read_bytes())["target"] == "/echo?4"


def test_output_that_cannot_be_written_is_the_urls_error() -> None:
    # /dev/full opens but every write fails (ENOSPC): curl's (23) "Failure writing output"
    code, _, _, _, records = run("-o", "/dev/full", "http://192.0.2.80/echo")
    assert code == 1 and records[0]["exitcode"] == 23
    assert records[0]["error"] == "writing /dev/full: No space left on device"


def test_head_writes_the_headers_and_fail_is_22() -> None:
    def head(method: str, *a: Any) -> bytes:
        body = b"" if method == "HEAD" else b"nope"
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\n" + body

    code, _, raw, _, records = run("-I", "-f", "-w", "%{exitcode} %{method} %{size_download}",
                                   "http://192.0.2.80/x", handler=head)  # fmt: skip
    assert code == 1 and records[0]["exitcode"] == 22
    assert raw == b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\n22 HEAD 0"


def test_help_names_the_curl_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = capsys.readouterr().out
    for option in ("-L, --location", "--max-redirs", "-X METHOD, --request", "-d DATA, --data DATA",
                   "--data-binary", "-I, --head", "-o FILE, --output FILE", "-w FORMAT,",
                   "%{time_pretransfer}", "%header{NAME}"):  # fmt: skip
        assert option in text, option
    assert "-w '%{http_code} %{time_total}\\n'" in text  # the escape as typed, not a newline
    assert "%header{NAME}, \\n \\t \\r and %%" in text
    for example in ("run http -F name=me", "run http -T results.tar", "run http -Z https"):
        assert example in text, example  # session 12's options have examples too


def test_an_interrupted_run_says_so_not_0_of_0() -> None:
    # Ctrl-C before any URL ended printed "# 0 of 0 fetched, 0 body bytes"
    line = run_http.row({"type": "summary", "urls": 0, "fetched": 0, "bytes": 0,
                         "stop_reason": "INTERRUPTED"})  # fmt: skip
    assert line == "# interrupted (Ctrl-C): 0 URLs ended, 0 fetched, 0 body bytes"
    done = {"type": "summary", "urls": 2, "fetched": 1, "bytes": 5, "stop_reason": "COMPLETED"}
    assert run_http.row(done) == "# 1 of 2 fetched, 5 body bytes"


def test_output_file_created_as_curl_creates_it(tmp_path: Path) -> None:
    # curl 7.88: an empty file for a complete response without a body, none for a failure
    def empty(*a: Any) -> bytes:
        return response(302, Location="/x")

    code, _, _, _, _ = run("-o", str(tmp_path / "e"), "http://192.0.2.80/", handler=empty)
    assert code == 0 and (tmp_path / "e").read_bytes() == b""
    code, _, _, _, _ = run("-o", str(tmp_path / "f"), "http://192.0.2.81/")  # refused
    assert code == 1 and not (tmp_path / "f").exists()


def test_get_user_include_compressed_as_curl() -> None:
    # -G: the -d data is each URL's query (after ? or &), a GET without body
    a = parse("-G", "-d", "a=1", "-d", "b=2", "http://x.test/p?q=0#f", "http://x.test/")
    assert [run_http_body.with_query(u, b"a=1&b=2") for u in a.urls] == [
        "http://x.test/p?q=0&a=1&b=2#f", "http://x.test/?a=1&b=2",
    ]  # fmt: skip
    code, _, raw, _, records = run("-G", "-d", "a=1", "-u", "us:pw", "-i", "-o", "-",
                                   "http://192.0.2.80/echo?x")  # fmt: skip
    assert code == 0 and records[0]["method"] == "GET"
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 X\r\n") and b"Content-Length" in head  # -i
    seen = json.loads(body)
    assert (seen["method"], seen["target"], seen["body"]) == ("GET", "/echo?x&a=1", "")
    assert seen["auth"] == "Basic dXM6cHc="  # us:pw
    # -i -L: every header block, then the body; -I -i: the headers once
    _, _, raw, _, _ = run("-L", "-i", "-w", "", "http://192.0.2.80/r/302?to=/echo")
    assert raw.count(b"HTTP/1.1 ") == 2 and raw.index(b"302") < raw.index(b"200 X")
    _, _, raw, _, _ = run("-I", "-i", "-w", "", "http://192.0.2.80/echo")
    assert raw.count(b"HTTP/1.1 ") == 1

    # --compressed: a coding we cannot decode is the URL's error, curl's 61 (session 25:
    # br is decoded now, as curl 7.88.1 with brotli; xz is a coding curl does not know)
    def br(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        return response(200, b"\x0bxx", Content_Encoding="xz")

    code, _, _, _, records = run("--compressed", "-w", "", "http://192.0.2.80/", handler=br)
    assert code == 1 and records[0]["exitcode"] == 61


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-u", "alone", "http://a.test/"], "'alone': no password"),
        (["-i", "http://a.test/"], "-i/--include: the headers go where the body goes"),
        (
            ["-c", "/nonexistent/dir/jar", "http://a.test/"],
            "--cookie-jar /nonexistent/dir/jar: no such",
        ),
        (["-b", "/", "http://a.test/"], "-b/--cookie /: is a directory"),
    ],
)
def test_bad_new_options_are_one_line_errors(argv: list[str], message: str) -> None:
    with pytest.raises(RunError, match=message):
        run_http.experiment(parse(*argv), lambda r: None, Progress())


def test_cookie_options_as_curl(tmp_path: Path) -> None:
    # -b with '=': sent as is, no engine; a file: read, the engine on; missing: engine on
    # the strings joined with ";" as given: curl 7.88.1 sent `a=1; b=2;;c=3` (checked
    # against a recording server, session 24; this test held `a=1; b=2; c=3`)
    jar, string = run_http_body.cookie_options(["a=1; b=2;", "c=3"], None)
    assert jar is None and string == "a=1; b=2;;c=3"
    f = tmp_path / "jar"
    f.write_text("x.test\tFALSE\t/\tFALSE\t0\tn\tv\n")
    jar, string = run_http_body.cookie_options([str(f), str(tmp_path / "missing")], None)
    assert string is None and jar is not None and jar.header("http", "x.test", "/") == "n=v"
    jar, _ = run_http_body.cookie_options([], str(tmp_path / "out"))
    assert jar is not None
    # -c -: the jar on stdout after each URL (after its write-out), as curl 7.88
    code, _, raw, _, _ = run("-c", "-", "-w", "W\\n", "http://192.0.2.80/echo",
                             "http://192.0.2.80/echo")  # fmt: skip
    assert code == 0 and raw.count(b"W\n# Netscape HTTP Cookie File\n") == 2
