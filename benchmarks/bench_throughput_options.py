"""`pktlab run throughput` with iperf3's -t/-P/-u/-b against native `iperf3 -c`, on
loopback, against one stock `iperf3 -s` (docs/throughput.md, "Accuracy" of the iperf3
options). Per case and round: ours (`--json -i 0`, the in-process endpoint in plaintext),
then native with the same options (`-J`). Prints the medians: ours, the server's figure
for our test, native's receiver figure (Mbit/s); for UDP also the server's lost/total and
jitter for ours, our late timed sends, and native's lost/total and jitter.

Run from the repository root (no root needed)::

    .venv/bin/python -m benchmarks.bench_throughput_options --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import iperf3_server

REPO = Path(__file__).resolve().parents[1]
CASES = [
    ("TCP -R -t 1", ["-R", "-t", "1"]),
    ("TCP upload -t 1", ["--direction", "upload", "-t", "1"]),
    ("TCP -R -P 2 -t 1", ["-R", "-P", "2", "-t", "1"]),
    ("TCP upload -b 200M -t 1", ["--direction", "upload", "-b", "200M", "-t", "1"]),
    ("UDP upload -b 20M -l 1460 -t 1",
     ["--direction", "upload", "-u", "-b", "20M", "-l", "1460", "-t", "1"]),
    ("UDP -R -b 100M -l 1460 -t 1", ["-R", "-u", "-b", "100M", "-l", "1460", "-t", "1"]),
    ("UDP upload -b 100M -l 1460 -t 1",
     ["--direction", "upload", "-u", "-b", "100M", "-l", "1460", "-t", "1"]),
    ("UDP upload -b 200M -l 1460 -t 1",
     ["--direction", "upload", "-u", "-b", "200M", "-l", "1460", "-t", "1"]),
    ("UDP upload -b 400M -l 1460 -t 1",
     ["--direction", "upload", "-u", "-b", "400M", "-l", "1460", "-t", "1"]),
    ("UDP upload -b 1G -l 32K -t 1",
     ["--direction", "upload", "-u", "-b", "1G", "-l", "32K", "-t", "1"]),
]  # fmt: skip


def ours(port: int, args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "packetlab", "run", "throughput", "-c", "127.0.0.1", "-p",
         str(port), "--insecure-plaintext", "--json", "-i", "0", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    ).stdout  # fmt: skip
    rec: dict[str, Any] = [json.loads(x) for x in out.splitlines()][-2]
    return rec


def native(port: int, args: list[str]) -> dict[str, Any]:
    args = [a for a in args if a not in ("--direction", "upload")]
    got = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-J", *args],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    end: dict[str, Any] = json.loads(got.stdout)["end"]
    return end


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    opts = ap.parse_args()
    with iperf3_server() as port:
        for name, args in CASES:
            rows = []
            for _ in range(opts.rounds):
                r = ours(port, args)
                if "error" in r:
                    print(name, "error:", r["error"])
                    continue
                n, s = native(port, args), r["sum"]
                mine = s[r["endpoint"]]["mbit_s"]
                if "-u" in args:
                    rx, ns = s["receiver"], n["sum"]
                    rows.append((mine, r["server_mbit_s"], rx["lost"], rx["packets"],
                                 rx["jitter_ms"], r.get("late_sends", 0),
                                 ns["bits_per_second"] / 1e6, ns["lost_packets"],
                                 ns["packets"], ns["jitter_ms"]))  # fmt: skip
                else:
                    rows.append(
                        (mine, r["server_mbit_s"], n["sum_received"]["bits_per_second"] / 1e6)
                    )
            med = [statistics.median(c) for c in zip(*rows, strict=True)] if rows else []
            print(f"{name:34}", " | ".join(f"{x:.4g}" for x in med), flush=True)


if __name__ == "__main__":
    main()
