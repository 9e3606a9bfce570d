#!/usr/bin/env python3
"""Idle RSS of the endpoint over TLS under start-up variants, in one run with the bare
reactor (the base of issue 14's memory goal), so that each change is measured on its own.

Each variant starts `benchmarks.bench_endpoint.Endpoint` (a real `twistd pktendpoint`
over TLS, after `start`) through a launcher that, 0.3 s after the reactor runs, applies
the variant's steps: ``collect`` (gc.collect), ``freeze`` (gc.freeze), ``trim`` (glibc
malloc_trim(0)). The empty variant is the code as it is. Variants are interleaved per
round; medians are printed, resident and anonymous (resident minus anonymous is
file-backed: shared libraries' pages). `--baseline CHECKOUT` adds the endpoint of another
checkout (e.g. a `git worktree` of the commit before a change), interleaved too: before
and after in one run.

    .venv/bin/python stress/rss_variants.py --rounds 3 '' collect collect,freeze collect,trim
    .venv/bin/python stress/rss_variants.py --rounds 5 --baseline ../base ''

The launcher imports the reactor before twistd does, so what the endpoint's tap does
before the reactor's import (the scan's drop meets fewer modules; `lazyimports.DAEMON`
applies) does not show under it: `--twistd` starts the real `twistd` script instead,
the order users get (the empty variant only), for before and after with `--baseline`:

    .venv/bin/python stress/rss_variants.py --twistd --rounds 5 --baseline .bench/base ''

`--daemon broker` or `--daemon proxy` measures a real `twistd -n pktbroker` (publish and
subscribe ports, TLS) or `twistd -n pktproxy` (setup port TLS, endpoints port) instead,
always through the real twistd script, idle with no client, or with `--client` one
subscriber (xcert + xsub on the broker's private channel) or one registered backlog:

    .venv/bin/python stress/rss_variants.py --daemon broker --rounds 5 --baseline .bench/base ''
    .venv/bin/python stress/rss_variants.py --daemon proxy --client --baseline .bench/base ''

`--maps` prints, once, resident KiB per mapping (/proc/PID/smaps, by file name; heap,
stack and anonymous mappings by kind) of the first variant next to a bare reactor's.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
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

PORT_LINES = {  # what each daemon logs once a port listens, and the port number in it
    "broker": (r"pktbroker subscribe port listening on 127\.0\.0\.1:(\d+)", r"status page on http"),
    "proxy": (r"setup port listening on 127\.0\.0\.1:(\d+)", r"endpoints port listening"),
}

BARE_IDLE = (  # the bare reactor with TLS loaded, idle until killed
    "from twisted.internet import reactor\nimport twisted.protocols.tls, OpenSSL.SSL\n"
    "from twisted.internet import ssl\nreactor.run()"
)

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


def mappings(pid: int) -> collections.Counter[str]:
    """Resident KiB of process `pid` per mapping name (a file's base name, [heap], ...)."""
    out: collections.Counter[str] = collections.Counter()
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and not head[0].endswith(":"):
            name = head[5].rsplit("/", 1)[-1] if len(head) > 5 else "[anonymous]"
        elif head[0] == "Rss:":
            out[name] += int(head[1])
    return out


def compare_maps(variant: str) -> None:
    """Print resident KiB per mapping of our endpoint (`variant`) and a bare reactor."""
    os.environ["PKTLAB_RSS_VARIANT"] = variant
    bare = subprocess.Popen([sys.executable, "-c", BARE_IDLE])
    with tempfile.TemporaryDirectory() as tmp:
        ep = bench.Endpoint(Path(tmp), tls=True)
        time.sleep(1.5)
        ours, base = mappings(ep.proc.pid), mappings(bare.pid)
        ep.stop()
    bare.kill()
    bare.wait()
    print(f"{'mapping':40s} {'ours':>8s} {'bare':>8s} {'diff':>8s}  (KiB resident)")
    for name in sorted(set(ours) | set(base), key=lambda n: base[n] - ours[n]):
        if ours[name] != base[name]:
            print(f"{name[:40]:40s} {ours[name]:8d} {base[name]:8d} {ours[name] - base[name]:+8d}")


class Daemon:
    """`twistd -n pktbroker` / `pktproxy` of checkout `repo` on 127.0.0.1 with the
    credentials of the `pktlab init` home `home`; `client` holds a subscriber / backlog."""

    def __init__(self, kind: str, repo: Path, home: Path, tmp: Path, client: bool) -> None:
        self.log = tmp / f"{kind}.log"
        argv = [str(Path(sys.executable).with_name("twistd")), "-n", "--pidfile=",
                f"--logfile={self.log}"]  # fmt: skip
        if kind == "broker":
            conf = tmp / "broker.conf"
            conf.write_text("StatusListen tcp:0:interface=127.0.0.1\n")
            here = "tcp:0:interface=127.0.0.1"
            argv += ["pktbroker", "--config", str(conf), "--publish", here, "--subscribe", here]
        else:
            argv += ["pktproxy", "--home", str(home), "--setup", "tcp:0:interface=127.0.0.1",
                     "--endpoints", "tcp:0:interface=127.0.0.1"]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(repo), PKTLAB_HOME=str(home))
        self.client: Any = None
        self.proc = subprocess.Popen(argv, cwd=tmp, env=env, stdout=subprocess.DEVNULL)
        try:
            self._ready(kind, home, tmp, client)
        except BaseException:
            self.stop()
            raise

    def _ready(self, kind: str, home: Path, tmp: Path, client: bool) -> None:
        port_line, last_line = PORT_LINES[kind]
        deadline = time.monotonic() + 60
        while not (self.log.exists() and re.search(last_line, self.log.read_text())):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{kind} did not start: {self.log}")
            time.sleep(0.05)
        found = re.search(port_line, self.log.read_text())
        assert found is not None, self.log.read_text()
        port = int(found.group(1))
        if client and kind == "broker":
            from broker_world import Identity  # tests/integration: xcert + xsub, checked

            from packetlab.ppks import PktlabHome

            self.client = Identity(PktlabHome.at(home), tmp, "sub").subscribe(port)
        elif client:
            from pxworld import register  # tests/integration: xreg, preamble, echo

            self.client = register(port, "rss")

    def stop(self) -> None:
        if self.client is not None:
            getattr(self.client, "close", lambda: None)()
        self.proc.terminate()
        self.proc.wait(10)


