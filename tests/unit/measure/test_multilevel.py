"""packetlab.measure.multilevel (Multilevel MDA-Lite's router-level view) over the scripted
raw endpoint: a per-flow load balancer's next hops at TTL 2, two of them one router's
interfaces (one IP-ID counter), one another router; alias resolution through the flows
the trace saw reach each interface groups the two and keeps the third apart."""

from __future__ import annotations

import ipaddress
import struct
import zlib

import pytest
from test_alias_methods import Router
from test_traceroute_fakes import RawRig

from packetlab.measure.alias import IdSample
from packetlab.measure.mda import MdaHop, MdaResult, mda_trace
from packetlab.measure.multilevel import (
    RouterHop,
    alias_candidates,
    format_routers,
    group_routers,
    initial_ttl,
    mpls_stacks,
    resolve_routers,
)
from packetlab.measure.packets import PROTO_ICMP, PROTO_UDP, inet_checksum, ip_packet
from packetlab.testbed.mpls_responder import extension

R1, A1, A2, B, FAR = "10.77.1.2", "10.77.2.60", "10.77.2.61", "10.77.2.63", "10.77.2.62"


class Switching:
    """A counter that is `first`'s for the first `n` IDs it gives, then `then`'s."""

    def __init__(self, first: Router, then: Router, n: int) -> None:
        self.first, self.then, self.n = first, then, n

    def next_id(self, now: float, method: str) -> int:
        self.n -= 1
        return (self.first if self.n >= 0 else self.then).next_id(now, method)


def balanced_rig(
    b_ttl: int = 63, labels: dict[str, list[list[int]]] | None = None
) -> tuple[RawRig, dict[str, Router | Switching]]:
    """ep - R1 - {A1, A2, B} (per flow: the UDP source port, the ICMP checksum) - FAR.
    A1 and A2 number their time exceeded from one counter; A1 also answers echo
    requests from it; B and R1 have their own counters; FAR answers UDP with a port
    unreachable. `b_ttl`: the TTL B's replies arrive with. `labels`: per interface the
    MPLS label stacks its time exceeded carries (RFC 4884/4950), taken in turn."""
    shared = Router({"icmp-echo"}, 30000)
    table: dict[str, Router | Switching] = {
        A1: shared, A2: shared, B: Router(set(), 50000), R1: Router(set(), 100),
    }  # fmt: skip
    turn = dict.fromkeys(labels or {}, 0)
    rig = RawRig([FAR])
    clock = rig.clock

    def answer(probe: bytes) -> list[tuple[float, bytes]]:
        src, dst = (str(ipaddress.ip_address(probe[a : a + 4])) for a in (12, 16))
        ttl, proto = probe[8], probe[9]
        if dst == A1 and proto == PROTO_ICMP and probe[20] == 8:  # echo request
            msg = bytes([0, 0, 0, 0]) + probe[24:]
            kind, frm, out_ttl = msg, A1, 63
        elif dst != FAR:
            return []
        elif ttl <= 2:
            flow = probe[22:24] if proto == PROTO_ICMP else probe[20:22]
            frm = R1 if ttl == 1 else [A1, A2, B][zlib.crc32(flow) % 3]
            kind, out_ttl = bytes([11, 0, 0, 0, 0, 0, 0, 0]) + probe[:28], 63
            if frm == B:
                out_ttl = b_ttl
            if labels and frm in labels:  # the quote padded to 128 bytes, then the stack
                stacks = labels[frm]
                stack = stacks[turn[frm] % len(stacks)]
                turn[frm] += 1
                ext = extension(
                    [(lb, 0, int(i == len(stack) - 1), 1) for i, lb in enumerate(stack)]
                )
                kind = bytes([11, 0, 0, 0, 0, 32, 0, 0]) + probe[:28].ljust(128, b"\0") + ext
        elif proto == PROTO_UDP:
            kind, frm, out_ttl = bytes([3, 3, 0, 0, 0, 0, 0, 0]) + probe[:28], FAR, 62
        elif proto == PROTO_ICMP and probe[20] == 8:
            kind, frm, out_ttl = bytes([0, 0, 0, 0]) + probe[24:], FAR, 62
        else:
            return []  # (a TCP SYN: FAR silent, the trace ends at the gap limit)
        msg = kind[:2] + struct.pack("!H", inet_checksum(kind)) + kind[4:]
        ident = table[frm].next_id(clock.seconds(), "x") if frm in table else 1
        return [(0.001, ip_packet(frm, src, PROTO_ICMP, msg, ttl=out_ttl, ident=ident))]

    rig.endpoint.answers = answer  # type: ignore[method-assign]
    return rig, table


