"""scamper's warts format: the bytes scamper writes for the file records, our trace and ping
objects read back field by field (scamper's tools reading them:
tests/integration/test_warts_scamper.py)."""

from __future__ import annotations

import struct

import pytest

from packetlab.measure.records_ping import PingError, PingReply, PingResult
from packetlab.measure.records_traceroute import Hop, TracerouteResult
from packetlab.measure.warts_format import (
    OBJ_CYCLE_START,
    OBJ_CYCLE_STOP,
    OBJ_LIST,
    OBJ_PING,
    OBJ_TRACE,
    WartsError,
    cycle_start_object,
    cycle_stop_object,
    flag_bytes,
    list_object,
)
from packetlab.measure.warts_ping import ping_object, ping_warts
from packetlab.measure.warts_read import read_warts
from packetlab.measure.warts_trace import trace_object, traceroute_warts

T0 = 1796403716_440364_000  # 2026-12-04 17:01:56.440364 UTC


def _result(
    hops: tuple[Hop, ...], dst: str = "10.0.0.3", src: str = "10.0.0.2", method: str = "udp-paris"
) -> TracerouteResult:
    return TracerouteResult(
        dst=dst, hops=hops, src=src, method=method,
        max_ttl=30, probe_size=60, start_ns=T0, send_stamp="kernel", recv_stamp="kernel",
    )  # fmt: skip


HOPS = (
    Hop(1, "10.0.0.1", 1234.567, "time-exceeded", 0, T0, T0 + 1_234_567, 64, 77),
    Hop.timeout(1, probe_send_ns=T0 + 1000),
    Hop(1, "10.0.0.9", 2000.4, "time-exceeded", 0, T0 + 2000, T0 + 2_002_400, 63, 78),
    Hop.timeout(2, probe_send_ns=T0 + 3000),
    Hop.timeout(2, probe_send_ns=T0 + 4000),
    Hop.timeout(2, probe_send_ns=T0 + 5000),
    Hop(3, "10.0.0.3", 3000.0, "dest-unreachable", 3, T0 + 6000, T0 + 3_006_000, 61, None),
)


# -- the file records, byte for byte as scamper 20211212 wrote them --------------------------


def test_list_record_is_scampers() -> None:
    # scamper -O warts: id 1, human id 0, name "default", descr "default"
    assert list_object().hex() == "120500010000001b000000010000000064656661756c7400010008" + (
        "64656661756c7400"
    )


def test_cycle_start_and_stop_are_scampers() -> None:
    assert cycle_start_object(0x6B12F204, hostname="vm").hex() == (
        "12050002000000160000000100000001000000006b12f204020003766d00"
    )
    assert cycle_stop_object(0x6B12F209).hex() == "1205000400000009000000016b12f20900"


def test_flags_seven_a_byte_with_the_high_bit_for_more() -> None:
    assert flag_bytes([]) == b"\x00"
    assert flag_bytes([1]) == b"\x01"
    assert flag_bytes([7]) == b"\x40"
    assert flag_bytes([8]) == b"\x80\x01"
    # the trace fields scamper set for `trace -P udp-paris`: f3 fe ff 3f
    ids = [1, 2, 5, 6, 7, *range(9, 28)]
    assert flag_bytes(ids) == bytes.fromhex("f3feff3f")


# -- the trace object ---------------------------------------------------------------------------


def _trace(result: TracerouteResult, **kw: object) -> tuple[dict[int, object], list[dict]]:
    (obj,) = read_warts(trace_object(result, **kw))  # type: ignore[arg-type]
    assert obj.kind == OBJ_TRACE and obj.fixed == {"end": 0}
    return obj.fields, obj.hops


def test_trace_fields() -> None:
    fields, _ = _trace(
        _result(HOPS), attempts=3, first_ttl=1, wait_s=5, sport=4000, dport=33435, tos=0x10
    )
    assert fields[1] == fields[2] == 1  # list and cycle ids
    assert fields[5] == struct.pack("!II", 1796403716, 440364)  # start
    assert (fields[6], fields[7]) == (1, 0)  # COMPLETED
    assert fields[8] == 0x01  # all attempts: every query sent, as traceroute (scamper -Q)
    assert (fields[9], fields[10], fields[11]) == (3, 30, 5)  # attempts, hoplimit, udp-paris
    assert (fields[12], fields[13], fields[14]) == (60, 4000, 33435)
    assert (fields[15], fields[16], fields[17]) == (1, 0x10, 5)
    assert fields[19] == 3  # hop count: the last TTL probed
    assert fields[23] == 7  # probes sent
    assert (fields[26], fields[27]) == ("10.0.0.2", "10.0.0.3")


