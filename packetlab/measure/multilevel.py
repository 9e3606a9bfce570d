"""Multilevel MDA-Lite: the router-level view of a multipath trace (Vermeulen et al.,
"Multilevel MDA-Lite Paris Traceroute", IMC 2018, §4).

After `mda_trace` (MDA or MDA-Lite) has found the interfaces of each hop, the interfaces
of one hop are resolved into routers from the same vantage point:

* every interface of a hop with two or more is probed with the IP-ID methods of
  `packetlab.measure.alias`: indirectly, through the flow the trace saw reach it (Paris
  probes of that flow with the TTL that expired there: a per-flow load balancer sends
  them the same way, so the time exceeded comes from that interface; what reaches
  routers that answer nothing sent to them), and directly (ICMP echo) where it answers;
  per interface the method with a usable counter is kept (`alias.best_methods`);
* two interfaces of one hop are aliases when their merged series passes the monotonic
  bounds test (`alias.monotonic_bounds`) in every round, and their fingerprints agree
  (the paper's: the initial TTL of the time exceeded, rounded up to 32, 64, 128 or 255,
  and of the echo reply when both answered one); the interfaces of the pairs still
  standing are probed again, round after round (MIDAR's elimination), until a round
  changes no hop's alias sets or `rounds` rounds were probed;
* MPLS (the paper's other fingerprint, as its tool reads it): an interface whose time
  exceeded messages quoted one MPLS label stack (RFC 4950 extensions, one forwarding
  equivalence class: a router gives one label to a FEC, and the trace's probes are one
  FEC) is labelled; two labelled interfaces of a hop with the same stack are aliases
  whatever their IP-IDs say (none needed), two labelled otherwise (different stacks, or
  one that quoted several) are two routers; they are not probed again for each other;
* the routers of a hop are the connected components of its alias pairs
  (`alias.alias_sets`); an interface with no usable counter and no label stack of its
  own stays a router of its own, listed as unresolved.

Interfaces are compared within a hop only (the paper's router-level view per hop); the
destination and a hop's only interface need no probing. Bounded: at most `MAX_PER_HOP`
interfaces of a hop are probed, `samples` probes per interface and method a round.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from packetlab.controller import EndpointSession, deferred_api
from packetlab.measure.alias import (
    INDIRECT,
    FlowProbe,
    IdSample,
    Point,
    ProbeRun,
    alias_sets,
    best_methods,
    collect_ip_ids,
    monotonic_bounds,
    velocity,
)
from packetlab.measure.icmpext import EXTENSION_OFFSET
from packetlab.measure.icmpext import decode as icmpext_decode
from packetlab.measure.mda import MdaResult, flow_probe
from packetlab.measure.replies import ReplyKind

__all__ = [
    "MAX_PER_HOP",
    "MAX_ROUNDS",
    "ROUNDS_DEFAULT",
    "MultilevelResult",
    "RouterHop",
    "alias_candidates",
    "group_routers",
    "initial_ttl",
    "mpls_stacks",
    "mpls_verdict",
    "resolve_routers",
]

MAX_PER_HOP = 32  # interfaces of one hop probed at most (pairs: 496)
ROUNDS_DEFAULT = 5  # rounds of the monotonic bounds test at most, unless the sets settle
MAX_ROUNDS = 10
DIRECT = "icmp-echo"
Pair = tuple[str, str]
Fingerprint = tuple[int | None, int | None]  # initial TTL: time exceeded, echo reply
LabelStack = tuple[int, ...]  # the MPLS labels of a time exceeded's stack, top first


@dataclass(frozen=True)
class RouterHop:
    """The routers found at one TTL: each a set of the hop's interfaces (aliases)."""

    ttl: int
    routers: tuple[tuple[str, ...], ...]  # every interface of the hop in exactly one
    unresolved: tuple[str, ...] = ()  # no usable IP-ID counter, no label stack of its own
    pairs: tuple[Pair, ...] = ()  # the alias pairs that made the routers
    mpls_pairs: tuple[Pair, ...] = ()  # those of `pairs` joined by their MPLS label stack

    def to_dict(self) -> dict[str, Any]:
        return {"ttl": self.ttl, "routers": [list(r) for r in self.routers],
                "unresolved": list(self.unresolved),
                "pairs": [list(p) for p in self.pairs],
                "mpls_pairs": [list(p) for p in self.mpls_pairs]}  # fmt: skip


@dataclass
class MultilevelResult:
    hops: tuple[RouterHop, ...]
    rounds: int  # rounds of the monotonic bounds test probed
    probes: int  # alias resolution's probes sent
    samples: list[IdSample] = field(default_factory=list)
    methods: dict[str, str | None] = field(default_factory=dict)  # kept per interface
    fingerprints: dict[str, Fingerprint] = field(default_factory=dict)
    # per interface the MPLS label stacks its time exceeded messages quoted (the trace's)
    mpls: dict[str, tuple[LabelStack, ...]] = field(default_factory=dict)
    max_rounds: int = ROUNDS_DEFAULT
    # the last round changed no alias set, or none was left to probe again (False: the
    # sets still changed when `max_rounds` were probed)
    stable: bool = True
    runs: list[ProbeRun] = field(default_factory=list)  # every probing run (--warts)


