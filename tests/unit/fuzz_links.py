"""Fuzz targets for the links hostile peers hold (session 27): the proxy's ClientHello
reader and endpoint port, a broker link, the controller's dispatch of an endpoint's
messages, the TLS 1.3 record layer. The invariants are in each target's docstring;
`fuzz_decoders` lists them."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from fuzz_common import pieces

# -------------------------------------------------------------------------- clienthello


def fuzz_clienthello(data: bytes) -> None:
    """The proxy's ClientHello reader on any bytes (the first picks the cap): the outcome
    (SNI, or HelloError's reason) is the same whether the bytes come at once or cut in
    pieces; a Hello's `raw` is every byte given (whole: all of them; cut: up to the piece
    that completed it); while it waits it never holds more than `cap` bytes; an error is
    a HelloError with a reason, nothing else. The proxy's endpoint port given the same
    pieces and then the close counts one refusal, the reader's reason."""
    from packetlab.proxy.clienthello import ClientHelloReader, Hello, HelloError

    cap = (64, 512, 4096, 16384)[data[0] % 4] if data else 16384
    body = data[1:]

    def run(chunks: list[bytes]) -> tuple[tuple[Any, ...], bytes]:
        r = ClientHelloReader(cap)
        fed = b""
        for chunk in chunks:
            fed += chunk
            try:
                got = r.feed(chunk)
            except HelloError as e:
                assert e.reason in _HELLO_REASONS, e.reason
                assert str(e)
                return ("error", e.reason), fed
            if got is not None:
                assert isinstance(got, Hello)
                assert got.raw == fed, "Hello.raw is not the bytes fed"
                return ("hello", got.sni), fed
            assert r.buffered <= cap, f"{r.buffered} bytes held (cap {cap})"
        return ("wait",), fed

    whole, _ = run([body])
    cut, _ = run(pieces(body))
    assert whole == cut, f"{whole} at once, {cut} cut in pieces"
    # the proxy's endpoint port over a fake transport, the pieces then the close: one
    # refusal counted, for the reader's reason (no backlog is registered: a name is
    # unknown_snikey; a hello that never completed is eof)
    refusals = _proxy_refusals(cap, pieces(body))
    want = {
        "error": whole[-1],
        "hello": "no_sni" if whole[-1] is None else "unknown_snikey",
        "wait": "eof",
    }[str(whole[0])]
    assert refusals == {want: 1}, f"refusals {refusals}, the reader's outcome {whole}"


def _proxy_refusals(cap: int, pieces: list[bytes]) -> dict[str, int]:
    from twisted.internet.error import ConnectionDone
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport
    from twisted.python.failure import Failure

    from packetlab.proxy.server import Proxy

    class Transport(StringTransport):
        def setTcpNoDelay(self, enabled: bool) -> None:
            pass

        def setTcpKeepAlive(self, enabled: bool) -> None:
            pass

    proxy = Proxy(Clock(), _proxy_options(), hello_cap=cap)
    ep: Any = proxy.endpoint_factory().buildProtocol(None)
    t = Transport()
    ep.makeConnection(t)
    for piece in pieces:
        if t.disconnecting:
            break
        ep.dataReceived(piece)
    if not t.disconnecting:
        ep.readConnectionLost()  # the endpoint's FIN
    ep.connectionLost(Failure(ConnectionDone()))
    return dict(proxy.stats.refusals)


_PROXY: dict[str, Any] = {}


def _proxy_options() -> Any:
    if "options" not in _PROXY:
        from packetlab.ppks import issue_certificate
        from packetlab.tls import AuthMode, Credentials, PPKSServerOptions, ServerEntry

        key = _broker_key("proxy")
        cert = issue_certificate("agent", key, key, 0, 2**31 - 1)
        entry = ServerEntry(Credentials([cert], key), AuthMode.AGENT, require_client_cert=False)
        _PROXY["options"] = PPKSServerOptions({}, default=entry)
    return _PROXY["options"]


_HELLO_REASONS = frozenset(
    {"not_tls", "bad_record", "too_large", "not_client_hello", "malformed", "bad_sni"}
)


