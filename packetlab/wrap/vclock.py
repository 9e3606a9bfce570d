"""The wrapped program's clock: real time minus an offset the wrapper only ever raises.

"Timing information forgery" (Marionette §6.5). The wrapped program reads its clocks
through the LD_PRELOAD shim (csrc/pktwrap_clock.c), which subtracts `offset` from
CLOCK_REALTIME/MONOTONIC/BOOTTIME (and gettimeofday, time). The offset lives in a small
shared file both sides map:

    offset 0: int64 offset_ns    written by the wrapper
    offset 8: int64 high_water   the largest virtual CLOCK_MONOTONIC value any wrapped
                                 process has read (atomic max, written by the shim)
    offset 16: int64 connect     virtual time of the program's latest TCP connect() call
    offset 24: int64 send        virtual time of its latest send on a socket (shim)

When an endpoint event is handed to the program, the wrapper asks for it to happen at
a virtual time `target` = (virtual time of the program action that caused it) + (the
interval the endpoint measured); the program's action time comes from the shim's marks
(`acted`) when they are fresh, else from when our event loop noticed it. `due(target)`
says how long to hold the event (the target is still ahead) or raises the offset so that
the program's clock reads `target` now, never below what the program has already seen:
virtual time stays monotonic.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Callable

_LAYOUT = struct.Struct("<qq")
_SLOT = struct.Struct("<q")
SIZE = 4096
CONNECT, SEND = 2, 3  # slots the shim marks
FRESH_NS = {CONNECT: 100_000_000, SEND: 20_000_000}


class VirtualClock:
    """The wrapper's side of the shared clock. Times are CLOCK_MONOTONIC ns."""

    def __init__(self, path: str | None = None, *, now: Callable[[], int] = time.monotonic_ns):
        self.path = path
        self._now = now
        self._map: mmap.mmap | None = None
        self._local = bytearray(32)  # no file: a clock nobody else reads
        self.hidden = 0  # ns taken out of the program's clock so far
        if path is not None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(fd, SIZE)
                self._map = mmap.mmap(fd, SIZE)
            finally:
                os.close(fd)

    def _read(self) -> tuple[int, int]:
        buf = self._map if self._map is not None else self._local
        offset, high = _LAYOUT.unpack_from(buf, 0)
        return int(offset), int(high)

    @property
    def offset(self) -> int:
        return self._read()[0]

    def virtual(self, real: int | None = None) -> int:
        """The program's CLOCK_MONOTONIC at real time `real` (default now)."""
        return (self._now() if real is None else real) - self._read()[0]

    def acted(self, slot: int) -> int:
        """The virtual time of the program's latest connect (CONNECT) or send (SEND) as the
        shim marked it, if that is recent (it was the action we are now handling); else
        now. Never later than now."""
        now = self.virtual()
        buf = self._map if self._map is not None else self._local
        if len(buf) < 8 * (slot + 1):
            return now
        mark = int(_SLOT.unpack_from(buf, 8 * slot)[0])
        if now - FRESH_NS[slot] < mark <= now:
            return mark
        return now

    def due(self, target: int) -> int:
        """ns to wait before an event meant for virtual time `target` is delivered (0: now,
        after raising the offset as far as needed)."""
        real = self._now()
        offset, high = self._read()
        virtual = real - offset
        if target > virtual:
            return target - virtual
        # Move the clock back to `target`, but not below what the program already saw.
        new = max(offset, real - max(target, high))
        if new != offset:
            self.hidden += new - offset
            self._write_offset(new)
        return 0

    def _write_offset(self, value: int) -> None:
        if self._map is not None:
            struct.pack_into("<q", self._map, 0, value)  # one aligned 8-byte store
        else:
            struct.pack_into("<q", self._local, 0, value)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
