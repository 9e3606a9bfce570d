"""Waiting for a condition with a deadline, instead of sleeping a fixed time and hoping.

A fixed sleep is either too short on a loaded host (the test fails) or too long everywhere
(the suite crawls). `poll_until` returns as soon as the condition holds and, when it never
does, fails naming what was awaited and the last value seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

T = TypeVar("T")
DEFAULT_TIMEOUT = 10.0
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column
ESTABLISHED = "01"


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


PROC_TCP = ("/proc/net/tcp", "/proc/net/tcp6")


def _listeners(tables: tuple[str, ...]) -> Iterator[tuple[int, int]]:
    """(port, accept queue) of each TCP listener in the /proc tables (rx_queue of a LISTEN
    row: connections the kernel completed that the server has not accepted yet)."""
    for table in tables:
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN:
                port = int(fields[1].rsplit(":", 1)[1], 16)
                yield port, int(fields[4].split(":")[1], 16)


def tcp_listening(port: int, tables: tuple[str, ...] = PROC_TCP) -> bool:
    """Whether a TCP socket of this network namespace listens on `port` (any address),
    read from /proc so the listener sees no probe connection."""
    return any(p == port for p, _ in _listeners(tables))


def accept_queue(port: int, tables: tuple[str, ...] = PROC_TCP) -> int:
    """Connections waiting in the accept queue of the TCP listener(s) on `port` (0 if
    none listens)."""
    return sum(q for p, q in _listeners(tables) if p == port)


def wait_tcp_listening(port: int, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Return once something listens on TCP `port` (a server just spawned is not ready)."""
    poll_until(lambda: tcp_listening(port), timeout=timeout, what=f"a listener on TCP {port}")


def tcp_established_at(port: int, tables: tuple[str, ...] = PROC_TCP) -> int:
    """Established TCP connections whose local port is `port` (a server's accepted ones)."""
    n = 0
    for table in tables:
        path = Path(table)
        if path.exists():
            for line in path.read_text().splitlines()[1:]:
                fields = line.split()
                n += fields[3] == ESTABLISHED and int(fields[1].rsplit(":", 1)[1], 16) == port
    return n
