"""The per-probe fast paths (session 31, meas31) agree with the code they stand in for."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from packetlab.measure.packets import (
    ParseError,
    ip_packet,
    ipv4_header,
    ipv4_header_fields,
    parse_ipv4_header,
)
from packetlab.measure.packets_transport import icmp_echo
from packetlab.measure.probes import ProbeKey, traceroute_probe
from packetlab.measure.replies import parse_reply

A = ipaddress.IPv4Address("192.0.2.1")
B = ipaddress.IPv4Address("198.51.100.7")


def test_fields_are_the_header_parse_ipv4_header_reads() -> None:
    head = ipv4_header(A, B, 17, 12, ttl=9, tos=4, ident=777, flags=1, frag_offset=3)
    ihl, tos, total, ident, frag, ttl, proto, csum, s, d = ipv4_header_fields(head)
    h = parse_ipv4_header(head)
    assert (ihl, tos, total, ident, ttl, proto, csum) == (
        h.header_length, h.tos, h.total_length, h.ident, h.ttl, h.proto, h.checksum
    )  # fmt: skip
    assert (frag >> 13, frag & 0x1FFF, s, d) == (h.flags, h.frag_offset, A.packed, B.packed)


@pytest.mark.parametrize(
    "data",
    [b"\x45" + bytes(10), b"\x65" + bytes(19), b"\x44" + bytes(19), b"\x46" + bytes(19)],
)
def test_fields_refuse_what_parse_ipv4_header_refuses(data: bytes) -> None:
    with pytest.raises(ParseError) as fast:
        ipv4_header_fields(data)
    with pytest.raises(ParseError) as slow:
        parse_ipv4_header(data)
    assert str(fast.value) == str(slow.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("ttl", 256), ("tos", -1), ("ident", 0x10000), ("flags", 8), ("frag_offset", 0x2000)],
)
def test_range_checks_name_the_field(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"^{field} must be in"):
        kwargs: dict[str, int] = {field: value}
        ipv4_header(A, B, 1, 0, **kwargs)  # type: ignore[arg-type]


def test_icmp_echo_range_checks_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"^seq must be in"):
        icmp_echo(1, 0x10000)
    with pytest.raises(ValueError, match=r"^ident must be in"):
        icmp_echo(-1, 0)


def test_probe_key_hash_agrees_with_equality() -> None:
    key = ProbeKey(17, ipaddress.ip_address("10.0.0.1"), 1, 2, 3)
    same = ProbeKey(17, ipaddress.IPv4Address(b"\x0a\x00\x00\x01"), 1, 2, 3)
    assert key == same and hash(key) == hash(same)
    v6 = ProbeKey(17, ipaddress.IPv6Address(int(key.dst)), 1, 2, 3)  # same integer
    assert key != v6
    assert len({key, same, v6}) == 2


def test_time_exceeded_reads_the_quote_as_before() -> None:
    probe = traceroute_probe(A, B, 3, sport=40000, index=2, ip_id=4321)
    quote = probe.packet[:28]
    reply = parse_reply(ip_packet(B, A, 1, struct.pack("!BBHI", 11, 0, 0, 0) + quote, ttl=60))
    assert reply.key == probe.key
    assert (reply.quoted_ttl, reply.quoted_ip_id, reply.ttl, reply.src) == (3, 4321, 60, B)
