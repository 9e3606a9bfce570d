"""packetlab.measure.traceroute over a scripted endpoint (iosim, task.Clock)."""

from __future__ import annotations

import ipaddress
import itertools
import struct
import zlib
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
)

from packetlab.controller import RequestFailed, SendFailed, SessionClosed
from packetlab.controller.filters import tcpdump_filter
from packetlab.controller.stop import StopSignal
from packetlab.measure.probes import traceroute_probe
from packetlab.measure.records_fields import Stamp
from packetlab.measure.replies import ReplyKind
from packetlab.measure.traceroute import MeasureError, pick_source, traceroute
from packetlab.measure.traceroute_probes import capture_expression
from packetlab.wire import Nclose, Proto, Status

R34 = "10.0.3.1"  # a third router


def udp_ports(packet: bytes) -> tuple[int, int]:
    off = 40 if packet[0] >> 4 == 6 else 20
    return int.from_bytes(packet[off : off + 2], "big"), int.from_bytes(
        packet[off + 2 : off + 4], "big"
    )


def ttl_of(packet: bytes) -> int:
    return packet[7] if packet[0] >> 4 == 6 else packet[8]


@pytest.mark.parametrize(
    ("src", "path", "expr"),
    [(EP4, [R14, R24, TG4], "icmp"), (EP6, [R16, R26, TG6], "icmp6")],
)
def test_trace_to_target(src: str, path: list[str], expr: str) -> None:
    rig = RawRig(path)
    result = rig.run(traceroute(rig.session, path[-1], sport=20556, wait=1.0))
    assert result.path() == [(1, path[0]), (2, path[1]), (3, path[2])]
    assert result.reached and result.src == src and result.dst == path[-1]
    assert [h.reply_type for h in result.hops] == [
        ReplyKind.TIME_EXCEEDED,
        ReplyKind.TIME_EXCEEDED,
        ReplyKind.DEST_UNREACHABLE,
    ]
    # RTT = ndata time - ntag time; the fake answers TTL n after n ms
    assert [h.rtt_us for h in result.hops] == pytest.approx([1000, 2000, 3000], abs=1)
    for h in result.hops:
        assert h.reply_recv_ns is not None and h.probe_send_ns is not None
        assert h.rtt_us == (h.reply_recv_ns - h.probe_send_ns) / 1000
    assert result.start_ns == result.hops[0].probe_send_ns
    assert (result.send_stamp, result.recv_stamp) == (Stamp.KERNEL, Stamp.KERNEL)
    assert result.probe_size == (80 if ":" in src else 60) and result.max_ttl == 30
    # the raw socket: opened on the exported address, filtered, closed afterwards
    (nopen,) = rig.nopens()
    assert nopen.proto == Proto.RAW and ipaddress.ip_address(nopen.laddr) == ipaddress.ip_address(
        src
    )
    (ncap,) = rig.endpoint.ncaps
    last = result.hops[-1].reply_recv_ns
    # (session 27: ICMP but echo requests and replies, `capture_expression`)
    want = tcpdump_filter(capture_expression("udp", ipaddress.ip_address(path[-1]), 20556, 33434))
    assert ncap.filter == want and ncap.filter != tcpdump_filter(expr)
    assert last is not None and ncap.endtime > last
    assert any(isinstance(m, Nclose) for m in rig.endpoint.received)
    # Butskoy's probes: sport fixed, dport 33434 + n, TTL 1, 2, 3, one at a time
    sends = rig.endpoint.raw_sends
    assert [udp_ports(m.data) for m in sends] == [(20556, 33434), (20556, 33435), (20556, 33436)]
    assert [ttl_of(m.data) for m in sends] == [1, 2, 3]
    assert all(m.tag for m in sends)


def test_silent_hop_times_out_after_wait() -> None:
    rig = RawRig([R14, None, TG4])
    start = rig.clock.seconds()
    result = rig.run(traceroute(rig.session, TG4, wait=0.5))
    assert result.path() == [(1, R14), (2, None), (3, TG4)]
    silent = result.hops[1]
    assert silent.rtt_us is None and silent.probe_send_ns is not None
    assert 0.5 <= rig.clock.seconds() - start < 0.6
    assert [m.time for m in rig.endpoint.raw_sends] == [0, 0, 0]  # each sent at once


def test_stops_at_max_ttl() -> None:
    rig = RawRig([R14, None, None, None, TG4])
    result = rig.run(traceroute(rig.session, TG4, max_ttl=3, wait=0.1))
    assert result.path() == [(1, R14), (2, None), (3, None)]
    assert not result.reached and len(rig.endpoint.raw_sends) == 3


def test_first_ttl() -> None:
    rig = RawRig([R14, R24, TG4])
    result = rig.run(traceroute(rig.session, TG4, first_ttl=2, sport=1000))
    assert result.path() == [(2, R24), (3, TG4)]
    # the first probe sent goes to the base port, as in traceroute -f
    assert [udp_ports(m.data)[1] for m in rig.endpoint.raw_sends] == [33434, 33435]


def test_router_unreachable_ends_the_trace() -> None:
    rig = RawRig([R14, R24, TG4])
    rig.endpoint.unreachable_at[2] = 1  # host unreachable from r2 (!H)
    result = rig.run(traceroute(rig.session, TG4))
    assert result.path() == [(1, R14), (2, R24)]
    assert (result.hops[1].reply_type, result.hops[1].code) == (ReplyKind.DEST_UNREACHABLE, 1)
    assert len(rig.endpoint.raw_sends) == 2


def test_foreign_late_and_garbage_packets_are_ignored() -> None:
    rig = RawRig([R14, R24, TG4])
    rig.endpoint.delays[1] = 0.3  # later than the wait: TTL 1 times out, its answer is late

    def extra(probe: bytes) -> list[tuple[float, bytes]]:
        ttl = ttl_of(probe)
        other = traceroute_probe(EP4, TG4, ttl, sport=udp_ports(probe)[0] ^ 1)
        return [
            (0.0001, b"\x45garbage"),
            (0.0002, icmp_packet(R24, EP4, 11, 0, bytes(4), other.packet)),  # not ours
            (0.0003, icmp_packet(TG4, EP4, 8, 0, bytes(4), b"ping")),  # echo request
        ]

    rig.endpoint.extra = extra
    result = rig.run(traceroute(rig.session, TG4, wait=0.2))
    assert result.path() == [(1, None), (2, R24), (3, TG4)]
    assert result.hops[1].rtt_us == pytest.approx(2000, abs=1)


