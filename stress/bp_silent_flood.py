"""Silent TCP connections (they connect and never speak) against a real `twistd pktbroker`
and `twistd pktproxy`: what they cost, and whether a real client still gets through.

For each daemon: resident memory and descriptors at rest, with the flood open, and after
it closed; then, for repeated rounds, whether memory grows round after round (a leak) or
stays (the allocator keeps its pages). A real subscriber (broker) or a real registration
and splice (proxy) is timed while the flood is open. Uses the test helpers of
tests/integration (a `pktlab init` home in a temporary directory).

    .venv/bin/python stress/bp_silent_flood.py -n 3000 --rounds 3

Loopback only; every process and socket is closed at the end.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(HERE / "tests" / "integration"), str(HERE / "tests")]

from broker_world import BrokerProcess, Identity  # noqa: E402
from procstat import open_fds, rss_kib  # noqa: E402
from pxworld import ProxyProc, client_hello, register  # noqa: E402
from tls_world import pktlab_init  # noqa: E402


def flood(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]


def rounds(pid: int, port: int, n: int, count: int, real: Callable[[], None]) -> None:
    print(f"  at rest: {rss_kib(pid)} KiB, {open_fds(pid)} fds")
    for i in range(count):
        socks = flood(port, n)
        time.sleep(2)
        during = rss_kib(pid), open_fds(pid)
        t0 = time.monotonic()
        real()
        took = time.monotonic() - t0
        for s in socks:
            s.close()
        time.sleep(3)
        print(
            f"  round {i}: {n} silent: {during[0]} KiB, {during[1]} fds; real client served "
            f"in {took:.2f} s; after: {rss_kib(pid)} KiB, {open_fds(pid)} fds"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3000, help="silent connections per round")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        home = pktlab_init(tmp / "home")
        broker = BrokerProcess(home, tmp, error_delay=0)
        try:
            ident = Identity(home, tmp, "flood")
            pid = broker.proc.pid if broker.proc else 0
            print(f"twistd pktbroker, subscribe port (pid {pid})")

            def subscriber() -> None:
                ident.subscribe(broker.sub_port).close()

            rounds(pid, broker.sub_port, a.n, a.rounds, subscriber)
        finally:
            broker.stop()
        proxy = ProxyProc(tmp, home.root)
        try:

            def pair() -> None:
                backlog = register(proxy.setup, "floodkey")
                ep = socket.create_connection(("127.0.0.1", proxy.endpoints), timeout=10)
                ep.sendall(client_hello("floodkey"))
                backlog.settimeout(10)
                assert backlog.recv(65536)
                ep.close()
                backlog.close()

            print(f"twistd pktproxy, endpoints port (pid {proxy.proc.pid})")
            rounds(proxy.proc.pid, proxy.endpoints, a.n, a.rounds, pair)
            print(f"  counters: {proxy.counters()}")
        finally:
            proxy.stop()


if __name__ == "__main__":
    main()
