"""Connections past TLS whose setup answer has not come, oldest first: past the cap, the
oldest is closed for each new one. A peer answering nothing holds a descriptor for the
setup's timeout; uncapped, a few thousand took every descriptor. One log line when the
cap is reached and one when the count is under 3/4 of it again, per episode. Shared by
`listener.Controller` (sessions) and `xpmgr.Manager` (workers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from twisted.logger import Logger

from packetlab.fdcap import default_pending_max

T = TypeVar("T")


class Owner(Protocol):
    log: Logger  # read at each line: an owner's logger may be replaced (tests)


class SetupCap(Generic[T]):
    def __init__(self, owner: Owner, cap: int | None = None) -> None:
        self.owner = owner
        self.cap = default_pending_max() if cap is None else cap
        self.evicted = 0  # closed for newer ones
        self._waiting: dict[T, None] = {}
        self._saturated = False

    def __len__(self) -> int:
        return len(self._waiting)

    def admit(self, item: T, close: Callable[[T, str], bool]) -> None:
        """Count `item` in the setup; past the cap, `close(oldest, why)` the oldest, which
        says False if it no longer counted (answered since: the next oldest goes)."""
        waiting = self._waiting
        while len(waiting) >= self.cap:
            oldest = next(iter(waiting))
            del waiting[oldest]
            if not close(oldest, f"closed for a newer endpoint ({self.cap} in the setup)"):
                continue
            self.evicted += 1
            if not self._saturated:
                self._saturated = True
                self.owner.log.warn(
                    "{n} endpoints in the setup (cap {cap}): closing the oldest one for "
                    "each new one",
                    n=len(waiting) + 1,
                    cap=self.cap,
                )
        waiting[item] = None

    def settled(self, item: T) -> None:
        """`item` is out of the setup (answered, or gone)."""
        waiting = self._waiting
        waiting.pop(item, None)
        if self._saturated and len(waiting) < self.cap * 3 // 4:
            self._saturated = False
            self.owner.log.info(
                "{n} endpoints in the setup, under the cap again (closed so far for "
                "newer ones: {evicted})",
                n=len(waiting),
                evicted=self.evicted,
            )
