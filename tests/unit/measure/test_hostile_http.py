"""`http_get` against hostile HTTP servers (the scripted endpoint): every length the
server controls is capped, every wait bounded, each failure one line naming the server,
and nothing it does stalls the session for the URLs after it (docs/security.md
"Hostile far ends")."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from http_fake import TlsPeer, serve
from stream_fakes import StreamRig
from web_pki import make_pki

from packetlab.measure import cookies
from packetlab.measure import http as http_mod
from packetlab.measure.cookies import CookieJar
from packetlab.measure.http import Connections, HttpError, http_get, parse_url
from packetlab.measure.http_conn import MAX_IDLE
from packetlab.measure.http_message import MAX_HEADERS

Script = Callable[[str], Sequence[tuple[bytes | None, float]]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Scripted(TlsPeer):
    """Answers each request with what `script(target)` says: (bytes or None = close, delay)."""

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script
        self.requests: list[bytes] = []

    def arrived(self) -> None:
        for head in self.heads():
            self.requests.append(head)
            for out, delay in self.script(head.split(b" ")[1].decode()):
                if out is None:
                    self.close(delay)
                else:
                    self.write(out, delay)


def serving(script: Script, ports: tuple[int, ...] = (80,)) -> tuple[StreamRig, list[Scripted]]:
    return serve(lambda _: Scripted(script), ports)


def test_a_kept_connection_flooded_while_idle_does_not_stall_the_next_url() -> None:
    """A complete response, then 64 MiB nobody asked for, while the connection waits in
    the pool for a next request. Queued, the flood filled the socket's queue, which
    pauses the session's reads: the next URL (another server) hung."""

    def script(target: str) -> Sequence[tuple[bytes | None, float]]:
        if target == "/flood":
            return [(OK, 0.01)] + [(b"z" * 65536, 0.02)] * 1024
        return [(OK, 0.01)]

    rig, _ = serving(script, ports=(80, 8080))
    pool = Connections()
    first = rig.run(http_get(rig.session, "http://192.0.2.80/flood", connections=pool))
    second = rig.run(http_get(rig.session, "http://192.0.2.80:8080/a", connections=pool))
    third = rig.run(http_get(rig.session, "http://192.0.2.80/b", connections=pool))
    rig.run(pool.close())
    assert (first.status, second.status, second.error) == (200, 200, None)
    assert (third.status, third.reused, third.connects) == (200, False, 1)  # not reused
    assert not rig.session.paused


FLOOD = [(b"a" * 65536, 0.02)] * 1024  # 64 MiB, more than the socket's queue holds


def _one(script: Script, url: str = "http://192.0.2.80/", **kw: object) -> http_mod.HttpResult:
    """`url` fetched from a hostile server, then a good server's URL over the same session
    (it must still be fetched)."""
    rig, _ = serving(script)
    rig.endpoint.peers[("192.0.2.81", 80)] = lambda: Scripted(lambda t: [(OK, 0.01)])
    r = rig.run(http_get(rig.session, url, **kw))  # type: ignore[arg-type]
    after = rig.run(http_get(rig.session, "http://192.0.2.81/"))
    assert (after.status, after.error) == (200, None)
    assert not rig.session.paused
    return r


def test_a_header_line_of_10_mib_that_keeps_coming() -> None:
    """Before: the error, then the close waited for an nclose answer that the flood (the
    socket's queue full, the session's reads paused) held back: the run hung."""
    r = _one(lambda t: [(b"HTTP/1.1 200 OK\r\nX: ", 0.01), *FLOOD])
    # curl 7.88.1: (27) Out of memory at a line of 100 KiB, its http_code 200 (was 8)
    assert (r.status, r.exitcode, MAX_HEADERS) == (200, 27, 300 << 10)
    assert r.error == "Out of memory (a header line from 192.0.2.80:80 over curl's 102399 bytes)"


TOO_MANY = 307207  # curl 7.88.1's count for these lines: 17 + the lines X-0 ... X-26524