@pytest.mark.parametrize("method", ["udp-paris", "icmp-paris", "tcp"])
def test_two_interfaces_of_one_router_are_grouped_through_their_flows(method: str) -> None:
    rig, _ = balanced_rig()
    trace = rig.run(mda_trace(rig.session, FAR, wait=1.0, sport=40000, lite=True, method=method))
    assert [set(h.addrs) for h in trace.hops][:2] == [{R1}, {A1, A2, B}]
    sent = len(rig.endpoint.raw_sends)
    got = rig.run(resolve_routers(rig.session, trace))
    (hop,) = got.hops
    assert hop.ttl == 2 and sorted(map(sorted, hop.routers)) == [[A1, A2], [B]]
    assert hop.pairs == ((A1, A2),) and hop.unresolved == ()
    # A2 and B answer nothing sent to them: read through their flows; A1 by echo
    assert got.methods == {A1: "icmp-echo", A2: "indirect", B: "indirect"}
    assert got.fingerprints[A2] == (64, None) and got.fingerprints[A1] == (64, 64)
    # every indirect probe went by the flow the trace saw reach its interface: each
    # came back from the interface it was for (none lost to another branch)
    probes = rig.endpoint.raw_sends[sent:]
    indirect = [p.data for p in probes if p.data[16:20] == ipaddress.ip_address(FAR).packed]
    assert indirect and {p[8] for p in indirect} == {2}
    assert {s.addr for s in got.samples if s.method == "indirect"} == {A1, A2, B}
    n = {a: sum(s.addr == a and s.method == "indirect" for s in got.samples) for a in (A2, B)}
    assert n[A2] == 20 and n[B] == 10  # A2: both rounds, every probe answered; B: round 1
    assert got.probes == len(probes) == 80  # round 1: 3 x 2 methods x 10; round 2: 2 x 10


def test_fingerprints_that_differ_keep_a_shared_looking_counter_apart() -> None:
    rig, table = balanced_rig(b_ttl=254)  # B's replies leave with 255, A's with 64
    table[B] = table[A1]  # B numbers from the same counter: only the TTLs tell them apart
    trace = rig.run(mda_trace(rig.session, FAR, wait=1.0, sport=40000, lite=True))
    got = rig.run(resolve_routers(rig.session, trace, rounds=1))
    (hop,) = got.hops
    assert got.fingerprints[B] == (255, None)
    assert sorted(map(sorted, hop.routers)) == [[A1, A2], [B]]