def test_source_can_be_given() -> None:
    rig = RawRig([R14, TG4])
    result = rig.run(traceroute(rig.session, TG4, src="127.0.0.1"))
    assert result.src == "127.0.0.1"
    assert ipaddress.ip_address(rig.nopens()[0].laddr) == ipaddress.IPv4Address("127.0.0.1")


def test_endpoint_without_raw_sockets() -> None:
    rig = RawRig([TG4], config="TransprotoSup tcp,udp\n")
    with pytest.raises(MeasureError, match="does not offer raw sockets"):
        rig.run(traceroute(rig.session, TG4))
    assert rig.nopens() == []


def test_endpoint_without_an_address_of_the_family() -> None:
    rig = RawRig([TG6], config="TransprotoSup raw,udp\nVMemLocalAddrStrIPv4 10.0.0.1\n")
    with pytest.raises(MeasureError, match="exports no IPv6 address"):
        rig.run(traceroute(rig.session, TG6))


def test_refused_ncap_closes_the_socket() -> None:
    rig = RawRig([TG4])
    rig.endpoint.ncap_status = Status.ESKTBADFILT
    with pytest.raises(RequestFailed) as err:
        rig.run(traceroute(rig.session, TG4))
    assert err.value.name == "ESKTBADFILT"
    assert any(isinstance(m, Nclose) for m in rig.endpoint.received)


def test_failed_send_is_reported() -> None:
    rig = RawRig([R14, TG4])
    rig.endpoint.nsend_errid = Status.EPKTNOTSENT
    with pytest.raises(SendFailed):
        rig.run(traceroute(rig.session, TG4))
    assert any(isinstance(m, Nclose) for m in rig.endpoint.received)


