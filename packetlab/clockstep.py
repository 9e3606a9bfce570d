"""Keep the reactor's timers on their delays when the wall clock is stepped.

Twisted's reactor schedules `callLater(d, f)` at `time.time() + d`: a wall clock stepped
back 60 s (NTP/chrony's `makestep` on a host that booted with a wrong clock) held every
timer 60 s more (an endpoint reconnecting once a second made no attempt for 61 s,
session 35), and a step forward fired at once every timer due within it. The reactor's
clock stays the wall clock (its callers compare it with certificate ends, `pub_end`,
endpoint timestamps); instead, at each reactor turn:

* `StepWatch` (sans-IO) compares how far the wall clock moved with how far the monotonic
  clock did since the previous turn: the difference is a step;
* `install` hooks a reactor's `runUntilCurrent` and shifts every pending `DelayedCall`
  by a step (and a `LoopingCall`'s start, so its phase is kept), so a `callLater(d)`
  fires d seconds of elapsed time after it was made, whatever the wall clock did;
* `call_at_wall` (or `mark_wall` on a `callLater`) is a timer for a WALL moment (a
  certificate's end, a publication's `pub_end`): it is left out of the shift, so it
  fires at its wall moment (at once when a step forward passed it, later when a step
  back put it further away);
* `steady(clock)` is the clock for a DURATION or a LOCAL SCHEDULE (a ping's due times,
  a connect give-up, a deadline loop): the reactor's seconds minus the steps seen so far.
  It moves with the wall clock but for the steps, so `steady(clock) - start` is the time
  elapsed, and a deadline reckoned on it keeps its distance from the (shifted) timers: a
  loop that sleeps `until - steady(clock)` wakes on time and finds its due time reached.
  Not `time.monotonic()`: the timers are on the shifted wall scale, and a loop that
  mixed the two would be off by the steps whenever it compares a reading with a
  `DelayedCall.getTime()` or hands a deadline to code on the reactor's clock. Outside
  the timed calls a reading checks for a step first, as `callLater` does (the check
  counts the step and shifts the timers at once, so neither is ever counted without the
  other); inside them it counts the steps the turn saw. A clock without `install` (a
  test's MemoryReactorClock, Twisted's `task.Clock`) has no steps: its `seconds()`.

A step most likely lands while the reactor waits for I/O, and that wake's I/O callbacks
run before the next turn: so a `callLater` made outside the timed calls checks for a
step first (their timers, made on the stepped clock, were shifted by it too: after a
60 s step back a new link's 30 s timer fired at once). Inside the timed calls it does
not (the turn read its `now` before them: timers shifted back would fire in that turn);
a step that lands there shifts the timers they make (by at most the step, once).

Relies on `ReactorBase._pendingTimedCalls` / `_newTimedCalls` (the heap and the calls
not yet in it), `DelayedCall.time` and `LoopingCall.starttime` / `_realLastTime`;
`tests/unit/test_clockstep.py::test_pinned_twisted_timer_internals` pins them, so a
Twisted release that changes them fails that test instead of silently stalling timers.
"""

from __future__ import annotations

import functools
import heapq
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.logger import Logger

if TYPE_CHECKING:
    # (at run time imported where used: the endpoint's modules import this one before
    # its tap makes `pty` lazy, and twisted.internet.base would load pty, and tty with it:
    # test_endpoint_idle_imports, test_daemon_idle_imports)
    from twisted.internet.base import DelayedCall
    from twisted.internet.task import LoopingCall

__all__ = [
    "STEP_TOLERANCE",
    "StepWatch",
    "call_at_wall",
    "install",
    "is_wall",
    "mark_wall",
    "shift_timers",
    "steady",
    "steady_clock",
]

log = Logger()
_C = TypeVar("_C")

#: a jump of the wall clock against the monotonic one below this is not a step. Both
#: clocks slew together (CLOCK_MONOTONIC follows adjtime's frequency corrections), so
#: slewing adds nothing; what remains is the time between the two reads of a turn (a
#: few µs, tens of ms when preempted at load 15). 0.5 s is ten times that worst case and
#: below what chrony/ntpd step (`makestep 1 3`: 1 s and more).
STEP_TOLERANCE = 0.5

# timers for a wall moment (`call_at_wall`): not shifted
_WALL: weakref.WeakSet[DelayedCall] = weakref.WeakSet()


class StepWatch:
    """By how much the `wall` clock jumped against the `monotonic` one since the last
    `step()` (0.0 below `tolerance`)."""

    def __init__(
        self,
        wall: Callable[[], float],
        monotonic: Callable[[], float] = time.monotonic,
        tolerance: float = STEP_TOLERANCE,
    ) -> None:
        self._wall, self._monotonic, self.tolerance = wall, monotonic, tolerance
        self._last = (wall(), monotonic())
        self.stepped = 0.0  # the sum of the steps returned so far
        # `install`'s check for a step outside the timed calls (none without it)
        self.poll: Callable[[], None] = lambda: None

    def step(self) -> float:
        wall, mono = self._wall(), self._monotonic()
        jump = (wall - self._last[0]) - (mono - self._last[1])
        self._last = (wall, mono)
        if abs(jump) < self.tolerance:
            return 0.0
        self.stepped += jump
        return jump


