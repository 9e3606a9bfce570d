# mypy: disable-error-code="union-attr"
# (transports and wrapped protocols are Optional until connected; the harness connects them)
# Run as a child process: imports only the standard library, Twisted and packetlab.
"""Real local services for the measurement tests, run as a child process:

    python measure_services.py dns                  # prints "PORT" (UDP and TCP)
    python measure_services.py http                 # prints "PORT"
    python measure_services.py https CERT KEY       # prints "PORT"
    python measure_services.py hostile-http         # prints "PORT"

DNS: a Twisted names authoritative server for `test.` (A/AAAA/CNAME/TXT/MX, a name whose
answer needs more than 512 bytes). HTTP(S): Twisted web with pages /page/N (N-dependent
bytes, Content-Length), /chunked (Transfer-Encoding: chunked), /slow (chunks 50 ms apart),
/empty (204) and /close (a body ended by closing the connection: TLS close_notify on
HTTPS), all on 127.0.0.1, port 0.
Hostile HTTP (`Hostile`): /flood-after (a complete response on a kept connection, then
64 MiB nobody asked for), /flood-header (a header line that goes on for 64 MiB), /1xx
(100 Continue for ever, 64 MiB of them), /trickle (a body a byte a second), /slow (30
bytes 0.1 s apart), /cookies
(10,000 Set-Cookie headers), anything else a 2-byte 200.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from childserver import listen_udp_tcp
from twisted.internet import protocol, ssl
from twisted.internet import reactor as _reactor
from twisted.names import dns, server
from twisted.names.authority import FileAuthority
from twisted.web import resource
from twisted.web import server as webserver

reactor: Any = _reactor  # the global reactor (mypy sees too little of it)


def page(n: int) -> bytes:
    """Body of /page/N (also used by the tests to check the hash)."""
    seed = hashlib.sha256(str(n).encode()).digest()
    return (seed * (1 + n * 37 % 400))[: 1000 + n * 997 % 60000]


class Zone(FileAuthority):
    def __init__(self) -> None:
        FileAuthority.__init__(self, None)
        soa = dns.Record_SOA(mname=b"ns.test", rname=b"h.test", serial=1, ttl=60)
        self.soa = (b"test", soa)  # type: ignore[assignment]
        self.records = {  # type: ignore[assignment]
            b"test": [soa],
            b"a.test": [dns.Record_A("192.0.2.1", ttl=300), dns.Record_A("192.0.2.2", ttl=300)],
            b"v6.test": [dns.Record_AAAA("2001:db8::1", ttl=300)],
            b"www.test": [dns.Record_CNAME(b"v6.test", ttl=60)],
            b"mx.test": [dns.Record_MX(10, b"a.test", ttl=60)],
            b"big.test": [dns.Record_TXT(b"%03d" % i + b"x" * 180, ttl=60) for i in range(8)],
        }


class Paged(resource.Resource):
    isLeaf = True

    def render_GET(self, request: webserver.Request) -> bytes | int:
        path = request.path.decode()
        if path.startswith("/page/"):
            return page(int(path.rsplit("/", 1)[1]))
        if path == "/empty":
            request.setResponseCode(204)
            return b""
        if path in ("/chunked", "/slow"):
            parts = [page(i)[:3000] for i in range(5)]
            delay = 0.05 if path == "/slow" else 0.0

            def more() -> None:
                if parts:
                    request.write(parts.pop(0))
                    reactor.callLater(delay, more)
                else:
                    request.finish()

            more()
            return webserver.NOT_DONE_YET
        request.setResponseCode(404)
        return b"not found"


class CloseDelimited(protocol.Protocol):
    """/close: the status line and headers, the body, then the connection closes."""

    def dataReceived(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            body = page(7)
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body)
            self.transport.loseConnection()


FLOOD = 64 << 20
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Hostile(protocol.Protocol):
    """A hostile HTTP/1.1 server (keeps connections open): see the module docstring."""

    def __init__(self) -> None:
        self.buf = b""
        self.gone = False

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            if path == b"/flood-after":
                self.transport.write(OK)
                self._flood(b"z" * (1 << 20), FLOOD)
            elif path == b"/flood-header":
                self.transport.write(b"HTTP/1.1 200 OK\r\nX: ")
                self._flood(b"a" * (1 << 20), FLOOD)
            elif path == b"/1xx":
                self._flood(b"HTTP/1.1 100 Continue\r\n\r\n" * 40000, FLOOD)
            elif path == b"/trickle":
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                self._flood(b"t", 1000, every=1.0)
            elif path == b"/slow":
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n")
                self._flood(b"s", 30, every=0.1)
            elif path == b"/cookies":
                many = b"".join(b"Set-Cookie: c%05d=v\r\n" % i for i in range(10_000))
                self.transport.write(b"HTTP/1.1 200 OK\r\n" + many + OK[17:])
            else:
                self.transport.write(OK)

    def _flood(self, piece: bytes, total: int, every: float = 0.001) -> None:
        if self.gone or total <= 0:
            return
        self.transport.write(piece)
        reactor.callLater(every, self._flood, piece, total - len(piece), every)

    def connectionLost(self, reason: object = None) -> None:
        self.gone = True


class Router(protocol.Protocol):
    """Dispatch on the request line: /close to CloseDelimited, the rest to Twisted web."""

    def __init__(self, site: webserver.Site) -> None:
        self.site = site
        self.buf = b""
        self.inner: protocol.Protocol | None = None

    def dataReceived(self, data: bytes) -> None:
        kept = self.inner is not None and not isinstance(self.inner, CloseDelimited)
        if kept and data.split(b" ", 2)[1:2] == [b"/close"]:  # on a kept connection too
            self.transport.unregisterProducer()  # Twisted web's: else no close ever
            self.inner.connectionLost(None)  # type: ignore[arg-type]
            self.inner = CloseDelimited()
            self.inner.makeConnection(self.transport)
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        self.buf += data
        if b"\r\n" not in self.buf:
            return
        if self.buf.split(b" ", 2)[1:2] == [b"/close"]:
            self.inner = CloseDelimited()
        else:
            self.inner = self.site.buildProtocol(self.transport.getPeer())
        self.inner.makeConnection(self.transport)
        self.inner.dataReceived(self.buf)

    def connectionLost(self, reason: object = None) -> None:
        if self.inner is not None:
            self.inner.connectionLost(reason)  # type: ignore[arg-type]


class RouterFactory(protocol.Factory):
    def __init__(self) -> None:
        self.site = webserver.Site(Paged())

    def buildProtocol(self, addr: object) -> Router:
        return Router(self.site)


def main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "dns":
        f = server.DNSServerFactory(authorities=[Zone()])
        port = listen_udp_tcp(reactor, dns.DNSDatagramProtocol(f), f, "127.0.0.1")
    elif kind == "http":
        port = reactor.listenTCP(0, RouterFactory(), interface="127.0.0.1").getHost().port
    elif kind == "hostile-http":
        hostile = protocol.Factory.forProtocol(Hostile)
        port = reactor.listenTCP(0, hostile, interface="127.0.0.1").getHost().port
    else:
        pem = Path(argv[1]).read_text() + Path(argv[2]).read_text()
        cert = ssl.PrivateCertificate.loadPEM(pem)
        # ALPN offered by curl (h2, http/1.1) needs a server answer, or OpenSSL alerts.
        options = ssl.CertificateOptions(
            privateKey=cert.privateKey.original,
            certificate=cert.original,
            acceptableProtocols=[b"http/1.1"],
        )
        port = reactor.listenSSL(0, RouterFactory(), options, interface="127.0.0.1").getHost().port
    print(port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
