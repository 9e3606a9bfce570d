"""`bench_endpoint`'s vCPU calibration line: a run whose vCPU changed speed between rounds
says so (docs/performance.md, session 30)."""

from __future__ import annotations

from benchmarks.bench_endpoint import VCPU_MOVED, vcpu_line
from benchmarks.common import vcpu_ns


def test_a_steady_vcpu_is_listed_without_a_warning() -> None:
    line = vcpu_line([95.4, 99.0, 103.2])
    assert line.endswith(": 95, 99, 103")
    assert "moved" not in line


def test_a_vcpu_that_changed_speed_is_flagged() -> None:
    line = vcpu_line([95.0, 99.0, 150.0, 154.0])
    assert "moved 1.62x during the run" in line
    assert "compare rounds of the same speed" in line
    assert 154.0 / 95.0 >= VCPU_MOVED


def test_the_calibration_is_a_positive_time_per_iteration() -> None:
    assert 0 < vcpu_ns(iterations=2000, repeats=1) < 1e6
