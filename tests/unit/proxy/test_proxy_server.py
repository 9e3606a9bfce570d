# mypy: disable-error-code="union-attr"
# (transports and wrapped protocols are Optional until connected; the harness connects them)
"""The proxy's Protocols over fake transports (no reactor): registration in the observed
order with real TLS in memory (TLSHandoff on both sides), routing, relaying with
half-close, refusals and timeouts on a task.Clock, and the manager-side backlog."""

from __future__ import annotations

import json
import socket
import struct
from types import SimpleNamespace
from typing import Any

import pytest
from OpenSSL import SSL
from testkit.logs import captured_events
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from packetlab import wire
from packetlab.ppks import generate_private_key, issue_certificate
from packetlab.proxy.registry import BacklogRegistry
from packetlab.proxy.server import ENORES_DELAY, KNOWN_FOR, PREAMBLE, Proxy, SetupProtocol
from packetlab.proxy.splice import NEAR_RCVBUF
from packetlab.tls import AuthMode, Credentials, PPKSClientCreator, PPKSServerOptions, ServerEntry
from packetlab.tls.handoff import HandoffError, Step, TLSHandoff
from packetlab.wire.constants import Status


class NearSocket:
    """A transport's socket whose peer is 20 us away (tcpi_rtt); records setsockopt."""

    def __init__(self) -> None:
        self.set: list[tuple[int, int, int]] = []

    def getsockopt(self, level: int, opt: int, size: int) -> bytes:
        info = bytearray(size)
        struct.pack_into("I", info, 68, 20)
        return bytes(info)

    def setsockopt(self, level: int, opt: int, value: int) -> None:
        self.set.append((level, opt, value))


class HalfCloseTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.handle = NearSocket()
        self.nodelay = False
        self.keepalive = False
        self.write_closed = False
        self.producer_registrations: list[Any] = []

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.nodelay = enabled

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.keepalive = enabled

    def getHandle(self) -> NearSocket:
        return self.handle

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer_registrations.append(producer)
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None


@pytest.fixture(scope="module")
def options() -> PPKSServerOptions:
    key = generate_private_key()
    cert = issue_certificate("agent", key, key, 0, 2**31 - 1)
    return PPKSServerOptions({}, default=ServerEntry(Credentials([cert], key), AuthMode.AGENT,
                                                      require_client_cert=False))  # fmt: skip


def make_proxy(options: PPKSServerOptions, **kw: Any) -> tuple[Proxy, Clock]:
    clock = Clock()
    return Proxy(clock, options, registry=BacklogRegistry(per_snikey=2), **kw), clock


def client() -> TLSHandoff:
    return TLSHandoff(
        PPKSClientCreator(None, AuthMode.AGENT).clientConnectionForTLS(None),  # type: ignore[arg-type]
        is_client=True,
    )


def handshaken(
    proxy: Proxy, t: HalfCloseTransport | None = None
) -> tuple[SetupProtocol, HalfCloseTransport, TLSHandoff, Step]:
    """A manager's setup connection (on `t`, a fresh transport by default) through the
    server's TLS flight: the step holds the client's Finished, to go out with its xreg."""
    proto = proxy.setup_factory().buildProtocol(None)
    assert isinstance(proto, SetupProtocol)
    t = HalfCloseTransport() if t is None else t
    proto.makeConnection(t)
    tls = client()
    proto.dataReceived(tls.start())
    step = tls.receive(t.value())
    t.clear()
    return proto, t, tls, step


def refused_xreg(
    options: PPKSServerOptions,
) -> tuple[Proxy, Clock, Any, HalfCloseTransport, TLSHandoff]:
    """k1's cap (2) reached by two registrations, then a third manager's xreg k1: its
    ENORES is held back (ENORES_DELAY), nothing sent yet."""
    proxy, clock = make_proxy(options)
    register(proxy)
    register(proxy)
    proto, t, tls, step = handshaken(proxy)
    proto.dataReceived(step.out + tls.send(wire.encode(wire.Xreg(b"k1"))))
    return proxy, clock, proto, t, tls


class KeyedTLS:
    """The setup port's TLS, its manager said to show agent key `key` (a fake: two real
    keys that share their first 64 bits cannot be made)."""

    def __init__(self, inner: TLSHandoff, key: bytes) -> None:
        self._inner, self._key = inner, key

    def receive(self, data: bytes) -> Any:
        step = self._inner.receive(data)
        if step.handshake_done:
            step.peer = SimpleNamespace(public_key=self._key)  # type: ignore[assignment]
        return step

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def register(
    proxy: Proxy,
    snikey: str = "k1",
    *,
    echo: bytes = PREAMBLE,
    key: bytes | None = None,
    host: str | None = None,
) -> tuple[SetupProtocol, HalfCloseTransport]:
    proto = proxy.setup_factory().buildProtocol(None)
    assert isinstance(proto, SetupProtocol)
    t = HalfCloseTransport()
    if host is not None:
        t.peerAddr = IPv4Address("TCP", host, 40000)
    proto.makeConnection(t)
    if key is not None:
        proto.tls = KeyedTLS(proto.tls, key)  # type: ignore[assignment,arg-type]
    tls = client()

    def server_out() -> bytes:
        out = t.value()
        t.clear()
        return out

    proto.dataReceived(tls.start())
    step = tls.receive(server_out())
    assert step.handshake_done
    proto.dataReceived(step.out + tls.send(wire.encode(wire.Xreg(snikey.encode()))))
    step = tls.receive(server_out())
    assert list(wire.Framer().feed(step.data)) == [wire.Result()]
    proto.dataReceived(tls.close())  # the manager's close_notify
    assert server_out() == PREAMBLE  # at once, raw
    proto.dataReceived(echo)
    return proto, t


def test_registration_in_the_observed_order(options: PPKSServerOptions) -> None:
    proxy, _ = make_proxy(options)
    proto, t = register(proxy)
    assert proto.state == "backlog" and proxy.registry.count("k1") == 1
    assert proxy.stats.registrations == 1 and not t.disconnecting