@pytest.mark.parametrize(("wait", "byte"), [(5, 5), (0.5, 1), (2.2, 3), (1000, 255)])
def test_the_wait_is_whole_seconds_rounded_up(wait: float, byte: int) -> None:
    assert _trace(_result(HOPS), wait_s=wait)[0][17] == byte


def test_hops_are_the_answered_probes_by_ttl_with_their_place_among_the_ttls_probes() -> None:
    _, hops = _trace(_result(HOPS))
    got = [(h[2], h[5], h[18], h[6], h[3], h[7] >> 8, h[7] & 0xFF) for h in hops]
    assert got == [
        (1, 0, "10.0.0.1", 1235, 64, 11, 0),  # ttl, probe id, addr, rtt µs, reply ttl, icmp
        (1, 2, "10.0.0.9", 2000, 63, 11, 0),
        (3, 0, "10.0.0.3", 3000, 61, 3, 3),
    ]
    assert hops[0][4] == 0x11  # received with a kernel stamp, reply TTL known
    assert hops[0][10] == 77 and 10 not in hops[2]  # reply IP ID only when known
    assert hops[1][19] == struct.pack("!II", 1796403716, 440366)  # tx
    assert hops[0][8] == 60


def test_hops_come_in_ttl_order_whatever_the_probe_order() -> None:
    shuffled = (HOPS[6], *HOPS[:6])
    assert _trace(_result(shuffled))[1] == _trace(_result(HOPS))[1]


def test_addresses_are_written_once_per_object_then_by_index() -> None:
    loop = (Hop(1, "127.0.0.1", 26.0, "dest-unreachable", 3, T0, T0 + 26_000, 64, 1),)
    body = trace_object(_result(loop, dst="127.0.0.1", src="127.0.0.1"))
    inline, first_ref = bytes.fromhex("04017f000001"), bytes.fromhex("0000000000")
    assert body.count(inline) == 1 and body.count(first_ref) == 2  # dst and the hop: id 0
    assert body.index(inline) < body.index(first_ref)


def test_ipv6_addresses_are_type_2() -> None:
    hops = (Hop(1, "2001:db8::1", 10.0, "time-exceeded", 0, T0, T0 + 10_000, 64),
            Hop(2, "2001:db8::2", 20.0, "dest-unreachable", 4, T0, T0 + 20_000, 63))  # fmt: skip
    body = trace_object(_result(hops, dst="2001:db8::2", src="2001:db8::9"))
    assert bytes.fromhex("1002") + bytes.fromhex("20010db8" + "0" * 23 + "9") in body
    fields, got = _trace(_result(hops, dst="2001:db8::2", src="2001:db8::9"))
    assert [h[7] for h in got] == [3 << 8, 1 << 8 | 4]  # ICMPv6 time exceeded, unreachable
    assert fields[27] == "2001:db8::2"


@pytest.mark.parametrize(
    ("hops", "interrupted", "reason"),
    [
        (HOPS, False, (1, 0)),  # COMPLETED
        (HOPS[:6], False, (7, 0)),  # HOPLIMIT
        (HOPS[:6], True, (9, 0)),  # HALTED
        (
            (*HOPS[:6], Hop(3, "10.0.0.7", 5.0, "dest-unreachable", 1, T0, T0 + 5000)),
            False,
            (2, 1),
        ),  # UNREACH, host unreachable
    ],
)
def test_stop_reason(hops: tuple[Hop, ...], interrupted: bool, reason: tuple[int, int]) -> None:
    fields, _ = _trace(_result(hops), interrupted=interrupted)
    assert (fields[6], fields[7]) == reason


@pytest.mark.parametrize(
    ("method", "kind", "flags"),
    [("tcp", "tcp-synack", 0x12), ("tcp", "tcp-rst", 0x14), ("tcp-ack", "tcp-rst", 0x04)],
)
def test_tcp_replies_carry_tcp_flags_not_icmp(method: str, kind: str, flags: int) -> None:
    hops = (Hop(1, "10.0.0.3", 5.0, kind, None, T0, T0 + 5000, 64),)
    fields, (hop,) = _trace(_result(hops, method=method))
    assert fields[11] == (3 if method == "tcp" else 6)
    assert hop[4] & 0x20 and hop[15] == flags and 7 not in hop


