"""Backlog connections by snikey, and the counters an operator reads (sans-IO).

A manager registers idle "backlog" connections for its snikey (§6.1); an endpoint whose
ClientHello names that snikey takes the oldest one. Both per-snikey and total counts are
capped, so registrations cannot grow the proxy without bound.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["BacklogRegistry", "ProxyStats", "RegistryFull"]

C = TypeVar("C")


class RegistryFull(Exception):
    pass


class BacklogRegistry(Generic[C]):
    def __init__(self, *, per_snikey: int = 64, total: int = 4096) -> None:
        self.per_snikey = per_snikey
        self.total_cap = total
        self._by_key: dict[str, OrderedDict[int, C]] = {}
        self._total = 0

    def full(self, snikey: str) -> str | None:
        """Why one more backlog for `snikey` would be refused, or None."""
        if self._total >= self.total_cap:
            return f"{self._total} backlog connections (cap {self.total_cap})"
        n = self.count(snikey)
        if n >= self.per_snikey:
            return f"{n} backlog connections for this snikey (cap {self.per_snikey})"
        return None

    def add(self, snikey: str, conn: C) -> None:
        """Raises RegistryFull (with the reason) when a cap is reached."""
        why = self.full(snikey)
        if why is not None:
            raise RegistryFull(why)
        self._by_key.setdefault(snikey, OrderedDict())[id(conn)] = conn
        self._total += 1

    def take(self, snikey: str) -> C | None:
        """The oldest backlog of `snikey` (removed), or None."""
        slot = self._by_key.get(snikey)
        if not slot:
            return None
        _, conn = slot.popitem(last=False)
        self._forget(snikey, slot)
        return conn

    def discard(self, snikey: str, conn: C) -> bool:
        slot = self._by_key.get(snikey)
        if slot is None or slot.pop(id(conn), None) is None:
            return False
        self._forget(snikey, slot)
        return True

    def _forget(self, snikey: str, slot: OrderedDict[int, C]) -> None:
        self._total -= 1
        if not slot:
            del self._by_key[snikey]

    def count(self, snikey: str) -> int:
        return len(self._by_key.get(snikey, ()))

    @property
    def total(self) -> int:
        return self._total

    @property
    def snikeys(self) -> int:
        return len(self._by_key)


@dataclass
class ProxyStats:
    registrations: int = 0  # backlog connections that completed registration
    registration_failures: int = 0
    setup_busy: int = 0  # setup connections refused at once: too many registering
    splices: int = 0  # endpoints connected to a backlog
    active_splices: int = 0
    bytes_to_manager: int = 0  # endpoint -> manager
    bytes_to_endpoint: int = 0
    refusals: Counter[str] = field(default_factory=Counter)  # endpoint refusals by reason
    enores: Counter[str] = field(default_factory=Counter)  # xregs answered ENORES, by cause

    def as_dict(
        self,
        registry: BacklogRegistry[object] | None = None,
        now: dict[str, int] | None = None,
    ) -> dict[str, object]:
        """The counters; `now` adds gauges of the moment (e.g. connections pending)."""
        d: dict[str, object] = {
            "registrations": self.registrations,
            "registration_failures": self.registration_failures,
            "setup_busy": self.setup_busy,
            "splices": self.splices,
            "active_splices": self.active_splices,
            "bytes_to_manager": self.bytes_to_manager,
            "bytes_to_endpoint": self.bytes_to_endpoint,
            "refusals": dict(sorted(self.refusals.items())),
            "enores": dict(sorted(self.enores.items())),
        }
        if registry is not None:
            d["backlog"] = registry.total
            d["snikeys"] = registry.snikeys
        d.update(now or {})
        return d

    def line(
        self, registry: BacklogRegistry[object] | None = None, now: dict[str, int] | None = None
    ) -> str:
        d = self.as_dict(registry, now)
        by_cause = {name: d.pop(name) for name in ("refusals", "enores")}
        parts = [f"{k}={v}" for k, v in d.items()]
        for name, counts in by_cause.items():
            parts.append(f"{name}=" + (",".join(f"{k}:{v}" for k, v in counts.items()) or "0"))  # type: ignore[attr-defined]
        return " ".join(parts)