def test_100000_headers() -> None:
    many = b"".join(b"X-%d: y\r\n" % i for i in range(100_000))
    r = _one(lambda t: [(b"HTTP/1.1 200 OK\r\n" + many + b"\r\n", 0.01)])
    # curl 7.88.1: (56) at the line that makes the header bytes over 300 KiB (was 8)
    assert (r.status, r.exitcode, r.header_size) == (200, 56, TOO_MANY)
    assert r.error == f"Too large response headers: {TOO_MANY} > 307200"


def test_headers_under_the_cap_are_taken() -> None:
    # 20 KiB of headers (h11's default limit was 16 KiB; curl takes 100 KiB a line)
    big = b"X-Big: " + b"b" * 20_000 + b"\r\n"
    r = _one(lambda t: [(b"HTTP/1.1 200 OK\r\n" + big + b"Content-Length: 2\r\n\r\nok", 0.01)])
    assert (r.status, r.error, r.body_len) == (200, None, 2)


def test_a_content_length_body_over_the_limit_that_keeps_coming() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"
    r = _one(lambda t: [(head, 0.01), *FLOOD], max_body=1 << 20)
    assert (r.error, r.exitcode) == ("body from 192.0.2.80:80 larger than 1048576 bytes", 56)


def test_a_chunked_body_over_the_limit_with_a_chunk_size_of_2_to_the_64() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n"
    r = _one(lambda t: [(head, 0.01), *FLOOD], max_body=1 << 20)
    assert (r.error, r.exitcode) == ("body from 192.0.2.80:80 larger than 1048576 bytes", 56)


def test_a_chunked_body_that_never_ends_is_cut_by_the_body_limit() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    r = _one(lambda t: [(head, 0.01)] + [(b"4000\r\n" + b"c" * 0x4000 + b"\r\n", 0.01)] * 200,
             max_body=1 << 20)  # fmt: skip
    assert (r.error, r.exitcode) == ("body from 192.0.2.80:80 larger than 1048576 bytes", 56)


def test_1xx_responses_for_ever() -> None:
    """Before: each 100 Continue was kept (the header bytes of the response) until the
    timeout: 100 MB here, without bound at a faster flood."""
    r = _one(lambda t: [(b"HTTP/1.1 100 Continue\r\n\r\n" * 4000, 0.01)] * 1024)
    # curl 7.88.1's words and count (12,288 blocks of 25 bytes, then a status line)
    assert (r.status, r.exitcode) == (100, 56)
    assert r.error == "Too large response headers: 307223 > 307200"


def test_a_trickle_is_cut_by_the_timeout() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
    r = _one(lambda t: [(head, 0.0)] + [(b"t", 1.0 * i) for i in range(1, 100)], timeout=5.0)
    # curl 7.88.1: its http_code and size_download kept (before: None, 0)
    assert (r.status, r.body_len) == (200, 4)
    assert r.exitcode == 28 and r.error == (
        "timed out: no complete response from 192.0.2.80:80 within 5 s of the connect "
        "(4 body bytes received)"
    )


