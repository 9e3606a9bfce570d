"""Header builders and probes against known vectors (RFC 1071, the kernel, scamper, ping)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packetlab.measure.packets import (
    IP_DF,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    ParseError,
    as_address,
    inet_checksum,
    ipv4_header,
    ipv6_header,
    ones_complement_sum,
    parse_ipv4_header,
    parse_ipv6_header,
    pseudo_header,
    skip_ipv6_extensions,
)
from packetlab.measure.packets_transport import icmp_echo, icmpv6_echo, tcp_segment, udp_segment
from packetlab.measure.probes import (
    TRACEROUTE_PAYLOAD,
    ProbeKey,
    ProbeTable,
    echo_probe,
    probe_key,
    tcp_syn_probe,
    traceroute_probe,
    udp_probe,
)

EP4, TG4 = "10.77.1.1", "10.77.3.2"
EP6, TG6 = "fd00:77:1::1", "fd00:77:3::2"


def reference_sum(data: bytes) -> int:
    """RFC 1071 word by word with end-around carry, to check the big-integer shortcut."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total


# -- checksums ---------------------------------------------------------------------------------


def test_rfc1071_example() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_complement_sum(data) == 0xDDF2
    assert inet_checksum(data) == 0x220D


@given(st.binary(max_size=300))
def test_sum_matches_word_by_word(data: bytes) -> None:
    assert ones_complement_sum(data) == reference_sum(data)


@given(st.binary(max_size=300))
def test_checksum_verifies_to_zero(data: bytes) -> None:
    if len(data) % 2:
        data += b"\0"
    assert inet_checksum(data + struct.pack("!H", inet_checksum(data))) == 0


def test_pseudo_header_rejects_mixed_versions() -> None:
    with pytest.raises(ValueError, match="different IP versions"):
        pseudo_header(as_address(EP4), as_address(TG6), PROTO_UDP, 8)


# -- IPv4 / IPv6 headers -----------------------------------------------------------------------


def test_ipv4_header_textbook_vector() -> None:
    # The classic example header 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
    want = bytes.fromhex("45000073000040004011b861c0a80001c0a800c7")
    got = ipv4_header("192.168.0.1", "192.168.0.199", 17, 0x73 - 20, ttl=64, flags=IP_DF)
    assert got == want


def test_ipv4_header_equals_kernel_built_one() -> None:
    # The header of an echo reply built by Linux (seen by ping in the testbed).
    kernel = bytes.fromhex("45000054a8d200003e01bb3a0a4d03020a4d0101")
    assert ipv4_header(TG4, EP4, 1, 0x54 - 20, ttl=62, ident=0xA8D2) == kernel
    parsed = parse_ipv4_header(kernel)
    assert (parsed.ttl, parsed.ident, parsed.checksum, parsed.total_length) == (
        62,
        0xA8D2,
        0xBB3A,
        0x54,
    )
    assert inet_checksum(kernel) == 0


@given(
    ttl=st.integers(0, 255),
    tos=st.integers(0, 255),
    ident=st.integers(0, 0xFFFF),
    flags=st.integers(0, 7),
    length=st.integers(0, 0xFFFF - 20),
    proto=st.integers(0, 255),
)
def test_ipv4_header_round_trip(
    ttl: int, tos: int, ident: int, flags: int, length: int, proto: int
) -> None:
    raw = ipv4_header(EP4, TG4, proto, length, ttl=ttl, tos=tos, ident=ident, flags=flags)
    h = parse_ipv4_header(raw)
    assert (h.ttl, h.tos, h.ident, h.flags, h.proto, h.payload_length) == (
        ttl,
        tos,
        ident,
        flags,
        proto,
        length,
    )
    assert (str(h.src), str(h.dst)) == (EP4, TG4)
    assert inet_checksum(raw) == 0