def test_endpoint_spliced_to_the_backlog_and_relayed_with_half_close(
    options: PPKSServerOptions,
) -> None:
    proxy, _ = make_proxy(options)
    backlog, bt = register(proxy)
    ep = proxy.endpoint_factory().buildProtocol(None)
    et = HalfCloseTransport()
    ep.makeConnection(et)
    hello = client_hello("k1")
    ep.dataReceived(hello[:7])
    assert bt.value() == b""
    ep.dataReceived(hello[7:])
    assert bt.value() == hello  # forwarded unchanged
    assert et.producer is bt and bt.producer is et  # backpressure both ways
    assert et.nodelay and bt.nodelay  # no Nagle wait for a relayed small message
    for t in (et, bt):  # a near peer: a fixed receive buffer, no autotuning
        rcvbuf = [o for o in t.handle.set if o[0] == socket.SOL_SOCKET]
        assert rcvbuf == [(socket.SOL_SOCKET, socket.SO_RCVBUF, NEAR_RCVBUF)]
    backlog.dataReceived(b"server flight")
    assert et.value() == b"server flight"
    ep.readConnectionLost()  # endpoint FIN -> manager write side closed
    assert bt.write_closed and not bt.disconnecting
    backlog.dataReceived(b"more")  # the other direction still flows
    assert et.value().endswith(b"more")
    backlog.readConnectionLost()
    assert et.write_closed
    backlog.writeConnectionLost()
    ep.writeConnectionLost()
    assert et.disconnecting and bt.disconnecting
    assert proxy.stats.splices == 1
    assert (proxy.stats.bytes_to_manager, proxy.stats.bytes_to_endpoint) == (len(hello), 17)


def client_hello(sni: str | None) -> bytes:
    ctx = SSL.Context(SSL.TLS_METHOD)
    conn = SSL.Connection(ctx, None)
    if sni:
        conn.set_tlsext_host_name(sni.encode())
    conn.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        conn.do_handshake()
    return conn.bio_read(65536)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (client_hello("nosuch"), "unknown_snikey"),
        (client_hello(None), "no_sni"),
        (b"\x00" * 10, "not_tls"),
    ],
)
def test_endpoint_refusals(options: PPKSServerOptions, data: bytes, reason: str) -> None:
    proxy, _ = make_proxy(options)
    ep = proxy.endpoint_factory().buildProtocol(None)
    t = HalfCloseTransport()
    ep.makeConnection(t)
    ep.dataReceived(data)
    assert t.disconnecting and proxy.stats.refusals[reason] == 1


def test_a_long_sni_is_cut_short_in_the_refusal_line(options: PPKSServerOptions) -> None:
    """An SNI of 12,000 characters (it fits the default 16 KB hello cap) was quoted whole
    in its `unknown_snikey` line: the refusal budget bounds lines, not their size (20
    such lines a minute: 14 MB of log an hour). A snikey has at most 63 characters: the
    line shows the first 64 and the length. (Since session 21 a name over 255 bytes,
    which OpenSSL refuses, is `bad_sni` with its length only.)"""

    from test_clienthello import hello_bytes, sni_ext

    proxy, _ = make_proxy(options, hello_cap=16384)
    with captured_events() as seen:
        for n in (255, 12000):
            ep = proxy.endpoint_factory().buildProtocol(None)
            t = HalfCloseTransport()
            ep.makeConnection(t)
            ep.dataReceived(hello_bytes([sni_ext((0, b"a" * n))]))
            assert t.disconnecting
    assert proxy.stats.refusals == {"unknown_snikey": 1, "bad_sni": 1}
    [line] = [e for e in seen if e.get("reason") == "unknown_snikey"]
    want = f"no backlog connection for snikey {'a' * 64!r}... (255 characters)"
    assert line["text"] == want, line["text"][:200]
    [line] = [e for e in seen if e.get("reason") == "bad_sni"]
    assert line["text"] == "server_name with 12000 bytes (at most 255)", line["text"][:200]


def test_hello_timeout(options: PPKSServerOptions) -> None:
    proxy, clock = make_proxy(options, hello_timeout=2.0)
    ep = proxy.endpoint_factory().buildProtocol(None)
    t = HalfCloseTransport()
    ep.makeConnection(t)
    ep.dataReceived(client_hello("k")[:10])
    clock.advance(1.9)
    assert not t.disconnecting
    clock.advance(0.2)
    assert t.disconnecting and proxy.stats.refusals["timeout"] == 1


def test_setup_timeout_and_registry_cap(options: PPKSServerOptions) -> None:
    proxy, clock = make_proxy(options, setup_timeout=1.0)
    register(proxy)
    register(proxy)
    proto = proxy.setup_factory().buildProtocol(None)
    t = HalfCloseTransport()
    proto.makeConnection(t)
    clock.advance(1.0)
    assert t.disconnecting and proxy.stats.registration_failures == 1
    # a third backlog for k1 (cap 2): xreg answered ENORES, a soft failure for the manager
    with pytest.raises(AssertionError):
        register(proxy)
    assert proxy.registry.count("k1") == 2
    assert proxy.stats.enores == {"per_snikey": 1} and "enores=per_snikey:1" in proxy.stats_line()


def test_idle_backlog_that_talks_is_dropped(options: PPKSServerOptions) -> None:
    proxy, _ = make_proxy(options)
    proto, t = register(proxy)
    proto.dataReceived(b"unexpected")
    assert t.disconnecting and proxy.registry.count("k1") == 0


def test_idle_backlog_closed_by_the_manager_leaves_the_registry(
    options: PPKSServerOptions,
) -> None:
    proxy, _ = make_proxy(options)
    proto, _ = register(proxy)
    proto.readConnectionLost()
    assert proxy.registry.count("k1") == 0


def test_handoff_keeps_the_bytes_after_close_notify(options: PPKSServerOptions) -> None:
    server = TLSHandoff(options.serverConnectionForTLS(None), is_client=False)  # type: ignore[arg-type]
    c = client()
    step = server.receive(c.start())
    finished = c.receive(step.out).out
    step2 = server.receive(finished + c.send(b"app") + c.close() + b"RAW BYTES")
    assert step2.data == b"app" and step2.closed and step2.rest == b"RAW BYTES"
    assert server.receive(b"more raw").rest == b"more raw"


def test_handoff_refuses_garbage_records(options: PPKSServerOptions) -> None:
    server = TLSHandoff(options.serverConnectionForTLS(None), is_client=False)  # type: ignore[arg-type]
    with pytest.raises(HandoffError, match="TLS record of"):
        server.receive(b"\x16\x03\x01\xff\xff")


@pytest.mark.parametrize(
    "junk",
    [b"GET / HTTP/1.0\r\n\r\n", b"SSH-2.0-OpenSSH_9.2\r\n", b"\x16\x05\x01\x00\x10"],
)
def test_handoff_refuses_what_is_not_tls_at_its_first_record_header(
    options: PPKSServerOptions, junk: bytes
) -> None:
    """An HTTP request (a port scanner, a misdirected client) on the setup port: its first
    bytes read as a record header announcing ~8 KB ("GET /": type 0x47, length 0x202f),
    so the proxy waited for them and closed after --setup-timeout with "registration not
    done in 10 s", which names neither the peer's mistake nor TLS. Refused at once now."""
    server = TLSHandoff(options.serverConnectionForTLS(None), is_client=False)  # type: ignore[arg-type]
    with pytest.raises(HandoffError, match=r"not TLS \(record type 0x.., version .*\)"):
        server.receive(junk)


