#!/usr/bin/env python3
"""Run twistd with a SIGUSR1 handler that appends the allocator's view of the process to
a file: RSS, glibc heap size, bytes in use and free (mallinfo2), mmapped bytes, Python's
allocated blocks and object count, the garbage collector's counts. Used by
stress/memgrowth.py and stress/soak.py (`--probe`) to tell a leak (bytes in use grow)
from an allocator high-water mark (in use flat, free space grows, then stays).

Each row also counts open descriptors and the reactor's pending timers (a timer per
session that is never cancelled grows both the reactor's heap and what it keeps alive).

With PKTLAB_TRACEMALLOC=FRAMES in the environment, tracemalloc starts (FRAMES deep) at the
first dump at least PKTLAB_TRACEMALLOC_BASE_S seconds after start (default 600; tracing
from the start makes start-up 20x slower), and each later row names what grew most since
then (what was allocated since and is still alive), by source line (one frame) or by
traceback (more), and which object types grew in number.

    python stress/twistd_mallinfo.py OUTFILE [twistd arguments...]
    python stress/twistd_mallinfo.py OUTFILE -m MODULE [arguments...]

The second form runs a module as `python -m` would (`-m packetlab xpmgr ...`: the
manager, which is no twistd plugin; stress/soak.py --system --probe).
"""

from __future__ import annotations

import collections
import ctypes
import gc
import json
import os
import signal
import sys
import time
import tracemalloc
from types import FrameType


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


_TOP = 12


def _grown(new: tracemalloc.Snapshot, old: tracemalloc.Snapshot, frames: int) -> list[str]:
    """What grew most, by source line (one frame) or by whole traceback (more): the
    callers tell one allocation site's users apart."""
    stats = new.compare_to(old, "traceback" if frames > 1 else "lineno")
    stats.sort(key=lambda s: s.size_diff, reverse=True)
    return [
        f"{s.size_diff:+d} B {s.count_diff:+d} blocks ({s.size} B now) "
        + " <- ".join(str(f) for f in reversed(s.traceback))  # most recent call first
        for s in stats[:_TOP]
        if s.size_diff > 0
    ]


def main() -> None:
    out = sys.argv[1]
    libc = ctypes.CDLL("libc.so.6")
    mallinfo2 = getattr(libc, "mallinfo2", None)  # glibc >= 2.33
    if mallinfo2 is not None:
        mallinfo2.restype = _MallInfo2
    frames = int(os.environ.get("PKTLAB_TRACEMALLOC", "0"))
    base_after = float(os.environ.get("PKTLAB_TRACEMALLOC_BASE_S", "600"))
    started = time.monotonic()
    base: dict[str, object] = {}  # the base snapshot and type counts, once taken

    def dump(signum: int, frame: FrameType | None) -> None:
        t0 = time.monotonic()
        collected = gc.collect()
        objects = gc.get_objects()
        row: dict[str, object] = {
            "t_s": round(time.monotonic() - started, 1),
            "rss_kib": _rss_kib(),
            "py_blocks": sys.getallocatedblocks(),
            "py_objects": len(objects),
            "gc_collected": collected,
            "gc_counts": [s["collections"] for s in gc.get_stats()],
            "gc_garbage": len(gc.garbage),
            "fds": len(os.listdir("/proc/self/fd")),
        }
        if "twisted.internet.reactor" in sys.modules:
            from twisted.internet import reactor

            row["timers"] = len(reactor.getDelayedCalls())
        if mallinfo2 is not None:
            m = mallinfo2()
            row |= {
                "heap_kib": m.arena // 1024,
                "in_use_kib": m.uordblks // 1024,
                "free_kib": m.fordblks // 1024,
                "mmap_kib": m.hblkhd // 1024,
            }
        if frames:
            types = collections.Counter(type(o).__name__ for o in objects)
            if not base and row["t_s"] >= base_after:  # type: ignore[operator]
                tracemalloc.start(frames)
                base.update(snap=tracemalloc.take_snapshot(), types=types, t_s=row["t_s"])
            elif base:
                snap = tracemalloc.take_snapshot()
                row["traced_kib"] = tracemalloc.get_traced_memory()[0] // 1024
                row["base_t_s"] = base["t_s"]
                row["grown_since_base"] = _grown(snap, base["snap"], frames)  # type: ignore[arg-type]
                old = base["types"]
                assert isinstance(old, collections.Counter)
                grown = sorted(((n - old[k], k, n) for k, n in types.items()), reverse=True)
                row["types_grown_since_base"] = [
                    f"{k} {d:+d} ({n})" for d, k, n in grown[:_TOP] if d > 0
                ]
        del objects
        row["dump_s"] = round(time.monotonic() - t0, 2)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")

    signal.signal(signal.SIGUSR1, dump)
    if sys.argv[2:3] == ["-m"]:
        import runpy

        sys.argv = [sys.argv[3], *sys.argv[4:]]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
        return
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *sys.argv[2:]]
    run()


if __name__ == "__main__":
    main()
