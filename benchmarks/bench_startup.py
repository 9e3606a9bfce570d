"""Whole-process time of each `pktlab` command, this checkout against an earlier one.

Every command is a fresh `python -m packetlab ...` process, start-up included, run as an
installed package runs (bytecode kept in a private PYTHONPYCACHEPREFIX per checkout,
warmed by one untimed run). With `--before DIR` the same command of DIR's checkout runs
right after each of ours (A B A B ...), so a drift of the shared machine's speed touches
both; the ratio is taken pair by pair. Reported: medians of the wall clock and of the CPU
time (user + system), and the median of the per-pair wall ratios. The commands are the
ones issue 13 names: help, a ping and a traceroute to loopback through the in-process
endpoint, a refused DNS query and HTTP fetch, `init` into a scratch home, `decode` of a
frame. Nothing leaves loopback.

    .venv/bin/python -m benchmarks.bench_startup --rounds 11 --before .bench/base
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

from benchmarks.bench_run_time import python_env
from benchmarks.common import write_json

REPO = Path(__file__).resolve().parent.parent

# (label, pktlab arguments)
COMMANDS: list[tuple[str, list[str]]] = [
    ("--help", ["--help"]),
    ("run ping --help", ["run", "ping", "--help"]),
    ("run ping -c 1 127.0.0.1", ["run", "ping", "-c", "1", "127.0.0.1"]),
    ("run traceroute -n -q 1 127.0.0.1", ["run", "traceroute", "-n", "-q", "1", "127.0.0.1"]),
    (
        "run dns @127.0.0.1 -p 9 +tries=1 +time=1 a.test (refused)",
        ["run", "dns", "@127.0.0.1", "-p", "9", "+tries=1", "+time=1", "a.test"],
    ),
    (
        "run http -s --max-time 2 http://127.0.0.1:9/ (refused)",
        ["run", "http", "-s", "--max-time", "2", "http://127.0.0.1:9/"],
    ),
    ("init --force (scratch HOME)", ["init", "--force"]),
    ("decode (one nsend frame)", ["decode"]),
]


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system, with the children it waited for) and
    exit status of `argv`: a refused query or fetch exits non-zero, as dig and curl do."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd, env=env
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


FRAME_JSON = (
    b'{"type": "nsend", "sktid": 1, "family": 4, "proto": 17, "time": 0, "tag": 7,'
    b' "raddr": "127.0.0.1", "rport": 9, "data": "6869"}\n'
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--before", type=Path, help="an earlier checkout to time in the same rounds")
    ap.add_argument("--only", action="append", help="labels starting with this (repeatable)")
    ap.add_argument("--json", type=Path)
    opts = ap.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="pktlab-bench-startup-"))
    frame_file = scratch / "frame.bin"
    frame_file.write_bytes(
        subprocess.run(
            [sys.executable, "-m", "packetlab", "encode"],
            input=FRAME_JSON,
            capture_output=True,
            check=True,
            cwd=REPO,
        ).stdout
    )
    trees = [("ours", REPO)] + ([("before", opts.before.resolve())] if opts.before else [])
    envs = {}
    for name, _tree in trees:
        env = python_env(str(scratch / f"pyc-{name}"))
        env["HOME"] = str(scratch / f"home-{name}")  # init's, and the demo link's caches
        env["XDG_CACHE_HOME"] = str(scratch / f"cache-{name}")
        os.makedirs(env["HOME"], exist_ok=True)
        envs[name] = env
    results = []
    for label, args in COMMANDS:
        if opts.only and not any(label.startswith(o) for o in opts.only):
            continue
        walls: dict[str, list[float]] = {name: [] for name, _ in trees}
        cpus: dict[str, list[float]] = {name: [] for name, _ in trees}
        codes: dict[str, set[int]] = {name: set() for name, _ in trees}
        for round_ in range(opts.rounds + 1):  # the first: warm-up, not counted
            for name, tree in trees:
                cmd = [sys.executable, "-m", "packetlab", *args]
                if args == ["decode"]:
                    cmd = ["sh", "-c", 'exec "$0" -m packetlab decode < "$1"', sys.executable]
                    cmd.append(str(frame_file))
                wall, cpu, status = timed(cmd, envs[name], tree)
                codes[name].add(status)
                if round_:
                    walls[name].append(wall)
                    cpus[name].append(cpu)
        row = {
            "command": label,
            **{f"{n}_wall": statistics.median(w) for n, w in walls.items()},
            **{f"{n}_cpu": statistics.median(c) for n, c in cpus.items()},
        }
        if opts.before:
            row["ratio"] = statistics.median(
                a / b for a, b in zip(walls["ours"], walls["before"], strict=True)
            )
        if len({frozenset(c) for c in codes.values()}) > 1 or len(codes["ours"]) > 1:
            raise SystemExit(f"{label}: exit statuses differ: {codes}")
        row["status"] = min(codes["ours"])
        results.append(row)
        cells = "  ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "command")
        print(f"{label:58} {cells}", flush=True)
    if opts.json:
        write_json(opts.json, {"rounds": opts.rounds, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
