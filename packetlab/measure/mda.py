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

from twisted.internet.task import deferLater

from packetlab.clockstep import steady
from packetlab.controller import EndpointSession, StopSignal, deferred_api
from packetlab.measure.capture import (
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
    icmp_capture,
    paris_echo_probe,
    paris_udp_probe,
    tcp_syn_probe,
)
from packetlab.measure.replies import Reply, ReplyKind
from packetlab.measure.traceroute_probes import reply_key

__all__ = [
    "MDA_METHODS",
    "MdaHop",
    "MdaLitePlan",
    "MdaPlan",
    "MdaProbe",
    "MdaResult",
    "flow_probe",
    "mda_trace",
    "stopping_points",
]

# The flow identifier: UDP source port (scamper's udp-sport), ICMP checksum, TCP source port
MDA_METHODS = ("udp-paris", "icmp-paris", "tcp")
MAX_FLOWS = 512  # flows probed at one TTL before the hop is given up as unbalanced
GAP_LIMIT = 3  # consecutive TTLs with no answer at all end the trace (scamper's default)
# scamper's tracelb limits (its -g, -q, -Q, -W): the ranges it accepts
GAP_LIMITS = (1, 5)
ATTEMPTS = (1, 5)
MAX_PROBES = (50, 65535)
MAX_PROBES_DEFAULT = 3000  # scamper's -Q default
WAIT_PROBE_CS = (0, 200)  # 1/100 s between probes (scamper: 15..200, 25; ours 0: at once)
MESH_FLOWS = 2  # MDA-Lite's meshing test: flows traced across per interface (the paper's phi)


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
    meshed: bool | None = None  # MDA-Lite: this TTL and the one before meshed (full MDA here)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ttl": self.ttl,
            "addrs": list(self.addrs),
            "probes": self.probes,
            "silent": self.silent,
            "links": [list(link) for link in self.links],
        }
        if self.meshed is not None:
            out["meshed"] = self.meshed
        return out


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
    attempt: int = 0  # 0: the first probe of (flow, ttl); 1.. its resends (--attempts)


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
    # why it ended: COMPLETED (an answer ended it), HOPLIMIT, GAPLIMIT, MAXPROBEC (the
    # probe budget ran out), HALTED (stopped); None: not known (a result built by hand)
    stop_reason: str | None = None
    algorithm: str = "mda"  # or "mda-lite"
    gaplimit: int = GAP_LIMIT
    attempts: int = 1
    max_probes: int = MAX_PROBES_DEFAULT
    wait_probe_cs: int = 0

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
    gaplimit: int = GAP_LIMIT  # TTLs in a row without an answer that end it (scamper's -g)
    attempts: int = 1  # probes of one (flow, TTL) before it counts as silent (scamper's -q)
    max_probes: int | None = None  # probes sent in all, resends too (scamper's -Q maxprobec)
    ttl: int = field(init=False)
    seen: dict[int, dict[int, str | None]] = field(init=False, default_factory=dict)
    ended: dict[int, bool] = field(init=False, default_factory=dict)  # ttl -> reached dst
    done: bool = field(init=False, default=False)
    flows: int = field(init=False, default=0)  # flow identifiers handed out
    sent: int = field(init=False, default=0)  # probes handed out by next_round
    tries: dict[tuple[int, int], int] = field(init=False, default_factory=dict)
    resend: list[tuple[int, int]] = field(init=False, default_factory=list)
    stop_reason: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.ttl = self.first_ttl
        self.n = stopping_points(self.confidence)
        if not GAP_LIMITS[0] <= self.gaplimit <= GAP_LIMITS[1]:
            raise ValueError(
                f"gaplimit must be {GAP_LIMITS[0]}..{GAP_LIMITS[1]}, got {self.gaplimit}"
            )
        if not ATTEMPTS[0] <= self.attempts <= ATTEMPTS[1]:
            raise ValueError(f"attempts must be {ATTEMPTS[0]}..{ATTEMPTS[1]}, got {self.attempts}")
        if self.max_probes is not None and self.max_probes < 1:
            raise ValueError(f"max_probes must be at least 1, got {self.max_probes}")

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
        """The probes of the next round (resends of unanswered ones first); empty when
        the trace is over. At most `max_probes` in all: when a round would go past it,
        the round is cut there and the trace ends after it (stop reason MAXPROBEC, as
        scamper's tracelb stops at its -Q)."""
        wants: list[tuple[int, int]] = []
        if self.resend:
            wants, self.resend = self.resend, []
        while not wants and not self.done:
            wants = self._wants_at(self.ttl)
            if not wants:
                self._hop_done()
        if self.max_probes is not None and wants:
            left = self.max_probes - self.sent
            if len(wants) > left:
                wants = wants[: max(0, left)]
                self.done = True
                self.stop_reason = "MAXPROBEC"
        for w in wants:
            self.tries[w] = self.tries.get(w, 0) + 1
        self.sent += len(wants)
        return wants

    def _hop_done(self) -> None:
        silent_run = 0  # TTLs up to this one where nothing answered
        for t in range(self.ttl, self.first_ttl - 1, -1):
            if any(a is not None for a in self.seen.get(t, {}).values()):
                break
            silent_run += 1
        if self.ended.get(self.ttl):
            self.done, self.stop_reason = True, "COMPLETED"
        elif silent_run >= self.gaplimit:
            self.done, self.stop_reason = True, "GAPLIMIT"
        elif self.ttl >= self.max_ttl:
            self.done, self.stop_reason = True, "HOPLIMIT"
        else:
            self.ttl += 1

    def answered(self, flow: int, ttl: int, addr: str | None, ends: bool = False) -> None:
        """Probe (flow, ttl) was answered by `addr` (None: not answered); `ends` when
        the answer ends the trace (the target, or destination unreachable). An unanswered
        probe is sent again in the next round while it has `attempts` left."""
        if addr is None and self.tries.get((flow, ttl), 1) < self.attempts and not self.done:
            self.resend.append((flow, ttl))
            return
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
                    self._meshed(ttl),
                )
            )
        return out

    def _meshed(self, ttl: int) -> bool | None:
        return None


