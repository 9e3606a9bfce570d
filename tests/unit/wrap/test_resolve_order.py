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


def test_a_udp_sockets_endpoint_address_is_chosen_as_the_kernel_would() -> None:
    """getsockname of a connected UDP socket: the endpoint's address of the peer's family
    and scope (loopback for loopback; else its global one), as a kernel there picks."""
    from packetlab.wrap.resolve import source_for

    srcs = tuple(map(ip, ["127.0.0.1", "10.0.0.2", "::1", "fe80::1", "2001:db8::2"]))
    pick = [str(source_for(ip(d), srcs)) for d in ("127.0.0.1", "192.0.2.1", "::1", "2001:db8::1")]
    assert pick == ["127.0.0.1", "10.0.0.2", "::1", "2001:db8::2"]
    assert source_for(ip("fe80::9"), srcs) == ip("fe80::1")
    assert source_for(ip("2001:db8::1"), (ip("127.0.0.1"),)) is None  # no IPv6 at all


def test_hosts_file_addresses_and_names(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Their reverse lookups are answered on this side, as their forward lookups are."""
    from packetlab.wrap.resolve import hosts_addresses, hosts_names

    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost vm # a comment\n::1 ip6-localhost\n# 10.0.0.9 gone\n")
    assert hosts_addresses(str(hosts)) == {ip("127.0.0.1"), ip("::1")}
    assert hosts_names(str(hosts)) == {"localhost", "vm", "ip6-localhost"}
    assert hosts_addresses(str(tmp_path / "missing")) == frozenset()
