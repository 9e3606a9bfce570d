"""parse_reply: every kind of reply, matching to probes, and garbage (fuzzed)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packetlab.measure.packets import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    as_address,
    inet_checksum,
    ip_packet,
    ipv4_header,
    ipv6_header,
    pseudo_header,
)
from packetlab.measure.packets_transport import tcp_segment
from packetlab.measure.probes import (
    ProbeKey,
    ProbeTable,
    echo_probe,
    tcp_syn_probe,
    traceroute_probe,
)
from packetlab.measure.replies import NotAReply, ParseError, Reply, ReplyKind, parse_reply

EP4, R14, TG4 = "10.77.1.1", "10.77.1.2", "10.77.3.2"
EP6, R16, TG6 = "fd00:77:1::1", "fd00:77:1::2", "fd00:77:3::2"


def icmp4(
    src: str, dst: str, icmp_type: int, code: int, rest: bytes, body: bytes, **kw: Any
) -> bytes:
    msg = struct.pack("!BBH", icmp_type, code, 0) + rest + body
    msg = msg[:2] + struct.pack("!H", inet_checksum(msg)) + msg[4:]
    return ip_packet(src, dst, PROTO_ICMP, msg, **kw)


def icmp6(
    src: str, dst: str, icmp_type: int, code: int, rest: bytes, body: bytes, **kw: Any
) -> bytes:
    msg = struct.pack("!BBH", icmp_type, code, 0) + rest + body
    ph = pseudo_header(as_address(src), as_address(dst), PROTO_ICMPV6, len(msg))
    msg = msg[:2] + struct.pack("!H", inet_checksum(ph + msg)) + msg[4:]
    return ip_packet(src, dst, PROTO_ICMPV6, msg, **kw)


def as_received(packet: bytes, ttl: int) -> bytes:
    """The probe as the router quotes it: TTL run down (and the IPv4 checksum redone)."""
    if packet[0] >> 4 == 4:
        raw = bytearray(packet)
        raw[8] = ttl
        raw[10:12] = b"\0\0"
        raw[10:12] = struct.pack("!H", inet_checksum(bytes(raw[:20])))
        return bytes(raw)
    return packet[:7] + bytes([ttl]) + packet[8:]


# -- ICMP errors -------------------------------------------------------------------------------


def test_time_exceeded_v4_minimal_quote() -> None:
    probe = traceroute_probe(EP4, TG4, 1, sport=20556, ip_id=4242)
    quote = as_received(probe.packet, 0)[:28]  # RFC 792 minimum: IP header + 8 bytes
    raw = icmp4(R14, EP4, 11, 0, bytes(4), quote, ttl=64, ident=999)
    reply = parse_reply(raw, verify_checksums=True)
    assert reply == Reply(
        ReplyKind.TIME_EXCEEDED,
        as_address(R14),
        as_address(EP4),
        probe.key,
        ttl=64,
        size=len(raw),
        icmp_type=11,
        icmp_code=0,
        ip_id=999,
        quoted_ttl=0,
        quoted_ip_id=4242,
        quoted_sum=int.from_bytes(probe.packet[26:28], "big"),  # the probe's UDP checksum
    )
    assert reply.is_error and not reply.from_destination


def test_time_exceeded_v6_full_quote() -> None:
    probe = traceroute_probe(EP6, TG6, 2, sport=33000, index=5)
    raw = icmp6(R16, EP6, 3, 0, bytes(4), as_received(probe.packet, 1), ttl=63)
    reply = parse_reply(raw, verify_checksums=True)
    assert (reply.kind, reply.src, reply.key, reply.ttl) == (
        ReplyKind.TIME_EXCEEDED,
        as_address(R16),
        probe.key,
        63,
    )
    assert (reply.quoted_ttl, reply.ip_id, reply.quoted_ip_id) == (1, None, None)


@pytest.mark.parametrize("v6", [False, True])
def test_port_unreachable_from_target(v6: bool) -> None:
    src, dst = (EP6, TG6) if v6 else (EP4, TG4)
    probe = traceroute_probe(src, dst, 3, sport=1234)
    build, code = (icmp6, 4) if v6 else (icmp4, 3)
    raw = build(dst, src, 1 if v6 else 3, code, bytes(4), probe.packet)
    reply = parse_reply(raw, verify_checksums=True)
    assert reply.kind is ReplyKind.DEST_UNREACHABLE and reply.icmp_code == code
    assert reply.key == probe.key and reply.from_destination


def test_unreachable_from_router_is_not_destination() -> None:
    probe = traceroute_probe(EP4, TG4, 3, sport=1234)
    reply = parse_reply(icmp4(R14, EP4, 3, 1, bytes(4), probe.packet))  # host unreachable
    assert reply.kind is ReplyKind.DEST_UNREACHABLE and not reply.from_destination


def test_frag_needed_and_packet_too_big_carry_mtu() -> None:
    p4 = traceroute_probe(EP4, TG4, 3, sport=1)
    r4 = parse_reply(icmp4(R14, EP4, 3, 4, struct.pack("!HH", 0, 1400), p4.packet))
    assert (r4.kind, r4.mtu) == (ReplyKind.DEST_UNREACHABLE, 1400)
    p6 = traceroute_probe(EP6, TG6, 3, sport=1)
    r6 = parse_reply(icmp6(R16, EP6, 2, 0, struct.pack("!I", 1280), p6.packet))
    assert (r6.kind, r6.mtu, r6.key) == (ReplyKind.PACKET_TOO_BIG, 1280, p6.key)


def test_param_problem_and_errors_about_echo_and_tcp_probes() -> None:
    echo = echo_probe(EP4, TG4, ident=7, seq=3, ttl=1)
    r = parse_reply(icmp4(R14, EP4, 11, 0, bytes(4), echo.packet[:28]))
    assert r.key == echo.key == ProbeKey(PROTO_ICMP, as_address(TG4), 7, 0, 3)
    syn = tcp_syn_probe(EP6, TG6, sport=5000, dport=80, seq=0xDEADBEEF, ttl=1)
    r = parse_reply(icmp6(R16, EP6, 4, 0, bytes(4), syn.packet[:48]))
    assert (r.kind, r.key) == (ReplyKind.PARAM_PROBLEM, syn.key)


# -- echo replies and TCP -------------------------------------------------------------------


@pytest.mark.parametrize("v6", [False, True])
def test_echo_reply_matches_probe(v6: bool) -> None:
    src, dst = (EP6, TG6) if v6 else (EP4, TG4)
    probe = echo_probe(src, dst, ident=0x5E91, seq=17, payload=b"abc")
    build, kind = (icmp6, 129) if v6 else (icmp4, 0)
    raw = build(dst, src, kind, 0, struct.pack("!HH", 0x5E91, 17), b"abc", ttl=62)
    reply = parse_reply(raw, verify_checksums=True)
    assert reply.kind is ReplyKind.ECHO_REPLY and reply.key == probe.key
    assert reply.from_destination and not reply.is_error and reply.ttl == 62


def test_kernel_echo_reply_v4() -> None:
    # A whole echo reply as Linux sent it in the testbed (tg -> ep).
    raw = bytes.fromhex(
        "45000054a8d200003e01bb3a0a4d03020a4d0101"
        "0000f7275e910001465a026b00000000a1ad010000000000"
        "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637"
    )
    reply = parse_reply(raw, verify_checksums=True)
    assert reply.key == ProbeKey(PROTO_ICMP, as_address(TG4), 0x5E91, 0, 1)
    assert (reply.ttl, reply.ip_id, reply.size) == (62, 0xA8D2, 84)


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize(
    ("flags", "kind"),
    [(TCP_SYN | TCP_ACK, ReplyKind.TCP_SYNACK), (TCP_RST | TCP_ACK, ReplyKind.TCP_RST)],
)
def test_tcp_reply_matches_syn(v6: bool, flags: int, kind: ReplyKind) -> None:
    src, dst = (EP6, TG6) if v6 else (EP4, TG4)
    probe = tcp_syn_probe(src, dst, sport=40000, dport=80, seq=0xFFFFFFFF)
    seg = tcp_segment(dst, src, 80, 40000, seq=123, ack=0, flags=flags, window=0)
    raw = ip_packet(dst, src, PROTO_TCP, seg)
    reply = parse_reply(raw + bytes(6), verify_checksums=True)  # + Ethernet padding
    assert reply.kind is kind and reply.key == probe.key  # ack 0 = seq + 1 wrapped
    assert reply.icmp_type is None and reply.from_destination


# -- matching -----------------------------------------------------------------------------------


def test_match_out_of_order_replies_through_table() -> None:
    probes = [traceroute_probe(EP4, TG4, ttl, sport=20556) for ttl in (1, 2, 3)]
    table: ProbeTable[int] = ProbeTable()
    for p in probes:
        table.add(p.key, p.ttl)
    replies = [
        icmp4(TG4, EP4, 3, 3, bytes(4), probes[2].packet),
        icmp4(R14, EP4, 11, 0, bytes(4), probes[0].packet),
        icmp4("10.77.2.2", EP4, 11, 0, bytes(4), probes[1].packet),
    ]
    got = {table.pop(parse_reply(r).key): str(parse_reply(r).src) for r in replies}
    assert got == {3: TG4, 1: R14, 2: "10.77.2.2"} and len(table) == 0
    other = traceroute_probe(EP4, "10.77.9.9", 1, sport=20556)
    assert table.get(parse_reply(icmp4(R14, EP4, 11, 0, bytes(4), other.packet)).key) is None


# -- not replies, and malformed ------------------------------------------------------------------


def named_by_message(value: object) -> str:
    """The case's id: its message (bytes whose IP ident is the pid would differ between
    pytest-xdist's workers, which must all collect the same ids)."""
    return value if isinstance(value, str) else "raw"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (echo_probe(EP4, TG4, ident=1, seq=1).packet, "type 8 is not a reply"),
        (icmp6(EP6, TG6, 135, 0, bytes(4), bytes(16)), "type 135"),
        (traceroute_probe(EP4, TG4, 1, sport=1).packet, "protocol 17"),
        (traceroute_probe(EP6, TG6, 1, sport=1).packet, "next header 17"),
        (ip_packet(TG4, EP4, PROTO_TCP, tcp_segment(TG4, EP4, 1, 2, seq=0)), "without ACK"),
        (
            ip_packet(TG4, EP4, PROTO_TCP, tcp_segment(TG4, EP4, 1, 2, seq=0, flags=TCP_ACK)),
            "not a SYN-ACK",
        ),
        (ipv4_header(R14, EP4, PROTO_ICMP, 8, frag_offset=1) + bytes(8), "non-first"),
    ],
    ids=named_by_message,
)
def test_not_a_reply(raw: bytes, message: str) -> None:
    with pytest.raises(NotAReply, match=message):
        parse_reply(raw)