def test_session_lost_mid_trace() -> None:
    rig = RawRig([R14, None, TG4])
    d = traceroute(rig.session, TG4, wait=1.0)
    rig.clock.callLater(0.5, rig.endpoint.transport.loseConnection)  # type: ignore[union-attr]
    with pytest.raises((SessionClosed, MeasureError)):
        rig.run(d)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dst": "not-an-ip"}, "not an IPv4 or IPv6 address"),
        ({"first_ttl": 0}, "first_ttl"),
        ({"first_ttl": 5, "max_ttl": 4}, "first_ttl"),
        ({"max_ttl": 256}, "max_ttl"),
        ({"wait": -0.5}, "wait"),
        ({"wait": 61}, "wait"),
        ({"sport": 0}, "sport"),
        ({"sport": 70000}, "sport"),
        ({"base_port": 65530}, "base_port"),
        ({"src": EP6}, "different IP versions"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    rig = RawRig([TG4])
    args: dict[str, object] = {"dst": TG4, **kwargs}
    dst = args.pop("dst")
    with pytest.raises(ValueError, match=message):
        rig.run(traceroute(rig.session, dst, **args))  # type: ignore[arg-type]
    assert rig.endpoint.raw_sends == []


def test_pick_source() -> None:
    a = [ipaddress.ip_address(x) for x in ("127.0.0.1", "10.0.0.1", "::1", "fe80::1", "fd00::1")]
    assert pick_source(a, ipaddress.ip_address("192.0.2.1")) == a[1]
    assert pick_source(a, ipaddress.ip_address("127.0.0.1")) == a[0]
    assert pick_source(a, ipaddress.ip_address("2001:db8::1")) == a[4]
    assert pick_source(a, ipaddress.ip_address("::1")) == a[2]
    assert pick_source(a, ipaddress.ip_address("fe80::2")) == a[3]
    assert pick_source(a[:1], ipaddress.ip_address("192.0.2.1")) == a[0]  # better than none
    with pytest.raises(MeasureError, match="no IPv6"):
        pick_source(a[:2], ipaddress.ip_address("::2"))


@pytest.mark.parametrize(("dst", "path"), [(TG4, [R14, R24, TG4]), (TG6, [R16, R26, TG6])])
def test_paced_probes_are_scheduled_by_the_endpoint(dst: str, path: list[str]) -> None:
    rig = RawRig(path)
    start = rig.clock.seconds()
    result = rig.run(traceroute(rig.session, dst, max_ttl=6, pace=0.01, wait=0.5))
    # the result ends at the target; the probes still queued beyond it are dropped with
    # the capture socket once the target answered
    assert result.path() == [(1, path[0]), (2, path[1]), (3, path[2])]
    assert [h.rtt_us for h in result.hops] == pytest.approx([1000, 2000, 3000], abs=0.01)
    times = [m.time for m in rig.endpoint.raw_sends]
    assert 3 <= len(times) < 6 and times[0] > 0
    assert [b - a for a, b in itertools.pairwise(times)] == [10_000_000] * (len(times) - 1)
    assert [h.probe_send_ns for h in result.hops] == times[:3]
    # it returns once TTLs 1..3 are answered: well before max_ttl * pace + wait
    assert rig.clock.seconds() - start < 0.2


def test_paced_with_silent_hops() -> None:
    rig = RawRig([R14, None, None, TG4])  # TTLs 2 and 3 silent, the target at 4
    start = rig.clock.seconds()
    result = rig.run(traceroute(rig.session, TG4, max_ttl=3, pace=0.001, wait=0.3))
    assert result.path() == [(1, R14), (2, None), (3, None)]
    assert all(h.probe_send_ns is not None for h in result.hops)
    assert rig.clock.seconds() - start >= 0.3


def test_paced_answers_out_of_order() -> None:
    rig = RawRig([R14, R24, TG4])
    rig.endpoint.delays = {1: 0.05, 2: 0.03, 3: 0.01}  # TTL 3 answers first, TTL 1 last
    result = rig.run(traceroute(rig.session, TG4, max_ttl=5, pace=0.0, wait=1.0))
    assert result.path() == [(1, R14), (2, R24), (3, TG4)]
    assert [h.rtt_us for h in result.hops] == pytest.approx([50_000, 30_000, 10_000], abs=0.01)


def test_bad_pace() -> None:
    rig = RawRig([TG4])
    with pytest.raises(ValueError, match="pace"):
        rig.run(traceroute(rig.session, TG4, pace=-1))


def test_parallel_gives_up_on_silent_hops_once_a_later_hop_answered() -> None:
    """Like native traceroute (-w 5,3,10): a silent hop is waited for 10 times the RTT of
    a later hop that answered (at least 50 ms), not the whole `wait`."""
    rig = RawRig([R14, None, None, TG4])
    start = rig.clock.seconds()
    result = rig.run(traceroute(rig.session, TG4, max_ttl=8, pace=0.0, wait=5.0))
    assert result.path() == [(1, R14), (2, None), (3, None), (4, TG4)]
    assert rig.clock.seconds() - start < 0.2  # not 5 s


def test_near_zero_waits_the_whole_wait_for_silent_hops() -> None:
    """traceroute -w 5,3,0: NEAR 0 turns the shortening by a later hop's RTT off."""
    rig = RawRig([R14, None, None, TG4])
    start = rig.clock.seconds()
    result = rig.run(traceroute(rig.session, TG4, max_ttl=8, pace=0.0, wait=0.7, near=0))
    assert result.path() == [(1, R14), (2, None), (3, None), (4, TG4)]
    assert 0.7 <= rig.clock.seconds() - start < 0.8


def test_parallel_waits_the_whole_wait_when_nothing_later_answers() -> None:
    rig = RawRig([R14, None, None, None, TG4])  # the target is beyond max_ttl
    start = rig.clock.seconds()
    result = rig.run(traceroute(rig.session, TG4, max_ttl=4, pace=0.0, wait=0.7))
    assert result.path() == [(1, R14), (2, None), (3, None), (4, None)]
    assert 0.7 <= rig.clock.seconds() - start < 0.8


@pytest.mark.parametrize("pace", [None, 0.0])
def test_hops_are_told_in_ttl_order_as_soon_as_settled(pace: float | None) -> None:
    rig = RawRig([R14, R24, None, TG4])
    rig.endpoint.delays = {1: 0.02, 2: 0.001, 4: 0.005}
    told: list[tuple[int, str | None, float]] = []
    start = rig.clock.seconds()
    d = traceroute(
        rig.session, TG4, pace=pace, wait=1.0,
        on_hop=lambda h: told.append((h.ttl, h.addr, rig.clock.seconds() - start)),
    )  # fmt: skip
    result = rig.run(d)
    assert [(t, a) for t, a, _ in told] == result.path() == [
        (1, R14), (2, R24), (3, None), (4, TG4)
    ]  # fmt: skip
    assert told[0][2] < 0.1  # the first hop long before the end
    if pace is None:  # one at a time: the silent hop costs the whole wait
        assert told[2][2] >= 1.0
    else:  # in parallel: TTL 2 is told with TTL 1, the silent TTL 3 once TTL 4 answered
        assert told[1][2] == told[0][2] and told[2][2] < 0.2


def test_several_queries_per_hop() -> None:
    rig = RawRig([R14, TG4])
    result = rig.run(traceroute(rig.session, TG4, queries=3, pace=0.0, sport=1000))
    assert result.path() == [(1, R14)] * 3 + [(2, TG4)] * 3
    assert [udp_ports(m.data)[1] for m in rig.endpoint.raw_sends][:6] == list(range(33434, 33440))
    seq = rig.run(traceroute(rig.session, TG4, queries=2, sport=1001))
    assert seq.path() == [(1, R14), (1, R14), (2, TG4), (2, TG4)]


def test_tcp_ack_probes_are_bare_acks_numbered_in_seq_and_ack() -> None:
    rig = RawRig([R14, TG4])
    rig.run(traceroute(rig.session, TG4, method="tcp-ack", pace=0.0, base_port=443, sport=999))
    for i, m in enumerate(rig.endpoint.raw_sends):
        sport, dport, seq, ack, _, flags = struct.unpack_from("!HHIIBB", m.data, 20)
        assert (sport, dport, seq, ack, flags) == (999, 443, i + 1, i + 1, 0x10)


def send_times(rig: RawRig) -> list[float]:
    """The times (s after now, the fake clock) at which the endpoint sends, filled in as
    it does."""
    sent: list[float] = []
    start = rig.clock.seconds()
    real = rig.endpoint.transmit

    def transmit(msg: Any, when: int) -> None:
        sent.append(rig.clock.seconds() - start)
        real(msg, when)

    rig.endpoint.transmit = transmit  # type: ignore[method-assign]
    return sent


def test_squeries_keeps_at_most_n_probes_in_flight() -> None:
    """traceroute -N 2: two probes in flight; the next leaves as one is answered, or once
    a silent one is `wait` s old."""
    rig = RawRig([R14, None, R34, TG4])
    rig.endpoint.delays = {1: 0.01, 3: 0.01, 4: 0.01}
    sent = send_times(rig)
    result = rig.run(traceroute(rig.session, TG4, pace=0.0, squeries=2, wait=0.5, max_ttl=6))
    assert result.path() == [(1, R14), (2, None), (3, R34), (4, TG4)]
    # TTL 1 and 2 at once; 3 once 1 is answered (~10 ms); 4 once 3 is; 5.. never, since
    # 4 ends the trace before the silent TTL 2 leaves the window
    assert len(sent) == 4
    assert sent[1] - sent[0] < 0.005 and 0.01 <= sent[2] < 0.05 and 0.02 <= sent[3] < 0.1
    one = rig.run(traceroute(rig.session, TG4, pace=0.0, squeries=1, wait=0.3, max_ttl=3))
    assert one.path() == [(1, R14), (2, None), (3, R34)]  # TTL 3 only after 2's wait


def test_squeries_with_pace_sends_each_probe_pace_after_the_one_before() -> None:
    """traceroute -N 16 -z 0.2: a place free in the window, the next probe still waits
    until 0.2 s after the one before (its `last_send + send_secs`). -N with -z was
    refused (`not with --sequential or --pace`), and the library ignored `pace` with
    `squeries`: every probe of the window at once."""
    rig = RawRig([R14, R24, R34, TG4])
    sent = send_times(rig)
    d = traceroute(rig.session, TG4, pace=0.2, squeries=16, wait=1.0, max_ttl=6)
    result = rig.run(d)
    assert result.path() == [(1, R14), (2, R24), (3, R34), (4, TG4)]
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert len(sent) == 4 and gaps == pytest.approx([0.2] * 3, abs=0.002), sent


def test_a_probe_the_endpoint_sends_late_is_waited_for_from_when_it_left() -> None:
    """A busy endpoint sends the last of many queued probes late: the shortened wait (a
    later hop answered) counts from the probe's ntag, not from when it was queued."""
    rig = RawRig([R14, R24, TG4])
    real = rig.endpoint.transmit

    def transmit(msg: Any, when: int) -> None:
        if ttl_of(msg.data) == 2:  # sent 0.3 s late, answered 2 ms after
            rig.clock.callLater(0.3, real, msg, when + 300_000_000)
        else:
            real(msg, when)

    rig.endpoint.transmit = transmit  # type: ignore[method-assign]
    result = rig.run(traceroute(rig.session, TG4, pace=0.0, wait=5.0, max_ttl=4))
    assert result.path() == [(1, R14), (2, R24), (3, TG4)]
    assert result.hops[1].rtt_us == pytest.approx(2000, abs=0.01)


def test_bad_squeries() -> None:
    rig = RawRig([TG4])
    with pytest.raises(ValueError, match="squeries"):
        rig.run(traceroute(rig.session, TG4, pace=0.0, squeries=0))


@pytest.mark.parametrize("pace", [None, 0.0])
def test_a_stop_returns_the_hops_settled(pace: float | None) -> None:
    rig = RawRig([R14, None, None, None, None, None, TG4])
    stop = StopSignal()
    d = traceroute(rig.session, TG4, pace=pace, wait=5.0, max_ttl=6, stop=stop)
    rig.clock.callLater(2.5, stop.request)
    start = rig.clock.seconds()
    result = rig.run(d)
    assert 2.5 <= rig.clock.seconds() - start < 3.6
    assert result.path()[0] == (1, R14)
    assert len(result.hops) < 6 if pace is None else len(result.hops) == 6


def test_a_stop_with_squeries_returns_only_the_probes_sent() -> None:
    """traceroute -N 1, Ctrl-C while a silent hop is waited for: the hops of probes never
    sent are not settled as silent (`* * *` down to --max-ttl and a `probe_count` of every
    probe were printed; found by the session 12 fresh-eyes pass)."""
    rig = RawRig([R14, None, None, None, None, None, TG4])
    stop = StopSignal()
    d = traceroute(rig.session, TG4, pace=0.0, squeries=1, wait=5.0, max_ttl=6, stop=stop)
    rig.clock.callLater(2.5, stop.request)  # TTL 2's probe in flight, 3.. not sent
    result = rig.run(d)
    assert result.path() == [(1, R14), (2, None)]


def test_a_stop_with_pace_returns_only_the_probes_due() -> None:
    """--pace 1, Ctrl-C at 2.5 s: the probes scheduled after it are no hops (they were
    settled as silent down to --max-ttl, the target's among them)."""
    rig = RawRig([R14, None, None, None, None, None, TG4])
    stop = StopSignal()
    d = traceroute(rig.session, TG4, pace=1.0, wait=5.0, max_ttl=6, stop=stop)
    rig.clock.callLater(2.5, stop.request)  # probes due at ~0.05, 1.05, 2.05
    result = rig.run(d)
    assert result.path() == [(1, R14), (2, None), (3, None)]


@pytest.mark.parametrize("method", ["icmp", "tcp", "tcp-ack"])
@pytest.mark.parametrize(("dst", "path"), [(TG4, [R14, R24, TG4]), (TG6, [R16, R26, TG6])])
def test_icmp_and_tcp_probes(method: str, dst: str, path: list[str]) -> None:
    rig = RawRig(path)
    d = traceroute(rig.session, dst, method=method, pace=0.0, base_port=80, sport=40000)
    result = rig.run(d)
    assert result.path() == [(1, path[0]), (2, path[1]), (3, dst)]
    assert result.method == method and result.reached
    want = {"icmp": ReplyKind.ECHO_REPLY, "tcp": ReplyKind.TCP_SYNACK}.get(method)
    want = want or ReplyKind.TCP_RST
    assert result.hops[-1].reply_type == want
    assert [h.rtt_us for h in result.hops] == pytest.approx([1000, 2000, 3000], abs=0.01)
    (ncap,) = rig.endpoint.ncaps
    if ":" in dst:
        icmp = "icmp6 and (ip6[6] = 44 or (icmp6[0] != 128 and icmp6[0] != 129){})"
        echo = " or (icmp6[0] = 129 and icmp6[4:2] = 40000)"
    else:
        icmp = "icmp and (ip[6:2] & 0x1fff != 0 or (icmp[0] != 0 and icmp[0] != 8){})"
        echo = " or (icmp[0] = 0 and icmp[4:2] = 40000)"
    tcp = f"tcp and src host {dst} and src port 80 and dst port 40000"
    expr = icmp.format(echo) if method == "icmp" else f"({icmp.format('')}) or ({tcp})"
    assert ncap.filter == tcpdump_filter(expr)
    if method == "tcp":  # traceroute -T's SYN: 20 bytes of options, 60 (80) byte packets
        assert {len(m.data) for m in rig.endpoint.raw_sends} == {80 if ":" in dst else 60}


@pytest.mark.parametrize("method", ["tcp", "tcp-ack"])
def test_tcp_capture_takes_only_answers_to_the_probes_ports(method: str) -> None:
    """The TCP capture names the target's port and the probes' source port: with `tcp and
    src host TARGET` alone, on loopback every TCP segment of the host (a parallel pass's
    flows, the endpoint's own session) filled the capture's queue and the target's RSTs
    were lost, every hop `*` (session 26's CI flake; test_traceroute_sweep25_like_native
    `test_tcp_probes_answered_beside_a_loopback_tcp_flow`)."""
    rig = RawRig([R14, TG4])
    rig.run(traceroute(rig.session, TG4, method=method, pace=0.0, max_ttl=2, base_port=80))
    (ncap,) = rig.endpoint.ncaps
    (sport,) = {udp_ports(m.data)[0] for m in rig.endpoint.raw_sends}  # (TCP's too)
    tcp = f"tcp and src host {TG4} and src port 80 and dst port {sport}"
    icmp = "icmp and (ip[6:2] & 0x1fff != 0 or (icmp[0] != 0 and icmp[0] != 8))"
    assert ncap.filter == tcpdump_filter(f"({icmp}) or ({tcp})")
    assert ncap.filter != tcpdump_filter(f"icmp or (tcp and src host {TG4})")


@pytest.mark.parametrize("method", ["udp", "icmp", "tcp", "dccp"])
@pytest.mark.parametrize("dst", [TG4, TG6])
def test_the_capture_takes_no_echo_requests_nor_others_replies(method: str, dst: str) -> None:
    """Neither echo requests nor echo replies to other identifiers (-I: its own): with
    `icmp` alone, beside two `ping -f` on a namespace's loopback every run of ours to
    127.0.0.1 had stars (10 of 10; traceroute 2.1.2 none): the capture's queue
    overflowed with the floods' requests and replies."""
    target = ipaddress.ip_address(dst)
    expr = capture_expression(method, target, 40000, 33434)
    req, rep = ("128", "129") if target.version == 6 else ("8", "0")
    assert f"[0] != {req}" in expr and f"[0] != {rep}" in expr
    assert ("[4:2] = 40000" in expr) == (method == "icmp")
    rig = RawRig([R16, R26, dst] if target.version == 6 else [R14, R24, dst])
    rig.run(traceroute(rig.session, dst, method=method, sport=40000, pace=0.0))
    assert rig.endpoint.ncaps[0].filter == tcpdump_filter(expr)


@pytest.mark.parametrize("dst", [TG4, TG6])
def test_tcp_probes_of_a_run_share_their_timestamp_option(dst: str) -> None:
    """traceroute -T's probes carry one TSval for the whole run (mod-tcp.c's tcp_init
    draws it once; seen with tcpdump, session 26): ours drew one per probe. Two runs
    draw two."""
    tsvals = []
    for _ in range(2):
        rig = RawRig([R16, R26, dst] if ":" in dst else [R14, R24, dst])
        rig.run(traceroute(rig.session, dst, method="tcp", pace=0.0, queries=2, max_ttl=3))
        heads = [m.data[40 if ":" in dst else 20 :] for m in rig.endpoint.raw_sends]
        # (the SYN's options: MSS 4 bytes, SACK permitted 2, then kind 8 length 10 TSval)
        assert {h[26:28] for h in heads} == {b"\x08\x0a"}
        tsvals.append({h[28:32] for h in heads})
        assert len(tsvals[-1]) == 1 and len(heads) == 6
    assert tsvals[0] != tsvals[1]


def test_unknown_method() -> None:
    rig = RawRig([TG4])
    with pytest.raises(ValueError, match="method must be one of udp, icmp, tcp"):
        rig.run(traceroute(rig.session, TG4, method="sctp"))


def flow_of(packet: bytes) -> bytes:
    """What a per-flow load balancer hashes: addresses, protocol, the first 4 transport
    bytes (ports, or ICMP type, code and checksum), IPv6 traffic class and flow label."""
    if packet[0] >> 4 == 6:
        return packet[0:4] + packet[6:7] + packet[8:40] + packet[40:44]
    return packet[1:2] + packet[9:10] + packet[12:20] + packet[20:24]


class EcmpPath(RawRig):
    """Hop 2 is one of two routers, chosen by a hash of the probe's flow (as Linux's
    fib_multipath_hash_policy=1 or a router's ECMP does)."""

    OTHER = {R24: "10.77.9.2", R26: "fd00:77:9::2"}

    def __init__(self, path: list[str | None]) -> None:
        super().__init__(path)
        plain = self.endpoint.answers
        second = path[1]
        assert second is not None

        def answers(probe: bytes) -> list[tuple[float, bytes]]:
            self.endpoint.path[1] = (second, self.OTHER[second])[zlib.crc32(flow_of(probe)) % 2]
            return plain(probe)

        self.endpoint.answers = answers  # type: ignore[method-assign]


@pytest.mark.parametrize("pace", [None, 0.0])
@pytest.mark.parametrize("method", ["udp-paris", "icmp-paris"])
@pytest.mark.parametrize(("dst", "path"), [(TG4, [R14, R24, TG4]), (TG6, [R16, R26, TG6])])
def test_paris_probes_are_one_flow(
    method: str, dst: str, path: list[str], pace: float | None
) -> None:
    rig = EcmpPath(list(path))
    result = rig.run(traceroute(rig.session, dst, method=method, queries=8, pace=pace))
    assert result.method == method and result.reached
    sends = [m.data for m in rig.endpoint.raw_sends]
    assert len({flow_of(p) for p in sends}) == 1  # one flow: one path through the ECMP hop
    assert len({p for p in sends}) == len(sends)  # yet every probe is a different packet
    hop2 = {h.addr for h in result.hops if h.ttl == 2}
    assert len(hop2) == 1 and hop2 <= {path[1], EcmpPath.OTHER[path[1]]}
    assert [h.ttl for h in result.hops] == [1] * 8 + [2] * 8 + [3] * 8
    assert all(h.addr is not None and h.rtt_us is not None for h in result.hops)


def test_classic_udp_probes_take_both_ecmp_paths() -> None:
    rig = EcmpPath([R14, R24, TG4])
    result = rig.run(traceroute(rig.session, TG4, queries=10, max_ttl=3, pace=0.0, sport=999))
    assert len({flow_of(m.data) for m in rig.endpoint.raw_sends}) == 30
    # 10 flows through the ECMP hop (a deterministic hash): both of its routers
    assert {h.addr for h in result.hops if h.ttl == 2} == {R24, "10.77.9.2"}


def test_paris_udp_probe_is_told_by_its_checksum() -> None:
    rig = RawRig([R14, TG4])
    result = rig.run(traceroute(rig.session, TG4, method="udp-paris", sport=4000, base_port=53))
    sends = [m.data for m in rig.endpoint.raw_sends]
    assert [udp_ports(p) for p in sends] == [(4000, 53), (4000, 53)]
    assert [int.from_bytes(p[26:28], "big") for p in sends] == [1, 2]  # index + 1
    from packetlab.measure.packets import PROTO_UDP, as_address, inet_checksum, pseudo_header

    for p in sends:  # still a valid UDP checksum
        ph = pseudo_header(as_address(EP4), as_address(TG4), PROTO_UDP, len(p) - 20)
        assert inet_checksum(ph + p[20:]) == 0
    assert result.path() == [(1, R14), (2, TG4)] and len(sends[0]) == 60


# -- traceroute's packetlen, -U, -t, -F, --mtu -------------------------------------------------


@pytest.mark.parametrize(
    ("method", "dst", "path", "packetlen", "length"),
    [
        ("udp", TG4, [R14, TG4], 100, 100),
        ("udp", TG4, [R14, TG4], 10, 28),  # raised to the headers, as traceroute
        ("udp", TG6, [R16, TG6], 10, 48),
        ("icmp", TG4, [R14, TG4], 120, 120),
        ("udp-paris", TG4, [R14, TG4], 10, 30),  # (2 bytes steer the checksum)
        ("tcp", TG4, [R14, TG4], 100, 60),  # TCP probes keep their length, as -T
        ("udp", TG4, [R14, TG4], None, 60),
    ],
)
def test_packetlen_is_the_probes_ip_length(
    method: str, dst: str, path: list[str], packetlen: int | None, length: int
) -> None:
    rig = RawRig(path)
    result = rig.run(
        traceroute(rig.session, dst, max_ttl=2, pace=0.0, method=method, packetlen=packetlen)
    )
    assert {len(m.data) for m in rig.endpoint.raw_sends} == {length}
    assert result.probe_size == length and result.reached
    if method == "udp" and packetlen == 100:  # Butskoy's payload: 0x40.. 0x7f, 0x40..
        assert rig.endpoint.raw_sends[0].data[28:] == bytes(0x40 + (i & 0x3F) for i in range(72))


def test_tos_and_dont_fragment_are_in_every_probe() -> None:
    rig = RawRig([R14, TG4])
    rig.run(traceroute(rig.session, TG4, max_ttl=2, pace=0.0, tos=0x10, dont_fragment=True))
    assert {m.data[1] for m in rig.endpoint.raw_sends} == {0x10}
    assert {m.data[6] >> 5 for m in rig.endpoint.raw_sends} == {0b010}  # DF
    v6 = RawRig([R16, TG6])
    v6.run(traceroute(v6.session, TG6, max_ttl=2, pace=0.0, tos=0xB8))
    tclass = {(int.from_bytes(m.data[:2], "big") >> 4) & 0xFF for m in v6.endpoint.raw_sends}
    assert tclass == {0xB8}


@pytest.mark.parametrize("method", ["udp", "icmp", "tcp", "tcp-ack", "udp-paris", "icmp-paris"])
def test_the_flow_label_is_in_every_ipv6_probe_as_traceroute_l(method: str) -> None:
    v6 = RawRig([R16, TG6])
    v6.run(traceroute(v6.session, TG6, max_ttl=2, pace=0.0, method=method, flow_label=0x12345))
    labels = {int.from_bytes(m.data[:4], "big") & 0xFFFFF for m in v6.endpoint.raw_sends}
    assert labels == {0x12345}
    v4 = RawRig([R14, TG4])  # (IPv4 has none: ignored, as traceroute)
    assert v4.run(traceroute(v4.session, TG4, max_ttl=2, pace=0.0, flow_label=5)).reached
    with pytest.raises(ValueError, match="flow_label"):
        v4.run(traceroute(v4.session, TG4, flow_label=1 << 20))


def test_udp_fixed_probes_go_to_one_port_from_a_source_port_each() -> None:
    """traceroute -U: UDP to one port (53), the probes told apart by their source ports."""
    rig = RawRig([R14, R24, TG4])
    result = rig.run(
        traceroute(
            rig.session, TG4, pace=0.0, queries=2, method="udp-fixed", base_port=53, sport=40000
        )
    )
    ports = [udp_ports(m.data) for m in rig.endpoint.raw_sends]
    assert ports == [(40000 + i, 53) for i in range(len(ports))]
    assert [h.addr for h in result.hops] == [R14, R14, R24, R24, TG4, TG4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"packetlen": 65001}, "too big packetlen 65001"),
        ({"tos": 256}, "tos must be 0..255"),
        ({"mtu_hints": (10,)}, "mtu_hints"),
    ],
)
def test_bad_shape(kwargs: dict[str, Any], message: str) -> None:
    rig = RawRig([TG4])
    with pytest.raises(ValueError, match=message):
        rig.run(traceroute(rig.session, TG4, **kwargs))
    assert rig.endpoint.raw_sends == []


