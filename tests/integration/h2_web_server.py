# Run as a child process (Twisted's reactor of its own).
"""A real HTTP/2 server for the curl side-by-side tests: twisted.web over TLS, HTTP/2
chosen through ALPN (h2 and priority installed), HTTP/1.1 for a client without it:

    python h2_web_server.py CERT KEY     # prints "TLSPORT PLAINPORT" (127.0.0.1)

It serves until killed; the plain port speaks HTTP/1.1 only (twisted.web has no h2c).

/echo (any path) answers the request it saw as JSON; /fields the bytes of its x-*
fields and its referer (hex); /r/CODE?to=WHERE redirects;
/big a 300,000-byte body (past the initial flow-control windows); /d/S answers after S
seconds (for --parallel); /n/BYTES a body of BYTES (--limit-rate); /up answers how many
body bytes came and when, in seconds from its header block: the first, half of them and
the last (--limit-rate uploads, the server's view). Fixed Server and Date
headers, so that header blocks do not depend on the clock. `x-request` counts the requests
of the connection: 2 or more, it was reused.
"""

from __future__ import annotations

import json
import sys
import time
from urllib.parse import parse_qs, urlsplit

from twisted.internet import endpoints, reactor, ssl
from twisted.internet.defer import gatherResults
from twisted.web import resource, server

# Counted on the connection object itself (HTTP/2: the H2Connection of the stream): a
# dict keyed by id() gave a new connection a dead one's count when its address was reused
# (CI: x-request 3..6 for the four requests of a fresh connection).
COUNT = "_test_requests"


class Timed(server.Request):
    """A request noting when its header block came (made then) and its body's chunks."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.began = time.monotonic()
        self.chunks: list[tuple[float, int]] = []  # (s since the head, bytes so far)

    def handleContentChunk(self, data: bytes) -> None:
        got = (self.chunks[-1][1] if self.chunks else 0) + len(data)
        self.chunks.append((time.monotonic() - self.began, got))
        super().handleContentChunk(data)


class Answer(resource.Resource):
    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        request.setHeader(b"server", b"test/1")
        request.setHeader(b"date", b"Thu, 01 Jan 2026 00:00:00 GMT")
        channel = getattr(request.channel, "_conn", request.channel)
        setattr(channel, COUNT, getattr(channel, COUNT, 0) + 1)
        request.setHeader(b"x-request", str(getattr(channel, COUNT)).encode())
        u = urlsplit(request.uri.decode())
        if u.path.startswith("/r/"):
            request.setResponseCode(int(u.path.split("/")[2]))
            request.setHeader(b"location", parse_qs(u.query)["to"][0].encode())
            request.setHeader(b"content-length", b"5")
            return b"moved"
        if u.path.startswith("/d/"):  # the answer after S seconds (/d/S)
            from twisted.internet import reactor as clock

            out = u.path.encode()
            request.setHeader(b"content-length", str(len(out)).encode())
            clock.callLater(float(u.path[3:]), _finish, request, out)
            return server.NOT_DONE_YET  # type: ignore[return-value]
        if u.path.startswith("/n/"):  # /n/BYTES: that many bytes (--limit-rate)
            out = b"x" * int(u.path[3:])
            request.setHeader(b"content-length", str(len(out)).encode())
            return out
        if u.path == "/up" and isinstance(request, Timed):  # the body's times
            body = request.content.read() if request.content is not None else b""
            times = request.chunks or [(0.0, 0)]
            half = next(t for t, got in times if got >= times[-1][1] / 2)
            out = json.dumps({"n": len(body), "first": times[0][0], "half": half,
                              "last": times[-1][0]}).encode()  # fmt: skip
            request.setHeader(b"content-length", str(len(out)).encode())
            return out
        if u.path == "/fields":  # a field's bytes as they came (not-ASCII ones too)
            raw = request.requestHeaders.getAllRawHeaders()
            out = json.dumps(sorted((k.decode("latin-1").lower(), [v.hex() for v in vs])
                                    for k, vs in raw if k.lower().startswith(b"x-") or
                                    k.lower() == b"referer")).encode()  # fmt: skip
            request.setHeader(b"content-length", str(len(out)).encode())
            return out
        if u.path == "/big":
            out = bytes(range(256)) * 1172 + b"x" * 68
            request.setHeader(b"content-type", b"application/octet-stream")
            request.setHeader(b"content-length", str(len(out)).encode())
            return out
        body = request.content.read() if request.content is not None else b""
        seen = {"method": request.method.decode(), "path": u.path + ("?" + u.query if u.query
                else ""), "body": body.decode("latin-1"),
                "version": request.clientproto.decode()}  # fmt: skip
        out = json.dumps(seen).encode()
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"content-length", str(len(out)).encode())
        return out


def _finish(request: server.Request, out: bytes) -> None:
    request.write(out)
    request.finish()


def main() -> None:
    cert, key = sys.argv[1], sys.argv[2]
    with open(cert, "rb") as f:
        pem = f.read()
    with open(key, "rb") as f:
        pem += f.read()
    cert_key = ssl.PrivateCertificate.loadPEM(pem)
    options = ssl.CertificateOptions(
        privateKey=cert_key.privateKey.original,
        certificate=cert_key.original,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )
    site = server.Site(Answer())
    site.requestFactory = Timed
    tls = endpoints.SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1")
    plain = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")

    def listening(ports: list[object]) -> None:
        print(*(p.getHost().port for p in ports), flush=True)  # type: ignore[attr-defined]

    gatherResults([tls.listen(site), plain.listen(site)]).addCallback(listening)
    reactor.run()


if __name__ == "__main__":
    main()
