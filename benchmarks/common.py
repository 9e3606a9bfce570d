"""Shared benchmark helpers: robust statistics, environment facts, markdown and JSON output.

These machines stall for 0.5-3 ms now and then, so benchmarks report medians and
percentiles, never means or maxima, as their headline numbers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "environment",
    "fmt",
    "iperf3_server",
    "markdown_table",
    "median",
    "percentile",
    "summarize",
    "write_json",
]


def help_requested(argv: Sequence[str], doc: str | None) -> bool:
    """For the benchmarks' helper programs that read `sys.argv` by position: `-h` or
    `--help` prints the module's docstring (its usage) and says so; the caller exits 0."""
    if not any(a in ("-h", "--help") for a in argv):
        return False
    print((doc or "").strip())
    return True


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks.

    Raises ValueError on an empty input or a q outside 0..100.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in 0..100, got {q}")
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Iterable[float]) -> float:
    return percentile(values, 50)


def summarize(values: Sequence[float], qs: Sequence[float] = (10, 50, 90, 99)) -> dict[str, float]:
    """``{"n", "p10", "p50", ...}`` for a sample (empty sample: only ``n``)."""
    out: dict[str, float] = {"n": len(values)}
    if values:
        ordered = sorted(values)
        for q in qs:
            out[f"p{q:g}"] = percentile(ordered, q)
    return out


def fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    """A number divided by ``scale`` with fixed digits; "-" for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value / scale:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub/MyST markdown table; cells are str()-ed."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [str(c) for c in row]
        if len(cells) != len(headers):
            raise ValueError(f"row has {len(cells)} cells, table has {len(headers)} columns")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def vcpu_ns(iterations: int = 100_000, repeats: int = 3) -> float:
    """CPU time of one iteration of a fixed pure-Python loop (dict stores, integer
    arithmetic), best of `repeats`: how fast this vCPU runs Python right now. This VM's
    vCPUs change speed by up to 1.5x over minutes with nothing else running in it (the
    host's doing; no steal time is reported), and every endpoint figure moves with them,
    so a round's figures are read beside its calibration (docs/performance.md,
    session 30)."""
    best = math.inf
    for _ in range(repeats):
        table: dict[int, int] = {}
        start = time.thread_time()
        for i in range(iterations):
            table[i & 1023] = (i * 7) ^ (i >> 3)
        best = min(best, time.thread_time() - start)
    return best / iterations * 1e9


def environment() -> dict[str, Any]:
    """Facts a reader needs to compare runs: host, kernel, Python, CPUs, git commit, time."""
    commit = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "commit": commit,
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON (parent directories created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def iperf3_server() -> Iterator[int]:
    """A native `iperf3 -s` on a free loopback port for the block: its port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(0.5)
    try:
        yield port
    finally:
        server.terminate()
        server.wait(5)
