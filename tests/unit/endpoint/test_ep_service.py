"""NoSub mode: the connect cycle (3 s timeout, 1 s retry, 5 s give-up), reconnects after
sessions and yields, stopping; and controller address parsing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from ep_fakes import Rig
from testkit.logs import captured_events
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from packetlab import wire
from packetlab.endpoint.protocol import ControllerProtocol
from packetlab.endpoint.service import ControllerAddress, NoSubService

ADDR = ControllerAddress("127.0.0.1", 20556)


class FakeLink:
    """Each connect() returns a Deferred the test settles by hand."""

    def __init__(self, reactor: MemoryReactorClock) -> None:
        self.reactor = reactor
        self.attempts: list[tuple[float, defer.Deferred[Any], Any]] = []

    def endpoint(self, reactor: object, address: ControllerAddress) -> FakeLink:
        assert address == ADDR
        return self

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.attempts.append((self.reactor.seconds(), d, factory))
        return d

    def times(self) -> list[float]:
        return [t for t, _, _ in self.attempts]

    def refuse_last(self) -> None:
        self.attempts[-1][1].errback(Failure(ConnectionRefusedError()))

    def accept_last(self) -> tuple[ControllerProtocol, StringTransport]:
        _, d, factory = self.attempts[-1]
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 20556))
        transport = StringTransport()
        proto.makeConnection(transport)
        d.callback(proto)
        return proto, transport


class Sched:
    def __init__(self) -> None:
        self.started = self.stopped = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> list[Any]:
        self.stopped = True
        return []


def service(**kw: Any) -> tuple[NoSubService, FakeLink, MemoryReactorClock, Sched]:
    reactor = MemoryReactorClock()
    link = FakeLink(reactor)
    sched = Sched()
    svc = NoSubService(
        reactor,
        ADDR,
        link,  # type: ignore[arg-type]
        lambda: Rig().session,
        sched,
        **kw,
    )
    svc.startService()
    return svc, link, reactor, sched


def test_refused_connects_retry_every_second_then_give_up_and_start_again() -> None:
    _svc, link, reactor, sched = service(retry_delay=5.0)
    assert sched.started
    for _ in range(12):
        link.refuse_last()
        reactor.advance(reactor.getDelayedCalls()[0].getTime() - reactor.seconds())
    assert link.times()[:8] == [0, 1, 2, 3, 4, 9, 10, 11]


def test_slow_connect_attempts() -> None:
    _svc, link, reactor, _ = service(retry_delay=2.0)
    reactor.advance(3)  # the 3 s connect timeout of the endpoint fires
    link.refuse_last()
    reactor.advance(1)
    assert link.times() == [0, 4]
    reactor.advance(3)
    link.refuse_last()  # 7 s after the start: give up for 2 s
    reactor.advance(1.9)
    assert link.times() == [0, 4]
    reactor.advance(0.1)
    assert link.times() == [0, 4, 9]


def test_reconnect_after_a_session() -> None:
    svc, link, reactor, _ = service(reconnect_delay=0.5)
    proto, transport = link.accept_last()
    proto.dataReceived(wire.encode(wire.Start()))
    assert transport.value() == wire.encode(wire.Result(0))
    proto.connectionLost(Failure(ConnectionError()))
    assert svc.sessions == 1
    reactor.advance(0.4)
    assert len(link.attempts) == 1
    reactor.advance(0.1)
    assert len(link.attempts) == 2


def test_yield_waits_for_the_resume_hint() -> None:
    _svc, link, reactor, _ = service(reconnect_delay=0.1)
    proto, _ = link.accept_last()
    rhint = time.time_ns() + 30 * 10**9
    proto.dataReceived(wire.encode(wire.Start()) + wire.encode(wire.Yield(rhint=rhint)))
    proto.connectionLost(Failure(ConnectionError()))
    (call,) = reactor.getDelayedCalls()
    assert 29 < call.getTime() - reactor.seconds() <= 30


def test_session_limit_stops_the_reactor() -> None:
    _svc, link, reactor, _ = service(max_sessions=1)
    proto, _ = link.accept_last()
    proto.connectionLost(Failure(ConnectionError()))
    assert reactor.hasStopped


def test_stop_service_ends_the_session_then_the_scheduler() -> None:
    svc, link, reactor, sched = service()
    proto, transport = link.accept_last()
    d = svc.stopService()
    assert d is not None and transport.disconnected
    assert not sched.stopped
    proto.connectionLost(Failure(ConnectionError()))
    assert sched.stopped and d.called
    assert reactor.getDelayedCalls() == []


def test_stop_service_while_connecting() -> None:
    svc, link, reactor, sched = service()
    assert svc.stopService() is None
    assert link.attempts[0][1].called  # cancelled
    assert sched.stopped and reactor.getDelayedCalls() == []


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1", "127.0.0.1", 20556),
        ("127.0.0.1:5000", "127.0.0.1", 5000),
        ("localhost:80", "localhost", 80),
        ("[::1]:7", "::1", 7),
        ("[::1]", "::1", 20556),
        ("::1", "::1", 20556),
        ("::1:20557", "::1", 20557),  # split on the last ':' like the reference
        ("fe80::1%1", "fe80::1%1", 20556),  # a link-local address with its zone
        ("[fe80::1%1]:7", "fe80::1%1", 7),
        ("fe80::1%1:7", "fe80::1%1", 7),
        ("controller.example.org:1", "controller.example.org", 1),
    ],
)
def test_address_parsing(text: str, host: str, port: int) -> None:
    assert ControllerAddress.parse(text) == ControllerAddress(host, port)


@pytest.mark.parametrize(
    "text", ["", "127.0.0.1:0", "127.0.0.1:70000", "[::1", "[1.2.3.4]:5", "bad host!", "a:b:c"]
)
def test_bad_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="controller address"):
        ControllerAddress.parse(text)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("fe80::1", "the link-local address fe80::1 needs its interface: fe80::1%IFNAME"),
        ("[fe80::1]:5", "the link-local address fe80::1 needs its interface: fe80::1%IFNAME"),
        ("[fe80::1%nosuch0]:5", "no interface 'nosuch0' here (in fe80::1%nosuch0)"),
    ],
)
def test_a_link_local_address_needs_a_zone_of_this_host(
    monkeypatch: pytest.MonkeyPatch, text: str, said: str
) -> None:
    """Session 32 (dual32): `--broker [fe80::1]:5` was retried for ever (`Invalid
    argument`), and with an unknown zone (`Name or service not known`)."""
    import socket

    def if_nametoindex(name: str) -> int:
        raise OSError(19, "No such device")

    monkeypatch.setattr(socket, "if_nametoindex", if_nametoindex)
    with pytest.raises(ValueError) as e:
        ControllerAddress.parse(text, what="broker")
    assert str(e.value) == f"bad broker address {text!r}: {said}"


def test_loopback_and_str() -> None:
    assert ControllerAddress.parse("[::1]:9").is_loopback
    assert ControllerAddress.parse("127.8.9.10").is_loopback
    assert ControllerAddress.parse("localhost").is_loopback
    assert not ControllerAddress.parse("192.0.2.1").is_loopback
    assert not ControllerAddress.parse("example.org").is_loopback
    assert str(ControllerAddress.parse("::1")) == "[::1]:20556"


def test_admission_sees_the_verified_peer_of_the_connection() -> None:
    """ClientService hands the TLS layer a proxy of our protocol: the session's limits
    must still come from the peer verified on that connection (found by its transport)."""
    from packetlab.tls.gate import _PEERS

    peer = object()
    asked: list[object] = []

    class Admission:
        def gate_for(self, p: object) -> None:
            asked.append(p)

        def watch(self, gate: object, proto: object, reactor: object) -> None:
            raise AssertionError("no gate, nothing to watch")

    _svc, link, _reactor, _ = service(admission=Admission())
    _, d, factory = link.attempts[-1]
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 20556))
    transport = StringTransport()
    _PEERS[transport] = peer  # type: ignore[assignment]  # a stand-in; as PeerGate records a verified peer
    proto.makeConnection(transport)
    d.callback(proto)
    assert asked == [peer]


def test_connect_cycle_policy_on_its_own_clock() -> None:
    from twisted.internet.task import Clock

    from packetlab.endpoint.service import CONNECT_RETRY, ConnectCycle

    clock = Clock()
    cycle = ConnectCycle(clock, ADDR, retry_delay=7.0)
    cycle.attempt_started()  # the cycle starts with its first attempt
    clock.advance(3.0)  # a connect that timed out
    assert cycle(1) == CONNECT_RETRY
    clock.advance(1.0)
    cycle.attempt_started()  # not a new cycle
    clock.advance(0.5)
    assert cycle(2) == 7.0  # 4.5 s in: another retry would end past 5 s, give up
    cycle.attempt_started()  # a new cycle
    assert cycle(3) == CONNECT_RETRY
    cycle.session_over(12.5)  # after a session: its wait, once, then a fresh cycle
    assert cycle(1) == 12.5
    cycle.attempt_started()
    assert cycle(1) == CONNECT_RETRY


def test_an_unreachable_controller_is_logged_in_words_and_not_at_every_attempt() -> None:
    """A controller down for an hour: every attempt logged twice (ConnectCycle's line and
    ClientService's "Scheduling retry N to connect <..._CycleEndpoint object at 0x...>"),
    ~5 lines every 9 s for as long as it lasts. Now: the first cycle attempt by attempt,
    then one line every 10 minutes; after a session, a new outage is logged in full."""

    try:
        with captured_events() as seen:
            svc, link, reactor, _ = service(retry_delay=5.0)
            while reactor.seconds() < 3600:
                link.refuse_last()
                reactor.advance(reactor.getDelayedCalls()[0].getTime() - reactor.seconds())
            lines = seen.where(has="log_format").formats()
            assert not [ln for ln in lines if "Scheduling retry" in ln]
            assert len(link.attempts) > 1500
            ours = [ln for ln in lines if "controller {addr}" in ln]
            assert 10 <= len(ours) <= 12, ours  # 4 + 1 + one per 10 min
            assert sum("still cannot reach" in ln for ln in ours) == 5
            seen.clear()
            proto, _transport = link.accept_last()  # reached: a session
            proto.connectionLost(Failure(ConnectionRefusedError()))
            reactor.advance(1.0)
            link.refuse_last()
            lines = seen.where(has="log_format").formats()
            assert any(ln.startswith("cannot reach controller") for ln in lines), lines
    finally:
        svc.stopService()


class _Linking:
    """A broker endpoint whose connect makes the link at once over a StringTransport."""

    def __init__(self) -> None:
        self.transport = StringTransport()

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        proto = factory.buildProtocol(None)
        proto.makeConnection(self.transport)
        return defer.succeed(proto)


@pytest.mark.parametrize("broker_closes", [True, False])
def test_a_stopping_endpoint_waits_for_its_broker_link_to_close(broker_closes: bool) -> None:
    """SIGTERM in broker mode: the reactor stopped right after loseConnection, before the
    TLS close_notify and the FIN left, and the broker logged each endpoint stopped as
    `unsubscribe ... reason=Connection to the other side was lost in a non-clean fashion`
    (session 35, op35). Now the stop waits for the close, at most CLOSE_WAIT s, then
    aborts."""
    from types import SimpleNamespace

    from packetlab.endpoint.subscriber import CLOSE_WAIT, BrokerSubscriber
    from packetlab.wire import Result, Xnotify, encode

    reactor = MemoryReactorClock()
    ep = _Linking()
    plan = SimpleNamespace(frames=lambda: [], results_expected=1, chlist=[], dattr=b"")
    notified: list[bytes] = []
    sub = BrokerSubscriber(reactor, "127.0.0.1:20557", lambda: ep, plan,  # type: ignore[arg-type]
                           lambda channel, xdescr: notified.append(xdescr))  # fmt: skip
    sub.startService()
    link = sub.link
    assert link is not None
    link.dataReceived(encode(Result(0)) + encode(Xnotify(b"a", b"k=v;")))
    assert notified == [b"k=v;"]
    notified.clear()
    stopped = sub.stopService()
    assert stopped is not None and not stopped.called  # the reactor waits for it
    assert ep.transport.disconnecting
    link.dataReceived(encode(Xnotify(b"a", b"k=v;")))  # no experiment while stopping
    assert notified == []
    if broker_closes:
        reactor.advance(0.1)
        link.connectionLost(Failure(ConnectionRefusedError()))
    else:  # a broker that never closes: aborted after CLOSE_WAIT s
        reactor.advance(CLOSE_WAIT)
        assert ep.transport.disconnected  # StringTransport's abortConnection
        link.connectionLost(Failure(ConnectionRefusedError()))
    assert stopped.called and reactor.getDelayedCalls() == []
