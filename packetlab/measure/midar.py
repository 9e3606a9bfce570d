"""MIDAR's four stages (Keys et al., ToN 2013, §4) over `alias.collect_ip_ids`:

1. **Estimation**: every candidate is probed `estimation_rounds` times with every probe
   method of `methods` (ICMP echo, TCP ACK, UDP); its own series by each method gives that
   counter's velocity (IDs per second). The method with a usable counter (and the most
   samples) is kept for the candidate and used in the later stages; a candidate without a
   usable counter by any method (no answer, stuck, random, too fast to sample) is dropped.
2. **Discovery**: the usable candidates, sorted by velocity, are probed again in
   overlapping windows of `window` addresses; within a window, every pair whose
   velocities are within `velocity_ratio` of each other (a shared counter has one
   velocity) and whose merged series passes the monotonic bounds test is a candidate pair.
   Only neighbours in velocity are ever compared, so the probing grows with the number of
   candidates, not with its square.
3. **Elimination**: the addresses of the candidate pairs are probed together with
   `elimination_rounds` fresh, closely interleaved probes; a pair that fails the test now
   is dropped (a coincidence of discovery's sparse samples).
4. **Corroboration**: the alias sets that elimination's pairs form (connected
   components) are probed once more; every pair inside a set is tested, including those
   only implied by transitivity. The pairs that pass are the result; a set whose pairs do
   not all pass is reported as split (`inconsistent`).

Each stage samples afresh (its own clock synchronisation and probe slots), as MIDAR's
stages are separate probing runs: the evidence for an alias is then several independent
series agreeing, not one run tested several times.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from packetlab.controller import EndpointSession, deferred_api
from packetlab.measure.alias import (
    METHODS,
    IdSample,
    Point,
    ProbeRun,
    Via,
    alias_sets,
    best_methods,
    collect_ip_ids,
    monotonic_bounds,
)
from packetlab.measure.pcap import PcapRecorder

__all__ = ["MidarResult", "StageReport", "midar", "velocity_windows"]

Pair = tuple[str, str]


@dataclass(slots=True)
class StageReport:
    stage: str  # estimation, discovery, elimination, corroboration
    addresses: int  # probed
    rounds: int
    samples: int  # answered probes
    pairs: int  # pairs kept by this stage (discovery: candidates)
    tested: int = 0  # pairs tested

    def to_dict(self) -> dict[str, Any]:
        return {"type": "alias-stage", "stage": self.stage, "addresses": self.addresses,
                "rounds": self.rounds, "samples": self.samples, "tested": self.tested,
                "pairs": self.pairs}  # fmt: skip


@dataclass(slots=True)
class MidarResult:
    velocities: dict[str, float | None]  # estimation stage, every candidate
    pairs: list[Pair]  # corroborated
    sets: list[list[str]]
    inconsistent: list[list[str]]  # elimination sets corroboration split
    stages: list[StageReport] = field(default_factory=list)
    samples: list[IdSample] = field(default_factory=list)  # every stage's
    estimation: list[IdSample] = field(default_factory=list)
    by_stage: dict[str, list[IdSample]] = field(default_factory=dict)  # the same, per stage
    # kept per candidate (without a usable counter: the most answered method, or None)
    methods: dict[str, str | None] = field(default_factory=dict)
    by_method: dict[str, dict[str, float | None]] = field(default_factory=dict)  # velocities


def _series(samples: Sequence[IdSample]) -> dict[str, list[Point]]:
    out: dict[str, list[Point]] = {}
    for s in samples:
        out.setdefault(s.addr, []).append((s.time_ns, s.ip_id, s.error_ns))
    return out


def _passing(samples: Sequence[IdSample], pairs: Sequence[Pair], **bounds: Any) -> list[Pair]:
    series = _series(samples)
    return [
        (a, b)
        for a, b in pairs
        if a in series and b in series and monotonic_bounds(series[a], series[b], **bounds)
    ]


def velocity_windows(velocities: dict[str, float], window: int) -> list[list[str]]:
    """The addresses sorted by velocity, in windows of `window` overlapping by half (so
    every two neighbours in velocity share a window)."""
    order = sorted(velocities, key=lambda a: (velocities[a], a))
    if len(order) <= window:
        return [order] if len(order) >= 2 else []
    step = max(1, window // 2)
    out = [order[i : i + window] for i in range(0, len(order) - window + step, step)]
    return [w for w in out if len(w) >= 2]


def _similar(va: float, vb: float, ratio: float) -> bool:
    lo, hi = sorted((va, vb))
    return lo > 0 and hi / lo <= ratio


@deferred_api
async def midar(
    sessions: Sequence[EndpointSession],
    targets: Sequence[str],
    *,
    estimation_rounds: int = 10,
    discovery_rounds: int = 10,
    elimination_rounds: int = 20,
    corroboration_rounds: int = 20,
    window: int = 50,
    velocity_ratio: float = 3.0,
    spacing: float = 0.002,
    wait: float = 1.0,
    recorder: PcapRecorder | None = None,
    on_stage: Callable[[StageReport], object] | None = None,
    on_probe: Callable[[str, int, int], object] | None = None,
    on_estimation: Callable[[MidarResult], object] | None = None,
    unsent: dict[str, str] | None = None,
    methods: Sequence[str] = METHODS,
    runs: list[ProbeRun] | None = None,
    via: Via | None = None,
    unreached: dict[str, str] | None = None,
    shuffle: bool = False,
    round_wait: float = 0.0,
) -> MidarResult:
    """Alias pairs of `targets` through MIDAR's four stages from every endpoint of
    `sessions` (probes interleaved after clock synchronisation, as `collect_ip_ids`;
    `unsent`, `unreached` as there). Estimation probes with every method of `methods`; the later
    stages probe each candidate with the one kept for it. `runs` gets every probing run's
    probes (`collect_ip_ids`), stage by stage; `via` the indirect targets' destinations
    and TTLs (as there); `shuffle`, `round_wait` each round's order and start (as
    there). `on_probe(what, addresses, probes)` before each probing run ("discovery,
    window 2 of 5"), for a progress line. `on_estimation` gets what the
    estimation stage found (velocities, methods, its samples; no pairs yet) as soon as it
    is done, so that a run cut short later still has each address's counter."""
    if window < 2 or velocity_ratio < 1:
        raise ValueError("need window >= 2 and velocity_ratio >= 1")
    if not methods:
        raise ValueError("need at least one probe method")
    stages: list[StageReport] = []
    every: list[IdSample] = []
    by_stage: dict[str, list[IdSample]] = {}

    chosen: dict[str, str] = {}

    async def probe(
        stage: str, addrs: Sequence[str], rounds: int, how: Any = None, what: str = ""
    ) -> list[IdSample]:
        if on_probe is not None:
            per = sum(1 for a in addrs for m in how if m != "indirect" or a in (via or {})) \
                if how else len(addrs)  # fmt: skip
            on_probe(what or stage, len(addrs), per * rounds * len(sessions))
        got = await collect_ip_ids(
            sessions, list(addrs), rounds=rounds, spacing=spacing, wait=wait,
            recorder=recorder, unsent=unsent, method=how or {a: chosen[a] for a in addrs},
            runs=runs, via=via, unreached=unreached, shuffle=shuffle, round_wait=round_wait,
        )  # fmt: skip
        every.extend(got)
        by_stage.setdefault(stage, []).extend(got)
        return got

    def report(st: StageReport) -> None:
        stages.append(st)
        if on_stage is not None:
            on_stage(st)

    # 1. estimation
    tried = await probe("estimation", targets, estimation_rounds, list(methods))
    best = best_methods(tried, targets, methods)
    velocities = {t: vs[m] if m is not None else None for t, (m, vs) in best.items()}
    usable = {t: v for t, v in velocities.items() if v is not None}
    chosen.update((t, m) for t, (m, _) in best.items() if m is not None and t in usable)
    # each address's series by its kept method (unusable ones: the most answered method)
    est = [s for s in tried if best[s.addr][0] == s.method]
    report(StageReport("estimation", len(targets), estimation_rounds, len(tried), 0))
    methods_kept = {t: m for t, (m, _) in best.items()}
    by_method = {t: vs for t, (_, vs) in best.items()}
    if on_estimation is not None:
        on_estimation(MidarResult(velocities, [], [], [], list(stages), list(every), est,
                                  dict(by_stage), methods_kept, by_method))  # fmt: skip

    # 2. discovery: neighbours in velocity, window by window
    candidates: set[Pair] = set()
    tested = 0
    windows = velocity_windows(usable, window)
    disc_samples = 0
    for i, win in enumerate(windows, 1):
        what = f"discovery, window {i} of {len(windows)}" if len(windows) > 1 else ""
        got = await probe("discovery", win, discovery_rounds, what=what)
        disc_samples += len(got)
        pairs = [
            (a, b) if a < b else (b, a)
            for a, b in itertools.combinations(win, 2)
            if _similar(usable[a], usable[b], velocity_ratio)
        ]
        tested += len(pairs)
        candidates.update(_passing(got, pairs))
    report(StageReport("discovery", len(usable), discovery_rounds, disc_samples,
                       len(candidates), tested))  # fmt: skip

    # 3. elimination: the candidates' addresses together, fresh and closely interleaved
    kept: list[Pair] = []
    if candidates:
        addrs = sorted({a for p in candidates for a in p})
        got = await probe("elimination", addrs, elimination_rounds)
        kept = _passing(got, sorted(candidates))
        report(StageReport("elimination", len(addrs), elimination_rounds, len(got), len(kept),
                           len(candidates)))  # fmt: skip
    else:
        report(StageReport("elimination", 0, elimination_rounds, 0, 0))

    # 4. corroboration: every pair inside each set, transitive ones included
    final: list[Pair] = []
    inconsistent: list[list[str]] = []
    groups = alias_sets(kept)
    if groups:
        addrs = sorted(a for g in groups for a in g)
        got = await probe("corroboration", addrs, corroboration_rounds)
        inside = [p for g in groups for p in itertools.combinations(g, 2)]
        final = sorted(_passing(got, inside))
        for g in groups:
            want = set(itertools.combinations(g, 2))
            if not want <= set(final):
                inconsistent.append(g)
        report(StageReport("corroboration", len(addrs), corroboration_rounds, len(got),
                           len(final), len(inside)))  # fmt: skip
    else:
        report(StageReport("corroboration", 0, corroboration_rounds, 0, 0))
    return MidarResult(
        velocities, final, alias_sets(final), inconsistent, stages, every, est, by_stage,
        methods_kept, by_method,
    )  # fmt: skip
