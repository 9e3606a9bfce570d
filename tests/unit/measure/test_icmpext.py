"""ICMP extensions (RFC 4884/4950) as traceroute -e finds, checks and prints them, and
traceroute --back's hop guess."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packetlab.measure import icmpext
from packetlab.measure.packets import PROTO_ICMP, inet_checksum, ip_packet
from packetlab.measure.probes import traceroute_probe
from packetlab.measure.records_fields import RecordError
from packetlab.measure.records_traceroute import Hop, back_hops, traceroute_line
from packetlab.measure.replies import parse_reply

EP4, R14, TG4 = "10.77.1.1", "10.77.1.2", "10.77.3.2"


def mpls(label: int, exp: int, s: int, ttl: int) -> bytes:
    return struct.pack("!I", label << 12 | exp << 9 | s << 8 | ttl)


def obj(cn: int, ct: int, data: bytes) -> bytes:
    return struct.pack("!HBB", 4 + len(data), cn, ct) + data


def structure(*objects: bytes, checksum: bool = True, version: int = 2) -> bytes:
    body = struct.pack("!BBH", version << 4, 0, 0) + b"".join(objects)
    if checksum:
        body = body[:2] + struct.pack("!H", inet_checksum(body)) + body[4:]
    return body


def time_exceeded(
    quote: bytes, ext: bytes, icmp_type: int = 11, code: int = 0, pad: bool = True
) -> bytes:
    """A router's RFC 4884 error: the quote padded to 128 bytes, then the extension."""
    padded = quote + bytes(max(0, 128 - len(quote))) if ext and pad else quote
    rest = struct.pack("!BBH", 0, len(padded) // 4 if ext else 0, 0)  # quote's length
    msg = struct.pack("!BBH", icmp_type, code, 0) + rest + padded + ext
    msg = msg[:2] + struct.pack("!H", inet_checksum(msg)) + msg[4:]
    return ip_packet(R14, EP4, PROTO_ICMP, msg, ttl=63)


LABELS = obj(1, 1, mpls(16, 0, 0, 1) + mpls(24000, 5, 1, 255))


def test_mpls_label_stack_of_a_time_exceeded_as_traceroute_prints_it() -> None:
    probe = traceroute_probe(EP4, TG4, 1, sport=20556)
    raw = time_exceeded(probe.packet, structure(LABELS))
    reply = parse_reply(raw, verify_checksums=True)
    hop = Hop.from_reply(1, reply, probe_send_ns=0, reply_recv_ns=1_000_000, probe_len=60)
    assert hop.icmpext == (
        {
            "ie_cn": 1,
            "ie_ct": 1,
            "ie_dl": 8,
            "mpls_labels": [
                {"mpls_label": 16, "mpls_exp": 0, "mpls_s": 0, "mpls_ttl": 1},
                {"mpls_label": 24000, "mpls_exp": 5, "mpls_s": 1, "mpls_ttl": 255},
            ],
        },
    )
    line = traceroute_line(1, [hop, hop], extensions=True)
    assert line == (
        " 1  10.77.1.2 <MPLS:L=16,E=0,S=0,T=1/L=24000,E=5,S=1,T=255>  1.000 ms  1.000 ms"
    )
    assert traceroute_line(1, [hop]) == " 1  10.77.1.2  1.000 ms"  # (without -e)
    assert Hop.from_dict(hop.to_dict()) == hop
    assert hop.to_dict()["icmpext"][0]["mpls_labels"][1]["mpls_label"] == 24000


def test_other_objects_and_several_objects_as_traceroute_prints_them() -> None:
    ext = structure(obj(2, 3, bytes.fromhex("0000abcd12345678")), obj(1, 1, b""), LABELS)
    got = icmpext.decode(ext)
    assert got is not None
    assert icmpext.text(got) == (
        "2/3:0000abcd,12345678;1/1:;MPLS:L=16,E=0,S=0,T=1/L=24000,E=5,S=1,T=255"
    )
    assert icmpext.decode(structure(LABELS, checksum=False)) is not None  # 0: not checked


@pytest.mark.parametrize(
    ("ext", "why"),
    [
        (structure(LABELS, version=1), "version 1"),
        (structure(LABELS)[:2] + b"\x12\x34" + structure(LABELS)[4:], "a wrong checksum"),
        (structure(struct.pack("!HBB", 40, 1, 1) + mpls(16, 0, 1, 1)), "an object too long"),
        (structure(struct.pack("!HBB", 6, 1, 1) + b"\0\0"), "not whole words"),
        (structure(struct.pack("!HBB", 2, 1, 1)), "shorter than its header"),
        (structure(LABELS, checksum=False) + b"\0\0", "bytes left over"),
    ],
)
def test_what_traceroute_refuses_is_no_extension(ext: bytes, why: str) -> None:
    assert icmpext.decode(ext) is None, why


def test_where_traceroute_looks_for_the_structure() -> None:
    """At 128 bytes into the quote when the quote is longer than the probe; else every 4
    bytes from there (IPv4), the first that holds winning."""
    probe = traceroute_probe(EP4, TG4, 1, sport=20556, payload=bytes(172))  # 200 bytes
    quote = probe.packet[:132]  # the router quotes 132 bytes: the structure is at 132
    reply = parse_reply(time_exceeded(quote, structure(LABELS), pad=False))
    assert reply.extension is not None and len(reply.extension) == 4 + 16
    scanned = Hop.from_reply(1, reply, probe_send_ns=None, reply_recv_ns=None, probe_len=200)
    assert scanned.icmpext is not None and scanned.icmpext[0]["ie_cn"] == 1
    at_128 = Hop.from_reply(1, reply, probe_send_ns=None, reply_recv_ns=None, probe_len=60)
    assert at_128.icmpext is None  # (the quote is longer than a 60-byte probe: only 128)


def test_errors_that_carry_no_extensions() -> None:
    probe = traceroute_probe(EP4, TG4, 1, sport=20556)
    short = parse_reply(time_exceeded(probe.packet, b""))  # RFC 792: no padding
    assert short.extension is None
    # "fragmentation needed" is an unreachable: it may carry one
    redirect = time_exceeded(probe.packet, structure(LABELS), icmp_type=3, code=4)
    assert parse_reply(redirect).extension is not None


def test_a_changed_extension_shows_the_address_again() -> None:
    probe = traceroute_probe(EP4, TG4, 1, sport=20556)
    one = parse_reply(time_exceeded(probe.packet, structure(LABELS)))
    other = parse_reply(time_exceeded(probe.packet, structure(obj(1, 1, mpls(17, 0, 1, 1)))))
    a = Hop.from_reply(1, one, probe_send_ns=0, reply_recv_ns=2_000_000, probe_len=60)
    b = Hop.from_reply(1, other, probe_send_ns=0, reply_recv_ns=3_000_000, probe_len=60)
    star = Hop.timeout(1)
    assert traceroute_line(1, [a, star, b], extensions=True) == (
        " 1  10.77.1.2 <MPLS:L=16,E=0,S=0,T=1/L=24000,E=5,S=1,T=255>  2.000 ms *"
        " 10.77.1.2 <MPLS:L=17,E=0,S=1,T=1>  3.000 ms"
    )
    assert traceroute_line(1, [a, star, b]) == " 1  10.77.1.2  2.000 ms *  3.000 ms"


def test_bad_icmpext_in_json_is_a_record_error() -> None:
    hop = Hop(1, "10.0.0.1", 1.0).to_dict()
    for bad in ("x", [1], [{"ie_cn": 1}], [{"ie_cn": 1, "ie_ct": 1, "ie_dl": 4, "mpls_labels": 3}]):
        with pytest.raises(RecordError):
            Hop.from_dict({**hop, "icmpext": bad})


def test_back_hops_as_traceroute_guesses_them() -> None:
    assert [back_hops(t) for t in (64, 63, 1, 128, 120, 255, 250)] == [1, 2, 64, 1, 9, 1, 6]
    far = Hop(3, "10.0.0.1", 1000.0, reply_ttl=61)  # 4 hops back, 3 forward
    near = Hop(3, "10.0.0.1", 2000.0, reply_ttl=62)  # 3 back: no mark
    assert traceroute_line(3, [far, near], back=True) == (
        " 3  10.0.0.1 '-4'  1.000 ms 10.0.0.1  2.000 ms"
    )
    assert traceroute_line(3, [near, near], back=True) == " 3  10.0.0.1  2.000 ms  2.000 ms"
    assert traceroute_line(3, [far, near]) == " 3  10.0.0.1  1.000 ms  2.000 ms"


@given(st.binary(max_size=300), st.sampled_from([0, 4, 8]))
def test_decode_takes_any_bytes(data: bytes, step: int) -> None:
    got = icmpext.decode(data, step=step)
    if got is not None:
        assert isinstance(icmpext.text(got), str)


def test_recorded_route_as_iputils_reads_it() -> None:
    from packetlab.measure.packets_ip_options import record_route_option, recorded_route

    opt = record_route_option("10.0.0.1")
    assert recorded_route(opt) == ("10.0.0.1",)
    assert recorded_route(opt, received_by="10.0.0.9") == ("10.0.0.1", "10.0.0.9")
    assert recorded_route(record_route_option()) is None  # nothing recorded yet
    full = bytes([1, 7, 39, 40]) + bytes(range(36))
    assert len(recorded_route(full, received_by="10.0.0.9") or ()) == 9  # no room: as is
    assert recorded_route(bytes([1, 1, 0, 0])) is None  # NOPs, then the end
    for junk in (bytes([7]), bytes([7, 1]), bytes([7, 50, 4, 0]), bytes([68, 4, 5, 0])):
        assert recorded_route(junk) is None


def test_tcp_reply_flags_as_traceroute_t_o_info_prints_them() -> None:
    from packetlab.measure.records_traceroute import tcp_flag_names

    assert [tcp_flag_names(f) for f in (0x12, 0x14, 0x04, 0xFF)] == [
        "syn,ack", "rst,ack", "rst", "fin,syn,rst,psh,ack,urg,ece,cwr",
    ]  # fmt: skip
    hop = Hop(3, "10.0.0.3", 1000.0, reply_type="tcp-rst", tcp_flags=0x14)
    assert traceroute_line(3, [hop, hop], tcp_info=True) == (
        " 3  10.0.0.3 <rst,ack>  1.000 ms  1.000 ms"
    )
    assert traceroute_line(3, [hop]) == " 3  10.0.0.3  1.000 ms"
    assert Hop.from_dict(hop.to_dict()) == hop


def test_an_icmpv6_time_exceeded_with_labels() -> None:
    """IPv6: the quote padded to 128 bytes too (RFC 4884: its length in 64-bit words)."""
    from packetlab.measure.packets import PROTO_ICMPV6, as_address, pseudo_header

    ep, r1, tg = "fd00:77:1::1", "fd00:77:1::2", "fd00:77:3::2"
    probe = traceroute_probe(ep, tg, 1, sport=20556)  # 80 bytes
    quote = probe.packet + bytes(128 - len(probe.packet))
    msg = struct.pack("!BBHBBH", 3, 0, 0, 16, 0, 0) + quote + structure(LABELS)
    ph = pseudo_header(as_address(r1), as_address(ep), PROTO_ICMPV6, len(msg))
    msg = msg[:2] + struct.pack("!H", inet_checksum(ph + msg)) + msg[4:]
    reply = parse_reply(ip_packet(r1, ep, PROTO_ICMPV6, msg), verify_checksums=True)
    hop = Hop.from_reply(1, reply, probe_send_ns=0, reply_recv_ns=1000, probe_len=80)
    assert hop.icmpext is not None and hop.icmpext[0]["mpls_labels"][0]["mpls_label"] == 16
    # a packet too big carries none (traceroute -e looks only in these two)
    big = struct.pack("!BBHI", 2, 0, 0, 1280) + quote + structure(LABELS)
    ph = pseudo_header(as_address(r1), as_address(ep), PROTO_ICMPV6, len(big))
    big = big[:2] + struct.pack("!H", inet_checksum(ph + big)) + big[4:]
    assert parse_reply(ip_packet(r1, ep, PROTO_ICMPV6, big)).extension is None
