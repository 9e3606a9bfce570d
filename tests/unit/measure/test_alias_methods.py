"""Probe methods of alias resolution (ICMP echo, TCP ACK, UDP) over the scripted raw
endpoint, with routers that answer only some probes, or number some replies from a
counter and others not (IP-ID 0): MIDAR's estimation stage tries every method and keeps
per address the one whose counter is usable, so such routers get a velocity and their
aliases are found. (ICMP echo was the only method before: those addresses had none.)"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any

import pytest
from test_traceroute_fakes import CONFIG, RawRig
from twisted.internet.defer import Deferred

from packetlab.controller.filters import tcpdump_filter
from packetlab.measure.alias import METHODS, IdSample, best_methods, collect_ip_ids, parse_methods
from packetlab.measure.capture import MeasureError
from packetlab.measure.packets import (
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    TCP_RST,
    inet_checksum,
    ip_packet,
)
from packetlab.measure.packets_transport import tcp_segment

TCP_A, TCP_B = "10.77.3.10", "10.77.3.11"  # one router, answers TCP ACKs only
UDP_A, UDP_B = "10.77.3.20", "10.77.3.21"  # another, answers UDP only
ICMP_C = "10.77.3.30"  # answers echo only, its own counter
ZERO_D = "10.77.3.40"  # answers everything; echo replies carry IP-ID 0, the rest count
ALL = [TCP_A, TCP_B, UDP_A, UDP_B, ICMP_C, ZERO_D]


@dataclass
class Router:
    answers: set[str]
    value: int
    rate: float = 300.0  # IDs per second of other traffic
    zero_for: set[str] = field(default_factory=set)  # methods whose replies carry ID 0
    last: float = 0.0
    errors_from: str | None = None  # the port unreachable's source, when not the target

    def next_id(self, now: float, method: str) -> int:
        if method in self.zero_for:
            return 0
        self.value = (self.value + 1 + int(self.rate * (now - self.last))) & 0xFFFF
        self.last = now
        return self.value


def routers() -> dict[str, Router]:
    tcp, udp = Router({"tcp-ack"}, 65400), Router({"udp"}, 20000)
    icmp = Router({"icmp-echo"}, 40000)
    zero = Router(set(METHODS), 5000, zero_for={"icmp-echo"})
    return {TCP_A: tcp, TCP_B: tcp, UDP_A: udp, UDP_B: udp, ICMP_C: icmp, ZERO_D: zero}


def rig_with(table: dict[str, Router]) -> RawRig:
    rig = RawRig(["10.77.3.1"])
    clock = rig.clock

    def answer(probe: bytes) -> list[tuple[float, bytes]]:
        src, dst = (str(ipaddress.ip_address(probe[a : a + 4])) for a in (12, 16))
        router = table.get(dst)
        proto = probe[9]
        method = {PROTO_ICMP: "icmp-echo", PROTO_TCP: "tcp-ack", PROTO_UDP: "udp"}[proto]
        if router is None or method not in router.answers:
            return []
        ident = router.next_id(clock.seconds(), method)
        if proto == PROTO_ICMP:
            msg = bytes([0, 0, 0, 0]) + probe[24:]
            proto_out = PROTO_ICMP
        elif proto == PROTO_TCP:
            sport, dport, _seq, ack = struct.unpack_from("!HHII", probe, 20)
            msg = tcp_segment(dst, src, dport, sport, seq=ack, flags=TCP_RST)
            proto_out = PROTO_TCP
        else:  # port unreachable quoting the datagram
            msg = bytes([3, 3, 0, 0, 0, 0, 0, 0]) + probe[:28]
            proto_out = PROTO_ICMP
        if proto_out == PROTO_ICMP:
            msg = msg[:2] + struct.pack("!H", inet_checksum(msg)) + msg[4:]
        origin = router.errors_from if proto == PROTO_UDP and router.errors_from else dst
        return [(0.001, ip_packet(origin, src, proto_out, msg, ttl=63, ident=ident))]

    rig.endpoint.answers = answer  # type: ignore[method-assign]
    return rig


def test_midar_keeps_per_address_the_method_with_a_usable_counter() -> None:
    from packetlab.measure.midar import midar

    rig = rig_with(routers())
    got = rig.run(midar([rig.session], ALL, spacing=0.002, wait=0.5))
    # every address now has a velocity, by the method that answers with a counter
    assert all(got.velocities[a] is not None for a in ALL), got.velocities
    assert got.methods == {TCP_A: "tcp-ack", TCP_B: "tcp-ack", UDP_A: "udp", UDP_B: "udp",
                           ICMP_C: "icmp-echo", ZERO_D: "tcp-ack"}  # fmt: skip
    assert got.by_method[ZERO_D]["icmp-echo"] is None  # answered, but IP-ID 0 every time
    assert got.by_method[TCP_A] == {**got.by_method[TCP_A], "icmp-echo": None, "udp": None}
    assert got.pairs == [(TCP_A, TCP_B), (UDP_A, UDP_B)]
    # the later stages probed each address with its method only
    later = [s for st in ("discovery", "elimination", "corroboration")
             for s in got.by_stage.get(st, [])]  # fmt: skip
    assert later and all(s.method == got.methods[s.addr] for s in later)
    est = got.by_stage["estimation"]
    assert {(s.addr, s.method) for s in est} >= {(TCP_A, "tcp-ack"), (UDP_A, "udp")}


def test_icmp_echo_alone_leaves_tcp_and_udp_only_routers_without_a_counter() -> None:
    from packetlab.measure.midar import midar

    rig = rig_with(routers())
    got = rig.run(midar([rig.session], ALL, spacing=0.002, wait=0.5, methods=["icmp-echo"]))
    assert [a for a in ALL if got.velocities[a] is not None] == [ICMP_C]
    assert got.pairs == []


@pytest.mark.parametrize("method", ["tcp-ack", "udp"])
def test_one_method_probes_only_with_it(method: str) -> None:
    rig = rig_with(routers())
    got = rig.run(collect_ip_ids([rig.session], ALL, rounds=4, wait=0.5, method=method))
    answering = {a for a, r in routers().items() if method in r.answers}
    assert {s.addr for s in got} == answering and all(s.method == method for s in got)
    assert len(got) == 4 * len(answering)
    protos = {m.data[9] for m in rig.endpoint.raw_sends}
    assert protos == {PROTO_TCP if method == "tcp-ack" else PROTO_UDP}
    assert len(rig.endpoint.ncaps) == 1  # one capture: ICMP, and for tcp-ack the RSTs too
    assert got[0].to_dict()["method"] == method


def test_best_method_prefers_more_samples_then_the_fixed_order() -> None:
    def series(addr: str, method: str, n: int) -> list[IdSample]:
        return [IdSample(addr, "ep", i * 10**7, 100 + 5 * i, 0, method) for i in range(n)]

    samples = [*series("a", "udp", 10), *series("a", "tcp-ack", 6), *series("b", "udp", 5),
               *series("b", "icmp-echo", 5), *series("c", "icmp-echo", 2)]  # fmt: skip
    best = best_methods(samples, ["a", "b", "c"], METHODS)
    # c: no usable counter (2 samples), reported by the method that answered
    assert {a: m for a, (m, _) in best.items()} == {"a": "udp", "b": "icmp-echo", "c": "icmp-echo"}
    assert best["c"][1]["icmp-echo"] is None
    assert best_methods([], ["d"], METHODS)["d"] == (None, dict.fromkeys(METHODS))


def test_method_names() -> None:
    assert parse_methods("auto") == METHODS
    assert parse_methods("udp,tcp-ack,udp") == ("udp", "tcp-ack")
    with pytest.raises(ValueError, match="unknown probe method 'tcp'; valid: auto, icmp-echo, "
                       "tcp-ack, udp"):  # fmt: skip
        parse_methods("tcp")


def test_an_endpoint_without_raw_sockets_is_a_clear_error() -> None:
    rig = RawRig(["10.77.3.1"], CONFIG.replace("raw,", ""))
    d = collect_ip_ids([rig.session], ALL[:2], rounds=3, method="tcp-ack")
    with pytest.raises(MeasureError, match="does not offer raw sockets"):
        rig.run(d)


def run_both(rigs: list[RawRig], d: Deferred[Any]) -> None:
    """Pump every rig's link and advance its clock 1 ms a step until `d` fires (30 s of
    both clocks at most)."""
    for _ in range(30_000):
        if d.called:
            break
        for r in rigs:
            r.pump.flush()
            r.clock.advance(0.001)


def test_with_several_endpoints_the_error_names_the_endpoint() -> None:
    # two endpoints, the second without raw sockets (or gone): the error once read as if
    # there were one endpoint, "the endpoint does not offer raw sockets" (which one?)
    from packetlab.controller import ControllerError

    rigs = [RawRig(["10.77.3.1"]), RawRig(["10.77.3.2"], CONFIG.replace("raw,", ""))]
    d = collect_ip_ids([r.session for r in rigs], ALL[:2], rounds=3, method="tcp-ack")
    run_both(rigs, d)
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(ControllerError), failures
    assert str(failures[0].value).startswith("endpoint ")
    assert str(failures[0].value).endswith("@endpoint1: the endpoint does not offer raw sockets "
                                           "(TRANSSUP has no raw; it needs TransprotoSup raw,... "
                                           "in endpt.conf and CAP_NET_RAW)")  # fmt: skip


def test_an_endpoint_gone_before_the_probing_is_named() -> None:
    rigs = [RawRig(["10.77.3.1"]), RawRig(["10.77.3.2"])]
    rigs[1].endpoint.transport.loseConnection()  # type: ignore[union-attr]
    d = collect_ip_ids([r.session for r in rigs], ALL[:2], rounds=3, method="tcp-ack")
    run_both(rigs, d)
    failures: list[Any] = []
    d.addErrback(failures.append)
    text = str(failures[0].value)
    assert text.startswith("endpoint ") and text.endswith("the endpoint closed the connection")


def test_one_alias_pair_is_said_in_the_singular() -> None:
    from packetlab.cli.run_alias import row

    assert row({"type": "summary", "pairs": 1}) == "# 1 alias pair"  # was "1 alias pairs"
    assert row({"type": "summary", "pairs": 3}) == "# 3 alias pairs"


def test_endpoints_need_listen_and_a_count_in_range() -> None:
    from packetlab.cli.run import RunError
    from packetlab.cli.run_alias import COMMAND
    from packetlab.cli.run_command import Progress, parse_args

    def check(*argv: str) -> str:
        args = parse_args(COMMAND, [*argv, ALL[0], ALL[1]])
        with pytest.raises(RunError) as e:
            COMMAND.experiment(args, lambda r: None, Progress())
        return str(e.value)

    # --endpoints 2 with the in-process endpoint silently probed from one endpoint, and
    # --endpoints 0 waited for one
    assert check("--endpoints", "2") == (
        "--endpoints 2 needs --listen ADDR (the endpoints connect there; the in-process "
        "endpoint is one)"
    )
    assert check("--endpoints", "0", "--listen", "20556") == "--endpoints must be 1..10000, got 0"


@pytest.mark.parametrize("single", [True, False])
def test_cli_records_say_each_addresss_method(single: bool) -> None:
    # `pktlab run alias [--single-stage] ADDR...` over the same routers: the pairs, and
    # per address its kept method and every method's velocity
    from twisted.internet.defer import Deferred

    from packetlab.cli import run_alias
    from packetlab.cli.run import build_parser
    from packetlab.cli.run_command import Progress

    argv = ["alias", "--wait", "0.5", *(["--single-stage"] if single else []), *ALL]
    args = build_parser().parse_args(argv)
    records: list[dict[str, Any]] = []
    rig = rig_with(routers())
    run = run_alias.experiment(args, records.append, Progress())
    rig.run(Deferred.fromCoroutine(run([rig.session])))
    series = {r["addr"]: r for r in records if r["type"] == "ipid-series"}
    assert {a: r["method"] for a, r in series.items()} == {
        TCP_A: "tcp-ack", TCP_B: "tcp-ack", UDP_A: "udp", UDP_B: "udp", ICMP_C: "icmp-echo",
        ZERO_D: "tcp-ack"}  # fmt: skip
    assert all(r["usable"] and r["samples"] == 10 for r in series.values())
    assert series[ZERO_D]["methods"] == {**series[ZERO_D]["methods"], "icmp-echo": None}
    pairs = [(r["a"], r["b"]) for r in records if r["type"] == "alias"]
    assert pairs == [(TCP_A, TCP_B), (UDP_A, UDP_B)]
    line = run_alias.row(series[UDP_A])
    assert line is not None and " by udp (icmp-echo none, tcp-ack none)" in line


@pytest.mark.parametrize("single", [True, False])
def test_cli_warts_holds_every_probe_and_the_ip_ids_of_the_samples(
    single: bool, tmp_path: Any
) -> None:
    # `pktlab run alias --warts FILE --samples`: one dealias (radargun) record per probing
    # run, every probe the endpoint sent in one, each sample's IP-ID a reply's
    from twisted.internet.defer import Deferred

    from packetlab.cli import run_alias
    from packetlab.cli.run import build_parser
    from packetlab.cli.run_command import Progress
    from packetlab.measure.warts_format import OBJ_DEALIAS
    from packetlab.measure.warts_read import read_warts

    out = tmp_path / "a.warts"
    argv = ["alias", "--wait", "0.5", "--samples", "--warts", str(out),
            *(["--single-stage"] if single else []), *ALL]  # fmt: skip
    args = build_parser().parse_args(argv)
    records: list[dict[str, Any]] = []
    rig = rig_with(routers())
    run = run_alias.experiment(args, records.append, Progress())
    rig.run(Deferred.fromCoroutine(run([rig.session])))
    dealias = [o for o in read_warts(out.read_bytes()) if o.kind == OBJ_DEALIAS]
    stages = [r for r in records if r["type"] == "alias-stage" and r["samples"]]
    assert len(dealias) == (1 if single else len(stages)) and len(dealias) >= 1
    assert sum(len(d.probes) for d in dealias) == len(rig.endpoint.raw_sends)
    method_names = {1: "icmp-echo", 2: "tcp-ack", 3: "udp"}
    got = []
    for d in dealias:
        for p in d.probes:
            pd = d.probedefs[p.get(1, 0)]
            got += [(pd[10], method_names[pd[4]], r.get(3, 0)) for r in p["replies"]]
    samples = [(r["addr"], r["method"], r["ip_id"]) for r in records if r["type"] == "ipid"]
    assert sorted(got) == sorted(samples) and len(samples) > 10


@pytest.mark.parametrize("method", ["icmp-echo", "tcp-ack", "udp"])
def test_a_duplicated_reply_is_one_sample_and_two_warts_replies(method: str) -> None:
    # a duplicating link (every reply twice, the same packet): one sample a probe, as
    # before; scamper's dealias keeps both replies in its warts record (replyc 2, seen
    # in the testbed); ours wrote the first only (session 30)
    from packetlab.measure.alias import ProbeRun
    from packetlab.measure.warts_dealias import dealias_object
    from packetlab.measure.warts_read import read_warts

    rig = rig_with(routers())
    once = rig.endpoint.answers

    def twice(probe: bytes) -> list[tuple[float, bytes]]:
        return [x for d, pkt in once(probe) for x in ((d, pkt), (d + 0.0005, pkt))]

    rig.endpoint.answers = twice  # type: ignore[method-assign]
    pair = {"icmp-echo": [ICMP_C, TCP_A], "tcp-ack": [TCP_A, TCP_B], "udp": [UDP_A, UDP_B]}
    runs: list[ProbeRun] = []
    got = rig.run(collect_ip_ids([rig.session], pair[method], rounds=4, wait=0.5, runs=runs,
                                 method=method))  # fmt: skip
    answered = [p for p in runs[0].probes if p.reply is not None]
    assert len(got) == len(answered) == 4 * (1 if method == "icmp-echo" else 2)
    # (the run stops waiting once every probe is answered: the last copy may be left)
    copies = [len(p.more) for p in answered]
    assert copies[:-1] == [1] * (len(answered) - 1) and copies[-1] in (0, 1)
    assert all(
        p.reply is not None and p.reply.ip_id == r.ip_id for p in answered for r, _ in p.more
    )
    (d,) = read_warts(dealias_object(runs[0]))
    replies = [len(p["replies"]) for p in d.probes if p["replies"]]
    assert replies == [1 + n for n in copies]


def test_cli_warts_userid_is_scampers_U(tmp_path: Any) -> None:
    # scamper dealias's `-U userid` (its warts record's userid, flag 7): ours had no -U
    # (`unrecognized arguments`, exit 2); written when not 0, as scamper's (session 30)
    from twisted.internet.defer import Deferred

    from packetlab.cli import run_alias
    from packetlab.cli.run import build_parser
    from packetlab.cli.run_command import Progress
    from packetlab.measure.warts_format import OBJ_DEALIAS
    from packetlab.measure.warts_read import read_warts

    for given, written in (([], None), (["-U", "4294967295"], 4294967295)):
        out = tmp_path / "u.warts"
        argv = ["alias", "--wait", "0.5", "--single-stage", "--warts", str(out), *given, *ALL]
        rig = rig_with(routers())
        run = run_alias.experiment(build_parser().parse_args(argv), lambda r: None, Progress())
        rig.run(Deferred.fromCoroutine(run([rig.session])))
        (d,) = [o for o in read_warts(out.read_bytes()) if o.kind == OBJ_DEALIAS]
        assert d.fields.get(7) == written


# Indirect probing (MIDAR's; scamper's probe definitions with a TTL): HIDDEN answers no
# probe to itself, but it is the router two hops out on the way to FAR, where echo
# requests with TTL 2 expire: its time exceeded is numbered from the counter it shares
# with ICMP_F (an alias that answers echo). TTL 1 expires at FIRST, another router.
HIDDEN, ICMP_F, FAR, FIRST = "10.77.3.50", "10.77.3.51", "10.77.9.9", "10.77.3.1"


def indirect_rig() -> RawRig:
    shared, first = Router({"icmp-echo"}, 30000), Router(set(), 100)
    rig = rig_with({ICMP_C: Router({"icmp-echo"}, 40000), ICMP_F: shared})
    direct = rig.endpoint.answers

    def answer(probe: bytes) -> list[tuple[float, bytes]]:
        dst = str(ipaddress.ip_address(probe[16:20]))
        if dst != FAR or probe[9] != PROTO_ICMP:
            return direct(probe)
        if probe[8] > 2:
            return []  # FAR itself never answers
        router, src = (first, FIRST) if probe[8] == 1 else (shared, HIDDEN)
        ident = router.next_id(rig.clock.seconds(), "indirect")
        msg = bytes([11, 0, 0, 0, 0, 0, 0, 0]) + probe[:28]
        msg = msg[:2] + struct.pack("!H", inet_checksum(msg)) + msg[4:]
        reply = ip_packet(src, str(ipaddress.ip_address(probe[12:16])), PROTO_ICMP, msg,
                          ttl=62, ident=ident)  # fmt: skip
        return [(0.001, reply)]

    rig.endpoint.answers = answer  # type: ignore[method-assign]
    return rig


def test_indirect_probing_reads_a_router_that_answers_nothing_itself() -> None:
    from packetlab.measure.midar import midar

    cands = [HIDDEN, ICMP_F, ICMP_C]
    via = {HIDDEN: (FAR, 2)}
    rig = indirect_rig()
    got = rig.run(midar([rig.session], cands, spacing=0.002, wait=0.5,
                        methods=["icmp-echo", "indirect"], via=via))  # fmt: skip
    assert got.methods == {HIDDEN: "indirect", ICMP_F: "icmp-echo", ICMP_C: "icmp-echo"}
    assert got.by_method[HIDDEN]["icmp-echo"] is None and got.by_method[HIDDEN]["indirect"]
    assert got.pairs == [(HIDDEN, ICMP_F)]
    # the probes: echo requests to FAR with TTL 2 (never to HIDDEN with it), and only
    # HIDDEN was probed indirectly (the others have no destination and TTL)
    sent = [m.data for m in rig.endpoint.raw_sends]
    to_far = [p for p in sent if str(ipaddress.ip_address(p[16:20])) == FAR]
    assert to_far and {p[8] for p in to_far} == {2} and all(p[20] == 8 for p in to_far)
    # without indirect probing the hidden router has no counter and no alias
    rig = indirect_rig()
    got = rig.run(midar([rig.session], cands, spacing=0.002, wait=0.5, methods=["icmp-echo"]))
    assert got.velocities[HIDDEN] is None and got.pairs == []


def test_a_time_exceeded_from_another_router_is_no_sample() -> None:
    rig = indirect_rig()
    got = rig.run(collect_ip_ids([rig.session], [HIDDEN, ICMP_C], rounds=4, wait=0.5,
                                 method=["icmp-echo", "indirect"],
                                 via={HIDDEN: (FAR, 1)}))  # fmt: skip
    assert {(s.addr, s.method) for s in got} == {(ICMP_C, "icmp-echo")}


def test_indirect_needs_a_destination_and_ttl() -> None:
    assert parse_methods("auto,indirect") == (*METHODS, "indirect")
    rig = indirect_rig()
    with pytest.raises(ValueError, match=r"^10.77.3.51: the indirect method needs the "
                       r"destination beyond it and the TTL that expires there "
                       r"\(10.77.3.51@DST:TTL\)$"):  # fmt: skip
        rig.run(collect_ip_ids([rig.session], [HIDDEN, ICMP_F], method="indirect",
                               via={HIDDEN: (FAR, 2)}))  # fmt: skip
    with pytest.raises(ValueError, match=r"TTL must be 1..255"):
        rig.run(collect_ip_ids([rig.session], [HIDDEN, ICMP_F], method=["indirect", "udp"],
                               via={HIDDEN: (FAR, 0)}))  # fmt: skip


def test_indirect_warts_is_scampers_probe_definition_with_a_ttl() -> None:
    # scamper's `-p "-P icmp-echo -i FAR -t 2"`: method icmp-echo, dst FAR, TTL 2; its
    # replies the time exceeded messages from HIDDEN (as sc_wartsdump shows scamper's)
    from packetlab.measure.alias import ProbeRun
    from packetlab.measure.warts_dealias import dealias_object
    from packetlab.measure.warts_read import read_warts

    runs: list[ProbeRun] = []
    rig = indirect_rig()
    rig.run(collect_ip_ids([rig.session], [HIDDEN, ICMP_F], rounds=3, wait=0.5,
                           method={HIDDEN: "indirect", ICMP_F: "icmp-echo"},
                           via={HIDDEN: (FAR, 2)}, runs=runs))  # fmt: skip
    (d,) = read_warts(dealias_object(runs[0]))
    defs = [(pd[10], pd[4], pd[5]) for pd in d.probedefs]
    assert defs == [(FAR, 1, 2), (ICMP_F, 1, 64)]
    replies = [(p.get(1, 0), r[10], r[5] >> 8) for p in d.probes for r in p["replies"]]
    assert sorted(replies) == [(0, HIDDEN, 11)] * 3 + [(1, ICMP_F, 0)] * 3


# Mercator's common source address: MERC_A's router sends its port unreachable from
# MERC_B, its other address (scamper's ally and mercator both say "aliases" there).
MERC_A, MERC_B = "10.77.3.60", "10.77.3.61"


def mercator_routers() -> dict[str, Router]:
    merc = Router({"udp"}, 12000, errors_from=MERC_B)
    return {**routers(), MERC_A: merc, MERC_B: merc}


def test_a_port_unreachable_from_another_address_of_the_router_counts() -> None:
    # It was dropped (only replies from the probed address counted), so `--method udp`
    # found no counter for MERC_A and lost the alias scamper's ally finds.
    from packetlab.measure.alias import alias_pairs, common_source_pairs

    rig = rig_with(mercator_routers())
    got = rig.run(collect_ip_ids([rig.session], [MERC_A, MERC_B, UDP_A], rounds=5, wait=0.5,
                                 method="udp"))  # fmt: skip
    from_a = [s for s in got if s.addr == MERC_A]
    assert len(from_a) == 5 and all(s.replied_from == MERC_B for s in from_a)
    assert from_a[0].to_dict()["from"] == MERC_B
    assert all(s.replied_from is None for s in got if s.addr != MERC_A)
    assert alias_pairs(got) == [(MERC_A, MERC_B)]
    assert common_source_pairs(got) == [(MERC_A, MERC_B)]


@pytest.mark.parametrize("single", [True, False])
def test_cli_reports_a_common_source_alias(single: bool) -> None:
    from twisted.internet.defer import Deferred

    from packetlab.cli import run_alias
    from packetlab.cli.run import build_parser
    from packetlab.cli.run_command import Progress

    argv = ["alias", "--wait", "0.5", *(["--single-stage"] if single else []), MERC_A,
            MERC_B, UDP_A, UDP_B]  # fmt: skip
    args = build_parser().parse_args(argv)
    records: list[dict[str, Any]] = []
    rig = rig_with(mercator_routers())
    run = run_alias.experiment(args, records.append, Progress())
    rig.run(Deferred.fromCoroutine(run([rig.session])))
    alias = {(r["a"], r["b"]): r["by"] for r in records if r["type"] == "alias"}
    assert alias == {(MERC_A, MERC_B): ["ip-id", "mercator"], (UDP_A, UDP_B): ["ip-id"]}
    (sets,) = [r["sets"] for r in records if r["type"] == "alias-sets"]
    assert sets == [[UDP_A, UDP_B], [MERC_A, MERC_B]]
    only = {"type": "alias", "a": MERC_A, "b": MERC_B, "by": ["mercator"]}
    assert run_alias.row(only) == f"{MERC_A} {MERC_B}  # common source address (Mercator)"
    assert run_alias.row({**only, "by": ["ip-id", "mercator"]}) == f"{MERC_A} {MERC_B}"


def test_a_list_file_of_addresses(tmp_path: Any) -> None:
    # scamper's -f listfile (there was no way to give a list but the command line):
    # blanks and lines separate, # comments, a repeated address or pair probed once; the
    # errors name the file's line
    from packetlab.cli.run import RunError
    from packetlab.cli.run_alias import COMMAND, _targets
    from packetlab.cli.run_command import parse_args

    def targets(text: str, *argv: str) -> Any:
        f = tmp_path / "list.txt"
        f.write_text(text)
        args = parse_args(COMMAND, ["-f", str(f), *argv])
        return _targets(args), args

    text = f"{TCP_A} {TCP_B}  # a pair\n\n{TCP_A} {TCP_B}\n{UDP_A}\n"
    (got, via), _ = targets(text, UDP_B, TCP_A)
    assert got == [UDP_B, TCP_A, TCP_B, UDP_A] and via == {}
    assert targets(f"{TCP_A}\n{FAR}@{TCP_B}:3\n")[0] == ([TCP_A, FAR], {FAR: (TCP_B, 3)})
    # a byte order mark and CRLF lines (a file from Windows)
    assert targets(f"\ufeff{TCP_A}\r\n{TCP_B}\r\n")[0] == ([TCP_A, TCP_B], {})
    for text, error in [
        (f"{TCP_A}\nhello world\n", "list.txt:2: 'hello' is not an IP address"),
        (
            f"{TCP_A}\n2001:db8::1\n",
            "list.txt:2: 2001:db8::1: IPv6 has no IP-ID to compare; IPv4 only",
        ),
        (
            f"{TCP_A}\n{TCP_B}@{FAR}:300\n",
            f"list.txt:2: {TCP_B}@{FAR}:300: expected ADDR@DST:TTL, the TTL 1..255",
        ),
        ("# nothing\n", "list.txt: no addresses in it"),
        (
            f"{TCP_A}\n{TCP_B} " + "x" * 70_000,
            "list.txt:2: a line longer than 65536 characters",
        ),
        (f"{TCP_A}\n{TCP_A}\n", "give at least two different addresses"),
    ]:
        with pytest.raises(RunError) as e:
            targets(text)
        assert str(e.value).endswith(error), e.value
    with pytest.raises(RunError, match="cannot read it: No such file or directory"):
        _targets(parse_args(COMMAND, ["-f", str(tmp_path / "none.txt")]))
    with pytest.raises(RunError, match=r"^give at least two different addresses \(ADDR"):
        _targets(parse_args(COMMAND, []))


def test_the_file_s_addresses_are_the_run_s_targets(tmp_path: Any) -> None:
    # (the start-up reads the first target for its source address, the budget counts them)
    from packetlab.cli.run_alias import COMMAND, budget
    from packetlab.cli.run_command import Progress, parse_args

    f = tmp_path / "list.txt"
    f.write_text("\n".join(ALL) + "\n")
    args = parse_args(COMMAND, ["-f", str(f)])
    COMMAND.experiment(args, lambda r: None, Progress())
    assert args.targets == ALL and COMMAND.target(args) == ALL[0]
    assert budget(args) == budget(parse_args(COMMAND, ALL))


def test_the_endpoint_s_address_is_from_the_first_routed_target(monkeypatch: Any) -> None:
    # The first target alone chose it: one without a route ended the run ("no route to
    # X", exit 2), where the same address later in the list was left out (not_sent)
    from packetlab.cli import link
    from packetlab.cli.run_alias import COMMAND
    from packetlab.cli.run_command import parse_args

    def route_source(dst: Any) -> Any:
        if str(dst).startswith("10.99."):
            raise link.LinkError(f"no route to {dst}: Network is unreachable")
        return ipaddress.ip_address("10.77.3.1")

    monkeypatch.setattr(link, "route_source", route_source)
    args = parse_args(COMMAND, ["10.99.0.1", f"{TCP_A}@{FAR}:2", TCP_B])
    assert COMMAND.target(args) == TCP_A
    assert COMMAND.target(parse_args(COMMAND, ["10.99.0.1", "10.99.0.2"])) == "10.99.0.1"
    assert COMMAND.target(parse_args(COMMAND, ["127.0.0.2", TCP_A])) == "127.0.0.2"


def test_two_addresses_get_ally_s_verdict() -> None:
    # a pair alone is what scamper's ally judges: aliases, not aliases, or unknown (no
    # usable counter); the summary said only "# 0 alias pairs" for the last two
    from packetlab.cli.run_alias import row, summary

    def series(usable: bool) -> dict[str, Any]:
        return {"type": "ipid-series", "usable": usable}

    alias = {"type": "alias", "a": TCP_A, "b": TCP_B, "by": ["ip-id"]}
    end = {"type": "alias-sets", "sets": []}
    for records, verdict in [([series(True), series(True), alias], "aliases"),
                             ([series(True), series(True)], "not aliases"),
                             ([series(True), series(False)], "unknown")]:  # fmt: skip
        assert "verdict" not in summary(records)  # cut short (no alias-sets): none
        got = summary([*records, end])
        assert got["verdict"] == verdict
        assert row({"type": "summary", **got}) == f"# {got['pairs']} alias pair" + (
            "" if got["pairs"] == 1 else "s") + f": {verdict}"  # fmt: skip
    assert "verdict" not in summary([series(True)] * 3 + [end])
    cut = {"type": "summary", "pairs": 0, "verdict": "unknown", "stop_reason": "INTERRUPTED"}
    assert row(cut) == "# 0 alias pairs (run cut short: the stage in flight was dropped)"


def test_an_unreachable_address_says_who_answered_what() -> None:
    # (it said only "no usable counter": the router's net unreachable was dropped)
    from twisted.internet.defer import Deferred

    from packetlab.cli import run_alias
    from packetlab.cli.run import build_parser
    from packetlab.cli.run_command import Progress

    gone = "10.99.0.1"
    rig = rig_with(routers())
    direct = rig.endpoint.answers

    def answer(probe: bytes) -> list[tuple[float, bytes]]:
        if str(ipaddress.ip_address(probe[16:20])) != gone:
            return direct(probe)
        msg = bytes([3, 0, 0, 0, 0, 0, 0, 0]) + probe[:28]  # net unreachable from r1
        msg = msg[:2] + struct.pack("!H", inet_checksum(msg)) + msg[4:]
        src = str(ipaddress.ip_address(probe[12:16]))
        return [(0.001, ip_packet("10.77.3.254", src, PROTO_ICMP, msg, ttl=63, ident=7))]

    rig.endpoint.answers = answer  # type: ignore[method-assign]
    args = build_parser().parse_args(["alias", "--wait", "0.5", gone, UDP_A, UDP_B])
    records: list[dict[str, Any]] = []
    run = run_alias.experiment(args, records.append, Progress())
    rig.run(Deferred.fromCoroutine(run([rig.session])))
    series = {r["addr"]: r for r in records if r["type"] == "ipid-series"}
    assert series[gone]["unreachable"] == "10.77.3.254 answered net unreachable"
    line = run_alias.row(series[gone])
    assert line is not None and line.endswith("(10.77.3.254 answered net unreachable)")
    assert "unreachable" not in series[UDP_A]
    assert [(r["a"], r["b"]) for r in records if r["type"] == "alias"] == [(UDP_A, UDP_B)]


def test_each_probing_run_is_announced_for_the_progress_line() -> None:
    # (the line said "estimation done" all through discovery, which can take minutes)
    from packetlab.measure.midar import midar

    calls: list[tuple[str, int, int]] = []
    rig = rig_with(routers())
    rig.run(midar([rig.session], ALL, spacing=0.002, wait=0.5, window=4,
                  on_probe=lambda *a: calls.append(a)))  # fmt: skip
    assert calls[0] == ("estimation", 6, 6 * 3 * 10)
    assert [c[0] for c in calls[1:3]] == ["discovery, window 1 of 2", "discovery, window 2 of 2"]
    assert all(c[2] == c[1] * 10 for c in calls[1:3])  # one method each now
    assert [c[0] for c in calls[3:]] == ["elimination", "corroboration"]
    assert calls[-1][2] == calls[-1][1] * 20


def test_scamper_s_option_letters() -> None:
    # dealias radargun's -q attempts, -W wait-probe (ms), -w wait-timeout (s)
    from packetlab.cli.run_alias import COMMAND
    from packetlab.cli.run_command import parse_args

    args = parse_args(COMMAND, ["-q", "5", "-W", "3", "-w", "0.5", TCP_A, TCP_B])
    assert (args.rounds, args.spacing, args.wait) == (5, 3.0, 0.5)


def test_each_address_s_counter_is_out_once_estimation_is_done() -> None:
    # (the series came after the last stage: a run cut short in discovery had only the
    # stage lines, no address's counter)
    from twisted.internet.defer import Deferred

    from packetlab.cli import run_alias
    from packetlab.cli.run import build_parser
    from packetlab.cli.run_command import Progress

    args = build_parser().parse_args(["alias", "--wait", "0.5", "--samples", *ALL])
    records: list[dict[str, Any]] = []
    rig = rig_with(routers())
    run = run_alias.experiment(args, records.append, Progress())
    rig.run(Deferred.fromCoroutine(run([rig.session])))
    kinds = [(r["type"], r.get("stage")) for r in records if r["type"] != "ipid"]
    first_series = kinds.index(("ipid-series", None))
    assert kinds[first_series - 1] == ("alias-stage", "estimation")
    assert kinds[first_series + len(ALL)] == ("alias-stage", "discovery")
    at = [(r["type"], r.get("stage")) for r in records]
    assert at.index(("ipid", "estimation")) < at.index(("ipid-series", None))
    assert at.index(("ipid", "discovery")) > at.index(("alias-stage", "discovery"))
    ids = [(r["addr"], r["time_ns"]) for r in records if r["type"] == "ipid"]
    assert len(ids) == len(set(ids)) == sum(
        r["samples"] for r in records if r["type"] == "alias-stage")  # fmt: skip


def test_rounds_need_three_samples() -> None:
    # 2 was allowed and could never find an alias: with --discovery-rounds 2 a true pair
    # read "not aliases"; with --rounds 2 every address had "no usable counter"
    from packetlab.cli.run import RunError
    from packetlab.cli.run_alias import COMMAND
    from packetlab.cli.run_command import Progress, parse_args

    for option in ("--rounds", "--discovery-rounds", "--elimination-rounds",
                   "--corroboration-rounds"):  # fmt: skip
        with pytest.raises(RunError) as e:
            COMMAND.experiment(parse_args(COMMAND, [option, "2", TCP_A, TCP_B]),
                               lambda r: None, Progress())  # fmt: skip
        assert str(e.value) == (f"{option} must be 3..10000 with 1 endpoint(s), got 2: a "
                                "counter is tested on three samples of an address at least "
                                "(two steps)")  # fmt: skip
        with pytest.raises(RunError, match=f"^{option} must be 3..10000, got 0$"):
            COMMAND.experiment(parse_args(COMMAND, [option, "0", TCP_A, TCP_B]),
                               lambda r: None, Progress())  # fmt: skip
        COMMAND.experiment(parse_args(COMMAND, [option, "3", TCP_A, TCP_B]),
                           lambda r: None, Progress())  # fmt: skip
        # two endpoints: 2 rounds are 4 samples of an address
        two = ["--listen", "20556", "--endpoints", "2", option, "2", TCP_A, TCP_B]
        COMMAND.experiment(parse_args(COMMAND, two), lambda r: None, Progress())


def test_the_capture_takes_no_echo_requests_nor_others_replies() -> None:
    """`icmp` alone took a ping flood's requests and replies too: beside one on loopback
    the capture's queue overflowed and answers were lost (traceroute's, session 27).
    Echo replies to the run's own identifier only; every ICMP error still."""
    rig = rig_with(routers())
    got = rig.run(collect_ip_ids([rig.session], ALL, rounds=2, wait=0.5, method="icmp-echo"))
    assert got
    (ncap,) = rig.endpoint.ncaps
    (ident,) = {struct.unpack_from("!H", m.data, 24)[0] for m in rig.endpoint.raw_sends}
    icmp = "icmp and (ip[6:2] & 0x1fff != 0 or (icmp[0] != 0 and icmp[0] != 8)"
    assert ncap.filter == tcpdump_filter(f"{icmp} or (icmp[0] = 0 and icmp[4:2] = {ident}))")
