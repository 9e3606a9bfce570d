"""The fake time of unit tests: one clock for the reactor and for nanosecond clocks.

`FakeClock` is a `MemoryReactorClock` (callLater, readers and writers, listenTCP and
connectTCP recorded) whose time is an integer count of nanoseconds, so it also serves
where the code under test takes a ``clock() -> int`` (the endpoint's CLOCK_REALTIME) and
sub-microsecond differences must not round away in a float. `FakeTimer` stands in for
the endpoint's TimerFd.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock

T0 = 1_700_000_000_000_000_000  # a plausible CLOCK_REALTIME, ns
SEC = 1_000_000_000


class FakeClock(MemoryReactorClock):
    """Time stands at `now` ns until moved: `advance(seconds)` and `advance_ns(ns)` run the
    delayed calls that fall due, as `Clock.advance` does; assigning `now` moves time without
    running them. Each call of the clock itself (``clock()``, a ns reading) moves it `step`
    ns, so a loop that spins until a deadline ends; `now_ns()` reads without moving."""

    def __init__(self, now: int = T0, step: int = 10) -> None:
        super().__init__()
        self.now = now
        self.step = step
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        value = self.now
        self.now += self.step
        return value

    def now_ns(self) -> int:
        return self.now

    @property
    def rightNow(self) -> float:  # Clock's float seconds, derived from `now`
        return self.now / SEC

    @rightNow.setter
    def rightNow(self, value: float) -> None:
        self.now = round(value * SEC)

    def seconds(self) -> float:
        return self.now / SEC

    def advance(self, amount: float) -> None:
        self.advance_ns(round(amount * SEC))

    def advance_ns(self, amount: int) -> None:
        self.now += amount
        self._sortCalls()
        while self.calls and self.calls[0].getTime() <= self.seconds():
            call = self.calls.pop(0)
            call.called = 1
            call.func(*call.args, **call.kw)
            self._sortCalls()


class FakeTimer:
    """The endpoint's TimerFd without the kernel: records how it is armed."""

    def __init__(self) -> None:
        self.armed_at: int | None = None
        self.arms: list[int] = []
        self.acks = 0
        self.closed = False

    def fileno(self) -> int:
        return 99

    def arm_at(self, when_ns: int) -> None:
        self.armed_at = when_ns
        self.arms.append(when_ns)

    def disarm(self) -> None:
        self.armed_at = None

    def acknowledge(self) -> None:
        self.acks += 1
        self.armed_at = None  # a one-shot timerfd is spent once it fired

    def close(self) -> None:
        self.closed = True
