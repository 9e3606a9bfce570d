"""Waiting for a condition with a deadline, instead of sleeping a fixed time and hoping.

A fixed sleep is either too short on a loaded host (the test fails) or too long everywhere
(the suite crawls). `poll_until` returns as soon as the condition holds and, when it never
does, fails naming what was awaited and the last value seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

T = TypeVar("T")
DEFAULT_TIMEOUT = 10.0
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


class PollTimeout(AssertionError):
    """The condition did not hold before the deadline."""


def _failed(what: str | Callable[[], str], timeout: float, last: object) -> PollTimeout:
    text = what() if callable(what) else what
    return PollTimeout(f"{text or 'condition'} not reached in {timeout:g} s (last: {last!r})")


def poll_until(
    cond: Callable[[], T],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.02,
    what: str | Callable[[], str] = "",
) -> T:
    """Call `cond` until it returns something true and return that (blocking: for tests
    that drive processes and sockets from the test thread, not from a running reactor)."""
    deadline = time.monotonic() + timeout
    while not (last := cond()):
        if time.monotonic() >= deadline:
            raise _failed(what, timeout, last)
        time.sleep(interval)
    return last


async def poll_until_async(
    cond: Callable[[], T],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.01,
    what: str | Callable[[], str] = "",
    reactor: Any = None,
) -> T:
    """`poll_until` for tests running inside the reactor (pytest-twisted): waits with
    `callLater`, so the reactor keeps serving the sockets whose effect is awaited."""
    if reactor is None:
        from twisted.internet import reactor
    deadline = time.monotonic() + timeout
    while not (last := cond()):
        if time.monotonic() >= deadline:
            raise _failed(what, timeout, last)
        d: Deferred[None] = Deferred()
        reactor.callLater(interval, d.callback, None)
        await d
    return last


def tcp_listening(port: int) -> bool:
    """Whether a TCP socket of this network namespace listens on `port` (any address),
    read from /proc so the listener sees no probe connection."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_tcp_listening(port: int, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Return once something listens on TCP `port` (a server just spawned is not ready)."""
    poll_until(lambda: tcp_listening(port), timeout=timeout, what=f"a listener on TCP {port}")
