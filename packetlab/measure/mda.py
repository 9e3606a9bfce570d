"""Multipath detection (MDA): every interface of every hop behind per-flow load balancers.

The algorithm of Paris traceroute's MDA and scamper's ``tracelb`` (Augustin, Friedman and
Teixeira, E2EMON 2007; Veitch et al., INFOCOM 2009): probes are Paris probes (one flow
each), and the flow identifier is varied. At a hop, once k next hops have been seen behind
an interface, n(k) flows through that interface must have been probed before the
hypothesis "there are k + 1" can be rejected with the chosen confidence; n(k) is the
smallest n for which k + 1 equally likely next hops would all have shown up with
probability at least that confidence (95 %: 6, 11, 16, 21, 27, ...). Flows known to reach
an interface are reused one TTL further ("node control"); when too few are known, new
flows are probed at the previous TTL until enough reach it.

`MdaPlan` is the algorithm without I/O (which probes next, given what answered);
`mda_trace` runs it through an endpoint, one round of probes in flight at a time.
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from packetlab.controller import EndpointSession, StopSignal, deferred_api
from packetlab.measure.capture import (
    CAPTURE_FILTERS,
    as_target,
    close_capture,
    open_capture,
    parse_ndata,
)
from packetlab.measure.flight import GRACE_S, Waker
from packetlab.measure.probes import (
    TRACEROUTE_BASE_PORT,
    Probe,
    ProbeTable,
    paris_echo_probe,
    paris_udp_probe,
    tcp_syn_probe,
)
from packetlab.measure.replies import Reply, ReplyKind
from packetlab.measure.traceroute import reply_key

__all__ = [
    "MDA_METHODS",
    "MdaHop",
    "MdaPlan",
    "MdaProbe",
    "MdaResult",
    "mda_trace",
    "stopping_points",
]

# The flow identifier: UDP source port (scamper's udp-sport), ICMP checksum, TCP source port
MDA_METHODS = ("udp-paris", "icmp-paris", "tcp")
MAX_FLOWS = 512  # flows probed at one TTL before the hop is given up as unbalanced
GAP_LIMIT = 3  # consecutive TTLs with no answer at all end the trace (scamper's default)


def stopping_points(confidence: float, most: int = 64) -> list[int]:
    """n(k) for k = 1..most: probes through an interface with k next hops seen after
    which a (k + 1)-th is ruled out at `confidence` (0 < confidence < 1). Index 0 is n(1)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    alpha = 1 - confidence
    out = []
    n = 1
    for k in range(1, most + 1):
        hops = k + 1

        def missed(n: int, hops: int = hops) -> float:  # P(some of `hops` not seen in n)
            return sum(
                (-1) ** (i + 1) * math.comb(hops, i) * (1 - i / hops) ** n for i in range(1, hops)
            )

        while missed(n) > alpha:
            n += 1
        out.append(n)
    return out


@dataclass(frozen=True)
class MdaHop:
    """The interfaces found at one TTL and the links to them from the TTL before
    (None: a probe that got no answer)."""

    ttl: int
    addrs: tuple[str, ...]
    probes: int
    links: tuple[tuple[str | None, str], ...] = ()
    silent: int = 0  # probes without an answer

    def to_dict(self) -> dict[str, Any]:
        return {
            "ttl": self.ttl,
            "addrs": list(self.addrs),
            "probes": self.probes,
            "silent": self.silent,
            "links": [list(link) for link in self.links],
        }


@dataclass(frozen=True)
class MdaProbe:
    """One probe as sent (endpoint times; None: no ntag came) and the reply that answered
    it: what scamper's tracelb record holds per probe (`packetlab.measure.warts`)."""

    flow: int
    ttl: int
    flowid: int  # the flow as on the wire: UDP/TCP source port, ICMP checksum
    tx_ns: int | None
    reply: Reply | None = None
    rx_ns: int | None = None


