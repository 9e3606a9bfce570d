#!/usr/bin/env python3
"""Run twistd with a SIGUSR1 handler that appends the allocator's view of the process to
a file: RSS, glibc heap size, bytes in use and free (mallinfo2), mmapped bytes, Python's
allocated blocks and object count. Used by stress/memgrowth.py to tell a leak (bytes in
use grow) from an allocator high-water mark (in use flat, free space grows, then stays).

    python stress/twistd_mallinfo.py OUTFILE [twistd arguments...]
"""

from __future__ import annotations

import ctypes
import gc
import json
import signal
import sys
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


def main() -> None:
    out = sys.argv[1]
    libc = ctypes.CDLL("libc.so.6")
    mallinfo2 = getattr(libc, "mallinfo2", None)  # glibc >= 2.33
    if mallinfo2 is not None:
        mallinfo2.restype = _MallInfo2

    def dump(signum: int, frame: FrameType | None) -> None:
        gc.collect()
        row = {
            "rss_kib": _rss_kib(),
            "py_blocks": sys.getallocatedblocks(),
            "py_objects": len(gc.get_objects()),
        }
        if mallinfo2 is not None:
            m = mallinfo2()
            row |= {
                "heap_kib": m.arena // 1024,
                "in_use_kib": m.uordblks // 1024,
                "free_kib": m.fordblks // 1024,
                "mmap_kib": m.hblkhd // 1024,
            }
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")

    signal.signal(signal.SIGUSR1, dump)
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *sys.argv[2:]]
    run()


if __name__ == "__main__":
    main()
