"""packetlab.clockstep: a LoopingCall across a step that is not a whole number of its
intervals (session 36, review36). step36's test stepped a 1 s loop by 60 s, a whole
number of periods: its phase came out the same whether its start was shifted or not, so
the test passed with the LoopingCall part of `shift_timers` removed."""

from __future__ import annotations

import pytest
from test_clockstep import Clocks, FakeReactor
from twisted.internet.task import LoopingCall

from packetlab.clockstep import install


@pytest.fixture
def world() -> tuple[Clocks, FakeReactor]:
    clocks = Clocks()
    reactor = FakeReactor(clocks)
    install(reactor, monotonic=lambda: clocks.mono)
    return clocks, reactor


@pytest.mark.parametrize("step", [-60.4, 60.4])
def test_a_looping_call_keeps_its_phase_across_a_step_of_a_part_of_its_interval(
    world: tuple[Clocks, FakeReactor], step: float
) -> None:
    clocks, reactor = world
    ticks: list[float] = []
    loop = LoopingCall(lambda: ticks.append(clocks.mono))
    loop.clock = reactor
    loop.start(1.0, now=False)
    reactor.turn(1.0)
    clocks.step(step)
    for _ in range(62):  # 3.1 s in turns of 50 ms: a tick seen to within one turn
        reactor.turn(0.05)
    assert ticks[:4] == [pytest.approx(50.0 + n, abs=0.06) for n in range(1, 5)]
    loop.stop()


def test_a_counting_looping_call_counts_no_beats_for_a_step_forward(
    world: tuple[Clocks, FakeReactor],
) -> None:
    """`withCount`: the beats since the last call are reckoned from `_realLastTime`;
    unshifted, a 60 s step forward counted 60 missed beats."""
    clocks, reactor = world
    counts: list[int] = []
    loop = LoopingCall.withCount(counts.append)
    loop.clock = reactor
    loop.start(1.0, now=False)
    reactor.turn(1.0)
    clocks.step(60.0)
    reactor.turn(1.0)
    reactor.turn(1.0)
    assert counts == [1, 1, 1]
    loop.stop()


def test_a_timer_made_in_the_turn_of_a_step_keeps_its_delay(
    world: tuple[Clocks, FakeReactor],
) -> None:
    """A step lands, most likely, while the reactor waits for I/O; the I/O callbacks
    of that wake ran before the next turn's check, and their `callLater`s (already on
    the stepped clock) were shifted by the step too: after a 60 s step back a new
    broker link's 30 s IdleTimeout fired at once. The step is now checked for at each
    `callLater` made outside the timed calls, before the new timer is added."""
    clocks, reactor = world
    fired: list[str] = []
    reactor.callLater(5.0, fired.append, "old")
    reactor.turn(0.1)
    clocks.advance(1.0)  # the wait for I/O ...
    clocks.step(-60.0)  # ... during which the clock is stepped back
    reactor.callLater(30.0, fired.append, "new")  # an I/O callback's timer
    reactor.runUntilCurrent()  # the next turn
    assert fired == []  # before: ["new"]
    reactor.turn(3.95)
    assert fired == ["old"]  # (5 s after it was made)
    reactor.turn(26.0)
    assert fired == ["old"]
    reactor.turn(0.1)
    assert fired == ["old", "new"]  # 30 s after it was made


def test_a_step_seen_by_a_timed_calls_timer_waits_for_the_next_turn(
    world: tuple[Clocks, FakeReactor],
) -> None:
    """Inside the timed calls a `callLater` does not shift the heap: the turn's `now`
    was read before, and timers shifted back under it would all fire in that turn."""
    clocks, reactor = world
    fired: list[str] = []

    def stepped_then_timer() -> None:
        clocks.step(-60.0)
        reactor.callLater(100.0, lambda: None)

    reactor.callLater(1.0, stepped_then_timer)
    reactor.callLater(20.0, fired.append, "20")
    reactor.turn(1.0)
    assert fired == []  # a check in that callLater: "20" fired 19 s early
    reactor.turn(0.0)
    assert fired == []
    reactor.turn(18.9)
    assert fired == []
    reactor.turn(0.2)
    assert fired == ["20"]  # 20 s after it was made


def test_pinned_delayed_call_identity() -> None:
    """`mark_wall` keeps its timers in a WeakSet: a DelayedCall must hash and compare by
    identity (a Twisted that gave it a value `__eq__` would make it unhashable, and every
    `mark_wall` raise; or two timers of one moment one entry)."""
    from twisted.internet.base import DelayedCall

    assert DelayedCall.__hash__ is object.__hash__
    assert DelayedCall.__eq__ is object.__eq__


def test_a_steady_reading_in_the_wake_of_a_step_and_its_timer_agree(
    world: tuple[Clocks, FakeReactor],
) -> None:
    """(lead, after merging steady36 and review36) An I/O callback of the wake in which
    the clock was stepped reads `steady` for a deadline, then arms a timer for it: the
    reading must already count the step, as the `callLater` does, or the timer is off by
    the step (here: a 2 s deadline after a 60 s step back waited 62 s)."""
    from packetlab.clockstep import steady

    clocks, reactor = world
    fired: list[float] = []
    reactor.turn(0.1)
    deadline = steady(reactor) + 3.0  # made before the wait
    clocks.advance(1.0)  # the wait for I/O ...
    clocks.step(-60.0)  # ... during which the clock is stepped back
    reactor.callLater(deadline - steady(reactor), lambda: fired.append(clocks.mono))
    start = clocks.mono
    for _ in range(80):  # 4 s in turns of 50 ms
        reactor.turn(0.05)
    assert fired == [pytest.approx(start + 2.0, abs=0.06)]


def test_a_suspend_is_not_a_step() -> None:
    """CLOCK_MONOTONIC stops while the machine is suspended and the wall clock does not:
    an hour's suspend looked like an hour's step forward, and the timers due meanwhile
    waited out the rest of their delays at the resume. The default clock is
    CLOCK_BOOTTIME, which counts the suspend."""
    import inspect
    import time

    from packetlab import clockstep

    default = inspect.signature(clockstep.install).parameters["monotonic"].default
    assert default is not time.monotonic
    a = default()
    b = time.clock_gettime(time.CLOCK_BOOTTIME)
    assert abs(b - a) < 0.5


def test_a_step_during_the_timed_calls_does_not_stretch_the_reactors_sleep(
    world: tuple[Clocks, FakeReactor],
) -> None:
    """(lead) A step that lands while the timed calls run, after `runUntilCurrent`'s
    check, was read by the reactor's `timeout()` on timers not yet shifted: after a 60 s
    step back the reactor slept 60.5 s for a 0.5 s timer (test_step36_clockstep failed
    2 runs in 3 so: the endpoint's reconnection, due in 8 s, never came in 16)."""
    clocks, reactor = world
    fired: list[str] = []
    reactor.callLater(0.5, fired.append, "soon")
    reactor.callLater(0.0, clocks.step, -60.0)  # a timed call during which the step lands
    reactor.runUntilCurrent()
    assert reactor.timeout() == pytest.approx(0.5, abs=0.01)  # before: 60.5
