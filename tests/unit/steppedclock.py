"""A reactor whose wall clock a test steps: Twisted's own timer heap (a ReactorBase that
never runs, no waker) on a wall clock and a monotonic clock the test steps apart
(test_clockstep, test_steady36)."""

from __future__ import annotations

from twisted.internet.base import ReactorBase

from packetlab.clockstep import install

T0 = 1_800_000_000.0


class Clocks:
    """A wall clock and a monotonic one: `advance` moves both, `step` the wall one."""

    def __init__(self) -> None:
        self.wall, self.mono = T0, 50.0

    def advance(self, s: float) -> None:
        self.wall += s
        self.mono += s

    def step(self, s: float) -> None:
        self.wall += s


class FakeReactor(ReactorBase):
    """Twisted's scheduling (callLater, runUntilCurrent, timeout) on `clocks.wall`."""

    def __init__(self, clocks: Clocks) -> None:
        self.clocks = clocks
        super().__init__()

    def installWaker(self) -> None:
        pass

    def seconds(self) -> float:
        return self.clocks.wall

    def turn(self, s: float) -> None:
        """`s` seconds of real time, then one reactor turn."""
        self.clocks.advance(s)
        self.runUntilCurrent()


def stepped_world() -> tuple[Clocks, FakeReactor]:
    """A FakeReactor with `clockstep.install`ed on it."""
    clocks = Clocks()
    reactor = FakeReactor(clocks)
    install(reactor, monotonic=lambda: clocks.mono)
    return clocks, reactor