def test_packet_too_big_names_the_next_hop_mtu() -> None:
    hops = (Hop(1, "10.0.0.1", 5.0, "dest-unreachable", 4, T0, T0 + 5000, 64, next_mtu=1400),)
    _, (hop,) = _trace(_result(hops))
    assert hop[7] == 3 << 8 | 4 and hop[12] == 1400


def test_a_method_warts_has_no_type_for_is_refused() -> None:
    with pytest.raises(WartsError, match="no warts trace type"):
        trace_object(_result(HOPS, method="sctp"))


def test_whole_file() -> None:
    data = traceroute_warts(_result(HOPS), hostname="vm", stop_s=1796403720)
    objs = read_warts(data)
    assert [o.kind for o in objs] == [OBJ_LIST, OBJ_CYCLE_START, OBJ_TRACE, OBJ_CYCLE_STOP]
    assert objs[1].fixed["start"] == 1796403716 and objs[1].fields == {2: "vm"}
    assert objs[3].fixed["stop"] == 1796403720


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x12\x06\x00\x01\x00\x00\x00\x00", "bad warts magic"),
        (bytes.fromhex("1205000100000010") + b"\x00" * 4, "runs past the end"),
        (b"\x12\x05\x00", "stray bytes"),
        (bytes.fromhex("1205000400000004") + b"\x00" * 4, "truncated"),
        (
            bytes.fromhex("120500060000000f808080200005000000000300000000"),
            "address index 3",
        ),  # the destination (27) by an index never written
    ],
)
def test_reader_refuses_bad_bytes(data: bytes, error: str) -> None:
    with pytest.raises(WartsError, match=error):
        read_warts(data)


# -- ping -----------------------------------------------------------------------------------------


def _ping(
    replies: tuple[PingReply, ...], errors: tuple[PingError, ...] = (), dst: str = "10.0.0.3"
) -> PingResult:
    return PingResult(
        dst=dst, sent=4, replies=replies, src="10.0.0.2" if ":" not in dst else "2001:db8::9",
        start_ns=T0, send_stamp="kernel", recv_stamp="kernel", errors=errors,
    )  # fmt: skip


REPLIES = (
    PingReply(1, "10.0.0.3", 21.4, 64, 64, T0, T0 + 21_400),
    PingReply(2, None, None, probe_send_ns=T0 + 200_000_000),
    PingReply(4, "10.0.0.3", 38.0, 64, 64, T0 + 600_000_000, T0 + 600_038_000),
    PingReply(4, "10.0.0.3", 50.0, 64, 64, T0 + 600_000_000, T0 + 600_050_000, dup=True),
)
ERRORS = (PingError(3, "10.0.0.1", "time-exceeded", 11, 0, None, T0 + 4 * 10**8, T0 + 400_026_000),)


def _ping_read(data: bytes) -> tuple[dict[int, object], list[dict]]:
    (obj,) = read_warts(data)
    assert obj.kind == OBJ_PING
    return obj.fields, obj.hops


def test_ping_fields() -> None:
    fields, _ = _ping_read(
        ping_object(_ping(REPLIES, ERRORS), count=4, size=56, interval_s=0.2, timeout_s=10, ttl=9)
    )
    assert fields[5] == struct.pack("!II", 1796403716, 440364)
    assert (fields[6], fields[10], fields[11], fields[12], fields[13]) == (1, 4, 84, 0, 9)
    assert (fields[15], fields[20], fields[21], fields[27], fields[28]) == (
        4, "10.0.0.2", "10.0.0.3", 10, 200_000,
    )  # fmt: skip
    assert 16 not in fields  # method 0: ICMP echo, left out as scamper does