@pytest.mark.parametrize(("dst", "path"), [(TG4, [R14, R24, TG4]), (TG6, [R16, R26, TG6])])
def test_mtu_discovery_shrinks_to_the_interface_then_to_what_the_router_names(
    dst: str, path: list[str]
) -> None:
    """traceroute --mtu: DF probes, 65000 bytes first; the endpoint cannot send them, so
    the interface's MTU (a hint) next (F=1500 at hop 1); the first router cannot forward
    that and names 1400 (F=1400 at hop 2); one probe at a time."""
    rig = RawRig(path)
    narrow_link(rig, 1500, 1400)
    result = rig.run(traceroute(rig.session, dst, queries=2, mtu_discovery=True, mtu_hints=(1500,)))
    sizes = [len(m.data) for m in rig.endpoint.raw_sends]
    assert sizes == [65000, 1500, 1500, 1500, 1400, 1400, 1400, 1400]
    assert [(h.ttl, h.addr, h.mtu) for h in result.hops] == [
        (1, path[0], 1500), (1, path[0], None), (2, path[1], 1400), (2, path[1], None),
        (3, dst, None), (3, dst, None),
    ]  # fmt: skip
    assert result.probe_size == 65000
    from packetlab.measure.records_traceroute import traceroute_line

    assert " F=1500  " in traceroute_line(1, result.hops[:2])  # after the RTT, as traceroute
    if dst == TG4:
        assert {m.data[6] >> 5 for m in rig.endpoint.raw_sends} == {0b010}  # DF


