"""`benchmarks/bench_send_precision.py --contend`: the busy loops it starts spin during the
trains and are gone after them, and the endpoint rows carry the scheduler counters. Times
are not asserted (a shared machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_send_precision import Contention, _cpu_ticks

REPO = Path(__file__).resolve().parents[2]


def test_contention_spins_its_loops_and_kills_them_by_pid() -> None:
    with Contention(2) as contention:
        procs = list(contention.procs)
        assert len(procs) == 2
        for proc in procs:
            assert proc.poll() is None and _cpu_ticks(proc.pid) > 0
    assert all(proc.poll() is not None for proc in procs)


@pytest.mark.slow
def test_bench_send_precision_contend_levels_and_endpoint_counters(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "benchmarks.bench_send_precision", "--modes", "endpoint",
            "--packets", "50", "--gaps", "1000", "--repeats", "1", "--contend", "0,1",
            "--no-extra", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "| busy loops |" in proc.stdout
    trains = json.loads(out.read_text())["trains"]
    assert sorted(t["contend"] for t in trains) == [0, 1]
    for train in trains:
        assert train["received"] == 50
        (extra,) = train["extras"]
        assert {"voluntary", "nonvoluntary", "run_ns", "wait_ns", "wall_ns"} <= set(extra)
        assert extra["run_ns"] > 0 and extra["wall_ns"] > 0


def test_bad_contend_is_refused() -> None:
    argv = [sys.executable, "-m", "benchmarks.bench_send_precision", "--contend", "2,x"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--contend takes counts" in proc.stderr
