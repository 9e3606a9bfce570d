#!/usr/bin/env python3
"""Memory and CPU per send of the burst-rate window (`packetlab.endpoint.limits.BurstWindow`)
under the 10 Mb/s over 10 s default at 20k sends/s of 64 B, for one or more checkouts
(e.g. a `git worktree` of the commit before a change): each in a fresh process, the
window's memory after the sends (tracemalloc) and the best of `--runs` timings.

    .venv/bin/python stress/burst_window_cost.py . ../base
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import sys, time, tracemalloc
from packetlab.endpoint.limits import BurstWindow
from packetlab.ppks.limits import DEFAULT_SEND_BURST
sends, runs = int(sys.argv[1]), int(sys.argv[2])
def run(trace=False):
    w = BurstWindow(DEFAULT_SEND_BURST)
    t = 10**18
    t0 = time.perf_counter()
    for _ in range(sends):
        t += 50_000  # 20k sends/s
        if w.fits(t, 64):
            w.add(t, 64)
    return (time.perf_counter() - t0) / sends * 1e9, w
best = min(run()[0] for _ in range(runs))
tracemalloc.start()
_, w = run()
held = tracemalloc.get_traced_memory()[0]
print(f"{best:.0f} {held}")
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkouts", nargs="+", type=Path)
    ap.add_argument("--sends", type=int, default=400_000, help="sends per run [400000]")
    ap.add_argument("--runs", type=int, default=5, help="timed runs, best kept [5]")
    args = ap.parse_args()
    print(f"{'checkout':40s} {'ns/send':>8s} {'held':>10s}")
    for repo in args.checkouts:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(args.sends), str(args.runs)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": str(repo.resolve())},
            cwd=repo,
        )
        ns, held = out.stdout.split()
        print(f"{str(repo)[:40]:40s} {ns:>8s} {int(held) / 2**20:7.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