@dataclass(frozen=True)
class MdaResult:
    dst: str
    src: str | None
    method: str
    confidence: float
    hops: tuple[MdaHop, ...]
    probe_count: int
    reached: bool
    probes: tuple[MdaProbe, ...] = ()  # every probe, in send order
    sport: int | None = None  # the first flow's source port (ICMP: the echo identifier)
    dport: int | None = None
    probe_size: int | None = None  # IP length of the probes
    start_ns: int | None = None  # the first probe's send time

    def addresses_by_ttl(self) -> dict[int, frozenset[str]]:
        return {h.ttl: frozenset(h.addrs) for h in self.hops}


@dataclass
class MdaPlan:
    """The MDA without I/O: `next_round()` says which (flow, ttl) to probe, `answered()`
    takes what came back (the answering address, None for silence)."""

    first_ttl: int = 1
    max_ttl: int = 30
    confidence: float = 0.95
    max_flows: int = MAX_FLOWS
    ttl: int = field(init=False)
    seen: dict[int, dict[int, str | None]] = field(init=False, default_factory=dict)
    ended: dict[int, bool] = field(init=False, default_factory=dict)  # ttl -> reached dst
    done: bool = field(init=False, default=False)
    flows: int = field(init=False, default=0)  # flow identifiers handed out

    def __post_init__(self) -> None:
        self.ttl = self.first_ttl
        self.n = stopping_points(self.confidence)

    def _need(self, k: int) -> int:
        return self.n[min(max(k, 1), len(self.n)) - 1]

    def _new_flows(self, count: int) -> list[int]:
        out = list(range(self.flows, self.flows + count))
        self.flows += count
        return out

    def _wants_at(self, ttl: int) -> list[tuple[int, int]]:
        """Probes still needed to finish `ttl` (empty: it is done)."""
        here = self.seen.setdefault(ttl, {})
        before = self.seen.get(ttl - 1) if ttl > self.first_ttl else None
        if len(here) >= self.max_flows:
            return []
        if not before or all(a is None for a in before.values()):
            # the first hop, or after a silent one: every flow counts as through one node
            k = len({a for a in here.values() if a is not None})
            return [(f, ttl) for f in self._new_flows(max(0, self._need(k) - len(here)))]
        groups: dict[str, list[int]] = {}
        for f, a in before.items():
            if a is not None:  # flows lost at ttl - 1 say nothing about who is behind whom
                groups.setdefault(a, []).append(f)
        wants: list[tuple[int, int]] = []
        short = 0
        for flows in groups.values():
            probed = [f for f in flows if f in here]
            k = len({here[f] for f in probed} - {None})
            need = self._need(k) - len(probed)
            fresh = [f for f in flows if f not in here][: max(0, need)]
            wants += [(f, ttl) for f in fresh]
            short = max(short, need - len(fresh))
        if short > 0 and len(before) < self.max_flows:
            # node control: more flows at ttl - 1, enough that the scarcest interface
            # there is likely to get `short` more of them
            spread = short * len(groups)
            wants += [(f, ttl - 1) for f in self._new_flows(spread)]
        return wants

    def next_round(self) -> list[tuple[int, int]]:
        """The probes of the next round; empty when the trace is over."""
        while not self.done:
            wants = self._wants_at(self.ttl)
            if wants:
                return wants
            self._hop_done()
        return []

    def _hop_done(self) -> None:
        silent_run = 0  # TTLs up to this one where nothing answered
        for t in range(self.ttl, self.first_ttl - 1, -1):
            if any(a is not None for a in self.seen.get(t, {}).values()):
                break
            silent_run += 1
        if self.ended.get(self.ttl) or self.ttl >= self.max_ttl or silent_run >= GAP_LIMIT:
            self.done = True
        else:
            self.ttl += 1

    def answered(self, flow: int, ttl: int, addr: str | None, ends: bool = False) -> None:
        """Probe (flow, ttl) was answered by `addr` (None: not answered); `ends` when
        the answer ends the trace (the target, or destination unreachable)."""
        self.seen.setdefault(ttl, {})[flow] = addr
        if ends:
            self.ended[ttl] = True

    def hops(self) -> list[MdaHop]:
        out = []
        for ttl in sorted(self.seen):
            here = self.seen[ttl]
            before = self.seen.get(ttl - 1, {})
            addrs = sorted({a for a in here.values() if a is not None}, key=_addr_order)
            # (a flow first probed at this TTL, for node control one further, has no
            # known predecessor; one whose probe there was lost has None)
            links = {(before[f], a) for f, a in here.items() if a is not None and f in before}
            out.append(
                MdaHop(
                    ttl,
                    tuple(addrs),
                    len(here),
                    tuple(sorted(links, key=lambda x: (_addr_order(x[0] or ""), x[1]))),
                    sum(a is None for a in here.values()),
                )
            )
        return out


