"""send_train's adaptive lead: measured from pipelined mreads of TIME, long enough for the
whole train to be queued before its first packet, and `queued_ahead` saying whether it was
(over a fake endpoint that takes a fixed time per request, on a fake clock)."""

from __future__ import annotations

from typing import Any

from ctl_fakes import FakeEndpoint, Rig
from twisted.internet.task import Clock

from packetlab.controller import send_train
from packetlab.controller.train import LEAD_MIN_NS, LEAD_PROBES, measure_lead
from packetlab.wire import Mread

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


def test_the_lead_covers_the_time_to_queue_the_train() -> None:
    rig = busy_rig()
    rig.run(rig.session.ready)
    count = 500
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, count, 100_000), step=0.0001)
    reads = [m for m in rig.endpoint.received if isinstance(m, Mread)]
    assert len(reads) == 1 + LEAD_PROBES  # the TIME read, then the probe
    # queuing 500 nsends takes 500 * COST_S = 50 ms here; the lead is several times that
    assert report.lead > LEAD_MIN_NS + count * 3 * COST_S * 1e9
    assert report.queued_ahead is not None and report.queued_ahead > 0
    assert report.sent_count == count


def test_a_fixed_lead_too_short_is_reported_as_queued_late() -> None:
    rig = busy_rig()
    rig.run(rig.session.ready)
    report = rig.run(
        send_train(rig.session, "127.0.0.1", 9000, 500, 100_000, lead=5_000_000), step=0.0001
    )
    assert report.lead == 5_000_000
    assert report.queued_ahead is not None and report.queued_ahead < -40_000_000


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
