"""Loopback ports for tests that need one nothing reads.

A UDP port taken from ``bind(0)`` and closed lies in the kernel's ephemeral range, where
any process's unconnected UDP socket may be bound next by its autobind (a Twisted
``listenUDP(0)``, a resolver): a datagram sent there is then read, not refused, and a test
that expects ICMP port unreachable (``connection refused``) waits out its timeout instead.
TCP ports are safe from this: ``connect()`` takes even ports and ``bind(0)`` odd ones.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 10_000  # five digits, as the ports bind(0) gives: dig's banner keeps its width


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ``ip_local_port_range`` (of the caller's namespace)."""
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def closed_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port free on ``host`` now, below the ephemeral range: no autobind takes it."""
    low, _ = ephemeral_range()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        port = random.randrange(LOWEST, max(low, LOWEST + 1))
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise AssertionError(f"no free UDP port on {host} in {LOWEST}-{low - 1}")
