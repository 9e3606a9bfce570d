"""What a transfer tells curl's debug callback (`http_get(trace=...)`,
packetlab.measure.http_trace) over the scripted endpoint: the lines and bytes in curl
7.88's order, plain and over TLS (OpenSSL's message callback, the certificate lines,
the records taken in one at a time), a connection reused, a failed connect."""

from __future__ import annotations

from pathlib import Path

import pytest
from http_fake import TlsPeer
from stream_fakes import StreamRig
from web_pki import make_pki

from packetlab.measure.http import Connections, http_get
from packetlab.measure.http_trace import DATA_IN, HEADER_IN, HEADER_OUT, SSL_DATA_IN, TEXT

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"


class TwoRecords(TlsPeer):
    """Answers each request with its head and its body as two writes (over TLS: two
    records) sent together, the connection kept."""

    def arrived(self) -> None:
        if b"\r\n\r\n" in self.got:
            self.got.clear()
            if self.tls is None:
                self.write(HEAD + b"hello")
                return
            self.tls.sendall(HEAD)
            self.tls.sendall(b"hello")
            self.flush()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def told(events: list[tuple[str, bytes]]) -> list[str]:
    return [d.decode().rstrip("\n") for k, d in events if k == TEXT]


def test_plain_transfers_told_as_curl() -> None:
    rig = StreamRig()
    rig.endpoint.peers[("192.0.2.80", 80)] = TwoRecords
    events: list[tuple[str, bytes]] = []
    pool = Connections()
    for _ in range(2):
        r = rig.run(http_get(rig.session, "http://192.0.2.80/a", connections=pool,
                             trace=lambda k, d: events.append((k, d))))  # fmt: skip
        assert r.status == 200
    rig.run(pool.close())
    text = told(events)
    assert text[:2] == [
        "  Trying 192.0.2.80:80...",
        "Connected to 192.0.2.80 (192.0.2.80) port 80 (#0)",
    ]
    assert "Re-using existing connection #0 with host 192.0.2.80" in text
    assert text.count("Connection #0 to host 192.0.2.80 left intact") == 2
    kinds = [k for k, _ in events]
    assert kinds[2:7] == [HEADER_OUT, HEADER_IN, HEADER_IN, HEADER_IN, DATA_IN]
    assert [d for k, d in events if k == HEADER_IN][:3] == HEAD.splitlines(keepends=True)
    assert (DATA_IN, b"hello") in events


def test_tls_told_as_curl_a_record_at_a_time(pki: dict[str, Path]) -> None:
    rig = StreamRig()
    rig.endpoint.peers[("192.0.2.80", 443)] = lambda: TwoRecords(pki)
    events: list[tuple[str, bytes]] = []

    def trace(kind: str, data: bytes) -> None:
        events.append((kind, data))

    r = rig.run(http_get(rig.session, "https://www.test/", connect_to="192.0.2.80",
                         cafile=str(pki["ca"]), trace=trace))  # fmt: skip
    assert r.status == 200 and r.error is None
    text = told(events)
    matched = ' subjectAltName: host "www.test" matched cert\'s "www.test"'
    for line in ("Connecting to hostname: 192.0.2.80", "ALPN: offers h2,http/1.1",
                 "TLSv1.3 (OUT), TLS handshake, Client hello (1):", f" CAfile: {pki['ca']}",
                 " CApath: none", "Server certificate:", " subject: CN=localhost", matched,
                 " issuer: CN=pktlab test ca", " SSL certificate verify ok.",
                 "using HTTP/1.x"):  # fmt: skip
        assert line in text, line
    assert text.index(f" CAfile: {pki['ca']}") == text.index(
        "TLSv1.3 (OUT), TLS handshake, Client hello (1):") + 1  # fmt: skip
    # the body's record taken in after the head's lines (its header first), as curl's
    kinds = [k for k, _ in events]
    last_head = max(i for i, k in enumerate(kinds) if k == HEADER_IN)
    assert SSL_DATA_IN in kinds[last_head : kinds.index(DATA_IN)]


def test_a_refused_connect_told_as_curl() -> None:
    rig = StreamRig()
    events: list[tuple[str, bytes]] = []
    r = rig.run(
        http_get(rig.session, "http://192.0.2.80:9/", trace=lambda k, d: events.append((k, d)))
    )
    assert r.exitcode == 7
    text = told(events)
    assert text[0] == "  Trying 192.0.2.80:9..."
    assert text[1] == "connect to 192.0.2.80 port 9 failed: Connection refused"
    assert text[2].startswith("Failed to connect to 192.0.2.80 port 9 after ")
    assert text[3] == "Closing connection 0"


def test_cookie_engine_lines_as_curl() -> None:
    from packetlab.measure.cookies import CookieJar

    jar = CookieJar(clock=lambda: 1000)
    notes = jar.receive("http", "h.test", "/a/b", [("Set-Cookie", "a=b"), ("X", "y"),
                        ("set-cookie", "a=c; Max-Age=10"), ("Set-Cookie", "bad"),
                        ("Set-Cookie", "d=e; Max-Age=0")])  # fmt: skip
    assert notes == ['Added cookie a="b" for domain h.test, path /a, expire 0',
                     'Replaced cookie a="c" for domain h.test, path /a, expire 1010',
                     None, None]  # fmt: skip
