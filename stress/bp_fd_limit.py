"""A real `twistd pktproxy` and `twistd pktbroker` under a descriptor limit (`prlimit
--nofile=N`), flooded past it: backlog registrations from one client without a
certificate (proxy), subscriptions on a public channel from one self-made key (broker).

For each daemon: resident memory and descriptors at rest, with the flood open and after
it closed; how many the daemon took and refused; `EMFILE` lines in its log; whether a
real endpoint is still spliced (proxy) and a real publisher still reaches a subscriber
from before the flood (broker). `--root` runs another tree's daemons (e.g. a `git
archive` of main) with this script, to compare. Uses the test helpers of
tests/integration (a `pktlab init` home in a temporary directory).

    .venv/bin/python stress/bp_fd_limit.py --nofile 1024

Loopback only; every process and socket is closed at the end.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nofile", type=int, default=1024, help="the daemons' descriptor limit")
    ap.add_argument("--extra", type=int, default=100, help="attempts past --nofile")
    ap.add_argument("--root", type=Path, default=HERE, help="the tree whose daemons run")
    a = ap.parse_args()
    root = a.root.resolve()
    sys.path[:0] = [str(root / "tests" / "integration"), str(root / "tests"), str(root)]
    os.environ["PYTHONPATH"] = str(root)
    with tempfile.TemporaryDirectory(prefix="bp_fd_limit.") as tmp:
        run(Path(tmp), a.nofile, a.nofile + a.extra, str(root))


def run(tmp: Path, nofile: int, attempts: int, root: str) -> None:
    import broker_world
    import pxworld
    from procstat import open_fds, rss_kib
    from tls_world import pktlab_init

    wrap = ["prlimit", f"--nofile={nofile}", "--"]
    px_twistd, b_twistd = pxworld.twistd, broker_world.twistd
    pxworld.twistd = lambda: [*wrap, *px_twistd()]
    broker_world.twistd = lambda: [*wrap, *b_twistd()]
    pxworld.ENV["PYTHONPATH"] = root

    def state(pid: int) -> str:
        return f"{rss_kib(pid)} KiB, {open_fds(pid)} fds"

    home = pktlab_init(tmp / "home")
    proxy = pxworld.ProxyProc(tmp, home.root)
    try:
        pid = proxy.proc.pid
        time.sleep(1)
        print(f"pktproxy, nofile {nofile}: at rest {state(pid)}")

        def one(i: int) -> socket.socket | None:
            try:
                return pxworld.register(proxy.setup, f"k{i // 60}", timeout=30)
            except (AssertionError, OSError):
                return None

        t0 = time.monotonic()
        with ThreadPoolExecutor(12) as pool:  # each ENORES is held 1 s
            got = list(pool.map(one, range(attempts)))
        backlogs = [s for s in got if s is not None]
        print(f"  {attempts} registrations in {time.monotonic() - t0:.1f} s: "
              f"{len(backlogs)} backlogs; flood open: {state(pid)}")  # fmt: skip
        print(f"  a real endpoint: {splice(proxy.endpoints, backlogs)}")
        for s in backlogs:
            s.close()
        time.sleep(2)
        print(f"  after: {state(pid)}; EMFILE lines: {proxy.text().count('EMFILE')}")
    finally:
        proxy.stop()
    broker = broker_world.BrokerProcess(home, tmp, error_delay=0)
    try:
        pid = broker.proc.pid  # type: ignore[union-attr]
        time.sleep(1)
        print(f"pktbroker, nofile {nofile}: at rest {state(pid)}")
        good = broker_world.Identity(home, tmp, "good").subscribe(broker.sub_port)
        subs, refused, stopped = subscribe(broker, broker_world.Identity(home, tmp, "f"), attempts)
        print(f"  {attempts} subscriptions: {len(subs)} taken, {refused} refused"
              f"{', then ' + stopped if stopped else ''}; flood open: {state(pid)}")  # fmt: skip
        print(f"  a real publisher: {broker_world.publisher_heard(home, broker, good, 'fdlimit')}")
        for c in subs:
            c.close()
        good.close()
        time.sleep(2)
        print(f"  after: {state(pid)}; EMFILE lines: {broker.output().count('EMFILE')}")
    finally:
        broker.stop()


def splice(port: int, backlogs: list[socket.socket]) -> str:
    from pxworld import client_hello, receive_hello

    try:
        ep = socket.create_connection(("127.0.0.1", port), timeout=5)
        hello = client_hello("k0")
        ep.sendall(hello)
        ready, _, _ = select.select(backlogs, [], [], 5)
        if not ready:
            return "not spliced (no backlog got its hello)"
        receive_hello(ready[0], hello)
        ep.close()
        return "spliced"
    except OSError as e:
        return f"not spliced ({e})"


def subscribe(broker: Any, who: Any, attempts: int) -> tuple[list[Any], int, str]:
    from broker_world import RawClient

    from packetlab import wire

    subs, refused = [], 0
    for _ in range(attempts):
        try:
            c = RawClient(broker.sub_port, who.cert_path, who.key_path)
            c.send(wire.Xsub([b"public"], bytes(32), b""))
            if c.recv() == wire.Result(0):
                subs.append(c)
            else:
                refused += 1
                c.close()
        except (OSError, ConnectionError) as e:
            return subs, refused, repr(e)
    return subs, refused, ""


if __name__ == "__main__":
    main()
