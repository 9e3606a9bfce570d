"""Total time of `pktlab run traceroute` against native traceroute on the same testbed path.

Chain ``ep — r1 — r2 — r3 — tg``; every command runs in ep with ``ip netns exec``, as a
user would run it, start-up included (the in-process endpoint: Python, Twisted, the
endpoint service, the TLS link). Scenarios:

* ``answering``: every hop answers at once (tg, 4 hops), ``-n``, with -q 1 and -q 3;
* ``silent``: r3 drops everything past it (a blackhole route), so TTLs 4..10 stay silent:
  what a firewalled target looks like (``-n -q 3 -m 10``, default waits: 5 s);
* ``names``: the answering path without ``-n``, the host's resolver unreachable from the
  namespace (every PTR lookup times out), as a testbed or an offline host has it.

Tools alternate within each round; the medians and ours / native are reported. Also the
floors of ours: ``python -c pass`` and the imports of ``pktlab run`` alone.

Run as root from the repository root::

    .venv/bin/python -m benchmarks.bench_run_time --rounds 5 --json .bench/run_time.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import environment, fmt, markdown_table, median, write_json
from packetlab.testbed import Testbed, chain

REPO = Path(__file__).resolve().parent.parent
SILENT_NET = "10.77.99.0/24"
SILENT_DST = "10.77.99.1"
IMPORTS = "import packetlab.cli as c; c.build_parser()"


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=REPO)
    return time.perf_counter() - t0


def blackhole_beyond_r3(tb: Testbed) -> None:
    """Route SILENT_NET along the chain to r3, which drops it without a word."""
    tb.run("r1", ["ip", "route", "add", SILENT_NET, "via", str(tb.addr("r2"))])
    tb.run("r2", ["ip", "route", "add", SILENT_NET, "via", str(tb.addr("r3"))])
    tb.run("r3", ["ip", "route", "add", "blackhole", SILENT_NET])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    tb = Testbed(chain(3)).up()
    try:
        blackhole_beyond_r3(tb)
        ns = ["ip", "netns", "exec", tb.netns_name("ep")]
        ours = [*ns, sys.executable, "-m", "packetlab", "run", "traceroute"]
        native = [*ns, "traceroute"]
        tg = str(tb.addr("tg"))
        scenarios = {
            "answering -q 1": (["-n", "-q", "1", tg], ["-n", "-q", "1", tg]),
            "answering -q 3": (["-n", "-q", "3", tg], ["-n", "-q", "3", tg]),
            "silent -q 3 -m 10": (["-n", "-q", "3", "-m", "10", SILENT_DST],) * 2,
            "names -q 3": (["-q", "3", tg], ["-q", "3", tg]),
        }
        floors = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "imports of pktlab run": [sys.executable, "-c", IMPORTS],
        }
        times = {k: {"ours": list[float](), "native": list[float]()} for k in scenarios}
        floor_times: dict[str, list[float]] = {k: [] for k in floors}
        for r in range(args.rounds):
            for name, (mine, theirs) in scenarios.items():
                pair = [("ours", [*ours, *mine]), ("native", [*native, *theirs])]
                for tool, argv in pair if r % 2 == 0 else pair[::-1]:
                    times[name][tool].append(timed(argv))
            for name, argv in floors.items():
                floor_times[name].append(timed(argv))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        tb.down()
    rows = []
    for name, t in times.items():
        o, n = median(t["ours"]), median(t["native"])
        rows.append([name, fmt(o, digits=3), fmt(n, digits=3), fmt(o / n, digits=2)])
    print(markdown_table(["path", "ours (s)", "native traceroute (s)", "ours / native"], rows))
    print()
    print(markdown_table(
        ["floor of ours", "median (s)"],
        [[k, fmt(median(v), digits=3)] for k, v in floor_times.items()],
    ))  # fmt: skip
    if args.json:
        write_json(args.json, {"env": environment(), "times": times, "floors": floor_times})
    return 0


if __name__ == "__main__":
    sys.exit(main())
