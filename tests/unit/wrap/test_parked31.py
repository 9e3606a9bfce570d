"""Session 31 (wrap31): the connects the shim parks ("A") and their states ("F"), over a
fake relay and parking lot (the sockets themselves: tests/integration/test_wrap_s31.py)."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport

from packetlab.controller import ConnectFailed
from packetlab.wrap import parked
from packetlab.wrap.parked import CONNECTED, GONE, PENDING, UNKNOWN, ParkedConnects
from packetlab.wrap.server import WrapFactory
from packetlab.wrap.shimctl import MapServer
from packetlab.wrap.socks5 import Rep
from packetlab.wrap.timeline import TimingLog
from packetlab.wrap.udpmap import UdpMap


class FakeRelay:
    """TcpRelay's connect and ends; `made` decides the connect."""

    made: list[FakeRelay] = []

    def __init__(self, session: Any, client: Any, rec: Any, timeline: Any, on_done: Any,
                 notices: Any = None) -> None:  # fmt: skip
        self.rec, self.on_done = rec, on_done
        self.answer: Deferred[None] = Deferred()
        self.failed_at_once = False
        self.sktid: int | None = 3  # the nopen answered
        self.ended: list[str] = []
        FakeRelay.made.append(self)

    async def connect(self, addr: Any, port: int, timeout: float, stamps: bool = True) -> None:
        try:
            await self.answer
        except BaseException:
            self.ended.append("endpoint socket closed")
            raise
        self.rec.connected = 1

    def client_gone(self) -> None:
        self.ended.append("client gone")
        self.on_done(self.rec)

    def abort(self) -> None:
        self.client_gone()


class FakeLot:
    port = 40999

    def __init__(self) -> None:
        self.resets: list[int] = []
        self.closed = False

    def connect_back(self, program_port: int) -> Any:
        return None  # the program's socket is gone

    def reset(self, program_port: int) -> None:
        self.resets.append(program_port)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def lot(monkeypatch: pytest.MonkeyPatch) -> tuple[ParkedConnects, MemoryReactorClock]:
    monkeypatch.setattr(parked, "TcpRelay", FakeRelay)
    monkeypatch.setattr(parked, "ParkingLot", FakeLot)
    FakeRelay.made = []
    reactor = MemoryReactorClock()
    factory = WrapFactory(None, reactor, dns_servers=[], timings=TimingLog(None))  # type: ignore[arg-type]
    connects = ParkedConnects(factory)
    factory.parked = connects
    return connects, reactor


V4 = ipaddress.ip_address("192.0.2.1").packed


def test_a_failed_connect_resets_the_socket_and_says_why(lot: Any) -> None:
    connects, _ = lot
    assert connects.park(80, V4, 50001, 7)
    assert connects.status(50001) == PENDING
    FakeRelay.made[0].answer.errback(ConnectFailed(0, "not established within 20 s"))
    assert connects.status(50001) == Rep.TTL_EXPIRED  # the shim's ETIMEDOUT
    assert connects.lot.resets == [50001]
    assert 50001 not in connects.parked
    (rec,) = connects.factory.timings.records
    assert "not established" in rec.error and rec.host == "192.0.2.1" and rec.port == 80
    # "E" for the destination too (proxychains' path asks it)
    assert connects.factory.connect_failure(ipaddress.ip_address("192.0.2.1"), 80) == 6


