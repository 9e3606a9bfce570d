"""The one FIFO of frames to the controller: responses and notifications (PROTOCOL.md §1.1).

Frames go straight to the writer while the transport takes them; once it pauses us
(its buffer is full) they queue here, in order. A frame may carry a budget charge (an
ndata's receive cost): the charge is given back when the frame is handed to the
transport (§3.5: "released when flushed to the controller socket").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from packetlab.endpoint.sockets import Skt

__all__ = ["Outbox"]

Release = Callable[[Skt | None, int], None]


def _no_writer(frame: bytes) -> None:
    raise RuntimeError("outbox has no writer")


class Outbox:
    __slots__ = ("_q", "_release", "on_drain", "paused", "writer")

    def __init__(self, release: Release) -> None:
        self._q: deque[tuple[bytes, Skt | None, int]] = deque()
        self._release = release
        self.writer: Callable[[bytes], object] = _no_writer
        self.paused = True  # until a transport is attached
        self.on_drain: Callable[[], object] | None = None

    def __len__(self) -> int:
        return len(self._q)

    def put(self, frame: bytes, skt: Skt | None = None, cost: int = 0) -> None:
        if not self.paused and not self._q:
            self.writer(frame)
            if cost:
                self._release(skt, cost)
        else:
            self._q.append((frame, skt, cost))

    def attach(self, writer: Callable[[bytes], object]) -> None:
        self.writer = writer
        self.resume()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.drain()

    def drain(self) -> None:
        q = self._q
        write = self.writer
        release = self._release
        while q and not self.paused:
            frame, skt, cost = q.popleft()
            write(frame)
            if cost:
                release(skt, cost)
        if self.on_drain is not None:
            self.on_drain()

    def clear(self) -> None:
        """Drop everything (session over), giving every charge back."""
        q = self._q
        while q:
            _, skt, cost = q.popleft()
            if cost:
                self._release(skt, cost)
