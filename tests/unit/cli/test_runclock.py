"""RunClock: a run's summary times on the endpoint's clock (TIME read before the
experiment's first request and after it returns), over the scripted endpoint with its
clock 10 min ahead of ours."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import BASE_NS, Rig

from packetlab.cli.report_ping import PingReport
from packetlab.cli.run_command import Progress, begun
from packetlab.cli.runclock import END_READS, RunClock
from packetlab.controller import read_time
from packetlab.measure.records_ping import PingResult
from packetlab.wire import vmem

AHEAD_NS = 600 * 10**9  # the endpoint's clock minus ours


def _run(rig: Rig, clock: RunClock, experiment: Any) -> Any:
    return rig.run(Deferred.fromCoroutine(clock.around(experiment)(rig.session)))


def test_the_summary_is_on_the_endpoints_clock_around_its_stamps() -> None:
    rig = Rig(AHEAD_NS, start=1.0)
    clock = RunClock(now_ns=rig.session.clock_ns)  # (ours: BASE_NS + the task clock)
    stamps: list[int] = []

    async def experiment(session: Any) -> str:
        await session.mread(vmem.HOSTID.addr, vmem.HOSTID.size)
        for _ in range(3):
            stamps.append(await read_time(session))
        return "done"

    assert _run(rig, clock, experiment) == "done"
    # TIME is read before the experiment's first request (pipelined), and END_READS
    # times after it (one after another: tests/unit/cli/test_runclock_reads.py)
    reads = [m.addr for m in rig.endpoint.received if type(m).__name__ == "Mread"]
    assert reads == [vmem.TIME.addr, vmem.HOSTID.addr, *[vmem.TIME.addr] * (3 + END_READS)]
    rig.clock.advance(2.0)  # (names looked up, a warts file written: then the summary)
    f = clock.fields()
    assert f["clock"] == "endpoint"
    assert abs(f["clock_offset_us"] - AHEAD_NS / 1000) <= f["clock_error_us"]
    assert f["start_time"] * 1e9 <= min(stamps) <= max(stamps) <= f["stop_time"] * 1e9
    # the command began 1 s before the first read (ours), ended 2 s after the last
    assert f["start_time"] == pytest.approx((BASE_NS + AHEAD_NS) / 1e9 + 1.0, abs=0.01)
    assert f["stop_time"] == pytest.approx(max(stamps) / 1e9 + 2.0, abs=0.01)


def test_a_failed_experiment_keeps_the_offset_and_reads_no_more() -> None:
    rig = Rig(AHEAD_NS)
    clock = RunClock(now_ns=rig.session.clock_ns)

    async def experiment(session: Any) -> None:
        await read_time(session)
        raise RuntimeError("the endpoint said no")

    with pytest.raises(RuntimeError):
        _run(rig, clock, experiment)
    assert rig.endpoint.time_reads == 2 and clock.last is None
    f = clock.fields()
    assert f["clock"] == "endpoint" and f["start_time"] <= f["stop_time"]
    assert f["stop_time"] * 1e9 >= BASE_NS + AHEAD_NS


def test_an_experiment_that_closed_its_session_keeps_its_result() -> None:
    rig = Rig(AHEAD_NS)
    clock = RunClock(now_ns=rig.session.clock_ns)

    async def experiment(session: Any) -> str:
        await read_time(session)
        await session.close()
        return "done"

    assert _run(rig, clock, experiment) == "done"
    assert clock.last is None and clock.fields()["clock"] == "endpoint"


def test_without_an_answer_the_summary_stays_on_our_clock() -> None:
    ours = [BASE_NS]
    clock = RunClock(now_ns=lambda: ours[0])
    ours[0] += 5 * 10**9
    assert clock.fields() == {
        "start_time": BASE_NS / 1e9, "stop_time": BASE_NS / 1e9 + 5, "clock": "controller",
        "clock_offset_us": None, "clock_error_us": None,
    }  # fmt: skip


def test_a_ping_report_without_a_session_says_its_clock(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from twisted.internet.task import Clock

    p = PingReport(Clock(), True, "10.0.0.3", name=None, count=1, size=56)
    p.start("10.0.0.1")
    p.finish(PingResult("10.0.0.3", 1, (), "10.0.0.1"), interrupted=False)
    s = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (s["clock"], s["clock_offset_us"]) == ("controller", None)
    assert s["start_time"] <= s["stop_time"]


@pytest.mark.parametrize(
    ("sessions", "endpoint_clock", "reads"),
    [(False, True, 1 + END_READS), (True, True, 0), (False, False, 0)],
)
def test_run_commands_read_the_clock_of_one_endpoint(
    sessions: bool, endpoint_clock: bool, reads: int
) -> None:
    # several sessions (--endpoints N) or records on our clock (`run alias`): ours
    rig = Rig(AHEAD_NS)
    progress = Progress()

    async def experiment(session: Any) -> None:
        pass

    run = begun(experiment, progress, endpoint_clock)
    rig.run(Deferred.fromCoroutine(run([rig.session] if sessions else rig.session)))
    assert rig.endpoint.time_reads == reads


def test_ping_and_traceroute_read_the_clock_for_json_only() -> None:
    # the text has no start or stop time (iputils ping, Butskoy's traceroute): no reads
    from twisted.internet.task import Clock

    from packetlab.cli.run_measure import timed

    async def experiment(session: Any) -> None:
        pass

    for as_json in (False, True):
        report = PingReport(Clock(), as_json, "10.0.0.3", name=None, count=1, size=56)
        assert (timed(report, experiment) is experiment) is not as_json