def run_daemons(args: argparse.Namespace) -> int:
    """Idle RSS of a broker / proxy of this checkout (and `--baseline`'s), interleaved."""
    sys.path[:0] = [str(REPO / "tests" / "integration"), str(REPO / "tests")]
    from tls_world import pktlab_init

    runs = [("ours", REPO)]
    if args.baseline:
        runs.append(("baseline", Path(args.baseline).resolve()))
    rss: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in runs}
    with tempfile.TemporaryDirectory() as top:
        home = pktlab_init(Path(top) / "home").root
        for i in range(args.rounds):
            for name, repo in runs:
                tmp = Path(top) / f"{name}{i}"
                tmp.mkdir()
                d = Daemon(args.daemon, repo, home, tmp, args.client)
                try:
                    time.sleep(args.settle)
                    rss[name].append(mib(bench.smaps_kib(d.proc.pid)))
                finally:
                    d.stop()
    what = f"{args.daemon}, {'one client' if args.client else 'idle, no client'}"
    print(f"{what:24s} {'resident':>10s} {'anonymous':>11s} {'file':>6s}  resident each round")
    for name, xs in rss.items():
        m, anon = (statistics.median(col) for col in zip(*xs, strict=True))
        print(
            f"{name:24s} {m:6.2f} MiB {anon:7.2f} MiB {m - anon:6.2f}"
            f"  {[round(r, 2) for r, _ in xs]}"
        )
    return 0


def mib(kib: tuple[int, int]) -> tuple[float, float]:
    return kib[0] / 1024, kib[1] / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="+", help="comma-separated steps ('' for none)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=1.5, help="seconds idle before RSS [1.5]")
    ap.add_argument("--baseline", metavar="CHECKOUT", help="also run this checkout's endpoint")
    ap.add_argument("--maps", action="store_true", help="resident KiB per mapping, once")
    ap.add_argument(
        "--twistd",
        action="store_true",
        help="start the real twistd script, not the launcher (variants apply no steps then)",
    )
    ap.add_argument("--daemon", choices=("endpoint", "broker", "proxy"), default="endpoint")
    ap.add_argument("--client", action="store_true", help="broker/proxy: with one client")
    args = ap.parse_args()
    if args.daemon != "endpoint":
        return run_daemons(args)
    real_popen = subprocess.Popen

    def popen(argv: list[str], **kw: Any) -> Any:  # twistd -> our launcher, same arguments
        if argv[0].endswith("/twistd") and not args.twistd:
            argv = [sys.executable, "-c", LAUNCHER, *argv[1:]]
        return real_popen(argv, **kw)

    bench.subprocess.Popen = popen  # type: ignore[assignment,misc]
    runs = [(v, REPO, v) for v in args.variants]
    if args.baseline:
        runs.append(("baseline", Path(args.baseline).resolve(), ""))
    rss: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in runs}
    bare: list[tuple[float, float]] = []
    for _ in range(args.rounds):
        for name, repo, steps in runs:
            os.environ["PKTLAB_RSS_VARIANT"] = steps
            with tempfile.TemporaryDirectory() as tmp:
                ep = bench.Endpoint(Path(tmp), tls=True, repo=repo)
                time.sleep(args.settle)
                rss[name].append(mib(bench.smaps_kib(ep.proc.pid)))
                ep.stop()
        bare.append(mib(bench.bare_reactor_smaps_kib()))
    base, base_anon = (statistics.median(col) for col in zip(*bare, strict=True))
    print(f"{'':24s} {'resident':>10s} {'anonymous':>11s} {'file':>6s}  resident each round")
    print(
        f"{'bare reactor + TLS':24s} {base:6.2f} MiB {base_anon:7.2f} MiB {base - base_anon:6.2f}"
        f"  {[round(r, 2) for r, _ in bare]}"
    )
    for name, xs in rss.items():
        m, anon = (statistics.median(col) for col in zip(*xs, strict=True))
        print(
            f"{name or '(as is)':24s} {m:6.2f} MiB {anon:7.2f} MiB {m - anon:6.2f}"
            f"  {[round(r, 2) for r, _ in xs]}  {m - base:+.2f} over bare"
            f" (anonymous {anon - base_anon:+.2f}, file {m - anon - base + base_anon:+.2f})"
        )
    if args.maps:
        compare_maps(args.variants[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
