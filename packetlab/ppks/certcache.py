"""Bounded LRU caches of pure certificate work: the parse of a DER certificate, and
whether a key made a certificate's signature (both functions of their bytes only).

The same chains come back on every handshake (an endpoint reconnecting, a publisher's
xcerts checked at xcert and again at xpub): a 2-certificate chain cost ~0.44 ms to check
from DER, ~0.02 ms from the caches (docs/performance.md "Session 18"). Only certificates
of at most `MAX_CACHED_DER` bytes are kept (256 parsed, 512 signature answers: under
4 MiB in all); a stranger's certificates can evict others (a cost, never a wrong answer).
A certificate that fails to parse is not cached; a signature answer is, either way (a
function of the bytes alone).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["LRU", "MAX_CACHED_DER"]

MAX_CACHED_DER = 4096  # ppksman's certificates are 300-1,000 bytes; 100 monitors ~7 KB
K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most `size` entries; the least recently used one goes first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        v = self._d.get(key)
        if v is not None:
            self._d.move_to_end(key)
        return v

    def put(self, key: K, value: V) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)

    def clear(self) -> None:
        self._d.clear()

    def __len__(self) -> int:
        return len(self._d)
