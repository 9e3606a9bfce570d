"""RunClock's summary offset: from the TIME read with the smallest round trip, the first
(made while the session and the experiment start) or one of the reads made one after
another once the experiment is done (session 36, clock36: it was the first read's alone,
±0.3-3.9 ms). Over a session whose reads the test answers, each after a round trip it
chooses, on an endpoint clock 10 min ahead of ours."""

from __future__ import annotations

import struct

from twisted.internet.defer import Deferred

from packetlab.cli.runclock import END_BUDGET_NS, END_READS, RunClock
from packetlab.controller import ControllerError
from packetlab.wire import vmem

BASE_NS = 1_796_000_000 * 10**9
AHEAD_NS = 600 * 10**9  # the endpoint's clock minus ours
MS = 10**6


class Reads:
    """A session whose TIME reads wait until `answer`: our clock (`now_ns`) moves on by
    `there` before the endpoint reads its clock and by `back` before the answer is in."""

    def __init__(self) -> None:
        self.ours = BASE_NS
        self.pending: list[Deferred[bytes]] = []
        self.most_pending = 0  # the most reads waiting at once

    def now_ns(self) -> int:
        return self.ours

    def mread(self, addr: int, n: int) -> Deferred[bytes]:
        assert addr == vmem.TIME.addr
        d: Deferred[bytes] = Deferred()
        self.pending.append(d)
        self.most_pending = max(self.most_pending, len(self.pending))
        return d

    def answer(self, there: int, back: int) -> int:
        """Answer the oldest read; the endpoint's time in it."""
        self.ours += there
        te = self.ours + AHEAD_NS
        self.ours += back
        self.pending.pop(0).callback(struct.pack(">Q", te))
        return te

    def fail(self) -> None:
        self.pending.pop(0).errback(ControllerError("session closed"))


def run(reads: Reads, clock: RunClock, trips: list[tuple[int, int]]) -> list[int]:
    """The experiment (nothing) around the reads, each answered after its trip in turn;
    the endpoint's times answered."""
    done = Deferred.fromCoroutine(clock.around(lambda _: _nothing(), first=True)(reads))
    tes = []
    for there, back in trips:
        assert reads.pending, "fewer reads than trips"
        tes.append(reads.answer(there, back))
    assert done.called and not reads.pending
    return tes


async def _nothing() -> None:
    pass


def test_the_summary_takes_the_read_with_the_smallest_round_trip() -> None:
    # the first read's answer waited 4 ms here (the experiment starting on our side):
    # alone, it put the offset 2 ms off, ±2 ms (before: clock_error_us 2000.0)
    reads = Reads()
    clock = RunClock(now_ns=reads.now_ns)
    trips = [(50_000, 4 * MS), (60_000, 60_000), (40_000, 40_000), (70_000, 50_000),
             (45_000, 45_000)]  # fmt: skip
    tes = run(reads, clock, trips[: 1 + END_READS])
    f = clock.fields()
    assert f["clock"] == "endpoint"
    assert f["clock_error_us"] == 40.0  # half the smallest round trip, the third read
    assert f["clock_offset_us"] == AHEAD_NS / 1000
    assert clock.offset_ns == AHEAD_NS  # `now` from it too, once the run is done
    # still around every read (and so every stamp between the first and the last)
    assert f["start_time"] * 1e9 <= tes[0] and f["stop_time"] * 1e9 >= tes[-1]


def test_the_reads_at_the_end_go_one_after_another() -> None:
    # pipelined, each would wait behind the one before it: no smaller round trip
    reads = Reads()
    clock = RunClock(now_ns=reads.now_ns)
    run(reads, clock, [(50_000, 50_000)] * (1 + END_READS))
    assert reads.most_pending == 1 and len(clock.ends) == END_READS


def test_a_slow_link_makes_fewer_reads_at_the_end() -> None:
    # 15 ms a round trip: two at the end (30 ms) pass END_BUDGET_NS (20 ms)
    assert END_BUDGET_NS == 20 * MS
    reads = Reads()
    clock = RunClock(now_ns=reads.now_ns)
    run(reads, clock, [(8 * MS, 7 * MS)] * 3)
    assert len(clock.ends) == 2 and clock.fields()["clock_error_us"] == 7500.0


def test_a_failed_read_at_the_end_keeps_the_reads_before_it() -> None:
    reads = Reads()
    clock = RunClock(now_ns=reads.now_ns)
    done = Deferred.fromCoroutine(clock.around(lambda _: _nothing(), first=True)(reads))
    reads.answer(2 * MS, 2 * MS)
    te = reads.answer(30_000, 30_000)
    reads.fail()  # (the session closed)
    assert done.called and not reads.pending
    f = clock.fields()
    assert f["clock_error_us"] == 30.0 and clock.last == te
    assert f["stop_time"] * 1e9 >= te