def test_not_tls_on_the_setup_port_is_closed_at_once_with_its_reason(
    options: PPKSServerOptions,
) -> None:
    proxy, _ = make_proxy(options)
    proto = proxy.setup_factory().buildProtocol(None)
    t = HalfCloseTransport()
    proto.makeConnection(t)
    proto.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
    assert t.disconnecting and proxy.stats.registration_failures == 1


def test_a_flood_of_refused_xregs_is_a_bounded_number_of_log_lines(
    options: PPKSServerOptions,
) -> None:
    """A manager that registers past the snikey's backlog cap gets ENORES each time (a
    soft failure: it tries again) and each one was a warning line, outside the setup
    port's log budget: 1,000 registrations for one snikey were 936 lines. Now they share
    the port's 20 lines a minute, and the counter counts them all."""

    proxy, clock = make_proxy(options, setup_timeout=600.0)  # (fakes never close)
    register(proxy)
    register(proxy)  # the cap (2) reached
    with captured_events() as seen:
        for _ in range(40):
            with pytest.raises(AssertionError):  # answered ENORES, not SUCCESS
                register(proxy)
        assert proxy.stats.registration_failures == 40
        refused = seen.where(fmt="refusing xreg")
        assert len(refused) == 20, len(refused)
        assert "the next ones are counted, not logged" in refused[-1]["more"]
        clock.advance(60)
        with pytest.raises(AssertionError):
            register(proxy)
        assert seen[-1]["more"] == " [20 not logged before this one]", seen[-1]


@pytest.mark.parametrize("how", ["fin", "reset"])
@pytest.mark.parametrize("phase", ["connected", "handshake", "xreg", "echo"])
def test_a_manager_gone_before_its_registration_finished_is_logged_and_counted(
    options: PPKSServerOptions, phase: str, how: str
) -> None:
    """A manager that half-closed or went away in the middle of its registration was
    closed without a line and without a count (the endpoints port says `refused (eof):
    closed before a complete ClientHello`). Now one line (in the setup port's budget)
    naming the step, and `registration_failures`."""

    proxy, _ = make_proxy(options)
    proto = proxy.setup_factory().buildProtocol(None)
    assert isinstance(proto, SetupProtocol)
    t = HalfCloseTransport()
    proto.makeConnection(t)
    tls = client()
    if phase != "connected":
        proto.dataReceived(tls.start())
    if phase in ("xreg", "echo"):
        step = tls.receive(t.value())
        t.clear()
        proto.dataReceived(step.out + tls.send(wire.encode(wire.Xreg(b"k1"))))
        tls.receive(t.value())
        t.clear()
    if phase == "echo":
        proto.dataReceived(tls.close())
        assert t.value() == PREAMBLE
    with captured_events() as seen:
        if how == "fin":
            proto.readConnectionLost()
        proto.connectionLost(Failure(ConnectionDone()))
    assert proxy.stats.registration_failures == 1
    [line] = [e for e in seen if e.get("text", "").startswith("closed by the manager")]
    assert (
        line["text"]
        == {
            "connected": "closed by the manager before its TLS handshake finished",
            "handshake": "closed by the manager before its TLS handshake finished",
            "xreg": "closed by the manager after its xreg, before its close_notify",
            "echo": "closed by the manager before it echoed the preamble",
        }[phase]
    )
    assert proxy.registry.count("k1") == 0


def test_a_manager_that_closes_after_enores_is_not_counted_twice(
    options: PPKSServerOptions,
) -> None:
    from packetlab.proxy.server import ENORES_DELAY

    proxy, clock, proto, t, tls = refused_xreg(options)
    clock.advance(ENORES_DELAY)  # the refusal is held back (see below)
    assert list(wire.Framer().feed(tls.receive(t.value()).data)) == [wire.Result(68)]
    proto.connectionLost(Failure(ConnectionDone()))  # the soft failure: it gives up here
    assert proxy.stats.registration_failures == 1


def test_manager_backlog_finds_an_overlapping_preamble() -> None:
    from packetlab.controller.backlog import BacklogConnection

    class Pool:
        creator = PPKSClientCreator(None, AuthMode.AGENT)
        reactor = Clock()
        step_timeout = 2.0
        where = "proxy"
        established_with: list[Any] = []
        claimed_with: list[Any] = []

        def established(self, conn: Any) -> None:
            self.established_with.append(conn)

        def claimed(self, conn: Any) -> None:
            self.claimed_with.append(conn)

    pool = Pool()
    conn = BacklogConnection(pool)  # type: ignore[arg-type]
    t = StringTransport()
    conn.makeConnection(t)
    conn.state = "preamble"
    t.clear()
    conn.dataReceived(b"\x17\x03\x03\x00\x02xxPKPKT")
    assert pool.established_with == []
    conn.dataReceived(b"LAB")
    assert t.value() == PREAMBLE and pool.established_with == [conn] and conn.state == "idle"


def test_pending_connections_are_capped_per_port_with_one_log_line(
    options: PPKSServerOptions,
) -> None:
    """Slow-loris / half-open floods: at most `pending_max` connections per port may sit
    without a complete ClientHello (endpoints) or registration (managers); each new one
    beyond evicts the oldest (counted; logged once per episode, not once per connection),
    so a real endpoint, quick with its ClientHello, still gets through."""
    from twisted.logger import Logger

    proxy, _ = make_proxy(options, pending_max=4)
    events: list[dict[str, Any]] = []
    proxy.log = Logger(observer=events.append)  # type: ignore[arg-type]
    register(proxy)  # a registered backlog is no longer pending
    assert proxy.pending == {"endpoints": {}, "setup": {}}

    def conn(factory: Any) -> tuple[Any, HalfCloseTransport]:
        p = factory.buildProtocol(None)
        t = HalfCloseTransport()
        p.makeConnection(t)
        return p, t

    slow = [conn(proxy.endpoint_factory()) for _ in range(7)]
    assert [t.disconnecting for _, t in slow] == [True] * 3 + [False] * 4
    assert proxy.stats.refusals["busy"] == 3 and len(proxy.pending["endpoints"]) == 4
    full = [e for e in events if "closing the oldest" in e["log_format"]]
    assert len(full) == 1 and full[0]["port"] == "endpoints"
    ep, et = conn(proxy.endpoint_factory())  # a real endpoint amid the flood
    ep.dataReceived(client_hello("k1"))
    assert ep.spliced and not et.disconnecting
    # the setup port has its own count
    setups = [conn(proxy.setup_factory()) for _ in range(5)]
    assert [t.disconnecting for _, t in setups] == [True] + [False] * 4
    assert proxy.stats.setup_busy == 1 and proxy.stats.registration_failures == 1
    for p, _ in slow[4:]:
        p.connectionLost(Failure(ConnectionDone()))
    assert proxy.pending["endpoints"] == {} and proxy.stats.refusals["busy"] == 4
    assert any("under the cap again" in e["log_format"] for e in events)


