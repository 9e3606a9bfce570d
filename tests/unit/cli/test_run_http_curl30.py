"""`pktlab run http` where it differed from curl 7.88.1 before session 30 (curl30), on
the in-memory endpoint: `-X HEAD` (curl reads the answer as a GET's: a body, or a wait
for one) and `-I -X GET` (no body read, whatever the method), the moment a transfer
the server ends by closing ends (%{time_total}), and curl's `{ [0 bytes data]` line
for that close when no body byte came."""

from __future__ import annotations

from typing import Any

from test_http_redirects import Server
from test_run_http_curl import run

W = "[%{http_code} %{exitcode} %{size_download} %{num_connects} %{errormsg}]\n"


def _length_10(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    """Content-Length 10 and, unless the request was a HEAD, its 10 bytes."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    return head if method == "HEAD" else head + b"0123456789"


def test_x_head_reads_the_answer_as_a_gets_as_curl() -> None:
    # curl 7.88.1 -X HEAD: HEAD on the wire, the answer read as a GET's: a Content-Length
    # 10 without its bytes is (18) at the close ((28) at -m while it stays open). Ours
    # read no body (0, at once)
    code, _, raw, err, records = run("-X", "HEAD", "-w", W, "http://192.0.2.80/",
                                     handler=_length_10)  # fmt: skip
    assert code == 1 and records[0]["method"] == "HEAD"
    assert raw == b"[200 18 0 1 transfer closed with 10 bytes remaining to read]\n"
    assert err.startswith("Warning: Setting custom HTTP method to HEAD with -X/--request")
    # a server that sends a body anyway: curl reads it, as a GET's
    code, _, raw, _, _ = run("-s", "-X", "HEAD", "-w", W, "http://192.0.2.80/",
                             handler=lambda *a: _length_10("GET", "/", {}, b""))  # fmt: skip
    assert code == 0 and raw == b"0123456789[200 0 10 1 ]\n"


def test_i_with_x_get_reads_no_body_as_curl() -> None:
    # curl 7.88.1 -I -X GET: GET on the wire, the answer's body not read (size_download
    # 0, the head alone the output); ours read the 10 bytes
    code, _, raw, _, records = run("-s", "-I", "-X", "GET", "-w", W, "http://192.0.2.80/",
                                   handler=_length_10)  # fmt: skip
    assert code == 0 and records[0]["method"] == "GET"
    assert raw == b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n[200 0 0 1 ]\n"
    # -v: those bytes, read with the head, are excess, not data (curl tells none; ours
    # told `{ [10 bytes data]`, for -I's HEAD to a server that sends a body too)
    for flags in (("-X", "GET"), ()):
        _, _, _, err, _ = run("-s", "-v", "-I", *flags, "-o", "/dev/null", "http://192.0.2.80/",
                              handler=lambda *a: _length_10("GET", "/", {}, b""))  # fmt: skip
        assert "bytes data" not in err and "< Content-Length: 10" in err, err


class _ClosesLater(Server):
    """Sends the handler's answer at once and closes 0.5 s later."""

    def arrived(self) -> None:
        if b"\r\n\r\n" in bytes(self.got) and not self.done:
            self.done = True
            self.send(self.handler("GET", "/", {}, b""))
            self.close(0.5)


def _server(answer: bytes) -> Any:
    return lambda: _ClosesLater(lambda *a: answer)


def test_a_transfer_the_close_ends_ends_at_the_close_as_curl() -> None:
    # curl 7.88.1 against a head (Content-Length 10, chunked, or close-delimited) and a
    # close 0.5 s later: time_total 0.50-0.51 (its EOF read ends the transfer); ours
    # 0.002-0.009 (the head's). Exit 18, 18, 0 as before
    heads = {
        b"Content-Length: 10": "18 transfer closed with 10 bytes remaining to read",
        b"Transfer-Encoding: chunked": "18 transfer closed with outstanding read data remaining",
        b"Connection: close": "0 ",
    }
    for field, said in heads.items():
        answer = b"HTTP/1.1 200 OK\r\n" + field + b"\r\n\r\n"
        _, _, raw, _, _ = run("-s", "-w", "%{exitcode} %{errormsg}|%{time_total}",
                              "http://192.0.2.80/", server=_server(answer))  # fmt: skip
        text, total = raw.decode().split("|")
        assert text == said and 0.5 <= float(total) < 0.6, (field, raw)


def test_the_close_after_a_head_is_told_as_curls_zero_bytes_data() -> None:
    # curl 7.88.1 -v: its EOF read after a head and no body byte is `{ [0 bytes data]`
    # (--trace: `<= Recv data, 0 bytes (0x0)`); after some body bytes, nothing. Ours:
    # no line
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    _, _, _, err, _ = run("-s", "-v", "http://192.0.2.80/", server=_server(answer))
    assert "< \r\n{ [0 bytes data]\n* transfer closed with 10 bytes remaining" in err
    _, _, raw, _, _ = run("-s", "--trace", "-", "http://192.0.2.80/", server=_server(answer))
    assert b"<= Recv data, 0 bytes (0x0)\n== Info: transfer closed with 10" in raw
    _, _, _, err, _ = run("-s", "-v", "http://192.0.2.80/", server=_server(answer + b"abc"))
    assert "{ [3 bytes data]\n* transfer closed with 7 bytes remaining" in err
    assert "0 bytes data" not in err


def _redirect(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    """/r?to=WHERE: a 302 there; else 200 `ok`."""
    if target.startswith("/r?to="):
        where = target.split("=", 1)[1]
        return f"HTTP/1.1 302 Found\r\nLocation: {where}\r\nContent-Length: 0\r\n\r\n".encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_redirect_to_another_port_or_scheme_clears_auth_as_curl() -> None:
    # curl 7.88.1 -v -L (with or without -u; not with --location-trusted): before its
    # `Issue another request` line, `Clear auth, redirects to port from P to Q` (Q: the
    # scheme's own port when the Location names none; file: 0), else for another scheme
    # `Clear auth, redirects scheme from HTTP to S`; a host of its own: no line. Ours:
    # none
    lines = {
        "http://192.0.2.80:8080/x": "* Clear auth, redirects to port from 80 to 8080\n",
        "https://192.0.2.80:80/x": "* Clear auth, redirects scheme from HTTP to https\n",
        "ftp://192.0.2.80/x": "* Clear auth, redirects to port from 80 to 21\n",
        "dict://192.0.2.80:80/x": "* Clear auth, redirects scheme from HTTP to dict\n",
        "file:///etc/x": "* Clear auth, redirects to port from 80 to 0\n",
        "http://other.example:80/x": "",
        "/y": "",
    }
    peers = {("192.0.2.80", 8080): _redirect}
    for to, said in lines.items():
        for extra in ([], ["-u", "a:b"], ["--location-trusted", "-u", "a:b"]):
            _, _, _, err, _ = run("-s", "-v", "-L", *extra, f"http://192.0.2.80/r?to={to}",
                                  "--resolve", "other.example:80:192.0.2.80",
                                  handler=_redirect, peers=peers)  # fmt: skip
            issue = err.index("* Issue another request to this URL")
            told = "" if "--location-trusted" in extra else said
            assert err[:issue].endswith("intact\n" + told), (to, extra, err)


def test_x_head_and_i_x_get_over_http2_as_curl() -> None:
    # curl 7.88.1 over HTTP/2: -X HEAD, a HEADERS with content-length 12 and END_STREAM:
    # (18) `transfer closed with 12 bytes remaining to read` after `{ [0 bytes data]`,
    # the connection kept (num_connects 0 next); ours 0. -I -X GET: the DATA not read
    # (size_download 0), `Excess found` in -v; ours read it (11 bytes: `ok GET /a 0`)
    from http_fake import H2Server

    url = "http://192.0.2.80/a"
    args = ("-s", "-v", "--http2-prior-knowledge", "-o", "/dev/null", "-o", "/dev/null")
    code, _, raw, err, _ = run(*args, "-X", "HEAD", "-w", W, url, url, server=H2Server)
    said = b"[200 18 0 %d transfer closed with 12 bytes remaining to read]\n"
    assert code == 1 and raw == said % 1 + said % 0, raw
    assert "< \r\n{ [0 bytes data]\n* transfer closed with 12 bytes remaining to read\n" in err
    assert "* Connection #0 to host 192.0.2.80 left intact" in err
    code, _, raw, err, _ = run(*args, "-I", "-X", "GET", "-w", W, url, url, server=H2Server)
    assert code == 0 and raw == b"[200 0 0 1 ]\n[200 0 0 0 ]\n"
    assert "* Excess found: excess = 11 url = /a (zero-length body)\n" in err


def test_bearer_beside_another_scheme_waits_for_a_401_as_curl() -> None:
    # curl 7.88.1: --oauth2-bearer with --basic, --digest or --anyauth wants two schemes
    # (its authtype bits add up): no Authorization first; a 401 naming Bearer gets it,
    # one naming a scheme of the flags gets that (with -u), another ends at the 401.
    # Alone or with -u: the Bearer at once. Ours sent the Bearer at once always
    # Without -u: Basic asked again with no field, Digest for an empty user
    u = ("-u", "a:b")
    cases = {  # (flags, the 401's challenge): (-w, the Authorization fields sent)
        (("--basic", *u), "Bearer"): ("200 1", ["", "Bearer tok"]),
        (("--basic", *u), "Basic realm=x"): ("200 1", ["", "Basic YTpi"]),
        (("--basic", *u), 'Digest realm=x, nonce="n"'): ("401 0", [""]),
        (("--digest", *u), "Bearer"): ("200 1", ["", "Bearer tok"]),
        (("--digest", *u), "Basic realm=x"): ("401 0", [""]),
        (("--digest", *u), 'Digest realm=x, nonce="n"'): ("200 1", ["", "Digest"]),
        (("--anyauth", *u), "Basic realm=x"): ("200 1", ["", "Basic YTpi"]),
        (("--anyauth", *u), "Bearer"): ("200 1", ["", "Bearer tok"]),
        (u, "Basic realm=x"): ("200 0", ["Bearer tok"]),
        (("--basic",), "Basic realm=x"): ("401 1", ["", ""]),
        (("--anyauth",), 'Digest realm=x, nonce="n"'): ("200 1", ["", "Digest"]),
    }
    for (flags, offer), (said, fields) in cases.items():
        seen: list[str] = []

        def challenge(method: str, target: str, headers: dict[str, str], body: bytes,
                      offer: str = offer, seen: list[str] = seen) -> bytes:  # fmt: skip
            seen.append(headers.get("authorization", "").split(" username")[0])
            if headers.get("authorization"):
                return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            return (f"HTTP/1.1 401 No\r\nWWW-Authenticate: {offer}\r\n"
                    "Content-Length: 0\r\n\r\n").encode()  # fmt: skip

        _, _, raw, _, _ = run("-s", "-o", "/dev/null", "-w", "%{http_code} %{num_redirects}",
                              *flags, "--oauth2-bearer", "tok", "http://192.0.2.80/",
                              handler=challenge)  # fmt: skip
        assert (raw.decode(), seen) == (said, fields), (flags, offer)


def test_a_head_retried_on_a_fresh_connection_stays_bodiless() -> None:
    # -I on a kept connection the server closes as the request comes (curl's "Connection
    # died, retrying a fresh connect"): the second try is still -I's (its body not read);
    # the hop made anew had lost it (a GET's answer read)
    from test_http_keepalive import serving

    from packetlab.measure.http import http_get
    from packetlab.measure.http_conn import Connections

    rig, made = serving()
    pool = Connections()
    rig.run(http_get(rig.session, "http://192.0.2.80/then-drop", connections=pool))
    r = rig.run(http_get(rig.session, "http://192.0.2.80/b", head=True, connections=pool))
    rig.run(pool.close())
    assert (r.error, r.status, r.reused, len(made)) == (None, 200, False, 2)
    assert r.body_len == 0 and made[1].requests[0].startswith(b"HEAD /b ")
