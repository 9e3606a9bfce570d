"""A campaign's endpoints each on their own clock (session 36, clock36): each run's
`now_of(args)` and `progress.clock` (dig's WHEN, a TSIG signature, iperf3's token, curl's
--trace-time) are that endpoint's, and with --json the summary gives each run's times on
its endpoint's clock (`endpoint_clocks`); the campaign's own stay on ours. Before, every
run took ours. Two scripted endpoints, 10 min ahead of ours and 10 min behind."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred

sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ctl_fakes import BASE_NS
from test_cli_campaign import Two, parse

from packetlab.cli.campaign import campaign_command
from packetlab.cli.campaign_run import Tally, measure_on
from packetlab.cli.run_command import Progress
from packetlab.cli.runclock import now_of

SHIFT_NS = 600 * 10**9


def _run(
    as_json: bool, first: bool, read: bool = True
) -> tuple[dict[str, list[float]], Tally, Two]:
    """Both runs of a measurement that takes `now_of(args)` and `progress.clock.now()`
    at its start (if `first`: it needs them before any answer) and after a TIME read of
    its own; `read`: it prints such times (as dig's WHEN). Those times by endpoint, the
    tally and the endpoints."""
    two = Two(2)
    two.endpoints[0].offset_ns, two.endpoints[1].offset_ns = SHIFT_NS, -SHIFT_NS
    seen: dict[str, list[float]] = {"ep0": [], "ep1": []}

    def experiment(a: argparse.Namespace, emit: Any, progress: Progress) -> Any:
        async def run(session: Any) -> None:
            name = "ep0" if session is two.sessions[0] else "ep1"
            from packetlab.controller import read_time

            if first:
                seen[name] += [now_of(a), progress.clock.now()]
            await read_time(session)
            seen[name] += [now_of(a), progress.clock.now()]
            emit({"type": "seen"})

        return run

    cmd = parse("dns", "--endpoints", "2", "--listen", "1")._command
    cmd = dataclasses.replace(
        cmd, experiment=experiment, clock_first=lambda a: first, clock_read=lambda a: read
    )
    args = parse("dns", "--endpoints", "2", "--listen", "1", *(["--json"] if as_json else []))
    tally = Tally(asked=2)
    runs = [(n, args, s) for n, s in zip(("ep0", "ep1"), two.sessions, strict=True)]
    two.until(Deferred.fromCoroutine(
        measure_on(two.clock, cmd, runs, lambda r: None, Progress(), tally=tally)
    ))  # fmt: skip
    return seen, tally, two


def test_each_run_takes_its_endpoints_clock_from_its_start() -> None:
    # (a TSIG signature, iperf3's token, curl's `Trying` line: before any answer)
    seen, _, _ = _run(as_json=False, first=True)
    for name, shift in (("ep0", SHIFT_NS), ("ep1", -SHIFT_NS)):
        assert len(seen[name]) == 4
        for t in seen[name]:  # ours (the task clock) is within 0.1 s of BASE_NS
            assert abs(t * 1e9 - (BASE_NS + shift)) < 0.1e9, (name, t)


def test_with_json_the_summary_gives_each_endpoints_clock() -> None:
    seen, tally, _ = _run(as_json=True, first=False)
    assert abs(seen["ep0"][-1] - seen["ep1"][-1] - 1200) < 0.1  # (after an answer)
    clocks = tally.clocks
    assert sorted(clocks) == ["ep0", "ep1"]
    for name, shift in (("ep0", SHIFT_NS), ("ep1", -SHIFT_NS)):
        c = clocks[name]
        assert c["clock"] == "endpoint"
        assert abs(c["clock_offset_us"] * 1000 - shift) <= c["clock_error_us"] * 1000
        assert c["start_time"] <= c["stop_time"]
    cmd = campaign_command(parse("dns", "--endpoints", "2", "--listen", "1")._command, tally)
    summary = cmd.summary([{"type": "seen", "endpoint": "ep0"}])
    assert summary["endpoint_clocks"] == clocks


@pytest.mark.parametrize("read", [False, True])
def test_with_no_time_to_print_no_clock_is_read(read: bool) -> None:
    # nothing needs it: no read beside the measurement's own, all on our clock. `read`:
    # `pktlab run` prints such a time from an answer (dig's WHEN), the campaign's rows
    # (the plain table) do not
    seen, tally, two = _run(as_json=False, first=False, read=read)
    assert not tally.clocks and [e.time_reads for e in two.endpoints] == [1, 1]
    assert abs(seen["ep0"][-1] - seen["ep1"][-1]) < 0.1
