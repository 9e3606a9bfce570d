"""`pktlab run http` where it differed from curl 7.88.1 before session 29 (curl29), on
the in-memory endpoint: --max-filesize against a HEAD's Content-Length, and a redirect
to a Location of another scheme."""

from __future__ import annotations

from pathlib import Path

from test_http_redirects import response
from test_run_http_curl import run


def _head(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    """A 2,400-byte Content-Length, no body for a HEAD; /r: a 302 to ?to=."""
    if target.startswith("/r?to="):
        return response(302, Location=target.split("=", 1)[1])
    head = b"HTTP/1.1 200 X\r\nContent-Length: 2400\r\nX-A: 1\r\n\r\n"
    return head if method == "HEAD" else head + b"x" * 2400


def test_max_filesize_ends_a_head_whose_length_is_over_it_as_curl() -> None:
    # curl 7.88.1 -I --max-filesize 1000, Content-Length 2400: (63) at the end of the
    # head, before its blank line (size_header without it); ours skipped a HEAD's (0)
    code, _, raw, _, records = run("-s", "-I", "--max-filesize", "1000", "-o", "-", "-w",
                                   "[%{http_code} %{size_header} %{exitcode}]",
                                   "http://192.0.2.80/", handler=_head)  # fmt: skip
    assert code == 1 and records[0]["exitcode"] == 63
    assert raw == b"HTTP/1.1 200 X\r\nContent-Length: 2400\r\nX-A: 1\r\n[200 46 63]"


def test_a_redirect_to_another_scheme_as_curl() -> None:
    w = "%{exitcode} %{num_redirects} %{url_effective} %{redirect_url} %{errormsg}\n"
    cases = {
        ("-L", "ftp://h/x#f"): '1 1 ftp://h/x  Protocol "ftp" not supported or disabled in libcurl',
        ("-L", "FILE:///etc/x"): '1 1 file:///etc/x  Protocol "file" not supported or disabled '
        "in libcurl",
        ("-L", "foo://x"): "1 1 http://192.0.2.80/r?to=foo://x  The redirect target URL could "
        "not be parsed: Unsupported URL scheme",
        ("-s", "ftp://h/x#f"): "0 0 http://192.0.2.80/r?to=ftp://h/x#f ftp://h/x ",
    }
    for (flag, to), said in cases.items():
        _, _, raw, _, _ = run("-s", flag, "-w", w, f"http://192.0.2.80/r?to={to}",
                              handler=_head)  # fmt: skip
        assert raw == f"{said}\n".encode(), (flag, to)


def test_a_resume_the_server_ignores_says_curls_words_alone(tmp_path: Path) -> None:
    # curl 7.88.1 -C 50 against a 200 without Content-Range: %{errormsg} its words;
    # ours added "(SERVER: no Content-Range from byte 50)" (the stderr line keeps it)
    out = tmp_path / "f"
    out.write_bytes(b"x" * 50)
    code, _, raw, _, records = run("-s", "-C", "-", "-o", str(out), "-w", "%{exitcode} "
                                   "%{errormsg}", "http://192.0.2.80/", handler=_head)  # fmt: skip
    assert code == 1 and raw == (b"33 HTTP server doesn't seem to support byte ranges. "
                                 b"Cannot resume.")  # fmt: skip
    assert records[0]["error"].endswith("(192.0.2.80:80: no Content-Range from byte 50)")


def test_scheme_is_the_last_connections_as_curl() -> None:
    # curl 7.88.1's %{scheme}: the scheme of the last connection made (null in %{json},
    # empty in text, when none was: a refused connect, a name not found); after -L to
    # a file:// it cannot follow, the HTTP one's. Ours: the URL's, always
    from packetlab.cli.run_http_writeout import write_out_values
    from packetlab.measure.http_message import HttpResult

    r = HttpResult("http://h/", url_effective="http://h/")
    assert write_out_values(r, r.url, None, 7, "refused")["scheme"] is None
    r.scheme, r.url_effective = "http", "file:///x"
    assert write_out_values(r, r.url, None, 1, "no")["scheme"] == "HTTP"
