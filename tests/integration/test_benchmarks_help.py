"""Every benchmark program, and the helper programs the benchmarks start, answers `--help`
with its usage and status 0, not a traceback (session 23: `bench_monitor_compile`,
`delay_relay` and `null_endpoint` read `sys.argv` by position and raised ValueError on
it). The benchmarks' runs themselves are long and by hand (docs/performance.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = sorted(
    p.stem for p in (REPO / "benchmarks").glob("*.py") if '__name__ == "__main__"' in p.read_text()
)


def test_there_are_programs() -> None:
    assert {"bench_endpoint", "null_endpoint", "delay_relay", "bench_raw_close"} <= set(PROGRAMS)


@pytest.mark.parametrize("name", PROGRAMS)
def test_help(name: str) -> None:
    got = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"], capture_output=True,
        text=True, timeout=120, cwd=REPO, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr[-2000:]
    assert "Traceback" not in got.stderr and got.stdout.strip(), got
    # Its usage, not a run: bench_monitor_hostile ignored --help and ran the whole
    # benchmark (49 s and 1 GiB; at load 15 past this test's 120 s, session 33's CI).
    doc = ast.get_docstring(ast.parse((REPO / "benchmarks" / f"{name}.py").read_text())) or ""
    assert "usage" in got.stdout.lower() or doc.splitlines()[0] in got.stdout, got.stdout[:2000]
