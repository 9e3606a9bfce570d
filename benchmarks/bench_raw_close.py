"""How long an endpoint's reactor stalls when a controller closes a raw socket.

A raw PacketLab socket captures through an ``AF_PACKET`` socket, and the kernel's release of
one waits for an RCU grace period (``synchronize_net()`` in ``packet_release``): 10-20 ms on
this VM. Closed on the reactor's thread, that is 10-20 ms in which no other socket's
scheduled send leaves and no other request is answered. This times it as a controller sees
it: ``nclose`` of an open raw socket and, in the next TLS record, ``mread(TIME)``; the
figure is the time from writing the nclose to the mread's answer (an mread round trip
alone, measured the same way in the same run, is the floor).

Run as root (raw sockets) from the repository root; ``--baseline DIR`` runs a second
endpoint from another checkout in the same rounds (before and after in one run)::

    .venv/bin/python -m benchmarks.bench_raw_close --rounds 5 --count 40 --baseline .bench/base
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_endpoint import REPO, T_MDATA, T_RESULT, Endpoint
from packetlab import wire
from packetlab.wire import vmem

RAW_CONF = "TransprotoSup raw,tcp,udp\n"


def close_stall(ep: Endpoint, count: int) -> dict[str, float]:
    """`count` rounds of nopen(raw) → nclose + mread; the ms from nclose to the mdata, and
    the ms of a plain mread round trip in the same rounds."""
    mread = wire.encode(wire.Mread(addr=vmem.TIME.addr, len=8))
    nopen = wire.Nopen(sktid=3, family=4, proto=0, rbufsz=1 << 16, laddr=bytes([127, 0, 0, 1]))
    stalls: list[float] = []
    floors: list[float] = []
    for _ in range(count):
        kind, body = ep.request(nopen)
        if kind != T_RESULT or body:
            raise SystemExit(f"nopen(raw) refused: {body.hex()} (run as root)")
        t0 = time.perf_counter_ns()
        ep.request(wire.Mread(addr=vmem.TIME.addr, len=8))
        floors.append((time.perf_counter_ns() - t0) / 1e6)
        t0 = time.perf_counter_ns()
        ep.ctl.sendall(wire.encode(wire.Nclose(sktid=3)))
        ep.ctl.sendall(mread)  # its own TLS record, right behind the nclose
        while True:
            kind, body = ep.reader.next()
            if kind == T_MDATA:
                break
        stalls.append((time.perf_counter_ns() - t0) / 1e6)
        time.sleep(0.02)  # let a background close finish before the next nopen
    return {
        "close_then_mread_ms_p50": statistics.median(stalls),
        "close_then_mread_ms_max": max(stalls),
        "mread_ms_p50": statistics.median(floors),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--count", type=int, default=40, help="nclose per round (default 40)")
    ap.add_argument("--baseline", help="a checkout whose endpoint runs in the same rounds")
    ap.add_argument("--json", help="write the rounds here")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_raw_close: raw sockets need root", file=sys.stderr)
        return 2
    trees = {"ours": REPO}
    if args.baseline:
        trees["baseline"] = Path(args.baseline).resolve()
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="bench-raw-close-") as tmp:
        eps: dict[str, Endpoint] = {}
        try:
            for name, repo in trees.items():
                workdir = Path(tmp) / name
                workdir.mkdir()
                eps[name] = Endpoint(workdir, extra_conf=RAW_CONF, repo=repo)
            for r in range(args.rounds):
                for name, ep in eps.items():
                    got = close_stall(ep, args.count)
                    rounds[name].append(got)
                    print(f"round {r + 1} {name:8}", json.dumps(got), flush=True)
        finally:
            for ep in eps.values():
                ep.stop()
    print("\nmedian of the rounds' medians (ms):")
    for name, got in rounds.items():
        stall = statistics.median(g["close_then_mread_ms_p50"] for g in got)
        floor = statistics.median(g["mread_ms_p50"] for g in got)
        worst = max(g["close_then_mread_ms_max"] for g in got)
        print(
            f"  {name:8} nclose(raw) + mread {stall:.3f} (max {worst:.3f}); mread alone {floor:.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
