"""`clockstep.steady`: schedules and durations that a wall-clock step does not bend, over
fakes that step the wall clock (steppedclock's reactor, or a task.Clock stepped as
`clockstep.install` would shift it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ctl_fakes import BASE_NS
from steppedclock import T0, Clocks, FakeReactor, stepped_world
from test_broker_redis_regrace import KEY, _restart, _store, _sweep
from test_traceroute_fakes import R14, TG4, RawRig
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from packetlab.broker.redis_store import REGRACE
from packetlab.clockstep import StepWatch, steady, steady_clock
from packetlab.endpoint.service import CONNECT_GIVE_UP, CONNECT_RETRY, ConnectCycle
from packetlab.heaptrim import IdleTrim
from packetlab.measure.http_conn import _sent
from packetlab.measure.ping import ping
from packetlab.measure.stream import StreamTimeout


@pytest.fixture
def world() -> tuple[Clocks, FakeReactor]:
    return stepped_world()


def test_steady_counts_the_time_elapsed_across_steps(world: tuple[Clocks, FakeReactor]) -> None:
    clocks, reactor = world
    start = steady(reactor)
    assert start == T0
    reactor.turn(1.0)
    clocks.step(-60.0)
    reactor.turn(0.5)
    assert steady(reactor) - start == pytest.approx(1.5)
    assert reactor.seconds() - start == pytest.approx(-58.5)  # the wall clock's
    clocks.step(+3600.0)
    reactor.turn(1.0)
    assert steady(reactor) - start == pytest.approx(2.5)
    assert steady_clock(reactor)() == steady(reactor)


def test_steady_stays_comparable_with_the_shifted_timers(
    world: tuple[Clocks, FakeReactor],
) -> None:
    """A loop that sleeps `due - steady()` and then checks `steady() >= due` (ping's)
    finds its due time reached when the timer fires, whatever the wall clock did."""
    clocks, reactor = world
    due = steady(reactor) + 1.0
    fired: list[bool] = []
    reactor.callLater(due - steady(reactor), lambda: fired.append(steady(reactor) >= due))
    reactor.turn(0.3)
    clocks.step(-60.0)
    reactor.turn(0.3)
    assert fired == []
    reactor.turn(0.41)
    assert fired == [True]  # reactor.seconds() >= due: False (60 s early)


def test_a_clock_without_install_is_its_seconds() -> None:
    for clock in (MemoryReactorClock(), Clock()):
        clock.advance(12.5)
        assert steady(clock) == 12.5


def test_the_endpoint_gives_up_connecting_after_5_s_across_a_step_back(
    world: tuple[Clocks, FakeReactor],
) -> None:
    """Before: the cycle's 5 s were measured on the wall clock; after a 60 s step back
    it retried every second for ~65 s before giving up."""
    clocks, reactor = world
    cycle = ConnectCycle(reactor, "127.0.0.1:8888", retry_delay=30.0)  # type: ignore[arg-type]
    waits: list[float] = []
    for attempt in range(1, 20):
        cycle.attempt_started()
        cycle.attempt_failed(Failure(ConnectionRefusedError()))
        if attempt == 2:
            clocks.step(-60.0)
        reactor.turn(0.0)
        waits.append(cycle(attempt))
        if waits[-1] != CONNECT_RETRY:
            break
        reactor.turn(waits[-1])
    assert waits == [CONNECT_RETRY] * int(CONNECT_GIVE_UP - CONNECT_RETRY) + [30.0]


def test_an_idle_trim_waits_its_interval_not_the_step(
    world: tuple[Clocks, FakeReactor],
) -> None:
    """Before: after a 60 s step back the next trim was held 60 s more (90 s, not 30)."""
    clocks, reactor = world
    trims: list[float] = []
    idle = IdleTrim(reactor, lambda: trims.append(clocks.mono), interval=30, settle=0.5)
    idle.opened()()
    reactor.turn(0.5)
    assert trims == [50.5]
    clocks.step(-60.0)
    reactor.turn(1.0)
    idle.opened()()  # the next session ends 1 s after the trim
    waits = [call.getTime() - reactor.seconds() for call in reactor.getDelayedCalls()]
    assert waits == [pytest.approx(29.0)]


def _step_task_clock(clock: Clock, jump: float) -> None:
    """`jump` on a task.Clock's wall reading, seen at once as `clockstep.install` sees it
    at the next turn: the pending calls shifted by it, and counted in `steady`."""
    watch = getattr(clock, "_packetlab_clockstep", None)
    if watch is None:
        watch = StepWatch(clock.seconds, lambda: 0.0)
        clock._packetlab_clockstep = watch  # type: ignore[attr-defined]
    clock.rightNow += jump
    for call in clock.calls:
        call.time += jump
    watch.stepped += jump


def test_ping_keeps_its_1_s_schedule_when_the_controller_clock_steps_back() -> None:
    """`run ping -c 6 -i 1`, the controller's wall clock 60 s back after the third reply
    (the endpoint's on the real time). Before: the loop compared the wall clock with its
    due times and slept 60 s more (67 s in all); now 6 of 6 one second apart."""
    rig = RawRig([R14, TG4])
    endpoint_now: Callable[[], int] = lambda: BASE_NS + int(steady(rig.clock) * 1e9)  # noqa: E731
    rig.endpoint.now = endpoint_now  # type: ignore[method-assign]
    told: list[float] = []

    def on_reply(_: object) -> None:
        told.append(steady(rig.clock))
        if len(told) == 3:
            rig.clock.callLater(0.2, _step_task_clock, rig.clock, -60.0)

    start = steady(rig.clock)
    result = rig.run(ping(rig.session, TG4, count=6, interval=1.0, on_reply=on_reply))
    assert (result.sent, result.received) == (6, 6)
    assert [round(t - start) for t in told] == [0, 1, 2, 3, 4, 5]
    assert steady(rig.clock) - start < 8  # before: 66
    assert [r.rtt_us for r in result.replies] == pytest.approx([1000] * 6, abs=0.01)


def test_an_upload_deadline_loop_times_out_on_time_across_a_step_back(
    world: tuple[Clocks, FakeReactor],
) -> None:
    """`http_conn._sent` (curl -m while the server takes nothing): before, the timer fired
    on time, the loop found the wall clock 60 s short of its deadline and slept 60 s more."""
    clocks, reactor = world
    sent: Deferred[Any] = Deferred()
    done = ensureDeferred(_sent(reactor, sent, steady(reactor) + 2.0))
    failures: list[Failure] = []
    done.addErrback(failures.append)
    reactor.turn(1.0)
    clocks.step(-60.0)
    reactor.turn(0.5)
    assert not failures
    reactor.turn(0.51)
    assert [f.type for f in failures] == [StreamTimeout]


def test_the_redis_regrace_lasts_its_time_across_a_step_back() -> None:
    """Another broker's mirror, never put back after a Redis restart, ends once REGRACE
    has passed. Before: a 60 s step back after the restart held it 60 s more."""
    store, fake, clock = _store()
    _restart(store, fake, clock)
    _step_task_clock(clock, -60.0)
    clock.advance(REGRACE - 0.5)
    _sweep(store)
    assert KEY in store._mirrors
    clock.advance(1)
    _sweep(store)
    assert KEY not in store._mirrors
