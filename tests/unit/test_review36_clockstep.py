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