def test_ping_record_route_and_timestamps_as_scamper_writes_them() -> None:
    """ping -R / -T tsonly|tsandaddr --warts: scamper's flag (v4rr 0x01, tsonly 0x08,
    tsandaddr 0x10), the probe and reply sizes with the option, each reply's option
    (v4rr: the addresses; v4ts: the times, with tsandaddr the addresses). They were left
    out, and the sizes 84 (session 12 fresh-eyes pass; sc_wartsdump shows them)."""
    import dataclasses

    from packetlab.measure.packets_ip_options import IpTimestamps

    route = ("10.0.0.2", "10.0.0.1", "10.0.0.3")
    stamps = IpTimestamps(1, (("10.0.0.2", 1000), ("10.0.0.3", 2000)), unrecorded=1)
    rr = (dataclasses.replace(REPLIES[0], route=route),)
    ts = (dataclasses.replace(REPLIES[0], ip_timestamps=stamps),)
    fields, (got,) = _ping_read(ping_object(_ping(rr), ip_option="v4rr", options_len=40))
    assert (fields[22], fields[11], got[4], got[13]) == (0x01, 124, 124, list(route))
    fields, (got,) = _ping_read(ping_object(_ping(ts), ip_option="tsandaddr", options_len=36))
    assert (fields[22], fields[11], got[4]) == (0x10, 120, 120)
    assert got[14] == ([1000, 2000], ["10.0.0.2", "10.0.0.3"])
    only = IpTimestamps(0, ((None, 1000), (None, 2000)))
    ts = (dataclasses.replace(REPLIES[0], ip_timestamps=only),)
    fields, (got,) = _ping_read(ping_object(_ping(ts), ip_option="tsonly", options_len=40))
    assert (fields[22], got[14]) == (0x08, ([1000, 2000], []))
    fields, (got,) = _ping_read(ping_object(_ping(REPLIES[:1])))  # no option: as before
    assert (22 in fields, fields[11], 13 in got, 14 in got) == (False, 84, False, False)


def test_ping_tsprespec_as_scamper_writes_it() -> None:
    """ping -T tsprespec HOST... TARGET --warts: no flag (scamper has none), its hosts in
    scamper's probe_tsps field (24: a count, the addresses) and each reply's v4ts with
    the addresses (session 12 wrote neither: `sc_warts2json` showed no `probe_tsps`)."""
    import dataclasses

    from packetlab.measure.packets_ip_options import IpTimestamps

    stamps = IpTimestamps(3, (("10.0.0.3", 1000), ("10.0.0.9", None)))
    ts = (dataclasses.replace(REPLIES[0], ip_timestamps=stamps),)
    data = ping_object(_ping(ts), ip_option="tsprespec", options_len=20,
                       tsps=("10.0.0.3", "10.0.0.9"))  # fmt: skip
    fields, (got,) = _ping_read(data)
    assert 22 not in fields and fields[24] == ["10.0.0.3", "10.0.0.9"] and fields[11] == 104
    assert got[14] == ([1000, 0], ["10.0.0.3", "10.0.0.9"])
    fields, (got,) = _ping_read(ping_object(_ping(ts), ip_option=None, options_len=20))
    assert 24 not in fields and 14 not in got  # (without the option named: as before)


def test_ping_addresses_are_numbered_in_file_order() -> None:
    """A router's error (request 1) before a reply (request 2) whose record route names
    that router and others first: each address written whole where the file first holds
    it (the table numbered them as the records were built, replies first, then sorted:
    the error named its router by an index the file defined only later)."""
    import dataclasses

    route = ("10.0.0.7", "10.0.0.1", "10.0.0.8")
    rr = (dataclasses.replace(REPLIES[0], seq=2, route=route),)
    err = (dataclasses.replace(ERRORS[0], seq=1),)
    _, got = _ping_read(ping_object(_ping(rr, err), ip_option="v4rr", options_len=40))
    assert [(r[7], r[12], r.get(13)) for r in got] == [
        (0, "10.0.0.1", None), (1, "10.0.0.3", list(route)),
    ]  # fmt: skip


def test_ping_replies_and_errors_in_request_order_from_0() -> None:
    _, got = _ping_read(ping_object(_ping(REPLIES, ERRORS)))
    assert [(r[7], r[12], r[5], r.get(6), r.get(3), r.get(4)) for r in got] == [
        (0, "10.0.0.3", 0x0000, 21, 64, 84),  # probe id, from, icmp, rtt µs, ttl, IP length
        (2, "10.0.0.1", 11 << 8, 26, None, None),  # a router's time exceeded
        (3, "10.0.0.3", 0x0000, 38, 64, 84),
        (3, "10.0.0.3", 0x0000, 50, 64, 84),  # the duplicate
    ]
    assert got[0][2] == 0x01 and 2 not in got[1]  # reply TTL known
    assert got[2][16] == struct.pack("!II", 1796403717, 40364)  # tx


def test_ping_ipv6_echo_reply_is_type_129_and_sizes_count_a_40_byte_header() -> None:
    r = (PingReply(1, "2001:db8::3", 5.0, 64, 64, T0, T0 + 5000),)
    fields, (got,) = _ping_read(ping_object(_ping(r, dst="2001:db8::3"), size=56))
    assert fields[11] == 104 and got[5] == 129 << 8 and got[4] == 104