@given(
    hlim=st.integers(0, 255),
    tc=st.integers(0, 255),
    flow=st.integers(0, 0xFFFFF),
    length=st.integers(0, 0xFFFF),
    nh=st.integers(0, 255),
)
def test_ipv6_header_round_trip(hlim: int, tc: int, flow: int, length: int, nh: int) -> None:
    raw = ipv6_header(EP6, TG6, nh, length, hop_limit=hlim, traffic_class=tc, flow_label=flow)
    h = parse_ipv6_header(raw)
    assert (h.hop_limit, h.traffic_class, h.flow_label, h.payload_length, h.next_header) == (
        hlim,
        tc,
        flow,
        length,
        nh,
    )
    assert len(raw) == 40 and raw[0] >> 4 == 6


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ipv4_header(EP6, TG6, 17, 0), "IPv4 addresses"),
        (lambda: ipv4_header(EP4, TG4, 17, 0, ttl=256), "ttl"),
        (lambda: ipv4_header(EP4, TG4, 17, 0xFFFF), "does not fit"),
        (lambda: ipv4_header(EP4, TG4, 17, 0, flags=8), "flags"),
        (lambda: ipv6_header(EP4, TG4, 17, 0), "IPv6 addresses"),
        (lambda: ipv6_header(EP6, TG6, 17, 0, flow_label=1 << 20), "flow_label"),
        (lambda: ipv4_header("10.0.0.300", TG4, 17, 0), "not an IP address"),
        (lambda: udp_segment(EP4, TG4, 70000, 1), "sport"),
        (lambda: icmp_echo(1, 1 << 16), "seq"),
        (lambda: tcp_segment(EP4, TG4, 1, 2, seq=1 << 32), "seq"),
        (lambda: tcp_segment(EP4, TG4, 1, 2, seq=0, options=b"\0" * 44), "exceed 40"),
    ],
)
def test_builders_reject_bad_fields(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "needs 20 bytes"),
        (b"\x45" + b"\0" * 10, "needs 20 bytes"),
        (b"\x65" + b"\0" * 19, "version 6"),
        (b"\x44" + b"\0" * 19, "below 20"),
        (b"\x46" + b"\0" * 19, "options needs 24"),
    ],
)
def test_parse_ipv4_header_errors(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_ipv4_header(data)


def test_parse_ipv6_header_errors() -> None:
    with pytest.raises(ParseError, match="needs 40"):
        parse_ipv6_header(b"\x60" * 39)
    with pytest.raises(ParseError, match="version 4"):
        parse_ipv6_header(b"\x40" + bytes(39))


def test_ipv6_extension_walk() -> None:
    base = ipv6_header(EP6, TG6, 0, 24)
    hop_by_hop = bytes([60, 0]) + bytes(6)  # next: destination options, 8 bytes
    dest_opts = bytes([PROTO_UDP, 0]) + bytes(6)
    packet = base + hop_by_hop + dest_opts + bytes(8)
    assert skip_ipv6_extensions(packet, 0) == (PROTO_UDP, 56, None)
    first_fragment = struct.pack("!BBHI", PROTO_UDP, 0, 0x0001, 0xABCD)  # offset 0, M=1
    assert skip_ipv6_extensions(base + first_fragment, 44) == (PROTO_UDP, 48, 0xABCD)
    later = struct.pack("!BBHI", PROTO_UDP, 0, 8 << 3, 1)
    with pytest.raises(ParseError, match="non-first"):
        skip_ipv6_extensions(base + later, 44)
    with pytest.raises(ParseError, match="no upper-layer"):
        skip_ipv6_extensions(base, 59)
    with pytest.raises(ParseError, match="truncated"):
        skip_ipv6_extensions(base + b"\x11", 0)
    looping = base + (bytes([0, 0]) + bytes(6)) * 9
    with pytest.raises(ParseError, match="too many"):
        skip_ipv6_extensions(looping, 0)


# -- transport vectors from other implementations ------------------------------------------------


def test_udp_v4_equals_scamper_probe() -> None:
    # scamper 20211212 `trace -P udp-paris` first probe, as it handed it to sendto (strace).
    scamper = bytes.fromhex(
        "4500002c00014000011161240a4d01010a4d0302f346829b00180001713e" + "00" * 14
    )
    probe = udp_probe(
        EP4,
        TG4,
        sport=0xF346,
        dport=33435,
        ttl=1,
        ip_id=1,
        payload=bytes.fromhex("713e") + bytes(14),
        dont_fragment=True,
    )
    assert probe.packet == scamper


def test_udp_v6_checksum_equals_scamper_target() -> None:
    # scamper's IPv6 udp-paris picks the payload b291... so that the checksum is 0x0001 (the
    # probe number + 1); on a veth the quote showed 0xfb1b, the kernel's *partial*
    # checksum (pseudo-header sum, TX offload), which we check too.
    seg = udp_segment(EP6, TG6, 53153, 33435, bytes.fromhex("b291") + bytes(10))
    assert seg[:8] == bytes.fromhex("cfa1829b00140001")
    partial = ones_complement_sum(pseudo_header(as_address(EP6), as_address(TG6), 17, 20))
    assert partial == 0xFB1B


def test_tcp_syn_equals_scamper_probe() -> None:
    # scamper `-O rawtcp trace -P tcp`: a SYN with window 0 and no options.
    scamper = bytes.fromhex(
        "4500002800014000010661330a4d01010a4d0302f34b829b000000000000000050020000215f0000"
    )
    probe = tcp_syn_probe(
        EP4,
        TG4,
        sport=0xF34B,
        dport=33435,
        seq=0,
        ttl=1,
        window=0,
        mss=None,
        ip_id=1,
        dont_fragment=True,
    )
    assert probe.packet == scamper
    assert probe.key == ProbeKey(PROTO_TCP, as_address(TG4), 0xF34B, 33435, 0)


def test_icmp_echo_equals_scamper_and_ping() -> None:
    scamper = bytes.fromhex(
        "4500002c00014000010161340a4d01010a4d03020800f355f35500001154" + "00" * 14
    )
    probe = echo_probe(
        EP4,
        TG4,
        ident=0xF355,
        seq=0,
        ttl=1,
        ip_id=1,
        payload=bytes.fromhex("1154") + bytes(14),
        dont_fragment=True,
    )
    assert probe.packet == scamper
    # iputils ping's request (strace): timestamp, then bytes 0x10..0x37.
    ping = bytes.fromhex(
        "0800ef275e910001465a026b00000000a1ad010000000000"
        "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637"
    )
    assert icmp_echo(0x5E91, 1, ping[8:]) == ping


def test_icmpv6_echo_against_kernel_reply() -> None:
    # An ICMPv6 echo reply built by Linux in the testbed (tg -> ep); it verifies to zero
    # with our pseudo-header, and our request differs from it only in the type.
    reply = bytes.fromhex(
        "81000f515e950001465a026b000000000c0f020000000000"
        "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637"
    )
    ph = pseudo_header(as_address(TG6), as_address(EP6), PROTO_ICMPV6, len(reply))
    assert inet_checksum(ph + reply) == 0
    request = icmpv6_echo(EP6, TG6, 0x5E95, 1, reply[8:])
    assert request[0] == 128 and request[4:] == reply[4:]
    ph = pseudo_header(as_address(EP6), as_address(TG6), PROTO_ICMPV6, len(request))
    assert inet_checksum(ph + request) == 0


@given(
    sport=st.integers(0, 0xFFFF),
    dport=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=64),
    v6=st.booleans(),
)
def test_udp_checksum_verifies(sport: int, dport: int, payload: bytes, v6: bool) -> None:
    src, dst = (EP6, TG6) if v6 else (EP4, TG4)
    seg = udp_segment(src, dst, sport, dport, payload)
    ph = pseudo_header(as_address(src), as_address(dst), PROTO_UDP, len(seg))
    assert inet_checksum(ph + seg) == 0
    assert seg[6:8] != b"\0\0"  # zero would mean "no checksum"


