"""send_train's adaptive lead: measured from pipelined mreads of TIME, long enough for the
whole train to be queued before its first packet, and `queued_ahead` saying whether it was
(over a fake endpoint that takes a fixed time per request, on a fake clock)."""

from __future__ import annotations

import gc
from typing import Any

from ctl_fakes import FakeEndpoint, Rig
from twisted.internet.task import Clock

from packetlab.controller import send_train, train
from packetlab.controller.train import (
    LEAD_BURST,
    LEAD_MIN_NS,
    LEAD_NSEND_COST,
    LEAD_PROBE_NS,
    LEAD_PROBES,
    LEAD_RTTS,
    LEARN_MIN_NS,
    LEARN_MIN_SENDS,
    LEARN_SPARE,
    LONG_LEAD_NS,
    MAX_PENDING,
    lead_note,
    measure_lead,
    queue_lead,
)
from packetlab.gcpolicy import TRAIN_GEN0
from packetlab.wire import Mread, Nsend, Status

COST_S = 0.0001  # the fake endpoint's time per request


class BusyEndpoint(FakeEndpoint):
    """Handles one request at a time, each taking COST_S (a loaded endpoint or link)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.free_at = 0.0

    def handle(self, msg: Any) -> None:
        self.free_at = max(self.free_at, self.clock.seconds()) + COST_S
        self.clock.callLater(self.free_at - self.clock.seconds(), super().handle, msg)


def busy_rig() -> Rig:
    return Rig(endpoint=BusyEndpoint)


RUN_US, STALL_US = 20_000, 30_000  # a CPU 40% of the time, in 20 ms slices
NSEND_X = 6  # an nsend costs 6 mreads (in-process endpoint over TLS, session 10)


class SlicedEndpoint(BusyEndpoint):
    """A loaded machine: the endpoint gets a CPU RUN_US of every RUN_US + STALL_US (its
    time slices, counted from the first mread), and an nsend costs NSEND_X mreads."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.epoch: int | None = None

    def handle(self, msg: Any) -> None:
        now = round(self.clock.seconds() * 1e6)
        if self.epoch is None and isinstance(msg, Mread):
            self.epoch = now
        if self.epoch is None:
            FakeEndpoint.handle(self, msg)
            return
        cost = round(COST_S * 1e6) * (NSEND_X if isinstance(msg, Nsend) else 1)
        t = max(round(self.free_at * 1e6), now)
        while cost > 0:  # spend the cost in the run windows only
            phase = (t - self.epoch) % (RUN_US + STALL_US)
            if phase >= RUN_US:
                t += RUN_US + STALL_US - phase
                continue
            used = min(cost, RUN_US - phase)
            t += used
            cost -= used
        self.free_at = t / 1e6
        self.clock.callLater(self.free_at - self.clock.seconds(), FakeEndpoint.handle, self, msg)


def test_the_lead_covers_the_time_to_queue_the_train() -> None:
    rig = busy_rig()
    rig.run(rig.session.ready)
    count = 500
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, count, 100_000), step=0.0001)
    reads = [m for m in rig.endpoint.received if isinstance(m, Mread)]
    # the TIME read and LEAD_RTTS more, then the probe: rounds of LEAD_PROBES
    assert (len(reads) - 1 - LEAD_RTTS) % LEAD_PROBES == 0
    # queuing 500 nsends takes 500 * COST_S = 50 ms here; the lead is several times that
    assert report.lead > LEAD_MIN_NS + count * 3 * COST_S * 1e9
    assert report.queued_ahead is not None and report.queued_ahead > 0
    assert report.sent_count == count


def test_a_fixed_lead_too_short_is_reported_as_queued_late() -> None:
    rig = busy_rig()
    rig.run(rig.session.ready)
    # 500 nsends take 50 ms to queue, the train 25 ms (50 µs gaps) from 5 ms on: the last
    # nsends are queued ~20 ms after their packets were due
    report = rig.run(
        send_train(rig.session, "127.0.0.1", 9000, 500, 50_000, lead=5_000_000), step=0.0001
    )
    assert report.lead == 5_000_000
    assert report.queued_ahead is not None and report.queued_ahead < -15_000_000