def test_one_label_stack_joins_two_interfaces_whatever_their_ip_ids() -> None:
    """The paper's MPLS fingerprint: A2 and B quote one label stack each, the same (a
    router gives one label to the trace's FEC): one router, though their IP-IDs come
    from two counters; A1, unlabelled, joins A2 by its IP-IDs as before. The pair is
    not probed again for its IP-IDs (rounds after the first: A1 and A2 only)."""
    rig, table = balanced_rig(labels={A2: [[24001, 16]], B: [[24001, 16]]})
    table[B] = Router(set(), 50000, zero_for={"indirect"})  # no usable counter at all
    trace = rig.run(mda_trace(rig.session, FAR, wait=1.0, sport=40000, lite=True))
    assert mpls_stacks(trace) == {A2: ((24001, 16),), B: ((24001, 16),)}
    got = rig.run(resolve_routers(rig.session, trace))
    (hop,) = got.hops
    assert sorted(map(sorted, hop.routers)) == [[A1, A2, B]], hop
    assert hop.mpls_pairs == ((A2, B),) and (A1, A2) in hop.pairs and hop.unresolved == ()
    assert got.mpls == {A2: ((24001, 16),), B: ((24001, 16),)}
    again = {s.addr for r in got.runs[1:] for s in r.probes}
    assert again == {A1, A2} and got.rounds == 2 and got.stable
    assert hop.to_dict()["mpls_pairs"] == [[A2, B]]


@pytest.mark.parametrize(
    "stacks",
    [
        {A1: [[16]], A2: [[17]]},  # two labels: two routers
        {A1: [[16]], A2: [[16], [18]]},  # A2 quoted two: its label says nothing of A1
    ],
)
def test_label_stacks_that_differ_keep_one_counter_apart(
    stacks: dict[str, list[list[int]]],
) -> None:
    """A1 and A2 share an IP-ID counter (the MBT alone groups them, test above), but
    both are labelled and their stacks are not one and the same: two routers, as the
    paper's tool eliminates such a pair."""
    rig, _ = balanced_rig(labels=stacks)
    trace = rig.run(mda_trace(rig.session, FAR, wait=1.0, sport=40000, lite=True))
    assert set(mpls_stacks(trace)) == {A1, A2}
    got = rig.run(resolve_routers(rig.session, trace))
    (hop,) = got.hops
    assert sorted(map(sorted, hop.routers)) == [[A1], [A2], [B]] and hop.pairs == ()
    assert got.rounds == 1 and got.stable  # (no pair left to probe again)


def test_rounds_go_on_until_the_alias_sets_stop_changing() -> None:
    """B numbers from A's counter for its first 10 IDs (round 1: all three pass the
    MBT, one set {A1, A2, B}), then from its own: round 2 splits B off (the sets
    changed), round 3 changes nothing (stable): 3 rounds, where 2 were fixed before
    (and kept {A1, A2, B}: `rounds=2` shows what that gave, not stable)."""

    def rig_b_switching() -> tuple[RawRig, MdaResult]:
        rig, table = balanced_rig()
        trace = rig.run(mda_trace(rig.session, FAR, wait=1.0, sport=40000, lite=True))
        a, b = table[A1], table[B]
        assert isinstance(a, Router) and isinstance(b, Router)
        table[B] = Switching(a, b, 10)  # (the trace's own IDs are spent)
        return rig, trace

    rig, trace = rig_b_switching()
    got = rig.run(resolve_routers(rig.session, trace))
    (hop,) = got.hops
    assert sorted(map(sorted, hop.routers)) == [[A1, A2], [B]]
    assert (got.rounds, got.stable, got.max_rounds) == (3, True, 5)
    assert got.probes == 60 + 30 + 20  # round 2: the three of the set; round 3: A1, A2
    assert [len(r.probes) for r in got.runs] == [60, 30, 20]
    rig, trace = rig_b_switching()
    got = rig.run(resolve_routers(rig.session, trace, rounds=2))
    assert (got.rounds, got.stable) == (2, False)  # (the sets changed in its last round)
    rig, trace = rig_b_switching()
    got = rig.run(resolve_routers(rig.session, trace, rounds=1))
    (hop,) = got.hops
    assert sorted(map(sorted, hop.routers)) == [[A1, A2, B]]  # (one round: fooled)
    assert (got.rounds, got.stable) == (1, False)


def result_with(hops: list[MdaHop]) -> MdaResult:
    return MdaResult("10.9.9.9", "10.0.0.1", "udp-paris", 0.95, tuple(hops), 0, True,
                     sport=40000, dport=33434)  # fmt: skip


