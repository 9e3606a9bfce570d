#!/usr/bin/env python3
"""Where the endpoint's idle RSS goes, import by import, in fresh processes.

Each step imports the next group of modules (in the order `twistd pktendpoint` loads
them) and prints VmRSS after it and the difference; the first steps are the bare reactor
with TLS that `benchmarks/bench_endpoint.py --only rss` measures as the base. Steps of
a few hundred KiB are within the allocator's granularity: compare medians of --runs.
construct is not among them: the endpoint loads the wire codec's derived code kept on
disk (`packetlab.wire.codegen`); the first run after a change derives it (with construct).
The tap step includes `heaptrim.drop_scan_leftovers` (unittest, trial, argparse, pdb, ...); under
twistd the tap is imported right after the scan, before the rest, which then reuse the
memory it frees: here the rest is already loaded, so the steps only approximate that.
Nor does what the tap leaves unloaded until first use (`lazyimports.DAEMON`: Twisted's
TLS transport, ~1 MiB) show here: the first step imports it. Under twistd the tap comes
before the reactor; `benchmarks/bench_endpoint.py --only rss` starts the real `twistd`.

    .venv/bin/python stress/import_rss.py --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

STEPS = [
    (
        "bare reactor + TLS (the base)",
        "twisted.internet.reactor,twisted.protocols.tls,OpenSSL.SSL,twisted.internet.ssl",
    ),
    ("twistd", "twisted.scripts.twistd"),
    ("twistd's plugin scan (IServiceMaker)", "PLUGINS"),
    (
        "ClientService, endpoints (automat)",
        "twisted.internet.endpoints,twisted.application.internet",
    ),
    ("packetlab.wire (messages, the derived codec kept on disk)", "packetlab.wire"),
    ("endpoint session (sans-IO)", "packetlab.endpoint.session"),
    ("packetlab.ppks", "packetlab.ppks"),
    ("packetlab.tls", "packetlab.tls"),
    (
        "endpoint tap (drops the scan's leftovers), service",
        "packetlab.endpoint.tap,packetlab.endpoint.service",
    ),
    ("endpoint monitors, reflexes", "packetlab.endpoint.monitors,packetlab.endpoint.reflexes"),
    (
        "endpoint netio, sender (raw: on first use)",
        "packetlab.endpoint.netio,packetlab.endpoint.sender",
    ),
    ("sqlite3 (only with a chain with limits)", "sqlite3"),
]

CHILD = r"""
import importlib, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
print(rss(), flush=True)
for group in sys.argv[1:]:
    if group == "PLUGINS":
        from twisted import plugin
        from twisted.application.service import IServiceMaker
        list(plugin.getPlugins(IServiceMaker))
    else:
        for name in group.split(","):
            importlib.import_module(name)
    print(rss(), flush=True)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="fresh processes [3]")
    args = ap.parse_args()
    runs = []
    for _ in range(args.runs):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, *(mods for _, mods in STEPS)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        runs.append([int(x) / 1024 for x in out.stdout.split()])
    med = [statistics.median(col) for col in zip(*runs, strict=True)]
    print(f"{'python':58s} {med[0]:6.1f} MiB")
    for (label, _), prev, now in zip(STEPS, med, med[1:], strict=False):  # med: one more
        print(f"{label:58s} {now:6.1f} MiB  {now - prev:+5.1f}")
    print(
        f"the endpoint's imports (sqlite3 aside) over the bare reactor + TLS: "
        f"{med[-2] - med[1]:+.1f} MiB (median of {args.runs} runs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
