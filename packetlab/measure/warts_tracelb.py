"""scamper's warts tracelb record, for `pktlab run traceroute --mda --warts` (`tracelb_warts`:
a whole file, list, cycle start, tracelb, --multilevel's dealias records, cycle stop):
its fields (the node and link counts among them), each node's, then each link's followed
by its probe sets (a count, then each probe's fields followed by its replies')."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from packetlab.measure.replies import ReplyKind
from packetlab.measure.warts_dealias import dealias_object
from packetlab.measure.warts_format import (
    OBJ_TRACELB,
    AddressTable,
    WartsError,
    cycle_start_object,
    cycle_stop_object,
    list_object,
    params,
    record,
    timeval,
    u8,
    u16,
    u32,
    whole_seconds,
)

if TYPE_CHECKING:
    from packetlab.measure.alias import ProbeRun
    from packetlab.measure.mda import MdaResult


# tracelb: its types by our MDA methods (scamper's udp-sport, icmp-echo, tcp-sport), the
# record's fields, a node's, a link's, a probe set's, a probe's, a reply's (flag ids)
TRACELB_TYPES = {"udp-paris": 0x03, "icmp-paris": 0x02, "tcp": 0x04}
_LB_LIST, _LB_CYCLE, _LB_START, _LB_SPORT, _LB_DPORT, _LB_SIZE, _LB_TYPE = 1, 2, 5, 6, 7, 8, 9
_LB_FIRSTHOP, _LB_WAIT_TIMEOUT, _LB_WAIT_PROBE, _LB_ATTEMPTS, _LB_CONFIDENCE = 10, 11, 12, 13, 14
_LB_TOS, _LB_NODEC, _LB_LINKC, _LB_PROBEC, _LB_PROBECMAX, _LB_GAPLIMIT = 15, 16, 17, 18, 19, 20
_LB_SRC, _LB_DST = 21, 22
_LN_FLAGS, _LN_LINKC, _LN_QTTL, _LN_ADDR = 2, 3, 4, 5
LB_NODE_FLAG_QTTL = 0x01
_LL_FROM, _LL_TO, _LL_HOPC = 1, 2, 3
_LP_TX, _LP_FLOWID, _LP_TTL, _LP_ATTEMPT, _LP_RXC = 1, 2, 3, 4, 5
_LR_RX, _LR_IPID, _LR_TTL, _LR_FLAGS, _LR_ICMP_TC, _LR_TCP_FLAGS, _LR_Q_TTL, _LR_Q_TOS = (
    1, 2, 3, 4, 5, 6, 8, 9,
)  # fmt: skip
_LR_FROM = 11
LB_REPLY_FLAG_REPLY_TTL, LB_REPLY_FLAG_TCP = 0x01, 0x02


def _tracelb_reply(p: Any, table: AddressTable) -> dict[int, bytes]:
    r = p.reply
    flags = LB_REPLY_FLAG_REPLY_TTL
    fields: dict[int, bytes] = {_LR_IPID: u16(r.ip_id or 0), _LR_TTL: u8(r.ttl)}
    if p.rx_ns is not None:
        fields[_LR_RX] = timeval(p.rx_ns)
    if r.icmp_type is None:  # a TCP reply: SYN-ACK or RST (to our SYNs: with ACK)
        flags |= LB_REPLY_FLAG_TCP
        fields[_LR_TCP_FLAGS] = u8(0x14 if r.kind == ReplyKind.TCP_RST else 0x12)
    else:
        fields[_LR_ICMP_TC] = u8(r.icmp_type) + u8(r.icmp_code or 0)
        fields[_LR_Q_TTL] = u8(r.quoted_ttl or 0)
        fields[_LR_Q_TOS] = u8(0)
    fields[_LR_FLAGS] = u8(flags)
    fields[_LR_FROM] = table.encode(str(r.src))
    return fields


def _tracelb_links(
    result: MdaResult,
) -> tuple[dict[tuple[str, str | None, int], list[list[Any]]], set[str]]:
    """(A, B, hopc) -> the probe sets of the link from A to B, as scamper's tracelb joins
    them (`_flow_links` per flow, then `_clumps`), and the interfaces inside clumps: no
    nodes (scamper's nodes are where the flows through the node before converge; the
    interfaces of a load-balanced stretch between two are only its probe sets' replies)."""
    flows = _flows(result)
    per_flow = _flow_links(flows)
    links = _clumps(flows, per_flow, _roots(result, per_flow))
    kept = {a for a, _, _ in links} | {b for _, b, _ in links if b is not None}
    inner = ({a for a, _, _ in per_flow} | {b for _, b, _ in per_flow}) - kept
    return links, inner


def _flows(result: MdaResult) -> dict[int, dict[int, Any]]:
    """flow -> TTL -> its probe (of a probe sent again, --attempts, the answered one)."""
    by_flow: dict[int, dict[int, Any]] = {}
    for p in result.probes:
        at = by_flow.setdefault(p.flow, {})
        if p.ttl not in at or at[p.ttl].reply is None:
            at[p.ttl] = p
    return by_flow


def _flow_links(
    by_flow: dict[int, dict[int, Any]],
) -> dict[tuple[str, str, int], list[list[Any]]]:
    """(A, B, hopc) -> probe sets: for each flow, a probe answered by B at TTL t whose flow
    last answered from A at t - hopc, every TTL between probed and silent; set j holds
    such flows' probes at t - hopc + 1 + j."""
    links: dict[tuple[str, str, int], list[list[Any]]] = {}
    for flow_probes in by_flow.values():
        last: tuple[str, int] | None = None
        for ttl in sorted(flow_probes):
            p = flow_probes[ttl]
            if p.reply is None:
                continue
            here = str(p.reply.src)
            if last is not None:
                a, before = last
                between = [flow_probes.get(t) for t in range(before + 1, ttl)]
                if all(q is not None and q.reply is None for q in between):
                    sets = links.setdefault(
                        (a, here, ttl - before), [[] for _ in range(ttl - before)]
                    )
                    for j, q in enumerate([*between, p]):
                        sets[j].append(q)
            last = (here, ttl)
    return links


def _roots(result: MdaResult, links: dict[tuple[str, str, int], list[list[Any]]]) -> list[str]:
    """The interfaces no link leads to (the first hop's), in TTL order."""
    ends = {b for _, b, _ in links}
    return [a for hop in result.hops for a in hop.addrs if a not in ends]


def _clumps(
    by_flow: dict[int, dict[int, Any]],
    links: dict[tuple[str, str, int], list[list[Any]]],
    roots: list[str],
) -> dict[tuple[str, str | None, int], list[list[Any]]]:
    """scamper's clumps: where a node's flows go on to more than one (next interface,
    hopc) (a load balancer, or some flows silent), scamper follows those flows TTL by TTL
    until all that answer at one TTL answer from one interface, and writes one link to
    it, of a probe set per TTL (sc_warts2text: ``r1 -> (ra, rb) -> r2``). A stretch that
    does not converge before the run ends, or halts (`_clump`), is one link from the node
    without a far end (B None), as scamper writes a clump it did not finish; nothing
    past it is followed."""
    out: dict[tuple[str, str | None, int], list[list[Any]]] = {}
    todo, seen = list(roots), set(roots)
    while todo:
        a = todo.pop(0)
        mine: dict[tuple[str, str | None, int], list[list[Any]]]
        mine = {k: v for k, v in links.items() if k[0] == a}
        joined = _clump(by_flow, a) if len(mine) > 1 else None
        if joined is not None:
            mine = {(a, joined[0], len(joined[1])): joined[1]}
        out.update(mine)
        for _, b, _ in mine:
            if b is not None and b not in seen:
                seen.add(b)
                todo.append(b)
    return out


def _clump(by_flow: dict[int, dict[int, Any]], a: str) -> tuple[str | None, list[list[Any]]] | None:
    """(B, probe sets) of the clump from `a`: its flows' probes at each TTL past their
    answer from `a`, up to the first TTL where every answer is B. B is None for a
    **half-converged** clump, as scamper leaves it: the flows' probes end first (the run
    ended: its probe budget, -Q, or the hop limit) or, before they converge, some answer
    otherwise than time exceeded (the destination, an unreachable: scamper halts the
    clump there, its sets up to that TTL). None: no probe past `a` at all."""
    starts = {}  # flow -> the TTL it answered from a at
    for flow, probes in by_flow.items():
        at = [t for t, p in probes.items() if p.reply is not None and str(p.reply.src) == a]
        if at:
            starts[flow] = min(at)
    sets: list[list[Any]] = []
    for j in range(1, 256):
        here = [p for f, t in starts.items() if (p := by_flow[f].get(t + j)) is not None]
        here.sort(key=lambda p: (p.tx_ns is None, p.tx_ns or 0))  # send order, as scamper
        if not here:
            return (None, sets) if sets else None
        sets.append(here)
        answered = {None if p.reply is None else str(p.reply.src) for p in here}
        if len(answered) == 1 and None not in answered:  # scamper: one node, none silent
            return str(answered.pop()), sets
        if any(p.reply is not None and p.reply.kind is not ReplyKind.TIME_EXCEEDED
               for p in here):  # fmt: skip
            return None, sets  # scamper halts there: a link without a far end
    return None, sets


def tracelb_object(
    result: MdaResult,
    *,
    list_id: int = 1,
    cycle_id: int = 1,
    first_ttl: int = 1,
    wait_s: float = 2.0,
    gaplimit: int | None = None,
    probec_max: int | None = None,
    tos: int = 0,
) -> bytes:
    """scamper's tracelb record of an MDA run: a node per interface (in TTL order, as the
    --json hops list them) but those inside a clump, a link per link of the --json hops
    (A at TTL t - 1, B at t: hopc 1) with the probes at t whose flow answered from A at
    t - 1 and from B at t (its probe set), every probe with its reply; a flow silent at
    TTLs between A and B gives a link of hopc > 1 (as scamper's), a probe set per TTL.
    Where A's flows go on to several interfaces (a load balancer), one link of hopc > 1
    to the interface they converge on, as scamper's clump (`_clumps`). The probes before
    a flow's first answer are in no link. A probe sent again (--attempts) is in its set
    with its earlier tries, as scamper's (each with its `attempt`). `gaplimit` and
    `probec_max` default to the run's (`result.gaplimit`, `result.max_probes`)."""
    if result.method not in TRACELB_TYPES:
        raise WartsError(f"no warts tracelb type for method {result.method!r}")
    table = AddressTable()
    links, inner = _tracelb_links(result)
    nodes: list[str] = []
    for hop in result.hops:
        nodes += [a for a in hop.addrs if a not in nodes and a not in inner]
    index = {a: i for i, a in enumerate(nodes)}
    # (a half-converged link, without a far end, after the node's others)
    order = sorted(links, key=lambda k: (index[k[0]], index.get(k[1] or "", len(nodes)), k[2]))
    if len(nodes) > 0xFFFF or len(order) > 0xFFFF:
        raise WartsError("more than 65535 nodes or links for one warts tracelb")
    linkc = {a: 0 for a in nodes}
    for a, _, _ in order:
        linkc[a] += 1
    start_ns = result.start_ns or min((p.tx_ns for p in result.probes if p.tx_ns), default=0)
    fields: dict[int, bytes] = {
        _LB_LIST: u32(list_id),
        _LB_CYCLE: u32(cycle_id),
        _LB_START: timeval(start_ns),
        _LB_SPORT: u16(result.sport or 0),
        _LB_DPORT: u16(result.dport or 0),
        _LB_SIZE: u16(result.probe_size or 0),
        _LB_TYPE: u8(TRACELB_TYPES[result.method]),
        _LB_FIRSTHOP: u8(first_ttl),
        _LB_WAIT_TIMEOUT: u8(whole_seconds(wait_s)),
        _LB_WAIT_PROBE: u8(result.wait_probe_cs),  # (0: ours go a round at once)
        _LB_ATTEMPTS: u8(result.attempts),
        _LB_CONFIDENCE: u8(round(result.confidence * 100)),
        _LB_TOS: u8(tos),
        _LB_NODEC: u16(len(nodes)),
        _LB_LINKC: u16(len(order)),
        _LB_PROBEC: u32(len(result.probes)),
        _LB_PROBECMAX: u32(result.max_probes if probec_max is None else probec_max),
        _LB_GAPLIMIT: u8(result.gaplimit if gaplimit is None else gaplimit),
    }
    if result.src is not None:
        fields[_LB_SRC] = table.encode(result.src)
    fields[_LB_DST] = table.encode(result.dst)
    out = [params(fields)]
    q_ttl: dict[str, int] = {}  # the quoted TTL of the first reply from each (scamper's)
    for p in result.probes:
        if p.reply is not None and p.reply.quoted_ttl is not None:
            q_ttl.setdefault(str(p.reply.src), p.reply.quoted_ttl)
    tries: dict[tuple[int, int], list[Any]] = {}  # (flow, ttl) -> its probes, in order
    for p in result.probes:
        tries.setdefault((p.flow, p.ttl), []).append(p)
    for a in nodes:
        node = {_LN_FLAGS: u8(0), _LN_LINKC: u16(linkc[a]), _LN_ADDR: table.encode(a)}
        if a in q_ttl:
            node[_LN_FLAGS] = u8(LB_NODE_FLAG_QTTL)
            node[_LN_QTTL] = u8(q_ttl[a])
        out.append(params(node))
    for a, b, hopc in order:
        link = {_LL_FROM: u16(index[a]), _LL_HOPC: u8(hopc)}
        if b is not None:  # (scamper's half-converged clump: no far end, no field)
            link[_LL_TO] = u16(index[b])
        out.append(params(link))
        for hop_set in links[(a, b, hopc)]:
            probes = [q for p in hop_set for q in tries.get((p.flow, p.ttl), [p])]
            probes = [p for p in probes if p.tx_ns is not None]
            out.append(params({1: u16(len(probes))}))
            for p in probes:
                assert p.tx_ns is not None
                probe = {
                    _LP_TX: timeval(p.tx_ns),
                    _LP_FLOWID: u16(p.flowid),
                    _LP_TTL: u8(p.ttl),
                    _LP_ATTEMPT: u8(p.attempt),
                    _LP_RXC: u16(0 if p.reply is None else 1),
                }
                out.append(params(probe))
                if p.reply is not None:
                    out.append(params(_tracelb_reply(p, table)))
    return record(OBJ_TRACELB, b"".join(out))


def tracelb_warts(
    result: MdaResult,
    *,
    stop_s: int | None = None,
    hostname: str = "",
    alias_runs: Iterable[ProbeRun] = (),
    **lb: Any,
) -> bytes:
    """A whole warts file for one MDA run: list, cycle start, tracelb, a dealias record
    (radargun) per probing run of `alias_runs` (`--multilevel`'s rounds: their indirect
    probes defined as the trace's flows they went by), cycle stop; `lb`:
    `tracelb_object`'s keywords (first_ttl, wait_s, gaplimit...)."""
    start_s = (result.start_ns or 0) // 1_000_000_000
    if stop_s is None:
        stop_s = max([start_s * 10**9] + [p.rx_ns or 0 for p in result.probes]) // 10**9
    return (
        list_object()
        + cycle_start_object(start_s, hostname=hostname)
        + tracelb_object(result, **lb)
        + b"".join(dealias_object(run, flows=True) for run in alias_runs if run.probes)
        + cycle_stop_object(stop_s)
    )
