"""traceroute -D (DCCP), -UL (UDP-Lite) and -A (AS path lookups), as Butskoy's 2.1.

The expected probe bytes were captured with tcpdump from Butskoy traceroute 2.1.2 on
loopback (`traceroute -UL [-O coverage=N] 127.0.0.1`; `traceroute -D 127.0.0.1` with its
DCCP port-holding socket made a UDP one, the kernel having no DCCP), so these tests pin
ours to its bytes; `tests/integration/test_traceroute_more_like_native.py` compares them
live.
"""

from __future__ import annotations

import argparse
import struct

import pytest
from test_traceroute_fakes import R14, R16, R24, R26, TG4, TG6, RawRig, icmp_packet
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from packetlab.cli.run import RunError, build_parser
from packetlab.cli.run_traceroute_checks import default_port, module_options
from packetlab.controller.filters import tcpdump_filter
from packetlab.measure.aspath import (
    MAX_ANSWER,
    AsLookupError,
    AsPaths,
    WhoisQuery,
    as_path_of,
    resolve_server,
    whois_server,
)
from packetlab.measure.packets import (
    PROTO_DCCP,
    PROTO_UDPLITE,
    inet_checksum,
    ip_packet,
    pseudo_header,
)
from packetlab.measure.packets_transport import dccp_request, udp_segment
from packetlab.measure.probes import (
    TRACEROUTE_PAYLOAD,
    dccp_probe,
    probe_key,
    udp_probe,
)
from packetlab.measure.records_traceroute import Hop, traceroute_line
from packetlab.measure.replies import ParseError, ReplyKind, parse_reply
from packetlab.measure.traceroute import traceroute
from packetlab.measure.traceroute_probes import probe_length

LO = "127.0.0.1"


# -- probe bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sport", "coverage", "head"),
    [  # (source port, -O coverage, the 8 header bytes traceroute -UL sent)
        (0xCA77, 8, "ca77003500083698"),  # the default: the header only
        (0x9848, 12, "98480035000ce63e"),
        (0xC7A2, 0, "c7a200350008396d"),  # below 8: 8
        (0x802C, 5, "802c0035000880e3"),
        (0x80AE, 39, "80ae003500278b9c"),
        (0xE066, 41, "e066003500282b84"),  # past the end: the whole datagram
        (0x939B, 65535, "939b00350028784f"),
    ],
)
def test_udplite_segment_is_traceroutes(sport: int, coverage: int, head: str) -> None:
    seg = udp_segment(LO, LO, sport, 53, TRACEROUTE_PAYLOAD, coverage=coverage)
    assert seg[:8].hex() == head and seg[8:] == TRACEROUTE_PAYLOAD


def test_udplite_checksum_v6_covers_what_the_field_says() -> None:
    src, dst = "fd00::1", "fd00::2"
    seg = udp_segment(src, dst, 40000, 53, TRACEROUTE_PAYLOAD, coverage=12)
    import ipaddress

    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    assert struct.unpack_from("!H", seg, 4)[0] == 12
    assert inet_checksum(pseudo_header(s, d, PROTO_UDPLITE, len(seg)) + seg[:12]) == 0
    with pytest.raises(ValueError, match="coverage"):
        udp_segment(src, dst, 1, 2, coverage=-1)


def test_dccp_request_is_traceroutes() -> None:
    # two Requests of `traceroute -D 127.0.0.1` (source port, random sequence number)
    assert (
        dccp_request(LO, LO, 0xBB14, 33434, 0xEDC629C5).hex()
        == "bb14829a0500c7bb01000000edc629c570696e67"
    )
    assert (
        dccp_request(LO, LO, 0xAED6, 33434, 0x7C1A1C2D).hex()
        == "aed6829a0500533e010000007c1a1c2d70696e67"
    )


def test_dccp_request_v6_checksum_and_service() -> None:
    import ipaddress

    seg = dccp_request("fd00::1", "fd00::2", 1, 2, 3, service=7)
    pseudo = pseudo_header(
        ipaddress.ip_address("fd00::1"), ipaddress.ip_address("fd00::2"), PROTO_DCCP, 20
    )
    assert len(seg) == 20 and inet_checksum(pseudo + seg) == 0
    assert seg[16:] == struct.pack("!I", 7)
    with pytest.raises(ValueError, match="service"):
        dccp_request("fd00::1", "fd00::2", 1, 2, 3, service=1 << 32)


