"""The broker's status page (StatusListen) as a port anyone who reaches it may flood."""

from __future__ import annotations

from typing import Any

from testkit.logs import captured_events
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from packetlab.broker.status import STATUS_MAX_CONNECTIONS, STATUS_TIMEOUT, status_site


class Transport(StringTransport):
    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


def connect(factory: Any) -> Transport:
    t = Transport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4000))
    factory.buildProtocol(t.getPeer()).makeConnection(t)
    return t


def test_idle_connections_to_the_status_page_are_capped_and_timed_out() -> None:
    """Session 30: the page took every connection and held each idle one for 60 s
    (twisted.web's default): 1,000 of them within a minute took the descriptors the
    broker's ports need (EMFILE). Now at most STATUS_MAX_CONNECTIONS at once (past it the
    oldest is closed for each new one, one line per episode) and STATUS_TIMEOUT s idle
    each."""
    clock = Clock()
    site = status_site(lambda: {"ok": 1}, clock=clock)
    with captured_events() as seen:
        held = [connect(site) for _ in range(STATUS_MAX_CONNECTIONS)]
        more = [connect(site) for _ in range(10)]
    assert [t.aborted for t in held] == [True] * 10 + [False] * (STATUS_MAX_CONNECTIONS - 10)
    assert not any(t.disconnecting for t in more)  # the newest are served
    said = seen.lines("status page")
    assert len(said) == 1 and f"{STATUS_MAX_CONNECTIONS} connections" in said[0], said
    assert STATUS_TIMEOUT <= 10
    clock.advance(STATUS_TIMEOUT + 1)
    assert all(t.disconnecting for t in held + more)