QUOTE4 = traceroute_probe(EP4, TG4, 1, sport=1).packet
QUOTE6 = traceroute_probe(EP6, TG6, 1, sport=1).packet


def _bad_checksum(raw: bytes, offset: int) -> bytes:
    out = bytearray(raw)
    out[offset] ^= 0x55
    return bytes(out)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (b"\x00\x01", "version 0"),
        (b"\x45\x00", "needs 20"),
        (ipv4_header(R14, EP4, PROTO_ICMP, 4) + bytes(4), "truncated to 4"),
        (icmp4(R14, EP4, 11, 0, bytes(4), b""), "without a quoted packet"),
        (
            icmp4(R14, EP4, 11, 0, bytes(4), traceroute_probe(EP6, TG6, 1, sport=1).packet),
            "quotes an IPv6 packet",
        ),
        (
            icmp4(R14, EP4, 11, 0, bytes(4), traceroute_probe(EP4, TG4, 1, sport=1).packet[:24]),
            "truncated to 4",
        ),
        (bytes.fromhex("4500001000000000400100000a4d01020a4d0101"), "shorter than its header"),
        (ipv4_header(R14, EP4, PROTO_TCP, 10) + bytes(10), "TCP header truncated"),
        (ipv6_header(R16, EP6, 0, 1) + b"\x3a", "truncated IPv6 extension"),
        (_bad_checksum(icmp4(R14, EP4, 11, 0, bytes(4), QUOTE4), 30), "bad ICMP checksum"),
        (_bad_checksum(icmp4(R14, EP4, 11, 0, bytes(4), QUOTE4), 12), "bad IPv4 header"),
        (
            _bad_checksum(icmp6(R16, EP6, 3, 0, bytes(4), QUOTE6), 50),
            "bad ICMPv6 checksum",
        ),
        (
            _bad_checksum(
                ip_packet(TG4, EP4, PROTO_TCP, tcp_segment(TG4, EP4, 1, 2, seq=0, flags=0x12)),
                30,
            ),
            "bad TCP checksum",
        ),
    ],
    ids=named_by_message,
)
def test_malformed(raw: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_reply(raw, verify_checksums=True)


def test_not_bytes() -> None:
    with pytest.raises(ParseError, match="expected bytes"):
        parse_reply("4500")  # type: ignore[arg-type]


def test_truncated_capture_still_parses_without_verification() -> None:
    probe = traceroute_probe(EP4, TG4, 1, sport=1)
    raw = icmp4(R14, EP4, 11, 0, bytes(4), probe.packet)
    cut = raw[: 20 + 8 + 28]
    assert parse_reply(cut, verify_checksums=True).key == probe.key  # nothing to verify


# -- fuzzing ------------------------------------------------------------------------------------


def _valid_replies() -> list[bytes]:
    p4 = traceroute_probe(EP4, TG4, 1, sport=20556)
    p6 = traceroute_probe(EP6, TG6, 1, sport=20556)
    return [
        icmp4(R14, EP4, 11, 0, bytes(4), p4.packet),
        icmp6(R16, EP6, 3, 0, bytes(4), p6.packet),
        icmp4(TG4, EP4, 0, 0, struct.pack("!HH", 1, 2), b"x"),
        icmp6(TG6, EP6, 2, 0, struct.pack("!I", 1280), p6.packet),
        ip_packet(TG6, EP6, PROTO_TCP, tcp_segment(TG6, EP6, 80, 1, seq=0, flags=0x12)),
    ]


def _check_parse(data: bytes) -> None:
    for verify in (False, True):
        try:
            result = parse_reply(data, verify_checksums=verify)
        except ParseError:
            continue
        assert isinstance(result, Reply)


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    _check_parse(data)


@settings(max_examples=400)
@given(st.sampled_from(["4", "6"]), st.binary(max_size=120))
def test_fuzz_plausible_headers(version: str, tail: bytes) -> None:
    head = b"\x45\x00" if version == "4" else b"\x60\x00"
    _check_parse(head + tail)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_valid_replies()),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    st.integers(0, 200),
)
def test_fuzz_mutated_replies(base: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    _check_parse(bytes(data[: len(data) - cut % (len(data) + 1)]))


@pytest.mark.parametrize(("src", "dst"), [(TG4, EP4), (TG6, EP6)])
def test_the_first_fragment_of_a_long_echo_reply_is_a_reply(src: str, dst: str) -> None:
    """An echo reply to a long request comes in fragments (a capture sees each): the
    first holds the ICMP header, enough to match it; the others are not replies."""
    from packetlab.measure.packets import fragment

    whole = echo_probe(src, dst, ident=7, seq=3, payload=bytes(1800)).packet
    reply = bytearray(whole)
    hl = 20 if src == TG4 else 40
    reply[hl] = 0 if src == TG4 else 129  # (an echo reply; the sum is not checked here)
    first, *rest = fragment(bytes(reply), 1500, ident=99)
    got = parse_reply(first, verify_checksums=True)
    assert (got.kind, got.key.sport, got.key.seq) == (ReplyKind.ECHO_REPLY, 7, 3)
    for piece in rest:
        with pytest.raises((NotAReply, ParseError)):
            parse_reply(piece)


def test_an_unassigned_icmpv6_error_type_is_an_error_keyed_by_its_quote() -> None:
    """Session 25 (icmp25b): ICMPv6 types below 128 are errors (RFC 4443 2.1) and Linux
    passes an unassigned one to the socket it quotes (traceroute `!<100-0>`, ping6
    `unknown icmp type: 100`); IPv4's unassigned types and ICMPv6 informational ones
    (128 on) stay not replies."""
    probe = traceroute_probe(EP6, TG6, 3, sport=40000)
    for icmp_type in (0, 5, 100, 127):
        r = parse_reply(icmp6(R16, EP6, icmp_type, 2, bytes(4), probe.packet))
        assert (r.kind, r.icmp_type, r.icmp_code, r.key) == (
            ReplyKind.OTHER_ERROR, icmp_type, 2, probe.key,
        )  # fmt: skip
        assert r.is_error and not r.from_destination
    with pytest.raises(NotAReply, match="type 130"):
        parse_reply(icmp6(R16, EP6, 130, 0, bytes(4), probe.packet))
    probe4 = traceroute_probe(EP4, TG4, 3, sport=40000)
    with pytest.raises(NotAReply, match="type 100"):
        parse_reply(icmp4(R14, EP4, 100, 0, bytes(4), probe4.packet))