def test_probes_and_their_quoted_keys() -> None:
    lite = udp_probe(LO, "10.0.0.9", sport=40000, dport=53, ttl=3, coverage=8)
    assert lite.proto == PROTO_UDPLITE and lite.packet[9] == PROTO_UDPLITE
    assert probe_key(lite.packet) == lite.key
    d = dccp_probe(LO, "10.0.0.9", sport=40001, dport=33434, ttl=3, seq=5)
    assert d.proto == PROTO_DCCP and len(d) == 40 and probe_key(d.packet) == d.key
    d6 = dccp_probe("fd00::1", "fd00::9", sport=40001, dport=33434, ttl=3)
    assert len(d6) == 60 and probe_key(d6.packet) == d6.key
    assert probe_length("dccp", 4, 100) == 40 and probe_length("dccp", 6, None) == 60
    assert probe_length("udplite", 4, None) == 60 and probe_length("udplite", 4, 100) == 100


def _reset(src: str, dst: str, sport: int, dport: int) -> bytes:
    body = struct.pack("!HHBBHBBHI", sport, dport, 7, 0, 0, 7 << 1 | 1, 0, 0, 1) + bytes(12)
    return ip_packet(src, dst, PROTO_DCCP, body, ttl=60)


def test_the_targets_dccp_reset_answers_the_probe() -> None:
    probe = dccp_probe(LO, "10.0.0.9", sport=40001, dport=33434, ttl=3)
    reply = parse_reply(_reset("10.0.0.9", LO, 33434, 40001))
    assert reply.kind is ReplyKind.DCCP and reply.key == probe.key and reply.from_destination
    response = bytearray(_reset("10.0.0.9", LO, 33434, 40001))
    response[20 + 8] = 1 << 1 | 1  # a Response (an open port), read the same way
    assert parse_reply(bytes(response)).key == probe.key
    with pytest.raises(ParseError, match="DCCP header truncated"):
        parse_reply(ip_packet("10.0.0.9", LO, PROTO_DCCP, b"\0" * 6))
    quoted = parse_reply(icmp_packet("10.0.0.1", LO, 11, 0, bytes(4), probe.packet))
    assert quoted.key == probe.key and not quoted.from_destination


# -- traces over the scripted endpoint --------------------------------------------------------


def _ports(packet: bytes) -> tuple[int, int]:
    hdr = 40 if packet[0] >> 4 == 6 else 20
    return struct.unpack_from("!HH", packet, hdr)


@pytest.mark.parametrize(("dst", "path"), [(TG4, [R14, R24, TG4]), (TG6, [R16, R26, TG6])])
def test_dccp_trace_ends_at_the_targets_reset(dst: str, path: list[str]) -> None:
    rig = RawRig(path)
    result = rig.run(
        traceroute(rig.session, dst, pace=0.0, queries=2, method="dccp", base_port=33434,
                   sport=40000, service=7)
    )  # fmt: skip
    sent = [m.data for m in rig.endpoint.raw_sends]
    assert [_ports(p) for p in sent] == [(40000 + i, 33434) for i in range(len(sent))]
    hdr = 40 if dst == TG6 else 20
    assert all(p[hdr + 16 : hdr + 20] == struct.pack("!I", 7) for p in sent)
    assert [h.addr for h in result.hops] == [path[0], path[0], path[1], path[1], dst, dst]
    assert result.reached and result.hops[-1].reply_type == "dccp"
    assert result.probe_size == (60 if dst == TG6 else 40)
    if dst == TG6:  # (session 27: no echo requests nor replies)
        icmp, ip = "icmp6 and (ip6[6] = 44 or (icmp6[0] != 128 and icmp6[0] != 129))", "ip6"
    else:
        icmp, ip = "icmp and (ip[6:2] & 0x1fff != 0 or (icmp[0] != 0 and icmp[0] != 8))", "ip"
    want = tcpdump_filter(f"({icmp}) or ({ip} proto 33 and src host {dst})")
    assert rig.endpoint.ncaps[0].filter == want


def test_dccp_target_without_dccp_is_protocol_unreachable() -> None:
    rig = RawRig([R14, TG4])
    rig.endpoint.dccp_reset = False
    result = rig.run(traceroute(rig.session, TG4, pace=0.0, method="dccp", max_ttl=5))
    assert [h.addr for h in result.hops] == [R14, TG4]
    assert result.hops[-1].reply_type == "dest-unreachable" and result.hops[-1].code == 2
    assert traceroute_line(2, result.hops[-1:]).endswith("!P")


