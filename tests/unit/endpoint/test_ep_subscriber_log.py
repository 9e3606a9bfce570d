"""Broker mode's reconnects to a broker that stays down: logged while the backoff grows,
then once every `OUTAGE_REMINDER` seconds, not at every attempt."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, globalLogPublisher

from packetlab.endpoint.service import OUTAGE_REMINDER
from packetlab.endpoint.subscriber import BrokerSubscriber


class Refusing:
    def __init__(self) -> None:
        self.attempts = 0

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        self.attempts += 1
        return defer.fail(ConnectionRefusedError())


def test_a_broker_down_for_an_hour_is_not_logged_every_five_seconds() -> None:
    reactor = MemoryReactorClock()
    ep = Refusing()
    seen: list[dict[str, Any]] = []
    observer = cast(ILogObserver, seen.append)
    sub = BrokerSubscriber(reactor, "127.0.0.1:20557", lambda: ep, cast(Any, None), print)
    globalLogPublisher.addObserver(observer)
    try:
        sub.startService()
        while reactor.seconds() < 3600:
            reactor.advance(reactor.getDelayedCalls()[0].getTime() - reactor.seconds())
    finally:
        globalLogPublisher.removeObserver(observer)
        sub.stopService()
    lines = [e["log_format"] for e in seen if e.get("log_namespace", "").endswith("Subscriber")]
    assert ep.attempts > 700  # it keeps trying every ~5 s
    assert 8 + 3600 // OUTAGE_REMINDER - 1 <= len(lines) <= 8 + 3600 // OUTAGE_REMINDER, lines
    assert sum("still unreachable" in ln for ln in lines) >= 5