def test_candidates_are_the_hops_with_several_interfaces_answered_by_time_exceeded() -> None:
    rig, _ = balanced_rig()
    trace = rig.run(mda_trace(rig.session, FAR, wait=1.0, sport=40000, lite=True))
    hops, via, te = alias_candidates(trace)
    assert {t: set(a) for t, a in hops.items()} == {2: {A1, A2, B}}
    assert {a: via[a][:2] for a in (A1, A2, B)} == {a: (FAR, 2) for a in (A1, A2, B)}
    assert te[R1] == 64 and FAR not in via  # (FAR answered with port unreachables)
    # the flow: the probe a via makes is a Paris probe of a flow that reached it
    for a in (A1, A2, B):
        flows = {p.flowid for p in trace.probes if p.reply is not None and str(p.reply.src) == a}
        probe = via[a][2]("10.77.1.1", FAR, 2, 7)
        assert struct.unpack_from("!H", probe.packet, 20)[0] in flows
    assert len(alias_candidates(trace, per_hop=2)[0][2]) == 2  # (bounded)
    with pytest.raises(ValueError, match="flows are unknown"):
        alias_candidates(MdaResult("10.9.9.9", None, "udp-paris", 0.95, (), 0, False))
    assert alias_candidates(result_with([]))[0] == {}


def series(
    addr: str, start: int, method: str = "indirect", n: int = 6, t0: int = 0
) -> list[IdSample]:
    return [IdSample(addr, "ep", t0 + i * 20_000_000, (start + 3 * i) & 0xFFFF, 0, method)
            for i in range(n)]  # fmt: skip


def test_group_routers_from_samples() -> None:
    # X and Y interleave on one counter; Z has its own; W never answered usably (stuck)
    one = [*series("X", 100), *series("Y", 101, t0=10_000_000), *series("Z", 9000)]
    one += [IdSample("W", "ep", i, 5, 0, "indirect") for i in range(6)]
    hops = {3: ["X", "Y", "Z", "W"]}
    (hop,) = group_routers(hops, [one])
    assert hop == RouterHop(3, (("X", "Y"), ("Z",), ("W",)), ("W",), (("X", "Y"),))
    assert format_routers(hop) == " 3  {X Y}  Z  W?"
    assert hop.to_dict()["routers"] == [["X", "Y"], ["Z"], ["W"]]
    # a later round where they no longer interleave: no alias
    two = [*series("X", 100), *series("Y", 40000, t0=10_000_000)]
    (hop,) = group_routers(hops, [one, two])
    assert hop.pairs == () and len(hop.routers) == 4
    # fingerprints: a time exceeded from 64 vs 255 is two routers
    (hop,) = group_routers(hops, [one], {"X": (64, None), "Y": (255, None)})
    assert hop.pairs == ()
    (hop,) = group_routers(hops, [one], {"X": (64, None), "Y": (64, 64)})
    assert hop.pairs == (("X", "Y"),)
    # interfaces of different hops are never compared
    (h3, h4) = group_routers({3: ["X", "Z"], 4: ["Y", "Z"]}, [one])
    assert h3.pairs == () and h4.pairs == ()


def test_initial_ttl() -> None:
    assert [initial_ttl(t) for t in (1, 32, 33, 63, 64, 65, 128, 129, 255)] == [
        32, 32, 64, 64, 64, 128, 128, 255, 255,
    ]  # fmt: skip


def test_bad_arguments() -> None:
    rig, _ = balanced_rig()
    trace = result_with([])
    for kw in ({"rounds": 0}, {"rounds": 11}, {"samples": 2}, {"samples": 101}):
        with pytest.raises(ValueError, match="need 1 <= rounds"):
            rig.run(resolve_routers(rig.session, trace, **kw))  # type: ignore[arg-type]
