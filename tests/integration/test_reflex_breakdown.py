"""`bench_reflex --breakdown` (the endpoint under benchmarks/bench_reflex_probe.py) keeps
finding every step of a reflex's reaction: the probes wrap endpoint methods by name, so
a renamed or reshaped step must fail here, not silently drop out of the benchmark. The
figures themselves are the benchmark's (docs/reflexes.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.reflex_world import run_benchmark
from packetlab.monitor.build import find_clang

pytestmark = pytest.mark.skipif(find_clang() is None, reason="clang/lld not installed")

ORDER = ("wake", "doread", "recv", "gate", "wasm_in", "wasm_out", "nsend", "submit",
         "sendmsg_in", "sendmsg_out", "done")  # fmt: skip


def test_breakdown_times_every_step_in_order(tmp_path: Path) -> None:
    args = ["--packets", "8", "--rounds", "1", "--delay-ms", "1", "--gap-ms", "1",
            "--breakdown", "--busy-poll-us", "2000"]  # fmt: skip
    res = run_benchmark("bench_reflex", args, tmp_path / "r.json", 300)
    steps = res["breakdown"]
    assert set(ORDER) | {"sent", "idle", "tx"} <= set(steps)
    assert all(steps[s]["n"] == 8 for s in ORDER)  # every reflex probe, no controller one
    p50 = [steps[s]["p50"] for s in ORDER]
    assert p50 == sorted(p50), dict(zip(ORDER, p50, strict=True))
    assert steps["sent"]["p50"] < 0 < steps["tx"]["p50"]  # sent before, replied after RX
    assert res["reflex_reaction_us"]["n"] == 8
    assert 0 < res["endpoint_cpu"] < 2