def test_a_pending_flood_from_one_address_closes_its_own(options: PPKSServerOptions) -> None:
    """Session 31: at `pending_max` the oldest pending connection was closed for each
    new one, so a flood from one address (no ClientHello, or no registration) closed a
    real endpoint's or manager's connection before its first bytes had come. Now the
    oldest of the address holding the most goes; the real one is served."""
    proxy, _ = make_proxy(options, pending_max=4)
    register(proxy)

    def conn(factory: Any, host: str) -> tuple[Any, HalfCloseTransport]:
        p = factory.buildProtocol(None)
        t = HalfCloseTransport()
        t.peerAddr = IPv4Address("TCP", host, 40000)
        p.makeConnection(t)
        return p, t

    ep, et = conn(proxy.endpoint_factory(), "10.0.0.1")  # its hello not yet in
    slow = [conn(proxy.endpoint_factory(), "10.0.0.2") for _ in range(9)]
    assert [t.disconnecting for _, t in slow] == [True] * 6 + [False] * 3
    assert not et.disconnecting and proxy.stats.refusals["busy"] == 6
    ep.dataReceived(client_hello("k1"))
    assert ep.spliced and not et.disconnecting
    assert proxy.pending_by["endpoints"].held == {"10.0.0.2": 3}
    manager, mt = conn(proxy.setup_factory(), "10.0.0.1")
    setups = [conn(proxy.setup_factory(), "10.0.0.3") for _ in range(6)]
    assert [t.disconnecting for _, t in setups] == [True] * 3 + [False] * 3
    assert not mt.disconnecting and proxy.stats.setup_busy == 3
    for p, _ in slow[6:] + setups[3:] + [(manager, mt)]:
        p.connectionLost(Failure(ConnectionDone()))
    assert proxy.pending_by["endpoints"].held == {} == proxy.pending_by["setup"].held


def test_keepalive_on_both_ports(options: PPKSServerOptions) -> None:
    """An idle backlog waits indefinitely, often behind the manager's NAT: TCP keepalive
    keeps the mapping and notices a vanished manager (or endpoint) instead of splicing an
    endpoint to a dead backlog."""
    proxy, _ = make_proxy(options, keepalive=60)
    _, bt = register(proxy)
    ep = proxy.endpoint_factory().buildProtocol(None)
    et = HalfCloseTransport()
    ep.makeConnection(et)
    for t in (bt, et):
        assert t.keepalive
        tcp = {o[1]: o[2] for o in t.handle.set if o[0] == socket.IPPROTO_TCP}
        assert tcp == {socket.TCP_KEEPIDLE: 60, socket.TCP_KEEPINTVL: 15, socket.TCP_KEEPCNT: 4}
    off, _ = make_proxy(options, keepalive=0)
    _, t = register(off)
    assert not t.keepalive and t.handle.set == []


def endpoint(proxy: Proxy, sni: str, hello: bytes = b"") -> tuple[Any, HalfCloseTransport]:
    ep = proxy.endpoint_factory().buildProtocol(None)
    t = HalfCloseTransport()
    ep.makeConnection(t)
    ep.dataReceived(hello or client_hello(sni))
    return ep, t


def test_endpoint_waits_for_the_manager_to_replenish(options: PPKSServerOptions) -> None:
    """More endpoints at once than idle backlogs: the reference endpoint drops the
    experiment on a TLS alert, so one whose snikey is in use waits (up to backlog_wait)
    for the backlog the manager registers right after each use, and gets it."""
    proxy, clock = make_proxy(options)
    register(proxy)
    first, _ = endpoint(proxy, "k1")
    assert first.spliced
    hello = client_hello("k1")
    second, st = endpoint(proxy, "k1", hello[:100])
    second.dataReceived(hello[100:])
    assert not st.disconnecting and not second.spliced and proxy.stats.refusals == {}
    second.dataReceived(b"early")  # kept for the backlog, after the hello
    gauges = json.loads(proxy.stats_json())
    assert (gauges["waiting"], gauges["pending_endpoints"], gauges["pending_setups"]) == (1, 1, 0)
    assert "waiting=1" in proxy.stats_line()
    clock.advance(4.9)
    backlog, bt = register(proxy)  # the replenishment
    assert bt.value() == hello + b"early"  # routed at once, unchanged
    assert second.spliced and backlog.state == "spliced" and proxy.registry.count("k1") == 0
    assert proxy.stats.splices == 2 and proxy.pending["endpoints"] == {}


def test_waiting_for_a_backlog_times_out_with_an_alert(options: PPKSServerOptions) -> None:
    proxy, clock = make_proxy(options, backlog_wait=3.0)
    register(proxy)
    endpoint(proxy, "k1")
    _, t = endpoint(proxy, "k1")
    clock.advance(2.9)
    assert not t.disconnecting
    clock.advance(0.2)
    assert t.disconnecting and t.value() == bytes.fromhex("15030300020270")
    assert proxy.stats.refusals["no_backlog"] == 1
    register(proxy)  # nobody waits now: the backlog idles
    assert proxy.registry.count("k1") == 1


def test_a_waiting_endpoint_that_leaves_does_not_take_a_backlog(
    options: PPKSServerOptions,
) -> None:
    proxy, _ = make_proxy(options)
    register(proxy)
    endpoint(proxy, "k1")
    ep, _ = endpoint(proxy, "k1")
    ep.readConnectionLost()  # gave up
    ep.connectionLost(Failure(ConnectionDone()))
    register(proxy)
    assert proxy.registry.count("k1") == 1 and proxy.waiting == {}


def test_never_seen_snikey_or_no_wait_is_refused_at_once(options: PPKSServerOptions) -> None:
    proxy, _ = make_proxy(options)
    _, t = endpoint(proxy, "never")
    assert t.disconnecting and proxy.stats.refusals["unknown_snikey"] == 1
    nowait, _ = make_proxy(options, backlog_wait=0)
    register(nowait)
    endpoint(nowait, "k1")
    _, t = endpoint(nowait, "k1")
    assert t.disconnecting and nowait.stats.refusals["unknown_snikey"] == 1


