"""The outage log rhythm both outgoing links share (`endpoint/outage.py`): the first
failures each logged, then one line every OUTAGE_REMINDER s; and the exact lines of the
two users, NoSub mode's connect cycle and broker mode's subscriber, over a fake clock
(pinned from their own implementations before they shared it)."""

from __future__ import annotations

import types
from typing import Any, cast

import pytest
from testkit.logs import events_while
from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent
from twisted.python.failure import Failure

from packetlab.endpoint import subscriber
from packetlab.endpoint.outage import OUTAGE_REMINDER, Outage, Say
from packetlab.endpoint.service import ConnectCycle, ControllerAddress


def test_the_first_failures_are_each_said_then_a_reminder_every_period() -> None:
    clock = Clock()
    outage = Outage(loud=3, reminder=100.0)
    said: list[tuple[float, Say]] = []
    while clock.seconds() < 350:
        said.append((clock.seconds(), outage.failed(clock.seconds())))
        clock.advance(10)
    assert [s for _, s in said[:3]] == [Say.EACH] * 3 and outage.quiet
    reminders = [t for t, s in said if s is Say.REMINDER]
    assert reminders == [120.0, 220.0, 320.0]  # 100 s after the 3rd failure's line, ...
    assert all(s is Say.NOTHING for t, s in said[3:] if t not in reminders)
    assert outage.failures == 35 and outage.elapsed(clock.seconds()) == 350.0


def test_reached_starts_a_new_outage_logged_in_full() -> None:
    outage = Outage(loud=2, reminder=100.0)
    for t in range(5):
        outage.failed(float(t))
    outage.reached()
    assert not outage.quiet and outage.failures == 0
    assert outage.failed(500.0) is Say.EACH and outage.elapsed(510.0) == 10.0
    assert outage.failed(501.0) is Say.EACH
    assert outage.failed(502.0) is Say.NOTHING


def test_an_outage_may_begin_before_its_first_failure() -> None:
    """A connect cycle fails at its end: the outage began when the cycle did."""
    outage = Outage(loud=1)
    assert outage.failed(104.0, since=100.0) is Say.EACH
    assert outage.elapsed(104.0) == 4.0
    assert outage.failed(104.0 + OUTAGE_REMINDER - 1, since=0.0) is Say.NOTHING
    assert outage.elapsed(200.0) == 100.0  # (`since` counts for an outage's first only)
    assert outage.failed(104.0 + OUTAGE_REMINDER) is Say.REMINDER


def test_loud_must_be_positive() -> None:
    with pytest.raises(ValueError, match="loud must be >= 1"):
        Outage(loud=0)


def lines_of(run: Any, cls: str) -> list[tuple[str, str]]:
    seen = events_while(run).where(namespace=cls)
    return [(e["log_level"].name, formatEvent(e)) for e in seen]


REFUSED = "Connection was refused by other side."
C = "controller 127.0.0.1:20556"
CYCLE_OUTAGE = [
    ("info", f"cannot reach {C}: {REFUSED}; retrying in 1.0 s"),
    ("info", f"cannot reach {C}: {REFUSED}; retrying in 1.0 s"),
    ("info", f"cannot reach {C}: {REFUSED}; retrying in 1.0 s"),
    ("warn", f"gave up reaching {C} after 4.0 s ({REFUSED}); next attempt in 5.0 s (and so "
     "on, logged every 600 s until it is reached)"),
    ("warn", f"still cannot reach {C} ({REFUSED}): 68 connect cycles over 607 s; next "
     "attempt in 5.0 s"),
    ("warn", f"still cannot reach {C} ({REFUSED}): 135 connect cycles over 1210 s; next "
     "attempt in 5.0 s"),
    ("info", "next connection to 127.0.0.1:20556 in 2.000 s"),
]  # fmt: skip


def test_the_connect_cycle_logs_exactly_these_lines() -> None:
    """Two outages of ~21 min, a session between them: the first cycle of each attempt by
    attempt, its end, then one line per 10 min."""
    clock = Clock()
    cycle = ConnectCycle(clock, ControllerAddress("127.0.0.1", 20556), 5.0)

    def run() -> None:
        for outage in range(2):
            while clock.seconds() < 1300 + outage * 2000:
                cycle.attempt_started()
                clock.advance(0.25)
                cycle.attempt_failed(Failure(ConnectionRefusedError()))
                clock.advance(cycle(1))
            cycle.session_over(2.0)
            clock.advance(cycle(1))
            clock.advance(700)

    assert lines_of(run, "ConnectCycle") == CYCLE_OUTAGE * 2


class Refusing:
    def connect(self, factory: Any) -> defer.Deferred[Any]:
        return defer.fail(ConnectionRefusedError())


B = "broker 127.0.0.1:20557"
NO = f"cannot connect: {REFUSED}"
BROKER_OUTAGE = [
    ("info", f"{B}: {NO}; reconnecting in 0.23 s (and so on, logged every 600 s)"),
    ("warn", f"{B}: still unreachable ({NO}) after 138 attempts over 601 s; reconnecting in "
     "4.50 s"),
]  # fmt: skip


def test_the_broker_subscriber_logs_exactly_these_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """An outage of ~21 min, a subscription that lasts, the link lost and ~11 min more:
    the first failure, then one line per 10 min (session 33: each of the first 8 failures
    had its line); back with how long it took; the new outage in full again."""
    monkeypatch.setattr(subscriber.random, "uniform", lambda a, b: 0.9)
    reactor = MemoryReactorClock()
    plan = cast(Any, types.SimpleNamespace(chlist=[b"c"], dattr=b""))
    sub = subscriber.BrokerSubscriber(reactor, "127.0.0.1:20557", Refusing, plan, print)

    def until(t: float) -> None:
        while reactor.seconds() < t:
            reactor.advance(reactor.getDelayedCalls()[0].getTime() - reactor.seconds())

    def run() -> None:
        sub.startService()
        until(1300)
        assert sub._timer is not None
        sub._timer.cancel()  # connected: no retry pending
        sub.subscribed()
        reactor.advance(subscriber.STABLE)  # it lasted: its loss begins a new outage
        sub._retry("link lost: gone")
        until(2000)
        sub.stopService()

    second = [
        ("info", f"{B}: link lost: gone; reconnecting in 0.23 s (and so on, logged every 600 s)"),
        # a new reason: said once
        ("info", f"{B}: {NO}; reconnecting in 0.45 s (and so on, logged every 600 s)"),
        BROKER_OUTAGE[1],
    ]
    assert lines_of(run, "BrokerSubscriber") == [
        *BROKER_OUTAGE,
        ("warn", f"{B}: still unreachable ({NO}) after 272 attempts over 1204 s; reconnecting "
         "in 4.50 s"),
        ("info", "Broker subscription finished: 127.0.0.1:20557, 1 channel(s), dattr ''; back "
         "after 294 failed attempt(s) over 1303.0 s"),
        *second,
    ]  # fmt: skip
