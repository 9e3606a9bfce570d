"""Slow-loris flood against `twistd pktproxy`: what N never-finished ClientHellos cost.

Starts the proxy of each source tree given (``.`` for this checkout, or a baseline
checkout such as ``.bench/main``) on loopback, opens N connections to its endpoints port,
each sending ~16 KB of a ClientHello that announces 16379 bytes and never completes, then
prints the proxy's resident memory and descriptors before and after, and how many of the
flood's connections it still holds. A long --hello-timeout keeps them all pending.

    .venv/bin/python stress/proxy_slowloris.py -n 4000 . .bench/main

Loopback only; every process and socket is closed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sample(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def flood(src: Path, home: Path, n: int, log_dir: Path) -> str:
    log = (log_dir / f"pktproxy-{src.name or 'here'}-{os.getpid()}.log").open("w+")
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
            "--pidfile=", "--logfile=-", "pktproxy", "--home", str(home),
            "--setup", "tcp:0:interface=127.0.0.1", "--endpoints", "tcp:0:interface=127.0.0.1",
            "--hello-timeout", "120", "--stats-interval", "0"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(src.resolve()))
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=src)
    socks: list[socket.socket] = []
    try:
        port = None
        for _ in range(300):
            time.sleep(0.1)
            log.seek(0)
            m = re.search(r"endpoints port listening on 127\.0\.0\.1:(\d+)", log.read())
            if m:
                port = int(m.group(1))
                break
        if port is None:
            raise SystemExit(f"{src}: the proxy did not start:\n{log.read()[-2000:]}")
        time.sleep(1)
        before = sample(proc.pid)
        data = b"\x16\x03\x01\x3f\xfb" + b"\x01\x00\x3f\xf7" + bytes(16000)
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            try:
                s.send(data)
            except BlockingIOError:
                pass
            socks.append(s)
        time.sleep(3)
        after = sample(proc.pid)
        held = 0
        for s in socks:
            try:
                held += s.recv(1) != b""
            except BlockingIOError:
                held += 1
            except OSError:
                pass
        log.seek(0)
        text = log.read()
        return (
            f"{src}: {n} slow ClientHellos: RSS {before[0]} -> {after[0]} KiB "
            f"(+{(after[0] - before[0]) / 1024:.1f} MiB), descriptors {before[1]} -> {after[1]}, "
            f"flood connections held {held}, 'closing the oldest' log lines "
            f"{text.count('closing the oldest')}, tracebacks {text.count('Traceback')}"
        )
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(10)
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=4000, help="connections [4000]")
    ap.add_argument("--home", help="a `pktlab init` home (default: a fresh one)")
    ap.add_argument("sources", nargs="+", type=Path, help="source trees to run the proxy from")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(args.home) if args.home else Path(tmp) / "home"
        if not args.home:
            subprocess.run([sys.executable, "-m", "packetlab", "init", "--home", str(home)],
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        for src in args.sources:
            print(flood(src, home, args.n, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