def initial_ttl(ttl: int) -> int:
    """The initial TTL a reply most likely left with (32, 64, 128 or 255)."""
    return next(t for t in (32, 64, 128, 255) if ttl <= t)


def alias_candidates(
    result: MdaResult, per_hop: int = MAX_PER_HOP
) -> tuple[dict[int, list[str]], dict[str, tuple[str, int, FlowProbe]], dict[str, int]]:
    """Per TTL with two interfaces or more (not the destination): the interfaces to
    resolve; per interface the destination, TTL and flow of the first probe of the trace
    it answered with a time exceeded (the indirect probe's way to it); per interface the
    initial TTL of its time exceeded (its fingerprint's first half)."""
    if result.sport is None:
        raise ValueError("the trace's flows are unknown (no source port): cannot probe them")
    port = result.dport or 0
    via: dict[str, tuple[str, int, FlowProbe]] = {}
    te_ttl: dict[str, int] = {}
    for p in result.probes:
        r = p.reply
        if r is None or r.kind is not ReplyKind.TIME_EXCEEDED:
            continue
        a = str(r.src)
        te_ttl.setdefault(a, initial_ttl(r.ttl))
        if a not in via:
            via[a] = (result.dst, p.ttl, flow_probe(result.method, result.sport, port, p.flow))
    hops: dict[int, list[str]] = {}
    for h in result.hops:
        addrs = [a for a in h.addrs if a != result.dst and a in via and via[a][1] == h.ttl]
        if len(addrs) >= 2:
            hops[h.ttl] = addrs[:per_hop]
    return hops, via, te_ttl


def mpls_stacks(result: MdaResult) -> dict[str, tuple[LabelStack, ...]]:
    """Per interface the distinct MPLS label stacks (labels only, top first; their TTLs
    and traffic class vary with the path) of the time exceeded messages it sent the
    trace, in order of first sight: found in the RFC 4884 extensions where traceroute -e
    looks for them (`packetlab.measure.records_traceroute.Hop.from_reply`'s rule)."""
    out: dict[str, list[LabelStack]] = {}
    for p in result.probes:
        r = p.reply
        if r is None or r.kind is not ReplyKind.TIME_EXCEEDED or r.extension is None:
            continue
        size = result.probe_size
        longer = size is None or EXTENSION_OFFSET + len(r.extension) > size
        objects = icmpext_decode(
            r.extension, step=0 if longer else (4 if r.src.version == 4 else 8)
        )
        for obj in objects or ():
            labels = obj.get("mpls_labels")
            if labels:
                stack = tuple(int(m["mpls_label"]) for m in labels)
                seen = out.setdefault(str(r.src), [])
                if stack not in seen:
                    seen.append(stack)
    return {a: tuple(v) for a, v in out.items()}


def mpls_verdict(x: str, y: str, mpls: dict[str, tuple[LabelStack, ...]]) -> bool | None:
    """Their label stacks' word on two interfaces of one hop: True (one stack each, the
    same: aliases), False (both labelled otherwise: two routers), None (not both
    labelled: the IP-IDs decide), as the paper's tool (Multilevel MDA-Lite) reads them."""
    sx, sy = mpls.get(x, ()), mpls.get(y, ())
    if not sx or not sy:
        return None
    return len(sx) == 1 and sx == sy


def _series(samples: Sequence[IdSample], keep: dict[str, str | None]) -> dict[str, list[Point]]:
    out: dict[str, list[Point]] = {}
    for s in samples:
        if keep.get(s.addr) == s.method:
            out.setdefault(s.addr, []).append((s.time_ns, s.ip_id, s.error_ns))
    return out


def _agree(x: Fingerprint, y: Fingerprint) -> bool:
    """Fingerprints agree where both are known."""
    return all(a is None or b is None or a == b for a, b in zip(x, y, strict=True))


def group_routers(
    hops: dict[int, list[str]],
    rounds: Sequence[Sequence[IdSample]],
    fingerprints: dict[str, Fingerprint] | None = None,
    keep: dict[str, str | None] | None = None,
    mpls: dict[str, tuple[LabelStack, ...]] | None = None,
) -> list[RouterHop]:
    """The routers of each hop from the IP-ID samples of every round: a pair of one
    hop's interfaces is an alias when the series of each (by its kept method, `keep`;
    by default the best of the first round) pass the monotonic bounds test together in
    every round and their fingerprints agree; when both are labelled (`mpls`: per
    interface its label stacks) their stacks decide instead (`mpls_verdict`)."""
    fingerprints = fingerprints or {}
    mpls = mpls or {}
    if keep is None:
        every = sorted({a for addrs in hops.values() for a in addrs})
        first = rounds[0] if rounds else []
        keep = {a: m for a, (m, _) in best_methods(first, every, (DIRECT, INDIRECT)).items()}
    per_round = [_series(r, keep) for r in rounds]
    out = []
    for ttl in sorted(hops):
        addrs = hops[ttl]
        usable = {a for a in addrs if per_round and velocity(per_round[0].get(a, [])) is not None}
        labelled = {a for a in addrs if len(mpls.get(a, ())) == 1}
        pairs, by_label = [], []
        for x, y in itertools.combinations(sorted(usable | labelled), 2):
            said = mpls_verdict(x, y, mpls)
            if said is None:
                said = (
                    x in usable and y in usable
                    and _agree(fingerprints.get(x, (None, None)), fingerprints.get(y, (None, None)))
                    and all(x in s and y in s and monotonic_bounds(s[x], s[y]) for s in per_round)
                )  # fmt: skip
            elif said:
                by_label.append((x, y))
            if said:
                pairs.append((x, y))
        sets = alias_sets(pairs)
        grouped = {a for g in sets for a in g}
        routers = [tuple(g) for g in sets] + [(a,) for a in addrs if a not in grouped]
        order = {a: i for i, a in enumerate(addrs)}
        routers.sort(key=lambda r: min(order[a] for a in r))
        unresolved = tuple(a for a in addrs if a not in usable and a not in labelled)
        out.append(RouterHop(ttl, tuple(routers), unresolved, tuple(pairs), tuple(by_label)))
    return out


