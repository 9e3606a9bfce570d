"""packetlab.measure.ping_notice: source quenches and redirects about echo requests."""

from __future__ import annotations

import pytest
from test_traceroute_fakes import EP4, TG4, icmp_packet

from packetlab.measure.ping_notice import PingNotice, parse_notice
from packetlab.measure.probes import echo_probe

# A fixed IP ID: the parameters below are part of the test ids, which every xdist
# worker must collect alike (a random ID made CI's parallel pass fail to collect)
REQUEST = echo_probe(EP4, TG4, ident=0x2222, seq=7, ip_id=0x189A).packet


def _notice(icmp_type: int, code: int, quoted: bytes = REQUEST[:28]) -> bytes:
    return icmp_packet("10.77.1.2", EP4, icmp_type, code, bytes([10, 0, 0, 9]), quoted)


def test_a_redirect_about_a_request_is_read() -> None:
    got = parse_notice(_notice(5, 1), 0x2222, TG4, 123)
    assert got == PingNotice(7, "10.77.1.2", 5, 1, "10.0.0.9", 123, REQUEST[:20].hex())
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
    ids=[
        "other-ident",
        "other-target",
        "an-error",
        "quote-cut",
        "no-echo-quoted",
        "the-request",
        "one-byte",
    ],
)
def test_anything_else_is_not_a_notice(packet: bytes, ident: int, target: str) -> None:
    assert parse_notice(packet, ident, target, 0) is None


def test_the_quoted_header_as_ping_v_dumps_it() -> None:
    """iputils -v's pr_iph, as it printed beside our responder (16-bit fields as a
    little-endian host reads them: a length of 84 is `5400`, DF `0 0040`)."""
    quoted = bytes.fromhex("45000054f883400040012c610ae100010ae10002")  # (wire order)
    n = PingNotice(1, "10.225.0.2", 4, 0, None, 0, quoted.hex())
    assert n.header_dump() == (
        "Vr HL TOS  Len   ID Flg  off TTL Pro  cks      Src      Dst Data\n"
        " 4  5  00 5400 83f8   0 0040  40  01 612c 10.225.0.1  10.225.0.2 "  # ping's line
    )
    got = parse_notice(_notice(4, 0), 0x2222, TG4, 0)
    assert got is not None and bytes.fromhex(got.quoted) == REQUEST[:20]
    assert PingNotice(1, "10.225.0.2", 4, 0).header_dump() == ""


@pytest.mark.parametrize("icmp_type", [7, 31])
def test_an_unassigned_type_below_32_is_not_a_notice(icmp_type: int) -> None:
    """ping's raw socket filter drops it (iputils -v prints nothing for a type 7)."""
    assert parse_notice(_notice(icmp_type, 0), 0x2222, TG4, 0) is None


@pytest.mark.parametrize("icmp_type", [32, 40, 100, 255])
def test_a_type_past_31_is_a_notice_whatever_it_quotes(icmp_type: int) -> None:
    """Session 25 (icmp25b): ping's raw socket filter cannot block a type from 32 on, and
    iputils -v prints any such message as `From ADDR: Bad ICMP type: 40` (quoting
    another ping's request, or nothing)."""
    for quoted in (REQUEST[:28], b""):
        got = parse_notice(_notice(icmp_type, 3, quoted), 0x9999, "10.9.9.9", 8)
        assert got == PingNotice(None, "10.77.1.2", icmp_type, 3, reply_recv_ns=8)
        assert got.describe() == f"Bad ICMP type: {icmp_type}"