def test_registration_as_the_reference_sends_it(options: PPKSServerOptions) -> None:
    """OBSERVED §4.1 byte by byte: the xreg as two TLS records (4-byte header, then the
    snikey), the result, the manager's close_notify sent without waiting for ours, then
    raw PKTLAB from us and the echo; two such registrations of one snikey in parallel."""
    proxy, _ = make_proxy(options)
    conns = []
    for _ in range(2):
        conns.append(handshaken(proxy))
    for proto, t, tls, step in conns:
        xreg = wire.encode(wire.Xreg(b"proxysni1"))
        assert xreg.hex() == "80000009" + b"proxysni1".hex()
        proto.dataReceived(step.out + tls.send(xreg[:4]) + tls.send(xreg[4:]))
        answer = t.value()
        # after the two NewSessionTicket records (the handshake's end), the result is one
        # 26-byte record: 17 03 03 00 15 (4 bytes, type, 16 of tag)
        assert answer[-26:-21] == bytes.fromhex("1703030015")
        got = tls.receive(answer)
        t.clear()
        assert got.data == bytes.fromhex("40000000")
        proto.dataReceived(tls.close())
        assert t.value() == b"PKTLAB"
        proto.dataReceived(b"PKT")
        proto.dataReceived(b"LAB")
        assert proto.state == "backlog"
    assert proxy.registry.count("proxysni1") == 2 and proxy.stats.registrations == 2


def test_a_flood_of_bad_connections_is_a_bounded_number_of_log_lines(
    options: PPKSServerOptions,
) -> None:
    """1,500 connections that send no TLS (1,500 on each port): one warning per
    connection, as fast as the peer connected (the log grew with the flood). Now 20 lines
    a minute per port, the counters counting them all, and the first line of the next
    minute says how many were left out."""

    proxy, clock = make_proxy(options)
    with captured_events() as seen:
        for factory, junk in (
            (proxy.endpoint_factory, b"GET / HTTP/1.0\r\n\r\n"),
            (proxy.setup_factory, b"\x16\x03\x01\x00\x05hello"),  # a TLS record, not a hello
        ):
            for _ in range(1500):
                p = factory().buildProtocol(None)
                p.makeConnection(HalfCloseTransport())
                p.dataReceived(junk)
        assert proxy.stats.refusals["not_tls"] == 1500
        assert proxy.stats.registration_failures >= 1500  # (+ evictions: the fakes never close)
        refused = seen.where(fmt="{more}", has="log_level")
        assert len(refused) == 40, len(refused)
        clock.advance(60)
        p = proxy.endpoint_factory().buildProtocol(None)
        p.makeConnection(HalfCloseTransport())
        p.dataReceived(b"\x00" * 10)
        assert seen[-1]["more"] == " [1480 not logged before this one]"


def test_an_xreg_refusal_is_held_back_so_a_reference_manager_does_not_spin(
    options: PPKSServerOptions,
) -> None:
    """OBSERVED §4.1 [px_xreg_err]: pktxpmgr answers a non-zero xreg result with a new
    setup connection at once, no backoff (~5 ms later): an ENORES sent at once made a
    full proxy and every reference manager beyond its caps spin at ~200 TLS handshakes a
    second each. The refusal now waits ENORES_DELAY (1 s, under pktxpmgr's 2 s
    BacklogConnTimeout, so it still gets its WARN), as the broker holds its error results
    (O §5: "to throttle, delay the error result or the close")."""
    from packetlab.proxy.server import ENORES_DELAY

    assert 0.5 <= ENORES_DELAY < 2.0
    proxy, clock, proto, t, tls = refused_xreg(options)
    assert list(wire.Framer().feed(tls.receive(t.value()).data)) == []
    t.clear()
    clock.advance(ENORES_DELAY - 0.01)
    assert t.value() == b""
    clock.advance(0.02)
    assert list(wire.Framer().feed(tls.receive(t.value()).data)) == [wire.Result(68)]
    assert proxy.stats.registration_failures == 1 and not t.disconnecting
    # then as before: the manager's close_notify, and the link ends (nothing registered)
    t.clear()
    proto.dataReceived(tls.close())
    assert t.value() == b""  # no preamble for a refused registration (session 23)
    proto.dataReceived(b"PKTLAB")
    assert t.disconnecting and proxy.registry.count("k1") == 2


def test_a_manager_gone_while_its_refusal_is_held_leaves_no_timer(
    options: PPKSServerOptions,
) -> None:
    _proxy, clock, proto, _t, _tls = refused_xreg(options)
    proto.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []


def test_a_manager_that_closes_before_its_held_refusal_gets_no_late_tls_record(
    options: PPKSServerOptions,
) -> None:
    """The refusal is encrypted only when it goes (records leave in sequence order); a
    manager whose close_notify comes first gets no TLS after it, and no timer is left.
    Nor the raw preamble (until session 23 it got it): PKTLAB acknowledges a
    registration (OBSERVED §4.2), and this one was refused; the link is closed."""
    proxy, clock, proto, t, tls = refused_xreg(options)
    t.clear()
    proto.dataReceived(tls.close())
    assert t.value() == b"" and t.disconnecting
    proto.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == [] and proxy.stats.registration_failures == 1


def test_the_managers_bytes_after_its_handshake_split_at_every_boundary(
    options: PPKSServerOptions,
) -> None:
    """OBSERVED §4.1 as one stream: the xreg (two records, as pktxpmgr writes it), the
    close_notify pktxpmgr sends without waiting for the result, and the raw PKTLAB echo,
    cut in two at every byte: each registration ends as an idle backlog (a record cut
    inside, the close_notify and the echo in one segment)."""
    for cut in range(200):
        proxy, _ = make_proxy(options)
        proto = proxy.setup_factory().buildProtocol(None)
        assert isinstance(proto, SetupProtocol)
        t = HalfCloseTransport()
        proto.makeConnection(t)
        tls = client()
        proto.dataReceived(tls.start())
        step = tls.receive(t.value())
        assert step.handshake_done
        xreg = wire.encode(wire.Xreg(b"proxysni1"))
        tail = step.out + tls.send(xreg[:4]) + tls.send(xreg[4:]) + tls.close()
        tail += PREAMBLE  # pktxpmgr echoes only after it has read ours; a peer may not wait
        if cut >= len(tail):
            break
        for piece in (tail[:cut], tail[cut:]):  # cut 0: all in one segment
            if piece:  # a transport never delivers b""
                proto.dataReceived(piece)
        assert proto.state == "backlog", (cut, len(tail))
        assert t.value().endswith(PREAMBLE) and not t.disconnecting, cut
        assert proxy.registry.count("proxysni1") == 1
    assert cut > 100  # the loop ran past the whole tail


