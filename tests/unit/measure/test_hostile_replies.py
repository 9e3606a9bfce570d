"""Hostile routers and targets through the scripted raw endpoint: ICMP errors quoting
garbage, truncated or nested quotes, quotes of another IP version or of a non-first
fragment, 64 KiB replies. Each probe gets the crafted packets first, then the honest
answer: traceroute and ping see only the honest ones, and nothing raises."""

from __future__ import annotations

import struct

import pytest
from test_traceroute_fakes import EP4, EP6, R14, R16, R24, R26, TG4, TG6, RawRig, icmp_packet
from testkit.logs import captured_events

from packetlab.measure.ping import ping
from packetlab.measure.replies import ParseError, parse_reply
from packetlab.measure.traceroute import traceroute


def crafted(probe: bytes) -> list[bytes]:
    """ICMP errors from a router that quote `probe` wrongly."""
    v6 = probe[0] >> 4 == 6
    src, dst, hl = (R16, EP6, 40) if v6 else (R14, EP4, 20)
    te = 3 if v6 else 11  # time exceeded
    ihl15 = bytes([0x4F]) + probe[1:]  # claims a 60-byte header (options it lacks)
    frag = bytearray(probe)  # a non-first fragment: no UDP header
    if v6:
        frag[6] = 44  # a fragment header, offset 8
        frag[40:40] = struct.pack("!BBHI", 17, 0, 8 << 3, 1)
    else:
        frag[6:8] = struct.pack("!H", 0x0100)
    other = bytes([0x60]) + bytes(47) if not v6 else bytes([0x45]) + bytes(27)
    nested = icmp_packet(src, dst, te, 0, bytes(4), probe)  # an ICMP error quoting one
    return [
        icmp_packet(src, dst, te, 0, bytes(4), probe[:hl]),  # the quote ends at the IP header
        icmp_packet(src, dst, te, 0, bytes(4), probe[: hl + 3]),  # half the ports
        icmp_packet(src, dst, te, 0, bytes(4), b""),  # no quote at all
        icmp_packet(src, dst, te, 0, bytes(4), ihl15 if not v6 else probe[:39]),
        icmp_packet(src, dst, te, 0, bytes(4), bytes(frag)),
        icmp_packet(src, dst, te, 0, bytes(4), other),  # the other IP version quoted
        icmp_packet(src, dst, te, 0, bytes(4), nested),  # a quote of an ICMP error
        icmp_packet(src, dst, te, 0, bytes(0), b""),  # 4 bytes of ICMP
        b"\x45" + bytes(19),  # an IPv4 header and nothing (total length 0)
        bytes([0x4F]) + bytes(30),  # IHL 15, 31 bytes
        bytes([0x60]) + bytes(38),  # an IPv6 header cut short
    ]


@pytest.mark.parametrize(("path", "src"), [([R14, R24, TG4], EP4), ([R16, R26, TG6], EP6)])
def test_traceroute_ignores_crafted_quotes(path: list[str], src: str) -> None:
    rig = RawRig(path)
    rig.endpoint.extra = lambda probe: [(0.0001 * (i + 1) / 20, p)
                                        for i, p in enumerate(crafted(probe))]  # fmt: skip
    result = rig.run(traceroute(rig.session, path[-1], sport=20556, wait=1.0))
    assert result.path() == [(1, path[0]), (2, path[1]), (3, path[2])]
    assert result.reached and result.src == src
    for p in crafted(rig.endpoint.raw_sends[0].data):  # each one is a ParseError, not a crash
        with pytest.raises(ParseError):
            parse_reply(p)


def test_a_64_kib_icmp_error_quoting_the_probe_is_one_reply() -> None:
    """RFC 4884 allows a long quote; a hostile router sends one as long as IPv4 goes:
    the reply matches (the quote's first bytes), the hop keeps none of the body."""
    rig = RawRig([R14, TG4])

    def huge(probe: bytes) -> list[tuple[float, bytes]]:
        if probe[8] != 1:  # TTL 1 only
            return []
        body = probe + bytes(65535 - 20 - 8 - len(probe))
        return [(0.0001, icmp_packet(R14, EP4, 11, 0, bytes(4), body))]

    rig.endpoint.extra = huge
    result = rig.run(traceroute(rig.session, TG4, sport=20556, wait=1.0))
    assert result.path() == [(1, R14), (2, TG4)]
    assert result.hops[0].reply_type == "time-exceeded"
    assert len(repr(result.hops[0])) < 400  # slots: no quote kept


def test_ping_ignores_truncated_and_huge_echo_replies() -> None:
    rig = RawRig([TG4])

    def hostile(probe: bytes) -> list[tuple[float, bytes]]:
        echo = probe[20:]
        return [
            (0.0001, icmp_packet(TG4, EP4, 0, 0, b"", b"")),  # an echo reply of 4 bytes
            (0.0002, icmp_packet(TG4, EP4, 0, 0, echo[4:6], b"")),  # half its ident
            (0.0003, icmp_packet(TG4, EP4, 0, 0, b"\xff\xff\xff\xff", bytes(65000))),
        ]

    rig.endpoint.extra = hostile
    result = rig.run(ping(rig.session, TG4, count=2, interval=0.01))
    assert result.received == 2


def test_a_too_big_naming_an_mtu_below_the_minimum_is_not_believed() -> None:
    """IPv6, probes of 2000 bytes in fragments of 1500: the first router says "packet too
    big, MTU 40" and the endpoint refuses the next probes. 40 leaves no room for a
    fragment (it raised in the capture's callback, logged as a traceback): below IPv6's
    1280 it is not believed, and the trace ends with the usual error."""

    from test_traceroute_fakes import narrow_link

    from packetlab.measure.capture import MeasureError

    with captured_events() as events:
        rig = RawRig([R16, R26, TG6])
        narrow_link(rig, 1500, 40, learns=True)
        with pytest.raises(MeasureError, match="could not send a 2000 byte probe"):
            rig.run(traceroute(rig.session, TG6, pace=0.0, queries=3, packetlen=2000,
                               fragment_mtu=1500, wait=1.0))  # fmt: skip
    assert [e for e in events if "log_failure" in e] == []
