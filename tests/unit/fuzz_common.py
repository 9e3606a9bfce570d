"""What the fuzz targets share: how an input is cut into reads (derived from the input
itself, so that a finding replays exactly)."""

from __future__ import annotations

import itertools


def _cuts(data: bytes, salt: int) -> list[int]:
    """Chunk boundaries derived from the data (a finding replays exactly)."""
    if not data:
        return []
    step = (data[0] + salt) % 23 + 1
    return list(range(step, len(data), step))


def pieces(data: bytes, salt: int = 0) -> list[bytes]:
    """`data` cut into reads of 1 to 23 bytes, the size from its first byte and `salt`."""
    bounds = [0, *_cuts(data, salt), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]
