"""The floor under every round-trip figure of bench_endpoint: two Python processes that do
nothing but bounce 16 bytes over loopback TCP, one at a time, as the benchmark's
controller and an endpoint bounce an mread and its mdata.

Each round trip wakes the other process twice (once each way). On a VM whose idle vCPUs
halt (cpuidle ``haltpoll`` with ``guest_halt_poll_ns = 0`` here), waking a process that
sleeps on the *other* vCPU costs an inter-processor interrupt and a halt exit through the
hypervisor; on the *same* vCPU it is a local context switch; and a receiver that spins on
a non-blocking socket never sleeps at all. The modes:

* ``split``: both block, on different CPUs (what bench_endpoint does by default);
* ``pinned``: both block, on one CPU;
* ``spin``: both on different CPUs, the "controller" spins on its socket instead of
  blocking (the "endpoint" still blocks, as a Twisted reactor in epoll does).

Run from the repository root: ``python -m benchmarks.bench_wakeup [--count N]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import Any

from benchmarks.common import environment, markdown_table, percentile, write_json

MSG = bytes(16)


def _echo(sock: socket.socket) -> None:
    while True:
        data = sock.recv(64)
        if not data:
            return
        sock.sendall(data)


def run(mode: str, count: int) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    ls = socket.create_server(("127.0.0.1", 0))
    port = ls.getsockname()[1]
    pid = os.fork()
    if pid == 0:  # the "endpoint": blocks in recv, answers at once
        try:
            os.sched_setaffinity(0, {cpus[0]} if mode == "pinned" else {cpus[-1]})
            conn = socket.create_connection(("127.0.0.1", port))
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _echo(conn)
        finally:
            os._exit(0)
    mine = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {cpus[0]})
        sock, _ = ls.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        spin = mode == "spin"
        sock.setblocking(not spin)
        recv, send, clock = sock.recv, sock.send, time.perf_counter_ns
        rtts: list[int] = []
        for i in range(count + 200):  # the first 200: warm-up
            t0 = clock()
            send(MSG)
            while True:
                try:
                    if recv(64):
                        break
                except BlockingIOError:
                    continue
            if i >= 200:
                rtts.append(clock() - t0)
        sock.close()
    finally:
        os.sched_setaffinity(0, mine)
        os.waitpid(pid, 0)
        ls.close()
    return {"count": count, **{f"p{q}_us": percentile(rtts, q) / 1e3 for q in (10, 50, 90, 99)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3, help="modes interleaved, this many times")
    ap.add_argument("--json")
    args = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        print("needs 2 CPUs", file=sys.stderr)
        return 2
    modes = ("split", "pinned", "spin")
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for m in modes:
            runs[m].append(run(m, args.count))
    rows = []
    for m in modes:
        p50s = sorted(r["p50_us"] for r in runs[m])
        mid = next(r for r in runs[m] if r["p50_us"] == p50s[len(p50s) // 2])
        rows.append([m, f"{mid['p50_us']:.1f}", f"{p50s[0]:.1f}-{p50s[-1]:.1f}",
                     f"{mid['p90_us']:.1f}", f"{mid['p99_us']:.1f}"])  # fmt: skip
    print(markdown_table(["mode", "round trip p50 µs", "p50 range", "p90", "p99"], rows))
    env = environment()
    print(f"\nload {env['loadavg_1min']} → {round(os.getloadavg()[0], 2)}")
    if args.json:
        write_json(args.json, {"environment": env, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