def _addr_order(a: str) -> tuple[int, str]:
    try:
        ip = ipaddress.ip_address(a)
    except ValueError:
        return (2, a)
    return (ip.version, f"{int(ip):040d}")


def _mda_probe(
    method: str, src: Any, dst: Any, ttl: int, flow: int, i: int, sport: int, port: int
) -> Probe:
    """Probe number i, of flow `flow`: the flow in the source port (UDP, TCP) or in the
    ICMP checksum, the probe number in the UDP checksum or the sequence number."""
    if method == "icmp-paris":
        return paris_echo_probe(
            src, dst, ttl, ident=sport, seq=i + 1, checksum=(sport + flow) & 0xFFFF
        )
    fport = (sport + flow - 1024) % (65536 - 1024) + 1024  # wraps within 1024..65535
    if method == "tcp":
        return tcp_syn_probe(src, dst, sport=fport, dport=port, seq=i + 1, ttl=ttl)
    return paris_udp_probe(src, dst, ttl, sport=fport, dport=port, index=i)


MdaHopCallback = Callable[[MdaHop], object]


@deferred_api
async def mda_trace(
    session: EndpointSession,
    dst: Any,
    *,
    first_ttl: int = 1,
    max_ttl: int = 30,
    wait: float = 2.0,
    confidence: float = 0.95,
    method: str = "udp-paris",
    sport: int | None = None,
    base_port: int = TRACEROUTE_BASE_PORT,
    src: Any = None,
    on_hop: MdaHopCallback | None = None,
    stop: StopSignal | None = None,
) -> MdaResult:
    """Trace every path to `dst` through per-flow load balancers (MDA). Each round's
    probes go at once; a round ends when all are answered, or `wait` s after it started
    (once some answered: 10 times their longest RTT, at least 50 ms). `on_hop(hop)` is
    called as each TTL is finished. `method`: "udp-paris" (flows in the UDP source port,
    like scamper's udp-sport), "icmp-paris" (flows in the ICMP checksum) or "tcp" (SYNs,
    flows in the source port)."""
    target = as_target(dst)
    if not 1 <= first_ttl <= max_ttl <= 255:
        raise ValueError(f"need 1 <= first_ttl <= max_ttl <= 255, got {first_ttl}, {max_ttl}")
    if not 0 < wait <= 60:
        raise ValueError(f"wait must be in (0, 60] seconds, got {wait}")
    if method not in MDA_METHODS:
        raise ValueError(f"MDA method must be one of {', '.join(MDA_METHODS)}, got {method!r}")
    plan = MdaPlan(first_ttl, max_ttl, confidence)  # (checks the confidence)
    if sport is None:
        sport = random.randrange(32768, 61000)
    elif not 0 < sport <= 0xFFFF:
        raise ValueError(f"sport must be 1..65535, got {sport}")
    expression = None
    if method == "tcp":
        expression = f"{CAPTURE_FILTERS[target.version]} or (tcp and src host {target})"
    budget = (max_ttl - first_ttl + 1) * 8 * (wait + 1.0)  # a capture long enough
    cap = await open_capture(
        session, target, src=None if src is None else as_target(src), duration_s=budget,
        expression=expression,
    )  # fmt: skip
    reactor = session.reactor
    waker = Waker(reactor)
    table: ProbeTable[int] = ProbeTable()
    answers: dict[int, tuple[Reply, int]] = {}
    sent: dict[int, int] = {}
    probes: list[tuple[int, int]] = []  # probe number -> (flow, ttl)
    flowids: list[int] = []
    size: int | None = None
    told = 0
    failures: list[BaseException] = []

    def note(n: object) -> None:
        got = parse_ndata(n)
        if got is None:
            return
        i = table.pop(reply_key(method, got[0]))
        if i is not None:
            answers[i] = got
            waker.poke()

    cap.sock.buffering = False
    remove = cap.sock.add_callback(note)
    try:
        while not (stop is not None and stop.requested):
            wants = plan.next_round()
            if not wants:
                break
            first = len(probes)
            for flow, ttl in wants:
                i = len(probes)
                probes.append((flow, ttl))
                p = _mda_probe(method, cap.src, target, ttl, flow, i, sport, base_port)
                flowids.append(_flowid(method, p, sport, flow))
                size = size or len(p.packet)
                table.add(p.key, i)
                d = session.nsend(cap.sktid, p.packet, time=0, ntag=True)
                d.addCallbacks(_on_ntag(sent, i, failures), lambda f: failures.append(f.value))
            t0 = reactor.seconds()
            deadline = t0 + wait
            stopping = False
            while not failures:
                pending = [i for i in range(first, len(probes)) if i not in answers]
                now = reactor.seconds()
                if not pending or now >= deadline:
                    break
                rtts = [answers[i][1] - sent[i] for i in answers if i >= first and i in sent]
                if rtts:
                    deadline = min(deadline, t0 + max(0.05, 10 * max(rtts) / 1e9))
                await waker.sleep(deadline, None if stopping else stop)
                if stop is not None and stop.requested and not stopping:
                    stopping = True  # the answers in flight: a little longer at most
                    deadline = min(deadline, reactor.seconds() + GRACE_S)
            if failures:
                raise failures[0]
            for i in range(first, len(probes)):
                flow, ttl = probes[i]
                got = answers.get(i)
                addr = None if got is None else str(got[0].src)
                ends = got is not None and (
                    got[0].from_destination or got[0].kind is ReplyKind.DEST_UNREACHABLE
                )
                plan.answered(flow, ttl, addr, ends)
            # node control may still add to the TTL before the current one: tell it later
            while on_hop is not None and told < plan.ttl - first_ttl - 1:
                on_hop(plan.hops()[told])
                told += 1
    finally:
        remove()
        await close_capture(cap)
    hops = plan.hops()
    if on_hop is not None:
        for h in hops[told:]:
            on_hop(h)
    reached = bool(hops) and str(target) in hops[-1].addrs
    log = []
    for i, (flow, ttl) in enumerate(probes):
        got = answers.get(i)
        reply, rx = (None, None) if got is None else got
        log.append(MdaProbe(flow, ttl, flowids[i], sent.get(i), reply, rx))
    return MdaResult(
        dst=str(target),
        src=str(cap.src),
        method=method,
        confidence=confidence,
        hops=tuple(hops),
        probe_count=len(probes),
        reached=reached,
        probes=tuple(log),
        sport=sport,
        dport=None if method == "icmp-paris" else base_port,
        probe_size=size,
        start_ns=min(sent.values(), default=None),
    )


def _flowid(method: str, probe: Probe, sport: int, flow: int) -> int:
    """The flow as on the wire (scamper's flowid): the source port, or the ICMP checksum."""
    if method == "icmp-paris":
        return (sport + flow) & 0xFFFF
    return probe.key.sport


def _on_ntag(sent: dict[int, int], i: int, failures: list[BaseException]) -> Callable[[Any], None]:
    def cb(q: Any) -> None:
        if q.ntag is not None:
            q.ntag.addCallbacks(
                lambda tag: sent.__setitem__(i, tag.time), lambda f: failures.append(f.value)
            )

    return cb


def format_mda_hop(hop: MdaHop) -> str:
    """A hop line like traceroute's, with every interface found at that TTL."""
    if not hop.addrs:
        return f"{hop.ttl:2d}  *"
    return f"{hop.ttl:2d}  " + "  ".join(hop.addrs)


def mda_header(result_dst: str, confidence: float, method: str, max_ttl: int) -> str:
    return (
        f"tracelb to {result_dst}, {max_ttl} hops max, {method}, confidence {confidence * 100:g}%"
    )