def test_dccp_v6_target_without_dccp_is_a_parameter_problem_as_traceroute_shows() -> None:
    """An IPv6 host without DCCP answers "unrecognized next header" (ICMPv6 4/1): the
    trace ends there, `!<4-1>` as traceroute prints an error it has no name for."""
    rig = RawRig([R16, TG6])
    rig.endpoint.dccp_reset = False
    result = rig.run(traceroute(rig.session, TG6, pace=0.0, method="dccp", max_ttl=5))
    assert [h.addr for h in result.hops] == [R16, TG6]
    assert traceroute_line(2, result.hops[-1:]) == f" 2  {TG6}  2.000 ms !<4-1>"


def test_other_errors_are_type_and_code_and_final() -> None:
    from packetlab.measure.records_traceroute import hop_annotation

    def hop(kind: ReplyKind, code: int, addr: str = "10.0.0.1") -> Hop:
        return Hop(ttl=1, addr=addr, rtt_us=1.0, reply_type=kind, code=code)

    assert hop_annotation(hop(ReplyKind.PARAM_PROBLEM, 0)) == "!<12-0>"
    assert hop_annotation(hop(ReplyKind.PARAM_PROBLEM, 1, "fd00::1")) == "!<4-1>"
    assert hop_annotation(hop(ReplyKind.TIME_EXCEEDED, 1)) == "!<11-1>"
    assert hop_annotation(hop(ReplyKind.TIME_EXCEEDED, 0)) == ""
    rig = RawRig([R14, R24, TG4])
    rig.endpoint.extra = lambda probe: []
    original = rig.endpoint.answers

    def param_problem_at_r1(probe: bytes) -> list[tuple[float, bytes]]:
        if probe[8] == 1:  # TTL 1: r1 finds a problem with it
            return [(0.001, icmp_packet(R14, "10.77.1.1", 12, 0, bytes(4), probe))]
        return original(probe)

    rig.endpoint.answers = param_problem_at_r1  # type: ignore[method-assign]
    result = rig.run(traceroute(rig.session, TG4, pace=0.0, max_ttl=5))
    assert [h.addr for h in result.hops] == [R14] and not result.reached


def test_native_output_with_as_paths_and_unnamed_errors_parses() -> None:
    from packetlab.measure.native import parse_traceroute

    text = (
        "traceroute to fd00::2 (fd00::2), 30 hops max, 60 byte packets\n"
        " 1  fd00::1 [AS64500]  0.010 ms  0.004 ms  0.003 ms\n"
        " 2  fd00::2 [*]  0.020 ms !<4-1>  0.010 ms !<4-1>  0.010 ms !<4-1>\n"
    )
    result = parse_traceroute(text)
    assert [h.addr for h in result.hops] == ["fd00::1"] * 3 + ["fd00::2"] * 3
    assert {(h.reply_type, h.code) for h in result.hops[3:]} == {(ReplyKind.PARAM_PROBLEM, 1)}
    assert hop_line_again(result) == text.splitlines()[2].replace(" [*]", "")


def hop_line_again(result: object) -> str:
    from packetlab.measure.records_traceroute import TracerouteResult

    assert isinstance(result, TracerouteResult)
    hops = [h for h in result.hops if h.ttl == 2]
    return traceroute_line(2, hops)


def test_udplite_trace_one_port_a_source_port_each_and_the_coverage() -> None:
    rig = RawRig([R14, R24, TG4])
    result = rig.run(
        traceroute(rig.session, TG4, pace=0.0, queries=2, method="udplite", base_port=53,
                   sport=40000, coverage=12)
    )  # fmt: skip
    sent = [m.data for m in rig.endpoint.raw_sends]
    assert all(p[9] == PROTO_UDPLITE for p in sent)
    assert [_ports(p) for p in sent] == [(40000 + i, 53) for i in range(len(sent))]
    assert {struct.unpack_from("!H", p, 24)[0] for p in sent} == {12}
    assert [h.addr for h in result.hops] == [R14, R14, R24, R24, TG4, TG4]
    assert result.reached and result.probe_size == 60


def test_bad_coverage_and_service() -> None:
    rig = RawRig([TG4])
    with pytest.raises(ValueError, match="coverage"):
        rig.run(traceroute(rig.session, TG4, method="udplite", coverage=1 << 16))
    with pytest.raises(ValueError, match="service"):
        rig.run(traceroute(rig.session, TG4, method="dccp", service=-1))


# -- command line -----------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["traceroute", *argv])