def test_mtu_discovery_without_hints_tries_the_common_mtus() -> None:
    rig = RawRig([R14, R24, TG4])
    narrow_link(rig, 1492, 1400)
    result = rig.run(traceroute(rig.session, TG4, mtu_discovery=True, packetlen=9000))
    sizes = [len(m.data) for m in rig.endpoint.raw_sends]
    assert sizes == [9000, 8166, 4352, 2002, 1500, 1492, 1492, 1400, 1400]
    assert [h.mtu for h in result.hops] == [1492, 1400, None]


def test_a_probe_too_big_to_send_without_mtu_discovery_is_one_clear_error() -> None:
    rig = RawRig([R14, TG4])
    narrow_link(rig, 1400, 1400)
    with pytest.raises(MeasureError, match="could not send a 2000 byte probe"):
        rig.run(traceroute(rig.session, TG4, pace=0.0, packetlen=2000))


def test_frag_needed_is_shown_with_the_mtu_and_ends_the_trace() -> None:
    """-F, a probe over the next link's MTU: traceroute's `!F-1400` (IPv6 too)."""
    from packetlab.measure.records_traceroute import traceroute_line

    for dst, path in ((TG4, [R14, R24, TG4]), (TG6, [R16, R26, TG6])):
        rig = RawRig(path)
        narrow_link(rig, 1500, 1400)
        result = rig.run(traceroute(rig.session, dst, pace=0.0, packetlen=1450, dont_fragment=True))
        assert [h.ttl for h in result.hops] == [1, 2]
        assert traceroute_line(2, result.hops[1:]).endswith("ms !F-1400")


