"""A `StringTransport` that also keeps each write apart (one write = one TLS record on a
real link: tests that check "one record per message" count them)."""

from __future__ import annotations

from twisted.internet.testing import StringTransport


class Writes(StringTransport):
    """Records each write separately in `writes`, and as StringTransport does."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        super().write(data)
