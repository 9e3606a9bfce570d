"""`pktlab run sendgap` and a Ctrl-C during a train (session 31, gate31): the train in
flight was cut at the end of the run's grace and dropped, so the run said `# 0 trains, 0
of 0 sent (interrupted)` though datagrams had gone out. Now the train stops at the
Ctrl-C and is reported as partial, with what went out and its times; and if it is still
not over when the grace ends, its cancel answers with that partial report at once."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

from ctl_fakes import Rig, SchedulingEndpoint
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from packetlab.cli.run import build_parser
from packetlab.cli.run_command import GRACE_S, Progress, begun, measure
from packetlab.controller.stop import StopSignal
from packetlab.wire import Nclose


class _SilentCloseEndpoint(SchedulingEndpoint):
    """Drops the sends queued on a socket it is asked to close but never answers the
    nclose (its answer lost): a stopped train cannot end by itself within the grace."""

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Nclose):
            for call in self.queued.pop(msg.sktid, []):
                if call.active():
                    call.cancel()
            return
        super().handle(msg)


def _interrupted(endpoint: type[SchedulingEndpoint], *argv: str) -> tuple[list[Any], int, float]:
    """`pktlab run sendgap --json ARGV` (2 trains of 100 x 10 ms, lead 100 ms) over the
    scripted endpoint, Ctrl-C 0.405 s into the first train: (records, exit status, the
    seconds from the Ctrl-C to the end)."""
    rig = Rig(endpoint=endpoint)
    args = build_parser().parse_args(
        ["sendgap", "--json", "--count", "100", "--gap-us", "10000", "--lead-ms", "100",
         "--trains", "2", *argv]
    )  # fmt: skip

    async def link(reactor: object, args: argparse.Namespace, emit: Any, p: Progress) -> None:
        await begun(args._command.experiment(args, emit, p), p)(rig.session)

    out, stop = io.StringIO(), StopSignal()
    d: Deferred[int] = Deferred.fromCoroutine(measure(rig.clock, args, stop, out, run=link))
    ep = rig.endpoint
    assert isinstance(ep, SchedulingEndpoint)
    clock: Clock = rig.clock
    while len(ep.sent) < 30:  # the train under way
        rig.pump.flush()
        clock.advance(0.001)
    stopped_at = clock.seconds()
    stop.request("interrupted")
    code = rig.run(d, limit=stopped_at + 30)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    return records, code, clock.seconds() - stopped_at


def test_a_ctrl_c_mid_train_reports_the_part_sent() -> None:
    records, code, took = _interrupted(SchedulingEndpoint)
    assert [r["type"] for r in records] == ["sendgap", "summary"], records
    train, summary = records
    assert train["partial"] is True and 30 <= train["sent"] < 100 and train["count"] == 100
    assert train["abs_offset_us"]["max"] == 0.0  # the part sent, with its times
    assert train["errors"] == ["stopped"]
    assert summary["stop_reason"] == "INTERRUPTED"
    assert (summary["trains"], summary["sent"]) == (1, train["sent"])
    assert took < GRACE_S  # it stopped at the Ctrl-C: the rest not awaited
    assert code == 1  # some not sent (run_reactor makes it 130: the stop's reason)


def test_a_train_still_stopping_when_the_grace_ends_is_reported_partial() -> None:
    records, _code, took = _interrupted(_SilentCloseEndpoint)
    assert [r["type"] for r in records] == ["sendgap", "summary"], records
    train, summary = records
    assert train["partial"] is True and 30 <= train["sent"] < 100
    assert (summary["trains"], summary["sent"]) == (1, train["sent"])
    assert GRACE_S - 0.01 <= took <= GRACE_S + 0.1  # cut at the grace, not waited for


def test_the_text_row_of_a_partial_train_says_so() -> None:
    from packetlab.cli.run_sendgap import row

    r = {"type": "sendgap", "train": 0, "count": 100, "sent": 31, "gap_us": 10000.0,
         "lead_ms": 100.0, "abs_offset_us": {}, "abs_gap_error_us": {},
         "partial": True}  # fmt: skip
    line = row(r)
    assert line is not None and line.startswith("train 0: 31/100 sent (partial: stopped), ")
