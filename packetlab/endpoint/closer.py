"""Closing sockets whose release blocks, off the reactor's thread.

The kernel's release of an ``AF_PACKET`` socket (a raw PacketLab socket's capture) waits
for an RCU grace period (``synchronize_net()`` in ``packet_release``): 10-25 ms on a VM
(`benchmarks/bench_raw_close.py`). On the reactor's thread that is as long with no other
socket's scheduled send leaving and no request answered. So such a socket is closed by
one daemon thread, started at the first close; the close syscall holds no GIL. The caller
has already taken the socket out of the reactor, and forgets it: nothing else uses the
file descriptor, and a new socket may take its number at once (the kernel frees the
number before the release waits).
"""

from __future__ import annotations

import threading
from _queue import SimpleQueue  # what `queue.SimpleQueue` is, without `queue`'s imports
from typing import Protocol

__all__ = ["Closer", "close_later"]


class Closable(Protocol):
    def close(self) -> None: ...


class Closer:
    """One thread closing what it is given, in order."""

    def __init__(self, name: str = "pktlab close") -> None:
        self._name = name
        self._jobs: SimpleQueue[Closable] | None = None

    def __call__(self, sock: Closable) -> None:
        jobs = self._jobs
        if jobs is None:
            jobs = self._jobs = SimpleQueue()
            threading.Thread(target=self._run, args=(jobs,), name=self._name, daemon=True).start()
        jobs.put(sock)

    @staticmethod
    def _run(jobs: SimpleQueue[Closable]) -> None:
        while True:
            sock = jobs.get()
            try:
                sock.close()
            except OSError:  # already gone: nothing is left to release
                pass
            del sock


#: The endpoint's closer (`RawIO` hands it its capture socket).
close_later = Closer()
