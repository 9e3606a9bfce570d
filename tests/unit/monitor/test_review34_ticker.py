"""The epoch ticker's POSIX timer takes the finest tick of the boxes open (review34).

Its period was set once, when the first box opened it: a box opened later that needed a
finer tick (a session whose capped monitor time cuts calls off at a short burst, opened
while a reflex's box or another session's held the ticker at 20 ms) had its calls cut off
up to a whole 20 ms tick late. A fake libc records the periods the timer is armed with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from packetlab.monitor.engine import _Ticker


class _Fn:
    """A libc function: accepts `argtypes`, as ctypes' do."""

    def __init__(self, impl: Callable[..., int]) -> None:
        self.impl = impl
        self.argtypes: Any = None

    def __call__(self, *args: Any) -> int:
        return self.impl(*args)


class FakeLibc:
    def __init__(self) -> None:
        self.periods: list[int] = []  # ns, each timer_settime
        self.deleted = 0
        self.timer_create = _Fn(lambda clock, ev, timer: 0)
        self.timer_settime = _Fn(self._settime)
        self.timer_delete = _Fn(self._delete)

    def _settime(self, timer: Any, flags: int, spec: Any, old: Any) -> int:
        its = spec._obj  # (ctypes.byref's object)
        self.periods.append(its.interval.sec * 1_000_000_000 + its.interval.nsec)
        return 0

    def _delete(self, timer: Any) -> int:
        self.deleted += 1
        return 0


def ticker() -> tuple[_Ticker, FakeLibc]:
    t = _Ticker()
    libc = FakeLibc()
    t._libc = libc
    return t, libc


def test_a_box_that_needs_a_finer_tick_rearms_the_running_timer() -> None:
    t, libc = ticker()
    t.acquire(0.020)  # a reflex's box, deadline 5 s: the longest tick
    assert libc.periods == [20_000_000]
    t.acquire(0.001)  # a capped session cutting calls off at 5 ms
    assert libc.periods == [20_000_000, 1_000_000]  # before: [20_000_000], 20 ms late
    assert t.tick_s == 0.001


def test_a_coarser_box_leaves_the_timer_as_it_is() -> None:
    t, libc = ticker()
    t.acquire(0.004)
    t.acquire(0.020)
    t.acquire(0.004)
    assert libc.periods == [4_000_000]
    t.release(0.020)
    t.release(0.004)  # one 4 ms box still open
    assert libc.periods == [4_000_000]
    t.release(0.004)
    assert libc.deleted == 1 and t._timer is None
    t.acquire(0.020)  # a new first box: its own tick again
    assert libc.periods == [4_000_000, 20_000_000]
    t.release(0.020)


def test_the_fine_tick_goes_when_its_box_closes() -> None:
    """A 1 ms tick is a timer thread call a millisecond: not kept for a reflex's box
    that stays open after the capped session that needed it has ended."""
    t, libc = ticker()
    t.acquire(0.020)
    t.acquire(0.001)
    t.release(0.001)
    assert libc.periods == [20_000_000, 1_000_000, 20_000_000]
    assert t.tick_s == 0.020
    t.release(0.020)
    assert libc.deleted == 1


def test_without_the_timer_the_thread_reads_the_tick_each_time() -> None:
    """The Python thread that ticks where no POSIX timer can be made waits `tick_s`
    anew each tick: nothing to re-arm."""
    t, libc = ticker()
    t._timer = None
    t._users = 1
    t.tick_s = 0.020
    t.acquire(0.001)
    assert t.tick_s == 0.001 and t._timer is None and libc.periods == []
