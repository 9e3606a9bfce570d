"""What a monitor or reflex instance asks of its endpoint (`packetlab.monitor.runtime`'s
host), with nothing behind it: zero vmem, a fixed clock, timers kept in `timers`.
Subclass it where a test needs more."""

from __future__ import annotations

from typing import Any

__all__ = ["NullHost"]


class NullHost:
    def __init__(self, now: int = 0) -> None:
        self.clock = now
        self.timers: list[int] = []

    def read_vmem(self, addr: int, length: int) -> bytes:
        return bytes(length)

    def flush(self, instance: Any) -> None:
        pass

    def debug(self, instance: Any, text: str) -> None:
        pass

    def now(self) -> int:
        return self.clock

    def timer_at(self, instance: Any, when_ns: int) -> None:
        self.timers.append(when_ns)
