"""curl 7.88.1's request and response bytes where `pktlab run http` differed before
session 25 (curl25): each pinned from what curl sent to, or read from, a raw server
(tests/integration/test_http_curl25.py compares the two side by side)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from packetlab.cli import run_http_body
from packetlab.measure.http_message import _Fields, _request
from packetlab.measure.http_url import parse_url


def _head(*items: str) -> bytes:
    custom = run_http_body._headers(list(items))
    _, head, _ = _request(parse_url("http://h/a"), "GET", None, _Fields([], [], custom))
    return head


def test_header_lines_go_as_typed() -> None:
    # curl 7.88.1 sends a -H line as typed over HTTP/1.1; ours wrote h11's `NAME: VALUE`
    head = _head("X:v", "Y:  v", "Z :v", "T:\tv", "U: v", "E;", "R:")
    lines = b"X:v\r\nY:  v\r\nZ :v\r\nT:\tv\r\nU: v\r\nE:\r\n"
    assert head == b"GET /a HTTP/1.1\r\nHost: h\r\n" + lines + b"\r\n"
    # a -H Host in the Host's place, first (as curl; h11 moved it there)
    assert _head("A:1", "Host:h2") == b"GET /a HTTP/1.1\r\nHost:h2\r\nA:1\r\n\r\n"
    assert _head("A:1", "Host;") == b"GET /a HTTP/1.1\r\nHost:\r\nA:1\r\n\r\n"
    # the value itself is unchanged for everything else (names compared, HTTP/2)
    assert run_http_body._headers(["X:v", "Y:  v"]) == [("X", "v"), ("Y", " v")]


def test_status_lines_read_as_curl() -> None:
    # curl 7.88.1 reads `HTTP/2 200` over HTTP/1.1 (%{http_version} 2), blanks before the
    # code and a reason right after it; `HTTP/1.2` and `HTTP/3` are its (1). Ours refused
    # the first three (8) and took HTTP/1.2
    from packetlab.measure.http_lenient import UnsupportedVersion, rewrite_head, supported

    assert rewrite_head(b"HTTP/2 200\r\nA: b") == b"HTTP/2.0 200\r\nA: b"
    assert rewrite_head(b"HTTP/1.1  \t200 OK") == b"HTTP/1.1 200 OK"
    assert rewrite_head(b"HTTP/1.1 200OK") == b"HTTP/1.1 200 OK"
    assert rewrite_head(b"HTTP/1.1 200 OK") == b"HTTP/1.1 200 OK"
    assert [supported(v) for v in (b"1.0", b"1.1", b"2.0")] == ["1.0", "1.1", "2"]
    for version in (b"1.2", b"3.0", b"2.1", b"0.9"):
        with pytest.raises(UnsupportedVersion, match=r"Unsupported HTTP version \(\d\.\d\)"):
            supported(version)


def test_br_zstd_and_stacked_codings_decoded_within_the_limit() -> None:
    # curl 7.88.1 decodes br, zstd and up to 5 stacked codings; ours refused all (61)
    import gzip
    import zlib

    import brotli
    import zstandard

    from packetlab.measure.http_decode import (
        TooMuchDecoded,
        Undecodable,
        content_codings,
        decoder,
    )

    text = b"abc" * 1000
    bodies = {
        "br": brotli.compress(text),
        "zstd": zstandard.compress(text),
        "br, gzip": gzip.compress(brotli.compress(text)),
        "zstd, deflate": zlib.compress(zstandard.compress(text)),
    }
    for coding, body in bodies.items():
        d = decoder(content_codings([("Content-Encoding", coding)]), 10_000, "s")
        assert d is not None
        out = b"".join(d.feed(body[i : i + 7]) for i in range(0, len(body), 7))
        assert out + d.feed(b"", final=True) == text, coding
    # a bomb: a few KiB that inflate to 16 MiB are refused at the limit, not held
    zeros = b"\0" * (16 << 20)
    for coding, body in (("br", brotli.compress(zeros)), ("zstd", zstandard.compress(zeros))):
        d = decoder([coding], 1 << 20, "s")
        assert d is not None and len(body) < 1 << 16
        with pytest.raises(TooMuchDecoded, match="larger than 1048576 bytes"):
            d.feed(body, final=True)
    with pytest.raises(Undecodable, match="more than 5 content encodings") as e:
        decoder(content_codings([("Content-Encoding", "gzip, " * 5 + "br")]), 10, "s")
    assert e.value.at_head
    with pytest.raises(Undecodable, match="type xyz: curl understands deflate, gzip, br, zstd"):
        decoder(
            content_codings([("Content-Encoding", "gzip"), ("content-encoding", "xyz")]), 10, "s"
        )
    with pytest.raises(Undecodable) as bad:  # curl's -v line: zlib's words after its own
        decoder(["gzip"], 10, "s").feed(b"not gzip!!", final=True)  # type: ignore[union-attr]
    assert bad.value.curl == "Error while processing content unencoding: incorrect header check"
    with pytest.raises(Undecodable, match="br: bad data"):
        decoder(["br"], 10, "s").feed(b"not brotli", final=True)  # type: ignore[union-attr]


def test_digest_answers_as_curl() -> None:
    # curl 7.88.1's Authorization for these challenges (its cnonce given: random)
    from packetlab.measure.http_auth import answer, offered

    challenge = [("WWW-Authenticate", 'Digest realm="testrealm@host.com", qop="auth,auth-int",'
                  ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
                  'opaque="5ccc069c403ebaf9f0171e9517f40e41"')]  # fmt: skip
    cnonce = "ZDBiZmI2NTIyYzFhYzJmNTU4ODc2MzE5ZDQ3ZTdlZDE="
    got = answer(challenge, "digest", b"Mufasa", b"Circle Of Life", "GET", "/d", cnonce)
    assert got == (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/d", cnonce="' + cnonce + '", '
        'nc=00000001, qop=auth, response="5b4c61a58c12226486bc2a6610d0437b", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )  # fmt: skip
    plain = [("WWW-Authenticate", 'Digest realm="r", nonce="abc", algorithm=MD5')]
    assert answer(plain, "digest", b"u", b"p", "GET", "/d2") == (
        'Digest username="u", realm="r", nonce="abc", uri="/d2", '
        'response="f0c4d410869cc01047177051c614bc0c", algorithm=MD5'
    )  # fmt: skip
    sha = 'Digest realm="r", nonce="abc", qop="auth", algorithm=SHA-256'
    both = [("WWW-Authenticate", 'Basic realm="b"'), ("WWW-Authenticate", sha)]
    cnonce = "OGE4ZmQ5MjFiNzdmOWMxOTAxZjBiYzE2MDliMWMwNTY="
    got = answer(both, "digest", b"u", b"p", "GET", "/d3", cnonce)
    assert got is not None and got.endswith(
        'response="34eef2c40628dab976b6106dca66a6a104833606d51afbf3f5990d019856f59b", '
        "algorithm=SHA-256"
    )  # fmt: skip
    # a redirect after the answer: curl answers again, its cnonce, nc 2, the new uri
    qop = [("WWW-Authenticate", 'Digest realm="r", nonce="abc", qop="auth"')]
    cnonce = "OTU3NGIzODI5MzIyZjU1ZGM3ZjZjZTk3YjIxYzU4Yjg="
    got = answer(qop, "digest", b"u", b"p", "GET", "/dr2?x=1", cnonce, 2)
    assert got is not None and 'nc=00000002, qop=auth, response="66fc781397f0d31dc867aff33a' \
        'caea58"' in got  # fmt: skip
    basic_only = [("WWW-Authenticate", 'Basic realm="b"')]
    assert answer(basic_only, "anyauth", b"u", b"p", "GET", "/b") == "Basic dTpw"
    assert not offered(basic_only, "digest") and offered(basic_only, "anyauth")
    assert answer(basic_only, "digest", b"u", b"p", "GET", "/b") is None
    # curl 7.88.1 does not answer a challenge it cannot (auth-int only, an unknown hash)
    assert not offered([("WWW-Authenticate", 'Digest nonce="n", qop="auth-int"')], "digest")
    assert not offered([("WWW-Authenticate", 'Digest nonce="n", algorithm=SHA-1')], "digest")


def test_ntlm_and_negotiate_refused_in_one_line() -> None:
    from packetlab.cli.run import RunError
    from packetlab.cli.run_http_experiment import auth_scheme

    # curl 7.88.1 adds them up: --digest --basic answers either, as --anyauth
    given: tuple[list[str], ...] = (
        [],
        ["basic"],
        ["digest"],
        ["anyauth"],
        ["digest", "basic"],
        ["basic", "digest"],
    )
    assert [auth_scheme(g) for g in given] == [
        "basic", "basic", "digest", "anyauth", "anyauth", "anyauth"]  # fmt: skip
    with pytest.raises(RunError, match="--ntlm: NTLM authorization is not built"):
        auth_scheme(["digest", "ntlm"])
    with pytest.raises(RunError, match="--negotiate: SPNEGO/Kerberos authorization is not"):
        auth_scheme(["negotiate"])


def test_tr_encoding_asked_and_a_gzip_transfer_encoding_read_as_curl() -> None:
    # curl 7.88.1: --tr-encoding's fields after Accept, a -H Connection's value folded in;
    # a Transfer-Encoding of gzip decoded with or without it (h11 refused it: 8)
    from packetlab.measure.http_decode import transfer_codings
    from packetlab.measure.http_lenient import rewrite_head

    custom = run_http_body._headers(["Connection: keep-alive", "X: y"])
    own = [("User-Agent", "u"), ("Accept", "*/*"), ("Referer", "r")]
    fields = _Fields(own, [], custom, tr_encoding=True)
    _, head, _ = _request(parse_url("http://h/a"), "GET", None, fields)
    asked = b"Connection: keep-alive, TE\r\nTE: gzip\r\n"
    assert head == (b"GET /a HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\nAccept: */*\r\n" + asked
                    + b"Referer: r\r\nX: y\r\n\r\n")  # fmt: skip
    given_te = _Fields(own, [], run_http_body._headers(["TE: br"]), tr_encoding=True)
    _, head, _ = _request(parse_url("http://h/a"), "GET", None, given_te)
    assert b"Connection" not in head and b"\r\nTE: br\r\n" in head
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nX: 1"
    assert rewrite_head(raw) == b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: 1"
    assert rewrite_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip") == b"HTTP/1.1 200 OK"
    assert rewrite_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked") == (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked")  # fmt: skip
    assert transfer_codings(raw + b"\r\n\r\n") == ["gzip"]


def test_connect_to_lines_before_the_cache_and_curls_nil() -> None:
    # curl 7.88.1: --connect-to's lines before the cache is looked in (for a reused
    # connection too), "(nil)" for a connection whose host a --connect-to named
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_run_http_curl import run

    to = "a.example:80:192.0.2.80:80"
    _, _, _, err, _ = run("-v", "-w", "", "-o", "/dev/null", "-o", "/dev/null", "--connect-to",
                          to, "http://a.example/x", "http://a.example/y")  # fmt: skip
    told = [line for line in err.splitlines() if line.startswith("* ")]
    told = [re.sub(r"0x[0-9a-f]+", "0xX", line) for line in told]
    assert told == [
        "* Connecting to hostname: 192.0.2.80",
        "*   Trying 192.0.2.80:80...",
        "* Connected to (nil) (192.0.2.80) port 80 (#0)",
        "* Connection #0 to host (nil) left intact",
        "* Connecting to hostname: 192.0.2.80",
        "* Found bundle for host: 0xX [serially]",
        "* Can not multiplex, even if we wanted to",
        "* Connection 0 seems to be dead",  # (the scripted server closes after each)
        "* Closing connection 0",
        "* Hostname 192.0.2.80 was found in DNS cache",
        "*   Trying 192.0.2.80:80...",
        "* Connected to (nil) (192.0.2.80) port 80 (#1)",
        "* Connection #1 to host (nil) left intact",
    ]


def test_more_heads_and_notes_as_curl() -> None:
    # curl 7.88.1 reads differing Content-Lengths (the last) and a field without a name;
    # its customrequest_helper's note and warning
    from packetlab.cli.run_http_opts import curl_warning, custom_request_note
    from packetlab.measure.http_lenient import rewrite_head

    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: 1\r\ncontent-length: 3"
    assert rewrite_head(head) == b"HTTP/1.1 200 OK\r\nX: 1\r\ncontent-length: 3"
    same = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2"
    assert rewrite_head(same) == same  # (h11 takes equal ones)
    assert rewrite_head(b"HTTP/1.1 200 OK\r\n: v\r\nA: b") == b"HTTP/1.1 200 OK\r\nA: b"
    assert custom_request_note("get", "GET") == (
        "Note: ", "Unnecessary use of -X or --request, GET is already inferred.")  # fmt: skip
    assert custom_request_note("DELETE", "GET") is None and custom_request_note(None, "GET") is None
    said = custom_request_note("head", "POST")
    assert said is not None and curl_warning(said[1], said[0]) == (
        "Warning: Setting custom HTTP method to HEAD with -X/--request may not work the \n"
        "Warning: way you want. Consider using -I/--head instead.\n"
    )  # fmt: skip


def test_excess_after_a_zero_length_body_keeps_the_connection() -> None:
    # curl 7.88.1: "Excess found: ... (zero-length body)", the connection kept (ours
    # closed it); past a Content-Length: "Excess found in a read", closed (as ours)
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_run_http_curl import run

    def extra(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        if target.startswith("/204"):
            return b"HTTP/1.1 204 No Content\r\n\r\nbody"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"

    _, _, raw, err, _ = run("-v", "-w", "%{num_connects}\\n", "-o", "/dev/null",
                            "http://192.0.2.80/204?q", handler=extra)  # fmt: skip
    assert "* Excess found: excess = 4 url = /204 (zero-length body)\n" in err
    assert "left intact" in err and raw == b"1\n"
    _, _, _, err, _ = run("-v", "-w", "", "-o", "/dev/null", "http://192.0.2.80/long",
                          handler=extra)  # fmt: skip
    assert "* Excess found in a read: excess = 5, size = 2, maxdownload = 2, bytecount = 0\n" in err
    assert "* Closing connection 0" in err


def test_a_redirect_to_another_scheme_on_the_port_tells_curls_bundle() -> None:
    # curl 7.88.1 -v -L, http://127.0.0.1:P/ answering 302 to https://127.0.0.1:P/: its
    # cache's bundle (by host and port) holds the http connection, looked at, not reused:
    # `Found bundle for host: 0x... [serially]`, `Can not multiplex, even if we wanted
    # to`, then a new connection (ours wrote neither: session 30's leftover; session 31)
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_run_http_curl import run

    _, _, _, err, _ = run("-v", "-L", "-m", "3", "-o", "/dev/null",
                          "http://192.0.2.80/r/302?to=https://192.0.2.80:80/")  # fmt: skip
    told = [re.sub(r"0x[0-9a-f]+", "0xX", x) for x in err.splitlines() if x.startswith("* ")]
    at = told.index("* Issue another request to this URL: 'https://192.0.2.80:80/'")
    assert told[at + 1 : at + 5] == [
        "* Found bundle for host: 0xX [serially]",
        "* Can not multiplex, even if we wanted to",
        "* Hostname 192.0.2.80 was found in DNS cache",
        "*   Trying 192.0.2.80:80...",
    ], told
    # --http1.1: curl wants no HTTP/2, so no "Can not multiplex"
    _, _, _, err, _ = run("-v", "-L", "-m", "3", "--http1.1", "-o", "/dev/null",
                          "http://192.0.2.80/r/302?to=https://192.0.2.80:80/")  # fmt: skip
    told = [re.sub(r"0x[0-9a-f]+", "0xX", x) for x in err.splitlines() if x.startswith("* ")]
    at = told.index("* Issue another request to this URL: 'https://192.0.2.80:80/'")
    assert told[at + 1 : at + 3] == [
        "* Found bundle for host: 0xX [serially]",
        "* Hostname 192.0.2.80 was found in DNS cache",
    ], told