@pytest.mark.parametrize(
    ("echo", "registered"),
    [
        (b"PKTLAB", True),
        (b"PKTLAX", False),  # byte matching (§6.2 step 5)
        (b"pktlab", False),
        (b"PKTLABX", False),  # a byte past the echo, in the same segment
        (b"PKPKTLAB", False),  # the manager echoes what it read: never a prefix
        (b"X", False),  # wrong from the first byte
    ],
)
def test_the_echo_is_exactly_the_six_preamble_bytes(
    options: PPKSServerOptions, echo: bytes, registered: bool
) -> None:
    proxy, _ = make_proxy(options)
    proto, t = register(proxy, echo=echo)
    assert (proto.state == "backlog") is registered
    assert t.disconnecting is not registered
    assert proxy.registry.count("k1") == int(registered)
    assert proxy.stats.registration_failures == int(not registered)


def test_a_hello_whose_server_name_openssl_refuses_keeps_the_backlog(
    options: PPKSServerOptions,
) -> None:
    """Two host_names, k1 first: the proxy routed it by the first to k1's backlog, and
    the manager's OpenSSL then refused the hello (bad extension): a backlog spent on an
    endpoint nobody could serve (session 21). Now it is refused here with the alert
    OpenSSL sends (decode_error), counted as bad_sni, and the backlog stays."""
    proxy, _ = make_proxy(options)
    _, bt = register(proxy)
    bt.clear()
    names = b"".join(struct.pack(">BH", 0, len(n)) + n for n in (b"k1", b"k2"))
    sni = struct.pack(">H", len(names)) + names
    body = b"\x03\x03" + bytes(33) + b"\x00\x02\x13\x01\x01\x00"  # no session id
    exts = struct.pack(">HH", 0, len(sni)) + sni
    body += struct.pack(">H", len(exts)) + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    ep, t = endpoint(proxy, "k1", b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs)
    assert not ep.spliced and bt.value() == b"" and proxy.registry.count("k1") == 1
    assert t.disconnecting and t.value() == bytes.fromhex("15030300020232")
    assert proxy.stats.refusals == {"bad_sni": 1}


def xreg_from(
    proxy: Proxy, clock: Clock, host: str, creds: Credentials | None = None, snikey: bytes = b"k1"
) -> int:
    """A manager at `host` (with `creds` as its agent cert, or none) sends xreg(snikey):
    the result code it gets (an ENORES after its delay), then it closes."""
    from twisted.internet.address import IPv4Address

    proto = proxy.setup_factory().buildProtocol(None)
    t = HalfCloseTransport()
    t.peerAddr = IPv4Address("TCP", host, 40000)
    proto.makeConnection(t)
    tls = TLSHandoff(
        PPKSClientCreator(creds, AuthMode.AGENT).clientConnectionForTLS(None),  # type: ignore[arg-type]
        is_client=True,
    )
    proto.dataReceived(tls.start())
    step = tls.receive(t.value())
    t.clear()
    proto.dataReceived(step.out + tls.send(wire.encode(wire.Xreg(snikey))))
    clock.advance(ENORES_DELAY)
    [answer] = wire.Framer().feed(tls.receive(t.value()).data)
    proto.connectionLost(Failure(ConnectionDone()))
    assert isinstance(answer, wire.Result)
    return answer.errid


def test_a_snikey_in_use_is_refused_to_another_manager(options: PPKSServerOptions) -> None:
    """Anyone could register backlogs for a manager's snikey (it is in every xdescr the
    broker sends): 62 of them filled its cap, so that the manager's replenishments got
    ENORES, and its endpoints were spliced to the stranger, whose TLS they refuse
    (session 21). Now a snikey in use belongs to the manager that registered it (its
    agent key, else its address): another one's xreg is refused (ENORES, logged), for
    as long as the snikey has idle backlogs or was used in the last 10 minutes."""
    proxy, clock = make_proxy(options)
    register(proxy)  # from StringTransport's default peer, 192.168.1.1, without a cert
    assert xreg_from(proxy, clock, "10.9.9.9") == Status.ENORES  # a stranger, no cert
    key = generate_private_key()
    creds = Credentials([issue_certificate("agent", key, key, 0, 2**31 - 1)], key)
    assert xreg_from(proxy, clock, "192.168.1.1", creds) == Status.ENORES  # same host, a key
    assert xreg_from(proxy, clock, "192.168.1.1") == Status.SUCCESS  # the manager itself
    assert xreg_from(proxy, clock, "10.9.9.9", snikey=b"k2") == Status.SUCCESS  # another key
    assert proxy.registry.count("k1") == 1
    proxy.registry.take("k1")  # used by an endpoint: still held while the manager replenishes
    clock.advance(KNOWN_FOR - 10)
    assert xreg_from(proxy, clock, "10.9.9.9") == Status.ENORES
    clock.advance(10)  # not used for 10 minutes: free again
    assert xreg_from(proxy, clock, "10.9.9.9") == Status.SUCCESS
    assert proxy.stats.enores == {"held": 3}


def refused_lines(proxy: Proxy, key: bytes, snikey: bytes) -> list[str]:
    """A manager showing `key` sends xreg `snikey`: the log lines of a snikey held."""

    with captured_events() as seen:
        proto = proxy.setup_factory().buildProtocol(None)
        t = HalfCloseTransport()
        proto.makeConnection(t)
        proto.tls = KeyedTLS(proto.tls, key)
        tls = client()
        proto.dataReceived(tls.start())
        step = tls.receive(t.value())
        t.clear()
        proto.dataReceived(step.out + tls.send(wire.encode(wire.Xreg(snikey))))
    return seen.lines("held by another")


def test_two_managers_whose_keys_share_a_64_bit_prefix_are_two(
    options: PPKSServerOptions,
) -> None:
    """A manager was known by its agent key's first 16 hex digits: another key with the
    same first 64 bits could register backlogs of a snikey the first one holds (and fill
    its cap). Now the whole key; the log line shows both whole when their prefixes
    match (cut to 16 digits, it would name one manager twice)."""
    first, second = bytes(8) + b"\x01" * 24, bytes(8) + b"\x02" * 24
    proxy, _ = make_proxy(options)
    register(proxy, "k1", key=first)
    register(proxy, "k2", key=second)  # a snikey of its own: taken
    [line] = refused_lines(proxy, second, b"k1")
    assert proxy.registry.count("k1") == 1 and proxy.stats.registration_failures == 1
    assert f"(agent key {first.hex()}; this is agent key {second.hex()})" in line
    register(proxy, "k1", key=first)  # its owner still may
    assert proxy.registry.count("k1") == 2


