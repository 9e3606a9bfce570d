"""packetlab.measure.mda: the MDA's stopping rule and probe plan over simulated per-flow
load balancers, and mda_trace over a scripted endpoint (iosim, task.Clock)."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest
from test_traceroute_fakes import R14, R24, TG4, RawRig

from packetlab.controller.stop import StopSignal
from packetlab.measure.mda import MdaHop, MdaPlan, format_mda_hop, mda_trace, stopping_points
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


def test_mda_bad_arguments() -> None:
    rig = RawRig([TG4])
    for kw, message in [
        ({"method": "udp"}, "MDA method"),
        ({"confidence": 1.5}, "confidence"),
        ({"wait": 0}, "wait"),
        ({"max_ttl": 0}, "first_ttl"),
    ]:
        with pytest.raises(ValueError, match=message):
            rig.run(mda_trace(rig.session, TG4, **kw))  # type: ignore[arg-type]
    assert rig.endpoint.raw_sends == []
