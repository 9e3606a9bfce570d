"""CPU per request of `pktlab run ping -q -f` (endpoint and controller in one process).

Each round runs ``pktlab run ping -q -f -c SMALL 127.0.0.1`` and ``-c LARGE`` for every
tree and takes the CPU time (user + system of the child, `os.wait4`); the CPU per request is
(CPU(LARGE) - CPU(SMALL)) / (LARGE - SMALL), so start-up and capture set-up cancel out.
Trees alternate within each round (the order flips every round); medians are reported,
and with two trees the median of the rounds' ratios.
``--before DIR`` adds a checkout of an earlier commit (its ``packetlab`` first on
``PYTHONPATH``), for an A/B under the same load. ``--command traceroute`` measures
the same way on ``run traceroute -n -q N -m 1 127.0.0.1`` (N probes at one hop, at most
10: compare the whole run's CPU, the last column, there).

Run as root from the repository root::

    git worktree add --detach /tmp/before HEAD~3
    .venv/bin/python -m benchmarks.bench_ping_flood --rounds 7 --before /tmp/before
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import fmt, markdown_table, median

REPO = Path(__file__).resolve().parent.parent


def argv_for(command: str, n: int) -> list[str]:
    run = [sys.executable, "-m", "packetlab", "run"]
    if command == "ping":
        return [*run, "ping", "-q", "-f", "-c", str(n), "127.0.0.1"]
    if command == "ping-dots":  # -f without -q: a dot per request, a backspace per reply
        return [*run, "ping", "-f", "-c", str(n), "127.0.0.1"]
    if command == "traceroute":  # n probes: -q n at one hop (127.0.0.1 answers at TTL 1)
        return [*run, "traceroute", "-n", "-q", str(n), "-m", "1", "127.0.0.1"]
    raise SystemExit(f"unknown command {command}")


def cpu_of(argv: list[str], tree: Path, cache: Path) -> float:
    """User + system CPU seconds of `argv` run with `tree`'s packetlab first, its bytecode
    cached in `cache` (as an installed package has it, even under PYTHONDONTWRITEBYTECODE,
    which would compile every module at every start: ~180 ms here)."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONPYCACHEPREFIX=str(cache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    p = subprocess.Popen(argv, env=env, cwd="/tmp", stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{argv} under {tree}: exit {p.returncode}")
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--small", type=int, default=300)
    ap.add_argument("--large", type=int, default=3300)
    ap.add_argument("--command", default="ping", choices=["ping", "ping-dots", "traceroute"])
    ap.add_argument("--before", type=Path, help="an earlier checkout, measured alongside")
    args = ap.parse_args()
    trees = {"this tree": REPO}
    if args.before is not None:
        trees = {"before": args.before.resolve(), **trees}
    with tempfile.TemporaryDirectory(prefix="bench-ping-flood-") as tmp:
        caches = {name: Path(tmp) / str(i) for i, name in enumerate(trees)}
        measure(args, trees, caches)


def measure(args: argparse.Namespace, trees: dict[str, Path], caches: dict[str, Path]) -> None:
    for name, tree in trees.items():  # (untimed: fills the bytecode cache)
        cpu_of(argv_for(args.command, args.small), tree, caches[name])
    per: dict[str, list[float]] = {name: [] for name in trees}
    whole: dict[str, list[float]] = {name: [] for name in trees}  # CPU of the large run
    for r in range(args.rounds):
        order = list(trees.items()) if r % 2 == 0 else list(reversed(trees.items()))
        for name, tree in order:
            small = cpu_of(argv_for(args.command, args.small), tree, caches[name])
            large = cpu_of(argv_for(args.command, args.large), tree, caches[name])
            per[name].append((large - small) / (args.large - args.small))
            whole[name].append(large)
        load = os.getloadavg()[0]
        print(
            f"round {r + 1}: "
            + ", ".join(f"{n} {per[n][-1] * 1e6:.0f} us" for n in trees)
            + f" (load {load:.1f})",
            file=sys.stderr,
        )
    rows = [
        [
            name,
            fmt(median(v) * 1e6, 1, 0),
            " ".join(fmt(x * 1e6, 1, 0) for x in v),
            fmt(median(whole[name]) * 1e3, 1, 0),
        ]
        for name, v in per.items()
    ]
    if args.before is not None:  # (the ratio of each round: both trees under its load)
        ratios = [a / b for a, b in zip(per["this tree"], per["before"], strict=True)]
        whole_ratio = median(
            a / b for a, b in zip(whole["this tree"], whole["before"], strict=True)
        )
        rows.append(
            [
                "this / before",
                f"{median(ratios):.2f}",
                " ".join(f"{x:.2f}" for x in ratios),
                f"{whole_ratio:.2f}",
            ]
        )
    print(f"{args.command}: CPU per request (us), -c {args.large} less -c {args.small}")
    print(markdown_table(["tree", "median", "rounds", f"CPU of -c {args.large} (ms)"], rows))


if __name__ == "__main__":
    main()