def test_a_manager_is_shown_by_16_hex_digits_of_its_key_in_log_lines(
    options: PPKSServerOptions,
) -> None:
    proxy, _ = make_proxy(options)
    register(proxy, "k1", key=b"\x01" * 32)
    [line] = refused_lines(proxy, b"\x02" * 32, b"k1")
    assert "(agent key 0101010101010101...; this is agent key 0202020202020202...)" in line


def halfway(proxy: Proxy, snikey: str, key: bytes) -> tuple[SetupProtocol, HalfCloseTransport]:
    """A manager showing `key` whose xreg(snikey) was answered SUCCESS and whose
    close_notify got the raw preamble: only its echo is left."""
    proto = proxy.setup_factory().buildProtocol(None)
    assert isinstance(proto, SetupProtocol)
    t = HalfCloseTransport()
    proto.makeConnection(t)
    proto.tls = KeyedTLS(proto.tls, key)  # type: ignore[assignment,arg-type]
    tls = client()
    proto.dataReceived(tls.start())
    step = tls.receive(t.value())
    t.clear()
    proto.dataReceived(step.out + tls.send(wire.encode(wire.Xreg(snikey.encode()))))
    assert list(wire.Framer().feed(tls.receive(t.value()).data)) == [wire.Result()]
    t.clear()
    proto.dataReceived(tls.close())
    assert t.value() == PREAMBLE
    return proto, t


def test_a_stranger_racing_the_first_registration_does_not_take_the_snikey(
    options: PPKSServerOptions,
) -> None:
    """The owner of a snikey was checked at the xreg but written at the echo: a stranger
    whose xreg came while the manager's first registration was between its result and
    its echo was answered SUCCESS, and its later echo made it the owner, so it held a
    backlog of the manager's snikey (its endpoints spliced to the stranger) and every
    replenishment of the manager's was refused ENORES (bpaudit23). The owner is now
    checked again when the echo makes a backlog: the stranger's is closed."""
    manager, stranger = b"\x01" * 32, b"\x02" * 32
    proxy, _ = make_proxy(options)
    mine, _ = halfway(proxy, "k1", manager)
    theirs, t = halfway(proxy, "k1", stranger)  # both xregs came before either echo
    mine.dataReceived(PREAMBLE)
    theirs.dataReceived(PREAMBLE)
    assert proxy.registry.count("k1") == 1 and proxy.registry.take("k1") is mine
    assert t.disconnecting and proxy.stats.registration_failures == 1
    register(proxy, "k1", key=manager)  # the manager replenishes: still its own
    assert proxy.registry.count("k1") == 1


@pytest.mark.parametrize("waiting", [False, True], ids=["before_hello", "waiting"])
def test_an_endpoint_reset_before_it_is_routed_is_counted_and_logged(
    options: PPKSServerOptions, waiting: bool
) -> None:
    """A connection reset (no FIN) before its ClientHello was routed never ran
    readConnectionLost: 300 reset connections were neither counted nor logged, so the
    operator's `refusals` did not add up (session 26: 900 connections, 600 counted)."""

    from twisted.internet.error import ConnectionLost

    proxy, _ = make_proxy(options)
    if waiting:
        register(proxy)
        endpoint(proxy, "k1")  # takes the one backlog: the next one waits
        ep, _ = endpoint(proxy, "k1")
    else:
        ep = proxy.endpoint_factory().buildProtocol(None)
        ep.makeConnection(HalfCloseTransport())
        ep.dataReceived(client_hello("k1")[:20])
    with captured_events() as seen:
        ep.connectionLost(Failure(ConnectionLost()))
    assert proxy.stats.refusals == {"eof": 1} and proxy.waiting == {}
    when = "while waiting for a backlog" if waiting else "before a complete ClientHello"
    [line] = seen.lines("refused (eof)")
    assert f"refused (eof): connection lost {when} (Connection to the other side" in line
    assert proxy.pending["endpoints"] == {}


def test_connections_the_proxy_closes_at_stop_are_no_refusals(
    options: PPKSServerOptions,
) -> None:
    proxy, _ = make_proxy(options)
    ep = proxy.endpoint_factory().buildProtocol(None)
    ep.makeConnection(HalfCloseTransport())
    proxy.close_all()
    ep.connectionLost(Failure(ConnectionDone()))
    assert proxy.stats.refusals == {}


def test_a_stopping_proxy_says_so_once_and_does_not_blame_the_managers(
    options: PPKSServerOptions,
) -> None:
    """At SIGTERM every idle backlog was `backlog ... for snikey k1 closed by the manager`
    (up to 4,096 lines), though the proxy closed them itself."""

    proxy, _ = make_proxy(options)
    backlogs = [register(proxy)[0] for _ in range(2)]
    with captured_events() as events:
        proxy.close_all()
        for b in backlogs:
            b.connectionLost(Failure(ConnectionDone()))
    assert events.lines() == ["stopping: closing 2 connection(s), 2 of them idle backlogs"]
    assert proxy.registry.count("k1") == 0 and proxy.stats.registration_failures == 0


def xreg_granted(
    proxy: Proxy, snikey: str, host: str | None = None
) -> tuple[SetupProtocol, HalfCloseTransport, TLSHandoff, bytes]:
    """A manager's xreg up to its result (what came back, decrypted), before its
    close_notify and echo."""
    t = HalfCloseTransport()
    if host is not None:
        t.peerAddr = IPv4Address("TCP", host, 40000)
    proto, t, tls, step = handshaken(proxy, t)
    proto.dataReceived(step.out + tls.send(wire.encode(wire.Xreg(snikey.encode()))))
    answer = tls.receive(t.value()).data
    t.clear()
    return proto, t, tls, answer


def test_backlogs_and_splices_are_capped_by_the_descriptor_budget(
    options: PPKSServerOptions,
) -> None:
    """Was: only the registry's caps (4096 in all), beyond what `ulimit -n` allows: one
    stranger's backlogs took every descriptor, and Twisted then closed every new
    connection at accept (EMFILE). Now `link_max` backlogs plus splices: past it, xreg
    gets ENORES (held back as every refusal) with a line naming the descriptor limit."""
    proxy, clock = make_proxy(options, link_max=2, per_address_share=1.0)  # (one address)
    full = "2 backlog and spliced connections (cap 2, from the descriptor limit: raise `ulimit -n`)"
    register(proxy, "a")
    granted, _, _, answer = xreg_granted(proxy, "b")  # counted from its result on
    assert list(wire.Framer().feed(answer)) == [wire.Result()]
    assert proxy.links_full() == full
    _, t, tls, answer = xreg_granted(proxy, "c")
    assert answer == b""  # held back
    clock.advance(ENORES_DELAY)
    got = tls.receive(t.value()).data
    assert list(wire.Framer().feed(got)) == [wire.Result(int(Status.ENORES))]
    # counted by cause: the lines are budgeted (20 a minute)
    assert proxy.stats.enores == {"descriptors": 1}
    assert "enores=descriptors:1" in proxy.stats_line()
    assert json.loads(proxy.stats_json())["enores"] == {"descriptors": 1}
    ep, _ = endpoint(proxy, "a")  # a splice counts as the backlog it was
    assert ep.spliced and proxy.links_full() == full
    granted.connectionLost(Failure(ConnectionDone()))  # gone before its echo
    assert proxy.links_full() is None
    register(proxy, "d")
    assert proxy.links_full() == full
    ep.connectionLost(Failure(ConnectionDone()))  # the splice ends: room for one more
    assert proxy.links_full() is None


