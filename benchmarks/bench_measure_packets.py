"""CPU of the measurement code per probe: a probe built, keyed, its reply parsed and matched.

Two cycles, each a probe and its reply through a `ProbeTable`, as ping and traceroute do
per request: `ping` (`echo_probe`, an echo reply) and `traceroute` (`traceroute_probe`, a
time exceeded quoting it). Per tree: microseconds per cycle (best of 7 repeats, as
`timeit` advises), and Python function calls per cycle (cProfile; they do not move with the
load). ``--before DIR`` measures an earlier checkout alongside (its ``packetlab`` first on
``sys.path``, in a child process), trees alternated each round; medians are reported.

    git worktree add --detach /tmp/before HEAD~1
    .venv/bin/python -m benchmarks.bench_measure_packets --rounds 7 --before /tmp/before
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import markdown_table, median

REPO = Path(__file__).resolve().parent.parent

_CHILD = """
import cProfile, ipaddress, json, pstats, struct, sys, timeit
sys.path.insert(0, sys.argv[1])
from packetlab.measure.packets import ip_packet
from packetlab.measure.probes import ProbeTable, echo_probe, traceroute_probe
from packetlab.measure.replies import parse_reply
a = ipaddress.IPv4Address("127.0.0.1")
echo = bytearray(echo_probe(a, a, ident=1234, seq=7).packet)
echo[20] = 0  # the echo request made an echo reply (its checksum is not verified)
quoted = traceroute_probe(a, a, 1, sport=40000, index=3).packet[:28]
exceeded = ip_packet(a, a, 1, struct.pack("!BBHI", 11, 0, 0, 0) + quoted)
table = ProbeTable()
def ping():
    key = echo_probe(a, a, ident=1234, seq=7).key
    table.add(key, 1)
    reply = parse_reply(bytes(echo))
    assert reply.key in table
    table.pop(reply.key)
def traceroute():
    key = traceroute_probe(a, a, 1, sport=40000, index=3).key
    table.add(key, 1)
    reply = parse_reply(exceeded)
    assert reply.key in table
    table.pop(reply.key)
out = {}
for f in (ping, traceroute):
    us = min(timeit.repeat(f, number=5000, repeat=7)) / 5000 * 1e6
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(1000):
        f()
    prof.disable()
    out[f.__name__] = (us, pstats.Stats(prof).total_calls / 1000)
print(json.dumps(out))
"""


def run_tree(tree: Path) -> dict[str, tuple[float, float]]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tree)], capture_output=True, check=True, cwd="/tmp"
    )
    out: dict[str, tuple[float, float]] = json.loads(done.stdout)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before", type=Path, help="an earlier checkout, measured alongside")
    args = ap.parse_args()
    trees = {"this tree": REPO}
    if args.before is not None:
        trees = {"before": args.before.resolve(), **trees}
    us: dict[tuple[str, str], list[float]] = {}
    calls: dict[tuple[str, str], float] = {}
    for r in range(args.rounds):
        order = list(trees.items()) if r % 2 == 0 else list(reversed(trees.items()))
        for name, tree in order:
            for cycle, (t, n) in run_tree(tree).items():
                us.setdefault((cycle, name), []).append(t)
                calls[(cycle, name)] = n
    rows = []
    for cycle in ("ping", "traceroute"):
        for name in trees:
            times = us[(cycle, name)]
            spread = f"{min(times):.2f}-{max(times):.2f}"
            n = calls[(cycle, name)]
            rows.append([cycle, name, f"{median(times):.2f}", spread, f"{n:.0f}"])
    head = ["cycle", "tree", "µs per cycle (median)", "range", "calls per cycle"]
    print(markdown_table(head, rows))


if __name__ == "__main__":
    main()
