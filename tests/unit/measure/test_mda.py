"""packetlab.measure.mda: the MDA's stopping rule and probe plan over simulated per-flow
load balancers, and mda_trace over a scripted endpoint (iosim, task.Clock)."""

from __future__ import annotations

import hashlib
import itertools
import zlib
from collections.abc import Callable

import pytest
from test_traceroute_fakes import R14, R24, TG4, RawRig

from packetlab.controller.filters import tcpdump_filter
from packetlab.controller.stop import StopSignal
from packetlab.measure.mda import (
    MdaHop,
    MdaLitePlan,
    MdaPlan,
    format_mda_hop,
    mda_trace,
    stopping_points,
)
from packetlab.measure.probes import probe_key

Net = Callable[[int, int], str | None]  # (flow, ttl) -> the interface that answers


def run_plan(net: Net, **kw: float) -> tuple[MdaPlan, int]:
    plan = MdaPlan(**kw)  # type: ignore[arg-type]
    probes = 0
    while wants := plan.next_round():
        for flow, ttl in wants:
            addr = net(flow, ttl)
            plan.answered(flow, ttl, addr, ends=addr == "tg")
            probes += 1
    return plan, probes


def balanced(width: int, at: int = 2, salt: int = 0) -> Net:
    """ep — r1 — {b0..b(width-1)} — r3 — tg, balanced per flow (a hash of the flow) at r1."""

    def net(flow: int, ttl: int) -> str | None:
        if ttl == at:
            return f"b{zlib.crc32(f'{salt}/{flow}'.encode()) % width}"
        return {1: "r1", at + 1: "r3"}.get(ttl, "tg")

    return net


def test_stopping_points_are_the_published_tables() -> None:
    # Veitch et al. 2009 / Paris traceroute and scamper tracelb, 95 % and 99 %
    assert stopping_points(0.95, 10) == [6, 11, 16, 21, 27, 33, 38, 44, 51, 57]
    assert stopping_points(0.99, 8) == [8, 15, 21, 28, 36, 43, 51, 58]
    with pytest.raises(ValueError, match="confidence"):
        stopping_points(1.0)


def test_a_single_path_costs_n1_probes_a_hop() -> None:
    plan, probes = run_plan(lambda flow, ttl: ["r1", "r2", "tg"][min(ttl, 3) - 1])
    assert [h.addrs for h in plan.hops()] == [("r1",), ("r2",), ("tg",)]
    assert probes == 3 * 6 and plan.done


def test_a_diamond_finds_both_branches_and_controls_the_node_after_each() -> None:
    plan, probes = run_plan(balanced(2))
    hops = plan.hops()
    assert [h.addrs for h in hops] == [("r1",), ("b0", "b1"), ("r3",), ("tg",)]
    assert {link for link in hops[2].links} == {("b0", "r3"), ("b1", "r3")}
    # TTL 3: n(1) = 6 flows through each branch, known from TTL 2
    at2, at3 = plan.seen[2], plan.seen[3]
    for b in ("b0", "b1"):
        assert sum(1 for f in at3 if at2.get(f) == b) >= 6
    assert len(at2) >= 11  # n(2) once two are seen
    assert probes < 60


@pytest.mark.parametrize("width", [3, 4, 6])
def test_wider_balancers_are_found(width: int) -> None:
    # with a 95 % bound, a few salts may miss one; these do not, and most must not
    found = [len(run_plan(balanced(width, salt=s))[0].hops()[1].addrs) == width for s in range(20)]
    assert sum(found) >= 18


def test_silent_hops_end_after_the_gap_limit() -> None:
    plan, _ = run_plan(lambda flow, ttl: "r1" if ttl == 1 else None, max_ttl=30)
    hops = plan.hops()
    assert [h.ttl for h in hops] == [1, 2, 3, 4] and hops[1].addrs == ()
    assert hops[1].silent == 6 and plan.done


def test_max_ttl_and_first_ttl() -> None:
    plan, _ = run_plan(balanced(2), first_ttl=2, max_ttl=3)
    assert [h.ttl for h in plan.hops()] == [2, 3]


def test_hop_lines() -> None:
    assert format_mda_hop(MdaHop(2, ("10.0.0.1", "10.0.0.2"), 11)) == " 2  10.0.0.1  10.0.0.2"
    assert format_mda_hop(MdaHop(5, (), 6, silent=6)) == " 5  *"