def shift_timers(reactor: Any, jump: float) -> int:
    """Move `reactor`'s pending timers (but `call_at_wall`'s) by `jump` seconds of wall
    time; the number of live timers moved."""
    moved = 0
    for call in (*reactor._pendingTimedCalls, *reactor._newTimedCalls):
        if call in _WALL:
            continue
        call.time += jump
        if call.cancelled or call.called:
            continue
        moved += 1
        looping = call.func
        if isinstance(looping, _looping_call()):  # its next turns count from its start
            if looping.starttime is not None:
                looping.starttime += jump
            if looping._realLastTime is not None:
                looping._realLastTime += jump
    heapq.heapify(reactor._pendingTimedCalls)  # wall timers kept: the order may change
    return moved


# CLOCK_BOOTTIME: monotonic, and counting a suspend (CLOCK_MONOTONIC stops then, so an
# hour's suspend looked like a step forward of an hour, and the timers due meanwhile
# waited out the rest of their delays instead of firing at the resume). A partial: no
# Python frame per read (`steady` reads it outside the timed calls).
_boottime: Callable[[], float] = functools.partial(time.clock_gettime, time.CLOCK_BOOTTIME)


def install(reactor: Any, monotonic: Callable[[], float] = _boottime) -> None:
    """From now on, `reactor`'s timers keep their delays across a wall-clock step (once
    per reactor; a reactor without Twisted's timer heap, e.g. a test's fake, is left):
    its `runUntilCurrent`, `timeout` and `callLater` check for a step first."""
    if getattr(reactor, "_packetlab_clockstep", False) or not hasattr(
        reactor, "_pendingTimedCalls"
    ):
        return
    watch = StepWatch(reactor.seconds, monotonic)
    run, later = reactor.runUntilCurrent, reactor.callLater
    timed = 0  # in the timed calls (`run`): how deep (a callback may `iterate`)

    def check() -> None:
        jump = watch.step()
        if jump:
            moved = shift_timers(reactor, jump)
            log.info(
                "wall clock stepped {way} {size:.1f} s: {moved} timer(s) kept on their delays",
                way="forward" if jump > 0 else "back",
                size=abs(jump),
                moved=moved,
            )

    def runUntilCurrent() -> None:
        nonlocal timed
        check()
        timed += 1
        try:
            run()
        finally:
            timed -= 1

    def callLater(delay: float, f: Callable[..., object], *args: Any, **kw: Any) -> Any:
        if not timed:  # (an I/O callback's: the step may have come during the wait)
            check()
        return later(delay, f, *args, **kw)

    sleep_for = reactor.timeout

    def timeout() -> float | None:
        # the reactor's sleep, reckoned from the timers and the wall clock just after
        # the timed calls: a step landing during them (after `runUntilCurrent`'s check)
        # had the reactor sleep the step's length on unshifted timers (60.5 s for a
        # 0.5 s timer after a 60 s step back: test_step36_clockstep, 2 runs in 3)
        if not timed:
            check()
        return sleep_for()

    reactor.runUntilCurrent = runUntilCurrent
    reactor.callLater = callLater
    reactor.timeout = timeout

    def poll() -> None:
        if not timed:
            check()

    watch.poll = poll
    reactor._packetlab_clockstep = watch


def steady(clock: Any) -> float:
    """`clock`'s seconds minus the wall-clock steps seen so far (see the module
    docstring): for durations and local schedules, never for a wall moment. Outside the
    timed calls it checks for a step first, as `callLater` does (and with it shifts the
    timers): a reading in an I/O callback after a step, then a `callLater` reckoned from
    it, would otherwise be off by the step."""
    try:  # (not getattr + isinstance: ~60 ns a read over `seconds()`, not ~155; timeit)
        watch = clock._packetlab_clockstep
    except AttributeError:  # no `install`: a test's fake clock
        return float(clock.seconds())
    watch.poll()
    return float(clock.seconds()) - watch.stepped


def call_at_wall(clock: Any, when: float, f: Callable[..., object], *args: Any) -> Any:
    """`clock.callLater` for the wall moment `when` (seconds since the epoch, as
    `clock.seconds()`): at once if it has passed; kept on that moment across a step."""
    return mark_wall(clock.callLater(max(0.0, when - clock.seconds()), f, *args))


def mark_wall(call: _C) -> _C:
    """`call` (a `callLater` whose delay was reckoned to a wall moment, e.g. an endpoint
    time in ns) is left out of the shift: it stays on its wall moment across a step."""
    if isinstance(call, _delayed_call()):
        _WALL.add(call)
    return call


def is_wall(call: object) -> bool:
    """Whether `call` was marked as a wall timer (for tests)."""
    return isinstance(call, _delayed_call()) and call in _WALL


def steady_clock(clock: Any) -> Callable[[], float]:
    """`steady(clock)` as a callable, for a sans-IO piece that takes its clock
    (`LogBudget`, `AddressShare`)."""
    return lambda: steady(clock)


def _delayed_call() -> type[DelayedCall]:
    from twisted.internet.base import DelayedCall

    return DelayedCall


def _looping_call() -> type[LoopingCall]:
    from twisted.internet.task import LoopingCall

    return LoopingCall