def test_options_select_the_methods_as_traceroutes() -> None:
    assert _args("-D", "x").protocol == "dccp" and _args("--dccp", "x").protocol == "dccp"
    assert _args("-UL", "x").protocol == "udplite" and _args("--UL", "x").protocol == "udplite"
    assert _args("-U", "x").protocol == "udp-fixed"
    assert _args("-A", "x").as_lookups and _args("--as-path-lookups", "x").as_lookups
    assert (default_port("dccp"), default_port("udplite")) == (33434, 53)


@pytest.mark.parametrize(
    ("argv", "coverage", "service"),
    [
        (["-UL"], 8, None),
        (["-UL", "-O", "coverage=12"], 12, None),
        (["-UL", "-O", "cov=0x10"], 16, None),  # (CLIF's abbreviations and strtoul)
        (["-UL", "-O", "coverage=70000"], 65535, None),
        (["-D", "-O", "service=7"], 8, 7),
        (["-D"], 8, None),
    ],
)
def test_module_options(argv: list[str], coverage: int, service: int | None) -> None:
    args = _args(*argv, "x")
    module_options(args)
    assert (args.coverage, args.service) == (coverage, service)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-UL", "-O", "coverage=abc"], "Cannot handle `coverage' keyword with arg `abc'"),
        (["-D", "-O", "service=-1"], "Cannot handle `service' keyword with arg `-1'"),
        (["-D", "-O", "coverage=1"], "no such option of traceroute's dccp module"),
        (["-UL", "-O", "coverage"], "requires an argument"),
    ],
)
def test_bad_module_options(argv: list[str], message: str) -> None:
    args = _args(*argv, "x")
    with pytest.raises(RunError, match=message):
        module_options(args)


# -- AS paths ---------------------------------------------------------------------------------

RADB = """route:      10.0.0.0/8
descr:      a
origin:     AS64500
source:     RADB

route:      10.1.0.0/16
origin:     AS64501
route:      10.1.0.0/16
origin:     AS64502 # comment
route:      10.1.0.0/16
origin:     AS64501
"""


@pytest.mark.parametrize(
    ("answer", "path"),
    [
        (RADB, "AS64501/AS64502"),  # the longest prefix wins; its origins, each once
        ("", "*"),
        ("%  No entries found for the selected source(s).\n", "*"),
        ("origin: AS7\n", "AS7"),  # an origin before any route: prefix 0
        ("route6: 2001:db8::/32\norigin: AS9\nroute: 10.0.0.0/8\norigin: AS8\n", "AS9"),
        ("route: 1.0.0.0/8\norigin: AS12\nroute: 1.0.0.0/8\norigin: AS1\n", "AS12/AS1"),
        ("route: 1.0.0.0/8\norigin: AS1\nroute: 1.0.0.0/8\norigin: AS12\n", "AS1/AS12"),
        ("route: 1.0.0.0\norigin: AS3\n", "AS3"),  # no prefix length: 0
        ("route: 1.0.0.0/8\norigin: AS" + "9" * 600 + "\n", "AS" + "9" * 509),  # ra_buf
    ],
)
def test_as_path_of(answer: str, path: str) -> None:
    assert as_path_of(answer) == path


def test_whois_server_from_the_environment() -> None:
    assert whois_server({}) == ("whois.radb.net", "nicname")
    assert whois_server({"RA_SERVER": "127.0.0.1", "RA_SERVICE": "4343"}) == ("127.0.0.1", "4343")
    assert resolve_server("127.0.0.1", "4343") == ("127.0.0.1", 4343)
    with pytest.raises(AsLookupError, match=r"127\.0\.0\.1/no-such-service: "):
        resolve_server("127.0.0.1", "no-such-service")


def test_whois_query_sends_the_address_and_reads_to_the_end() -> None:
    q = WhoisQuery("10.1.2.3")
    t = StringTransport()
    q.makeConnection(t)
    assert t.value() == b"10.1.2.3\r\n"
    q.dataReceived(RADB[:50].encode())
    q.dataReceived(RADB[50:].encode())
    assert not q.done.called
    q.connectionLost(Failure(ConnectionError()))
    assert q.done.result == "AS64501/AS64502"


def test_whois_query_is_bounded() -> None:
    q = WhoisQuery("10.1.2.3")
    t = StringTransport()
    q.makeConnection(t)
    q.dataReceived(b"route: 10.0.0.0/8\norigin: AS1\n" + b"x" * MAX_ANSWER)
    assert t.disconnecting and q.size >= MAX_ANSWER
    q.dataReceived(b"y" * 1000)  # (more before the close: not kept)
    assert sum(map(len, q.chunks)) == MAX_ANSWER
    q.connectionLost()
    assert q.done.result == "AS1"