# -- through an endpoint ------------------------------------------------------------------


def test_mda_trace_through_the_endpoint() -> None:
    rig = RawRig([R14, R24, TG4])
    told: list[MdaHop] = []
    result = rig.run(mda_trace(rig.session, TG4, wait=1.0, sport=40000, on_hop=told.append))
    assert [h.addrs for h in result.hops] == [(R14,), (R24,), (TG4,)]
    assert told == list(result.hops) and result.reached and result.probe_count == 18
    sent = rig.endpoint.raw_sends
    keys = [probe_key(m.data) for m in sent]
    # each flow its own source port, the same destination port; one flow per TTL 1 probe
    assert {k.dport for k in keys} == {33434}
    assert len({k.sport for k in keys[:6]}) == 6
    # TTL 2 reuses the flows that reached R14 (node control)
    assert {k.sport for k in keys[6:12]} == {k.sport for k in keys[:6]}


def test_mda_trace_stops_when_asked() -> None:
    rig = RawRig([R14, None, None, None, TG4])
    stop = StopSignal()
    rig.clock.callLater(1.5, stop.request)
    start = rig.clock.seconds()
    result = rig.run(mda_trace(rig.session, TG4, wait=1.0, stop=stop))
    assert rig.clock.seconds() - start < 3.0
    assert result.hops[0].addrs == (R14,) and not result.reached


def test_mda_trace_keeps_to_the_probe_budget() -> None:
    rig = RawRig([R14] * 9 + [TG4])
    result = rig.run(mda_trace(rig.session, TG4, wait=1.0, max_probes=50))
    assert result.probe_count == len(rig.endpoint.raw_sends) == 50
    assert result.stop_reason == "MAXPROBEC" and not result.reached
    assert result.max_probes == 50 and result.algorithm == "mda"


def test_mda_trace_resends_silent_probes_up_to_attempts() -> None:
    rig = RawRig([R14, None, TG4])
    result = rig.run(mda_trace(rig.session, TG4, wait=1.0, attempts=3))
    # TTL 2 is silent: each of its 6 flows probed 3 times; TTLs 1 and 3 once each
    assert result.probe_count == 6 + 18 + 6 and result.reached
    assert result.stop_reason == "COMPLETED" and result.attempts == 3
    at2 = [p.attempt for p in result.probes if p.ttl == 2]
    assert sorted(at2) == [0] * 6 + [1] * 6 + [2] * 6
    assert {p.attempt for p in result.probes if p.ttl != 2} == {0}


def test_mda_trace_gap_limit_and_wait_probe() -> None:
    rig = RawRig([R14, None, None, None, TG4])
    result = rig.run(mda_trace(rig.session, TG4, wait=1.0, gaplimit=1, wait_probe=0.25))
    assert [h.ttl for h in result.hops] == [1, 2] and result.stop_reason == "GAPLIMIT"
    tx = [p.tx_ns or 0 for p in result.probes if p.ttl == 1]
    assert all(tx)
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(tx)]
    # (the rig's clock steps by 0.5 ms)
    assert len(gaps) == 5 and all(0.25 <= g < 0.252 for g in gaps)
    assert result.wait_probe_cs == 25


def test_mda_lite_trace_through_the_endpoint() -> None:
    rig = RawRig([R14, R24, TG4])
    result = rig.run(mda_trace(rig.session, TG4, wait=1.0, lite=True, on_hop=None))
    assert [h.addrs for h in result.hops] == [(R14,), (R24,), (TG4,)]
    assert result.probe_count == 18 and result.algorithm == "mda-lite"
    assert [h.meshed for h in result.hops] == [False] * 3


def test_mda_bad_arguments() -> None:
    rig = RawRig([TG4])
    for kw, message in [
        ({"method": "udp"}, "MDA method"),
        ({"confidence": 1.5}, "confidence"),
        ({"wait": 0}, "wait"),
        ({"max_ttl": 0}, "first_ttl"),
        ({"max_probes": 49}, "max_probes"),
        ({"gaplimit": 6}, "gaplimit"),
        ({"attempts": 0}, "attempts"),
        ({"wait_probe": 2.5}, "wait_probe"),
    ]:
        with pytest.raises(ValueError, match=message):
            rig.run(mda_trace(rig.session, TG4, **kw))  # type: ignore[arg-type]
    assert rig.endpoint.raw_sends == []


