"""packetlab.measure.ping_notice: source quenches and redirects about echo requests."""

from __future__ import annotations

import pytest
from test_traceroute_fakes import EP4, TG4, icmp_packet

from packetlab.measure.ping_notice import PingNotice, parse_notice
from packetlab.measure.probes import echo_probe

REQUEST = echo_probe(EP4, TG4, ident=0x2222, seq=7).packet


def _notice(icmp_type: int, code: int, quoted: bytes = REQUEST[:28]) -> bytes:
    return icmp_packet("10.77.1.2", EP4, icmp_type, code, bytes([10, 0, 0, 9]), quoted)


def test_a_redirect_about_a_request_is_read() -> None:
    got = parse_notice(_notice(5, 1), 0x2222, TG4, 123)
    assert got == PingNotice(7, "10.77.1.2", 5, 1, "10.0.0.9", 123)
    assert got.describe() == "Redirect Host(New nexthop: 10.0.0.9)"
    quench = parse_notice(_notice(4, 0), 0x2222, TG4, 5)
    assert quench is not None and quench.gateway is None
    assert quench.describe() == "Source Quench"


@pytest.mark.parametrize(
    ("packet", "ident", "target"),
    [
        (_notice(5, 1), 0x2223, TG4),  # another ping's identifier
        (_notice(5, 1), 0x2222, "10.9.9.9"),  # a request to another target
        (_notice(3, 1), 0x2222, TG4),  # an error: parse_reply's
        (_notice(5, 1, REQUEST[:20]), 0x2222, TG4),  # the quote cut short
        (_notice(5, 1, REQUEST[:20] + bytes(8)), 0x2222, TG4),  # quotes no echo request
        (REQUEST, 0x2222, TG4),
        (b"\x45", 0x2222, TG4),
    ],
)
def test_anything_else_is_not_a_notice(packet: bytes, ident: int, target: str) -> None:
    assert parse_notice(packet, ident, target, 0) is None