def test_measure_lead_grows_with_the_train_and_the_cost_per_request() -> None:
    quick = Rig()
    quick.run(quick.session.ready)
    idle = quick.run(measure_lead(quick.session, 1000), step=0.0001)
    assert LEAD_MIN_NS <= idle < LEAD_MIN_NS + 2_000_000  # nothing measurable: the floor
    rig = busy_rig()
    rig.run(rig.session.ready)
    short = rig.run(measure_lead(rig.session, 10), step=0.0001)
    long = rig.run(measure_lead(rig.session, 1000), step=0.0001)
    assert LEAD_MIN_NS < short < long
    assert long - short > 990 * 3 * COST_S * 1e9


def test_the_lead_covers_the_train_on_a_time_sliced_machine() -> None:
    """The flaky udp_train case (session 10): 32 mreads fit in one time slice and see the
    unloaded cost, the train's nsends take many slices at 40% of a CPU. The probe runs for
    LEAD_PROBE_NS in rounds and counts the slices lost in it."""
    rig = Rig(endpoint=SlicedEndpoint)
    rig.run(rig.session.ready)
    count = 500  # 500 * 6 * 0.1 ms = 300 ms of CPU: 750 ms at 40%
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, count, 100_000), step=0.0001)
    assert report.queued_ahead is not None and report.queued_ahead > 0, report.queued_ahead
    assert report.lead > 750_000_000
    assert report.sent_count == count
    reads = [m for m in rig.endpoint.received if isinstance(m, Mread)]
    assert len(reads) > 1 + LEAD_RTTS + LEAD_PROBES  # more than one round


def test_a_short_train_probes_one_round() -> None:
    """A train queued faster than the first round's time needs no more rounds."""
    rig = busy_rig()
    rig.run(rig.session.ready)
    rig.run(send_train(rig.session, "127.0.0.1", 9000, 2, 100_000), step=0.0001)
    reads = [m for m in rig.endpoint.received if isinstance(m, Mread)]
    assert len(reads) == 1 + LEAD_RTTS + LEAD_PROBES
    assert LEAD_PROBE_NS > 2 * LEAD_NSEND_COST * COST_S * 1e9  # (the window is the train's)


class SlowFirstRead(BusyEndpoint):
    """Its first mread (the train's TIME read) lost its CPU for 20 ms."""

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Mread) and not getattr(self, "stalled", False):
            self.stalled = True
            self.free_at = self.clock.seconds() + 0.020
        super().handle(msg)


def test_one_slow_round_trip_does_not_make_the_lead_the_floor() -> None:
    """The round trip subtracted from a round is the fastest of several: one that lost its
    CPU made every request free and the lead 20 ms + 2 round trips (session 10)."""
    rig = Rig(endpoint=SlowFirstRead)
    rig.run(rig.session.ready)
    count = 2000  # 200 ms to queue
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, count, 10_000), step=0.0001)
    assert report.queued_ahead is not None and report.queued_ahead > 0, report.queued_ahead
    assert report.lead > count * COST_S * 1e9


def test_a_train_longer_than_the_pending_cap_gets_the_lead_of_the_cap(monkeypatch: Any) -> None:
    """Only MAX_PENDING nsends can be queued before the first ntag: the lead of a longer
    train is the one of MAX_PENDING packets (a 100,000-packet train idled 33 s of 40 for a
    lead it could not use, session 18). The cap is made 64 here so that the fake is quick."""
    monkeypatch.setattr(train, "MAX_PENDING", 64)
    rig = busy_rig()
    rig.run(rig.session.ready)
    count = 500  # a lead for all 500 would be over 500 * 12 * COST_S = 600 ms
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, count, 100_000), step=0.0001)
    assert LEAD_MIN_NS < report.lead < LEAD_MIN_NS + 2 * 64 * LEAD_NSEND_COST * COST_S * 1e9
    assert report.sent_count == count


NSEND_NS = round(LEAD_NSEND_COST * COST_S * 1e9)  # the cost of an nsend to the lead: 1.2 ms


def test_a_train_with_gaps_longer_than_an_nsend_waits_only_the_floor() -> None:
    """Each nsend is queued before its own packet is due, not all before the first: with
    gaps longer than an nsend takes (spare included) the endpoint is fed as fast as the
    packets go out, and the lead is the floor and two bursts of nsends (128 x 1.2 ms),
    not 2,000 x 1.2 ms (session 19)."""
    rig = busy_rig()
    rig.run(rig.session.ready)
    count = 2000
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, count, 2_000_000), step=0.0002)
    bursts = 2 * LEAD_BURST * NSEND_NS
    assert abs(report.lead - (LEAD_MIN_NS + bursts)) < 3_000_000, report.lead
    # the last nsend was queued ~4 s after the first packet went out, yet in time
    assert report.queued_ahead is not None and report.queued_ahead > 0, report.queued_ahead
    assert report.sent_count == count