def _answer(reactor: MemoryReactorClock, i: int, text: str) -> None:
    factory = reactor.tcpClients[i][2]
    proto = factory.buildProtocol(None)
    assert proto is not None
    proto.makeConnection(StringTransport())
    proto.dataReceived(text.encode())
    proto.connectionLost(Failure(ConnectionError()))


def test_as_paths_each_address_once_from_this_host() -> None:
    reactor = MemoryReactorClock()
    paths = AsPaths(reactor, "127.0.0.1", 4343, timeout=5.0)
    a, b = paths.lookup("10.1.2.3"), paths.lookup("10.1.2.3")
    assert [(h, p) for h, p, *_ in reactor.tcpClients] == [("127.0.0.1", 4343)]
    _answer(reactor, 0, RADB)
    assert a.result == b.result == "AS64501/AS64502" == paths.paths["10.1.2.3"]
    assert paths.lookup("10.1.2.3").result == "AS64501/AS64502"
    assert len(reactor.tcpClients) == 1  # cached


def test_as_paths_timeout_and_refusal_are_bang_bang() -> None:
    reactor = MemoryReactorClock()
    paths = AsPaths(reactor, "127.0.0.1", 4343, timeout=5.0)
    slow = paths.lookup("10.0.0.1")
    refused = paths.lookup("10.0.0.2")
    connector = reactor.connectors[1]
    reactor.tcpClients[1][2].clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
    assert refused.result == "!!"
    reactor.advance(4.9)
    assert not slow.called
    reactor.advance(0.2)
    assert slow.result == "!!"
    assert not reactor.getDelayedCalls()


def test_as_paths_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import packetlab.measure.aspath as aspath

    monkeypatch.setattr(aspath, "MAX_CACHED", 2)
    reactor = MemoryReactorClock()
    paths = AsPaths(reactor, "127.0.0.1", 4343)
    for i in range(3):
        paths.lookup(f"10.0.0.{i}")
        _answer(reactor, i, f"origin: AS{i}\n")
    assert list(paths.paths) == ["10.0.0.1", "10.0.0.2"]


def test_as_paths_at_most_so_many_queries_at_once() -> None:
    from packetlab.measure.aspath import MAX_CONCURRENT

    reactor = MemoryReactorClock()
    paths = AsPaths(reactor, "127.0.0.1", 4343)
    got = [paths.lookup(f"10.0.1.{i}") for i in range(MAX_CONCURRENT + 4)]
    assert len(reactor.tcpClients) == MAX_CONCURRENT
    for i in range(4):
        _answer(reactor, i, f"origin: AS{i}\n")
    assert len(reactor.tcpClients) == MAX_CONCURRENT + 4
    reactor.advance(10)  # the rest time out
    assert [d.result for d in got[:4]] == ["AS0", "AS1", "AS2", "AS3"]
    assert {d.result for d in got[4:]} == {"!!"}


def test_line_shows_the_as_path_after_the_address() -> None:
    hops = [
        Hop(ttl=2, addr="10.1.2.3", rtt_us=12.0),
        Hop(ttl=2, addr="10.1.2.3", rtt_us=5.0),
        Hop(ttl=2, addr="10.9.9.9", rtt_us=7.0),
    ]
    paths = {"10.1.2.3": "AS64501/AS64502"}
    assert traceroute_line(2, hops, as_paths=paths) == (
        " 2  10.1.2.3 [AS64501/AS64502]  0.012 ms  0.005 ms 10.9.9.9 [*]  0.007 ms"
    )
    names = {"10.1.2.3": "r1.test", "10.9.9.9": None}
    assert traceroute_line(2, hops[:1], names, as_paths=paths) == (
        " 2  r1.test (10.1.2.3) [AS64501/AS64502]  0.012 ms"
    )


def test_as_lookups_not_with_mda_nor_warts_with_the_new_methods() -> None:
    from twisted.internet.testing import MemoryReactor

    from packetlab.cli.run_traceroute import measure

    for argv, message in (
        (["--mda", "-A", "127.0.0.1"], "not with -A"),
        (["-D", "--warts", "/dev/null", "127.0.0.1"], "scamper has no dccp"),
        (["-UL", "--warts", "/dev/null", "127.0.0.1"], "scamper has no udplite"),
    ):
        d = measure(MemoryReactor(), _args(*argv))
        failure = None
        try:
            d.send(None)
        except RunError as e:
            failure = str(e)
        assert failure is not None and message in failure, argv
