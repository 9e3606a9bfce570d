"""`pktlab run throughput` with iperf3's timed options, with and without `--pcap`, on
loopback against one stock `iperf3 -s` (docs/throughput.md, "pcap export"): does writing
the capture disturb the test? Per case and round, A (no pcap) then B (`--pcap`), so both
meet the same load; prints the medians of our figure (the endpoint's side), the server's
figure for the same test, the command's wall time (B: with the packets built and written
after the test) and B's file size.

Run from the repository root (no root needed)::

    .venv/bin/python -m benchmarks.bench_throughput_pcap --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import iperf3_server

REPO = Path(__file__).resolve().parents[1]
CASES = [
    ("TCP -R -P 2 -t 1", ["-R", "-P", "2", "-t", "1"]),
    ("TCP upload -t 1", ["--direction", "upload", "-t", "1"]),
    ("UDP upload -b 100M -l 1460 -t 1",
     ["--direction", "upload", "-u", "-b", "100M", "-l", "1460", "-t", "1"]),
    ("UDP -R -b 100M -l 1460 -t 1", ["-R", "-u", "-b", "100M", "-l", "1460", "-t", "1"]),
]  # fmt: skip


def ours(port: int, args: list[str]) -> tuple[dict[str, Any], float]:
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "packetlab", "run", "throughput", "-c", "127.0.0.1", "-p",
         str(port), "--insecure-plaintext", "--json", "-i", "0", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    ).stdout  # fmt: skip
    rec: dict[str, Any] = [json.loads(x) for x in out.splitlines()][-2]
    return rec, time.monotonic() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    opts = ap.parse_args()
    with iperf3_server() as port, tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "b.pcap"
        print(f"{'case':34} ours A | server A | wall A | ours B | server B | wall B | bytes B")
        for name, args in CASES:
            rows = []
            for _ in range(opts.rounds):
                a, wall_a = ours(port, args)
                b, wall_b = ours(port, [*args, "--pcap", str(pcap)])
                if "error" in a or "error" in b:
                    print(name, "error:", a.get("error"), b.get("error"))
                    continue
                rows.append((a["sum"][a["endpoint"]]["mbit_s"], a["server_mbit_s"], wall_a,
                             b["sum"][b["endpoint"]]["mbit_s"], b["server_mbit_s"], wall_b,
                             pcap.stat().st_size))  # fmt: skip
            med = [statistics.median(c) for c in zip(*rows, strict=True)] if rows else []
            print(f"{name:34}", " | ".join(f"{x:.4g}" for x in med), flush=True)


if __name__ == "__main__":
    main()
