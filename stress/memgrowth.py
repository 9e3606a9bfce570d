#!/usr/bin/env python3
"""Leak or allocator high-water mark? Repeat one workload against a real pktendpoint for
a long time and print its RSS at checkpoints (issue 15, item 4).

A leak grows with the number of rounds for as long as the run lasts; a high-water mark
grows for a while and then stays flat, because the allocator reuses the memory it kept.

    .venv/bin/python stress/memgrowth.py cycles --rounds 3000
    .venv/bin/python stress/memgrowth.py bigbody --rounds 200
    .venv/bin/python stress/memgrowth.py fuzz --rounds 1000000
    MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=131072 .venv/bin/python stress/memgrowth.py ...

Scenarios:
  cycles   connect, start, EOF (a connect/disconnect cycle)
  bigbody  a session sending one ~16 MiB frame (an mwrite, an unknown type, alternately)
  fuzz     random and mutated frames, 1000 per session (a malformed one ends the session)
  tinysends  BufMax filled with empty sends queued for 2**64-1 ns, then EOF
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# tests/integration first: its conftest (EndpointProcess, RawController) is the one meant,
# not tests/conftest.py (which shadowed it once that file existed: an ImportError at start)
sys.path[:0] = [str(REPO), str(REPO / "tests" / "integration"), str(REPO / "tests")]

import conftest  # noqa: E402
from conftest import DEFAULT_CONFIG, EndpointProcess, RawController  # noqa: E402
from procstat import rss_kib  # noqa: E402

from packetlab import wire  # noqa: E402
from packetlab.endpoint.budget import SEND_BUF_OVERHEAD  # noqa: E402
from packetlab.wire import vmem  # noqa: E402

MIB_COLUMNS = (
    ("RSS", "rss_kib"),
    ("heap", "heap_kib"),
    ("in use", "in_use_kib"),
    ("free", "free_kib"),
    ("mmap", "mmap_kib"),
)
BIG = (1 << 24) - 64
LO = b"\x7f\x00\x00\x01"  # a body just under the 16 MiB frame limit


def cycles(c: RawController, n: int, rng: random.Random) -> int:
    c.start()
    c.close()
    return 1


def bigbody(c: RawController, n: int, rng: random.Random) -> int:
    c.start()
    if n % 2:
        # An unknown type: the endpoint reads the whole body, answers ECTLNOTSUP.
        c.send(bytes([0xEE]) + BIG.to_bytes(3, "big"), bytes(BIG))
    else:
        c.send(wire.Mwrite(addr=vmem.SYS_BASE, data=bytes(BIG)))  # read-only bytes
    c.response(timeout=60)
    c.close()
    return 1


def tinysends(c: RawController, n: int, rng: random.Random) -> int:
    """BufMax filled with empty sends for 2**64-1 ns (~72k for 8 MiB), then EOF."""
    c.start()
    c.ok(wire.Nopen(sktid=1, family=4, proto=17, rbufsz=1 << 20, laddr=LO, lport=0))
    bufmax = int.from_bytes(c.mread(vmem.BUFMAX.addr, 4), "big")
    count = bufmax // SEND_BUF_OVERHEAD
    send = wire.Nsend(
        sktid=1, family=4, proto=17, time=(1 << 64) - 1, tag=0, data=b"", raddr=LO, rport=9
    )
    c.send(wire.encode(send) * count)
    for _ in range(count):
        c.response(timeout=60)
    c.close()
    return 1


def fuzz_frames(rng: random.Random, count: int) -> list[bytes]:
    """Valid-looking frames of known types with mutated bodies, and random frames."""
    # No yield: its resume hint would send the endpoint away for up to 2**64 ns.
    yield_type = int(wire.MsgType.YIELD)
    types = sorted(set(wire.BY_TYPE) - {yield_type})
    seeds = [
        wire.encode(m)
        for m in (
            wire.Mread(addr=vmem.HOSTID.addr, len=16),
            wire.Mwrite(addr=vmem.skt_addr(1, vmem.SKT_NOTIFMASK), data=b"\0\0"),
            wire.Nopen(sktid=1, family=4, proto=17, rbufsz=4096, laddr=bytes(4), lport=0),
            wire.Nsend(
                sktid=1, family=4, proto=17, time=0, tag=1, data=b"x", raddr=b"\x7f\0\0\1", rport=9
            ),
            wire.Nclose(sktid=1),
        )
    ]
    out = []
    for _ in range(count):
        r = rng.random()
        if r < 0.5:
            body = bytearray(rng.choice(seeds)[4:])
            for _ in range(rng.randint(1, 4)):
                if body:
                    body[rng.randrange(len(body))] = rng.randrange(256)
            t = rng.choice(types)
        elif r < 0.9:
            body = bytearray(rng.randbytes(rng.randint(0, 64)))
            t = rng.choice(types)
        else:
            body = bytearray(rng.randbytes(rng.randint(0, 256)))
            t = rng.randrange(256)
            if t == yield_type:
                continue
        out.append(bytes([t]) + len(body).to_bytes(3, "big") + body)
    return out


def fuzz(c: RawController, n: int, rng: random.Random) -> int:
    c.start()
    frames = fuzz_frames(rng, 1000)
    try:
        c.send(b"".join(frames))
        c.closed_by_peer(timeout=0.3)  # a malformed frame ends the session early
    except OSError:
        pass  # reset after the endpoint closed (the rest was unread)
    c.close()
    return len(frames)


def allocator(pid: int, probe: Path) -> dict[str, int]:
    """Ask the endpoint (SIGUSR1) for its allocator figures; wait for the new line."""
    lines = len(probe.read_text().splitlines())
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = probe.read_text().splitlines()
        if len(rows) > lines:
            return dict(json.loads(rows[-1]))
        time.sleep(0.05)
    return {
        "rss_kib": rss_kib(pid),
        "heap_kib": 0,
        "in_use_kib": 0,
        "free_kib": 0,
        "mmap_kib": 0,
        "py_objects": 0,
    }


SCENARIOS: dict[str, Callable[[RawController, int, random.Random], int]] = {
    "cycles": cycles,
    "bigbody": bigbody,
    "fuzz": fuzz,
    "tinysends": tinysends,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--rounds", type=int, default=1000, help="sessions (fuzz: frames) [1000]")
    ap.add_argument("--checkpoints", type=int, default=10, help="RSS readings [10]")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # still stop the endpoint
    run = SCENARIOS[args.scenario]
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="pktlab-memgrowth-"))
    probe = workdir / "mallinfo.jsonl"
    probe.touch()
    # The endpoint runs under stress/twistd_mallinfo.py: SIGUSR1 writes the allocator's view.
    conftest.twistd = lambda: [
        sys.executable,
        str(Path(__file__).with_name("twistd_mallinfo.py")),
        str(probe),
    ]
    ep = EndpointProcess(workdir, DEFAULT_CONFIG, args=["--reconnect-delay", "0"])
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(f"{args.scenario}: {args.rounds} rounds, malloc env {malloc or 'default'}")
    done = sessions = 0
    every = max(1, args.rounds // args.checkpoints)
    next_mark = 0
    t0 = time.monotonic()
    readings: list[tuple[int, dict[str, int]]] = []
    try:
        measure = False
        while True:
            c = ep.accept()
            if measure:
                # The endpoint connected again: the last session is completely torn down.
                info = allocator(ep.pid, probe)
                readings.append((done, info))
                print(
                    f"  {done:>9} {'frames' if args.scenario == 'fuzz' else 'rounds'} "
                    f"({sessions:>6} sessions, {time.monotonic() - t0:5.0f} s): "
                    + "  ".join(f"{name} {info[key] / 1024:6.1f}" for name, key in MIB_COLUMNS)
                    + f" MiB  py objects {info['py_objects']}",
                    flush=True,
                )
                next_mark += every
            if done >= args.rounds:
                c.close()
                break
            done += run(c, sessions, rng)
            sessions += 1
            ep.controllers.clear()
            measure = done >= next_mark or done >= args.rounds
    finally:
        alive = ep.proc.poll() is None
        ep.stop()
    first, mid, last = readings[0][1], readings[len(readings) // 2][1], readings[-1][1]
    print(
        f"RSS {first['rss_kib'] / 1024:.1f} -> {mid['rss_kib'] / 1024:.1f} (half-way) -> "
        f"{last['rss_kib'] / 1024:.1f} MiB; second half: RSS "
        f"{(last['rss_kib'] - mid['rss_kib']) / 1024:+.2f} MiB, heap in use "
        f"{(last['in_use_kib'] - mid['in_use_kib']) / 1024:+.2f} MiB, Python objects "
        f"{last['py_objects'] - mid['py_objects']:+d}; endpoint {'alive' if alive else 'DIED'}"
    )
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