# -- probes and keys ---------------------------------------------------------------------------


def test_traceroute_probe_like_butskoy() -> None:
    p4 = traceroute_probe(EP4, TG4, 3, sport=20556, ip_id=77)
    assert len(p4) == 60  # Butskoy: "60 byte packets"
    assert p4.packet[28:] == TRACEROUTE_PAYLOAD == b"@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_"
    assert p4.key == ProbeKey(PROTO_UDP, as_address(TG4), 20556, 33434 + 2)
    assert (p4.ttl, p4.ip_id, parse_ipv4_header(p4.packet).ttl) == (3, 77, 3)
    assert parse_ipv4_header(p4.packet).flags == 0  # Butskoy sets IP_PMTUDISC_DONT
    p6 = traceroute_probe(EP6, TG6, 5, sport=1, index=9, base_port=40000)
    assert len(p6) == 80 and p6.ip_id is None
    assert p6.key.dport == 40009 and parse_ipv6_header(p6.packet).hop_limit == 5


def test_probe_ip_id_random_but_never_zero() -> None:
    ids = {udp_probe(EP4, TG4, sport=1, dport=2).ip_id for _ in range(200)}
    assert 0 not in ids and len(ids) > 150


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: traceroute_probe(EP4, TG4, 0, sport=1), "ttl"),
        (lambda: traceroute_probe(EP4, TG4, 1, sport=1, base_port=65535, index=1), "65535"),
        (lambda: udp_probe("0.0.0.0", TG4, sport=1, dport=2), "endpoint's address"),
        (lambda: udp_probe(EP4, TG6, sport=1, dport=2), "different IP versions"),
        (lambda: echo_probe("::", TG6, ident=1, seq=1), "endpoint's address"),
        (lambda: udp_probe(EP4, TG4, sport=1, dport=2, ip_id=70000), "ip_id"),
        (lambda: tcp_syn_probe(EP4, TG4, sport=1, dport=2, seq=-1), "seq"),
    ],
)
def test_probe_errors(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_echo_probe_v4_may_leave_source_to_the_kernel() -> None:
    probe = echo_probe("0.0.0.0", TG4, ident=7, seq=9, ip_id=5)
    assert probe.key == ProbeKey(1, ipaddress.IPv4Address(TG4), 7, 0, 9)
    assert icmp_echo(7, 9, probe.packet[28:]) == probe.packet[20:]


@given(
    kind=st.sampled_from(["udp", "echo", "tcp"]),
    v6=st.booleans(),
    a=st.integers(0, 0xFFFF),
    b=st.integers(0, 0xFFFF),
    seq=st.integers(0, 0xFFFFFFFF),
    ttl=st.integers(1, 255),
)
def test_probe_key_of_packet_and_of_its_quote(
    kind: str, v6: bool, a: int, b: int, seq: int, ttl: int
) -> None:
    src, dst = (EP6, TG6) if v6 else (EP4, TG4)
    if kind == "udp":
        probe = udp_probe(src, dst, sport=a, dport=b, ttl=ttl)
    elif kind == "echo":
        probe = echo_probe(src, dst, ident=a, seq=b, ttl=ttl)
    else:
        probe = tcp_syn_probe(src, dst, sport=a, dport=b, seq=seq, ttl=ttl)
    assert probe_key(probe.packet) == probe.key
    header = 40 if v6 else 20
    assert probe_key(probe.packet[: header + 8]) == probe.key  # the minimal ICMP quote


def named_by_message(value: object) -> str:
    """The case's id: its message (bytes whose IP ident is the pid would differ between
    pytest-xdist's workers, which must all collect the same ids)."""
    return value if isinstance(value, str) else "packet"


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"", "empty"),
        (b"\x10" + bytes(30), "version 1"),
        (udp_probe(EP4, TG4, sport=1, dport=2).packet[:27], "truncated to 7"),
        (ipv4_header(EP4, TG4, 47, 8) + bytes(8), "protocol 47"),
        (ipv4_header(EP4, TG4, 17, 8, frag_offset=3) + bytes(8), "non-first IPv4 fragment"),
        (ipv6_header(EP6, TG6, 58, 8) + bytes([129]) + bytes(7), "not an echo request"),
    ],
    ids=named_by_message,
)
def test_probe_key_errors(packet: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        probe_key(packet)


def test_probe_table() -> None:
    table: ProbeTable[int] = ProbeTable()
    p1 = traceroute_probe(EP4, TG4, 1, sport=9)
    p2 = traceroute_probe(EP4, TG4, 2, sport=9)
    table.add(p1.key, 1)
    table.add(p2.key, 2)
    with pytest.raises(ValueError, match="same key"):
        table.add(p1.key, 3)
    assert len(table) == 2 and p1.key in table and list(table) == [p1.key, p2.key]
    assert table.get(p2.key) == 2 and table.pop(p2.key) == 2 and table.pop(p2.key) is None


@pytest.mark.parametrize("v6", [False, True])
def test_fragment_cuts_a_packet_as_a_kernel_does(v6: bool) -> None:
    """Fragments of at most the MTU, payload cut at multiples of 8 bytes, in order, the
    last without "more fragments"; put back together they are the packet's payload."""
    from packetlab.measure.packets import fragment, parse_ipv6_header
    from packetlab.measure.probes import traceroute_payload, traceroute_probe

    src, dst = ("fd00::1", "fd00::2") if v6 else ("10.0.0.1", "10.0.0.2")
    whole = traceroute_probe(src, dst, 3, sport=1000, payload=traceroute_payload(3000)).packet
    frags = fragment(whole, 1400, ident=0x1234)
    assert fragment(whole, 65535) == [whole]
    assert len(frags) == 3 and all(len(f) <= 1400 for f in frags)
    body, hl = b"", 40 if v6 else 20
    for n, f in enumerate(frags):
        if v6:
            h6 = parse_ipv6_header(f)
            assert h6.next_header == 44 and h6.payload_length == len(f) - 40
            nh, _, off_m, ident = struct.unpack_from("!BBHI", f, 40)
            assert (nh, ident, off_m & 1, off_m & ~7) == (17, 0x1234, n < 2, len(body))
            body += f[48:]
        else:
            h = parse_ipv4_header(f)
            assert inet_checksum(f[:20]) == 0 and h.total_length == len(f) and h.ttl == 3
            assert (h.flags & 1, h.frag_offset * 8) == (int(n < 2), len(body))
            body += f[hl:]
    assert body == whole[hl:]


def test_a_packet_with_df_is_not_fragmented() -> None:
    from packetlab.measure.packets import fragment
    from packetlab.measure.probes import traceroute_payload, udp_probe

    p = udp_probe(
        "10.0.0.1", "10.0.0.2", sport=1, dport=2, payload=traceroute_payload(2000),
        dont_fragment=True,
    )  # fmt: skip
    with pytest.raises(ValueError, match="with DF does not fit 1500 bytes"):
        fragment(p.packet, 1500)