def test_a_df_probe_the_endpoint_refuses_is_a_local_frag_needed_as_traceroute_f() -> None:
    """-F with packetlen 2000 over a 1500 byte link (IPv4 and IPv6): traceroute's kernel
    refuses each probe (EMSGSIZE) and traceroute shows that local error,
    ` 1  *  0.183 ms !F-1500 *  0.149 ms !F-1500 *  0.142 ms !F-1500`, and stops (exit
    0); ours raised `could not send a 2000 byte probe` (exit 2; session 28, icmp28)."""
    from packetlab.measure.records_traceroute import traceroute_line

    for dst, path in ((TG4, [R14, R24, TG4]), (TG6, [R16, R26, TG6])):
        rig = RawRig(path)
        narrow_link(rig, 1500, 1500)
        result = rig.run(
            traceroute(
                rig.session,
                dst,
                pace=0.0,
                queries=3,
                packetlen=2000,
                dont_fragment=True,
                fragment_mtu=1500,
            )
        )
        assert [(h.ttl, h.addr, h.next_mtu) for h in result.hops] == [(1, None, 1500)] * 3
        assert traceroute_line(1, result.hops) == (
            " 1  *  0.000 ms !F-1500 *  0.000 ms !F-1500 *  0.000 ms !F-1500"
        )


