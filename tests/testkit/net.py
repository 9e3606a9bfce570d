"""Small typed accessors for Twisted's network objects in tests, and connection floods
opened at the pace a listener accepts them."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IListeningPort

from testkit.poll import accept_queue, poll_until

T = TypeVar("T")


def has_ipv6_loopback() -> bool:
    """Whether ::1 can be bound here (a container without IPv6 cannot)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def port_of(listening: IListeningPort) -> int:
    """The port a listener bound (`getHost()` is typed as a bare IAddress)."""
    host = listening.getHost()
    assert isinstance(host, IPv4Address | IPv6Address), host
    return host.port


TWISTED_BACKLOG = 50  # listenTCP's default: what the daemons under test listen with


def paced(
    make: Callable[[int], T],
    port: int,
    n: int,
    *,
    backlog: int = TWISTED_BACKLOG,
    timeout: float = 10.0,
    queue: Callable[[int], int] = accept_queue,
) -> list[T]:
    """`make(i)` for i in range(n), each opening a connection to the listener on `port`,
    no faster than it accepts them. A flood opened as fast as connect() returns fills the
    accept queue (backlog + 1 connections); the kernel then drops the next SYN and the
    client sends it again only a second later: ~1 s per 50 connections of a flood, a
    flood's time spent on the client's side. Before every `backlog // 4` connections this
    waits (bounded) until at most that many wait to be accepted, so the queue never
    fills. The connections are all held at once as before: only their pace changes."""
    batch = max(1, backlog // 4)
    made = []
    for i in range(n):
        if i % batch == 0:
            poll_until(
                lambda: queue(port) <= batch,
                timeout=timeout,
                interval=0.002,
                what=lambda: f"the accept queue of port {port} at most {batch}",
            )
        made.append(make(i))
    return made
