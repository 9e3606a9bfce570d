"""The libpcap binding below the roles (packetlab.pcap.libpcap)."""

from __future__ import annotations

import struct

import pytest

from packetlab.pcap import libpcap

try:
    libpcap.libpcap()
    HAVE = True
except libpcap.LibpcapUnavailable:
    HAVE = False

pytestmark = pytest.mark.skipif(
    not HAVE, reason="libpcap not installed (apt-get install libpcap0.8)"
)


def _udp4(dport: int) -> bytes:
    ip = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    )
    return ip + struct.pack(">HHHH", 1234, dport, 8, 0)


def test_offline_filter_runs_the_expression() -> None:
    f = libpcap.OfflineFilter("udp dst port 53")
    assert f.matches(_udp4(53))
    assert not f.matches(_udp4(54))
    assert not f.matches(b"")  # a packet too short for the loads is rejected, not a crash


def test_compile_classic_ends_in_a_return() -> None:
    prog = libpcap.compile_classic("icmp")
    assert prog and prog[-1].code & 0x07 == 0x06  # BPF_RET


@pytest.mark.parametrize(
    ("expression", "words"),
    [("udp and and", "syntax error"), ("host ünïcode", "not ASCII"), ("udp\0", "NUL byte")],
)
def test_bad_expressions_carry_the_reason(expression: str, words: str) -> None:
    with pytest.raises(libpcap.PcapSyntaxError, match=words) as e:
        libpcap.OfflineFilter(expression)
    assert e.value.expression == expression
