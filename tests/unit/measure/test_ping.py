"""packetlab.measure.ping over a scripted endpoint (iosim, task.Clock)."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import pytest
from test_traceroute_fakes import (
    EP4,
    EP6,
    R14,
    R16,
    R24,
    R26,
    TG4,
    TG6,
    RawRig,
    icmp_packet,
    narrow_link,
)  # fmt: skip

from packetlab.controller.filters import tcpdump_filter
from packetlab.controller.stop import StopSignal
from packetlab.measure.ping import capture_expression, parse_pattern, ping
from packetlab.measure.probes import echo_probe
from packetlab.measure.records_fields import Stamp
from packetlab.measure.traceroute import MeasureError
from packetlab.wire import Nclose, Nsend


@pytest.mark.parametrize(
    ("src", "path", "expr"), [(EP4, [R14, TG4], "icmp"), (EP6, [R16, TG6], "icmp6")]
)
def test_ping_all_answered(src: str, path: list[str], expr: str) -> None:
    rig = RawRig(path)
    rig.endpoint.delays[1] = 0.0025
    start = rig.clock.seconds()
    result = rig.run(ping(rig.session, path[-1], count=3, interval=0.5, ident=0x4242))
    assert (result.sent, result.received, result.loss) == (3, 3, 0.0)
    assert result.src == src and result.dst == path[-1]
    assert [r.seq for r in result.replies] == [1, 2, 3]  # like iputils
    assert all(r.addr == path[-1] for r in result.replies)
    assert result.rtts_us() == pytest.approx([2500, 2500, 2500], abs=0.01)
    assert all(r.size == 64 and r.ttl == 63 for r in result.replies)
    assert (result.send_stamp, result.recv_stamp) == (Stamp.KERNEL, Stamp.KERNEL)
    # the endpoint paces the requests: scheduled send times 0.5 s apart
    times = [m.time for m in rig.endpoint.raw_sends]
    assert [b - a for a, b in itertools.pairwise(times)] == [500_000_000] * 2
    assert [r.probe_send_ns for r in result.replies] == times
    assert result.start_ns == times[0]
    # iputils' data: its send time as a struct timeval, then the counting bytes from 16
    # on (session 25: the timeval was missing, the data bytes 0..15 instead)
    stamp = struct.pack("<qq", times[1] // 10**9, times[1] // 1000 % 10**6)
    probe = echo_probe(src, path[-1], ident=0x4242, seq=2, payload=stamp + bytes(range(16, 56)))
    assert rig.endpoint.raw_sends[1].data[-64:] == probe.packet[-64:]  # ICMP(v6) part
    (ncap,) = rig.endpoint.ncaps  # (session 27: but echo replies to other identifiers)
    assert ncap.filter == tcpdump_filter(capture_expression(4 if expr == "icmp" else 6, 0x4242))
    assert any(isinstance(m, Nclose) for m in rig.endpoint.received)
    # it returns once every reply is in, without waiting out `wait`
    assert rig.clock.seconds() - start < 1.2


def test_lost_and_duplicate_replies() -> None:
    rig = RawRig([R14, TG4])
    answers = rig.endpoint.answers

    def flaky(probe: bytes) -> list[tuple[float, bytes]]:
        seq = int.from_bytes(probe[26:28], "big")
        if seq == 2:
            return []  # lost
        got = answers(probe)
        return got + got  # duplicated

    rig.endpoint.answers = flaky  # type: ignore[method-assign]
    start = rig.clock.seconds()
    result = rig.run(ping(rig.session, TG4, count=3, interval=0.1, wait=1.0))
    assert (result.sent, result.received) == (3, 2)
    assert result.loss == pytest.approx(1 / 3)
    # the second reply to 1 and to 3: iputils' "(DUP!)" lines, "+2 duplicates"
    assert [(r.seq, r.addr, r.dup) for r in result.replies] == [
        (1, TG4, False), (2, None, False), (3, TG4, False), (1, TG4, True), (3, TG4, True),
    ]  # fmt: skip
    assert result.replies[1].probe_send_ns is not None and result.replies[1].rtt_us is None
    assert rig.clock.seconds() - start >= 1.2  # waited for the lost one


def test_foreign_echo_replies_are_ignored() -> None:
    rig = RawRig([TG4])

    def other(probe: bytes) -> list[tuple[float, bytes]]:
        seq = int.from_bytes(probe[26:28], "big")
        foreign = echo_probe(TG4, EP4, ident=0x1111, seq=seq)
        return [(0.0001, icmp_packet(TG4, EP4, 0, 0, foreign.packet[24:28], foreign.packet[28:]))]

    rig.endpoint.extra = other
    result = rig.run(ping(rig.session, TG4, count=2, interval=0.01, ident=0x2222))
    assert result.received == 2
    assert result.rtts_us() == pytest.approx([1000, 1000], abs=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "count"),
        ({"count": 10_001}, "count"),
        ({"interval": -1}, "interval"),
        ({"wait": 0}, "wait"),
        ({"size": -1}, "size"),
        ({"ttl": 0}, "ttl"),
        ({"ident": 70000}, "ident"),
        ({"dst": "nowhere"}, "not an IPv4 or IPv6"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    rig = RawRig([TG4])
    args: dict[str, object] = {"dst": TG4, **kwargs}
    dst = args.pop("dst")
    with pytest.raises(ValueError, match=message):
        rig.run(ping(rig.session, dst, **args))  # type: ignore[arg-type]
    assert rig.endpoint.raw_sends == []


def test_each_reply_is_told_the_moment_it_is_in() -> None:
    rig = RawRig([R14, TG4])
    told: list[tuple[int, float]] = []
    d = ping(
        rig.session, TG4, count=4, interval=1.0,
        on_reply=lambda r: told.append((r.seq, rig.clock.seconds())),
    )  # fmt: skip
    start = rig.clock.seconds()
    result = rig.run(d)
    assert [seq for seq, _ in told] == [1, 2, 3, 4]
    # reply n is told ~(n-1) s after the start, long before the run ends
    assert [round(t - start) for _, t in told] == [0, 1, 2, 3]
    assert [r.rtt_us for r in result.replies] == pytest.approx([1000] * 4, abs=0.01)


def test_a_stop_stops_sending_and_returns_what_was_gathered() -> None:
    rig = RawRig([R14, TG4])
    stop = StopSignal()
    told: list[int] = []
    d = ping(
        rig.session, TG4, count=20, interval=1.0, stop=stop, on_reply=lambda r: told.append(r.seq)
    )
    rig.clock.callLater(4.5, stop.request)
    start = rig.clock.seconds()
    result = rig.run(d)
    assert 4.5 <= rig.clock.seconds() - start < 5.6  # brief grace, not the 15 s left
    assert result.sent == len(rig.endpoint.raw_sends) < 7
    assert result.received == result.sent and told == list(range(1, result.sent + 1))
    assert stop.watched


@pytest.mark.parametrize(("reason", "grace"), [("deadline", 0.0), ("interrupted", 1.0)])
def test_a_stop_named_in_ends_at_once_waits_no_grace(reason: str, grace: float) -> None:
    """ping -w: its deadline ends the run there, not a second later (session 20: ours
    ended `ping -w 1 SILENT` at 2 s, iputils at 1 s); a Ctrl-C keeps the grace."""
    rig = RawRig([R14, TG4])
    rig.endpoint.answers = lambda probe: []  # type: ignore[method-assign]
    stop = StopSignal()
    d = ping(
        rig.session, TG4, count=5, interval=0.25, wait=5.0, stop=stop,
        ends_at_once=frozenset({"deadline", "error"}),
    )  # fmt: skip
    rig.clock.callLater(1.0, stop.request, reason)
    start = rig.clock.seconds()
    result = rig.run(d)
    assert rig.clock.seconds() - start == pytest.approx(1.0 + grace, abs=0.1)
    assert result.sent >= 4 and result.received == 0


def test_many_requests_without_interval_complete() -> None:
    """Replies are read while sending: 1,000 notes (4 times the socket queue's bound) never
    fill a queue and stall the session. (10,000 run for real in test_run_interrupts.py.)"""
    rig = RawRig([TG4])
    rig.endpoint.delays[1] = 0.0001
    result = rig.run(ping(rig.session, TG4, count=1000, interval=0), step=0.001)
    assert (result.sent, result.received) == (1000, 1000)
    assert [r.seq for r in result.replies] == list(range(1, 1001))
    assert not rig.session.paused


@pytest.mark.parametrize(
    ("src", "path", "words"),
    [
        (EP4, [R14, TG4], "Time to live exceeded"),
        (EP6, [R16, TG6], "Time exceeded: Hop limit"),
    ],
)
def test_icmp_errors_for_requests_are_told_and_settle_them(
    src: str, path: list[str], words: str
) -> None:
    """iputils prints a router's error for a request (`From R icmp_seq=N Time to live
    exceeded`), counts it (`+N errors`) and stops waiting for that request."""
    rig = RawRig(path)
    told: list[tuple[int, str, str]] = []
    start = rig.clock.seconds()
    result = rig.run(
        ping(
            rig.session, path[-1], count=3, interval=0.5, ttl=1, wait=10.0,
            on_error=lambda e: told.append((e.seq, e.addr, e.describe())),
        )
    )  # fmt: skip
    assert told == [(1, path[0], words), (2, path[0], words), (3, path[0], words)]
    assert (result.sent, result.received) == (3, 0)
    assert [(e.seq, e.addr, e.reply_type) for e in result.errors] == [
        (1, path[0], "time-exceeded"), (2, path[0], "time-exceeded"),
        (3, path[0], "time-exceeded"),
    ]  # fmt: skip
    assert all(e.probe_send_ns is not None for e in result.errors)
    assert rig.clock.seconds() - start < 2  # settled by the errors: not the 10 s wait


def test_linger_like_ping_waits_two_rtts_after_the_last_request_not_w() -> None:
    """iputils' -W is only waited when no reply came; else 2 x the largest RTT (at least
    the interval) after the last request."""
    rig = RawRig([R14, TG4])
    answers = rig.endpoint.answers

    def last_lost(probe: bytes) -> list[tuple[float, bytes]]:
        return [] if int.from_bytes(probe[26:28], "big") == 3 else answers(probe)

    rig.endpoint.answers = last_lost  # type: ignore[method-assign]
    start = rig.clock.seconds()
    result = rig.run(
        ping(rig.session, TG4, count=3, interval=0.2, wait=10.0, linger_like_ping=True)
    )
    assert (result.sent, result.received) == (3, 2)
    assert rig.clock.seconds() - start < 1.5  # 0.4 s of requests + 0.2 s, not 10 s
    rig2 = RawRig([R14, TG4])
    rig2.endpoint.answers = lambda probe: []  # type: ignore[method-assign]
    start = rig2.clock.seconds()
    rig2.run(ping(rig2.session, TG4, count=2, interval=0.2, wait=3.0, linger_like_ping=True))
    assert rig2.clock.seconds() - start >= 3.2  # no reply at all: -W


def test_answers_wanted_sends_past_count_until_that_many_are_answered() -> None:
    """iputils' -c with -w: requests go on past losses until -c are answered."""
    rig = RawRig([R14, TG4])
    answers = rig.endpoint.answers

    def lossy(probe: bytes) -> list[tuple[float, bytes]]:
        return [] if int.from_bytes(probe[26:28], "big") in (2, 3) else answers(probe)

    rig.endpoint.answers = lossy  # type: ignore[method-assign]
    result = rig.run(ping(rig.session, TG4, count=20, interval=1.0, wait=5.0, answers_wanted=3))
    assert [r.seq for r in result.replies if r.addr is not None] == [1, 4, 5]
    assert result.sent == 5  # not the 20 that would fit, not the 3 of -c


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("ab12", b"\xab\x12"),
        ("abc", b"\xab\x0c"),  # a last odd digit is a byte of its own (ping's %2x)
        ("00" * 20, b"\0" * 16),  # at most 16 bytes, as iputils
        ("", b""),
    ],
)
def test_parse_pattern_like_iputils(text: str, want: bytes) -> None:
    assert parse_pattern(text) == want


def test_a_bad_pattern_names_the_first_bad_digit_as_iputils() -> None:
    with pytest.raises(ValueError, match=r"^patterns must be specified as hex digits: xyz$"):
        parse_pattern("12xyz")


def test_the_pattern_fills_the_payload_repeated() -> None:
    rig = RawRig([TG4])
    rig.run(ping(rig.session, TG4, count=1, size=20, pattern=b"\x01\x02\x03"))
    (send,) = rig.endpoint.raw_sends
    # the first 16 bytes then hold the send time, as iputils writes it over the pattern
    assert send.data[28 + 16 :] == (b"\x01\x02\x03" * 7)[16:20]
    assert send.data[28:44] != (b"\x01\x02\x03" * 6)[:16]


def test_each_request_sent_is_told_and_an_unanswered_one_when_the_next_leaves() -> None:
    """ping -f's dot per request (on_sent) and -O's `no answer yet for icmp_seq=N`, told
    as request N+1 leaves with N unanswered (the time is N+1's send time)."""
    rig = RawRig([R14, TG4])
    answers = rig.endpoint.answers

    def lose_2(probe: bytes) -> list[tuple[float, bytes]]:
        return [] if int.from_bytes(probe[26:28], "big") == 2 else answers(probe)

    rig.endpoint.answers = lose_2  # type: ignore[method-assign]
    events: list[tuple[str, int, int]] = []
    result = rig.run(
        ping(
            rig.session, TG4, count=3, interval=0.5, wait=1.0,
            on_sent=lambda seq, ns: events.append(("sent", seq, ns)),
            on_outstanding=lambda seq, ns: events.append(("none yet", seq, ns)),
            on_reply=lambda r: events.append(("reply", r.seq, r.reply_recv_ns or 0)),
        )
    )  # fmt: skip
    sent = [r.probe_send_ns for r in sorted(result.replies, key=lambda r: r.seq)]
    assert [(what, seq) for what, seq, _ in events] == [
        ("sent", 1), ("reply", 1), ("sent", 2), ("none yet", 2), ("sent", 3), ("reply", 3),
    ]  # fmt: skip
    assert events[3][2] == sent[2] and events[0][2] == sent[0]


def test_ipv4_requests_carry_df_as_pings() -> None:
    rig = RawRig([TG4])
    rig.run(ping(rig.session, TG4, count=1))
    assert rig.endpoint.raw_sends[0].data[6] & 0x40  # DF, as Linux's path MTU discovery


@pytest.mark.parametrize(("dst", "path"), [(TG4, [R14, TG4]), (TG6, [R16, TG6])])
def test_long_requests_go_in_fragments_of_the_mtu_given(dst: str, path: list[str]) -> None:
    rig = RawRig(path)
    result = rig.run(ping(rig.session, dst, count=2, interval=0.2, size=3000, fragment_mtu=1500))
    sends = rig.endpoint.raw_sends
    assert len(sends) == 2 * 3 and all(len(m.data) <= 1500 for m in sends)
    assert [bool(m.tag) for m in sends] == [True, False, False] * 2
    assert result.received == 2 and result.errors == ()


def test_after_frag_needed_requests_go_in_fragments_as_pings_kernel_sends_them() -> None:
    """ping -s 1400 over a link of MTU 1400: the first request (DF) gets "fragmentation
    needed (mtu 1400)", an error; the second, queued before that came but sent after, is
    sent again at once in fragments of 1400 (as ping's kernel would have sent it), the
    third is built in fragments: both answered."""
    rig = RawRig([R14, R24, TG4])
    narrow_link(rig, 1500, 1400)
    errors: list[int] = []
    result = rig.run(
        ping(
            rig.session, TG4, count=3, interval=0.2, size=1400,
            on_error=lambda e: errors.append(e.seq),
        )
    )  # fmt: skip
    assert errors == [1] and [e.mtu for e in result.errors] == [1400]
    assert sorted(r.seq for r in result.replies if r.addr) == [2, 3]
    sizes = [len(m.data) for m in rig.endpoint.raw_sends]
    assert sizes[:2] == [1428, 1428] and max(sizes[2:]) <= 1400 and len(sizes) == 6


def test_an_endpoint_that_sends_no_request_says_why() -> None:
    rig = RawRig([R14, TG4])
    narrow_link(rig, 1000, 1000)
    with pytest.raises(MeasureError, match="could not send a 2028 byte echo request"):
        rig.run(ping(rig.session, TG4, count=2, interval=0.1, size=2000))


@pytest.mark.parametrize(("pmtudisc", "df"), [("want", True), ("do", True), ("dont", False)])
def test_tos_and_pmtudisc_in_the_requests_ip_header_as_ping_q_and_m(
    pmtudisc: str, df: bool
) -> None:
    rig = RawRig([TG4])
    result = rig.run(ping(rig.session, TG4, count=1, tos=0x28, pmtudisc=pmtudisc))
    sent = rig.endpoint.raw_sends[0].data
    assert sent[1] == 0x28 and bool(sent[6] & 0x40) is df and result.received == 1
    rig6 = RawRig([TG6])
    rig6.run(ping(rig6.session, TG6, count=1, tos=0xB8))
    first = int.from_bytes(rig6.endpoint.raw_sends[0].data[:4], "big")
    assert first >> 20 & 0xFF == 0xB8  # the traffic class


def test_pmtudisc_do_never_fragments_a_frag_needed_is_an_error_each_time() -> None:
    """ping -M do -s 1400 over a link of MTU 1400: the first request is refused by the
    router (`Frag needed`), the later ones are local errors (not sent, counted), as ping's
    kernel refuses them once it learnt the MTU; none goes in fragments (with `want` the
    later ones would)."""
    rig = RawRig([R14, R24, TG4])
    narrow_link(rig, 1500, 1400)
    result = rig.run(
        ping(rig.session, TG4, count=3, interval=1.0, size=1400, pmtudisc="do",
             fragment_mtu=1500)
    )  # fmt: skip
    assert [e.seq for e in result.errors] == [1, 2, 3] and result.received == 0
    assert [e.reply_type for e in result.errors] == ["dest-unreachable"] + ["local-error"] * 2
    assert result.sent == 3 and [e.mtu for e in result.errors] == [1400] * 3
    assert [len(m.data) for m in rig.endpoint.raw_sends] == [1428]


def test_pmtudisc_do_a_request_sent_after_the_mtu_was_learnt_is_a_local_error() -> None:
    """-M do at -i 0.2: the second request is queued (AHEAD_S early) before the first one's
    "Frag needed" comes, and leaves after it. ping's kernel would have refused it by then:
    a local error, not a second "Frag needed" (what a loaded CI host printed)."""
    rig = RawRig([R14, R24, TG4])
    narrow_link(rig, 1500, 1400)
    result = rig.run(
        ping(rig.session, TG4, count=3, interval=0.2, size=1400, pmtudisc="do",
             fragment_mtu=1500)
    )  # fmt: skip
    assert [e.reply_type for e in result.errors] == ["dest-unreachable"] + ["local-error"] * 2
    assert [len(m.data) for m in rig.endpoint.raw_sends] == [1428, 1428]  # the 2nd had left
    assert result.sent == 3 and result.received == 0


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_pmtudisc_do_over_the_routes_mtu_is_a_local_error_each_time(v6: bool) -> None:
    """ping -M do -s 1500 -c 2 (1528 / 1548 bytes over a 1500 byte interface): ping's
    kernel refuses each request, `local error: message too long, mtu=1500` (ping6:
    `mtu: 1500`), `2 packets transmitted, 0 received, +2 errors`, exit 1. Ours failed
    the run: `could not send a 1528 byte echo request`, exit 2 (session 28, icmp28)."""
    dst = TG6 if v6 else TG4
    rig = RawRig([dst])
    narrow_link(rig, 1500, 1500)
    result = rig.run(
        ping(rig.session, dst, count=2, interval=0.2, size=1500, pmtudisc="do",
             fragment_mtu=1500)
    )  # fmt: skip
    assert [(e.reply_type, e.mtu) for e in result.errors] == [("local-error", 1500)] * 2
    assert result.sent == 2 and result.received == 0 and rig.endpoint.raw_sends == []


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_pmtudisc_do_over_an_unknown_mtu_is_a_local_error_each_time(v6: bool) -> None:
    """The same over an endpoint whose MTU the controller does not know (--listen:
    `fragment_mtu` None): each request the endpoint refuses is a local error, its MTU
    not known (exit 1 as ping's); the run failed, `could not send a 1528 byte echo
    request`, exit 2 (session 29). A request of 1280 bytes or less refused so is not
    taken for one over the MTU: that run still fails."""
    dst = TG6 if v6 else TG4
    rig = RawRig([dst])
    narrow_link(rig, 1500, 1500)
    result = rig.run(ping(rig.session, dst, count=2, interval=0.2, size=1500, pmtudisc="do"))
    assert [(e.reply_type, e.mtu) for e in result.errors] == [("local-error", None)] * 2
    assert result.sent == 2 and result.received == 0
    small = RawRig([dst])
    narrow_link(small, 1000, 1000)
    with pytest.raises(MeasureError, match="could not send a 1200 byte"):
        small.run(ping(small.session, dst, count=1, size=1200 - (48 if v6 else 28), pmtudisc="do"))


def test_pmtudisc_do_ipv6_a_request_its_kernel_refused_is_a_local_error() -> None:
    """ping -6 -M do -s 1400 -c 3 -i 0.2 past a 1400 link: "packet too big" for the
    first; the endpoint's kernel learns 1400 and refuses the second (an IPv6 raw socket
    is held to path MTUs), the controller the third: ping6's two local errors, `3
    packets transmitted, 0 received, +3 errors`. Ours dropped the refused one from
    every count (`2 packets transmitted, +2 errors`; session 28, icmp28)."""
    rig = RawRig([R16, R26, TG6])
    narrow_link(rig, 1500, 1400, learns=True)
    result = rig.run(
        ping(rig.session, TG6, count=3, interval=0.2, size=1400, pmtudisc="do",
             fragment_mtu=1500)
    )  # fmt: skip
    assert [(e.reply_type, e.mtu) for e in result.errors] == [
        ("packet-too-big", 1400), ("local-error", 1400), ("local-error", 1400),
    ]  # fmt: skip
    assert result.sent == 3 and result.received == 0


@pytest.mark.parametrize(
    ("size", "kinds", "sizes"),
    [
        (1000, ["dest-unreachable"] + ["local-error"] * 2, [1028]),  # 1028 > 552: refused
        (500, ["dest-unreachable"] * 3, [528] * 3),  # 528 fits 552: sent, answered again
    ],
)
def test_pmtudisc_do_after_a_router_mtu_below_552_as_iputils(
    size: int, kinds: list[str], sizes: list[int]
) -> None:
    """-M do -i 0.3, the target answering every request "fragmentation needed" naming
    300: ping's kernel takes 552 (min_pmtu), so a 1028 byte request later is its local
    error (`message too long, mtu=552`, as ours said) but a 528 byte one goes and is
    answered `Frag needed ... (mtu = 300)` again, three lines in all (iputils 20221126;
    ours made the 2nd and 3rd local errors naming 552: session 26, icmp26)."""
    rig = RawRig([TG4])

    def frag_needed(probe: bytes) -> list[tuple[float, bytes]]:
        rest = struct.pack("!HH", 0, 300)
        return [(0.0005, icmp_packet(TG4, EP4, 3, 4, rest, probe[:48]))]

    rig.endpoint.answers = frag_needed  # type: ignore[method-assign]
    result = rig.run(ping(rig.session, TG4, count=3, interval=0.3, size=size, pmtudisc="do"))
    assert [e.reply_type for e in result.errors] == kinds and result.sent == 3
    assert [e.mtu for e in result.errors] == [300] + [552 if size == 1000 else 300] * 2
    assert [len(m.data) for m in rig.endpoint.raw_sends] == sizes


def test_an_ipv4_request_over_65535_bytes_is_a_local_error_as_pings() -> None:
    """ping -s 65508 (65536 bytes with the headers): ping's kernel refuses each request,
    `local error: message too long, mtu=65535`, counted as sent and as an error (exit 1);
    -s 65507 fits and goes (session 12: -s above 65000 refused by argparse). IPv6 holds
    65527 bytes of ICMPv6 data."""
    rig = RawRig([TG4])
    result = rig.run(ping(rig.session, TG4, count=2, interval=0.2, size=65508))
    assert rig.endpoint.raw_sends == [] and result.sent == 2 and result.received == 0
    assert [(e.reply_type, e.mtu) for e in result.errors] == [("local-error", 0xFFFF)] * 2
    rig = RawRig([TG4])
    result = rig.run(ping(rig.session, TG4, count=1, size=65507))
    assert [len(m.data) for m in rig.endpoint.raw_sends] == [65535] and result.received == 1
    rig = RawRig([TG6])
    rig.run(ping(rig.session, TG6, count=1, size=65527, fragment_mtu=0xFFFF))
    assert sum(len(m.data) for m in rig.endpoint.raw_sends) > 65527


def test_preload_sends_the_first_requests_at_once_as_ping_l() -> None:
    rig = RawRig([TG4])
    result = rig.run(ping(rig.session, TG4, count=5, interval=1.0, preload=3))
    times = [m.time for m in rig.endpoint.raw_sends]
    assert times[0] == times[1] == times[2]
    assert [times[3] - times[2], times[4] - times[3]] == [1_000_000_000] * 2
    assert result.received == 5


@pytest.mark.parametrize("version", [4, 6])
def test_the_capture_takes_no_echo_replies_to_other_identifiers(version: int) -> None:
    """As iputils' socket filters: the error types it takes, echo replies only to its
    identifier (`icmp` alone took in every ICMP message on the host, other pings'
    requests and replies: beside a `ping -f` on loopback ours lost 20-100% of its
    replies, iputils none); fragments pass (a long reply's)."""
    rig = RawRig([TG4] if version == 4 else [TG6])
    rig.run(ping(rig.session, TG4 if version == 4 else TG6, count=1, ident=0x4242))
    (ncap,) = rig.endpoint.ncaps
    assert ncap.filter == tcpdump_filter(capture_expression(version, 0x4242))
    assert ncap.filter != tcpdump_filter("icmp" if version == 4 else "icmp6")
    expr = capture_expression(version, 0x4242)
    assert "0x4242" not in expr and str(0x4242) in expr
    if version == 4:  # (no echo request, type 8; no timestamp request, 13)
        assert "ip[6:2] & 0x1fff != 0" in expr and "= 8 " not in expr and "13" not in expr
    else:
        assert "ip6[6] = 44" in expr and "icmp6[0] < 128" in expr


def _transmits(rig: RawRig, drop: frozenset[int] = frozenset()) -> list[float]:
    """The reactor times the fake endpoint sends each request at (`drop`: those seqs are
    sent and lost)."""
    sent: list[float] = []
    real = rig.endpoint.transmit

    def transmit(msg: Any, when: int) -> None:
        sent.append(rig.clock.seconds())
        if struct.unpack_from("!H", msg.data, 26)[0] not in drop:
            real(msg, when)

    rig.endpoint.transmit = transmit  # type: ignore[method-assign]
    return sent


@pytest.mark.parametrize("preload", [1, 2])
def test_adaptive_sends_each_request_as_one_is_answered_as_ping_a(preload: int) -> None:
    """iputils -A: at most -l requests unanswered, the next as soon as a reply comes
    (its interval follows the RTT): 5 requests to a 20 ms target in ~0.1 s, where
    `interval` (1 s) paced them before (-A was `unrecognized arguments`)."""
    rig = RawRig([TG4])
    rig.endpoint.delays[1] = 0.02
    sent = _transmits(rig)
    result = rig.run(ping(rig.session, TG4, count=5, interval=1.0, adaptive=True, preload=preload))
    assert result.received == 5 and result.rtts_us() == pytest.approx([20e3] * 5, abs=1)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    if preload == 2:  # two at once, then one as each reply comes (the two together)
        assert gaps == pytest.approx([0, 0.02, 0, 0.02], abs=0.001), gaps
    else:
        assert gaps == pytest.approx([0.02] * 4, abs=0.001), gaps


def test_adaptive_gives_a_lost_request_up_after_the_smoothed_rtt() -> None:
    """-A, request 2 lost: request 3 leaves once 2 is older than the replies' smoothed
    RTT (iputils' interval = rtt/8), not after `wait`; a loss before any reply holds
    `interval` (ping's interval until an RTT is known)."""
    rig = RawRig([TG4])
    rig.endpoint.delays[1] = 0.02
    sent = _transmits(rig, frozenset({2}))
    result = rig.run(ping(rig.session, TG4, count=3, interval=1.0, wait=5.0, adaptive=True))
    assert [r.seq for r in result.replies if r.addr is not None] == [1, 3]
    assert sent[2] - sent[1] == pytest.approx(0.02, abs=0.001), sent
    rig = RawRig([TG4])
    sent = _transmits(rig, frozenset({1}))
    rig.run(ping(rig.session, TG4, count=2, interval=0.5, wait=5.0, adaptive=True))
    assert sent[1] - sent[0] == pytest.approx(0.5, abs=0.01), sent


def test_adaptive_interval_is_the_rtt_in_whole_ms_answered_or_not_as_ping_a() -> None:
    """iputils -A (root): its interval is the smoothed RTT rounded to whole ms, and its
    tokens send one request each interval whether the last was answered or not: at 2.6
    ms of RTT a request each 3 ms (session 29: ours sent each as the reply came, 2.6 ms
    apart), at 3.4 ms each 3 ms too (two in flight for a while; ours waited the reply).
    The test's clock steps 50 µs."""
    for rtt in (0.0026, 0.0034):
        rig = RawRig([TG4])
        rig.endpoint.delays[1] = rtt
        sent = _transmits(rig)
        result = rig.run(ping(rig.session, TG4, count=6, interval=1.0, adaptive=True), step=0.00005)
        assert result.received == 6
        gaps = [b - a for a, b in itertools.pairwise(sent)]
        # (the first waits for the first reply: the interval is -i's until then)
        assert gaps == pytest.approx([max(rtt, 0.003)] + [0.003] * 4, abs=1e-4), (rtt, gaps)


def test_adaptive_below_half_a_ms_waits_10_ms_for_a_lost_one_as_ping_a() -> None:
    """An RTT under 0.5 ms rounds ping -A's interval to 0: the next request goes as the
    reply comes, or 10 ms (MININTERVAL) after the last when none does. Ours freed the
    place after the smoothed RTT (0.1 ms here), so on a loopback the controller sent as
    fast as it could (`pipe 115`, 3.5 % unanswered at -w's end; session 29)."""
    rig = RawRig([TG4])
    rig.endpoint.delays[1] = 0.0001
    sent = _transmits(rig, frozenset({3}))
    result = rig.run(
        ping(rig.session, TG4, count=6, interval=1.0, wait=1.0, adaptive=True), step=0.00005
    )
    assert [r.seq for r in result.replies if r.addr is not None] == [1, 2, 4, 5, 6]
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert gaps == pytest.approx([0.0001, 0.0001, 0.01, 0.0001, 0.0001], abs=6e-5), gaps


@pytest.mark.parametrize(("count", "preload"), [(1, 1), (3, 3)])
def test_requests_all_due_at_once_go_with_time_0_without_the_lead(count: int, preload: int) -> None:
    """`run ping -c 1` (or -c N -l N): nothing after the first needs its time ahead, so
    the requests leave as soon as the endpoint has them (nsend time 0), as ping sends its
    first at once, not 50 ms (LEAD_S) after the clock read (docs/performance.md)."""
    rig = RawRig([TG4])
    start = rig.clock.seconds()
    result = rig.run(ping(rig.session, TG4, count=count, interval=1.0, preload=preload))
    assert [m.time for m in rig.endpoint.raw_sends] == [0] * count
    assert result.received == count
    assert all(r.probe_send_ns for r in result.replies)  # the endpoint's send stamps
    assert rig.clock.seconds() - start < 0.05


def test_requests_after_the_first_keep_the_lead() -> None:
    rig = RawRig([TG4])
    rig.run(ping(rig.session, TG4, count=2, interval=1.0))
    times = [m.time for m in rig.endpoint.raw_sends]
    assert times[0] > 0 and times[1] - times[0] == 1_000_000_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"tos": 256}, "tos"), ({"pmtudisc": "probe"}, "pmtudisc"), ({"preload": 0}, "preload")],
)
def test_bad_new_arguments(kwargs: dict[str, object], message: str) -> None:
    rig = RawRig([TG4])
    with pytest.raises(ValueError, match=message):
        rig.run(ping(rig.session, TG4, **kwargs))  # type: ignore[arg-type]


def test_record_route_requests_carry_the_option() -> None:
    """ping -R: the option in every IPv4 request (the endpoint's address first, as its
    kernel would have recorded it); IPv6 requests carry none, as ping's. (The route read
    back: `recorded_route`'s test and the side-by-side one, the fake answering no
    options.)"""
    rig = RawRig([TG4])
    rig.run(ping(rig.session, TG4, count=2, interval=0.2, record_route=True))
    for m in rig.endpoint.raw_sends:
        assert m.data[0] == 0x4F and m.data[20:24] == bytes([1, 7, 39, 8])
        assert m.data[24:28] == bytes(int(x) for x in EP4.split("."))
    v6 = RawRig([TG6])
    v6.run(ping(v6.session, TG6, count=1, record_route=True))
    assert v6.endpoint.raw_sends[0].data[6] == 58  # no options: ICMPv6 right after


def test_a_reply_with_other_data_says_how_they_differ_as_iputils() -> None:
    """Session 25 (ping25): a reply whose data past the timestamp area differ from the
    request's (data byte #20 flipped, here in the second request's reply only): the record
    says where and carries the bytes from 16 on, for iputils' `wrong data byte` lines
    (ours printed the reply as if nothing were wrong)."""
    rig = RawRig([TG4])
    answers = rig.endpoint.answers

    def flipped(probe: bytes) -> list[tuple[float, bytes]]:
        ((delay, good),) = answers(probe)
        if int.from_bytes(probe[26:28], "big") == 1:
            return [(delay, good)]
        bad = bytearray(good)
        bad[20 + 8 + 20] ^= 0xFF  # IP header, ICMP header, data byte #20
        return [(delay, bytes(bad))]

    rig.endpoint.answers = flipped  # type: ignore[method-assign]
    result = rig.run(ping(rig.session, TG4, count=2, interval=0.1, ident=0x2222))
    first, second = result.replies
    assert first.wrong_data is None and second.addr == TG4
    w = second.wrong_data
    assert w is not None and (w.offset, w.expected, w.got) == (20, 20, 0xEB)
    assert bytes.fromhex(w.data) == bytes([16, 17, 18, 19, 0xEB, *range(21, 56)])


def test_a_truncated_reply_is_not_checked_for_wrong_data() -> None:
    rig = RawRig([TG4])
    answers = rig.endpoint.answers

    def short(probe: bytes) -> list[tuple[float, bytes]]:
        ((delay, good),) = answers(probe)
        return [(delay, good[: 20 + 8 + 30])]

    rig.endpoint.answers = short  # type: ignore[method-assign]
    result = rig.run(ping(rig.session, TG4, count=1, ident=0x2222))
    (reply,) = result.replies
    assert reply.addr == TG4 and reply.wrong_data is None


@pytest.mark.parametrize("size", [16, 56, 100])
def test_requests_carry_their_send_time_as_iputils_does(size: int) -> None:
    """Session 25 (ping25): iputils writes its send time (a struct timeval: 64-bit
    little-endian seconds, microseconds) over the first 16 data bytes; ours sent the
    counting bytes 0..15 there. Now the endpoint time each request is due at."""
    rig = RawRig([TG4])
    rig.run(ping(rig.session, TG4, count=2, interval=0.25, size=size))
    for send in rig.endpoint.raw_sends:
        sec, usec = struct.unpack("<qq", send.data[28:44])
        assert sec * 10**9 + usec * 1000 == send.time // 1000 * 1000
        assert send.data[44:] == bytes(range(16, size))


@pytest.mark.parametrize("size", [0, 8, 15])
def test_requests_under_16_bytes_carry_no_time(size: int) -> None:
    rig = RawRig([TG4])
    rig.run(ping(rig.session, TG4, count=1, size=size))
    (send,) = rig.endpoint.raw_sends
    assert send.data[28:] == bytes(range(size))  # as iputils: no room for a timeval


def _quoting(probe: bytes, icmp_type: int, code: int, rest: bytes) -> tuple[float, bytes]:
    """An ICMP message from the target quoting `probe`'s IP header and 8 bytes."""
    return (0.0005, icmp_packet(TG4, EP4, icmp_type, code, rest, probe[:28]))


def test_a_redirect_or_source_quench_is_told_and_the_request_stays_open() -> None:
    """Session 25 (ping25): iputils prints a source quench or redirect about a request
    (`From ADDR: icmp_seq=N Redirect Host(New nexthop: GW)`) and counts it nowhere; ours
    ignored both (parse_reply knows only errors)."""
    rig = RawRig([TG4])
    rig.endpoint.extra = lambda probe: [
        _quoting(probe, 5, 1, bytes([10, 0, 0, 1])),
        _quoting(probe, 4, 0, bytes(4)),
    ]
    told: list[object] = []
    result = rig.run(ping(rig.session, TG4, count=2, interval=0.1, on_notice=told.append))
    assert (result.received, result.errors) == (2, ())  # answered still, no error
    assert [(n.seq, n.addr, n.icmp_type, n.code, n.gateway) for n in told] == [  # type: ignore[attr-defined]
        (1, TG4, 5, 1, "10.0.0.1"), (1, TG4, 4, 0, None),
        (2, TG4, 5, 1, "10.0.0.1"), (2, TG4, 4, 0, None),
    ]  # fmt: skip


@pytest.mark.parametrize(("icmp_type", "code"), [(11, 1), (3, 16)])
def test_errors_pings_kernel_drops_are_nothing_here_either(icmp_type: int, code: int) -> None:
    """Linux's icmp_unreach drops "fragment reassembly time exceeded" and unreachables
    with a code past 15: ping hears of neither. Ours printed them and counted `+N errors`."""
    rig = RawRig([TG4])
    rig.endpoint.answers = lambda probe: [_quoting(probe, icmp_type, code, bytes(4))]  # type: ignore[method-assign]
    result = rig.run(ping(rig.session, TG4, count=1, wait=0.5))
    assert (result.received, result.errors) == (0, ())


def test_a_parameter_problem_carries_its_pointer() -> None:
    rig = RawRig([TG4])
    rig.endpoint.answers = lambda probe: [_quoting(probe, 12, 0, bytes([4, 0, 0, 0]))]  # type: ignore[method-assign]
    result = rig.run(ping(rig.session, TG4, count=1, wait=0.5))
    (e,) = result.errors
    assert (e.pointer, e.describe()) == (4, "Parameter problem: pointer = 4")


def test_wrong_data_reads_an_ipv6_reply_only_without_extension_headers() -> None:
    from packetlab.measure.ping import wrong_data

    payload = bytes(range(56))
    reply = echo_probe(TG6, EP6, ident=1, seq=1, payload=payload[:20] + b"\xff" + payload[21:])
    got = wrong_data(reply.packet, payload)
    assert got is not None and (got.offset, got.got) == (20, 0xFF)
    hop_by_hop = bytearray(reply.packet)
    hop_by_hop[6] = 0  # (a Hop-by-Hop header first: the ICMPv6 header is further on)
    assert wrong_data(bytes(hop_by_hop), payload) is None


def test_a_reply_from_another_address_is_a_reply_as_iputils_takes_it() -> None:
    """Session 25 (ping25): iputils matches an echo reply by its identifier alone and
    prints one from another address with `(DIFFERENT ADDRESS!)`; ours took it for none
    (100% loss, exit 1)."""
    rig = RawRig([TG4])
    elsewhere = "10.77.9.9"

    def moved(probe: bytes) -> list[tuple[float, bytes]]:
        seq = int.from_bytes(probe[26:28], "big")
        reply = echo_probe(elsewhere, EP4, ident=0x2222, seq=seq)
        body = b"\0\0" + reply.packet[22:]  # (type 0: an echo reply)
        return [(0.0004, icmp_packet(elsewhere, EP4, 0, 0, body[4:8], body[8:]))] * 2

    rig.endpoint.answers = moved  # type: ignore[method-assign]
    result = rig.run(ping(rig.session, TG4, count=2, interval=0.1, wait=0.5, ident=0x2222))
    assert result.received == 2
    got = [(r.seq, r.addr, r.dup, r.different_address) for r in result.replies]
    assert got[:2] == [(1, elsewhere, False, True), (2, elsewhere, False, True)]
    assert (1, elsewhere, True, True) in got  # its duplicate: from there too


@pytest.mark.parametrize("icmp_type", [99, 100, 0])
def test_an_unassigned_icmpv6_error_is_an_error_as_ping6_counts_it(icmp_type: int) -> None:
    """Session 25 (icmp25b): an ICMPv6 error of a type no one assigned reaches ping6's error
    queue (icmpv6_rcv passes any type below 128 on): `From ADDR icmp_seq=1 unknown icmp
    type: 99`, counted in `+N errors`; ours ignored it. An IPv4 one stays nothing."""
    rig = RawRig([TG6])

    def unassigned(probe: bytes) -> list[tuple[float, bytes]]:
        return [(0.0005, icmp_packet(TG6, EP6, icmp_type, 0, bytes(4), probe[:48]))]

    rig.endpoint.answers = unassigned  # type: ignore[method-assign]
    result = rig.run(ping(rig.session, TG6, count=1, wait=0.5))
    (e,) = result.errors
    assert (e.seq, e.addr, e.reply_type) == (1, TG6, "other-error")
    assert e.describe() == f"unknown icmp type: {icmp_type}"
    rig = RawRig([TG4])
    rig.endpoint.answers = lambda probe: [_quoting(probe, icmp_type or 100, 0, bytes(4))]  # type: ignore[method-assign]
    assert rig.run(ping(rig.session, TG4, count=1, wait=0.5)).errors == ()


@pytest.mark.parametrize(
    ("dst", "mtu", "size", "sizes"),
    [(TG4, 300, 1000, [1028, 548, 500, 548, 500]), (TG6, 1000, 1400, [1448] * 3)],
)
def test_a_path_mtu_below_the_least_is_taken_as_linux_takes_it(
    dst: str, mtu: int, size: int, sizes: list[int]
) -> None:
    """Session 25 (icmp25b), beside iputils: the target answers every request with "too
    big" naming an MTU below Linux's least. IPv4: ping's kernel raises it to 552 (fragments
    of 548), ours fragmented at 300; IPv6: it ignores one below 1280 (requests whole), ours
    fragmented at 1000. And ours sent each fragmented request a second time. Each
    request's error is told, as ping's."""
    rig = RawRig([dst])
    v6 = dst == TG6

    def too_big(probe: bytes) -> list[tuple[float, bytes]]:
        if not v6 and int.from_bytes(probe[6:8], "big") & 0x1FFF:
            return []  # (a later fragment: the first one is answered)
        src, ep = (TG6, EP6) if v6 else (TG4, EP4)
        rest = struct.pack("!I", mtu) if v6 else struct.pack("!HH", 0, mtu)
        return [(0.0005, icmp_packet(src, ep, 2 if v6 else 3, 0 if v6 else 4, rest, probe[:48]))]

    rig.endpoint.answers = too_big  # type: ignore[method-assign]
    result = rig.run(ping(rig.session, dst, count=3, interval=0.3, size=size))
    assert [len(m.data) for m in rig.endpoint.raw_sends] == sizes
    assert [(e.seq, e.mtu) for e in result.errors] == [(1, mtu), (2, mtu), (3, mtu)]


def test_requests_the_endpoint_holds_are_waited_for_before_the_linger() -> None:
    """Requests held at the endpoint (its raw socket's buffer full: the sends wait, session
    30) leave after their times; ping's exit counts from the last one's leaving, as
    iputils' after its last send. They were counted unsent: `ping -l 200 -s 1400 -c 300`
    through a 20 Mbit/s tbf under load 14 said 254 transmitted."""
    rig = RawRig([TG4])
    endpoint = rig.endpoint
    free = [0]  # when the bottleneck takes the next send (ns): 2 ms a request

    def held(msg: Nsend) -> None:
        endpoint.result()
        when = max(msg.time, endpoint.now(), free[0])
        free[0] = when + 2_000_000
        endpoint.clock.callLater((when - endpoint.now()) / 1e9, endpoint.transmit, msg, when)

    endpoint.raw_send = held  # type: ignore[method-assign]
    result = rig.run(
        ping(rig.session, TG4, count=300, interval=0.0, wait=10.0, linger_like_ping=True,
             preload=300)
    )  # fmt: skip
    assert (result.sent, result.received) == (300, 300)  # 0.6 s of sends, all counted


def _read_late(rig: RawRig, late_seqs: set[int]) -> None:
    """Replies to `late_seqs` reach the endpoint's kernel on time but the endpoint reads
    them late (a starved process, or an in-process endpoint's extra hops): they go out
    with their kernel time only when the controller's next request wakes the endpoint,
    before that request's answer."""
    endpoint = rig.endpoint
    held: list[tuple[Any, bytes, int]] = []
    deliver, handle = endpoint.deliver, endpoint.handle

    def hold(msg: Nsend, packet: bytes, at: int) -> None:
        seq = int.from_bytes(packet[26:28], "big")
        (held.append((msg, packet, at)) if seq in late_seqs else deliver(msg, packet, at))

    def woken(msg: Any) -> None:
        while held:
            deliver(*held.pop(0))
        handle(msg)

    endpoint.deliver = hold  # type: ignore[method-assign]
    endpoint.handle = woken  # type: ignore[method-assign]


def test_a_reply_the_endpoint_had_by_the_lingers_end_is_counted() -> None:
    """ping exits at its linger's end; a reply its kernel got before then is counted. Ours
    ended on the controller's own timer and took the last request as lost when the reply
    had not reached it yet (`-l 200` through a tbf at load 14: 268-300 of 300, session 30,
    ep30); now the endpoint's clock is read past the linger's end first."""
    rig = RawRig([R14, TG4])
    _read_late(rig, {3})
    result = rig.run(
        ping(rig.session, TG4, count=3, interval=0.2, wait=10.0, linger_like_ping=True)
    )
    assert (result.sent, result.received) == (3, 3)


def test_a_deadline_counts_what_came_before_it_and_nothing_after() -> None:
    """-w: a reply the endpoint read late but had before the deadline counts; requests due
    after the deadline are not sent (ping's alarm comes first), and the run ends at the
    deadline, not a linger after it."""
    rig = RawRig([R14, TG4])
    _read_late(rig, {4})
    start = rig.clock.seconds()
    stop = StopSignal()
    result = rig.run(
        ping(rig.session, TG4, count=10, interval=0.2, wait=10.0, linger_like_ping=True,
             stop=stop, ends_at_once=frozenset({"deadline"}), deadline=0.7)
    )  # fmt: skip
    assert (result.sent, result.received) == (4, 4)  # due at 0, 0.2, 0.4, 0.6
    assert rig.clock.seconds() - start < 1.2
    with pytest.raises(ValueError, match="deadline needs a stop signal"):
        rig.run(ping(rig.session, TG4, count=1, deadline=1.0))


def test_linger_after_replies_is_two_rtts_even_past_w_as_ping() -> None:
    """iputils' __schedule_exit waits 2 x the largest RTT (at least -i) after the last
    request once a reply came, -W or not: `ping -c 5 -W 0.1 -i 0.2` to a target 300 ms
    away counts 5 of 5 (session 30, pingedge30: ours capped that at -W and said `5
    packets transmitted, 4 received, 20% packet loss`)."""
    rig = RawRig([TG4])
    rig.endpoint.delays[1] = 0.3
    start = rig.clock.seconds()
    result = rig.run(ping(rig.session, TG4, count=5, interval=0.2, wait=0.1, linger_like_ping=True))
    assert (result.sent, result.received) == (5, 5)
    assert rig.clock.seconds() - start < 0.8 + 0.6 + 0.5  # (the last reply ends it)


@pytest.mark.parametrize("delay", [0.0001, 0.02, None], ids=["answered", "20ms", "lost"])
def test_interval_0_sends_as_replies_come_or_10_ms_apart_as_ping_f(delay: float | None) -> None:
    """iputils -i 0 (and -f): the next request as the reply comes, or 10 ms (MININTERVAL)
    after the last while one is unanswered: 100 a second to a target that never answers.
    Ours sent every request at once (session 30, pingedge30: `-f -c 30` to a target 20 ms
    away `pipe 30, ipg 0.012 ms` for ping's `pipe 2, ipg 18`; `-f -c 50` unanswered in 1
    ms for ping's 800)."""
    rig = RawRig([TG4])
    sent = _transmits(rig, frozenset(range(1, 7)) if delay is None else frozenset())
    rig.endpoint.delays[1] = delay or 0.001
    rig.run(ping(rig.session, TG4, count=6, interval=0, wait=0.5), step=0.00005)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    step = 0.0001 if delay == 0.0001 else 0.01
    assert gaps == pytest.approx([step] * 5, abs=6e-5), gaps


@pytest.mark.parametrize(
    ("count", "delay", "lost", "received"),
    [(3, 0.25, frozenset(), 3), (2, 0.001, frozenset({2}), 1)],
    ids=["reply-after-queued-before-sent", "last-lost-w-10"],
)
def test_linger_counts_the_replies_in_before_the_last_request_left_as_ping(
    count: int, delay: float, lost: frozenset[int], received: int
) -> None:
    """iputils decides its linger as its last request leaves: 2 x the largest RTT if a
    reply came by then, else -W. Ours decided when the last was queued (0.2 s ahead):
    `-c 3 -i 0.2 -W 0.1` at 250 ms lost the 3rd reply (ping: 3 received); `-c 2 -i 0.2`
    with the 2nd lost waited -W's 10 s (ping: 0.4 s). Session 30, pingedge30."""
    rig = RawRig([TG4])
    rig.endpoint.delays[1] = delay
    answers = rig.endpoint.answers

    def lossy(probe: bytes) -> list[tuple[float, bytes]]:
        return [] if int.from_bytes(probe[26:28], "big") in lost else answers(probe)

    rig.endpoint.answers = lossy  # type: ignore[method-assign]
    start = rig.clock.seconds()
    wait = 0.1 if delay > 0.1 else 10.0
    result = rig.run(
        ping(rig.session, TG4, count=count, interval=0.2, wait=wait, linger_like_ping=True)
    )
    assert result.received == received
    assert rig.clock.seconds() - start < 2.0
