"""Which manager holds a snikey, and when a backlog of it was last seen (sans-IO).

While a snikey is in use, another manager's `xreg` for it is refused: otherwise anyone
could fill its cap with backlogs of their own, the owner's replenishments would get ENORES,
and its endpoints would be spliced to a stranger (whose TLS they refuse; the reference
endpoint then drops the experiment for good).

The table is bounded (registrations cost a peer one TLS handshake each, so a flood can
name as many snikeys as it likes). When it is trimmed, the entries go from whoever holds
the most, oldest first: a flood from one manager (one agent key, or one address without a
certificate) ages out its own entries, never the owner of a snikey it wants to take. Only
a flood from more distinct managers than the bound holds could reach a real owner's entry;
a snikey with idle backlogs is never trimmed.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["SnikeyOwners"]

_NOBODY = ""  # seen by an endpoint's ClientHello only: no registration named an owner


class SnikeyOwners:
    def __init__(self, bound: int, idle_backlogs: Callable[[str], int]) -> None:
        self.bound = bound
        self._idle = idle_backlogs
        self._seen: dict[str, float] = {}  # snikey -> last seen; oldest first
        self._owner: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, snikey: str, now: float, owner: str | None = None) -> None:
        """A backlog of `snikey` was registered (by `owner`) or used at `now`."""
        self._seen.pop(snikey, None)
        self._seen[snikey] = now
        if owner is not None:
            self._owner[snikey] = owner
        if len(self._seen) > self.bound:
            self._trim(len(self._seen) // 2)

    def last_seen(self, snikey: str) -> float | None:
        return self._seen.get(snikey)

    def owner(self, snikey: str) -> str | None:
        return self._owner.get(snikey)

    def _trim(self, drop: int) -> None:
        """Drop up to `drop` entries without idle backlogs: lower the biggest holders to a
        common level (water-filling), each losing its oldest entries first."""
        held: dict[str, list[str]] = {}
        for key in self._seen:  # oldest first
            if not self._idle(key):
                held.setdefault(self._owner.get(key, _NOBODY), []).append(key)
        sizes = sorted((len(keys) for keys in held.values()), reverse=True)
        level = _level(sizes, drop)
        for keys in held.values():
            over = len(keys) - level
            for key in keys[: max(over, 0)]:
                del self._seen[key]
                self._owner.pop(key, None)


def _level(sizes: list[int], drop: int) -> int:
    """The highest level L with sum(max(0, s - L)) >= drop, for `sizes` in descending
    order (0 when even emptying everything removes fewer than `drop`)."""
    removed = 0
    for i, size in enumerate(sizes):
        below = sizes[i + 1] if i + 1 < len(sizes) else 0
        # lowering the i+1 biggest from `size` to `below` removes (i+1)*(size-below)
        step = (i + 1) * (size - below)
        if removed + step >= drop:
            need = drop - removed
            return size - -(-need // (i + 1))  # ceil: at least `need` more
        removed += step
    return 0
