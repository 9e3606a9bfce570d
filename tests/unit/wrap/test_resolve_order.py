"""The shim's getaddrinfo without a family gets both families in glibc's order for the
endpoint's addresses (RFC 6724 as glibc applies it)."""

from __future__ import annotations

import ipaddress

from packetlab.wrap.resolve import native_order

ip = ipaddress.ip_address


def order(dsts: str, srcs: str) -> list[str]:
    got = native_order(tuple(map(ip, dsts.split())), tuple(map(ip, srcs.split())))
    return [str(a) for a in got]


def test_both_families_in_the_order_glibc_gives_on_the_endpoint() -> None:
    """Natively (glibc, no gai.conf) IPv6 comes first where the host has IPv6 of the
    destination's scope; without it, IPv4 first."""
    assert order("127.0.0.1 ::1", "127.0.0.1 ::1") == ["::1", "127.0.0.1"]
    assert order("192.0.2.1 2001:db8::1", "10.0.0.2 2001:db8::2 fe80::1") == [
        "2001:db8::1", "192.0.2.1",
    ]  # fmt: skip
    # Only a link-local/loopback IPv6 address: a global IPv6 destination is unusable.
    assert order("2001:db8::1 192.0.2.1", "10.0.0.2 ::1 fe80::1") == ["192.0.2.1", "2001:db8::1"]
    assert order("2001:db8::1 192.0.2.1", "10.0.0.2") == ["192.0.2.1", "2001:db8::1"]
    # Within a family the answer's order is kept.
    assert order("192.0.2.2 192.0.2.1", "10.0.0.2") == ["192.0.2.2", "192.0.2.1"]
