"""The error of a `pktlab run --json` summary's clock offset (`clock_error_us`, and
`|clock_offset_us|`: the endpoint runs on this host's clock, so that is the true error),
one git ref's against a baseline's, alternated run by run (session 36, clock36).

    .venv/bin/python benchmarks/bench_summary_offset.py [--baseline REF] [--ref REF] [--rounds N]

Each round runs `pktlab run dns @127.0.0.1 -p P a.test --json` (in-process endpoint,
tests/integration/dns_zone_server.py) with the baseline's `packetlab` and with the
ref's, each exported by `git archive` into a temporary directory (first on PYTHONPATH:
the same import path for both)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(pythonpath: Path, port: str) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    out = subprocess.run(
        [sys.executable, "-m", "packetlab", "run", "dns", "@127.0.0.1", "-p", port, "a.test",
         "--json"],
        capture_output=True, text=True, timeout=60, env=env, cwd=pythonpath, check=True,
    ).stdout  # fmt: skip
    s = json.loads(out.splitlines()[-1])
    return s["clock_error_us"], abs(s["clock_offset_us"])


def export(ref: str, where: Path) -> Path:
    """`packetlab` of `ref` in `where`."""
    where.mkdir()
    tar = subprocess.run(["git", "-C", str(REPO), "archive", ref, "packetlab"],
                         capture_output=True, check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(where)], input=tar, check=True)
    return where


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="HEAD~5", help="git ref of the baseline [HEAD~5]")
    ap.add_argument("--ref", default="HEAD", help="git ref measured against it [HEAD]")
    ap.add_argument("--rounds", type=int, default=10)
    opts = ap.parse_args()
    server = subprocess.Popen(
        [sys.executable, str(REPO / "tests/integration/dns_zone_server.py"), "127.0.0.1"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    got: dict[str, list[tuple[float, float]]] = {opts.baseline: [], opts.ref: []}
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory(prefix="bench_summary_offset.") as tmp:
            trees = {ref: export(ref, Path(tmp) / str(i)) for i, ref in enumerate(got)}
            for _ in range(opts.rounds):
                for ref, tree in trees.items():
                    got[ref].append(one(tree, port))
    finally:
        server.terminate()
        server.wait(10)
    print(f"load {os.getloadavg()[0]:.2f}, {opts.rounds} runs each")
    for name, runs in got.items():
        errs = sorted(e for e, _ in runs)
        offs = sorted(o for _, o in runs)
        print(f"{name}: clock_error_us median {statistics.median(errs):.1f} "
              f"({errs[0]:.1f}-{errs[-1]:.1f}); |clock_offset_us| median "
              f"{statistics.median(offs):.1f} (max {offs[-1]:.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
