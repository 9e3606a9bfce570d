"""scamper dealias's port-changing probe methods (session 27): ``udp-dport`` (one source
port, the destination port one up per round), ``tcp-ack-sport`` and ``tcp-syn-sport`` (a
new source port per round; a SYN's RST-ACK or SYN-ACK), over the scripted raw endpoint:
what goes on the wire (as scamper 20211212 sends them, tcpdump in the alias testbed), the
replies matched, a router behind a stateful firewall (SYNs through, stray ACKs dropped)
resolved by ``tcp-syn-sport`` only, ``auto`` without them (MIDAR's three), and their
warts probe definitions (scamper's method numbers, flags and base ports)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Any

import pytest
from test_traceroute_fakes import RawRig
from twisted.internet.defer import Deferred

from packetlab.measure.alias import (
    METHODS,
    PORT_METHODS,
    ProbeRun,
    collect_ip_ids,
    parse_methods,
)
from packetlab.measure.packets import (
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    inet_checksum,
    ip_packet,
)
from packetlab.measure.packets_transport import tcp_segment

FW_A, FW_B = "10.77.4.10", "10.77.4.11"  # one router behind a firewall: SYNs only
OPEN_C = "10.77.4.12"  # its own counter; an open port: SYN-ACKs
DP_D, DP_E = "10.77.4.20", "10.77.4.21"  # one router, answering UDP to any port
ALL = [FW_A, FW_B, OPEN_C, DP_D, DP_E]


@dataclass
class Router:
    answers: set[str]  # "syn", "ack", "udp"
    value: int
    rate: float = 300.0
    last: float = 0.0
    synack: bool = False  # an open port: SYN-ACK, not RST-ACK
    errors_from: str | None = None  # the port unreachable's source (Mercator's)

    def next_id(self, now: float) -> int:
        self.value = (self.value + 1 + int(self.rate * (now - self.last))) & 0xFFFF
        self.last = now
        return self.value


def routers() -> dict[str, Router]:
    fw, dp = Router({"syn"}, 61000), Router({"udp"}, 9000)
    return {FW_A: fw, FW_B: fw, OPEN_C: Router({"syn"}, 30000, synack=True), DP_D: dp, DP_E: dp}


def rig_with(table: dict[str, Router]) -> RawRig:
    rig = RawRig(["10.77.4.1"])

    def answer(probe: bytes) -> list[tuple[float, bytes]]:
        src, dst = (str(ipaddress.ip_address(probe[a : a + 4])) for a in (12, 16))
        router = table.get(dst)
        if router is None:
            return []
        if probe[9] == PROTO_TCP:
            sport, dport, seq, ack, _off, flags = struct.unpack_from("!HHIIBB", probe, 20)
            if flags & TCP_SYN and "syn" in router.answers:  # a closed port's RST-ACK
                out = TCP_SYN | TCP_ACK if router.synack else TCP_RST | TCP_ACK
                msg = tcp_segment(dst, src, dport, sport, seq=0, ack=(seq + 1) & 0xFFFFFFFF,
                                  flags=out)  # fmt: skip
            elif flags == TCP_ACK and "ack" in router.answers:
                msg = tcp_segment(dst, src, dport, sport, seq=ack, flags=TCP_RST)
            else:  # (the firewall drops a stray ACK)
                return []
            proto = PROTO_TCP
        elif probe[9] == PROTO_UDP and "udp" in router.answers:
            msg = bytes([3, 3, 0, 0, 0, 0, 0, 0]) + probe[:28]
            msg = msg[:2] + struct.pack("!H", inet_checksum(msg)) + msg[4:]
            proto = PROTO_ICMP
        else:
            return []
        ident = router.next_id(rig.clock.seconds())
        origin = router.errors_from if proto == PROTO_ICMP and router.errors_from else dst
        return [(0.001, ip_packet(origin, src, proto, msg, ttl=63, ident=ident))]

    rig.endpoint.answers = answer  # type: ignore[method-assign]
    return rig


def _sent(rig: RawRig) -> list[tuple[str, int, int, int, int, int]]:
    """(dst, proto, sport, dport, TCP flags, TCP seq) of every probe sent."""
    out = []
    for m in rig.endpoint.raw_sends:
        p = m.data
        sport, dport = struct.unpack_from("!HH", p, 20)
        flags, seq = (p[33], struct.unpack_from("!I", p, 24)[0]) if p[9] == PROTO_TCP else (0, 0)
        out.append((str(ipaddress.ip_address(p[16:20])), p[9], sport, dport, flags, seq))
    return out


def test_the_names_and_auto_leaves_them_out() -> None:
    assert parse_methods("auto") == METHODS  # MIDAR's three: scamper's variants are not
    assert parse_methods("udp-dport,tcp-ack-sport,tcp-syn-sport") == PORT_METHODS
    assert parse_methods("auto,tcp-syn-sport") == (*METHODS, "tcp-syn-sport")
    with pytest.raises(ValueError, match=r"valid: auto, .*tcp-ack-sport, tcp-syn-sport, udp-dport"):
        parse_methods("tcp-syn")


def test_udp_dport_changes_the_destination_port_per_round() -> None:
    # scamper's: one source port, the destination port 33435, 33436, ... per target
    rig = rig_with(routers())
    got = rig.run(collect_ip_ids([rig.session], [DP_D, DP_E], rounds=4, wait=0.5,
                                 method="udp-dport"))  # fmt: skip
    sent = _sent(rig)
    assert {s[1] for s in sent} == {PROTO_UDP} and len({s[2] for s in sent}) == 1
    for t in (DP_D, DP_E):
        assert [s[3] for s in sent if s[0] == t] == [33435, 33436, 33437, 33438]
    assert len(got) == 8 and {s.method for s in got} == {"udp-dport"}  # every one matched


@pytest.mark.parametrize("method", ["tcp-ack-sport", "tcp-syn-sport"])
def test_tcp_sport_methods_change_the_source_port_per_round(method: str) -> None:
    table = {t: Router({"ack", "syn"}, 100 * i) for i, t in enumerate(ALL)}
    rig = rig_with(table)
    got = rig.run(collect_ip_ids([rig.session], ALL, rounds=3, wait=0.5, method=method))
    sent = _sent(rig)
    flags = TCP_ACK if method == "tcp-ack-sport" else TCP_SYN
    assert {(s[1], s[3], s[4]) for s in sent} == {(PROTO_TCP, 33435, flags)}
    for t in ALL:
        ports = [s[2] for s in sent if s[0] == t]
        assert [p - ports[0] for p in ports] == [0, 1, 2]
    assert len({s[5] for s in sent}) == len(sent)  # a sequence number each too
    assert len(got) == 3 * len(ALL) and {s.method for s in got} == {method}


def test_the_two_tcp_variants_and_tcp_ack_never_share_a_flow() -> None:
    rig = rig_with({t: Router({"ack", "syn"}, 7) for t in ALL})
    got = rig.run(collect_ip_ids([rig.session], ALL, rounds=5, wait=0.5,
                                 method=["tcp-ack", "tcp-ack-sport", "tcp-syn-sport"]))  # fmt: skip
    flows = [(s[0], s[2], s[3]) for s in _sent(rig)]
    per_flow: dict[Any, set[int]] = {}
    for f, s in zip(flows, _sent(rig), strict=True):
        per_flow.setdefault(f, set()).add(s[4])
    assert all(len(v) == 1 for v in per_flow.values())  # no 4-tuple both an ACK and a SYN
    assert len(got) == 3 * 5 * len(ALL)  # and every reply matched its own probe


def test_a_router_behind_a_firewall_is_resolved_by_syns_only() -> None:
    # FW_A and FW_B share a counter but drop stray ACKs and UDP: tcp-syn-sport pairs them
    # (each RST-ACK from the counter); the open port's SYN-ACK counts too
    from packetlab.measure.midar import midar

    rig = rig_with(routers())
    got = rig.run(midar([rig.session], ALL, spacing=0.002, wait=0.5,
                        methods=["tcp-ack", "tcp-syn-sport", "udp-dport"]))  # fmt: skip
    assert got.methods == {FW_A: "tcp-syn-sport", FW_B: "tcp-syn-sport",
                           OPEN_C: "tcp-syn-sport", DP_D: "udp-dport",
                           DP_E: "udp-dport"}  # fmt: skip
    assert got.pairs == [(FW_A, FW_B), (DP_D, DP_E)]
    rig = rig_with(routers())
    auto = rig.run(midar([rig.session], ALL, spacing=0.002, wait=0.5))
    assert auto.velocities[FW_A] is None and auto.pairs == [(DP_D, DP_E)]  # (udp answers)
    assert not any(s[4] & TCP_SYN for s in _sent(rig))  # auto sends no SYN


def test_warts_probe_definitions_are_scampers() -> None:
    # sc_wartsdump of scamper's own radargun with -P udp-dport, tcp-ack-sport,
    # tcp-syn-sport: methods 5, 4, 6; the first probe's ports (scamper's base ports);
    # flags ACK and SYN; a SYN's reply with its flags (rst ack), a RST's (rst)
    from packetlab.measure.warts_dealias import dealias_object
    from packetlab.measure.warts_read import read_warts

    table = {t: Router({"ack", "syn", "udp"}, 100 * i) for i, t in enumerate(ALL)}
    rig = rig_with(table)
    runs: list[ProbeRun] = []
    rig.run(collect_ip_ids([rig.session], [DP_D], rounds=3, wait=0.5, runs=runs,
                           method=list(PORT_METHODS)))  # fmt: skip
    (d,) = read_warts(dealias_object(runs[0]))
    assert [(pd[4], pd.get(8)) for pd in d.probedefs] == [(5, None), (4, 0x10), (6, 0x02)]
    sent = _sent(rig)
    for pd, s in zip(d.probedefs, sent[:3], strict=True):  # sport:dport of its first probe
        assert pd[7] == (s[2] << 16) | s[3] and pd[10] == DP_D
    assert len(d.probes) == 9
    replies = [p["replies"][0] for p in d.probes]
    assert [(r.get(5), r.get(8), r.get(9)) for r in replies[:3]] == [
        (0x0303, None, None), (None, 6, TCP_RST), (None, 6, TCP_RST | TCP_ACK),
    ]  # fmt: skip


def test_cli_method_names_and_rows() -> None:
    from packetlab.cli import run_alias
    from packetlab.cli.run import build_parser
    from packetlab.cli.run_command import Progress

    argv = ["alias", "--wait", "0.5", "--single-stage", "--method", "tcp-ack,tcp-syn-sport",
            *ALL]  # fmt: skip
    args = build_parser().parse_args(argv)
    records: list[dict[str, Any]] = []
    rig = rig_with(routers())
    run = run_alias.experiment(args, records.append, Progress())
    rig.run(Deferred.fromCoroutine(run([rig.session])))
    series = {r["addr"]: r for r in records if r["type"] == "ipid-series"}
    line = run_alias.row(series[FW_A])
    assert line is not None and " by tcp-syn-sport (tcp-ack none)" in line
    assert [(r["a"], r["b"]) for r in records if r["type"] == "alias"] == [(FW_A, FW_B)]


def test_the_testbed_responder_answers_syns_and_a_range_of_udp_ports() -> None:
    # ipid_responder's tcp-syn (a RST-ACK from the group's counter, acknowledging the
    # SYN and its payload, as Linux's to scamper's 2-byte SYNs) and --udp-ports N
    import socket

    from packetlab.measure.probes import tcp_ack_probe, tcp_syn_probe, udp_probe
    from packetlab.measure.replies import ReplyKind, parse_reply
    from packetlab.testbed.ipid_responder import Counter, answer

    shared = Counter(0.0, start=41)
    a = socket.inet_aton("10.0.0.1")
    counters, syn_only = {a: shared}, {a: {"tcp-syn", "udp"}}
    syn = tcp_syn_probe("10.9.9.9", "10.0.0.1", sport=4000, dport=33435, seq=77, mss=None)
    out = answer(syn.packet, counters, syn_only, 33435, udp_ports=3)
    assert out is not None
    r = parse_reply(out, verify_checksums=True)
    assert (r.kind, r.tcp_flags, r.key, r.ip_id) == (ReplyKind.TCP_RST, 0x14, syn.key, 42)
    ack = tcp_ack_probe("10.9.9.9", "10.0.0.1", sport=4000, dport=33435, seq=78)
    assert answer(ack.packet, counters, syn_only, 33435) is None  # a firewall: no RST
    assert answer(ack.packet, counters, {a: {"tcp-ack"}}, 33435) is not None
    assert answer(syn.packet, counters, {a: {"tcp-ack"}}, 33435) is None
    for port, answered in ((33435, True), (33437, True), (33438, False)):
        dgram = udp_probe("10.9.9.9", "10.0.0.1", sport=4000, dport=port).packet
        assert (answer(dgram, counters, syn_only, 33435, udp_ports=3) is not None) is answered


def test_a_tie_prefers_the_tcp_variants_to_udp_dport() -> None:
    # as tcp-ack before udp: a Linux host's port unreachables count per destination (a
    # usable counter, no router's shared one), so with as many samples TCP's is kept
    # (udp-dport first among the variants was kept for the testbed's SYN-only router,
    # whose node's kernel answered UDP: its pair was lost)
    from packetlab.measure.alias import IdSample, best_methods

    def series(method: str) -> list[IdSample]:
        return [IdSample("a", "ep", i * 10**7, 100 + 5 * i, 0, method) for i in range(5)]

    for tcp in ("tcp-syn-sport", "tcp-ack-sport"):
        got = best_methods([*series("udp-dport"), *series(tcp)], ["a"], PORT_METHODS)
        assert got["a"][0] == tcp


# Indirect probing with UDP and TCP ACKs (scamper's -P udp|tcp-ack -i DST -t TTL): HIDDEN
# answers nothing itself; it is the router two hops out on the way to FAR, where any
# probe with TTL 2 expires: its time exceeded (quoting the probe) from the counter it
# shares with ECHO_F, which answers echo requests.
HIDDEN, ECHO_F, FAR = "10.77.4.50", "10.77.4.51", "10.77.9.9"


def indirect_rig() -> RawRig:
    shared = Router(set(), 30000)
    rig = RawRig(["10.77.4.1"])

    def answer(probe: bytes) -> list[tuple[float, bytes]]:
        src, dst = (str(ipaddress.ip_address(probe[a : a + 4])) for a in (12, 16))
        if dst == ECHO_F and probe[9] == PROTO_ICMP:
            msg = bytes([0, 0, 0, 0]) + probe[24:]
            origin = ECHO_F
        elif dst == FAR and probe[8] == 2:
            msg = bytes([11, 0, 0, 0, 0, 0, 0, 0]) + probe[:28]
            origin = HIDDEN
        else:
            return []
        msg = msg[:2] + struct.pack("!H", inet_checksum(msg)) + msg[4:]
        ident = shared.next_id(rig.clock.seconds())
        return [(0.001, ip_packet(origin, src, PROTO_ICMP, msg, ttl=62, ident=ident))]

    rig.endpoint.answers = answer  # type: ignore[method-assign]
    return rig


@pytest.mark.parametrize("probe", ["udp", "tcp-ack"])
def test_indirect_probing_with_udp_and_tcp_keeps_one_flow(probe: str) -> None:
    from packetlab.measure.alias import indirect_flow
    from packetlab.measure.midar import midar

    rig, flow = indirect_rig(), indirect_flow(probe, sport=40000)
    assert flow is not None
    via = {HIDDEN: (FAR, 2, flow)}
    got = rig.run(midar([rig.session], [HIDDEN, ECHO_F], spacing=0.002, wait=0.5,
                        methods=["icmp-echo", "indirect"], via=via))  # fmt: skip
    assert got.methods == {HIDDEN: "indirect", ECHO_F: "icmp-echo"}
    assert got.pairs == [(HIDDEN, ECHO_F)]
    through = [s for s in _sent(rig) if s[0] == FAR]
    proto = PROTO_UDP if probe == "udp" else PROTO_TCP
    assert through and {s[1:4] for s in through} == {(proto, 40000, 33435)}  # one flow
    if probe == "tcp-ack":
        assert {s[4] for s in through} == {TCP_ACK} and len({s[5] for s in through}) > 1


def test_indirect_udp_and_tcp_warts_definitions_are_scampers() -> None:
    # sc_wartsdump of scamper's `-p "-P udp -i DST -t 2"` / "-P tcp-ack ...": method udp
    # (3) or tcp-ack (2, flags ACK), both ports, TTL 2, dst the destination beyond
    from packetlab.measure.alias import indirect_flow
    from packetlab.measure.warts_dealias import dealias_object
    from packetlab.measure.warts_read import read_warts

    for probe, method, flags in (("udp", 3, None), ("tcp-ack", 2, TCP_ACK)):
        rig, flow = indirect_rig(), indirect_flow(probe, sport=40000)
        runs: list[ProbeRun] = []
        assert flow is not None
        via = {HIDDEN: (FAR, 2, flow)}
        rig.run(collect_ip_ids([rig.session], [HIDDEN], rounds=3, wait=0.5, runs=runs,
                               method="indirect", via=via))  # fmt: skip
        (d,) = read_warts(dealias_object(runs[0]))
        (pd,) = d.probedefs
        assert (pd[4], pd.get(8), pd[5], pd[7], pd[10]) == (
            method,
            flags,
            2,
            (40000 << 16) | 33435,
            FAR,
        )
        replies = [r for p in d.probes for r in p["replies"]]
        assert len(replies) == 3 and {(r[5], r[10]) for r in replies} == {(0x0B00, HIDDEN)}


def test_cli_indirect_method() -> None:
    from packetlab.cli import run_alias
    from packetlab.cli.run import RunError, build_parser
    from packetlab.cli.run_command import Progress

    def experiment(*argv: str) -> list[dict[str, Any]]:
        args = build_parser().parse_args(["alias", "--wait", "0.5", "--single-stage", *argv])
        records: list[dict[str, Any]] = []
        rig = indirect_rig()
        run = run_alias.experiment(args, records.append, Progress())
        rig.run(Deferred.fromCoroutine(run([rig.session])))
        return records

    records = experiment("--method", "icmp-echo,indirect", "--indirect-method", "udp",
                         f"{HIDDEN}@{FAR}:2", ECHO_F)  # fmt: skip
    series = {r["addr"]: r for r in records if r["type"] == "ipid-series"}
    assert series[HIDDEN]["via"] == {"dst": FAR, "ttl": 2, "probe": "udp"}
    assert "via" not in series[ECHO_F]
    line = run_alias.row(series[HIDDEN])
    assert line is not None and line.startswith(f"# {HIDDEN} (TTL 2 to {FAR}, udp): ")
    assert [(r["a"], r["b"]) for r in records if r["type"] == "alias"] == [(HIDDEN, ECHO_F)]
    with pytest.raises(RunError, match="--indirect-method tcp-ack: no address is probed "):
        experiment("--indirect-method", "tcp-ack", HIDDEN, ECHO_F)
    with pytest.raises(SystemExit):  # (argparse: invalid choice)
        build_parser().parse_args(["alias", "--indirect-method", "udp-dport", HIDDEN, ECHO_F])


def test_prefixscan_candidates_in_scampers_order() -> None:
    # scamper's dealias_prefixscan_array: the rest of B's /30 in a fixed order for B's
    # place (the /31 partner first), then each larger block's half without B; never A, B
    from packetlab.measure.alias_prefixscan import candidates, parse_prefix

    def net(*hosts: int) -> list[str]:
        return [f"10.0.0.{h}" for h in hosts]

    assert candidates("10.0.1.1", "10.0.0.39", 28) == net(38, 37, 36, 32, 33, 34, 35,
                                                           *range(40, 48))  # fmt: skip
    assert candidates("10.0.1.1", "10.0.0.39", 31) == net(38)
    assert candidates("10.0.0.38", "10.0.0.39", 30) == net(37, 36)  # (A left out)
    assert candidates("10.0.0.1", "10.0.0.8", 30) == net(9, 10, 11)
    every = candidates("10.0.1.1", "10.0.0.39", 24)
    assert len(every) == 255 and "10.0.0.39" not in every and len(set(every)) == 255
    assert parse_prefix("10.0.0.39/30") == ("10.0.0.39", 30)
    for bad, said in (
        ("10.0.0.39", "expected B/LEN"),
        ("10.0.0.39/23", "must be 24..31"),
        ("2001:db8::1/126", "IPv4 only"),
        ("x/30", "not an IP address"),
    ):
        with pytest.raises(ValueError, match=said):
            parse_prefix(bad)


def test_cli_prefixscan_reports_the_aliases_of_a_in_bs_prefix() -> None:
    # scamper's `dealias -m prefixscan A B/LEN`: DP_D's alias in 10.77.4.22/30 (B .22
    # itself not probed): DP_E; .23 does not answer
    from packetlab.cli import run_alias
    from packetlab.cli.run import RunError, build_parser
    from packetlab.cli.run_command import Progress

    def run(*argv: str) -> list[dict[str, Any]]:
        args = build_parser().parse_args(["alias", "--wait", "0.5", *argv])
        records: list[dict[str, Any]] = []
        rig = rig_with(routers())
        go = run_alias.experiment(args, records.append, Progress())
        rig.run(Deferred.fromCoroutine(go([rig.session])))
        sent = {s[0] for s in _sent(rig)}
        assert "10.77.4.22" not in sent and sent <= {DP_D, DP_E, "10.77.4.23"}
        return records

    for how in ([], ["--single-stage"]):
        records = run(*how, "--method", "udp-dport", "--prefixscan", "10.77.4.22/30", DP_D)
        (scan,) = [r for r in records if r["type"] == "prefixscan"]
        assert scan == {"type": "prefixscan", "a": DP_D, "b": "10.77.4.22/30",
                        "aliases": [DP_E]}  # fmt: skip
        assert run_alias.row(scan) == f"# prefixscan {DP_D} in 10.77.4.22/30: {DP_E}"
        assert run_alias.summary(records)["verdict"] == "aliases"
    records = run("--method", "udp-dport", "--prefixscan", "10.77.4.22/31", DP_D)
    (scan,) = [r for r in records if r["type"] == "prefixscan"]  # (.22's partner: .23)
    assert scan["aliases"] == [] and run_alias.summary(records)["verdict"] == "none"
    assert run_alias.row(scan) == f"# prefixscan {DP_D} in 10.77.4.22/31: none"
    for argv, said in (
        (["10.77.4.22/30", DP_D, DP_E], "--prefixscan 10.77.4.22/30: give one address A"),
        (["10.77.4.22/31", "10.77.4.23"], "no address to test against 10\\.77\\.4\\.23"),
        (["10.77.4.22/8", DP_D], "--prefixscan '?10.77.4.22/8'?: the prefix length must"),
    ):
        args = build_parser().parse_args(["alias", "--prefixscan", *argv])
        with pytest.raises(RunError, match=said):
            run_alias.experiment(args, lambda r: None, Progress())


def test_prefixscan_exclude_leaves_addresses_out_as_scampers_x() -> None:
    # scamper's `dealias -m prefixscan -x X A B/LEN` (session 30): X is not probed (its
    # JSON `xs`); ours had no -x: `-x: unrecognized arguments` ... exit 2
    from packetlab.cli import run_alias
    from packetlab.cli.run import RunError, build_parser
    from packetlab.cli.run_command import Progress

    def run(*argv: str) -> tuple[list[dict[str, Any]], set[str]]:
        args = build_parser().parse_args(["alias", "--wait", "0.5", *argv])
        records: list[dict[str, Any]] = []
        rig = rig_with(routers())
        go = run_alias.experiment(args, records.append, Progress())
        rig.run(Deferred.fromCoroutine(go([rig.session])))
        return records, {s[0] for s in _sent(rig)}

    scan = ["--single-stage", "--method", "udp-dport", "--prefixscan", "10.77.4.22/30"]
    records, sent = run(*scan, "-x", DP_E, DP_D)
    assert DP_E not in sent and sent == {DP_D, "10.77.4.23"}
    (found,) = [r for r in records if r["type"] == "prefixscan"]
    assert found["aliases"] == [] and run_alias.summary(records)["verdict"] == "none"
    records, sent = run(*scan, "--exclude", "10.77.4.23", "-x", "10.9.9.9", DP_D)
    assert sent == {DP_D, DP_E}  # (an address outside the prefix: nothing to leave out)
    assert [r["aliases"] for r in records if r["type"] == "prefixscan"] == [[DP_E]]
    for argv, said in (
        (["-x", DP_E, DP_D, DP_E], "-x/--exclude 10.77.4.21: only with --prefixscan"),
        ([*scan[3:], "-x", "hello", DP_D], "-x 'hello' is not an IP address"),
        ([*scan[3:], "-x", DP_E, "-x", "10.77.4.23", DP_D],
         "no address to test against 10.77.4.20 \\(the prefix holds only it and B, and -x"),
    ):  # fmt: skip
        args = build_parser().parse_args(["alias", *argv])
        with pytest.raises(RunError, match=said):
            run_alias.experiment(args, lambda r: None, Progress())


def test_shuffle_probes_each_round_in_a_new_order() -> None:
    # scamper's radargun -O shuffle (tcpdump/warts: a new order of its definitions every
    # round); without it, every round in the order given; warts radargun flags "shuffle"
    from packetlab.measure.warts_dealias import dealias_object
    from packetlab.measure.warts_read import read_warts

    table = {t: Router({"udp"}, 1000 * i) for i, t in enumerate(ALL)}
    orders = {}
    for shuffle in (False, True):
        rig = rig_with(table)
        runs: list[ProbeRun] = []
        got = rig.run(collect_ip_ids([rig.session], ALL, rounds=6, wait=0.5, runs=runs,
                                     method="udp-dport", shuffle=shuffle))  # fmt: skip
        sent = [s[0] for s in _sent(rig)]
        rounds = [sent[i : i + len(ALL)] for i in range(0, len(sent), len(ALL))]
        assert len(rounds) == 6 and all(sorted(r) == sorted(ALL) for r in rounds)
        assert len(got) == 6 * len(ALL)  # every probe still matched
        orders[shuffle] = {tuple(r) for r in rounds}
        (d,) = read_warts(dealias_object(runs[0]))
        assert d.method.get(6) == (1 if shuffle else None)
    assert orders[False] == {tuple(ALL)}
    assert len(orders[True]) > 1  # (six rounds of 5! orders all alike: 1 in 120^5)


def test_one_address_is_mercators_test() -> None:
    # scamper's `dealias -m mercator A`: one address, a UDP probe, aliases when the port
    # unreachable comes from another address, else none; ours took two addresses at
    # least ("give at least two different addresses"), with a UDP method one now
    from packetlab.cli import run_alias
    from packetlab.cli.run import RunError, build_parser
    from packetlab.cli.run_command import Progress

    merc = "10.77.4.44"
    table = {merc: Router({"udp"}, 500, errors_from="10.77.4.45"), DP_D: Router({"udp"}, 9)}

    def run(*argv: str) -> list[dict[str, Any]]:
        args = build_parser().parse_args(["alias", "--wait", "0.5", *argv])
        records: list[dict[str, Any]] = []
        rig = rig_with(table)
        go = run_alias.experiment(args, records.append, Progress())
        rig.run(Deferred.fromCoroutine(go([rig.session])))
        return records

    for how in (["--method", "udp"], ["--single-stage"], []):  # (auto has udp)
        records = run(*how, merc)
        pairs = [(r["a"], r["b"], r["by"]) for r in records if r["type"] == "alias"]
        assert pairs == [(merc, "10.77.4.45", ["mercator"])]
        assert run_alias.summary(records)["verdict"] == "aliases"
        records = run(*how, DP_D)
        assert not [r for r in records if r["type"] == "alias"]
        assert run_alias.summary(records)["verdict"] == "none"
        line = run_alias.row({"type": "summary", **run_alias.summary(records)})
        assert line == "# 0 alias pairs: none"
    args = build_parser().parse_args(["alias", "--method", "icmp-echo,tcp-ack", merc])
    with pytest.raises(RunError, match="give at least two different addresses"):
        run_alias.experiment(args, lambda r: None, Progress())


def test_round_wait_spreads_the_rounds_as_scampers_r() -> None:
    # scamper's radargun `-W 10 -r 200`: rounds 200 ms apart (start to start), probes 10
    # ms apart inside one; its warts wait-round 200. By default back to back (20 ms).
    from packetlab.measure.warts_dealias import dealias_object
    from packetlab.measure.warts_read import read_warts

    table = {t: Router({"udp"}, 1000 * i) for i, t in enumerate(ALL)}
    for round_wait, want, wait_round in ((0.2, [0, 10, 200, 210, 400, 410], 200),
                                         (0.0, [0, 10, 20, 30, 40, 50], 20)):  # fmt: skip
        rig = rig_with(table)
        runs: list[ProbeRun] = []
        got = rig.run(collect_ip_ids([rig.session], [DP_D, DP_E], rounds=3, wait=0.5,
                                     spacing=0.01, runs=runs, method="udp-dport",
                                     round_wait=round_wait))  # fmt: skip
        assert len(got) == 6
        tx = [p.tx_ns for p in runs[0].probes]
        assert all(t is not None for t in tx)
        ms = [round((t - tx[0]) / 1e6) for t in tx if t is not None and tx[0] is not None]
        assert ms == want
        (d,) = read_warts(dealias_object(runs[0]))
        assert (d.method[3], d.method[4]) == (10, wait_round)


def test_cli_round_wait_option() -> None:
    from packetlab.cli import run_alias
    from packetlab.cli.run import RunError, build_parser
    from packetlab.cli.run_command import Progress

    args = build_parser().parse_args(["alias", "-r", "-5", DP_D, DP_E])
    with pytest.raises(RunError, match=r"--round-wait must be 0\.\.3600000, got -5"):
        run_alias.experiment(args, lambda r: None, Progress())
    quick = build_parser().parse_args(["alias", DP_D, DP_E])
    slow = build_parser().parse_args(["alias", "--round-wait", "1000", DP_D, DP_E])
    for a in (quick, slow):  # (experiment fills in args.targets the budget reads)
        run_alias.experiment(a, lambda r: None, Progress())
    # 10 + 2 x 10 (discovery, windows) + 20 + 20 rounds of 1 s each at least, more or less
    assert run_alias.budget(slow) - run_alias.budget(quick) >= 70
