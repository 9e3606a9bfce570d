#!/usr/bin/env python3
"""What importing some modules would cost the idle endpoint, in fresh processes.

Each process loads what `twistd pktendpoint` loads before its own imports (the bare
reactor with TLS, twistd, its plugin scan and `heaptrim.drop_scan_leftovers`), then the
`--pre` modules (the rest of what the endpoint holds), collects and trims the heap, and
prints VmRSS before and after importing the candidate modules (collected and trimmed
again). A candidate's cost is the median difference: what making it lazy could save.
Small modules often cost 0 here (they fit in memory freed earlier), so sum candidates
rather than trusting one small step.

    .venv/bin/python stress/import_cost.py --pre twisted.application.internet,\
packetlab.endpoint.session,packetlab.tls,packetlab.endpoint.config twisted.internet.endpoints
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import ctypes, gc, importlib, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
def settle():
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
from twisted.internet import reactor
import twisted.protocols.tls, OpenSSL.SSL
from twisted.internet import ssl
from twisted.scripts import twistd
from twisted import plugin
from twisted.application.service import IServiceMaker
list(plugin.getPlugins(IServiceMaker))
from packetlab.heaptrim import drop_scan_leftovers
drop_scan_leftovers()
for name in filter(None, sys.argv[1].split(",")):
    importlib.import_module(name)
settle()
before = rss()
for name in filter(None, sys.argv[2].split(",")):
    importlib.import_module(name)
settle()
print(before, rss() - before)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("candidates", nargs="+", help="comma-separated modules, one cost each")
    ap.add_argument("--pre", default="", help="comma-separated modules loaded first")
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per candidate [5]")
    args = ap.parse_args()
    for cand in args.candidates:
        costs = []
        for _ in range(args.runs):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, args.pre, cand],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            ).stdout.split()
            costs.append(int(out[1]))
        print(f"{cand}: +{statistics.median(costs)} KiB (each run: {costs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
