#!/usr/bin/env python3
"""RSS over sessions that attach reflexes filling their memory (docs/reliability.md,
session 20, ep20): in one process, the endpoint's session over in-memory sockets (the
unit tests' rig), `--sessions` sessions (100) each opening `--sockets` UDP sockets (8)
with a reflex whose reflex_init grows its memory to MonitorMemoryMax (1 MiB) and fills
it, half of them detached by rdetach, the rest left to the session's end. The cyclic GC
runs as in the daemon (enabled). Prints RSS after each tenth session and the range after
the first ten, in MiB.

    .venv/bin/python stress/reflex_rss.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "unit" / "endpoint"), str(REPO / "tests")]

import test_reflex_gate as t  # noqa: E402
from ep_fakes import udp_open  # noqa: E402

from packetlab import wire  # noqa: E402
from packetlab.reflex.template import reflex_wat  # noqa: E402

# Grow to 16 pages (1 MiB) and fill what it grew (a trap, so a failed attach, if it cannot).
FILL = reflex_wat(
    "(i32.const 0)",
    init="(call $fill) (i32.const 0)",
    extra="(func $fill (local $p i32)"
    " (local.set $p (i32.mul (memory.size) (i32.const 65536)))"
    " (drop (memory.grow (i32.sub (i32.const 16) (memory.size))))"
    " (memory.fill (local.get $p) (i32.const 1) (i32.sub (i32.const 1048576) (local.get $p))))",
)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=100, help="sessions [100]")
    ap.add_argument("--sockets", type=int, default=8, help="reflexes per session [8]")
    args = ap.parse_args()
    wasm = t.w(FILL)
    seen: list[float] = []
    for n in range(1, args.sessions + 1):
        r, g = t.make_rig()
        assert t.send(r, wire.Start()) == [wire.Result(0)]
        for s in range(1, args.sockets + 1):
            assert t.send(r, udp_open(s)) == [wire.Result(0)]
            got = t.send(r, t.attach(s, wasm))
            assert got == [wire.Result(0)], got
        for s in range(1, args.sockets + 1, 2):
            assert t.send(r, t.detach(s)) == [wire.Result(0)]
        r.session.close()
        del r, g
        rss = rss_mib()
        if n > 10:
            seen.append(rss)
        if n % 10 == 0:
            print(f"session {n}: RSS {rss:.1f} MiB", flush=True)
    print(f"RSS after warm-up: {min(seen):.1f}-{max(seen):.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