# -- scamper's tracelb limits: -g gaplimit, -q attempts, -Q maxprobec -----------------------


def test_the_gap_limit_is_an_option() -> None:
    for gaplimit in (1, 2, 5):
        plan, _ = run_plan(lambda flow, ttl: "r1" if ttl == 1 else None, gaplimit=gaplimit)
        assert [h.ttl for h in plan.hops()] == list(range(1, gaplimit + 2))
        assert plan.stop_reason == "GAPLIMIT"
    with pytest.raises(ValueError, match="gaplimit"):
        MdaPlan(gaplimit=0)


def test_the_probe_budget_ends_the_trace_where_it_runs_out() -> None:
    full, probes = run_plan(balanced(2))
    assert full.stop_reason == "COMPLETED" and probes > 20
    plan, spent = run_plan(balanced(2), max_probes=20)
    assert spent == plan.sent == 20 and plan.done
    assert plan.stop_reason == "MAXPROBEC"
    assert plan.hops()[0].ttl == 1 and not plan.ended
    # a budget the trace does not reach changes nothing
    same, spent = run_plan(balanced(2), max_probes=probes)
    assert spent == probes and same.stop_reason == "COMPLETED"


def test_unanswered_probes_are_sent_again_up_to_attempts() -> None:
    lost: set[tuple[int, int]] = set()

    def flaky(flow: int, ttl: int) -> str | None:
        # each (flow, ttl)'s first probe is lost, its second answered
        if (flow, ttl) not in lost:
            lost.add((flow, ttl))
            return None
        return ["r1", "r2", "tg"][min(ttl, 3) - 1]

    plan, probes = run_plan(flaky, attempts=2)
    assert [h.addrs for h in plan.hops()] == [("r1",), ("r2",), ("tg",)]
    assert probes == 2 * 3 * 6 and all(h.silent == 0 for h in plan.hops())
    assert max(plan.tries.values()) == 2
    lost.clear()
    once, _ = run_plan(flaky, attempts=1)  # the first loss is final: three silent TTLs
    assert once.stop_reason == "GAPLIMIT" and once.hops()[0].addrs == ()


# -- MDA-Lite -------------------------------------------------------------------------------


def run_lite(net: Net, **kw: float) -> tuple[MdaLitePlan, int]:
    plan = MdaLitePlan(**kw)  # type: ignore[arg-type]
    probes = 0
    while wants := plan.next_round():
        for flow, ttl in wants:
            addr = net(flow, ttl)
            plan.answered(flow, ttl, addr, ends=addr == "tg")
            probes += 1
    return plan, probes


def _pick(key: str, options: list[str]) -> str:
    # (not CRC32: it is affine, the picks of two routers would be correlated, as Linux's
    # multipath hashes are across namespaces with one seed)
    return options[hashlib.sha256(key.encode()).digest()[0] % len(options)]


def meshed(salt: int = 0) -> Net:
    """ep — r1 — {ra, rb} — {rc, rd} — r2 — tg: r1 balances over ra and rb, and each of
    them over both rc and rd (every ra/rb -> rc/rd link exists: meshed)."""

    def net(flow: int, ttl: int) -> str | None:
        two = _pick(f"{salt}/r1/{flow}", ["ra", "rb"])
        if ttl == 2:
            return two
        if ttl == 3:
            return _pick(f"{salt}/{two}/{flow}", ["rc", "rd"])
        return {1: "r1", 4: "r2"}.get(ttl, "tg")

    return net


def parallel(salt: int = 0) -> Net:
    """The same nodes unmeshed: ra always on to rc, rb to rd."""

    def net(flow: int, ttl: int) -> str | None:
        two = _pick(f"{salt}/r1/{flow}", ["ra", "rb"])
        if ttl == 2:
            return two
        if ttl == 3:
            return {"ra": "rc", "rb": "rd"}[two]
        return {1: "r1", 4: "r2"}.get(ttl, "tg")

    return net


def links(plan: MdaPlan) -> set[tuple[str | None, str]]:
    return {link for h in plan.hops() for link in h.links}


