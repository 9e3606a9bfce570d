"""packetlab.clockstep over Twisted's own timer heap (a ReactorBase that never runs, no
waker) with a wall clock and a monotonic clock the test steps apart (steppedclock)."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import twisted.internet
from steppedclock import T0, Clocks, FakeReactor, stepped_world
from twisted.internet.base import DelayedCall, ReactorBase
from twisted.internet.task import LoopingCall
from twisted.logger import LogEvent, capturedLogs, formatEvent

from packetlab import clockstep
from packetlab.clockstep import StepWatch, call_at_wall, install


@pytest.fixture
def world() -> tuple[Clocks, FakeReactor]:
    return stepped_world()


@pytest.fixture
def logged() -> Iterator[Sequence[LogEvent]]:
    with capturedLogs() as events:
        yield events


def lines(events: Sequence[LogEvent]) -> list[str]:
    return [formatEvent(e) for e in events if "stepped" in e.get("log_format", "")]


def test_a_step_back_keeps_a_one_second_timer_at_one_second(
    world: tuple[Clocks, FakeReactor], logged: Sequence[LogEvent]
) -> None:
    """Before: the timer was due at the wall moment T0+1, 61 s away after the step."""
    clocks, reactor = world
    fired: list[float] = []
    reactor.callLater(1.0, lambda: fired.append(clocks.mono))
    reactor.turn(0.2)
    clocks.step(-60.0)
    reactor.turn(0.5)
    assert fired == []
    reactor.turn(0.31)
    assert fired == [pytest.approx(50.0 + 1.01)]
    assert lines(logged) == ["wall clock stepped back 60.0 s: 1 timer(s) kept on their delays"]


def test_a_step_forward_fires_no_timer_early(
    world: tuple[Clocks, FakeReactor], logged: Sequence[LogEvent]
) -> None:
    """Before: a 30 s timer (and a 10 s one) fired at the first turn after a 60 s step."""
    clocks, reactor = world
    fired: list[str] = []
    reactor.callLater(30.0, fired.append, "30")
    reactor.callLater(10.0, fired.append, "10")
    clocks.step(60.0)
    reactor.turn(0.1)
    assert fired == []
    assert reactor.timeout() == pytest.approx(9.9)
    reactor.turn(9.9)
    assert fired == ["10"]
    reactor.turn(19.99)
    assert fired == ["10"]
    reactor.turn(0.02)
    assert fired == ["10", "30"]
    assert lines(logged) == ["wall clock stepped forward 60.0 s: 2 timer(s) kept on their delays"]


def test_jitter_below_the_tolerance_shifts_nothing(
    world: tuple[Clocks, FakeReactor], logged: Sequence[LogEvent]
) -> None:
    clocks, reactor = world
    call = reactor.callLater(5.0, lambda: None)
    for _ in range(10):  # a slewing/preempted read: 0.3 s either way, ten turns
        clocks.step(0.3)
        reactor.turn(0.1)
        clocks.step(-0.3)
        reactor.turn(0.1)
    assert call.getTime() == T0 + 5.0
    assert lines(logged) == []


def test_a_wall_timer_stays_on_its_wall_moment(world: tuple[Clocks, FakeReactor]) -> None:
    """`call_at_wall` (a certificate's end, a scheduled send): a step back delays it by
    the step, a step forward past it fires it at once."""
    clocks, reactor = world
    fired: list[str] = []
    call_at_wall(reactor, T0 + 10.0, fired.append, "end")
    relative = reactor.callLater(10.0, fired.append, "delay")
    clocks.step(-60.0)
    reactor.turn(10.0)
    assert fired == ["delay"]
    reactor.turn(59.9)
    assert fired == ["delay"]
    reactor.turn(0.2)
    assert fired == ["delay", "end"]
    assert relative.called
    late = call_at_wall(reactor, clocks.wall + 30.0, fired.append, "late")
    clocks.step(45.0)
    reactor.turn(0.01)
    assert fired[-1] == "late" and late.called


def test_a_wall_moment_already_passed_fires_at_the_next_turn(
    world: tuple[Clocks, FakeReactor],
) -> None:
    _clocks, reactor = world
    fired: list[int] = []
    call_at_wall(reactor, T0 - 5.0, fired.append, 1)
    reactor.turn(0.0)
    assert fired == [1]


def test_a_looping_call_keeps_its_period_across_a_step(world: tuple[Clocks, FakeReactor]) -> None:
    clocks, reactor = world
    ticks: list[float] = []
    loop = LoopingCall(lambda: ticks.append(clocks.mono))
    loop.clock = reactor
    loop.start(1.0, now=False)
    reactor.turn(1.0)
    clocks.step(-60.0)
    for _ in range(3):
        reactor.turn(1.0)
    clocks.step(+60.0)
    for _ in range(2):
        reactor.turn(1.0)
    assert ticks == [pytest.approx(50.0 + n) for n in range(1, 7)]
    loop.stop()


def test_install_is_once_and_leaves_a_fake_reactor_alone() -> None:
    from twisted.internet.testing import MemoryReactorClock

    fake = MemoryReactorClock()
    install(fake)
    assert "runUntilCurrent" not in vars(fake)
    reactor = FakeReactor(Clocks())
    install(reactor)
    hooked = reactor.runUntilCurrent
    install(reactor)
    assert reactor.runUntilCurrent is hooked


def test_step_watch_measures_the_wall_against_the_monotonic_clock() -> None:
    clocks = Clocks()
    watch = StepWatch(lambda: clocks.wall, lambda: clocks.mono)
    clocks.advance(100.0)
    assert watch.step() == 0.0
    clocks.step(-0.49)
    assert watch.step() == 0.0  # below the tolerance
    clocks.step(-1.0)
    assert watch.step() == -1.0
    assert watch.step() == 0.0  # measured from the last turn, not from the start


def test_pinned_twisted_timer_internals() -> None:
    """What packetlab.clockstep reads or writes of Twisted's timers: if this fails after
    a Twisted upgrade, clockstep.py must be revisited first (timers would stall by a
    step again, or be shifted twice)."""
    reactor = FakeReactor(Clocks())
    call = reactor.callLater(1.0, lambda: None)
    assert isinstance(call, DelayedCall) and call.time == T0 + 1.0
    assert reactor._newTimedCalls == [call]
    reactor.runUntilCurrent()
    assert reactor._pendingTimedCalls == [call] and reactor._newTimedCalls == []
    # the loop calls runUntilCurrent through the instance (our hook), the heap is
    # compared on `.time`, and getTime/timeout derive from it
    assert "self.runUntilCurrent()" in inspect.getsource(ReactorBase.mainLoop)
    assert "self._pendingTimedCalls[0].time <= now" in inspect.getsource(
        ReactorBase.runUntilCurrent
    )
    assert "self._pendingTimedCalls[0].time - self.seconds()" in inspect.getsource(
        ReactorBase.timeout
    )
    call.time += 5.0
    assert call.getTime() == T0 + 6.0
    loop = LoopingCall(lambda: None)
    loop.clock = reactor
    loop.start(1.0, now=False)
    assert loop.starttime == T0 and loop._realLastTime is None
    pending = [c for c in reactor._newTimedCalls if not c.cancelled]
    assert pending[0].func is loop  # the heap entry names its LoopingCall
    loop.stop()
    assert clockstep.STEP_TOLERANCE == 0.5


def test_the_daemons_and_the_cli_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """One call each: the three daemons' `tap_service`, `pktlab`'s `run_reactor`."""
    from types import SimpleNamespace

    from packetlab.cli.interrupt import run_reactor
    from packetlab.tapoptions import tap_service

    hooked: list[object] = []
    monkeypatch.setattr(clockstep, "install", hooked.append)
    stand_in = SimpleNamespace()  # the reactor `tap_service` imports (not installed here)
    monkeypatch.setattr(twisted.internet, "reactor", stand_in, raising=False)
    monkeypatch.setitem(sys.modules, "twisted.internet.reactor", stand_in)
    options = SimpleNamespace(check_own_files=lambda: None, announce_background=lambda: None)
    assert tap_service(lambda o: "service")(options) == "service"  # type: ignore[type-var]
    assert hooked == [stand_in]

    class Reactor:
        running = False

        def callWhenRunning(self, f: Any) -> None:
            pass

        def run(self) -> None:
            pass

    fake = Reactor()
    # (run_reactor begins the global log: a later test's tracebacks would go with it)
    from twisted.logger import globalLogBeginner

    monkeypatch.setattr(globalLogBeginner, "beginLoggingTo", lambda *a, **k: None)
    run_reactor(lambda r, s: None, prog="pktlab x", reactor=fake)  # type: ignore[arg-type,return-value]
    assert hooked[-1] is fake
