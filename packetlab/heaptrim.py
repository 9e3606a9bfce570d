"""Give the C heap's free pages back to the kernel once a daemon has started.

Start-up (importing Twisted, OpenSSL and packetlab, deriving the wire codecs, loading
the TLS credentials) frees a good deal of what it allocated, but glibc keeps freed
blocks inside its heap for reuse, so they stay resident. `malloc_trim(0)` hands the
free pages back (idle endpoint RSS -0.8 MiB, docs/performance.md). A one-off call of
a few milliseconds: nothing on any hot path. Where the C library has no `malloc_trim`
(musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import gc
from typing import Any

__all__ = ["trim_after_startup", "trim_heap"]

#: Seconds after the reactor starts: past the listening and connecting of start-up.
STARTUP_SETTLE_S = 0.5


def trim_heap() -> bool:
    """Collect cyclic garbage, then return the C heap's free pages to the kernel. True if
    `malloc_trim` exists and released something."""
    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))


def trim_after_startup(reactor: Any, delay: float = STARTUP_SETTLE_S) -> None:
    """Call `trim_heap` once, `delay` seconds after `reactor` starts running."""
    reactor.callWhenRunning(lambda: reactor.callLater(delay, trim_heap))
