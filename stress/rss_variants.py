#!/usr/bin/env python3
"""Idle RSS of the endpoint over TLS under start-up variants, in one run with the bare
reactor (the base of issue 14's memory goal), so that each change is measured on its own.

Each variant starts `benchmarks.bench_endpoint.Endpoint` (a real `twistd pktendpoint`
over TLS, after `start`) through a launcher that, 0.3 s after the reactor runs, applies
the variant's steps: ``collect`` (gc.collect), ``freeze`` (gc.freeze), ``trim`` (glibc
malloc_trim(0)). The empty variant is the code as it is. Variants are interleaved per
round; medians are printed.

    .venv/bin/python stress/rss_variants.py --rounds 3 '' collect collect,freeze collect,trim
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import benchmarks.bench_endpoint as bench  # noqa: E402

LAUNCHER = r"""
import ctypes, gc, os, sys
from twisted.internet import reactor
steps = os.environ.get("PKTLAB_RSS_VARIANT", "").split(",")
def apply():
    if "collect" in steps: gc.collect()
    if "freeze" in steps: gc.freeze()
    if "trim" in steps: ctypes.CDLL(None).malloc_trim(0)
reactor.callWhenRunning(lambda: reactor.callLater(0.3, apply))
from twisted.scripts.twistd import run
sys.argv = ["twistd", *sys.argv[1:]]
run()
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="+", help="comma-separated steps ('' for none)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=1.5, help="seconds idle before RSS [1.5]")
    args = ap.parse_args()
    real_popen = subprocess.Popen

    def popen(argv: list[str], **kw: Any) -> Any:  # twistd -> our launcher, same arguments
        if argv[0].endswith("/twistd"):
            argv = [sys.executable, "-c", LAUNCHER, *argv[1:]]
        return real_popen(argv, **kw)

    bench.subprocess.Popen = popen  # type: ignore[assignment,misc]
    rss: dict[str, list[float]] = {v: [] for v in args.variants}
    bare: list[float] = []
    for _ in range(args.rounds):
        for v in args.variants:
            os.environ["PKTLAB_RSS_VARIANT"] = v
            with tempfile.TemporaryDirectory() as tmp:
                ep = bench.Endpoint(Path(tmp), tls=True)
                time.sleep(args.settle)
                rss[v].append(ep.rss_kib() / 1024)
                ep.stop()
        bare.append(bench.bare_reactor_rss_kib() / 1024)
    base = statistics.median(bare)
    print(f"{'bare reactor + TLS':24s} {base:6.1f} MiB  {[round(x, 1) for x in bare]}")
    for v, xs in rss.items():
        m = statistics.median(xs)
        each = [round(x, 1) for x in xs]
        print(f"{v or '(as is)':24s} {m:6.1f} MiB  +{m - base:4.1f} over bare  {each}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