def test_the_lead_of_a_train_without_gaps_is_unchanged() -> None:
    """Gap 0: every nsend before the first packet, as before session 19; the gap takes
    off what the packets before each one spend going out."""
    rig = busy_rig()
    rig.run(rig.session.ready)
    floor = rig.run(measure_lead(rig.session, 1, gap=0), step=0.0001) - NSEND_NS
    tight = rig.run(measure_lead(rig.session, 1000, gap=0), step=0.0001)
    assert abs(tight - (floor + 1000 * NSEND_NS)) < 1_000_000, (tight, floor)
    # the last nsend is queued by 1000 x 1.2 ms, its packet due 999 ms after the first
    some = rig.run(measure_lead(rig.session, 1000, gap=1_000_000), step=0.0001)
    want = floor + 1000 * NSEND_NS - (1000 - 2 * LEAD_BURST) * 1_000_000
    assert abs(some - want) < 1_000_000, (some, want)
    # nsend k is queued by (k + 128) x 1.2 ms (two bursts), due k x 1.2 ms after the first
    loose = rig.run(measure_lead(rig.session, 1000, gap=NSEND_NS), step=0.0001)
    assert abs(loose - (floor + 2 * LEAD_BURST * NSEND_NS)) < 1_000_000, (loose, floor)


def test_queue_lead_bounds_each_packet_and_the_refill_after_the_pending_cap() -> None:
    c, b = 1000, 2 * LEAD_BURST  # nsend k is queued by min(k + b, n) * c
    assert queue_lead(1, 0, c) == queue_lead(1, 10 * c, c) == c
    assert queue_lead(500, 0, c) == 500 * c  # the lead before session 19
    assert queue_lead(500, 400, c) == 500 * c - (500 - b) * 400  # the last is the latest
    assert queue_lead(100, 900, c) == 100 * c  # within the first bursts: all by 100 * c
    assert queue_lead(500, c, c) == queue_lead(500, 10 * c, c) == b * c
    assert queue_lead(MAX_PENDING, 0, c) == queue_lead(10 * MAX_PENDING, 0, c) == MAX_PENDING * c
    # Past the cap the nsends wait for packet MAX_PENDING/2 to go out: the first
    # MAX_PENDING must be queued by then, or those wait behind them (gap < c: late anyway)
    assert queue_lead(MAX_PENDING + 1, 400, c) == MAX_PENDING * c - MAX_PENDING // 2 * 400
    assert queue_lead(MAX_PENDING + 1, 400, c) > queue_lead(MAX_PENDING, 400, c)
    assert queue_lead(10 * MAX_PENDING, c, c) == b * c  # the endpoint keeps pace


def test_on_lead_hears_the_lead_before_the_first_nsend() -> None:
    rig = busy_rig()
    rig.run(rig.session.ready)
    heard: list[tuple[int, int]] = []

    def on_lead(lead: int) -> None:
        heard.append((lead, sum(isinstance(m, Nsend) for m in rig.endpoint.received)))

    report = rig.run(
        send_train(rig.session, "127.0.0.1", 9000, 100, 0, on_lead=on_lead), step=0.0001
    )
    assert heard == [(report.lead, 0)]


def test_a_long_lead_gets_a_line_for_the_user() -> None:
    assert lead_note(LONG_LEAD_NS, 10) is None
    assert lead_note(7_300_000_000, 100_000) == (
        f"queueing {MAX_PENDING} nsends at the endpoint: first packet in 7.3 s"
    )
    assert lead_note(1_500_000_000, 2000) == (
        "queueing 2000 nsends at the endpoint: first packet in 1.5 s"
    )


def test_a_train_runs_with_fewer_collections_and_restores_them() -> None:
    """Collections traversing the pending packets were ~40 % of a long train's CPU
    (docs/performance.md, Session 19: start-up): the gen-0 threshold is raised while the
    train is queued and pending, and put back after."""
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    seen: list[int] = []

    def payload(i: int) -> bytes:
        seen.append(gc.get_threshold()[0])
        return i.to_bytes(8, "big")

    try:
        rig = Rig()
        rig.run(rig.session.ready)
        report = rig.run(send_train(rig.session, "127.0.0.1", 9000, 10, 100_000, payload=payload))
        assert report.sent_count == 10
        assert seen == [TRAIN_GEN0] * 10
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*saved)


