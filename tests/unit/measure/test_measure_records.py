"""Result records: JSON round trips, validation, traceroute/ping text."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packetlab.measure.packets import as_address, inet_checksum, ip_packet
from packetlab.measure.probes import traceroute_probe
from packetlab.measure.records import (
    Hop,
    PingError,
    PingReply,
    PingResult,
    RecordError,
    Stamp,
    TracerouteResult,
    format_ping,
    format_traceroute,
    hop_annotation,
    path_jaccard,
    ping_line,
    ping_pipe,
    ping_statistics,
    ping_time,
    traceroute_jsonl,
)
from packetlab.measure.replies import ReplyKind, parse_reply

TRACE = TracerouteResult(
    dst="10.77.3.2",
    src="10.77.1.1",
    max_ttl=30,
    probe_size=60,
    send_stamp=Stamp.KERNEL,
    recv_stamp=Stamp.KERNEL,
    hops=(
        Hop(1, "10.77.1.2", 56.0, ReplyKind.TIME_EXCEEDED, 0, 1_000, 57_000, 64, 7),
        Hop.timeout(2, probe_send_ns=2_000),
        Hop(3, "10.77.3.2", 21.7, ReplyKind.DEST_UNREACHABLE, 3, 3_000, 24_500, 62, 9),
    ),
)


def test_hop_from_reply() -> None:
    probe = traceroute_probe("10.77.1.1", "10.77.3.2", 1, sport=1)
    msg = bytearray(b"\x0b\x00\x00\x00" + bytes(4) + probe.packet)
    msg[2:4] = inet_checksum(bytes(msg)).to_bytes(2, "big")
    reply = parse_reply(ip_packet("10.77.1.2", "10.77.1.1", 1, bytes(msg), ttl=64, ident=5))
    hop = Hop.from_reply(1, reply, probe_send_ns=1_000_000, reply_recv_ns=1_056_789)
    assert hop == Hop(1, "10.77.1.2", 56.789, "time-exceeded", 0, 1_000_000, 1_056_789, 64, 5)
    assert Hop.from_reply(1, reply, probe_send_ns=None, reply_recv_ns=5).rtt_us is None
    assert as_address(hop.addr or "") == reply.src


def test_traceroute_json_round_trip() -> None:
    text = TRACE.to_json()
    assert json.loads(text)["hops"][0]["rtt_us"] == 56.0
    assert TracerouteResult.from_json(text) == TRACE


def test_traceroute_queries() -> None:
    assert TRACE.reached
    assert TRACE.path() == [(1, "10.77.1.2"), (2, None), (3, "10.77.3.2")]
    assert TRACE.addresses_by_ttl() == {
        1: frozenset({"10.77.1.2"}),
        2: frozenset(),
        3: frozenset({"10.77.3.2"}),
    }


def test_path_jaccard() -> None:
    other = TracerouteResult(
        dst=TRACE.dst,
        hops=(Hop(1, "10.77.1.2", 1.0), Hop(2, "10.77.2.2", 1.0), Hop(3, "10.77.3.2", 1.0)),
    )
    assert path_jaccard([TRACE], [TRACE]) == 1.0
    assert path_jaccard([TRACE], [other]) == pytest.approx(2 / 3)
    assert path_jaccard([TRACE, other], [other]) == 1.0
    assert path_jaccard([], []) == 1.0


def test_jsonl_one_object_per_hop() -> None:
    lines = traceroute_jsonl(TRACE).splitlines()
    objs = [json.loads(line) for line in lines]
    assert [(o["ttl"], o["addr"], o["rtt_us"]) for o in objs] == [
        (1, "10.77.1.2", 56.0),
        (2, None, None),
        (3, "10.77.3.2", 21.7),
    ]
    meta = json.loads(traceroute_jsonl(TRACE, meta=True).splitlines()[0])
    assert (meta["dst"], meta["tool"]) == ("10.77.3.2", "packetlab")
    assert Hop.from_dict(objs[0]) == TRACE.hops[0]


def test_format_traceroute_like_butskoy() -> None:
    multi = TracerouteResult(
        dst="10.77.9.9",
        max_ttl=3,
        probe_size=60,
        hops=(
            Hop(1, "10.77.1.2", 203.0, ReplyKind.DEST_UNREACHABLE, 0),
            Hop(1, "10.77.1.2", 8.0, ReplyKind.DEST_UNREACHABLE, 0),
            Hop(2, None, None),
            Hop(2, "10.77.2.2", 14.0, ReplyKind.TIME_EXCEEDED, 0),
            Hop(2, "10.77.2.3", 15.0, ReplyKind.TIME_EXCEEDED, 0),
        ),
    )
    assert format_traceroute(multi) == (
        "traceroute to 10.77.9.9 (10.77.9.9), 3 hops max, 60 byte packets\n"
        " 1  10.77.1.2  0.203 ms !N  0.008 ms !N\n"
        " 2  * 10.77.2.2  0.014 ms 10.77.2.3  0.015 ms\n"
    )
    assert format_traceroute(TRACE).splitlines()[1:] == [
        " 1  10.77.1.2  0.056 ms",
        " 2  *",
        " 3  10.77.3.2  0.022 ms",
    ]


@pytest.mark.parametrize(
    ("hop", "note"),
    [
        (Hop(1, "1.2.3.4", 1.0, ReplyKind.DEST_UNREACHABLE, 1), "!H"),
        (Hop(1, "1.2.3.4", 1.0, ReplyKind.DEST_UNREACHABLE, 3), ""),
        (Hop(1, "1.2.3.4", 1.0, ReplyKind.DEST_UNREACHABLE, 4), "!F"),
        (Hop(1, "1.2.3.4", 1.0, ReplyKind.DEST_UNREACHABLE, 13), "!X"),
        (Hop(1, "1.2.3.4", 1.0, ReplyKind.DEST_UNREACHABLE, 99), "!<99>"),
        (Hop(1, "fd00::1", 1.0, ReplyKind.DEST_UNREACHABLE, 4), ""),
        (Hop(1, "fd00::1", 1.0, ReplyKind.DEST_UNREACHABLE, 1), "!X"),
        (Hop(1, "fd00::1", 1.0, ReplyKind.PACKET_TOO_BIG, 0), "!F"),
        (Hop(1, "fd00::1", 1.0, ReplyKind.TIME_EXCEEDED, 0), ""),
    ],
)
def test_hop_annotation(hop: Hop, note: str) -> None:
    assert hop_annotation(hop) == note


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"ttl": 1, "addr": None}, "missing rtt_us"),
        ({"ttl": 1, "addr": None, "rtt_us": None, "colour": 1}, "unknown fields colour"),
        ({"ttl": "1", "addr": None, "rtt_us": None}, "ttl has the wrong type"),
        ({"ttl": None, "addr": None, "rtt_us": None}, "must not be null"),
        ({"ttl": 1, "addr": 5, "rtt_us": None}, "addr has the wrong type"),
        ({"ttl": 1, "addr": "x", "rtt_us": float("nan")}, "rtt_us has the wrong type"),
        ({"ttl": True, "addr": "x", "rtt_us": 1}, "ttl has the wrong type"),
        ([], "must be a JSON object"),
    ],
)
def test_hop_validation(obj: object, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        Hop.from_dict(obj)  # type: ignore[arg-type]


def test_traceroute_validation() -> None:
    with pytest.raises(RecordError, match="not JSON"):
        TracerouteResult.from_json("{")
    with pytest.raises(RecordError, match="JSON object"):
        TracerouteResult.from_json("[]")
    with pytest.raises(RecordError, match="list of hops"):
        TracerouteResult.from_dict({"dst": "x"})
    with pytest.raises(RecordError, match="missing dst"):
        TracerouteResult.from_dict({"hops": []})


hop_st = st.builds(
    Hop,
    ttl=st.integers(1, 255),
    addr=st.one_of(st.none(), st.ip_addresses().map(str)),
    rtt_us=st.one_of(st.none(), st.floats(0, 1e9, allow_nan=False)),
    reply_type=st.one_of(st.none(), st.sampled_from([k.value for k in ReplyKind])),
    code=st.one_of(st.none(), st.integers(0, 255)),
    probe_send_ns=st.one_of(st.none(), st.integers(0, 2**63)),
    reply_recv_ns=st.one_of(st.none(), st.integers(0, 2**63)),
)


@given(st.lists(hop_st, max_size=8), st.sampled_from(["packetlab", "traceroute", "scamper"]))
def test_traceroute_round_trip_property(hops: list[Hop], tool: str) -> None:
    result = TracerouteResult(dst="fd00::1", hops=tuple(hops), tool=tool)
    assert TracerouteResult.from_json(result.to_json()) == result
    for line, hop in zip(traceroute_jsonl(result).splitlines(), hops, strict=True):
        assert Hop.from_dict(json.loads(line)) == hop


# -- ping -----------------------------------------------------------------------------------------

PING = PingResult(
    dst="10.77.3.2",
    sent=4,
    replies=(
        PingReply(1, "10.77.3.2", 47.0, 62, 64, 10, 47_010),
        PingReply(2, None, None),
        PingReply(3, "10.77.3.2", 67.0, 62, 64),
        PingReply(4, "10.77.3.2", 57.0, 62, 64),
    ),
)


def test_ping_statistics() -> None:
    assert (PING.received, PING.loss) == (3, 0.25)
    stats = PING.stats()
    assert stats is not None
    assert (stats.min_us, stats.avg_us, stats.max_us) == (47.0, 57.0, 67.0)
    assert stats.mdev_us == pytest.approx(8.16496, rel=1e-5)
    empty = PingResult(dst="x", sent=0, replies=())
    assert empty.stats() is None and empty.loss == 0.0


def test_ping_json_and_text() -> None:
    assert PingResult.from_dict(json.loads(PING.to_json())) == PING
    text = format_ping(PING)
    assert "64 bytes from 10.77.3.2: icmp_seq=3 ttl=62 time=0.067 ms" in text
    assert "4 packets transmitted, 3 received, 25% packet loss" in text  # %g: 25, 33.3333
    assert "rtt min/avg/max/mdev = 0.047/0.057/0.067/0.008 ms" in text
    with pytest.raises(RecordError, match="list of replies"):
        PingResult.from_dict({"dst": "x", "sent": 1})
    with pytest.raises(RecordError, match="missing sent"):
        PingResult.from_dict({"dst": "x", "replies": []})


@pytest.mark.parametrize(
    ("rtt_us", "shown"),
    [
        (214.9, "0.214 ms"),  # whole us, 3 decimals below 1 ms
        (999.0, "0.999 ms"),
        (1000.0, "1.00 ms"),
        (1234.0, "1.23 ms"),  # 2 decimals below 10 ms
        (9994.0, "9.99 ms"),
        (9995.0, "10.0 ms"),  # 1 decimal below 100 ms
        (12345.0, "12.3 ms"),
        (99949.0, "99.9 ms"),
        (99950.0, "100 ms"),  # none above
        (123456.0, "123 ms"),
    ],
)
def test_ping_time_like_iputils(rtt_us: float, shown: str) -> None:
    assert ping_time(rtt_us) == shown
    line = ping_line(PingReply(1, "10.0.0.1", rtt_us, 64, 64))
    assert line == f"64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time={shown}"


def test_ping_statistics_like_iputils() -> None:
    """The counts and the RTT line as iputils 20221126 computes them: loss with %g, whole
    microseconds, integer mean and mdev (llsqrt), ipg/ewma for -i 0."""
    result = PingResult(
        dst="127.0.0.1",
        sent=3,
        replies=(
            PingReply(1, "127.0.0.1", 31.9, 64, 64),
            PingReply(2, "127.0.0.1", 101.2, 64, 64),
            PingReply(3, None, None),
        ),
    )
    assert ping_statistics(result, 405.4, name="localhost") == [
        "--- localhost ping statistics ---",
        "3 packets transmitted, 2 received, 33.3333% packet loss, time 405ms",
        "rtt min/avg/max/mdev = 0.031/0.066/0.101/0.035 ms",
    ]
    flood = ping_statistics(result, 0.066, interval=0)
    assert flood[-1] == "rtt min/avg/max/mdev = 0.031/0.066/0.101/0.035 ms, ipg/ewma 0.033/0.039 ms"
    lost = PingResult(dst="10.0.0.9", sent=7, replies=())
    assert ping_statistics(lost, 6000, errors=7)[1:] == [
        "7 packets transmitted, 0 received, +7 errors, 100% packet loss, time 6000ms",
        "",  # ping's closing newline after the counts when no RTT line
    ]


def test_ping_pipe_like_iputils() -> None:
    """`pipe N`: the most requests out when an answer came (iputils prints it past 1)."""
    ms = 1_000_000
    result = PingResult(
        dst="10.77.3.9",
        sent=3,
        replies=(
            PingReply(1, None, None, probe_send_ns=0),
            PingReply(2, None, None, probe_send_ns=200 * ms),
            PingReply(3, "10.77.3.9", 250.0, 64, 64, 400 * ms, 400 * ms + 250_000),
        ),
        errors=(
            PingError(1, "10.77.2.2", "dest-unreachable", 3, 1, None, 0, 3000 * ms),
            PingError(2, "10.77.2.2", "dest-unreachable", 3, 1, None, 200 * ms, 3000 * ms),
        ),
    )
    assert ping_pipe(result) == 3
    assert ping_statistics(result, 400, errors=2)[1:] == [
        "3 packets transmitted, 1 received, +2 errors, 66.6667% packet loss, time 400ms",
        "rtt min/avg/max/mdev = 0.250/0.250/0.250/0.000 ms, pipe 3",
    ]
    no_reply = PingResult(dst="x", sent=2, replies=result.replies[:2], errors=result.errors)
    assert ping_statistics(no_reply, 200, errors=2)[-1] == "pipe 2"  # as iputils, alone
    assert ping_pipe(PING) == 1  # (only seq 1 has times): not printed


def test_ping6_pipe_counts_replies_only() -> None:
    """ping6's ICMPv6 errors (from its error queue) acknowledge nothing: no ``pipe`` from
    them (session 20: ours printed ``pipe 2`` after two late "Address unreachable")."""
    ms = 1_000_000
    result = PingResult(
        dst="fd00:77:3::99",
        sent=2,
        replies=(
            PingReply(1, None, None, probe_send_ns=0),
            PingReply(2, None, None, probe_send_ns=200 * ms),
        ),
        errors=(
            PingError(1, "fd00:77:2::2", "dest-unreachable", 1, 3, None, 0, 3000 * ms),
            PingError(2, "fd00:77:2::2", "dest-unreachable", 1, 3, None, 200 * ms, 3000 * ms),
        ),
    )
    assert ping_pipe(result) == 0
    assert ping_statistics(result, 200, errors=2)[-1] == ""  # iputils: the closing newline


def test_ping_duplicates_like_iputils() -> None:
    dup = PingReply(1, "10.77.3.2", 48.0, 62, 64, dup=True)
    assert ping_line(dup) == "64 bytes from 10.77.3.2: icmp_seq=1 ttl=62 time=0.048 ms (DUP!)"
    result = PingResult(dst="10.77.3.2", sent=2, replies=(*PING.replies[:2], dup))
    assert (result.received, result.loss) == (1, 0.5)  # a duplicate is not a reply more
    assert ping_statistics(result, 1000)[1:] == [
        "2 packets transmitted, 1 received, +1 duplicates, 50% packet loss, time 1000ms",
        "rtt min/avg/max/mdev = 0.047/0.047/0.048/0.000 ms",  # ping counts its RTT
    ]
    assert result.rtts_us() == [47.0]  # (JSON stats, comparisons: one per request)


def test_a_duplicate_before_the_next_request_makes_no_pipe() -> None:
    """Session 25 (ping25): a (DUP!) record carries its request's send time again, and
    `ping_pipe` counted that send twice: `pipe 2` where ping prints none (a responder that
    answers each request twice, the second reply before the next request left)."""
    ms = 1_000_000
    result = PingResult(
        dst="10.225.0.2",
        sent=2,
        replies=(
            PingReply(1, "10.225.0.2", 170.0, 64, 64, probe_send_ns=0, reply_recv_ns=ms // 5),
            PingReply(2, "10.225.0.2", 180.0, 64, 64, 200 * ms, 200 * ms + ms // 5),
            PingReply(1, "10.225.0.2", 190.0, 64, 64, 0, ms // 5 + 10_000, dup=True),
        ),
    )
    assert ping_pipe(result) == 1
    assert "pipe" not in ping_statistics(result, 200)[-1]
    late = PingReply(1, "10.225.0.2", 250e3, 64, 64, 0, 250 * ms, dup=True)  # after #2 left
    assert ping_pipe(PingResult(dst="10.225.0.2", sent=2, replies=(*result.replies, late))) == 2


def test_preloaded_requests_are_all_out_before_a_reply_counts_as_ping_reads_them() -> None:
    """`ping -c 3 -l 3 127.0.0.1`: iputils sends the 3 requests before it reads a reply
    (`pipe 3`); on loopback the endpoint's kernel had each reply back before the next
    request left, so ours printed no pipe. -l 2 of 4 requests 0.2 s apart: `pipe 2`."""
    us = 1_000

    def loopback(n: int, gaps: list[int]) -> PingResult:  # each reply 5 us after its request
        sends = [sum(gaps[:i]) for i in range(n)]
        replies = tuple(
            PingReply(i + 1, "127.0.0.1", 5.0, 64, 64, probe_send_ns=t, reply_recv_ns=t + 5 * us)
            for i, t in enumerate(sends)
        )
        return PingResult(dst="127.0.0.1", sent=n, replies=replies)

    burst = loopback(3, [20 * us, 20 * us])
    assert ping_pipe(burst) == 1  # (what the kernel's times alone say)
    assert ping_pipe(burst, preload=3) == 3
    assert ping_statistics(burst, 0, preload=3)[-1].endswith(", pipe 3")
    paced = loopback(4, [20 * us, 200_000 * us, 200_000 * us])
    assert ping_pipe(paced, preload=2) == 2
    assert ping_pipe(loopback(2, [20 * us]), preload=5) == 2  # (-l past -c: all of them)


def test_a_replys_wrong_data_round_trips_and_is_checked() -> None:
    from packetlab.measure.records_ping import WrongData

    r = PingReply(2, "10.225.0.2", 157.0, 64, 64, wrong_data=WrongData(20, 0x14, 0xEB, "1011"))
    obj = json.loads(json.dumps(r.to_dict()))
    assert obj["wrong_data"] == {"offset": 20, "expected": 20, "got": 235, "data": "1011"}
    assert PingReply.from_dict(obj) == r
    assert "wrong_data" not in PingReply(1, "10.225.0.2", 1.0).to_dict()  # as before
    for bad in ({"offset": 20}, {"offset": "20", "expected": 1, "got": 2, "data": ""},
                {"offset": 20, "expected": 1, "got": 2, "data": "zz"}):  # fmt: skip
        with pytest.raises(RecordError, match="wrong_data is malformed"):
            PingReply.from_dict({**obj, "wrong_data": bad})


@pytest.mark.parametrize(
    ("addr", "icmp_type", "code", "pointer", "words"),
    [
        ("10.0.0.1", 12, 0, 255, "Parameter problem: pointer = 255"),
        ("10.0.0.1", 12, 1, None, "Parameter problem: pointer = 0"),
        ("fd00::1", 4, 0, 40, "Parameter problem: Wrong header field at 40"),
        ("fd00::1", 4, 1, 6, "Parameter problem: Unknown header at 6"),
        ("fd00::1", 4, 2, 42, "Parameter problem: Unknown option at 42"),
        ("fd00::1", 4, 9, 1, "Parameter problem: code 9 at 1"),
    ],
)
def test_parameter_problems_in_pings_words(
    addr: str, icmp_type: int, code: int, pointer: int | None, words: str
) -> None:
    """Session 25 (ping25): iputils' `pointer = N`, ping6's `<code words> at N` (ours:
    `Parameter problem` alone); the pointer round-trips, absent from JSON when None."""
    e = PingError(1, addr, "param-problem", icmp_type, code, pointer=pointer)
    assert e.describe() == words
    assert PingError.from_dict(json.loads(json.dumps(e.to_dict()))) == e
    assert ("pointer" in e.to_dict()) == (pointer is not None)
    with pytest.raises(RecordError, match="pointer"):
        PingError.from_dict({**e.to_dict(), "pointer": "4"})


def test_a_reply_from_another_address_is_marked_as_iputils_marks_it() -> None:
    r = PingReply(1, "10.225.0.7", 166.0, 64, 64, different_address=True)
    assert ping_line(r) == (
        "64 bytes from 10.225.0.7: icmp_seq=1 ttl=64 time=0.166 ms (DIFFERENT ADDRESS!)"
    )
    assert PingReply.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert "different_address" not in PingReply(1, "10.225.0.2", 1.0).to_dict()
    with pytest.raises(RecordError, match="different_address"):
        PingReply.from_dict({**r.to_dict(), "different_address": 1})
