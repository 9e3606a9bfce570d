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


Answer = tuple[int, list[tuple[str, str]], bytes]  # status, header fields, body
H2Handler = Callable[[str, str, dict[str, str], bytes], Answer]


def hello(method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
    """`ok TARGET` for any request; /r?to=WHERE a 302 there."""
    if target.startswith("/r?to="):
        return 302, [("location", target[6:]), ("content-length", "5")], b"moved"
    text = f"ok {method} {target} {len(body)}".encode()
    return 200, [("content-type", "text/plain"), ("content-length", str(len(text)))], text


class H2Server(TlsPeer):
    """An HTTP/2 server: over TLS with `pki` where ALPN picks h2 (from `alpn`; a client
    that chose http/1.1 gets HTTP/1.1 answers), h2c without `pki` (prior knowledge, or an
    HTTP/1.1 `Upgrade: h2c` request with `upgrade`). `handler` answers each request;
    the connection stays open. `requests` has what came: (pseudo and other fields, body)."""

    def __init__(
        self,
        handler: H2Handler = hello,
        pki: dict[str, Path] | None = None,
        alpn: tuple[bytes, ...] = (b"h2", b"http/1.1"),
        upgrade: bool = False,
        delay: float = 0.0,
    ) -> None:
        import h2.config
        import h2.connection

        super().__init__(pki, list(alpn))
        self.handler, self.upgrade, self.delay = handler, upgrade, delay
        config = h2.config.H2Configuration(client_side=False, header_encoding="latin-1")
        self.h2 = h2.connection.H2Connection(config=config)
        self.mode: str | None = None  # "h2" or "http/1.1" once known
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.unsent: dict[int, bytes] = {}

    def arrived(self) -> None:
        if self.mode is None:
            if self.tls is not None:
                if self.tls.get_state_string() != b"SSL negotiation finished successfully":
                    return
                self.mode = "h2" if self.tls.get_alpn_proto_negotiated() == b"h2" else "http/1.1"
            elif self.got.startswith(b"PRI "[: len(self.got)]) and len(self.got) < 4:
                return
            else:
                self.mode = "h2" if self.got.startswith(b"PRI ") else "http/1.1"
            if self.mode == "h2":
                self.h2.initiate_connection()
        if self.mode == "h2":
            self._h2()
        elif self.mode == "http/1.1":
            self._http1()

    def _http1(self) -> None:
        for head in self.heads():
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ")
            fields = {k.strip().lower(): v.strip()
                      for k, _, v in (x.partition(":") for x in lines[1:])}  # fmt: skip
            self.requests.append(({":method": method, ":path": target, **fields}, b""))
            if self.upgrade and fields.get("upgrade") == "h2c":
                self.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                          b"Upgrade: h2c\r\n\r\n", self.delay)  # fmt: skip
                self.h2.initiate_upgrade_connection(fields["http2-settings"].encode())
                self.mode = "h2"
                self.streams[1] = (self.requests[-1][0], bytearray())
                self._answer(1)
                self._h2()
                return
            status, headers, body = self.handler(method, target, fields, b"")
            head_out = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
            self.send(head_out.encode() + b"\r\n" + body, self.delay)

    def _h2(self) -> None:
        import h2.events

        data, self.got[:] = bytes(self.got), b""
        for ev in self.h2.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                self.streams[ev.stream_id] = (dict(ev.headers), bytearray())  # type: ignore[arg-type]
            elif isinstance(ev, h2.events.DataReceived):
                self.streams[ev.stream_id][1].extend(ev.data)
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.WindowUpdated):
                self._push()
            elif isinstance(ev, h2.events.StreamEnded):
                self.requests.append(
                    (self.streams[ev.stream_id][0], bytes(self.streams[ev.stream_id][1]))
                )
                self._answer(ev.stream_id)
        out = self.h2.data_to_send()
        if out:
            self.send(out, self.delay)

    def _answer(self, sid: int) -> None:
        fields, body = self.streams.pop(sid)
        status, headers, out = self.handler(fields[":method"], fields[":path"], fields,
                                            bytes(body))  # fmt: skip
        self.h2.send_headers(sid, [(":status", str(status)), *headers],
                             end_stream=not out or fields[":method"] == "HEAD")  # fmt: skip
        if out and fields[":method"] != "HEAD":
            self.unsent[sid] = out
            self._push()
        self.send(self.h2.data_to_send(), self.delay)

    def _push(self) -> None:
        """Response bodies as the client's windows and frame size let them go."""
        for sid, out in list(self.unsent.items()):
            while out:
                room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                if room <= 0:
                    break
                self.h2.send_data(sid, out[:room], end_stream=len(out) <= room)
                out = out[room:]
            if out:
                self.unsent[sid] = out
            else:
                del self.unsent[sid]
