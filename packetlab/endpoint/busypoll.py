"""`BusyPollUs`: after a reactor turn that handled I/O, keep polling epoll without
blocking for up to N µs before the reactor blocks in `epoll_wait` again (docs/endpoint.md).

Why: on a VM every blocking `epoll_wait` halts the vCPU, and waking it for the next
request costs tens of µs per round trip (docs/performance.md, "Why a do-nothing endpoint
takes 148 µs"). A latency-critical user trades CPU for that: while requests keep coming
within N µs of each other the endpoint never sleeps; N µs after the last I/O it blocks
again, so an idle endpoint costs nothing.

One mechanism: the reactor's epoll object is wrapped (`SpinningPoller`) so Twisted's own
`EPollReactor.doPoll` drives it; timers still fire on time because a spin never outlasts
the timeout the reactor asked for. It relies on two private Twisted details, pinned by
tests/integration/test_busypoll.py: the reactor keeps its epoll object in `_poller`, and
`doPoll` calls `_poller.poll(timeout, maxevents)` with the timeout in seconds (-1: none).
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_BUSY_POLL_US", "BusyPollUnsupported", "SpinningPoller", "check", "install"]

MAX_BUSY_POLL_US = 1_000_000  # BusyPollUs above 1 s is a mistake, not a latency trade


class BusyPollUnsupported(ValueError):
    """The reactor has no epoll object to spin on (not Twisted's epoll reactor)."""


class SpinningPoller:
    """An epoll object whose `poll` spins with timeout 0 for up to `window` seconds after
    a poll that returned events; everything else goes to the wrapped epoll object."""

    __slots__ = ("_active", "_clock", "_epoll", "on_spin", "spins", "window")

    def __init__(
        self, epoll: Any, window: float, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._epoll = epoll
        self._clock = clock
        self.window = window
        self._active = False  # the last poll returned events: spin before blocking
        self.spins = 0  # polls that found their events while spinning (for tests, benches)
        # Called on every turn of the spin, never while blocked (the reflexes' sockets
        # and rehearsal, packetlab.endpoint.reflexwarm): true when it read a socket
        # itself; the poll then returns no events, so the reactor gets its turn.
        self.on_spin: Callable[[], bool] | None = None

    def poll(self, timeout: float = -1, maxevents: int = -1) -> list[tuple[int, int]]:
        poll = self._epoll.poll
        if not self._active or timeout == 0 or self.window <= 0:
            events = poll(timeout, maxevents)
            self._active = bool(events)
            return events
        clock = self._clock
        start = clock()
        end = start + self.window
        if timeout is not None and timeout >= 0:
            end = min(end, start + timeout)  # a timer is due: never spin past it
        on_spin = self.on_spin
        while True:
            # on_spin first: a reflex socket it reads skips the reactor's dispatch.
            if on_spin is not None and on_spin():
                self.spins += 1
                return []
            events = poll(0, maxevents)
            if events:
                self.spins += 1
                return events
            now = clock()
            if now >= end:
                break
        if timeout is not None and timeout >= 0:
            timeout = max(0.0, timeout - (now - start))
        events = poll(timeout, maxevents)
        self._active = bool(events)
        return events

    def __getattr__(self, name: str) -> Any:  # register, modify, unregister, close, fileno
        return getattr(self._epoll, name)


def check(reactor: Any) -> None:
    """Raise `BusyPollUnsupported` unless `reactor` has an epoll object to spin on."""
    poller = getattr(reactor, "_poller", None)
    if not isinstance(poller, (select.epoll, SpinningPoller)):
        raise BusyPollUnsupported(
            f"BusyPollUs needs Twisted's epoll reactor; this one is {type(reactor).__name__} "
            "(run twistd with --reactor=epoll, or set BusyPollUs 0)"
        )


def install(reactor: Any, busy_poll_us: int) -> SpinningPoller | None:
    """Make `reactor` spin up to `busy_poll_us` µs after each turn with I/O; 0 does
    nothing. Installing twice keeps one wrapper with the longer window (the endpoint and
    its reflexes may each ask). Raises `BusyPollUnsupported` for a non-epoll reactor."""
    poller = getattr(reactor, "_poller", None)
    if isinstance(poller, SpinningPoller):
        poller.window = max(poller.window, busy_poll_us / 1e6)
        return poller
    if busy_poll_us <= 0:
        return None
    check(reactor)
    spinning = SpinningPoller(poller, busy_poll_us / 1e6)
    reactor._poller = spinning
    return spinning