def _by_addr(flows: dict[int, str | None]) -> dict[str, list[int]]:
    """The flows that answered, by the interface that answered them (in flow order)."""
    out: dict[str, list[int]] = {}
    for f, a in sorted(flows.items()):
        if a is not None:
            out.setdefault(a, []).append(f)
    return out


@dataclass
class MdaLitePlan(MdaPlan):
    """MDA-Lite (Vermeulen et al., "Multilevel MDA-Lite Paris Traceroute", IMC 2018): the
    MDA with load balancing taken as uniform until shown otherwise. At each TTL:

    1. interfaces, hop-wide: n(k) flows in all for the k interfaces seen at this TTL (the
       MDA's rule applied to the hop, not to each interface before it: no node control),
       the flows known one TTL back first, spread over its interfaces, then new ones;
    2. links: every interface one TTL back gets a flow traced on to this TTL, and every
       interface here one traced back (a probe one TTL back);
    3. the meshing test, when this TTL and the one before both have 2 interfaces or more:
       `mesh_flows` flows of each interface of the wider one are traced across (back when
       this TTL is wider, else forward). The pair is meshed when an interface before has
       2 successors or more and one here 2 predecessors or more; the out-degrees before
       differing (width asymmetry) breaks uniformity too. Either way the TTL falls back to
       the full MDA (`MdaPlan`'s node control, per interface before), reusing every
       probe already sent; `meshed` lists those TTLs."""

    mesh_flows: int = MESH_FLOWS
    meshed: set[int] = field(init=False, default_factory=set)
    checked: set[int] = field(init=False, default_factory=set)  # TTLs whose test is done

    def _meshed(self, ttl: int) -> bool | None:
        return ttl in self.meshed

    def _wants_at(self, ttl: int) -> list[tuple[int, int]]:
        if ttl in self.meshed:
            return super()._wants_at(ttl)
        here = self.seen.setdefault(ttl, {})
        if len(here) >= self.max_flows or ttl in self.checked:
            return []
        before = self.seen.get(ttl - 1, {}) if ttl > self.first_ttl else {}
        back = _by_addr(before)
        # 1. hop-wide stopping rule
        need = self._need(len(set(here.values()) - {None})) - len(here)
        if need > 0:
            known = [f for f in _round_robin(back) if f not in here][:need]
            fresh = self._new_flows(need - len(known))
            return [(f, ttl) for f in known + fresh]
        if not back:
            self.checked.add(ttl)
            return []
        fore = _by_addr(here)
        wide = len(back) >= 2 and len(fore) >= 2
        forward = self.mesh_flows if wide and len(fore) <= len(back) else 1
        backward = self.mesh_flows if wide and len(fore) > len(back) else 1
        # 2 and 3: flows traced across, forward from each interface before, back from here
        wants: list[tuple[int, int]] = []
        for flows in back.values():
            traced = sum(f in here for f in flows)
            wants += [(f, ttl) for f in flows if f not in here][: max(0, forward - traced)]
        for flows in fore.values():
            traced = sum(f in before for f in flows)
            wants += [(f, ttl - 1) for f in flows if f not in before][: max(0, backward - traced)]
        if wants:
            return wants
        self.checked.add(ttl)
        out_deg: dict[str, set[str]] = {}
        in_deg: dict[str, set[str]] = {}
        for f, a in here.items():
            b = before.get(f)
            if a is not None and b is not None:
                out_deg.setdefault(b, set()).add(a)
                in_deg.setdefault(a, set()).add(b)
        mesh = any(len(s) > 1 for s in out_deg.values()) and any(
            len(s) > 1 for s in in_deg.values()
        )
        asymmetric = len({len(s) for s in out_deg.values()}) > 1
        if mesh or asymmetric:
            self.meshed.add(ttl)
            return super()._wants_at(ttl)
        return []


