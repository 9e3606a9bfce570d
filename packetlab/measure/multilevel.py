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
  and of the echo reply when both answered one); the pairs of the first round are probed
  again (`rounds` rounds in all, MIDAR's elimination) and must pass again;
* the routers of a hop are the connected components of its alias pairs
  (`alias.alias_sets`); an interface with no usable counter stays a router of its own,
  listed as unresolved.

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
from packetlab.measure.mda import MdaResult, flow_probe
from packetlab.measure.replies import ReplyKind

__all__ = [
    "MAX_PER_HOP",
    "MultilevelResult",
    "RouterHop",
    "alias_candidates",
    "group_routers",
    "initial_ttl",
    "resolve_routers",
]

MAX_PER_HOP = 32  # interfaces of one hop probed at most (pairs: 496)
DIRECT = "icmp-echo"
Pair = tuple[str, str]
Fingerprint = tuple[int | None, int | None]  # initial TTL: time exceeded, echo reply


@dataclass(frozen=True)
class RouterHop:
    """The routers found at one TTL: each a set of the hop's interfaces (aliases)."""

    ttl: int
    routers: tuple[tuple[str, ...], ...]  # every interface of the hop in exactly one
    unresolved: tuple[str, ...] = ()  # interfaces without a usable IP-ID counter
    pairs: tuple[Pair, ...] = ()  # the alias pairs that made the routers

    def to_dict(self) -> dict[str, Any]:
        return {"ttl": self.ttl, "routers": [list(r) for r in self.routers],
                "unresolved": list(self.unresolved),
                "pairs": [list(p) for p in self.pairs]}  # fmt: skip


@dataclass
class MultilevelResult:
    hops: tuple[RouterHop, ...]
    rounds: int
    probes: int  # alias resolution's probes sent
    samples: list[IdSample] = field(default_factory=list)
    methods: dict[str, str | None] = field(default_factory=dict)  # kept per interface
    fingerprints: dict[str, Fingerprint] = field(default_factory=dict)


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
) -> list[RouterHop]:
    """The routers of each hop from the IP-ID samples of every round: a pair of one
    hop's interfaces is an alias when the series of each (by its kept method, `keep`;
    by default the best of the first round) pass the monotonic bounds test together in
    every round and their fingerprints agree."""
    fingerprints = fingerprints or {}
    if keep is None:
        every = sorted({a for addrs in hops.values() for a in addrs})
        first = rounds[0] if rounds else []
        keep = {a: m for a, (m, _) in best_methods(first, every, (DIRECT, INDIRECT)).items()}
    per_round = [_series(r, keep) for r in rounds]
    out = []
    for ttl in sorted(hops):
        addrs = hops[ttl]
        usable = [a for a in addrs if per_round and velocity(per_round[0].get(a, [])) is not None]
        pairs = [
            (x, y)
            for x, y in itertools.combinations(sorted(usable), 2)
            if _agree(fingerprints.get(x, (None, None)), fingerprints.get(y, (None, None)))
            and all(x in s and y in s and monotonic_bounds(s[x], s[y]) for s in per_round)
        ]
        sets = alias_sets(pairs)
        grouped = {a for g in sets for a in g}
        routers = [tuple(g) for g in sets] + [(a,) for a in addrs if a not in grouped]
        order = {a: i for i, a in enumerate(addrs)}
        routers.sort(key=lambda r: min(order[a] for a in r))
        out.append(RouterHop(ttl, tuple(routers), tuple(a for a in addrs if a not in usable),
                             tuple(pairs)))  # fmt: skip
    return out


@deferred_api
async def resolve_routers(
    session: EndpointSession,
    result: MdaResult,
    *,
    rounds: int = 2,
    samples: int = 10,
    spacing: float = 0.005,
    wait: float = 1.0,
    per_hop: int = MAX_PER_HOP,
    direct: bool = True,
) -> MultilevelResult:
    """Resolve the interfaces of each hop of `result` into routers from `session`'s
    endpoint (the trace's vantage point): round 1 probes every candidate `samples` times
    indirectly through its flow (and with ICMP echo when `direct`); each later round
    (`rounds` in all) probes the interfaces of the pairs still standing with the method
    kept for each, and a pair must pass every round."""
    if not 1 <= rounds <= 10 or not 3 <= samples <= 100:
        raise ValueError(f"need 1 <= rounds <= 10 and 3 <= samples <= 100, got {rounds}, {samples}")
    hops, via, te_ttl = alias_candidates(result, per_hop)
    # (IPv6 has no IP-ID in its base header: its interfaces stay unresolved, unprobed)
    targets = sorted({a for addrs in hops.values() for a in addrs if ":" not in a})
    if not targets:
        return MultilevelResult(tuple(group_routers(hops, [])), rounds, 0)
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
    for _ in range(rounds - 1):
        standing = group_routers(hops, got, fps, keep)
        again = sorted({a for h in standing for p in h.pairs for a in p})
        if not again:
            break
        got.append(await collect_ip_ids(
            [session], again, rounds=samples, spacing=spacing, wait=wait,
            method={a: keep[a] or INDIRECT for a in again}, runs=runs,
            via={a: via[a] for a in again},
        ))  # fmt: skip
    out = group_routers(hops, got, fps, keep)
    return MultilevelResult(
        tuple(out), rounds, sum(len(r.probes) for r in runs),
        [s for g in got for s in g], keep, fps,
    )  # fmt: skip


def format_routers(hop: RouterHop) -> str:
    """One line per hop: each router's interfaces in braces, an unresolved one with `?`."""
    shown = [
        "{" + " ".join(r) + "}" if len(r) > 1 else r[0] + ("?" if r[0] in hop.unresolved else "")
        for r in hop.routers
    ]
    return f"{hop.ttl:2d}  " + "  ".join(shown)