def _sets(hops: Sequence[RouterHop]) -> list[tuple[tuple[str, ...], ...]]:
    """The alias sets of each hop (its routers of two interfaces or more), comparable."""
    return [tuple(sorted(tuple(sorted(r)) for r in h.routers if len(r) > 1)) for h in hops]


@deferred_api
async def resolve_routers(
    session: EndpointSession,
    result: MdaResult,
    *,
    rounds: int = ROUNDS_DEFAULT,
    samples: int = 10,
    spacing: float = 0.005,
    wait: float = 1.0,
    per_hop: int = MAX_PER_HOP,
    direct: bool = True,
) -> MultilevelResult:
    """Resolve the interfaces of each hop of `result` into routers from `session`'s
    endpoint (the trace's vantage point): round 1 probes every candidate `samples` times
    indirectly through its flow (and with ICMP echo when `direct`); each later round
    probes the interfaces of the pairs still standing that their label stacks do not
    decide, with the method kept for each, and a pair must pass every round. The rounds
    stop when one changes no hop's alias sets (the sets are stable), nothing is left to
    probe, or `rounds` were probed (at most `MAX_ROUNDS`)."""
    if not 1 <= rounds <= MAX_ROUNDS or not 3 <= samples <= 100:
        raise ValueError(
            f"need 1 <= rounds <= {MAX_ROUNDS} and 3 <= samples <= 100, got {rounds}, {samples}"
        )
    hops, via, te_ttl = alias_candidates(result, per_hop)
    mpls = {a: m for a, m in mpls_stacks(result).items() if any(a in h for h in hops.values())}
    # (IPv6 has no IP-ID in its base header: its interfaces stay unresolved, unprobed)
    targets = sorted({a for addrs in hops.values() for a in addrs if ":" not in a})
    if not targets:
        out = group_routers(hops, [], mpls=mpls)
        return MultilevelResult(tuple(out), 0, 0, mpls=mpls, max_rounds=rounds)
    runs: list[ProbeRun] = []
    methods = [INDIRECT, DIRECT] if direct else [INDIRECT]
    first = await collect_ip_ids(
        [session], targets, rounds=samples, spacing=spacing, wait=wait, method=methods,
        runs=runs, via={a: via[a] for a in targets},
    )  # fmt: skip
    echo_ttl: dict[str, int] = {}
    for p in runs[0].probes:
        if p.method == DIRECT and p.reply is not None:
            echo_ttl.setdefault(p.addr, initial_ttl(p.reply.ttl))
    fps = {a: (te_ttl.get(a), echo_ttl.get(a)) for a in targets}
    keep = {a: m for a, (m, _) in best_methods(first, targets, methods).items()}
    got: list[list[IdSample]] = [first]
    standing = group_routers(hops, got, fps, keep, mpls)
    stable = False
    while True:
        again = sorted({a for h in standing for p in h.pairs if p not in h.mpls_pairs
                        for a in p})  # fmt: skip
        if not again:
            stable = True  # (no pair left that a new series could undo)
            break
        if len(got) >= rounds:
            break
        got.append(await collect_ip_ids(
            [session], again, rounds=samples, spacing=spacing, wait=wait,
            method={a: keep[a] or INDIRECT for a in again}, runs=runs,
            via={a: via[a] for a in again},
        ))  # fmt: skip
        before, standing = standing, group_routers(hops, got, fps, keep, mpls)
        if _sets(standing) == _sets(before):
            stable = True
            break
    return MultilevelResult(
        tuple(standing), len(got), sum(len(r.probes) for r in runs),
        [s for g in got for s in g], keep, fps, mpls, rounds, stable, runs,
    )  # fmt: skip


def format_routers(hop: RouterHop) -> str:
    """One line per hop: each router's interfaces in braces, an unresolved one with `?`."""
    shown = [
        "{" + " ".join(r) + "}" if len(r) > 1 else r[0] + ("?" if r[0] in hop.unresolved else "")
        for r in hop.routers
    ]
    return f"{hop.ttl:2d}  " + "  ".join(shown)
