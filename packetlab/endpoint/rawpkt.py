"""Checks on raw IP packets and addresses, sans-IO (PROTOCOL.md §3.1, §3.3).

A raw nsend carries the whole IP packet. Before it is queued the endpoint checks that it
is an IP packet of the socket's family and that its source is one of the exported local
addresses, so a controller cannot spoof. An all-zero IPv4 source is allowed: the kernel
fills it with the raw socket's bound address (IP4HDRMOD src = 0FILL). IPv6 has no such
fill (IP6HDRMOD is all NOCHG), so a zero IPv6 source is refused.
"""

from __future__ import annotations

import socket
from collections.abc import Collection

__all__ = ["RawPacketDenied", "local_address_for", "raw_destination"]

_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_V4_ZERO = bytes(4)


class RawPacketDenied(ValueError):
    """The packet may never be sent from this endpoint (answered with ESKTPKTDENY)."""


def raw_destination(
    family: int, packet: bytes, exported: Collection[bytes]
) -> tuple[str, int] | tuple[str, int, int, int]:
    """The ``sendto`` address for a raw packet; RawPacketDenied if it must not go out.

    The destination comes from the packet's own header: with ``IPPROTO_RAW`` the kernel
    routes on the address given to ``sendto`` but sends the header as written.
    """
    n = len(packet)
    if family == 4:
        if n < 20 or packet[0] >> 4 != 4:
            raise RawPacketDenied(f"not an IPv4 packet ({n} bytes, version {_version(packet)})")
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or ihl > n:
            raise RawPacketDenied(f"IPv4 header length {ihl} does not fit the {n}-byte packet")
        src, dst = packet[12:16], packet[16:20]
        if src != _V4_ZERO and src not in exported:
            raise RawPacketDenied(f"source {socket.inet_ntop(socket.AF_INET, src)} is not exported")
        return (socket.inet_ntop(socket.AF_INET, dst), 0)
    if n < 40 or packet[0] >> 4 != 6:
        raise RawPacketDenied(f"not an IPv6 packet ({n} bytes, version {_version(packet)})")
    src, dst = packet[8:24], packet[24:40]
    if src not in exported:
        raise RawPacketDenied(f"source {socket.inet_ntop(socket.AF_INET6, src)} is not exported")
    return (socket.inet_ntop(socket.AF_INET6, dst), 0, 0, 0)


def local_address_for(laddr: bytes, exported: list[bytes]) -> bytes | None:
    """The exported address a raw nopen means: all-zero = the first one (§3.1); None if
    `laddr` is not exported (or nothing is)."""
    if not any(laddr):
        return exported[0] if exported else None
    return laddr if laddr in exported else None


def _version(packet: bytes) -> int | str:
    return packet[0] >> 4 if packet else "none"
