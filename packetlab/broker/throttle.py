"""Slowing down misbehaving clients (BROKER-PROXY-OBSERVED.md §1.4, §5). Sans-IO.

A reference endpoint reconnects at once, forever, after any error result, close or TLS
failure; only a refused TCP connect makes it pause. Closing faster only makes it spin. So
the broker answers an error late: the delay doubles with each error from the same client
(its agent key, else its address) within `window` seconds, from `base` up to `cap`. The
table is bounded: the oldest entries go first.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["Throttle"]


class Throttle:
    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        window: float = 120.0,
        max_entries: int = 65536,
    ) -> None:
        self.base = base
        self.cap = cap
        self.window = window
        self.max_entries = max_entries
        self._errors: OrderedDict[bytes | str, tuple[int, float]] = OrderedDict()

    def delay(self, who: bytes | str, now: float) -> float:
        """Record an error by `who` at `now`; the seconds to hold its answer."""
        count, last = self._errors.pop(who, (0, now))
        count = 1 if now - last > self.window else count + 1
        self._errors[who] = (count, now)
        while len(self._errors) > self.max_entries:
            self._errors.popitem(last=False)
        if self.base <= 0:
            return 0.0
        return min(self.cap, self.base * 2 ** min(count - 1, 32))

    def forget(self, who: bytes | str) -> None:
        """A client that subscribed or published correctly starts afresh."""
        self._errors.pop(who, None)

    def __len__(self) -> int:
        return len(self._errors)
