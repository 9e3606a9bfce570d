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
floors of ours: ``python -c pass`` and the imports of ``pktlab run`` alone, and the CPU
time (user + system) of every run of ours, less disturbed by a shared machine's load.

Ours runs as an installed package would: with its bytecode (.pyc) cached, in a private
``PYTHONPYCACHEPREFIX`` warmed up by one untimed run, even where the environment sets
``PYTHONDONTWRITEBYTECODE`` (then every start would compile every packetlab module from
source; the ``no bytecode`` row shows that case). ``--before DIR`` also times a checkout
of an earlier commit (its own ``packetlab`` first on ``PYTHONPATH``) in the same rounds,
for a before/after comparison under the same load.

Run as root from the repository root::

    .venv/bin/python -m benchmarks.bench_run_time --rounds 5 --json .bench/run_time.json
    git worktree add /tmp/before 56026b3
    .venv/bin/python -m benchmarks.bench_run_time --rounds 7 --before /tmp/before
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import environment, fmt, markdown_table, median, write_json
from packetlab.testbed import Testbed, chain

REPO = Path(__file__).resolve().parent.parent
SILENT_NET = "10.77.99.0/24"
SILENT_DST = "10.77.99.1"
IMPORTS = 'import packetlab.cli as c; c.build_parser("run")'


# ... and of the command line of a traceroute: the parser of that measurement alone.
IMPORTS_TRACEROUTE = 'import packetlab.cli as c; c.parse(["run", "traceroute", "127.0.0.1"])'


def timed(
    argv: list[str],
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
    cpu: list[float] | None = None,
) -> float:
    """The wall-clock time of `argv`; its CPU time (user + system, the process and the
    children it waited for) appended to `cpu`: less sensitive than the wall clock to the
    other loads of a shared machine, so small changes show in it."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd, env=env
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, argv)
    if cpu is not None:
        cpu.append(usage.ru_utime + usage.ru_stime)
    return wall


def python_env(pycache: str, *, bytecode: bool = True, path: Path | None = None) -> dict[str, str]:
    """The environment of a run of ours: bytecode kept in `pycache` (or none at all), and
    `path` first on PYTHONPATH (an earlier checkout)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = pycache
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="pktlab-nopyc-")  # stays empty
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return env


def blackhole_beyond_r3(tb: Testbed) -> None:
    """Route SILENT_NET along the chain to r3, which drops it without a word."""
    tb.run("r1", ["ip", "route", "add", SILENT_NET, "via", str(tb.addr("r2"))])
    tb.run("r2", ["ip", "route", "add", SILENT_NET, "via", str(tb.addr("r3"))])
    tb.run("r3", ["ip", "route", "add", "blackhole", SILENT_NET])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument(
        "--before", metavar="DIR", type=Path, help="also time this checkout (an earlier commit)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="only the answering path (no 10 s native runs)"
    )
    args = ap.parse_args()
    pycache = tempfile.mkdtemp(prefix="pktlab-bench-pyc-")
    env = python_env(pycache)
    tb = Testbed(chain(3)).up()
    try:
        blackhole_beyond_r3(tb)
        ns = ["ip", "netns", "exec", tb.netns_name("ep")]
        ours = [*ns, sys.executable, "-m", "packetlab", "run", "traceroute"]
        native = [*ns, "traceroute"]
        tg = str(tb.addr("tg"))
        answering3 = (["-n", "-q", "3", tg], ["-n", "-q", "3", tg])
        scenarios = {
            "answering -q 1": (["-n", "-q", "1", tg], ["-n", "-q", "1", tg]),
            "answering -q 3": answering3,
            "silent -q 3 -m 10": (["-n", "-q", "3", "-m", "10", SILENT_DST],) * 2,
            "names -q 3": (["-q", "3", tg], ["-q", "3", tg]),
        }
        if args.quick:
            del scenarios["silent -q 3 -m 10"], scenarios["names -q 3"]
        # name -> (argv suffix, environment, working directory) of extra runs of ours
        variants = {
            "answering -q 3, no bytecode": (answering3[0], python_env("", bytecode=False), REPO)
        }
        if args.before is not None:
            old = python_env(tempfile.mkdtemp(prefix="pktlab-before-pyc-"), path=args.before)
            variants["answering -q 1, before"] = (["-n", "-q", "1", tg], old, args.before)
            variants["answering -q 3, before"] = (answering3[0], old, args.before)
        floors = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "imports of pktlab run": [sys.executable, "-c", IMPORTS],
            "imports of pktlab run traceroute": [sys.executable, "-c", IMPORTS_TRACEROUTE],
        }
        floor_env = dict.fromkeys(floors, (env, REPO))
        if args.before is not None:
            for name in ("imports of pktlab run", "imports of pktlab run traceroute"):
                floors[f"{name}, before"] = floors[name]
                floor_env[f"{name}, before"] = (old, args.before)
        for mine, _ in scenarios.values():  # warm up: bytecode, demo certificates
            timed([*ours, *mine], env)
        for mine, venv, cwd in variants.values():
            timed([*ours, *mine], venv, cwd)
        times = {k: {"ours": list[float](), "native": list[float]()} for k in scenarios}
        variant_times: dict[str, list[float]] = {k: [] for k in variants}
        floor_times: dict[str, list[float]] = {k: [] for k in floors}
        cpu: dict[str, list[float]] = {k: [] for k in [*scenarios, *variants, *floors]}
        for r in range(args.rounds):
            for name, (mine, theirs) in scenarios.items():
                pair = [("ours", [*ours, *mine]), ("native", [*native, *theirs])]
                for tool, argv in pair if r % 2 == 0 else pair[::-1]:
                    into = cpu[name] if tool == "ours" else None
                    times[name][tool].append(timed(argv, env, cpu=into))
            for name, (mine, venv, cwd) in variants.items():
                variant_times[name].append(timed([*ours, *mine], venv, cwd, cpu=cpu[name]))
            for name, argv in floors.items():
                floor_times[name].append(timed(argv, *floor_env[name], cpu=cpu[name]))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        tb.down()
    rows = []
    for name, t in times.items():
        o, n = median(t["ours"]), median(t["native"])
        rows.append([name, fmt(o, digits=3), fmt(n, digits=3), fmt(o / n, digits=2)])
    for name, v in variant_times.items():
        n = median(times[name.split(",")[0]]["native"])
        rows.append(
            [name, fmt(median(v), digits=3), fmt(n, digits=3), fmt(median(v) / n, digits=2)]
        )
    print(markdown_table(["path", "ours (s)", "native traceroute (s)", "ours / native"], rows))
    print()
    print(markdown_table(
        ["floor of ours", "median (s)"],
        [[k, fmt(median(v), digits=3)] for k, v in floor_times.items()],
    ))  # fmt: skip
    print()
    print(markdown_table(
        ["ours", "CPU, user + system: median (s)", "min (s)"],
        [[k, fmt(median(v), digits=3), fmt(min(v), digits=3)] for k, v in cpu.items()],
    ))  # fmt: skip
    if args.json:
        write_json(
            args.json,
            {
                "env": environment(),
                "times": times,
                "variants": variant_times,
                "floors": floor_times,
                "cpu": cpu,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