def test_a_socket_the_program_closed_cancels_the_endpoints_connect(
    lot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connects, reactor = lot
    inodes = {7, 8}
    monkeypatch.setattr(parked, "live_inodes", lambda: set(inodes))
    connects.park(80, V4, 50001, 7)
    connects.park(80, V4, 50002, 8)
    reactor.advance(parked.WATCH_INTERVAL)
    assert connects.status(50001) == PENDING and connects.factory.settling() == 0
    inodes.discard(7)
    reactor.advance(parked.WATCH_INTERVAL)
    first, second = FakeRelay.made
    assert first.ended == ["endpoint socket closed"] and second.ended == []
    assert connects.status(50001) == UNKNOWN and connects.status(50002) == PENDING
    (rec,) = connects.factory.timings.records
    assert rec.error == GONE
    inodes.discard(8)
    reactor.advance(parked.WATCH_INTERVAL)
    assert not connects.parked and reactor.getDelayedCalls() == []  # nothing to watch


def test_a_made_connect_whose_socket_is_gone_closes_the_endpoints(lot: Any) -> None:
    connects, _ = lot
    connects.park(443, V4, 50003, 9)
    FakeRelay.made[0].answer.callback(None)
    assert FakeRelay.made[0].ended == ["client gone"]
    assert connects.status(50003) == UNKNOWN
    assert len(connects.factory.timings.records) == 1


def test_the_run_ending_writes_a_line_and_resets_the_waiting_socket(lot: Any) -> None:
    connects, _ = lot
    connects.park(80, V4, 50004, 10)
    f = connects.factory
    f.abandon_pending()
    f.abort_all()
    (rec,) = f.timings.records
    assert rec.error.startswith("abandoned: the program ended")
    assert connects.lot.resets == [50004] and connects.status(50004) == Rep.GENERAL_FAILURE


def ask(udpmap: UdpMap, data: bytes) -> tuple[bytes, bool]:
    proto: Any = MapServer(udpmap).buildProtocol(None)
    t = StringTransport()
    proto.makeConnection(t)
    for i in range(len(data)):  # in pieces: answered once complete
        proto.dataReceived(data[i : i + 1])
    return t.value(), t.disconnecting


def test_park_and_state_requests() -> None:
    """ "A" family port address loopback-port inode → 1 (0 when not taken, a bad family,
    no parking here, a bug); "F" loopback port inode → the state byte."""
    udpmap = UdpMap(None, None, TimingLog(None), None)  # type: ignore[arg-type]
    seen: list[tuple[Any, ...]] = []

    class Lot:
        def park(self, dport: int, addr: bytes, port: int, inode: int) -> bool:
            seen.append((dport, addr, port, inode))
            return port != 1

        def status(self, port: int, inode: int) -> int:
            seen.append((port, inode))
            return {50001: PENDING, 50002: CONNECTED}.get(port, 4)

    a4 = b"A\x04" + struct.pack(">H", 80) + V4 + struct.pack(">HQ", 50001, 2**40 + 5)
    six = ipaddress.ip_address("2001:db8::1").packed
    a6 = b"A\x06" + struct.pack(">H", 443) + six + struct.pack(">HQ", 50002, 9)
    assert ask(udpmap, a4) == (b"\x00", True)  # no parking in this run
    assert ask(udpmap, b"F" + struct.pack(">HQ", 50001, 7)) == (b"\xfe", True)
    udpmap.parked = Lot()  # type: ignore[assignment]
    assert ask(udpmap, a4) == (b"\x01", True)
    assert ask(udpmap, a6) == (b"\x01", True)
    assert seen == [(80, V4, 50001, 2**40 + 5), (443, six, 50002, 9)]
    assert ask(udpmap, b"A\x04" + struct.pack(">H", 80) + V4 + struct.pack(">HQ", 1, 1)) == (
        b"\x00",
        True,
    )
    assert ask(udpmap, b"A\x05\x00") == (b"\x00", True)  # no such family
    assert ask(udpmap, b"F" + struct.pack(">HQ", 50001, 7)) == (b"\xff", True)
    assert ask(udpmap, b"F" + struct.pack(">HQ", 50002, 7)) == (b"\x00", True)
    assert ask(udpmap, b"F" + struct.pack(">HQ", 50003, 7)) == (b"\x04", True)  # EHOSTUNREACH
    assert seen[-3:] == [(50001, 7), (50002, 7), (50003, 7)]  # the asking socket's inode


def test_a_socket_closed_before_the_nopen_is_answered_is_cancelled_after_it(
    lot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling the connect while its nopen is unanswered would leave the endpoint's
    socket, opened after, to the session's end: it waits until the nopen is answered."""
    connects, reactor = lot
    monkeypatch.setattr(parked, "live_inodes", set)
    connects.park(80, V4, 50005, 11)
    relay = FakeRelay.made[0]
    relay.sktid = None
    reactor.advance(parked.WATCH_INTERVAL)  # seen gone
    reactor.advance(parked.WATCH_INTERVAL)
    assert relay.ended == [] and connects.status(50005) == PENDING
    relay.sktid = 3
    reactor.advance(parked.WATCH_INTERVAL)
    assert relay.ended == ["endpoint socket closed"] and connects.status(50005) == UNKNOWN


# Session 32 (wrap32): "A" waits for the endpoint's first answer (parked.AT_ONCE_WAIT)


def _answers(d: Deferred[int]) -> list[int]:
    got: list[int] = []
    d.addCallback(got.append)
    return got


def test_a_connect_the_endpoint_refuses_at_once_fails_in_the_call(lot: Any) -> None:
    """No route at the endpoint (its connect() call failed: STAT UNREACH as the nopen is
    answered): "A" says AT_ONCE | NETWORK_UNREACHABLE (the shim's connect() fails
    ENETUNREACH, as natively), the program's socket is not reset, nothing is kept for
    "F". Before: "A" said 1 at once (EINPROGRESS), then a reset and "F" said it."""
    connects, _ = lot
    got = _answers(connects.park(80, V4, 50010, 12))
    assert got == []  # waiting for the endpoint
    relay = FakeRelay.made[0]
    relay.failed_at_once = True
    relay.answer.errback(ConnectFailed(3, "UNREACH"))
    assert got == [parked.AT_ONCE | Rep.NETWORK_UNREACHABLE]
    assert connects.lot.resets == [] and connects.status(50010) == UNKNOWN
    assert len(connects.factory.timings.records) == 1


def test_a_connect_that_goes_on_is_answered_once_the_endpoint_connects(lot: Any) -> None:
    """The nopen answered and the endpoint connecting (TcpRelay.on_open): "A" says 1 then;
    a later failure resets the socket and "F" says it once (a dup's question or the
    parked fd's, whichever asks first: natively the socket's error is read once)."""
    connects, _ = lot
    got = _answers(connects.park(80, V4, 50011, 13))
    relay = FakeRelay.made[0]
    relay.on_open()  # type: ignore[attr-defined]
    assert got == [parked.TAKEN] and connects.status(50011) == PENDING
    relay.answer.errback(ConnectFailed(3, "REFUSED"))
    assert connects.lot.resets == [50011]
    assert connects.status(50011) == Rep.CONNECTION_REFUSED
    assert connects.status(50011) == UNKNOWN  # read once


def test_a_failure_nobody_read_is_not_another_sockets_on_the_same_port(lot: Any) -> None:
    """A parked connect failed and the program closed its socket at POLLERR without
    reading why: a later socket of the program from the same ephemeral port (a loopback
    connect, not parked) reset there asks "F" by port for its ECONNRESET. Before session
    33 it read the dead socket's errno (ECONNREFUSED here); now the failure is said only
    to the parked socket's inode, and still to that one (a dup asking by port)."""
    connects, _ = lot
    _answers(connects.park(80, V4, 50013, 21))
    FakeRelay.made[0].answer.errback(ConnectFailed(3, "REFUSED"))
    assert connects.lot.resets == [50013]
    assert connects.status(50013, 99) == UNKNOWN  # another socket: its own ECONNRESET
    assert connects.status(50013, 21) == Rep.CONNECTION_REFUSED  # the parked one's
    assert connects.status(50013, 21) == UNKNOWN  # read once


def test_a_slow_endpoint_gets_einprogress_after_the_wait(
    lot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connects, reactor = lot
    monkeypatch.setattr(parked, "live_inodes", lambda: {14})  # the program's socket lives
    got = _answers(connects.park(80, V4, 50012, 14))
    reactor.advance(parked.AT_ONCE_WAIT - 0.01)
    assert got == []
    reactor.advance(0.01)
    assert got == [parked.TAKEN]
    relay = FakeRelay.made[0]
    relay.failed_at_once = True  # too late for the call: as session 31, a reset and "F"
    relay.answer.errback(ConnectFailed(3, "UNREACH"))
    assert got == [parked.TAKEN] and connects.lot.resets == [50012]
    assert connects.status(50012) == Rep.NETWORK_UNREACHABLE


def test_a_loopback_destination_is_answered_when_its_connect_ends(lot: Any) -> None:
    """Natively a loopback port's refusal is on the socket as connect() returns: "A" for
    127.0.0.1 waits past the nopen for the end (the reset done before the answer)."""
    connects, _ = lot
    got = _answers(connects.park(9, ipaddress.ip_address("127.0.0.1").packed, 50013, 15))
    relay = FakeRelay.made[0]
    relay.on_open()  # type: ignore[attr-defined]
    assert got == []
    relay.answer.errback(ConnectFailed(3, "REFUSED"))
    assert connects.lot.resets == [50013] and got == [parked.TAKEN]


def test_the_shim_is_answered_what_park_decides() -> None:
    udpmap = UdpMap(None, None, TimingLog(None), None)  # type: ignore[arg-type]
    later: Deferred[int] = Deferred()

    class Lot:
        def park(self, dport: int, addr: bytes, port: int, inode: int) -> Deferred[int]:
            return later

    udpmap.parked = Lot()  # type: ignore[assignment]
    proto: Any = MapServer(udpmap).buildProtocol(None)
    t = StringTransport()
    proto.makeConnection(t)
    proto.dataReceived(b"A\x04" + struct.pack(">H", 80) + V4 + struct.pack(">HQ", 50014, 1))
    assert t.value() == b"" and not t.disconnecting
    later.callback(parked.AT_ONCE | Rep.NOT_ALLOWED)
    assert (t.value(), t.disconnecting) == (b"\x82", True)