def test_df_probes_refused_after_a_too_big_name_the_mtu_it_taught() -> None:
    """IPv6 -F packetlen 1450, a 1400 link past the first router: the first TTL-2 probe
    is answered "packet too big" 1400, which the endpoint's kernel learns; it refuses the
    other two, shown `*  0.000 ms !F-1400` (the MTU it refused them at), and the trace
    ends with that TTL, as traceroute -F would show its local errors."""
    rig = RawRig([R16, R26, TG6])
    narrow_link(rig, 1500, 1400, learns=True)
    result = rig.run(
        traceroute(
            rig.session,
            TG6,
            pace=0.0,
            queries=3,
            packetlen=1450,
            dont_fragment=True,
            fragment_mtu=1500,
        )
    )
    assert [(h.ttl, h.addr, h.next_mtu) for h in result.hops] == [
        (1, R16, None), (1, R16, None), (1, R16, None),
        (2, R16, 1400), (2, None, 1400), (2, None, 1400),
    ]  # fmt: skip


def test_long_probes_go_in_fragments_of_the_mtu_given() -> None:
    """packetlen over the endpoint's MTU (`fragment_mtu`, the in-process endpoint's route
    MTU): each probe leaves as fragments, the first tagged (its send time), as traceroute's
    kernel sends them; the routers' answers quote the first."""
    rig = RawRig([R14, TG4])
    result = rig.run(
        traceroute(
            rig.session, TG4, max_ttl=2, pace=0.0, packetlen=3000, fragment_mtu=1500, sport=4000
        )
    )
    sends = rig.endpoint.raw_sends
    assert len(sends) == 2 * 3 and all(len(m.data) <= 1500 for m in sends)
    assert [bool(m.tag) for m in sends] == [True, False, False] * 2
    assert [h.addr for h in result.hops] == [R14, TG4] and result.probe_size == 3000
    assert all(h.rtt_us is not None for h in result.hops)


def test_probes_refused_after_a_too_big_go_again_in_smaller_fragments() -> None:
    """IPv6, packetlen 2000 in fragments of 1500: the first TTL-2 probe meets a 1400 link
    ("packet too big", !F-1400), which the endpoint's kernel learns, so it refuses the
    other two; they go again in fragments of 1400, as traceroute's kernel sends them, and
    reach the second router."""
    rig = RawRig([R16, R26, TG6])
    narrow_link(rig, 1500, 1400, learns=True)
    result = rig.run(
        traceroute(rig.session, TG6, pace=0.0, queries=3, packetlen=2000, fragment_mtu=1500)
    )
    assert [(h.ttl, h.addr, h.next_mtu) for h in result.hops] == [
        (1, R16, None), (1, R16, None), (1, R16, None),
        (2, R16, 1400), (2, R26, None), (2, R26, None),
    ]  # fmt: skip
    assert max(len(m.data) for m in rig.endpoint.raw_sends[-4:]) <= 1400


@pytest.mark.parametrize(
    ("learns", "mtu"),
    [(False, 1500), (True, 1500), (False, None), (True, None)],
    ids=["sent-before-the-news", "kernel-learns", "listen-before-the-news", "listen-learns"],
)
def test_probes_answered_too_big_after_one_taught_the_mtu_go_again_in_fragments(
    learns: bool, mtu: int | None
) -> None:
    """IPv6 packetlen 1450 without -F, a 1400 link past the first router (session 29):
    traceroute's probes leave one by one, so its kernel has the first "too big" before it
    sends the next and fragments them: `2  r1  !F-1400 r2  X ms  X ms`. Ours left back
    to back, each answered "too big" (`!F-1400` three times); the ones answered so after
    the first now go again in fragments of 1400 and reach the second router."""
    rig = RawRig([R16, R26, TG6])
    narrow_link(rig, 1500, 1400, learns=learns)
    result = rig.run(
        traceroute(rig.session, TG6, pace=0.0, queries=3, packetlen=1450, fragment_mtu=mtu)
    )
    assert [(h.ttl, h.addr, h.next_mtu) for h in result.hops] == [
        (1, R16, None), (1, R16, None), (1, R16, None),
        (2, R16, 1400), (2, R26, None), (2, R26, None),
    ]  # fmt: skip
    assert all(h.rtt_us is not None and h.rtt_us > 0 for h in result.hops)
    resent = [m for m in rig.endpoint.raw_sends if m.data[7] == 2 and len(m.data) <= 1400]
    assert len(resent) == 4  # the second and third TTL-2 probes, two fragments each