def _hello_seeds() -> list[bytes]:
    def ext(etype: int, body: bytes) -> bytes:
        return struct.pack(">HH", etype, len(body)) + body

    def sni(name: bytes) -> bytes:
        entry = b"\x00" + struct.pack(">H", len(name)) + name
        return ext(0, struct.pack(">H", len(entry)) + entry)

    def hello(exts: bytes, records: int = 1) -> bytes:
        body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
        body += struct.pack(">H", len(exts)) + exts
        hs = b"\x01" + len(body).to_bytes(3, "big") + body
        step = -(-len(hs) // records)
        out = b""
        for i in range(0, len(hs), step):
            part = hs[i : i + step]
            out += b"\x16\x03\x01" + struct.pack(">H", len(part)) + part
        return out

    named = sni(b"example.test")
    alpn = ext(16, b"\x00\x03\x02h2")
    return [
        b"\x03" + hello(named),
        b"\x03" + hello(alpn + named + ext(0xFF01, b"\x00")),
        b"\x02" + hello(named, records=3),
        b"\x03" + hello(alpn),
        b"\x01" + hello(named + ext(21, bytes(300))),
    ]


# ------------------------------------------------------------------------------- broker


def fuzz_broker(data: bytes) -> None:
    """A broker link (subscribe port for an even first byte, publish for odd) over a
    fake transport and clock gets any bytes, cut in pieces, time passing between them:
    no exception leaves the protocol, each answer is a `result` frame and there are no
    more of them than frames sent (one per request until the link closes), the xcerts
    held for one request stay within MAX_CHAIN_CERTS and MAX_XCERT_BYTES, and once the
    link is lost the registry holds nothing of it."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from packetlab import wire
    from packetlab.broker.protocol import BrokerFactory
    from packetlab.broker.registry import Registry
    from packetlab.broker.session import MAX_XCERT_BYTES, Role
    from packetlab.broker.throttle import Throttle
    from packetlab.ppks.verify import MAX_CHAIN_CERTS

    class Transport(StringTransport):
        def abortConnection(self) -> None:
            self.loseConnection()

    clock = Clock()
    clock.advance(_BROKER_NOW)
    role = Role.SUBSCRIBE if not data or data[0] % 2 == 0 else Role.PUBLISH
    registry = Registry(clock=clock.seconds)
    factory = BrokerFactory(role, registry, Throttle(base=0.25), clock)
    proto = factory.buildProtocol(None)
    t = Transport(peerAddress=IPv4Address("TCP", "10.0.0.1", 1234))
    proto.makeConnection(t)
    assert proto.session is not None
    # the key TLS would have verified (the seeds' chains are for it): a link in a test
    # has no TLS
    proto.session.agent_key = _broker_agents()[role is Role.PUBLISH]
    sent = list(wire.Framer().feed(data[1:]))
    for piece in pieces(data[1:]):
        if t.disconnecting:
            break
        proto.dataReceived(piece)
        clock.advance(0.05)  # (a cert in 3-byte pieces: well within the idle timeout)
        s = proto.session
        if s is not None:
            assert len(s.xcerts) <= MAX_CHAIN_CERTS, f"{len(s.xcerts)} xcerts held"
            assert sum(map(len, s.xcerts)) <= MAX_XCERT_BYTES, "xcert bytes unbounded"
    for _ in range(8):
        clock.advance(5)
    answers = list(wire.Framer().feed(t.value()))
    assert all(isinstance(a, wire.Result) for a in answers), answers
    assert len(answers) <= len(sent), f"{len(answers)} answers to {len(sent)} frames"
    if not t.disconnecting:  # (a link closed after an error answers nothing after it)
        assert len(answers) == len(sent), f"{len(answers)} answers to {len(sent)} frames"
    proto.connectionLost(_lost())
    for _ in range(8):
        clock.advance(60)
    assert not registry.publications, "a publication outlived its link"
    assert not registry.subscribers, "a subscription outlived its link"


_BROKER_NOW = 1_750_000_000.0


def _lost() -> Any:
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    return Failure(ConnectionDone())


def _broker_key(name: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


def _broker_agents() -> tuple[bytes, bytes]:
    """The raw keys of the seeds' subscriber (an endpoint) and publisher (a controller)."""
    from packetlab.ppks import raw_public_key

    if "agents" not in _BROKER:
        _BROKER["agents"] = (raw_public_key(_broker_key("ep")), raw_public_key(_broker_key("xc")))
    agents: tuple[bytes, bytes] = _BROKER["agents"]
    return agents


_BROKER: dict[str, Any] = {}


def _broker_seeds() -> list[bytes]:
    from packetlab import wire
    from packetlab.ppks import issue_certificate, key_id, raw_public_key

    eop, ep, exper, xc = (_broker_key(n) for n in ("eop", "ep", "exper", "xc"))
    nb, na = 0, 2**31 - 1
    sub = issue_certificate("subcmd", eop, ep, nb, na)
    pub = issue_certificate("pubcmd", exper, xc, nb, na)
    priv = issue_certificate("exppriv", eop, exper, nb, na)
    zero = bytes(32)
    xd = b"controller_addr=h;"
    out = [
        b"\x00" + wire.encode(wire.Xsub([b"public"], zero, b"")),
        b"\x00"
        + wire.encode(wire.Xcert(sub.der))
        + wire.encode(wire.Xsub([key_id(eop)], raw_public_key(eop), b"")),
        b"\x01" + wire.encode(wire.Xpub([b"public"], zero, xd)),
        b"\x01"
        + wire.encode(wire.Xcert(pub.der))
        + wire.encode(wire.Xcert(priv.der))
        + wire.encode(wire.Xpub([key_id(eop)], raw_public_key(eop), xd)),
        b"\x01" + wire.encode(wire.Xpub([b"public", b"p2"], zero, xd)) * 2,
    ]
    return out


# --------------------------------------------------------------------------- controller


def fuzz_controller(data: bytes) -> None:
    """A hostile endpoint's bytes through the controller's dispatch (`EndpointSession`
    over a fake transport and clock), the input read as a program: each step a byte
    (its low 2 bits: feed the next 1..64 bytes, make a request, drain a socket, let time
    pass). After every step a failed request failed with a ControllerError (never a
    decoding error), the session's close reason is one, socket queues stay within
    `max_notes` and linfo within MAX_LINFO; once the connection is lost every request,
    ntag and get() has fired and nothing is pending."""
    from twisted.internet.defer import Deferred
    from twisted.internet.error import ConnectionDone
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport
    from twisted.python.failure import Failure

    from packetlab import wire
    from packetlab.controller import ControllerError, EndpointSession
    from packetlab.controller.session import ANSWER_TIMEOUT, MAX_LINFO
    from packetlab.wire import vmem

    class Transport(StringTransport):
        def setTcpNoDelay(self, enabled: bool) -> None:
            pass

    clock = Clock()
    s = EndpointSession(reactor=clock, max_notes=4, max_bytes=64)
    s.makeConnection(Transport())
    s.dataReceived(wire.encode(wire.Result()))  # the endpoint's answer to the start
    held: list[Deferred[Any]] = []
    failures: list[Failure] = []

    def hold(d: Deferred[Any] | None) -> None:
        if d is not None:
            held.append(d)
            d.addErrback(failures.append)

    def request(kind: int, sktid: int) -> None:
        if kind == 0:
            hold(s.mread(vmem.TIME.addr, 8))
        elif kind == 1:
            hold(s.nclose(sktid))
        elif kind == 2:
            hold(s.nopen_udp(sktid))
        elif kind == 3 and s.find_socket(sktid) is not None:
            d = s.nsend(sktid, b"x", to=("127.0.0.1", 9), ntag=True, family=4, proto=17)
            hold(d.addCallback(lambda q: hold(q.ntag)))
        elif kind == 4:
            hold(s.socket(sktid).get())
        else:
            hold(s.mread(vmem.SKT_BASE, 3))

    def check() -> None:
        for f in failures:
            assert isinstance(f.value, ControllerError), f.getTraceback()
        assert s.close_reason is None or isinstance(s.close_reason, ControllerError)
        assert len(s.linfo) <= MAX_LINFO
        for sktid in range(5):
            sock = s.find_socket(sktid)
            if sock is not None:
                assert sock.queued <= sock.max_notes, f"{sock.queued} notes queued"

    pos = 0
    while pos < len(data):
        op, arg = data[pos] & 3, data[pos] >> 2
        pos += 1
        if op == 0:
            n = arg + 1
            s.dataReceived(data[pos : pos + n])
            pos += n
        elif op == 1:
            request(arg % 6, arg // 6 % 5)
        elif op == 2:
            sock = s.find_socket(arg % 5)
            if sock is not None:
                sock.drain()
        else:
            clock.advance(0.5 if arg % 2 else ANSWER_TIMEOUT / 3)
        check()
    s.connectionLost(Failure(ConnectionDone()))
    check()
    assert all(d.called for d in held), "something still waits after the session ended"
    assert s.pending == 0


def _controller_seeds() -> list[bytes]:
    from packetlab import wire
    from packetlab.wire import vmem

    def feed(frame: bytes) -> bytes:
        out = b""
        for i in range(0, len(frame), 64):
            part = frame[i : i + 64]
            out += bytes([(len(part) - 1) << 2]) + part
        return out

    def req(kind: int, sktid: int = 1) -> bytes:
        return bytes([1 | (kind + 6 * sktid) << 2])

    udp: dict[str, Any] = dict(family=4, proto=17)
    lo = b"\x7f\x00\x00\x01"
    return [
        req(0) + feed(wire.encode(wire.Mdata(vmem.TIME.addr, bytes(8)))),
        req(2) + feed(wire.encode(wire.Result())) + req(3)
        + feed(wire.encode(wire.Result())) + feed(wire.encode(wire.Ntag(1, 1, 5, 0)))
        + feed(wire.encode(wire.Ndata(1, time=7, data=b"hi", raddr=lo, rport=9, **udp)))
        + req(4) + b"\x06" + b"\x03",
        req(5) + feed(wire.encode(wire.Result(0x12, 3, 4))) + feed(wire.encode(wire.Suspd())),
        feed(wire.encode(wire.Linfo(b"monitor", b"\x00\x01", b"x" * 20))) * 3,
    ]  # fmt: skip


# --------------------------------------------------------------------------- tls records


def fuzz_tls_records(data: bytes) -> None:
    """A TLS 1.3 peer's records after the handshake (`tls.records.RecordLayer`), the input
    read as records the peer seals with its keys, so that they authenticate: each a
    control byte (inner type: application data, handshake, alert, another; zero padding;
    whether the next is in the same write) and a length byte, then that much content;
    the peer's keys follow the KeyUpdates it sends, as a real peer's; a control byte of
    0xFF sends the rest unsealed (noise in the record stream). Read at once and cut in
    pieces: the same data, close and error (RecordError, its alert), nothing else; what
    is buffered stays within a record and a post-handshake message; our KeyUpdate answers
    at most one while we send no application data."""
    from packetlab.tls.records import (
        MAX_CIPHERTEXT,
        RecordError,
        RecordLayer,
    )

    stream = _peer_records(data)
    max_buffered = MAX_CIPHERTEXT + 5 + (1 << 16) + 4

    def run(chunks: list[bytes]) -> tuple[object, ...]:
        suite, ours, theirs = _tls_keys()
        layer = RecordLayer(suite, theirs, ours)
        got, out = b"", b""
        for chunk in chunks:
            try:
                r = layer.receive(chunk)
            except RecordError as e:
                assert str(e)
                return ("error", e.alert, got)
            got += r.data
            out += r.out
            assert layer.buffered <= max_buffered, f"{layer.buffered} bytes buffered"
            assert len(out) <= 5 + 1 + 4 + 1 + 16, f"{len(out)} bytes of KeyUpdate answers"
            if r.closed:
                return ("closed", got)
        return ("open", got)

    whole = run([stream])
    cut = run(pieces(stream, 7))
    if whole[0] == "error":  # (the data of the call that failed is not handed: compare
        assert cut[0] == "error" and cut[1] == whole[1], f"{whole!r} vs {cut!r}"  # errors)
    else:
        assert whole == cut, f"{whole!r} at once, {cut!r} cut in pieces"


def _peer_records(data: bytes) -> bytes:
    from packetlab.tls.records import TrafficKeys

    suite, _, theirs = _tls_keys()
    peer = TrafficKeys(suite, theirs)
    # (the low 3 bits: application data most often; 24 and 20 are no inner type of ours)
    inner_types = (23, 23, 22, 21, 24, 20, 23, 22)
    out = bytearray()
    hs = b""  # the peer's handshake bytes not yet a whole message (it mirrors the reader)
    pos = 0
    while pos + 2 <= len(data):
        control, n = data[pos], data[pos + 1]
        pos += 2
        if control == 0xFF:
            out += data[pos:]
            break
        content = data[pos : pos + n]
        pos += n
        inner = inner_types[control & 7]
        padding = bytes(control >> 3 & 7)
        header_len = len(content) + 1 + len(padding) + 16
        header = b"\x17\x03\x03" + header_len.to_bytes(2, "big")
        nonce = peer._nonce()
        out += header + peer.aead.encrypt(nonce, content + bytes((inner,)) + padding, header)
        if inner == 22:  # a KeyUpdate it sends changes its keys after its record
            hs += content
            while len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
                end = 4 + int.from_bytes(hs[1:4], "big")
                if hs[0] == 24:
                    peer = peer.updated()
                hs = hs[end:]
    return bytes(out)


def _tls_keys() -> tuple[Any, bytes, bytes]:
    from packetlab.tls.records import SUITES

    suite = SUITES["TLS_AES_128_GCM_SHA256"]
    return suite, bytes(range(32)), bytes(range(100, 132))


def _tls_seeds() -> list[bytes]:
    def rec(control: int, content: bytes) -> bytes:
        return bytes((control, len(content))) + content

    update = b"\x18\x00\x00\x01\x01"  # KeyUpdate, update_requested
    ticket = b"\x04\x00\x00\x04" + b"abcd"
    return [
        rec(0, b"hello") + rec(1, b"world"),
        rec(2, ticket) + rec(0, b"after a ticket"),
        rec(2, update) + rec(0, b"new keys") + rec(2, update) + rec(2, update),
        rec(2, update[:3]) + rec(2, update[3:]) + rec(0, b"split"),
        rec(0, b"x") + rec(3, b"\x01\x00"),  # close_notify
        rec(8, b"padded") + rec(3, b"\x02\x28"),  # a fatal alert
        rec(0, b"ok") + b"\xff" + b"\x17\x03\x03\x00\x20" + bytes(32),
    ]
