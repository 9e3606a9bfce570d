"""Addresses and netmasks of local interfaces (getifaddrs), for interface names in endpt.conf.

The reference allows a Linux interface name in place of an address in
``VMemLocalAddrStrIPv4``/``IPv6`` (PROTOCOL.md §7.4); we export every address that
interface holds, IPv4 ones with their netmask.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
from typing import NamedTuple

__all__ = ["IfAddr", "interface_addresses"]


class IfAddr(NamedTuple):
    name: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    netmask: ipaddress.IPv4Address | ipaddress.IPv6Address | None


class _IfAddrs(ctypes.Structure):
    pass


_IfAddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(_IfAddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.c_void_p),
    ("ifa_netmask", ctypes.c_void_p),
    ("ifa_ifu", ctypes.c_void_p),
    ("ifa_data", ctypes.c_void_p),
]


def _sockaddr(ptr: int | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not ptr:
        return None
    family = ctypes.c_ushort.from_address(ptr).value
    if family == socket.AF_INET:
        return ipaddress.IPv4Address(ctypes.string_at(ptr + 4, 4))
    if family == socket.AF_INET6:
        return ipaddress.IPv6Address(ctypes.string_at(ptr + 8, 16))
    return None


def all_interface_addresses() -> list[IfAddr]:
    """Every IPv4/IPv6 address of this network namespace, in getifaddrs order."""
    libc = ctypes.CDLL(None, use_errno=True)
    head = ctypes.POINTER(_IfAddrs)()
    if libc.getifaddrs(ctypes.byref(head)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"getifaddrs: {os.strerror(err)}")
    out: list[IfAddr] = []
    try:
        node = head
        while node:
            ifa = node.contents
            addr = _sockaddr(ifa.ifa_addr)
            if addr is not None:
                out.append(IfAddr(ifa.ifa_name.decode(), addr, _sockaddr(ifa.ifa_netmask)))
            node = ifa.ifa_next
    finally:
        libc.freeifaddrs(head)
    return out


def interface_addresses(name: str) -> list[IfAddr]:
    """Addresses of interface `name` (empty if it has none or does not exist)."""
    return [a for a in all_interface_addresses() if a.name == name]
