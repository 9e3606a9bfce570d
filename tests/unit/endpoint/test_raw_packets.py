"""Pure raw-packet checks (packetlab.endpoint.rawpkt) and the HDRMOD map in memory."""

from __future__ import annotations

import ipaddress

import pytest

from packetlab.endpoint.config import EndpointConfig
from packetlab.endpoint.memory import system_image
from packetlab.endpoint.rawpkt import RawPacketDenied, local_address_for, raw_destination
from packetlab.measure.probes import echo_probe
from packetlab.wire import vmem

A4 = ipaddress.IPv4Address("192.0.2.10")
A6 = ipaddress.IPv6Address("2001:db8::10")


def test_destination_comes_from_the_header() -> None:
    p4 = echo_probe(A4, "198.51.100.7", ident=1, seq=1).packet
    p6 = echo_probe(A6, "2001:db8::7", ident=1, seq=1).packet
    assert raw_destination(4, p4, [A4.packed]) == ("198.51.100.7", 0)
    assert raw_destination(6, p6, [A6.packed]) == ("2001:db8::7", 0, 0, 0)


def test_zero_ipv4_source_allowed_zero_ipv6_source_not() -> None:
    p4 = echo_probe("0.0.0.0", "198.51.100.7", ident=1, seq=1).packet
    assert raw_destination(4, p4, [A4.packed])[0] == "198.51.100.7"
    p6 = bytearray(echo_probe(A6, "2001:db8::7", ident=1, seq=1).packet)
    p6[8:24] = bytes(16)
    with pytest.raises(RawPacketDenied, match="source :: is not exported"):
        raw_destination(6, bytes(p6), [A6.packed])


@pytest.mark.parametrize(
    ("family", "packet", "message"),
    [
        (4, b"", "not an IPv4 packet \\(0 bytes, version none\\)"),
        (4, bytes([0x60]) + bytes(39), "version 6"),
        (4, bytes([0x4F]) + bytes(23), "header length 60"),
        (6, bytes([0x45]) + bytes(39), "not an IPv6 packet"),
        (6, bytes([0x60]) + bytes(30), "31 bytes"),
    ],
)
def test_not_a_packet_of_the_family(family: int, packet: bytes, message: str) -> None:
    with pytest.raises(RawPacketDenied, match=message):
        raw_destination(family, packet, [])


def test_spoofed_source_denied() -> None:
    p4 = echo_probe("192.0.2.99", "198.51.100.7", ident=1, seq=1).packet
    with pytest.raises(RawPacketDenied, match=r"source 192\.0\.2\.99 is not exported"):
        raw_destination(4, p4, [A4.packed])


def test_local_address_for() -> None:
    exported = [A4.packed, bytes([192, 0, 2, 11])]
    assert local_address_for(bytes(4), exported) == A4.packed
    assert local_address_for(exported[1], exported) == exported[1]
    assert local_address_for(bytes([10, 0, 0, 1]), exported) is None
    assert local_address_for(bytes(4), []) is None


def test_hdrmod_describes_linux() -> None:
    img = system_image(EndpointConfig())
    at4 = vmem.IP4HDRMOD.addr - vmem.SYS_BASE
    at6 = vmem.IP6HDRMOD.addr - vmem.SYS_BASE
    # version, ihl, tos, tot_len CHG, ident 0FILL, flags, frag, ttl, proto, checksum CHG,
    # src 0FILL, dst
    assert list(img[at4 : at4 + 12]) == [0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 2, 0]
    assert bytes(img[at6 : at6 + 8]) == bytes(8)