def test_a_head_cut_by_the_timeout_keeps_its_status_line() -> None:
    # curl 7.88.1 (-m 1, a server silent after "HTTP/1.1 200 OK\r\nX-A: 1\r\n"): 28,
    # http_code 200, size_header 25; before: None and 0
    r = _one(lambda t: [(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n", 0.0)], timeout=1.0)
    assert (r.exitcode, r.status, r.header_size) == (28, 200, 25)


def test_a_bad_chunk_is_curls_56() -> None:  # before: 8, no status
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n"
    r = _one(lambda t: [(head, 0.01), (None, 0.02)])
    assert (r.exitcode, r.status) == (56, 200)


def test_a_close_in_the_middle_of_a_chunk() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nhalf"
    r = _one(lambda t: [(head, 0.01), (None, 0.02)])
    # curl 7.88.1's words, its http_code kept (was None and h11's words)
    assert (r.exitcode, r.status, r.body_len) == (18, 200, 4)
    assert r.error == "transfer closed with outstanding read data remaining"


def test_a_content_length_lie_is_curls_18_with_the_bytes_that_came() -> None:
    # before: status None, size_download 0, h11's words; curl 7.88.1: http_code 200,
    # size_download 10, "transfer closed with 90 bytes remaining to read"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"
    r = _one(lambda t: [(head, 0.01), (None, 0.02)])
    assert (r.exitcode, r.status, r.body_len) == (18, 200, 10)
    assert r.error == "transfer closed with 90 bytes remaining to read"


def test_a_head_answered_with_a_body_is_dropped_and_reused_as_curl() -> None:
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    rig, made = serving(lambda t: [(resp, 0.01)])
    pool = Connections()
    r = rig.run(http_get(rig.session, "http://192.0.2.80/", head=True, connections=pool))
    again = rig.run(http_get(rig.session, "http://192.0.2.80/", connections=pool))
    rig.run(pool.close())
    assert (r.status, r.body_len, r.error) == (200, 0, None)
    # the body nobody asked for is not taken as the next response: dropped, and the
    # connection kept, as curl 7.88.1 ("Excess found: ... (zero-length body)"; until
    # session 25 ours closed it, which curl does not; bytes that come later make an
    # idle connection dead: test_bytes_after_a_complete_response_are_not_the_next_response)
    assert (again.status, again.body_len, again.reused, len(made)) == (200, 5, True, 1)


def test_bytes_after_a_complete_response_are_not_the_next_response() -> None:
    fake = b"HTTP/1.1 418 Fake\r\nContent-Length: 0\r\n\r\n"
    rig, made = serving(lambda t: [(OK, 0.01), (fake, 0.02)], ports=(80, 8080))
    pool = Connections()
    rig.run(http_get(rig.session, "http://192.0.2.80/a", connections=pool))
    rig.run(http_get(rig.session, "http://192.0.2.80:8080/", connections=pool))  # time passes
    again = rig.run(http_get(rig.session, "http://192.0.2.80/b", connections=pool))
    rig.run(pool.close())
    assert (again.status, again.reused, len(made)) == (200, False, 3)


def test_a_gzip_bomb_of_10_gb_stops_at_the_limit() -> None:
    """10 GB of zeros compressed as it goes (10 MB on the wire): the decoder stops at
    the body limit; neither it nor the wire body is kept past it."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip
    mib = b"\0" * (1 << 20)
    first = z.compress(mib) + z.flush(zlib.Z_FULL_FLUSH)  # the gzip header, 1 MiB
    block = z.compress(mib) + z.flush(zlib.Z_FULL_FLUSH)  # byte-aligned: repeatable
    bomb = [first] + [block] * ((10 << 30 >> 20) - 1)  # 10 GiB once inflated
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % (
        sum(map(len, bomb))
    )
    sent = [(head, 0.01), (b"".join(bomb), 0.01)]
    out: list[bytes] = []
    r = _one(lambda t: sent, compressed=True, max_body=64 << 20, on_body=out.append)
    assert (r.error, r.exitcode) == (
        f"decoded body from 192.0.2.80:80 larger than {64 << 20} bytes",
        56,
    )
    assert sum(map(len, out)) <= 64 << 20 and r.body is None


def test_a_set_cookie_flood_is_bounded_as_curls() -> None:
    """10,000 Set-Cookie headers in one response (200 KB, under the header cap): curl
    takes the first 50 of a response (MAX_SET_COOKIE_AMOUNT) and sends at most 150
    cookies in a Cookie header under 8190 bytes. Before: all 10,000 kept (the jar's cap,
    3000, then held), and a request carried every match (a 60 KB Cookie header)."""
    flood = b"".join(b"Set-Cookie: c%05d=%s\r\n" % (i, b"v" * 8) for i in range(10_000))
    resp = b"HTTP/1.1 200 OK\r\n" + flood + b"Content-Length: 0\r\n\r\n"
    rig, made = serving(lambda t: [(resp, 0.01)])
    jar = CookieJar()
    pool = Connections()
    for _ in range(3):  # 3 responses: 150 cookies
        r = rig.run(http_get(rig.session, "http://192.0.2.80/", cookies=jar, connections=pool))
        assert (r.status, r.error) == (200, None)
    rig.run(pool.close())
    assert len(jar.cookies) == 50  # the same 50 names each time
    sent = [line for q in made[0].requests for line in q.split(b"\r\n")
            if line.startswith(b"Cookie: ")]  # fmt: skip
    assert len(sent) == 2 and len(sent[-1]) < cookies.MAX_HEADER and sent[-1].count(b"=") == 50
    assert (cookies.MAX_SET, cookies.MAX_SEND, cookies.MAX_HEADER) == (50, 150, 8190)


def test_the_cookie_header_sent_stays_under_8190_bytes_and_150_cookies() -> None:
    jar = CookieJar()
    for i in range(400):
        jar.set("http", "a.test", "/", f"n{i}=" + "v" * 10)
    header = jar.header("http", "a.test", "/") or ""
    assert header.count("=") == 150  # MAX_SEND
    for i in range(400):
        jar.set("http", "a.test", "/", f"n{i}=" + "v" * 100)
    header = jar.header("http", "a.test", "/") or ""
    assert len(header) < 8190 and 70 < header.count("=") < 150  # MAX_HEADER: ~107 bytes each


def test_a_cookie_of_1_mib_and_one_of_5000_bytes() -> None:
    """1 MiB in one Set-Cookie: over the response's header cap (the response fails, the
    next URL goes); 4097 bytes of value: taken as a header, dropped by the jar (curl's
    MAX_NAME 4096); a Set-Cookie line over 5000 bytes: dropped (MAX_COOKIE_LINE)."""
    big = b"Set-Cookie: big=" + b"x" * (1 << 20) + b"\r\n"
    r = _one(lambda t: [(b"HTTP/1.1 200 OK\r\n" + big + b"Content-Length: 0\r\n\r\n", 0.01)],
             cookies=CookieJar())  # fmt: skip
    assert (r.status, r.exitcode) == (200, 27)  # curl 7.88.1: a line over 100 KiB
    jar = CookieJar()
    long_line = "b=" + "x" * 4000 + "; Path=/" + " " * 1000  # 5010 bytes
    lines = ["a=" + "x" * 4095, long_line, "ok=1"]
    jar.receive("http", "a.test", "/", [("Set-Cookie", line) for line in lines])
    assert [c.name for c in jar.cookies] == ["ok"]


def _chain(target: str) -> Sequence[tuple[bytes | None, float]]:
    n = int(target.strip("/") or 0)  # each hop to another host name, kept alive
    return [(b"HTTP/1.1 302 Found\r\nLocation: http://h%d.test/%d\r\nContent-Length: 0\r\n\r\n"
             % (n + 1, n + 1), 0.01)]  # fmt: skip


def test_a_redirect_chain_through_many_hosts_keeps_few_connections() -> None:
    rig, made = serving(_chain)
    pool = Connections()
    r = rig.run(http_get(rig.session, "http://h0.test/", connect_to="192.0.2.80", follow=True,
                         max_redirs=200, connections=pool))  # fmt: skip
    assert (r.exitcode, r.num_redirects, len(made)) == (47, 200, 201)
    assert len(pool.idle) <= MAX_IDLE
    rig.run(pool.close())


def test_an_endless_redirect_chain_of_trickles_is_bounded_by_the_timeout() -> None:
    """Each hop answers after 4 s, under the 5 s timeout; with -L and no redirect limit
    the URL went on for ever (the timeout was each hop's). Now it is the URL's."""

    def slow(target: str) -> Sequence[tuple[bytes | None, float]]:
        return [(out, 4.0) for out, _ in _chain(target)]

    rig, _ = serving(slow)
    start = rig.clock.seconds()
    r = rig.run(http_get(rig.session, "http://h0.test/", connect_to="192.0.2.80", follow=True,
                         max_redirs=-1, timeout=5.0))  # fmt: skip
    assert rig.clock.seconds() - start < 10 and (r.exitcode, r.num_redirects) == (28, 1)
    assert r.error == (
        "timed out: no response from 192.0.2.80:80 within 5 s of the first hop connect "
        "(0 body bytes received)"
    )


class TlsGarbage(TlsPeer):
    """A TLS server that completes the handshake, then answers the request with bytes
    that are no TLS record, and keeps sending them."""

    def arrived(self) -> None:
        if b"\r\n\r\n" in self.got:
            self.got.clear()
            for out_, delay in [(b"HTTP/1.1 200 OK\r\n\r\n" * 100, 0.02), *FLOOD]:
                self.write(out_, delay)


def test_tls_garbage_after_the_handshake(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    rig = StreamRig()
    rig.endpoint.peers[("192.0.2.80", 443)] = lambda: TlsGarbage(pki)
    rig.endpoint.peers[("192.0.2.81", 80)] = lambda: Scripted(lambda t: [(OK, 0.01)])
    r = rig.run(http_get(rig.session, "https://www.test/", connect_to="192.0.2.80",
                         cafile=str(pki["ca"])))  # fmt: skip
    after = rig.run(http_get(rig.session, "http://192.0.2.81/"))
    assert (after.status, after.error) == (200, None) and not rig.session.paused
    assert (r.status, r.exitcode) == (None, 56)  # curl's for a failed read (it was 35)
    assert r.error == (
        "TLS: bad record type; record layer failure (from 192.0.2.80:443, after the handshake)"
    )


def test_endless_chunked_trailers() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: "
    r = _one(lambda t: [(head, 0.01), *FLOOD])
    # curl 7.88.1: a bad body is 56 (was our 8), its http_code kept
    assert r.status == 200 and r.exitcode == 56
    assert r.error == (
        "HTTP: bad response from 192.0.2.80:80: RemoteProtocolError: response trailers over "
        "409600 bytes"
    )


def test_a_url_with_bytes_above_127_is_sent_as_curl_sends_it() -> None:
    # before: "'ascii' codec can't encode character" (exit 2, after the run began);
    # curl 7.88.1: the path's percent-encoded (lower-case), the query's as they are
    rig, made = serving(lambda t: [(OK, 0.01)])
    r = rig.run(http_get(rig.session, "http://192.0.2.80/a%C3%A9é?q=ü#f"))
    assert (r.status, r.url_effective) == (200, "http://192.0.2.80/a%C3%A9é?q=ü#f")
    assert made[0].requests[0].startswith(b"GET /a%C3%A9%c3%a9?q=\xc3\xbc HTTP/1.1\r\n")


def test_a_url_with_a_space_is_refused_before_anything_is_sent() -> None:
    # before: sent, then h11's "Illegal target characters"; curl 7.88.1: (3)
    with pytest.raises(HttpError, match="URL using bad/illegal format"):
        parse_url("http://192.0.2.80/a b")
    with pytest.raises(HttpError, match="URL using bad/illegal format"):
        parse_url("http://192.0.2.80/a\tb")


def test_a_urls_host_as_curl_takes_it() -> None:
    # curl 7.88.1 (each checked): a name's case kept (Host: Www.Example.COM, its
    # url_effective), IPv4 numbers normalized. Before: lower-cased; 127.1 and the others
    # were names asked of the DNS server
    for url, host in (("http://Www.Example.COM:81/", "Www.Example.COM"),
                      ("http://127.1/", "127.0.0.1"), ("http://0x7F.1/", "127.0.0.1"),
                      ("http://2130706433/", "127.0.0.1"), ("http://0177.0.0.1/", "127.0.0.1"),
                      ("http://1.2.3/", "1.2.0.3"), ("http://4294967295/", "255.255.255.255"),
                      ("http://256.1.1.1/", "256.1.1.1"), ("http://08/", "08"),
                      ("http://0x/", "0x"), ("http://1..2/", "1..2"),
                      ("http://4294967296/", "4294967296"), ("http://[::1]/", "::1")):  # fmt: skip
        assert parse_url(url).host == host, url
    rig, made = serving(lambda t: [(OK, 0.01)])
    r = rig.run(http_get(rig.session, "http://Www.Test/", connect_to="192.0.2.80"))
    assert (r.status, r.url_effective) == (200, "http://Www.Test/")
    assert b"\r\nHost: Www.Test\r\n" in made[0].requests[0]
