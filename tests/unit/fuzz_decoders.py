"""Fuzz targets for the decoders hostile input reaches beyond the endpoint's (session 27):
the proxy's ClientHello reader, the broker's links, what a hostile server sends a
measurement (DNS replies and dig's text of them, HTTP/1 heads and codings, HTTP/2 frames,
iperf3's control messages, ICMP replies), warts files and the operators' config files.

Each target takes arbitrary bytes and checks what must hold for every input (the
docstrings); a broken invariant or an exception the module does not declare is a
finding. `tests/unit/fuzz_targets.py` registers them with the others (TARGETS, SEEDS).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import struct
import zlib
from collections.abc import Callable
from typing import Any

# ------------------------------------------------------------------------------ helpers


def _cuts(data: bytes, salt: int) -> list[int]:
    """Chunk boundaries derived from the data (a finding replays exactly)."""
    if not data:
        return []
    step = (data[0] + salt) % 23 + 1
    return list(range(step, len(data), step))


def _pieces(data: bytes, salt: int = 0) -> list[bytes]:
    bounds = [0, *_cuts(data, salt), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


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
    cut, _ = run(_pieces(body))
    assert whole == cut, f"{whole} at once, {cut} cut in pieces"
    # the proxy's endpoint port over a fake transport, the pieces then the close: one
    # refusal counted, for the reader's reason (no backlog is registered: a name is
    # unknown_snikey; a hello that never completed is eof)
    refusals = _proxy_refusals(cap, _pieces(body))
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
    for piece in _pieces(data[1:]):
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
    cut = run(_pieces(stream, 7))
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


# ---------------------------------------------------------------------------------- dns


def fuzz_dns(data: bytes) -> None:
    """A reply to dig's query (the first two bytes replaced by the query's ID for an even
    first byte, so most inputs get past the ID check) read as BIND reads it: `_parse`
    returns the message or None, or raises `_Malformed` with a reason, nothing else; over
    a stream (`_stream_reply`) it is the reply or an error said; what parsed fills a
    DnsResult and prints as dig prints it (plain, +multiline, +yaml, +short, +idnout)
    and its record reads back (`to_dict` is JSON) without an exception."""
    import dns.message

    from packetlab.measure.dnsparse import _fill, _Malformed, _parse, _stream_reply
    from packetlab.measure.dnsresult import DnsResult

    query = _dns_query()
    wire_ = data[1:]
    if data[:1] and data[0] % 2 == 0 and len(wire_) >= 2:
        wire_ = struct.pack(">H", query.id) + wire_[2:]
    said: list[str] = []
    try:  # over UDP: a reply that is not ours is passed over (None), the wait goes on
        udp = _parse(query, wire_, said)
        assert udp is None or isinstance(udp, dns.message.Message)
    except _Malformed as e:
        assert e.reason and e.wire == wire_
    # over a stream, as dnstransport reads the one message: the reply, or the error
    result = DnsResult(qname="a.test.", qtype="A", server="192.0.2.53", port=53, proto="tcp")
    msg = _stream_reply(query, wire_, result, "TCP")
    if msg is not None:
        _fill(result, msg, wire_)
    else:
        assert result.error and result.error_kind in ("malformed", "mismatch"), result
    record = result.to_dict()
    json.dumps(record)
    for args in _dig_views():
        text = args.dig_text(record)
        assert text is None or isinstance(text, str)


_DNS: dict[str, Any] = {}


def _dns_query() -> Any:
    if "query" not in _DNS:
        import dns.message

        q = dns.message.make_query("a.test.", "A", use_edns=0, want_dnssec=False)
        q.id = 0x4242
        _DNS["query"] = q
    return _DNS["query"]


def _dig_views() -> list[argparse.Namespace]:
    """`pktlab run dns` parsed with a few display switches (each prints the same record
    its way)."""
    if "views" not in _DNS:
        import packetlab.cli as cli
        from packetlab.cli import run_dns_dig, run_dns_words

        made = []
        for extra in ([], ["+multiline"], ["+yaml"], ["+short"], ["+idnout", "+nottlid"]):
            a = cli.parse(["run", "dns", *extra, "a.test"])
            run_dns_words.dig_style(a)
            a.dig_text = run_dns_dig.DigText(a)
            made.append(a)
        _DNS["views"] = made
    views: list[argparse.Namespace] = _DNS["views"]
    return views


def _dns_seeds() -> list[bytes]:
    import dns.edns
    import dns.message
    import dns.rcode
    import dns.rrset

    q = _dns_query()
    out = []
    for rtype, rdatas in (
        ("A", ["192.0.2.1", "192.0.2.2"]),
        ("AAAA", ["2001:db8::1"]),
        ("MX", ["10 mx.a.test."]),
        ("TXT", ['"hello" "world"']),
        ("SOA", ["ns.a.test. host.a.test. 1 2 3 4 5"]),
        ("CNAME", ["b.a.test."]),
        ("CNAME", ["xn--bcher-kva.xn--a-.test."]),
        ("HINFO", ['"\\255\\000" "x y"']),
        ("NAPTR", ['100 10 "S" "SIP+D2U" "!^.*$!sip:a@b!" _sip._udp.a.test.']),
    ):
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text("a.test.", 300, "IN", rtype, *rdatas))
        r.use_edns(
            0, 0, 1232, options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, bytes(16))]
        )
        out.append(b"\x00" + r.to_wire())
    nx = dns.message.make_response(q)
    nx.set_rcode(dns.rcode.NXDOMAIN)
    nx.authority.append(dns.rrset.from_text("a.test.", 60, "IN", "SOA", "n. h. 1 2 3 4 5"))
    out.append(b"\x02" + nx.to_wire())
    return out


# --------------------------------------------------------------------------------- http


def fuzz_http_head(data: bytes) -> None:
    """An HTTP/1 response head as it comes (curl's header limits, `HeadLimits`): the
    outcome (done, the status, or HeadTooLarge's exit code and size) is the same however
    the bytes are cut; lenient h11 parsing of the head (`LenientHeads`) and the codings
    named in it (`transfer_codings`, `content_codings`, `decoder`) return or raise the
    modules' declared errors."""
    from packetlab.measure.http_decode import Undecodable, decoder, transfer_codings
    from packetlab.measure.http_head import HeadLimits, HeadTooLarge

    def limits(chunks: list[bytes]) -> tuple[object, ...]:
        h, buf = HeadLimits("s"), bytearray()
        for chunk in chunks:
            buf += chunk
            try:
                h.feed(buf)
            except HeadTooLarge as e:
                return ("too_large", e.exitcode, e.size, e.status)
            if h.done:
                break
        return ("done" if h.done else "wait", h.status, h.total)

    # curl's limits from a little input: a first byte over 200 pads the last line (what
    # a server streaming a line for ever sends) by 6 KiB a step, past 300 KiB; cut in
    # reads of ~4 KiB then (a few bytes each was most of a run's time)
    big, pieces = data, _pieces(data)
    if data[:1] and data[0] > 200:
        big = data[1:] + b"x" * ((data[0] - 200) * 6144)
        step = 4096 + (data[1] if len(data) > 1 else 0)
        pieces = [big[i : i + step] for i in range(0, len(big), step)]
    whole = limits([big])
    cut = limits(pieces)
    assert whole == cut, f"{whole} at once, {cut} cut in pieces"
    try:
        d = decoder(transfer_codings(big), 1 << 16, "s")
        if d is not None:
            d.feed(b"", final=True)
    except Undecodable as e:
        assert str(e)
    except Exception as e:  # each stage's own: TooMuchDecoded is a StreamError
        from packetlab.measure.stream import StreamError

        assert isinstance(e, StreamError), repr(e)


def fuzz_http1(data: bytes) -> None:
    """A server's bytes after our GET, as http1 reads them: `LenientHeads` (curl's
    leniencies rewritten for h11) then h11, cut as reads bring them, then the close.
    The events (heads, the body's bytes joined, the end) or h11's RemoteProtocolError are
    the same however the bytes are cut; nothing else is raised; a head's version is one
    curl speaks or UnsupportedVersion."""
    import h11

    from packetlab.measure.http_lenient import LenientHeads, UnsupportedVersion, supported

    def run(chunks: list[bytes]) -> list[object]:
        h = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 16)
        h.send(h11.Request(method="GET", target="/", headers=[("Host", "a.test")]))
        h.send(h11.EndOfMessage())
        heads = LenientHeads()
        got: list[object] = []

        def drain() -> bool:
            while True:
                try:
                    ev = h.next_event()
                except h11.RemoteProtocolError as e:
                    got.append(("error", e.error_status_hint))
                    return False
                if ev is h11.NEED_DATA:
                    return True
                if ev is h11.PAUSED or isinstance(ev, h11.ConnectionClosed):
                    got.append(("end", type(ev).__name__ if ev is not h11.PAUSED else "paused"))
                    return False
                if isinstance(ev, h11.Response | h11.InformationalResponse):
                    try:
                        version = supported(ev.http_version)
                    except UnsupportedVersion as e:
                        version = str(e)
                    got.append(("head", ev.status_code, version, tuple(ev.headers)))
                elif isinstance(ev, h11.Data):
                    if got and isinstance(got[-1], bytes):
                        got[-1] += bytes(ev.data)
                    else:
                        got.append(bytes(ev.data))
                else:
                    got.append(type(ev).__name__)

        for chunk in chunks:
            given = heads.take(chunk)
            if given:
                h.receive_data(given)
                if not drain():
                    return got
        held = heads.flush()
        if held:
            h.receive_data(held)
        h.receive_data(b"")
        drain()
        return got

    whole = run([data])
    cut = run(_pieces(data, 5))
    assert whole == cut, f"{whole!r} at once, {cut!r} cut in pieces"


def fuzz_http_body(data: bytes) -> None:
    """A response body under a Content-Encoding (the first byte picks the codings, the
    rest is the body, cut in pieces as reads bring it): the outcome (the decoded bytes,
    or the error) is the same however it is cut, never more than the limit
    (TooMuchDecoded), a bad stream is Undecodable; and a body we encode decodes to
    itself."""
    from packetlab.measure.http_decode import TooMuchDecoded, Undecodable, decoder

    if not data:
        return
    codings = _CODINGS[data[0] % len(_CODINGS)]
    body = data[1:]
    limit = 4096

    def run(chunks: list[bytes]) -> tuple[object, ...]:
        d = decoder(list(codings), limit, "s")
        assert d is not None
        out = b""
        try:
            for chunk in chunks:
                out += d.feed(chunk)
                assert len(out) <= limit, f"{len(out)} bytes decoded (limit {limit})"
            out += d.feed(b"", final=True)
        except TooMuchDecoded:
            return ("too_much",)
        except Undecodable:
            return ("undecodable",)
        assert len(out) <= limit, f"{len(out)} bytes decoded (limit {limit})"
        return ("ok", out)

    whole = run([body])
    cut = run(_pieces(body, 3))
    # Known (session 27, reported to the lead: http_decode is http27's): deflate's
    # fallback to raw deflate (no zlib header) is tried only on the first read's error,
    # so a raw stream whose first read is a byte or two, or a zlib header that passes by
    # chance, decodes whole but not cut (test_fuzz.py pins it, xfail). Checked
    # for the other codings only until it is fixed.
    # A stream both over the limit and bad later may be either, by its reads: zstd meets
    # the bad block before it writes out the output that was over the limit (one read),
    # or after (reads cut before the bad block). Both refuse it: a refusal is compared
    # as such.
    if "deflate" not in codings:
        same = whole == cut or ("ok" not in (whole[0], cut[0]))
        assert same, f"{whole!r} at once, {cut!r} cut in pieces"
    if len(codings) == 1 and codings[0] in ("gzip", "deflate"):
        plain = body[: limit // 2]
        packed = _compress(codings[0], plain)
        assert run(_pieces(packed)) == ("ok", plain), "decode(encode(x)) != x"


_CODINGS = (("gzip",), ("deflate",), ("br",), ("zstd",), ("deflate", "gzip"), ("x-gzip",))


def _compress(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
    else:
        c = zlib.compressobj(6, zlib.DEFLATED, 15)
    return c.compress(data) + c.flush()


def _http_seeds() -> list[bytes]:
    return [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No\r\n\r\n",
        b"HTTP/1.0 301 Moved\nLocation: /b\n\n",
    ]


def _http1_seeds() -> list[bytes]:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    return [
        *_http_seeds(),
        chunked,
        b"http/1.1 200 OK\r\nX-A : b\r\nContent-Length: 2, 3\r\n\r\nhi",
        b"HTTP/2 200\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1  200OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1;ext=1\r\nx\r\n0\r\n"
        b"Trailer: t\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil the close",
    ]


def _body_seeds() -> list[bytes]:
    text = b"the quick brown fox " * 20
    out = [b"\x00" + _compress("gzip", text), b"\x01" + _compress("deflate", text)]
    out.append(b"\x01" + zlib.compress(text)[2:-4])  # raw deflate, as some servers send
    try:
        import brotli

        out.append(b"\x02" + brotli.compress(text))
    except ImportError:  # pragma: no cover (a project dependency)
        pass
    try:
        import zstandard

        out.append(b"\x03" + zstandard.ZstdCompressor().compress(text))
    except ImportError:  # pragma: no cover
        pass
    out.append(b"\x04" + _compress("gzip", _compress("deflate", text)))
    return out


def fuzz_http2(data: bytes) -> None:
    """Any bytes from an HTTP/2 server after our request (cut as reads bring them; for a
    first byte of 1 mod 4, a server's response whose header list is the rest of the
    input, NUL-separated: `:status`'s value, then names and values, framed and HPACK-
    encoded by h2): `receive` takes them or raises H2Error, `take` hands Head/Body/End
    events or raises H2Error, nothing else; an incomplete frame held is at most a frame,
    and every stream's queue is emptied by `take`."""
    from packetlab.measure.http2 import Body, End, H2Error, H2Framing, Head

    f = H2Framing("s", max_headers=4096)
    request = f.request("GET", "https", "a.test", "/", [("accept", "*/*")], None)
    stream = data[1:]
    if data[:1] and data[0] % 4 == 1:
        stream = _h2_response(request, data[1:])
    sid = f.stream_id
    for piece in _pieces(stream):
        try:
            f.receive(piece)
        except H2Error as e:
            assert str(e)
            return
        assert len(f.partial) <= f.h2.max_inbound_frame_size + 9, "a frame held unbounded"
        f.data_to_send()
        try:
            for _, ev in f.take(sid):
                assert isinstance(ev, Head | Body | End), ev
        except H2Error as e:
            assert str(e)
            return
        assert not f.queued(sid)


def _h2_response(request: bytes, fields: bytes) -> bytes:
    """A server's frames answering `request` with the header list `fields` (NUL-
    separated: the status, then names and values), unchecked, then a body."""
    import h2.config
    import h2.connection

    config = h2.config.H2Configuration(
        client_side=False,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    server = h2.connection.H2Connection(config)
    server.initiate_connection()
    server.receive_data(request)
    parts = fields.split(b"\0")
    # Known (session 27, reported to the lead: http2 is http27's): a :status of digits
    # str.isdigit takes and int() does not (b"\xb2", a superscript 2 in Latin-1) is a
    # ValueError out of `receive`; test_fuzz.py pins it (xfail). ASCII here until fixed.
    status = bytes(b & 0x7F for b in parts[0])
    pairs = list(zip(parts[1::2], parts[2::2], strict=False))
    server.send_headers(1, [(b":status", status), *pairs])
    server.send_data(1, b"body", end_stream=True)
    return server.data_to_send()


def _h2_seeds() -> list[bytes]:
    import h2.config
    import h2.connection

    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client = _h2_client_preface()
    server.initiate_connection()
    server.receive_data(client)
    server.send_headers(1, [(":status", "200"), ("content-type", "text/plain")])
    server.send_data(1, b"hello", end_stream=True)
    whole = server.data_to_send()
    server2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server2.initiate_connection()
    server2.receive_data(client)
    server2.send_headers(1, [(":status", "103"), ("link", "</a>")])
    server2.send_headers(1, [(":status", "404")], end_stream=False)
    server2.ping(b"12345678")
    server2.reset_stream(1)
    return [
        b"\x00" + whole,
        b"\x00" + server2.data_to_send(),
        b"\x01200\0content-type\0text/plain\0content-length\x004",
        b"\x01103\0link\0</a>",
    ]


def _h2_client_preface() -> bytes:
    from packetlab.measure.http2 import H2Framing

    f = H2Framing("s", max_headers=4096)
    return f.request("GET", "https", "a.test", "/", [], None)


# -------------------------------------------------------------------------------- iperf3


def fuzz_iperf3(data: bytes) -> None:
    """What an iperf3 server sends on the control connection: a state byte
    (`parse_state`: a State or Iperf3Error), a u32 length (`json_length`: within
    MAX_JSON or Iperf3Error), that many bytes of JSON (`decode_json`), read as results
    (`stream_result`, `server_streams`, `server_output`, `remote`): each returns a
    value of its type or raises Iperf3Error, nothing else; a server's JSON output prints
    (--get-server-output); encode_json's message decodes to the object it encoded."""
    from packetlab.measure import iperf3
    from packetlab.measure.iperf3 import Iperf3Error

    if not data:
        return
    try:
        iperf3.parse_state(data[:1])
    except Iperf3Error:
        pass
    body = data[1:]
    if len(body) >= 4 and data[0] % 2:
        try:
            n = iperf3.json_length(body[:4])
        except Iperf3Error:
            return
        assert 0 < n <= iperf3.MAX_JSON
        body = body[4 : 4 + n]
    try:
        obj = iperf3.decode_json(body)
    except Iperf3Error as e:
        assert str(e)
        return
    assert isinstance(obj, dict)
    for read in (iperf3.stream_result, iperf3.server_streams):
        try:
            read(obj)
        except Iperf3Error as e:
            assert str(e)
    out = iperf3.server_output(obj)
    assert out is None or isinstance(out, str | dict)
    # Known (session 27, reported to the lead: iperf3 and throughput_cjson are iperf27's):
    # a server's JSON output nested some 400 deep (MAX_JSON allows ~1000) is a
    # RecursionError when printed (test_fuzz.py pins it, xfail). Checked within that.
    if isinstance(out, dict) and _depth(out) <= 200:
        from packetlab.measure.throughput_cjson import dumps

        assert isinstance(dumps(out), str)
    assert isinstance(iperf3.remote(obj), dict)
    if not _finite(obj):
        return  # (cJSON writes an infinity or NaN as null, as iperf3: not ours to send)
    try:
        again = iperf3.encode_json(obj)
    except RecursionError:
        return  # (nested deeper than the writer goes: not ours to send either)
    (n,) = struct.unpack(">I", again[:4])
    assert n == len(again) - 4
    assert _same_json(iperf3.decode_json(again[4:]), obj), "decode(encode(x)) != x"


def _finite(v: object) -> bool:
    """No infinity or NaN anywhere in a JSON value (json.loads reads `1E999` as inf)."""
    todo = [v]
    while todo:
        x = todo.pop()
        if isinstance(x, float) and not math.isfinite(x):
            return False
        if isinstance(x, dict):
            todo += x.values()
        elif isinstance(x, list):
            todo += x
    return True


def _depth(v: object) -> int:
    """How deep a JSON value nests (iteratively: it may be deeper than recursion goes)."""
    deepest, todo = 0, [(v, 1)]
    while todo:
        x, d = todo.pop()
        deepest = max(deepest, d)
        if isinstance(x, dict):
            todo += [(y, d + 1) for y in x.values()]
        elif isinstance(x, list):
            todo += [(y, d + 1) for y in x]
    return deepest


def _same_json(a: object, b: object) -> bool:
    # cJSON prints a float with %.17g (or %1.15g when that reads back the same):
    # equal as numbers, an int that was a float may come back an int
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same_json, a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b and type(a) is type(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or (a != a and b != b)
    return a == b


def _iperf3_seeds() -> list[bytes]:
    from packetlab.measure import iperf3

    results = iperf3.timed_client_results(
        [(1, 10_000_000, 3, 10.0), (3, 5, 0, 0.5)], has_retransmits=1
    )
    results["server_output_text"] = "Accepted connection\n"
    results["congestion_used"] = "cubic"
    params = iperf3.parameters(1 << 20, reverse=True)
    return [
        b"\x01" + iperf3.encode_json(results),
        b"\x01" + iperf3.encode_json(params),
        b"\x0e" + json.dumps({"streams": [{"id": 1, "bytes": 1, "start_time": 0}]}).encode(),
    ]


# ------------------------------------------------------------------------------- replies


def fuzz_replies(data: bytes) -> None:
    """Any captured packet (`parse_reply`, checksums checked for an odd first byte):
    a Reply or ParseError (NotAReply included), nothing else."""
    from packetlab.measure.replies import ParseError, Reply, parse_reply

    if not data:
        return
    try:
        got = parse_reply(data[1:], verify_checksums=bool(data[0] % 2))
    except ParseError as e:
        assert str(e)
        return
    assert isinstance(got, Reply)


def _replies_seeds() -> list[bytes]:
    v4 = bytes.fromhex("450000380000000040017c3cc000020a c0000201".replace(" ", ""))
    te = bytes.fromhex("0b00f4ff00000000")  # time exceeded, quoting:
    quoted = bytes.fromhex("4500001c0001000001110000c0000201c6336401") + bytes.fromhex(
        "829a829b00080000"
    )
    echo = bytes.fromhex("0000ffff12340001") + b"abcdefgh"
    v6 = bytes.fromhex("6000000000103a40") + bytes(15) + b"\x01" + bytes(15) + b"\x02"
    return [b"\x00" + v4 + te + quoted, b"\x00" + v4[:-8] + v4[-8:] + echo, b"\x00" + v6 + echo]


# --------------------------------------------------------------------------------- warts


def fuzz_warts(data: bytes) -> None:
    """Any bytes as a warts file: `read_warts` returns its objects or raises WartsError
    (the module's declared error), nothing else."""
    from packetlab.measure.warts_format import WartsError
    from packetlab.measure.warts_read import WartsObject, read_warts

    try:
        objs = read_warts(data)
    except WartsError as e:
        assert str(e)
        return
    assert all(isinstance(o, WartsObject) for o in objs)


def _warts_seeds() -> list[bytes]:
    from packetlab.measure.warts_format import cycle_start_object, cycle_stop_object, list_object

    head = list_object(1, name="fuzz") + cycle_start_object(1_700_000_000)
    out = [head + cycle_stop_object(1_700_000_100)]
    out.append(_ping_file())
    return out


def _ping_file() -> bytes:
    """The warts file of a ping with replies, a lost probe and a duplicate."""
    from packetlab.measure.ping import PingReply, PingResult
    from packetlab.measure.warts_ping import ping_warts

    t0 = 1_796_403_716_440_364_000
    replies = (
        PingReply(1, "10.0.0.3", 21.4, 64, 64, t0, t0 + 21_400),
        PingReply(2, None, None, probe_send_ns=t0 + 200_000_000),
        PingReply(4, "10.0.0.3", 50.0, 64, 64, t0 + 600_000_000, t0 + 600_050_000, dup=True),
    )
    result = PingResult(dst="10.0.0.3", sent=4, replies=replies, src="10.0.0.2", start_ns=t0,
                        send_stamp="kernel", recv_stamp="kernel")  # fmt: skip
    return ping_warts(result, hostname="vm")


# ------------------------------------------------------------------------------- configs


def fuzz_config(data: bytes) -> None:
    """Any text as endpt.conf, broker.conf or xpmgr.conf (the first byte's low 7 bits
    pick which;
    the rest as UTF-8 with surrogates, as the readers take a file; a first byte of 0x80
    or more makes it one line of a known key, picked by the next byte, and the rest its
    value): a config, or the module's ConfigError naming the file (and the line, for a
    line's fault: `FILE:LINE: `), nothing else. An endpt.conf that parses goes on to what
    the daemon checks at startup (its capture filter compiled by libpcap: an error
    naming the file too)."""
    from packetlab.broker.config import KNOWN_KEYS as BROKER_KEYS
    from packetlab.broker.config import ConfigError as BrokerConfigError
    from packetlab.broker.config import parse_config as broker_config
    from packetlab.controller.xpmgrconf import KNOWN_KEYS as XPMGR_KEYS
    from packetlab.controller.xpmgrconf import XpmgrConfigError, parse_xpmgr_config
    from packetlab.endpoint import policy
    from packetlab.endpoint.config import KNOWN_KEYS as ENDPOINT_KEYS
    from packetlab.endpoint.config import ConfigError as EndpointConfigError
    from packetlab.endpoint.config import parse_config as endpoint_config

    if not data:
        return
    which = (data[0] & 0x7F) % 3
    name = ("endpt.conf", "broker.conf", "xpmgr.conf")[which]
    text = data[1:].decode("utf-8", "surrogateescape")
    if data[0] >= 0x80 and len(data) >= 2:
        keys = (ENDPOINT_KEYS, BROKER_KEYS, XPMGR_KEYS)[which]
        text = f"{keys[data[1] % len(keys)]} {data[2:].decode('utf-8', 'surrogateescape')}"
    try:
        if which == 0:
            cfg = endpoint_config(text.splitlines(), name)
            policy.from_config(cfg)
        elif which == 1:
            broker_config(text.splitlines(), name)
        else:
            parse_xpmgr_config(text, name)
    except (EndpointConfigError, BrokerConfigError, XpmgrConfigError) as e:
        assert str(e).startswith(name), f"an error not naming the file: {e}"


def _config_seeds() -> list[bytes]:
    endpt = (
        "BufMax 65536\nTransProto raw,tcp,udp\nIPv4Addr 127.0.0.1\nNoSubMod 0\n"
        "ExpSendRatePkt 100/10\nCaptureSnaplen 96\n# comment\n"
    )
    broker = "PublishPort 8000\nSubscribePort 8001\nErrorDelay 1s\nMaxPublications 100\n"
    xpmgr = (
        "EnableExpPublication 1\nControllerPrivkeyPath keys/k\nBrokerAddr 127.0.0.1:8000\n"
        "PubAgentCertPath certs/a.cert\n"
        "ExpExec 1:ab:certs/exppriv.cert,certs/pubcmd.cert:certs/eop.pub:00ff:name=v:prog\n"
    )
    return [
        b"\x00" + endpt.encode(),
        b"\x01" + broker.encode(),
        b"\x02" + xpmgr.encode(),
        b"\x80\x08" + b"udp port 53 and not host 10.0.0.1",  # CaptureFilter
        b"\x81\x00" + b"b.pem",
        b"\x80\x00" + b"1",
        b"\x82\x00" + b"1",
    ]


# -------------------------------------------------------------------------------- tables


DECODER_TARGETS: dict[str, Callable[[bytes], None]] = {
    "clienthello": fuzz_clienthello,
    "broker": fuzz_broker,
    "controller": fuzz_controller,
    "tls_records": fuzz_tls_records,
    "dns": fuzz_dns,
    "http_head": fuzz_http_head,
    "http1": fuzz_http1,
    "http_body": fuzz_http_body,
    "http2": fuzz_http2,
    "iperf3": fuzz_iperf3,
    "replies": fuzz_replies,
    "warts": fuzz_warts,
    "config": fuzz_config,
}

#: What atheris instruments for each (the code under test, not the harness).
DECODER_INSTRUMENT: dict[str, list[str]] = {
    "clienthello": ["packetlab.proxy.clienthello"],
    "broker": ["packetlab.broker", "packetlab.wire"],
    "controller": ["packetlab.controller", "packetlab.wire"],
    "tls_records": ["packetlab.tls.records"],
    "dns": ["packetlab.measure.dnsparse", "packetlab.measure.dnstext", "packetlab.cli.run_dns"],
    "http_head": ["packetlab.measure.http_head", "packetlab.measure.http_decode"],
    "http1": ["packetlab.measure.http_lenient", "h11"],
    "http_body": ["packetlab.measure.http_decode"],
    "http2": ["packetlab.measure.http2", "h2", "hpack"],
    "iperf3": ["packetlab.measure.iperf3", "packetlab.measure.throughput_cjson"],
    "replies": ["packetlab.measure.replies", "packetlab.measure.icmpext"],
    "warts": ["packetlab.measure.warts_read"],
    "config": ["packetlab.endpoint.config", "packetlab.broker.config", "packetlab.controller"],
}


def decoder_seeds() -> dict[str, list[bytes]]:
    return {
        "clienthello": _hello_seeds(),
        "broker": _broker_seeds(),
        "controller": _controller_seeds(),
        "tls_records": _tls_seeds(),
        "dns": _dns_seeds(),
        "http_head": _http_seeds(),
        "http1": _http1_seeds(),
        "http_body": _body_seeds(),
        "http2": _h2_seeds(),
        "iperf3": _iperf3_seeds(),
        "replies": _replies_seeds(),
        "warts": _warts_seeds(),
        "config": _config_seeds(),
    }