def test_a_train_reports_what_its_nsends_took_to_queue() -> None:
    """`queue_cost`: from the first nsend to the answer of the last one queued before any
    flow control, per nsend. The fake endpoint takes COST_S per request, one at a time."""
    rig = busy_rig()
    rig.run(rig.session.ready)
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, 300, 0), step=0.0001)
    assert report.queue_cost is not None
    assert abs(report.queue_cost - COST_S * 1e9) < 0.05 * COST_S * 1e9, report.queue_cost
    # too short to teach the next lead (a burst fits in a time slice)
    assert train._learned.get(rig.session) is None


def test_the_next_lead_takes_at_most_twice_what_the_nsends_really_cost() -> None:
    """The probe puts an nsend at LEAD_NSEND_COST (12) requests; here it costs one. After
    a train long enough to tell (LEARN_MIN_SENDS nsends, LEARN_MIN_NS of queueing), the
    session's next lead counts LEARN_SPARE x what they took: the 100,000 x 1 us train
    waited 4.3 s, then 2.5 s (pktlab run sendgap --trains 3, session 20)."""
    rig = busy_rig()
    rig.run(rig.session.ready)
    count = LEARN_MIN_SENDS  # ~100 ms of queueing here
    first = rig.run(send_train(rig.session, "127.0.0.1", 9000, count, 0), step=0.0002)
    assert first.queue_cost is not None
    assert first.queue_cost * count >= LEARN_MIN_NS
    assert train._learned[rig.session] == first.queue_cost
    second = rig.run(send_train(rig.session, "127.0.0.1", 9000, count, 0), step=0.0002)
    # c: 12 x 0.1 ms from the probe before, 2 x ~0.1 ms now
    assert first.lead > LEAD_MIN_NS + count * 10 * COST_S * 1e9
    assert LEAD_MIN_NS + count * 1.5 * COST_S * 1e9 < second.lead
    assert second.lead < LEAD_MIN_NS + count * (LEARN_SPARE + 0.5) * COST_S * 1e9
    assert second.queued_ahead is not None and second.queued_ahead > 0, second.queued_ahead
    assert second.sent_count == count
    # another session learned nothing
    other = busy_rig()
    other.run(other.session.ready)
    assert other.run(measure_lead(other.session, count), step=0.0002) > first.lead * 0.9


class CostlyNsends(BusyEndpoint):
    """An nsend costs 30 mreads: more than the probe's 12 can see."""

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Nsend):
            self.free_at = max(self.free_at, self.clock.seconds()) + 29 * COST_S
        super().handle(msg)


def test_a_lead_is_never_below_what_the_nsends_really_cost() -> None:
    """Where the probe's estimate falls short of what the last train's nsends took (it was
    queued late), the next lead counts at least that: on time."""
    rig = Rig(endpoint=CostlyNsends)
    rig.run(rig.session.ready)
    count = LEARN_MIN_SENDS
    first = rig.run(send_train(rig.session, "127.0.0.1", 9000, count, 0), step=0.001)
    assert first.queued_ahead is not None and first.queued_ahead < 0  # 30 > 12
    second = rig.run(send_train(rig.session, "127.0.0.1", 9000, count, 0), step=0.001)
    assert second.queued_ahead is not None and second.queued_ahead > 0, second.queued_ahead


class RefusesEveryOtherNsend(BusyEndpoint):
    """Refusals are answered at once: a train with some teaches nothing."""

    def nsend(self, msg: Any) -> None:
        self.refusals = getattr(self, "refusals", 0) + 1
        if self.refusals % 2:
            self.result(Status.ESKTPKTDENY)
        else:
            super().nsend(msg)


def test_a_train_with_refused_nsends_teaches_no_lead() -> None:
    rig = Rig(endpoint=RefusesEveryOtherNsend)
    rig.run(rig.session.ready)
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, LEARN_MIN_SENDS, 0), step=0.0002)
    assert report.errors.count("ESKTPKTDENY") == LEARN_MIN_SENDS // 2
    assert report.queue_cost is not None and report.queue_cost * LEARN_MIN_SENDS >= LEARN_MIN_NS
    assert train._learned.get(rig.session) is None
