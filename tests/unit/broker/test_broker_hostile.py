"""Broker defects found by the hostile-client harness (issue 15;
tests/integration/test_hostile_broker.py), each pinned over fakes."""

from __future__ import annotations

from collections.abc import Callable

from testkit.logs import events_while
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from packetlab.broker.protocol import CLOSE_TIMEOUT, BrokerFactory, BrokerProtocol
from packetlab.broker.registry import Registry
from packetlab.broker.service import BrokerService
from packetlab.broker.session import Role
from packetlab.broker.throttle import Throttle
from packetlab.ppks import generate_private_key, issue_certificate
from packetlab.tls import Credentials
from packetlab.wire import Framer, Result


class Transport(StringTransport):
    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


def connect(clock: Clock) -> tuple[BrokerProtocol, Transport]:
    f = BrokerFactory(Role.SUBSCRIBE, Registry(), Throttle(base=1.0), clock)
    p = f.buildProtocol(None)
    t = Transport(peerAddress=IPv4Address("TCP", "10.0.0.1", 1234))
    p.makeConnection(t)
    return p, t


def test_a_link_closed_after_an_error_reads_again_then_is_cut_off() -> None:
    """Closing after an error answer: reading was paused for the answer's delay, and TLS
    waits for the peer's close_notify, so the link stayed open for good. It reads again
    (the close_notify or FIN ends it) and is aborted if the peer sends neither."""
    clock = Clock()
    p, t = connect(clock)
    p.dataReceived(bytes([0x99, 0, 0, 0]))  # unknown type: ECTLNOTSUP, then close
    assert t.producerState == "paused"  # the answer waits for its delay
    clock.advance(1)
    assert list(Framer().feed(t.value())) == [Result(0x11)]
    assert t.disconnecting and t.producerState == "producing"
    clock.advance(CLOSE_TIMEOUT - 0.1)
    assert not t.aborted
    clock.advance(0.1)
    assert t.aborted


def test_a_link_that_closes_in_time_leaves_no_timer() -> None:
    clock = Clock()
    p, t = connect(clock)
    p.dataReceived(bytes([0x99, 0, 0, 0]))
    clock.advance(1)
    p.connectionLost()
    assert clock.getDelayedCalls() == []
    assert not t.aborted


def test_the_configured_throttle_is_used() -> None:
    """`throttle or Throttle()` replaced an empty (falsy: it has __len__) configured
    Throttle by the default one: ErrorDelay 0 still delayed errors by 0.5 s and up."""
    key = generate_private_key()
    agent = issue_certificate("agent", key, key, 0, 2**31 - 1)
    mine = Throttle(base=0)
    svc = BrokerService(
        Clock(), Credentials([agent], key), publish="tcp:0", subscribe="tcp:0", throttle=mine
    )
    assert svc.throttle is mine
    assert all(f.throttle is mine for f in svc.factories.values())


def _said(run: Callable[[], None]) -> list[str]:
    return events_while(run).lines(fmt="middle of a frame")


def closed_after(p: BrokerProtocol, data: bytes) -> None:
    p.dataReceived(data)
    p.connectionLost(connectionDone)


def test_a_peer_gone_in_the_middle_of_a_frame_is_one_line_naming_it() -> None:
    """A publisher that disconnects mid-xpub: the frame is dropped unanswered, and the
    log said nothing of it (session 21). Now one line names the frame and how much came;
    a whole frame, or nothing held, says nothing; the lines are budgeted (20 a minute)."""
    clock = Clock()
    p, _ = connect(clock)
    xpub = bytes.fromhex("310000f1") + bytes(50)
    said = _said(lambda: closed_after(p, xpub))
    assert len(said) == 1 and "(xpub, 54 of 245 bytes)" in said[0], said
    assert "10.0.0.1" in said[0] and "subscribe link" in said[0]
    p, _ = connect(clock)
    said = _said(lambda: closed_after(p, b"\x38\x00"))
    assert len(said) == 1 and "(xsub, 2 of its 4 header bytes)" in said[0], said
    p, _ = connect(clock)
    assert _said(lambda: p.connectionLost(connectionDone)) == []

    f = BrokerFactory(Role.PUBLISH, Registry(), Throttle(base=1.0), clock)

    def flood() -> None:
        for _ in range(30):
            q = f.buildProtocol(None)
            q.makeConnection(Transport(peerAddress=IPv4Address("TCP", "10.0.0.2", 1)))
            q.dataReceived(b"\x99\x00\x00\x10")
            q.connectionLost(connectionDone)

    said = _said(flood)
    assert len(said) == 20 and "type 0x99" in said[0] and "publish link" in said[0], said