@pytest.mark.parametrize("salt", range(10))
def test_mda_lite_finds_the_diamond_with_fewer_probes(salt: int) -> None:
    full, full_probes = run_plan(balanced(2, salt=salt))
    lite, lite_probes = run_lite(balanced(2, salt=salt))
    assert [h.addrs for h in lite.hops()] == [h.addrs for h in full.hops()]
    assert links(lite) == links(full) == {
        ("r1", "b0"), ("r1", "b1"), ("b0", "r3"), ("b1", "r3"), ("r3", "tg"),
    }  # fmt: skip
    assert lite_probes < full_probes and lite.meshed == set()
    assert [h.meshed for h in lite.hops()] == [False] * 4
    assert [h.meshed for h in full.hops()] == [None] * 4


def test_mda_lite_is_uniform_hop_wide_no_node_control() -> None:
    lite, _ = run_lite(balanced(2))
    # TTL 2: n(2) = 11 flows in all, not 11 through each interface of TTL 1
    assert len(lite.seen[2]) == 11 and len(lite.seen[1]) == 6
    # TTL 3: n(1) = 6 flows, from both branches (every interface traced on)
    assert len(lite.seen[3]) == 6
    assert {lite.seen[2][f] for f in lite.seen[3]} == {"b0", "b1"}


def test_mda_lite_unmeshed_parallel_paths_stay_lite() -> None:
    for salt in range(10):
        lite, lite_probes = run_lite(parallel(salt))
        full, full_probes = run_plan(parallel(salt))
        assert lite.meshed == set()
        assert [h.addrs for h in lite.hops()] == [h.addrs for h in full.hops()]
        if len(lite.hops()[1].addrs) == 2:  # (salt 2: 6 flows all one way, 1 in 32)
            assert {("ra", "rc"), ("rb", "rd")} <= links(lite) and lite_probes < full_probes


def test_mda_lite_falls_back_to_the_mda_where_meshed() -> None:
    falls = 0
    for salt in range(20):
        lite, lite_probes = run_lite(meshed(salt))
        full, full_probes = run_plan(meshed(salt))
        if lite.meshed == {3}:
            falls += 1
            assert [h.addrs for h in lite.hops()] == [
                ("r1",), ("ra", "rb"), ("rc", "rd"), ("r2",), ("tg",),
            ]  # fmt: skip
            # the full MDA at TTL 3: n(k) flows through each of ra and rb, for the k
            # next hops seen behind it (n(1) = 6, n(2) = 11)
            for b in ("ra", "rb"):
                through = [lite.seen[3][f] for f in lite.seen[3] if lite.seen[2].get(f) == b]
                assert len(through) >= [6, 11][len(set(through)) - 1]
            assert [h.meshed for h in lite.hops()] == [False, False, True, False, False]
            assert links(lite) == links(full) and lite_probes < full_probes
    # (a miss: the 6 flows of TTL 2 or 3 all one way, as the 95 % bound allows)
    assert falls >= 17


def test_mda_lite_keeps_to_the_probe_budget() -> None:
    lite, spent = run_lite(meshed(1), max_probes=40)
    assert spent == 40 and lite.stop_reason == "MAXPROBEC"


@pytest.mark.parametrize("method", ["udp-paris", "icmp-paris", "tcp"])
def test_the_capture_takes_only_what_can_answer_a_probe(method: str) -> None:
    """Not every ICMP message and every TCP segment of the target (`icmp`, `icmp or (tcp
    and src host TARGET)`): beside a ping flood or a TCP flow on loopback the capture's
    queue overflowed and answers were lost, as traceroute's did (session 27, icmp27).
    Echo replies only to the trace's own identifier; TCP only from the probed port (the
    flows vary the source port)."""
    rig = RawRig([R14, R24, TG4])
    result = rig.run(mda_trace(rig.session, TG4, wait=1.0, sport=40000, method=method))
    assert result.reached
    (ncap,) = rig.endpoint.ncaps
    icmp = "icmp and (ip[6:2] & 0x1fff != 0 or (icmp[0] != 0 and icmp[0] != 8)"
    want = {
        "udp-paris": f"{icmp})",
        "icmp-paris": f"{icmp} or (icmp[0] = 0 and icmp[4:2] = 40000))",
        "tcp": f"({icmp})) or (tcp and src host {TG4} and src port 33434)",
    }[method]
    assert ncap.filter == tcpdump_filter(want)
