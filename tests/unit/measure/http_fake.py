"""The fake web servers' shared part, for the HTTP unit tests (imported by them): a TCP far
end that speaks plain or TLS (a pyOpenSSL server connection on memory BIOs), and `serve`,
a scripted endpoint whose connects to 192.0.2.80 reach a new one of them.

A subclass answers in `arrived()`, called after each chunk with the plaintext so far in
`got`; `send` encrypts when TLS is on, `shutdown` sends a close_notify, `close` ends TCP.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from OpenSSL import SSL
from stream_fakes import Peer, StreamRig

P = TypeVar("P", bound=Peer)


class TlsPeer(Peer):
    """Plain, or TLS with `pki` (the server certificate and key of `web_pki.make_pki`);
    `alpn` the protocols it picks from (the first of its list the client offers)."""

    def __init__(self, pki: dict[str, Path] | None = None, alpn: list[bytes] | None = None):
        super().__init__()
        self.tls: SSL.Connection | None = None
        self.sni: list[bytes | None] = []  # the server names asked for, one a handshake
        self.handshakes = 0
        self.offered: list[bytes] = []  # the client's ALPN list
        if pki is None:
            return
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.use_certificate_file(str(pki["server"]))
        ctx.use_privatekey_file(str(pki["key"]))
        ctx.set_tlsext_servername_callback(lambda c: self.sni.append(c.get_servername()))
        if alpn is not None:

            def pick(conn: SSL.Connection, offered: list[bytes]) -> Any:
                self.offered = list(offered)
                return next((p for p in alpn if p in offered), SSL.NO_OVERLAPPING_PROTOCOLS)

            ctx.set_alpn_select_callback(pick)
        self.tls = SSL.Connection(ctx, None)
        self.tls.set_accept_state()

    def received(self, data: bytes) -> None:
        if self.tls is None:
            self.got += data
        else:
            self.tls.bio_write(data)
            done = self.tls.get_state_string() == b"SSL negotiation finished successfully"
            try:
                self.tls.do_handshake()
                self.handshakes += not done
                while True:
                    self.got += self.tls.recv(65536)
            except (SSL.WantReadError, SSL.ZeroReturnError):
                pass
            except SSL.Error:  # the client gave up (a bad certificate): nothing more
                return
            self.flush()
        self.arrived()

    def arrived(self) -> None:
        """What came so far is in `got`: answer it (subclasses)."""

    def heads(self) -> list[bytes]:
        """The complete request heads in `got`, taken out of it (bodies are left)."""
        out = []
        while b"\r\n\r\n" in self.got:
            head, _, rest = bytes(self.got).partition(b"\r\n\r\n")
            self.got[:] = rest
            out.append(head)
        return out

    def flush(self, delay: float = 0.0) -> None:
        """What OpenSSL has to send, onto the wire."""
        assert self.tls is not None
        out = b""
        while True:
            try:
                out += self.tls.bio_read(65536)
            except SSL.WantReadError:
                break
        if out:
            self.write(out, delay)

    def send(self, data: bytes, delay: float = 0.0) -> None:
        if self.tls is None:
            self.write(data, delay)
        else:
            self.tls.sendall(data)
            self.flush(delay)

    def shutdown(self, delay: float = 0.0) -> None:
        """A TLS close_notify (the TCP connection left open)."""
        if self.tls is not None:
            self.tls.shutdown()
            self.flush(delay)


def serve(make: Callable[[int], P], ports: tuple[int, ...] = (80,)) -> tuple[StreamRig, list[P]]:
    """A rig whose endpoint connects to 192.0.2.80 on `ports` reach a new `make(port)`
    each; the list gets every one made, in order."""
    rig = StreamRig()
    made: list[P] = []

    def new(port: int) -> P:
        made.append(make(port))
        return made[-1]

    for port in ports:
        rig.endpoint.peers[("192.0.2.80", port)] = lambda port=port: new(port)  # type: ignore[misc]
    return rig, made