def test_ping_interrupted_is_halted() -> None:
    fields, _ = _ping_read(ping_object(_ping(REPLIES), interrupted=True))
    assert fields[6] == 3


def test_ping_whole_file() -> None:
    objs = read_warts(ping_warts(_ping(REPLIES), hostname="vm"))
    assert [o.kind for o in objs] == [OBJ_LIST, OBJ_CYCLE_START, OBJ_PING, OBJ_CYCLE_STOP]
    assert objs[3].fixed["stop"] == 1796403717  # the last reply


# scamper 20211212: `scamper -O warts -c 'trace -P udp-paris -q 2' -i 127.0.0.1`
SCAMPERS = bytes.fromhex(
    "120500010000001b000000010000000064656661756c740001000864656661756c7400120500020000"
    "00160000000100000001000000006b12f204020003766d001205000600000061f3feff3f0033000000"
    "01000000016b12f2040006b82c0100020005002ce240829b0100050100010501000001000004017f00"
    "000100000000000001fe8f1a001f014011000000001a0303002c0048eb7ec00000000000006b12f204"
    "0006b8a000001205000400000009000000016b12f20400"
)


def test_reads_scampers_own_trace() -> None:
    objs = read_warts(SCAMPERS)
    assert [o.kind for o in objs] == [OBJ_LIST, OBJ_CYCLE_START, OBJ_TRACE, OBJ_CYCLE_STOP]
    assert SCAMPERS.startswith(list_object() + cycle_start_object(0x6B12F204, hostname="vm"))
    trace = objs[2]
    assert (trace.fields[11], trace.fields[26], trace.fields[27]) == (5, "127.0.0.1", "127.0.0.1")
    (hop,) = trace.hops
    assert (hop[2], hop[5], hop[6], hop[7], hop[18]) == (1, 0, 26, 0x0303, "127.0.0.1")


# -- session 26 (icmp26): an ICMPv6 error of a type no one assigned ---------------------------

OTHER = Hop(2, "fd00:77:2::2", 300.0, "other-error", 0, T0, T0 + 300_000, 63, icmp_type=100)
V6_HOPS = (Hop(1, "fd00:77:1::2", 50.0, "time-exceeded", 0, T0, T0 + 50_000, 64), OTHER)


def test_an_unassigned_icmpv6_error_is_stored_with_its_type_and_code() -> None:
    """`!<100-0>`: the hop record carries ICMP type 100, code 0 (scamper keeps type and
    code per reply; sc_warts2json shows ``"icmp_type":100, "icmp_code":0``), where
    session 25 wrote none; and the trace it ended stops ICMP, data 100 (sc_wartsdump:
    `icmp type 100`), not HOPLIMIT: its hop limit (30) was not reached."""
    fields, hops = _trace(_result(V6_HOPS, dst="fd00:99::1", src="fd00:77:1::1"))
    assert [h[7] for h in hops] == [3 << 8, 100 << 8]
    assert (fields[6], fields[7]) == (3, 100)


@pytest.mark.parametrize(
    ("last", "reason"),
    [
        (OTHER, ("ICMP", 100)),
        (Hop(2, "fd00:77:2::2", 1.0, "packet-too-big", 0, next_mtu=1000), ("ICMP", 2)),
        (Hop(2, "fd00:77:2::2", 1.0, "param-problem", 1), ("ICMP", 4)),
        (Hop(2, "fd00:77:2::2", 1.0, "time-exceeded", 1), ("ICMP", 3)),  # reassembly: !<3-1>
        (Hop(2, "fd00:77:2::2", 1.0, "dest-unreachable", 3), ("UNREACH", 3)),
        (Hop(2, "fd00:77:2::2", 1.0, "time-exceeded", 0), ("HOPLIMIT", 0)),
        (Hop(2, "fd00:99::1", 1.0, "other-error", 0, icmp_type=100), ("COMPLETED", 0)),
    ],
)
def test_the_error_that_ended_a_trace_is_its_stop_reason(
    last: Hop, reason: tuple[str, int]
) -> None:
    from packetlab.cli.report_traceroute import traceroute_stop_reason
    from packetlab.measure.warts_trace import scamper_stop

    result = _result((V6_HOPS[0], last), dst="fd00:99::1", src="fd00:77:1::1")
    assert scamper_stop(result) == reason
    assert traceroute_stop_reason(result, False) == reason[0]  # (the --json summary's)
