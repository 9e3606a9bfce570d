"""testkit.clock.FakeClock: one integer-ns time for the reactor and for ns clocks."""

from __future__ import annotations

from testkit.clock import T0, FakeClock
from twisted.internet.interfaces import IReactorTime


def test_reactor_calls_run_when_due_and_ns_are_exact() -> None:
    clock = FakeClock(step=0)
    assert IReactorTime.providedBy(clock) and clock.seconds() == T0 / 1e9
    ran: list[int] = []
    clock.callLater(1.5, lambda: ran.append(clock.now))
    clock.advance(1)
    assert ran == [] and len(clock.getDelayedCalls()) == 1
    clock.advance_ns(500_000_000)
    assert ran == [T0 + 1_500_000_000] and clock.getDelayedCalls() == []
    clock.now += 7  # a move of 7 ns is kept, not rounded away in float seconds
    clock.advance(1.0)
    assert clock.now_ns() == T0 + 2_500_000_007


def test_each_ns_reading_moves_time_by_step() -> None:
    clock = FakeClock(100, step=10)
    assert [clock(), clock(), clock.now_ns()] == [100, 110, 120]
    assert clock.reads == 2


def test_assigning_now_does_not_run_calls() -> None:
    clock = FakeClock(0, step=0)
    ran: list[bool] = []
    clock.callLater(1, ran.append, True)
    clock.now = 2_000_000_000
    assert ran == []
    clock.advance(0)
    assert ran == [True]
