"""Fewer cyclic-GC passes while a burst of long-lived objects is made.

A packet train makes a Deferred, its callbacks and a tag entry for each packet, all alive
until the packet's ntag comes: with the default gen-0 threshold (700) a 100,000-packet
train ran ~5,500 collections, and the older generations' passes traverse every pending
packet again, ~40 % of the train's CPU (docs/performance.md, "Session 19: start-up").
`fewer_collections` raises the gen-0 threshold for its duration: the collector still runs
(every `gen0` net allocations, so cyclic garbage stays bounded), just ~15x less often.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["TRAIN_GEN0", "fewer_collections"]

#: Gen-0 threshold during a train: 374 collections for 100,000 packets (100,000 gave the
#: same CPU with 36), the same peak RSS as the default 700.
TRAIN_GEN0 = 10_000

_depth = 0  # open `fewer_collections` blocks (trains interleave on one reactor)
_saved: tuple[int, int, int] | None = None  # the thresholds before the first one
_ours: tuple[int, int, int] | None = None  # the thresholds it set


@contextlib.contextmanager
def fewer_collections(gen0: int = TRAIN_GEN0) -> Iterator[None]:
    """Gen-0 threshold at least `gen0` until the last open block ends (blocks may end in
    any order: async trains), then as it was, unless someone else changed it meanwhile.
    A threshold of 0 (collection off) is left alone."""
    global _depth, _saved, _ours
    if _depth == 0:
        _saved = gc.get_threshold()
        g0, g1, g2 = _saved
        _ours = (gen0, g1, g2) if 0 < g0 < gen0 else None
        if _ours is not None:
            gc.set_threshold(*_ours)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _ours is not None and _saved is not None:
            if gc.get_threshold() == _ours:
                gc.set_threshold(*_saved)
            _ours = _saved = None