@pytest.mark.parametrize(
    ("pace", "mtu", "note"),
    [(None, 1500, "!F-1500"), (None, None, "!F"), (0.0, None, "!F")],
    ids=["sequential", "sequential-listen", "paced-listen"],
)
def test_df_probes_the_endpoint_refuses_end_the_trace_sequential_or_mtu_unknown(
    pace: float | None, mtu: int | None, note: str
) -> None:
    """-F packetlen 2000 over a 1500 byte interface (session 29): with --sequential the
    loop awaited each probe's answer before its ntag, then failed the run (`could not send
    a 2000 byte probe`, exit 2), and so did a paced one whose endpoint's MTU the controller
    does not know (--listen). Now the local refusal is traceroute -F's `*  0.000 ms
    !F-1500`, `!F` when the MTU is not known, and the trace ends, without waiting -w."""
    from packetlab.measure.records_traceroute import traceroute_line

    for dst, path in ((TG4, [R14, R24, TG4]), (TG6, [R16, R26, TG6])):
        rig = RawRig(path)
        narrow_link(rig, 1500, 1500)
        start = rig.clock.seconds()
        trace = traceroute(
            rig.session, dst, pace=pace, queries=3, packetlen=2000, wait=5.0,
            dont_fragment=True, fragment_mtu=mtu,
        )  # fmt: skip
        result = rig.run(trace)
        assert [(h.ttl, h.addr, h.next_mtu) for h in result.hops] == [(1, None, mtu)] * 3
        assert traceroute_line(1, result.hops) == f" 1 {f' *  0.000 ms {note}' * 3}"
        assert rig.clock.seconds() - start < 1.0


def test_a_short_df_probe_refused_with_the_mtu_unknown_still_fails_the_run() -> None:
    """A DF probe no longer than 1280 bytes is under any usual MTU: its refusal by an
    endpoint whose MTU is not known is something else, and stays an error."""
    rig = RawRig([R14, TG4])
    narrow_link(rig, 1000, 1000)
    with pytest.raises(SendFailed):
        rig.run(traceroute(rig.session, TG4, pace=0.0, packetlen=1200, dont_fragment=True))


@pytest.mark.parametrize("mtu", [1500, None], ids=["in-process", "listen"])
def test_sequential_probes_after_a_too_big_go_in_fragments_of_the_mtu_it_named(
    mtu: int | None,
) -> None:
    """IPv6 --sequential packetlen 1450, no -F, a 1400 link past the first router
    (session 29): traceroute -N 1 `2  r1  !F-1400 r2  X ms  X ms` (its kernel fragments
    the probes after the "too big"); ours sent each whole: `!F-1400` three times."""
    rig = RawRig([R16, R26, TG6])
    narrow_link(rig, 1500, 1400)
    result = rig.run(traceroute(rig.session, TG6, queries=3, packetlen=1450, fragment_mtu=mtu))
    assert [(h.ttl, h.addr, h.next_mtu) for h in result.hops] == [
        (1, R16, None), (1, R16, None), (1, R16, None),
        (2, R16, 1400), (2, R26, None), (2, R26, None),
    ]  # fmt: skip
    assert [len(m.data) for m in rig.endpoint.raw_sends][-4:] == [1400, 106, 1400, 106]


def test_a_long_probe_refused_with_no_mtu_known_fails_at_once() -> None:
    """--listen (no `fragment_mtu`), packetlen 2000 over the endpoint's 1500: no "too big"
    can name an MTU to send it in fragments of, so the run fails when that hop's turn
    comes (`could not send a 2000 byte probe`), not after waiting `-w` for one (session
    29 parks refused probes for a "too big" with --listen too: only while one may come)."""
    rig = RawRig([R16, R26, TG6])
    narrow_link(rig, 1500, 1500)
    start = rig.clock.seconds()
    with pytest.raises(MeasureError, match="could not send a 2000 byte probe"):
        rig.run(traceroute(rig.session, TG6, pace=0.0, packetlen=2000, wait=5.0))
    assert rig.clock.seconds() - start < 1.0


def _far_endpoint(rig: RawRig, one_way: float) -> None:
    """What the endpoint says (ntags, captured replies) reaches us `one_way` s later."""
    real = rig.endpoint.send

    def later(msg: Any) -> None:
        rig.clock.callLater(one_way, real, msg)

    rig.endpoint.send = later  # type: ignore[method-assign]


def test_wait_is_kept_on_the_endpoints_clock_as_traceroute_keeps_it_on_its_own() -> None:
    """-w 0.01 with hops 1-3 ms away and the endpoint 20 ms from us: every hop answered
    (traceroute -w 0.001 to 127.0.0.1: `localhost  0.024 ms`); before, the wait counted
    from queueing the probe here and ended before its news came: `* * *` (session 31)."""
    rig = RawRig([R14, R24, TG4])
    _far_endpoint(rig, 0.02)
    result = rig.run(traceroute(rig.session, TG4, pace=0.0, wait=0.01, max_ttl=5))
    assert result.path() == [(1, R14), (2, R24), (3, TG4)]
    assert [h.rtt_us for h in result.hops] == pytest.approx([1000, 2000, 3000], abs=0.01)
    # a reply the endpoint had after -w is a `*` (traceroute's: it gave the probe up)
    rig = RawRig([R14, R24, TG4])
    _far_endpoint(rig, 0.02)
    rig.endpoint.delays = {1: 0.001, 2: 0.015, 3: 0.003}
    result = rig.run(traceroute(rig.session, TG4, pace=0.0, wait=0.01, max_ttl=5))
    assert result.path() == [(1, R14), (2, None), (3, TG4)]


def test_wait_0_takes_the_replies_in_before_the_last_probe_of_its_batch_left() -> None:
    """traceroute -w 0 sends its batch of probes, then reads what its kernel holds
    (poll(0)) and gives every other probe up: to 127.0.0.1 `localhost  0.024 ms  0.005
    ms  0.004 ms`, to a router 1 ms away `* * *` per hop. Ours took no -w 0 (exit 2)."""
    rig = RawRig([R14, R24, TG4])
    real = rig.endpoint.transmit

    def transmit(msg: Any, when: int) -> None:  # the endpoint sends one each 1 ms
        late = ttl_of(msg.data) * 0.001
        rig.clock.callLater(late, real, msg, when + int(late * 1e9))

    rig.endpoint.transmit = transmit  # type: ignore[method-assign]
    rig.endpoint.delays = {1: 0.0005, 2: 0.0005, 3: 0.0005}
    start = rig.clock.seconds()
    result = rig.run(traceroute(rig.session, TG4, pace=0.0, wait=0.0, max_ttl=3))
    # hops 1 and 2 answered before the last probe left; the last one's answer came after
    assert result.path() == [(1, R14), (2, R24), (3, None)]
    assert rig.clock.seconds() - start < 0.2
    rig = RawRig([R14, R24, TG4])  # all sent at once: nothing in before the last left
    result = rig.run(traceroute(rig.session, TG4, pace=0.0, wait=0.0, max_ttl=3))
    assert result.path() == [(1, None), (2, None), (3, None)]
