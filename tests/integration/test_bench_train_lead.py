"""benchmarks/bench_train_lead.py runs (root: the in-process endpoint's raw sockets) and
prints, per train, the lead and what the first nsends took (docs/performance.md,
Session 20)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]


def test_bench_train_lead_reports_each_trains_lead_and_queueing(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the in-process endpoint's raw sockets")
    env = dict(os.environ, PKTLAB_HOME=str(tmp_path / "home"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_train_lead", "--count", "300",
         "--gap-us", "100", "--trains", "2"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = re.findall(
        r"^train (\d): 300/300 sent, lead \d+ ms, first 300 nsends queued in \d+ ms "
        r"\([\d.]+ us each, CPU [\d.]+ us each\); train [\d.]+ s wall, [\d.]+ s CPU$",
        done.stdout,
        re.M,
    )
    assert rows == ["1", "2"], done.stdout
