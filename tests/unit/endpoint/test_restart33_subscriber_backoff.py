"""Broker mode's backoff when the broker confirms each subscription and drops it at once
(a broker in a crash loop under systemd's `Restart=always`, a balancer in front of a dead
one): session 33. The backoff was reset by every confirmed subscription, so each endpoint
came back every 0.2-0.25 s for as long as it lasted, with two log lines each time."""

from __future__ import annotations

import types
from typing import Any, cast

import pytest
from testkit.logs import captured_events
from twisted.internet import defer
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from packetlab.endpoint import subscriber
from packetlab.endpoint.subscriber import STABLE, BrokerSubscriber


class Flapping:
    """Each connect: the xsub confirmed after `up` s, the link lost `hold` s later."""

    def __init__(self, reactor: MemoryReactorClock, up: float = 0.01, hold: float = 0.05) -> None:
        self.reactor = reactor
        self.up = up
        self.hold = hold
        self.sub: BrokerSubscriber | None = None
        self.attempts: list[float] = []

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        self.attempts.append(self.reactor.seconds())
        link = object()
        assert self.sub is not None
        sub = self.sub
        self.reactor.callLater(self.up, sub.subscribed)
        self.reactor.callLater(
            self.up + self.hold, sub.lost, link, Failure(ConnectionLost("broker gone"))
        )
        return defer.Deferred()  # (the link is faked: the connect itself never answers)


def run(seconds: float, fake: Flapping, sub: BrokerSubscriber) -> list[str]:
    try:
        with captured_events() as seen:
            sub.startService()
            while fake.reactor.seconds() < seconds:
                calls = fake.reactor.getDelayedCalls()
                fake.reactor.advance(min(c.getTime() for c in calls) - fake.reactor.seconds())
    finally:
        sub.stopService()
    return seen.lines(namespace="Subscriber")


def subscriber_with(fake: Flapping) -> BrokerSubscriber:
    plan = cast(Any, types.SimpleNamespace(chlist=[b"c"], dattr=b""))
    sub = BrokerSubscriber(fake.reactor, "127.0.0.1:20557", lambda: fake, plan, print)
    fake.sub = sub
    return sub


@pytest.fixture(autouse=True)
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscriber.random, "uniform", lambda a, b: 1.0)


def test_a_broker_that_drops_each_subscription_at_once_gets_the_capped_backoff() -> None:
    fake = Flapping(MemoryReactorClock())
    lines = run(300, fake, subscriber_with(fake))
    gaps = [b - a for a, b in zip(fake.attempts, fake.attempts[1:], strict=False)]
    # 0.25 s doubling to the 5 s cap (+ the 60 ms each link lived); before: 0.31 s each
    # time, ~970 attempts in 5 min
    assert [round(g, 2) for g in gaps[:6]] == [0.31, 0.56, 1.06, 2.06, 4.06, 5.06], gaps
    assert len(fake.attempts) <= 300 / 5 + 5, len(fake.attempts)
    # per state change: subscribed, lost, back (twice), then quiet; before, 2 lines per
    # attempt (~1,900)
    assert len(lines) <= 5, lines
    assert sum("subscription finished" in ln for ln in lines) == 3, lines
    assert "back after 1 failed attempt(s) over 0.3 s" in lines[2], lines


def test_a_subscription_that_lasted_resets_the_backoff() -> None:
    """A broker restarted after a long subscription is tried again 0.25 s after the loss,
    and said in full (a new outage)."""
    fake = Flapping(MemoryReactorClock(), hold=STABLE + 1)
    lines = run(60, fake, subscriber_with(fake))
    gaps = [b - a for a, b in zip(fake.attempts, fake.attempts[1:], strict=False)]
    assert all(round(g, 2) == round(0.01 + STABLE + 1 + 0.25, 2) for g in gaps), gaps
    lost = [ln for ln in lines if "link lost" in ln]
    assert len(lost) >= len(gaps) and all("reconnecting in 0.25 s" in ln for ln in lost), lines


def test_reasons_that_vary_at_every_attempt_are_said_a_bounded_number_of_times() -> None:
    """A reason with a different text each time (a TLS alert with a peer's bytes): one line
    per new reason up to NEW_REASONS, then the reminders; the set of them stays small."""

    class Varying:
        n = 0

        def connect(self, factory: Any) -> defer.Deferred[Any]:
            Varying.n += 1
            return defer.fail(ValueError(f"bad record {'xyz'[Varying.n % 3] * Varying.n}"))

    reactor = MemoryReactorClock()
    plan = cast(Any, types.SimpleNamespace(chlist=[b"c"], dattr=b""))
    sub = BrokerSubscriber(reactor, "127.0.0.1:20557", Varying, plan, print)
    fake = Flapping(reactor)
    lines = run(500, fake, sub)
    assert Varying.n > 90
    assert len(lines) == 1 + subscriber.NEW_REASONS, lines
    assert len(sub._reasons) <= subscriber.NEW_REASONS + 1


def test_after_flapping_a_subscription_that_lasts_is_said() -> None:
    """Past FLAPS_SAID, a subscription is not said when made (it may be lost at once); one
    that then lasts STABLE s is said: the operator sees the broker is back."""
    reactor = MemoryReactorClock()
    fake = Flapping(reactor)
    sub = subscriber_with(fake)
    real_connect = fake.connect

    def connect(factory: Any) -> defer.Deferred[Any]:
        if len(fake.attempts) >= 5:  # the broker is fixed: this one lasts
            fake.hold = 1e9
        return real_connect(factory)

    fake.connect = connect  # type: ignore[method-assign]
    lines = run(120, fake, sub)
    assert len(fake.attempts) == 6, fake.attempts
    assert sum("Broker subscription finished: " in ln for ln in lines) == 3, lines
    lasted = [ln for ln in lines if "Broker subscription finished and lasted 10 s" in ln]
    assert len(lasted) == 1 and "back after 5 failed attempt(s)" in lasted[0], lines
    assert not reactor.getDelayedCalls()  # (stopped: nothing left)


def test_a_clock_stepped_back_under_a_subscription_starts_a_new_outage() -> None:
    """The reactor's clock is the wall's: stepped back (NTP) 10 min under a subscription
    of 5 min, its loss was taken for a flap of the outage before it (review33B): the
    backoff went on from where that outage left it (4 s, not 0.25 s), its reminders and
    "back after" counted from it."""
    reactor = MemoryReactorClock()
    fake = Flapping(reactor)
    sub = subscriber_with(fake)
    fake.connect = lambda factory: defer.Deferred()  # type: ignore[method-assign]
    try:
        with captured_events() as seen:
            sub.startService()
            for _ in range(4):  # an outage of four failures before the broker came
                sub._retry("cannot connect: Connection was refused by other side: 111")
            sub.subscribed()
            reactor.advance(300)
            reactor.rightNow -= 600  # the step back
            before = len(seen)
            sub.lost(cast(Any, sub.link), Failure(ConnectionLost("broker restarted")))
    finally:
        sub.stopService()
    lines = seen.lines()[before:]
    assert any("link lost" in ln and "reconnecting in 0.25 s" in ln for ln in lines), lines
    assert sub.failures == 1