def test_one_manager_address_holds_at_most_its_share(options: PPKSServerOptions) -> None:
    """Session 31: one stranger without a certificate (the proxy asks for none unless
    ManagerRootPath is set) registered backlogs from one address until the descriptor
    budget was full, and managers from elsewhere got ENORES. Now one address holds at
    most its share (a quarter of the budget, at least 64 or half) of backlogs, splices
    and granted xregs, whatever keys it shows: past it ENORES (held back), counted as
    `per_address`, one line per address a minute; another address registers, and a
    backlog gone gives room back."""

    proxy, clock = make_proxy(options, link_max=8)  # share: 4
    proxy.registry.per_snikey = 64
    with captured_events() as events:
        mine = [register(proxy, "s", host="10.0.0.2")[0] for _ in range(3)]
        granted, _, _, answer = xreg_granted(proxy, "s", "10.0.0.2")  # the 4th: counted
        assert list(wire.Framer().feed(answer)) == [wire.Result()]
        for _ in range(3):
            _, t, tls, answer = xreg_granted(proxy, "s", "10.0.0.2")
            assert answer == b""  # held back
            clock.advance(ENORES_DELAY)
            got = tls.receive(t.value()).data
            assert list(wire.Framer().feed(got)) == [wire.Result(int(Status.ENORES))]
        assert proxy.stats.enores == {"per_address": 3}
        assert "enores=per_address:3" in proxy.stats_line()
        assert proxy.share.refused == 3
        register(proxy, "t", host="10.0.0.1")  # another address
        ep, _ = endpoint(proxy, "s")  # a splice still counts for the manager's address
        assert ep.spliced
        assert proxy.xreg_refusal("s", "address 10.0.0.2", "10.0.0.2") is not None
        mine[1].connectionLost(Failure(ConnectionDone()))
        assert proxy.xreg_refusal("s", "address 10.0.0.2", "10.0.0.2") is None
        granted.connectionLost(Failure(ConnectionDone()))
        assert proxy.share.held == {"10.0.0.2": 2, "10.0.0.1": 1}  # mine[0] spliced, mine[2]
        mine[0].connectionLost(Failure(ConnectionDone()))  # the splice's manager end
        assert proxy.share.held == {"10.0.0.2": 1, "10.0.0.1": 1}
    said = events.lines("its share")
    assert len(said) == 1, said
    assert "refusing xreg: address 10.0.0.2 holds 4 backlog and spliced connections" in said[0]
    assert "(4: per-address share 0.25 of 8, at least 4)" in said[0], said


def test_the_64s_of_one_48_hold_two_addresses_shares(options: PPKSServerOptions) -> None:
    """Session 33: each /64 of a /48 had its own share, so a /48 (65,536 /64s) took the
    whole budget. Now the /48 holds two addresses' shares (8 of 16 here), another /48
    registers; a link-local manager is its address and zone, not every LAN's fe80::/64."""
    proxy, _ = make_proxy(options, link_max=16)
    proxy.share.floor = 1  # a quarter: 4 per address, 8 per /48
    proxy.registry.per_snikey = 64
    for n in (1, 2):  # a snikey each: the managers have no key, each its address
        for i in range(4):
            assert proxy.xreg_refusal(f"s{n}{i}", "m", f"2001:db8:5:{n}::{i + 1}") is None
            register(proxy, f"s{n}{i}", host=f"2001:db8:5:{n}::{i + 1}")
    cause, why = proxy.xreg_refusal("s3", "m", "2001:db8:5:3::1") or ("", "")
    assert cause == "per_address" and why.startswith(
        "address 2001:db8:5::/48 holds 8 backlog and spliced connections, its share (8: "
    )
    assert proxy.xreg_refusal("s3", "m", "2001:db8:6:1::1") is None  # another /48
    for i in range(4):
        register(proxy, f"l{i}", host=f"fe80::{i + 1}%eth0")
    assert proxy.share.held["fe80::4%eth0"] == 1 and proxy.share.sites["fe80::%eth0/64"] == 4


def test_without_a_descriptor_limit_the_share_is_of_backlog_max(
    options: PPKSServerOptions,
) -> None:
    proxy, _ = make_proxy(options)
    assert proxy.link_max is None and proxy.link_budget == proxy.registry.total_cap == 4096
    assert proxy.share.cap(proxy.link_budget) == 1024
    proxy.link_max = 176
    assert proxy.link_budget == 176 and proxy.share.cap(176) == 64


@pytest.mark.parametrize(
    ("frame", "said"),
    [
        (b"\x80\x00\x00\x03ABC", "got a malformed xreg: xreg snikey must be 1..63 characters"),
        (b"\x80\x00\x00\x40" + b"a" * 64, "got a malformed xreg: xreg snikey must be 1..63"),
        (b"\x80\x00\x00\x00", "got a malformed xreg: xreg snikey must be 1..63"),
        (b"\x99\x00\x00\x01x", "got an unknown message type 0x99"),
        (wire.encode(wire.Start()), "expected one xreg, got Start"),
        (wire.encode(wire.Xreg(b"k1")) * 2, "expected one xreg, got 2 messages at once"),
    ],
    ids=["upper-case", "64-chars", "empty", "unknown-type", "start", "xreg-twice"],
)
def test_a_frame_that_is_no_good_xreg_is_refused_naming_what_was_wrong(
    options: PPKSServerOptions, frame: bytes, said: str
) -> None:
    """Session 36 (spec36): a malformed xreg was logged as `expected one xreg, got
    Malformed`, an unknown type as `got Unknown`: the rule it broke (P §4.6's snikey) or
    the type code is what tells its operator what to fix."""
    proxy, _ = make_proxy(options)
    proto, t, tls, step = handshaken(proxy)
    with captured_events() as seen:
        proto.dataReceived(step.out + tls.send(frame))
    lines = seen.lines(fmt="setup {peer}: {text}; closing{more}")
    assert len(lines) == 1 and said in lines[0], seen.text()
    assert t.disconnecting and proxy.stats.registration_failures == 1