def _round_robin(groups: dict[str, list[int]]) -> list[int]:
    """The flows of every group, one of each in turn: a0, b0, a1, b1, ..."""
    out: list[int] = []
    lists = list(groups.values())
    for i in range(max((len(x) for x in lists), default=0)):
        out += [x[i] for x in lists if i < len(x)]
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


def flow_probe(method: str, sport: int, port: int, flow: int) -> Callable[..., Probe]:
    """Probes of one flow of a trace, (src, dst, ttl, slot) -> probe: the flow as the
    trace sent it (`MdaResult`'s method, sport and dport), the slot in the UDP checksum
    or the sequence number (alias resolution's indirect probes through that flow)."""

    def make(src: Any, dst: Any, ttl: int, slot: int) -> Probe:
        return _mda_probe(method, src, dst, ttl, flow, slot % 0xFFFE, sport, port)

    return make


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
    lite: bool = False,
    gaplimit: int = GAP_LIMIT,
    attempts: int = 1,
    max_probes: int = MAX_PROBES_DEFAULT,
    wait_probe: float = 0.0,
) -> MdaResult:
    """Trace every path to `dst` through per-flow load balancers (MDA). Each round's
    probes go at once; a round ends when all are answered, or `wait` s after it started
    (once some answered: 10 times their longest RTT, at least 50 ms). `on_hop(hop)` is
    called as each TTL is finished. `method`: "udp-paris" (flows in the UDP source port,
    like scamper's udp-sport), "icmp-paris" (flows in the ICMP checksum) or "tcp" (SYNs,
    flows in the source port). `lite`: MDA-Lite (`MdaLitePlan`) instead of the full MDA.
    scamper's tracelb limits: `gaplimit` TTLs in a row without an answer end it (-g),
    `attempts` probes of one flow and TTL before it counts as silent (-q), `max_probes`
    probes at most in all (-Q; the trace ends with stop reason MAXPROBEC when they run
    out), `wait_probe` s between two probes (-W; 0: each round's probes at once)."""
    target = as_target(dst)
    if not 1 <= first_ttl <= max_ttl <= 255:
        raise ValueError(f"need 1 <= first_ttl <= max_ttl <= 255, got {first_ttl}, {max_ttl}")
    if not 0 < wait <= 60:
        raise ValueError(f"wait must be in (0, 60] seconds, got {wait}")
    if method not in MDA_METHODS:
        raise ValueError(f"MDA method must be one of {', '.join(MDA_METHODS)}, got {method!r}")
    if not MAX_PROBES[0] <= max_probes <= MAX_PROBES[1]:
        raise ValueError(f"max_probes must be {MAX_PROBES[0]}..{MAX_PROBES[1]}, got {max_probes}")
    if not 0 <= wait_probe <= WAIT_PROBE_CS[1] / 100:
        raise ValueError(f"wait_probe must be 0..{WAIT_PROBE_CS[1] / 100:g} s, got {wait_probe}")
    kind = MdaLitePlan if lite else MdaPlan
    plan = kind(  # (checks the confidence, gaplimit and attempts)
        first_ttl, max_ttl, confidence, gaplimit=gaplimit, attempts=attempts,
        max_probes=max_probes,
    )  # fmt: skip
    if sport is None:
        sport = random.randrange(32768, 61000)
    elif not 0 < sport <= 0xFFFF:
        raise ValueError(f"sport must be 1..65535, got {sport}")
    # Only what can answer a probe: `icmp` / `tcp and src host TARGET` took every such
    # packet on the host, and beside a ping flood or a TCP flow on loopback the capture's
    # queue overflowed (traceroute's, session 27). The flows vary the TCP source port.
    expression = icmp_capture(target, sport if method == "icmp-paris" else None)
    if method == "tcp":
        expression = f"({expression}) or (tcp and src host {target} and src port {base_port})"
    # a capture long enough: rounds of a few per TTL, resends, the gaps between probes
    budget = (max_ttl - first_ttl + 1) * 8 * (wait + 1.0) * attempts + max_probes * wait_probe
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
    tries: list[int] = []  # probe number -> its attempt (0: the first)
    attempted: dict[tuple[int, int], int] = {}
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
            for n, (flow, ttl) in enumerate(wants):
                if n and wait_probe:  # scamper's -W: a gap between two probes
                    await deferLater(reactor, wait_probe, lambda: None)
                    if stop is not None and stop.requested:
                        break
                i = len(probes)
                probes.append((flow, ttl))
                tries.append(attempted.get((flow, ttl), 0))
                attempted[(flow, ttl)] = tries[-1] + 1
                p = _mda_probe(method, cap.src, target, ttl, flow, i, sport, base_port)
                flowids.append(_flowid(method, p, sport, flow))
                size = size or len(p.packet)
                table.add(p.key, i)
                d = session.nsend(cap.sktid, p.packet, time=0, ntag=True)
                d.addCallbacks(_on_ntag(sent, i, failures), lambda f: failures.append(f.value))
            t0 = steady(reactor)
            deadline = t0 + wait
            stopping = False
            while not failures:
                pending = [i for i in range(first, len(probes)) if i not in answers]
                now = steady(reactor)
                if not pending or now >= deadline:
                    break
                rtts = [answers[i][1] - sent[i] for i in answers if i >= first and i in sent]
                if rtts:
                    deadline = min(deadline, t0 + max(0.05, 10 * max(rtts) / 1e9))
                await waker.sleep(deadline, None if stopping else stop)
                if stop is not None and stop.requested and not stopping:
                    stopping = True  # the answers in flight: a little longer at most
                    deadline = min(deadline, steady(reactor) + GRACE_S)
            if failures:
                raise failures[0]
            if len(probes) - first < len(wants):  # stopped between two probes
                plan.done = True
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
        log.append(MdaProbe(flow, ttl, flowids[i], sent.get(i), reply, rx, tries[i]))
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
        stop_reason=plan.stop_reason if plan.done and plan.stop_reason else "HALTED",
        algorithm="mda-lite" if lite else "mda",
        gaplimit=gaplimit,
        attempts=attempts,
        max_probes=max_probes,
        wait_probe_cs=round(wait_probe * 100),
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
