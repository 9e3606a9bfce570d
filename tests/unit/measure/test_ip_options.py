"""IP options in the probes (ping -T's timestamps, the loose source routes of ping HOST...
TARGET and traceroute -g) and
traceroute -T -O's TCP flags and options, built as the native tools' kernels send them
(the bytes below are from tcpdump captures of iputils ping 20221126 and Butskoy
traceroute 2.1.2 on Linux) and read back as iputils reads them."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import pytest
from test_traceroute_fakes import EP4, R14, R24, TG4, RawRig, icmp_packet

from packetlab.cli.report_ping import source_route_lines, timestamp_lines
from packetlab.measure.packets import (
    IPOPT_NOP,
    PROTO_ICMP,
    PROTO_TCP,
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    fragment,
    ip_packet,
    parse_ipv4_header,
)
from packetlab.measure.packets_ip_options import (
    TS_PRESPEC,
    TS_TSANDADDR,
    TS_TSONLY,
    IpTimestamps,
    SourceRoute,
    ip_timestamps,
    loose_source_route,
    ms_of_day,
    received_timestamps,
    record_route_option,
    source_route,
    stamp_option,
    timestamp_option,
    with_ip_options,
)
from packetlab.measure.packets_transport import tcp_segment
from packetlab.measure.ping import ping
from packetlab.measure.probes import LINUX_SYN, TcpFlavor, tcp_probe, traceroute_probe
from packetlab.measure.records_ping import PingReply
from packetlab.measure.traceroute import traceroute

LO = ipaddress.IPv4Address("127.0.0.1")
T0 = 77554695  # ms since midnight UT, as in the captures
NS = T0 * 1_000_000


# -- ping -T: the option as ping's kernel sends it -------------------------------------------


def test_timestamp_options_as_iputils_kernel_sends_them() -> None:
    """tsonly: 9 time slots, the sender's time in the first (pointer 9); tsandaddr: 4
    address+time slots (36 bytes: a 56-byte IP header), the sender's address and time first;
    tsprespec: the hosts' slots, the first stamped only when it is the sender's own."""
    only = timestamp_option(TS_TSONLY, src=LO, sent_ns=NS)
    assert only[:8] == bytes.fromhex("44280900") + T0.to_bytes(4, "big")
    assert only[8:] == bytes(32) and len(only) == 40
    both = timestamp_option(TS_TSANDADDR, src=LO, sent_ns=NS)
    assert both[:12] == bytes.fromhex("44240d01 7f000001 049f6407")  # (the capture's)
    assert both[12:] == bytes(24) and len(both) == 36
    far = timestamp_option(TS_PRESPEC, ["10.1.2.3"], src=LO, sent_ns=NS)
    assert far == bytes.fromhex("440c0503 0a010203 00000000")  # not ours: not stamped
    own = timestamp_option(TS_PRESPEC, ["127.0.0.1", "127.0.0.2"], src=LO, sent_ns=NS)
    assert own[:12] == bytes.fromhex("44140d03 7f000001 049f6407")
    assert timestamp_option(TS_PRESPEC, [], src=LO, sent_ns=NS) == bytes.fromhex("44040503")
    assert timestamp_option(TS_TSONLY)[:4] == bytes.fromhex("44280500")  # (as setsockopt)
    with pytest.raises(ValueError, match="at most 4"):
        timestamp_option(TS_PRESPEC, ["10.0.0.1"] * 5)


def test_a_full_option_counts_unrecorded_hops() -> None:
    option = bytearray(timestamp_option(TS_TSANDADDR, src=LO, sent_ns=NS)[:36])
    for _ in range(3):
        stamp_option(option, LO, NS, lambda a: False)
    assert option[2] == 37 and option[3] == 0x01  # full: the pointer past the end
    stamp_option(option, LO, NS, lambda a: False)
    stamp_option(option, LO, NS, lambda a: False)
    assert option[3] == 0x21  # two hosts could not stamp it
    got = ip_timestamps(bytes(option))
    assert got is not None and got.unrecorded == 2 and len(got.entries) == 4


def test_received_timestamps_stamp_as_the_endpoints_kernel_does_on_arrival() -> None:
    """A capture is taken before the IP layer: the endpoint's own entry is added (its
    address with tsandaddr; tsprespec only in a slot naming it); other options kept."""
    sent = timestamp_option(TS_TSANDADDR, src=LO, sent_ns=NS)
    got = ip_timestamps(received_timestamps(sent, LO, NS + 5_000_000))
    assert got == IpTimestamps(TS_TSANDADDR, (("127.0.0.1", T0), ("127.0.0.1", T0 + 5)))
    rr = record_route_option(LO)
    assert received_timestamps(rr, LO, NS) == rr
    pre = timestamp_option(TS_PRESPEC, ["10.0.0.9", "10.0.0.1"], src="10.0.0.1", sent_ns=NS)
    got = ip_timestamps(received_timestamps(pre, "10.0.0.1", NS))
    assert got is None  # 10.0.0.9 never stamped: the pointer stays at the first slot


def test_ip_timestamps_read_as_iputils_pr_options() -> None:
    assert ip_timestamps(timestamp_option(TS_TSONLY)) is None  # nothing recorded: no TS:
    assert ip_timestamps(bytes([IPOPT_NOP, 0, 0, 0])) is None
    assert ip_timestamps(bytes.fromhex("44ff0501")) is None  # bad length: skipped
    # an address whose time did not fit (pointer mid-slot): printed alone, as ping does
    odd = bytes.fromhex("440c0901 0a000001 00000000")
    assert ip_timestamps(odd) == IpTimestamps(TS_TSANDADDR, (("10.0.0.1", None),))


def test_ts_lines_as_iputils_prints_them() -> None:
    def shown(addr: str) -> str:
        return addr

    only = IpTimestamps(TS_TSONLY, ((None, T0), (None, T0), (None, T0 + 3), (None, T0 + 3)))
    assert timestamp_lines(only, shown) == f"\nTS: \t{T0} absolute\n\t0\n\t3\n\t0\n"
    both = IpTimestamps(TS_TSANDADDR, (("10.0.0.1", T0), ("10.0.0.2", T0 + 1)), unrecorded=2)
    assert timestamp_lines(both, shown) == (
        f"\nTS: \t10.0.0.1\t{T0} absolute\n\t10.0.0.2\t1\nUnrecorded hops: 2\n"
    )
    odd = IpTimestamps(TS_TSONLY, ((None, 0x80000005), (None, 0x80000007), (None, T0)))
    assert timestamp_lines(odd, shown) == (
        f"\nTS: \t5 absolute not-standard\n\t2 not-standard\n\t{T0} absolute\n"
    )
    cut = IpTimestamps(TS_TSANDADDR, (("10.0.0.1", None),))
    assert timestamp_lines(cut, shown) == "\nTS: \t10.0.0.1"


def _linux_echo(target: str, delay: float = 0.001):  # type: ignore[no-untyped-def]
    """An echo reply as Linux's answers one with a timestamp option: stamped as it came
    in and as the reply leaves (`stamp_option`), the option echoed."""

    def answers(probe: bytes) -> list[tuple[float, bytes]]:
        ihl = (probe[0] & 0x0F) * 4
        option = bytearray(probe[20:ihl])
        sent = int.from_bytes(option[4:8], "big") if option[3] & 0x0F == 0 else 0
        here = ipaddress.IPv4Address(target)
        for _ in range(2):  # in, then out (the same millisecond as the sender's, say)
            stamp_option(option, here, sent * 1_000_000, lambda a: a == here)
        echo = bytearray(probe[ihl:])
        reply = icmp_packet(target, EP4, 0, 0, bytes(echo[4:8]), bytes(echo[8:]))
        return [(delay, with_ip_options(reply, bytes(option)))]

    return answers


def test_ping_timestamps_in_the_requests_and_read_from_the_replies() -> None:
    """ping -T tsonly: each request carries the option with its endpoint send time (the
    time ping's kernel stamps), each reply's `ip_timestamps` has the target's two entries
    and the endpoint's arrival time (its kernel's receive stamp)."""
    rig = RawRig([TG4])
    rig.endpoint.answers = _linux_echo(TG4)  # type: ignore[method-assign]
    result = rig.run(ping(rig.session, TG4, count=2, interval=0.2, timestamps="tsonly"))
    assert result.received == 2
    for m, r in zip(rig.endpoint.raw_sends, result.replies, strict=True):
        h = parse_ipv4_header(m.data)
        assert h.header_length == 60 and m.data[20:24] == bytes.fromhex("44280900")
        assert m.data[24:28] == ms_of_day(m.time).to_bytes(4, "big")
        assert r.ip_timestamps is not None and r.probe_send_ns == m.time
        sent, recv = ms_of_day(m.time), ms_of_day(r.reply_recv_ns or 0)
        assert [t for _, t in r.ip_timestamps.entries] == [sent, sent, sent, recv]
        assert r.route is None
    back = PingReply.from_dict(result.replies[0].to_dict())
    assert back == result.replies[0]


def test_ping_tsandaddr_and_prespec_requests() -> None:
    rig = RawRig([TG4])
    rig.endpoint.answers = _linux_echo(TG4)  # type: ignore[method-assign]
    result = rig.run(ping(rig.session, TG4, count=1, timestamps="tsandaddr"))
    (r,) = result.replies
    assert r.ip_timestamps is not None
    assert [a for a, _ in r.ip_timestamps.entries] == [EP4, TG4, TG4, EP4]
    pre = RawRig([TG4])
    pre.endpoint.answers = _linux_echo(TG4)  # type: ignore[method-assign]
    result = pre.run(
        ping(pre.session, TG4, count=1, timestamps="tsprespec", prespec=[TG4, EP4, R14])
    )
    sent = pre.endpoint.raw_sends[0].data
    assert sent[20:24] == bytes.fromhex("441c0503")  # 3 hosts, the first not ours
    (r,) = result.replies
    assert r.ip_timestamps is not None
    # the target stamps its slot (once: the next names the endpoint), the endpoint its own
    assert [a for a, _ in r.ip_timestamps.entries] == [TG4, EP4]
    v6 = RawRig(["fd00:77:3::2"])
    v6.run(ping(v6.session, "fd00:77:3::2", count=1, timestamps="tsonly"))
    assert v6.endpoint.raw_sends[0].data[6] == 58  # ignored over IPv6, as ping


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timestamps": "tsall"}, "invalid timestamp type"),
        ({"timestamps": "tsonly", "prespec": ["10.0.0.1"]}, "tsprespec only"),
        ({"timestamps": "tsonly", "record_route": True}, "only one of -T or -R"),
    ],
)
def test_bad_timestamp_arguments(kwargs: dict[str, object], message: str) -> None:
    rig = RawRig([TG4])
    with pytest.raises(ValueError, match=message):
        rig.run(ping(rig.session, TG4, **kwargs))  # type: ignore[arg-type]


def test_later_fragments_carry_only_copied_options() -> None:
    """As Linux's ip_options_fragment: the timestamp option (not "copied") in the first
    fragment only, NOPs in its place after; a source route in every fragment."""
    ts = timestamp_option(TS_TSONLY, src=LO, sent_ns=NS)
    packet = ip_packet(LO, LO, PROTO_ICMP, bytes(3000), options=ts)
    first, *rest = fragment(packet, 1500)
    assert first[20:60] == ts and rest and all(f[20:60] == bytes([1]) * 40 for f in rest)
    _, lsrr = loose_source_route(["10.0.0.2"], "10.0.0.1")
    packet = ip_packet(LO, LO, PROTO_ICMP, bytes(3000), options=lsrr)
    assert all(f[20:32] == lsrr for f in fragment(packet, 1500))


# -- traceroute -g -------------------------------------------------------------------------


def test_loose_source_route_as_traceroutes_kernel_sends_it() -> None:
    """traceroute -g 127.0.0.2,127.0.0.3 -g 127.0.0.4 127.0.0.1 on the wire: to the
    first gateway, NOP + LSRR(19, 4) with the others and the target twice."""
    first, option = loose_source_route(["127.0.0.2", "127.0.0.3", "127.0.0.4"], "127.0.0.1")
    assert str(first) == "127.0.0.2"
    assert option == bytes.fromhex("01831304 7f000003 7f000004 7f000001 7f000001")
    probe = traceroute_probe(LO, LO, 1, sport=34446, ip_id=0xF6D0)
    routed = with_ip_options(probe.packet, option, first)
    assert routed[:20] == bytes.fromhex("4a000050f6d000000111af377f0000017f000002")
    assert routed[40:] == probe.packet[20:]  # the UDP checksum: the final destination's
    with pytest.raises(ValueError, match=r"1\.\.8 gateways"):
        loose_source_route(["10.0.0.1"] * 9, "10.0.0.2")


def test_traceroute_through_a_gateway_matches_quotes_naming_it() -> None:
    """-g R24: the probes go to R24 with the option; the routers' time exceeded quote a
    probe whose destination is a gateway, not the target: still its hop."""
    rig = RawRig([R14, R24, TG4])
    result = rig.run(traceroute(rig.session, TG4, pace=0.0, gateways=[R24], max_ttl=5))
    assert result.path() == [(1, R14), (2, R24), (3, TG4)]
    assert result.probe_size == 72  # traceroute's "72 byte packets"
    for m in rig.endpoint.raw_sends:
        assert m.data[16:20] == bytes(int(x) for x in R24.split("."))
        assert m.data[20:24] == bytes.fromhex("01830b04")


# -- ping HOST... TARGET: a loose source route --------------------------------------------


def test_loose_source_route_as_pings_kernel_sends_it() -> None:
    """ping 10.77.2.2 10.77.3.2 10.77.4.2 on the wire (iputils hands its kernel the hosts
    but the target): to the first host, NOP + LSRR(11, 4) with the other host and the
    target once; with one host, the target alone."""
    first, option = loose_source_route(
        ["10.77.2.2", "10.77.3.2"], "10.77.4.2", target_listed=False, most=9
    )
    assert str(first) == "10.77.2.2"
    assert option == bytes.fromhex("01830b04 0a4d0302 0a4d0402")
    first, option = loose_source_route(["10.77.2.2"], "10.77.4.2", target_listed=False, most=9)
    assert (str(first), option) == ("10.77.2.2", bytes.fromhex("01830704 0a4d0402"))
    assert (
        len(loose_source_route(["10.0.0.1"] * 9, "10.0.0.2", target_listed=False, most=9)[1]) == 40
    )
    with pytest.raises(ValueError, match=r"1\.\.9 gateways"):
        loose_source_route(["10.0.0.1"] * 10, "10.0.0.2", target_listed=False, most=9)


def test_source_route_read_and_printed_as_iputils() -> None:
    """The replies' options of those captures (the route reversed, the pointer past its
    end, an EOL after): iputils prints words read from the pointer byte on."""
    two = source_route(bytes.fromhex("830b0c0a4d03020a4d020200"))
    assert two == SourceRoute(False, 12, ("10.77.3.2", "10.77.2.2"))
    assert two.as_iputils_prints() == ("12.10.77.3", "2.10.77.2")
    assert source_route_lines(two, str) == "\nLSRR: \t12.10.77.3\n\t2.10.77.2\n"
    one = source_route(bytes.fromhex("8307080a4d020200"))
    assert one is not None and one.as_iputils_prints() == ("8.10.77.2",)
    nine = source_route(bytes([0x83, 39, 40]) + bytes([10, 77, 2, 2]) * 9 + bytes(1))
    assert nine is not None and nine.as_iputils_prints() == ("40.10.77.2",) + ("2.10.77.2",) * 8
    strict = SourceRoute(True, 4, ("0.0.0.0",))
    assert source_route_lines(strict, str) == "\nSSRR: \t4.0.0.0\n"
    assert source_route(record_route_option()) is None and source_route(b"") is None


def _linux_lsrr_echo(back: bytes):  # type: ignore[no-untyped-def]
    """The target's echo reply to a source-routed request, with the reply's option
    `back` (as captured at the sender)."""

    def answers(probe: bytes) -> list[tuple[float, bytes]]:
        echo = probe[(probe[0] & 0x0F) * 4 :]
        reply = icmp_packet(TG4, EP4, 0, 0, bytes(echo[4:8]), bytes(echo[8:]))
        return [(0.001, with_ip_options(reply, back))]

    return answers


def test_ping_through_hosts_as_ping_and_the_replies_route() -> None:
    """ping R14 R24 TG4: each request goes to R14 with the option ping's kernel gives it
    (matched still by the target's reply); each reply's `source_route` is its option."""
    rig = RawRig([TG4])
    back = bytes.fromhex("830b0c") + ipaddress.IPv4Address(R24).packed
    back += ipaddress.IPv4Address(R14).packed + bytes(1)
    rig.endpoint.answers = _linux_lsrr_echo(back)  # type: ignore[method-assign]
    result = rig.run(ping(rig.session, TG4, count=2, interval=0.2, route=[R14, R24]))
    assert result.received == 2
    for m, r in zip(rig.endpoint.raw_sends, result.replies, strict=True):
        h = parse_ipv4_header(m.data)
        assert (h.header_length, str(h.dst)) == (32, R14)
        assert (
            m.data[20:32]
            == bytes.fromhex("01830b04")
            + ipaddress.IPv4Address(R24).packed
            + ipaddress.IPv4Address(TG4).packed
        )
        assert r.source_route == SourceRoute(False, 12, (R24, R14))
        assert r.route is None and r.ip_timestamps is None
    back_again = PingReply.from_dict(result.replies[0].to_dict())
    assert back_again == result.replies[0]
    assert "source_route" not in PingReply(1, TG4, 1.0).to_dict()


def test_ping_through_hosts_in_fragments_each_routed() -> None:
    """A long request in fragments: every fragment to the first host, with the option."""
    rig = RawRig([TG4])
    rig.endpoint.answers = _linux_lsrr_echo(bytes.fromhex("8307080a4d020200"))  # type: ignore[method-assign]
    rig.run(ping(rig.session, TG4, count=1, size=3000, fragment_mtu=1500, route=[R24]))
    sends = rig.endpoint.raw_sends
    assert len(sends) == 3
    assert all(str(parse_ipv4_header(m.data).dst) == R24 for m in sends)
    assert all(
        m.data[20:28] == bytes.fromhex("01830704") + ipaddress.IPv4Address(TG4).packed
        for m in sends
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"record_route": True}, "not with -R or -T"),
        ({"timestamps": "tsonly"}, "not with -R or -T"),
        ({"route": ["10.0.0.1"] * 10}, r"1\.\.9 gateways"),
    ],
)
def test_bad_source_route_arguments(kwargs: dict[str, object], message: str) -> None:
    rig = RawRig([TG4])
    kwargs.setdefault("route", [R24])
    with pytest.raises(ValueError, match=message):
        rig.run(ping(rig.session, TG4, **kwargs))  # type: ignore[arg-type]
    v6 = RawRig(["fd00:77:3::2"])
    with pytest.raises(ValueError, match="IPv4 only"):
        v6.run(ping(v6.session, "fd00:77:3::2", route=[R24]))


# -- traceroute -T -O --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flavor", "wire"),
    [
        (LINUX_SYN, "020405b4 0402080a ........ 00000000 01030302"),  # traceroute -T
        (TcpFlavor(TCP_SYN), "020405b4"),  # -O syn
        (TcpFlavor(TCP_SYN, mss=1000, sack=True), "020403e8 01010402"),  # -O mss=1000,sack
        (TcpFlavor(TCP_SYN, timestamps=True), "020405b4 0101080a ........ 00000000"),
        (TcpFlavor(TCP_SYN, window_scaling=True), "020405b4 01030302"),
        (TcpFlavor(TCP_ACK, timestamps=True), "0101080a ........ ........"),  # ecr random
        (TcpFlavor(TCP_FIN | TCP_PSH), ""),
    ],
)
def test_tcp_options_as_traceroutes_tcp_module(flavor: TcpFlavor, wire: str) -> None:
    got = flavor.options().hex()
    want = wire.replace(" ", "")
    assert len(got) == len(want) and all(w in (".", g) for g, w in zip(got, want, strict=True))
    assert flavor.length == 20 + len(want) // 2


def test_tcp_probe_fields() -> None:
    p = tcp_probe(EP4, TG4, sport=5, dport=81, seq=7, flavor=TcpFlavor(0xC2, mss=65495))
    sport, dport, seq, ack, off, flags, window = struct.unpack_from("!HHIIBBH", p.packet, 20)
    assert (sport, dport, seq, ack, off >> 4, flags, window) == (5, 81, 7, 0, 6, 0xC2, 65372)
    a = tcp_probe(EP4, TG4, sport=5, dport=81, seq=7, flavor=TcpFlavor(TCP_ACK | TCP_PSH))
    assert struct.unpack_from("!II", a.packet, 24) == (7, 7)  # (the target's RST: seq 7)
    assert [TcpFlavor(f).reply_shift for f in (TCP_SYN, TCP_FIN, TCP_PSH, 0x03)] == [0, 0, 1, -1]


@pytest.mark.parametrize("flags", [TCP_PSH, TCP_FIN, TCP_SYN | TCP_FIN, TCP_ACK | TCP_PSH, 0])
def test_traceroute_matches_the_targets_answer_to_any_flags(flags: int) -> None:
    """The target answers a segment without ACK by RST-ACK acknowledging its sequence
    number plus its SYN and FIN (RFC 9293 3.10.7.1), one with ACK by a RST numbered
    with its ack: each matched to its probe."""
    rig = RawRig([R14, TG4])
    answers = rig.endpoint.answers

    def target(probe: bytes) -> list[tuple[float, bytes]]:
        if probe[8] < 2:
            return answers(probe)
        sport, dport, seq, ack, _, got = struct.unpack_from("!HHIIBB", probe, 20)
        if got & TCP_ACK:
            seg = tcp_segment(TG4, EP4, dport, sport, seq=ack, flags=TCP_RST)
        else:
            n = seq + bool(got & TCP_SYN) + bool(got & TCP_FIN)
            seg = tcp_segment(TG4, EP4, dport, sport, seq=0, ack=n, flags=TCP_RST | TCP_ACK)
        return [(0.002, ip_packet(TG4, EP4, PROTO_TCP, seg, ttl=63))]

    rig.endpoint.answers = target  # type: ignore[method-assign]
    result = rig.run(
        traceroute(rig.session, TG4, method="tcp", pace=0.0, queries=2, tcp=TcpFlavor(flags))
    )
    assert result.path() == [(1, R14), (1, R14), (2, TG4), (2, TG4)]
    assert result.probe_size == 20 + TcpFlavor(flags).length


@pytest.mark.parametrize("kind", ["tsonly", "tsandaddr"])
def test_the_senders_stamp_is_when_the_request_left_as_pings_kernel_writes_it(
    kind: str,
) -> None:
    """ping -T: ping's kernel stamps a request as it sends it, so on loopback iputils'
    first difference is 0-1 ms. The controller writes the time the request is due at;
    an endpoint that sends it 5 ms late (a loaded machine: 0.3-9 ms measured, session 29)
    made ours `5`. The entry is now the ntag's, the time it left: 0, as ping's."""
    rig = RawRig([TG4])
    endpoint = rig.endpoint
    late_ns = 5_000_000

    def raw_send(msg: Any) -> None:
        endpoint.result()
        when = max(msg.time, endpoint.now()) + late_ns
        endpoint.clock.callLater((when - endpoint.now()) / 1e9, endpoint.transmit, msg, when)

    def answers(probe: bytes) -> list[tuple[float, bytes]]:  # stamped as it arrives
        ihl = (probe[0] & 0x0F) * 4
        option = bytearray(probe[20:ihl])
        here = ipaddress.IPv4Address(TG4)
        for _ in range(2):
            stamp_option(option, here, endpoint.now(), lambda a: a == here)
        echo = probe[ihl:]
        reply = icmp_packet(TG4, EP4, 0, 0, bytes(echo[4:8]), bytes(echo[8:]))
        return [(0.0001, with_ip_options(reply, bytes(option)))]

    endpoint.raw_send = raw_send  # type: ignore[method-assign]
    endpoint.answers = answers  # type: ignore[method-assign]
    result = rig.run(ping(rig.session, TG4, count=3, interval=0.2, timestamps=kind))
    assert result.received == 3
    for m, r in zip(rig.endpoint.raw_sends, result.replies, strict=True):
        assert r.ip_timestamps is not None and r.probe_send_ns is not None
        written = int.from_bytes(m.data[24:28] if kind == "tsonly" else m.data[28:32], "big")
        assert r.probe_send_ns - late_ns == m.time and written == ms_of_day(m.time)
        first, second = r.ip_timestamps.entries[:2]
        assert first == (None if kind == "tsonly" else EP4, ms_of_day(r.probe_send_ns))
        assert second[1] is not None and 0 <= second[1] - (first[1] or 0) <= 1
