"""Friendly addresses: `ipaddress` objects or strings in, wire bytes and a family out."""

from __future__ import annotations

import ipaddress
from typing import TypeAlias

from packetlab.wire import Family

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressLike: TypeAlias = IPAddress | str | bytes


def parse_address(addr: AddressLike) -> IPAddress:
    """An `ipaddress` object from a string ("192.0.2.1", "::1"), packed bytes (4 or 16)
    or an `ipaddress` object. Raises ValueError with the offending value."""
    if isinstance(addr, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return addr
    if isinstance(addr, bytes) and len(addr) not in (4, 16):
        raise ValueError(f"packed address must be 4 or 16 bytes, got {len(addr)}: {addr!r}")
    try:
        return ipaddress.ip_address(addr)
    except ValueError:
        # A host name is the first thing a newcomer passes ("localhost"): say why it fails.
        hint = (
            " (a host name? the controller API takes IP addresses and resolves no names)"
            if isinstance(addr, str) and any(c.isalpha() for c in addr) and ":" not in addr
            else ""
        )
        raise ValueError(f"not an IP address: {addr!r}{hint}") from None


def family_of(addr: IPAddress) -> Family:
    return Family.IP4 if addr.version == 4 else Family.IP6


def any_address(family: int) -> IPAddress:
    """The all-zero address: "no local address" for TCP, "any" for UDP, "first exported
    interface" for raw sockets (§3.1)."""
    if family == Family.IP4:
        return ipaddress.IPv4Address(0)
    if family == Family.IP6:
        return ipaddress.IPv6Address(0)
    raise ValueError(f"family must be 4 or 6, got {family!r}")


def check_port(port: int, what: str = "port") -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"{what} must be an int in 0..65535, got {port!r}")
    return port


def unpack_address(family: int, raw: bytes) -> IPAddress:
    """Wire bytes back to an address (socket blocks hold v4 in the first 4 of 16 bytes)."""
    if family == Family.IP4:
        return ipaddress.IPv4Address(raw[:4])
    return ipaddress.IPv6Address(raw[:16])
