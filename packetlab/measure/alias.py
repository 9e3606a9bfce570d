"""MIDAR-style alias resolution: IP-ID time series from one or more endpoints, probed at
synchronised times, and the monotonic bounds test (Keys et al., "Internet-Scale IPv4
Alias Resolution with MIDAR", ToN 2013).

Two addresses are aliases (one router) when their replies draw IP-IDs from one shared
counter. Probing every candidate in turn, from several endpoints at interleaved moments,
gives one time series of (time, IP-ID) per address. For a shared counter the merged
series of two addresses, ordered by time, still only moves forward, at the counter's
pace; for independent counters it jumps back and forth. The test (`monotonic_bounds`)
unwraps the merged series and requires every step to be positive and at most what the
faster of the two counters could have advanced in the time between (its own velocity
times the gap, with slack). Each address must first pass alone (a usable counter).

Endpoints are synchronised with `clock_sync`: every endpoint's probe i is scheduled at
the endpoint time that corresponds to one global local-clock slot, so the series from
different endpoints interleave on one time axis. A sample's time is the middle of the
probe's send (ntag) and its reply's arrival (ndata), both endpoint stamps mapped to the
controller clock: the moment the target most likely assigned the ID.

Probe methods (scamper dealias's names; MIDAR's "icmp", "tcp" and "udp"): many routers
answer only some probes, or number some replies from a usable counter and others not
(an ID of 0, a random one), so an address may have a usable counter by one method only:

* ``icmp-echo``: an echo request; the echo reply's IP-ID.
* ``tcp-ack``: a bare ACK to a (most likely closed) high port; the RST's IP-ID.
* ``udp``: a datagram to a closed high port; the ICMP port unreachable's IP-ID.
* scamper's variants (session 27; not in ``auto``, which is MIDAR's three): ``udp-dport``
  (one source port, the destination port one up per round: 33435, 33436, ...; the port
  unreachable's IP-ID), ``tcp-ack-sport`` (a bare ACK from a new source port each round;
  the RST's) and ``tcp-syn-sport`` (a SYN from a new source port each round, to a most
  likely closed port: the RST's, or a SYN-ACK's; for a stateful firewall that drops
  stray ACKs but lets SYNs through).
* ``indirect`` (MIDAR's indirect probing, scamper's probe definition with a TTL): an echo
  request to a destination beyond the router with a TTL that expires at it; the router's
  ICMP time exceeded's IP-ID. Only for an address given with that destination and TTL
  (`via`); a time exceeded from another address (the path changed) is no sample. Not in
  ``auto``, which probes each address itself. A `via` may also name the flow to probe
  through (a `FlowProbe`: Paris probes of the one flow a multipath trace saw reach the
  address behind a per-flow load balancer, `packetlab.measure.multilevel`).

`best_methods` picks per address the method whose series is a usable counter (MIDAR's
estimation stage probes with every method and keeps the best per target).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.python.failure import Failure

from packetlab.clockstep import steady
from packetlab.controller import (
    ControllerError,
    EndpointSession,
    QueuedSend,
    SendFailed,
    deferred_api,
    read_system_info,
)
from packetlab.measure.capture import (
    as_target,
    close_capture,
    next_note,
    ntag_time,
    open_capture,
    parse_ndata,
)
from packetlab.measure.clocksync import ClockModel, clock_sync
from packetlab.measure.pcap import PcapRecorder
from packetlab.measure.pool import endpoint_names
from packetlab.measure.probes import (
    Probe,
    ProbeTable,
    echo_probe,
    icmp_capture,
    paris_udp_probe,
    tcp_ack_probe,
    tcp_syn_probe,
    udp_probe,
)
from packetlab.measure.replies import ICMP_PORT_UNREACH, Reply, ReplyKind
from packetlab.wire import Ndata, Ntag

__all__ = [
    "ALL_METHODS",
    "INDIRECT",
    "INDIRECT_PROBES",
    "METHODS",
    "PORT_METHODS",
    "FlowProbe",
    "IdSample",
    "ProbeLog",
    "ProbeRun",
    "Via",
    "alias_pairs",
    "alias_sets",
    "best_methods",
    "byte_swapped",
    "collect_ip_ids",
    "common_source_pairs",
    "counted",
    "indirect_flow",
    "monotonic_bounds",
    "parse_methods",
]

ID_SPACE = 1 << 16
# Probe methods, in the order of preference when several give a usable counter with as
# many samples (ICMP echo first: what a single-method run used before).
METHODS = ("icmp-echo", "tcp-ack", "udp")  # direct: `auto`
INDIRECT = "indirect"  # TTL-limited echo requests through the address (needs `via`)
# scamper dealias's probe methods that change a port per probe (-P udp-dport|tcp-ack-sport|
# tcp-syn-sport); not MIDAR's, so not in `auto`
PORT_METHODS = ("udp-dport", "tcp-ack-sport", "tcp-syn-sport")
# (the order of preference, as METHODS: TCP before UDP, whose port unreachable a Linux
# host numbers from a counter per destination, usable but no router's shared one, where
# its RSTs carry 0: a usable TCP series with as many samples is the better counter)
ALL_METHODS = (*METHODS, INDIRECT, "tcp-ack-sport", "tcp-syn-sport", "udp-dport")
TCP_METHODS = ("tcp-ack", "tcp-ack-sport", "tcp-syn-sport")
# An indirect probe through one flow: (src, dst, ttl, slot) -> a probe of that flow whose
# key differs from slot to slot (Paris probes: the flow in the ports or the ICMP checksum)
FlowProbe = Callable[[Any, Any, int, int], Probe]
# address -> (destination beyond it, TTL expiring there[, the flow to probe through])
Via = Mapping[str, tuple[str, int] | tuple[str, int, FlowProbe]]
PROBE_PORT = 33435  # TCP ACK and UDP destination port: scamper dealias's default
# the probes of the indirect method (scamper's -P icmp-echo|udp|tcp-ack -i DST -t TTL)
INDIRECT_PROBES = ("icmp-echo", "udp", "tcp-ack")
MethodSpec = str | Sequence[str] | Mapping[str, str]  # one, every one, or per address
LATE_S = 30.0  # how long the last probe may be late before its stage gives up on it


@dataclass(frozen=True, slots=True)
class IdSample:
    addr: str
    endpoint: str  # hostid or index
    time_ns: int  # controller clock
    ip_id: int
    error_ns: int = 0  # the ID was assigned within time_ns +- error_ns
    method: str = "icmp-echo"  # the probe whose reply carried it (METHODS)
    # the reply's source when it is not `addr` (a UDP probe's port unreachable sent from
    # another address of the router: Mercator's common source address)
    replied_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"type": "ipid", "addr": self.addr, "endpoint": self.endpoint,
               "time_ns": self.time_ns, "ip_id": self.ip_id,
               "error_ns": self.error_ns, "method": self.method}  # fmt: skip
        if self.replied_from is not None:
            out["from"] = self.replied_from
        return out


@dataclass(frozen=True, slots=True)
class ProbeLog:
    """One probe of a probing run as sent, and the reply that answered it: what scamper's
    dealias record holds (`packetlab.measure.warts.dealias_object`). Times: controller
    clock (Unix ns), None when the probe never left (or nothing answered)."""

    addr: str
    method: str
    endpoint: str
    src: str
    seq: int  # the round
    probe: Probe
    tx_ns: int | None
    reply: Reply | None = None
    rx_ns: int | None = None
    # later copies of the reply (a duplicating link: (reply, rx ns)), kept for the warts
    # as scamper's dealias keeps every reply; the sample is the first's
    more: tuple[tuple[Reply, int], ...] = ()


@dataclass(slots=True)
class ProbeRun:
    """One `collect_ip_ids` run (a radargun run: every target probed `rounds` times)."""

    rounds: int
    spacing: float  # s between global slots
    wait: float  # reply wait, s
    probes: list[ProbeLog]
    shuffle: bool = False  # each round's order shuffled (scamper's radargun -O shuffle)
    round_wait: float = 0.0  # s from one round's start to the next's at least (its -r)


def indirect_flow(probe: str, sport: int | None = None) -> FlowProbe | None:
    """The indirect method's probes by `probe` (INDIRECT_PROBES) as scamper sends them
    for ``-P udp|tcp-ack -i DST -t TTL`` (session 27; tcpdump): one flow, both ports
    fixed (`sport`, random by default; PROBE_PORT), so that a per-flow load balancer
    keeps every probe on the path whose TTL expires at the router. A UDP probe is told
    apart by its checksum (a Paris probe: scamper's too), a TCP ACK by its sequence
    number (scamper's repeats its own), both quoted by the time exceeded. None for
    icmp-echo: the method's own echo requests (an identifier per run, a sequence number
    per probe)."""
    if probe not in INDIRECT_PROBES:
        raise ValueError(f"unknown indirect probe {probe!r}; valid: {', '.join(INDIRECT_PROBES)}")
    port = random.randrange(0x8000, 0x10000) if sport is None else sport
    if probe == "udp":

        def udp(src: Any, dst: Any, ttl: int, slot: int) -> Probe:
            return paris_udp_probe(src, dst, ttl, sport=port, dport=PROBE_PORT,
                                   index=slot % 0xFFFE, payload=b"\0\0")  # fmt: skip

        return udp
    if probe == "tcp-ack":

        def ack(src: Any, dst: Any, ttl: int, slot: int) -> Probe:
            number = ((port << 16) + slot) & 0xFFFFFFFF
            return tcp_ack_probe(src, dst, sport=port, dport=PROBE_PORT, seq=number, ttl=ttl)

        return ack
    return None


def parse_methods(text: str) -> tuple[str, ...]:
    """``auto`` (every direct method) or a comma-separated list of ALL_METHODS (``auto``
    among them: the direct ones); ValueError with the valid names for anything else."""
    names = [m.strip() for m in text.split(",")]
    got = tuple(dict.fromkeys(x for m in names for x in (METHODS if m == "auto" else (m,))))
    bad = [m for m in got if m not in ALL_METHODS]
    if bad or not got:
        raise ValueError(
            f"unknown probe method {(bad or [text])[0]!r}; valid: auto, {', '.join(ALL_METHODS)}"
        )
    return got


def best_methods(
    samples: Sequence[IdSample], targets: Sequence[str], methods: Sequence[str]
) -> dict[str, tuple[str | None, dict[str, float | None]]]:
    """Per target: the method whose series is a usable counter with the most samples
    (ties: ALL_METHODS order); when none is usable, the one with the most samples (its
    velocity None: which series the address is reported by), None without any answer.
    And every method's velocity."""
    series: dict[tuple[str, str], list[Point]] = defaultdict(list)
    for s in samples:
        series[(s.addr, s.method)].append((s.time_ns, s.ip_id, s.error_ns))
    out: dict[str, tuple[str | None, dict[str, float | None]]] = {}
    for t in targets:
        vs = {m: velocity(series.get((t, m), [])) for m in methods}
        usable = [m for m in methods if vs[m] is not None]
        answered = [m for m in methods if series.get((t, m))]
        best = min(usable or answered, key=lambda m: (-len(series[(t, m)]), ALL_METHODS.index(m)),
                   default=None)  # fmt: skip
        out[t] = (best, vs)
    return out


Point = tuple[int, int] | tuple[int, int, int]  # (time ns, IP-ID[, error ns])


def _err(p: Point) -> int:
    return p[2] if len(p) > 2 else 0


def _ordered(series: Sequence[Point]) -> list[Point]:
    """By time; two samples whose time intervals overlap may have happened in either
    order, so a pair that would step the counter backwards is swapped (the "bounds" of
    the test: the order is only known up to each sample's error)."""
    s = sorted(series, key=lambda p: p[0])
    for _ in range(len(s)):
        swapped = False
        for i in range(len(s) - 1):
            x, y = s[i], s[i + 1]
            backward = (y[1] - x[1]) % ID_SPACE >= ID_SPACE // 2
            if backward and y[0] - x[0] <= _err(x) + _err(y):
                s[i], s[i + 1] = y, x
                swapped = True
        if not swapped:
            break
    return s


def _unwrap_steps(series: Sequence[Point]) -> list[tuple[int, int]]:
    """(dt ns, dID mod 2^16) between consecutive samples, in (bounded) time order."""
    s = _ordered(series)
    return [(max(b[0] - a[0], 0), (b[1] - a[1]) % ID_SPACE) for a, b in itertools.pairwise(s)]


def _raw_velocity(series: Sequence[Point]) -> float | None:
    steps = _unwrap_steps(series)
    if len(steps) < 2 or any(d == 0 or d >= ID_SPACE // 2 for _, d in steps):
        return None
    span = sum(dt for dt, _ in steps)
    return sum(d for _, d in steps) / (span / 1e9) if span > 0 else None


SWAP_FACTOR = 16  # the swapped view must be this much slower to be the counter's own


def _swap(p: Point) -> Point:
    ident = ((p[1] & 0xFF) << 8) | (p[1] >> 8)
    return (p[0], ident, _err(p))


def counted(series: Sequence[Point]) -> list[Point]:
    """The series as its counter counts: with the bytes of each ID swapped back when the
    host writes its counter in little-endian order (no htons: on the wire a step of one
    is 256), which shows as a usable counter `SWAP_FACTOR` times slower than the IDs as
    read (a counter in network order read swapped is 256 times faster). Else as read;
    also when the IDs as read are no counter at all (a swapped counter moving 128 or
    more between two samples): three random IDs pass as a swapped counter once in four.
    (Before session 24 such a counter was taken as read: 256 IDs a packet, so two probes
    answered close together stepped further than its velocity allowed, and MIDAR's
    stages dropped the pair scamper's ally, which undoes byte swapping, finds.)"""
    swapped = _swapped_view(series)
    return list(series) if swapped is None else swapped


def _swapped_view(series: Sequence[Point]) -> list[Point] | None:
    raw = _raw_velocity(series)
    if raw is not None:
        swapped = [_swap(p) for p in series]
        vs = _raw_velocity(swapped)
        if vs is not None and vs * SWAP_FACTOR < raw:
            return swapped
    return None


def byte_swapped(series: Sequence[Point]) -> bool:
    """Whether `counted` reads the series byte-swapped."""
    return _swapped_view(series) is not None


def velocity(series: Sequence[Point]) -> float | None:
    """IDs per second of a counter, as it counts (`counted`: byte-swapped back if so);
    None: not a usable counter (fewer than 3 samples, a step of 0 or one of half the ID
    space or more, which is not a forward move)."""
    return _raw_velocity(counted(series))


def monotonic_bounds(
    a: Sequence[Point],
    b: Sequence[Point],
    *,
    slack: float = 2.0,
    min_bound: int = 16,
) -> bool:
    """MIDAR's monotonic bounds test on two (time ns, IP-ID[, error ns]) series: True
    when their merge could come from one counter. Each step must be > 0 and at most
    `slack` times what the faster counter advances in that time plus the samples' errors
    (at least `min_bound`). Each series as its counter counts (`counted`)."""
    a, b = counted(a), counted(b)
    va, vb = _raw_velocity(a), _raw_velocity(b)
    if va is None or vb is None:
        return False
    v = max(va, vb)
    merged = _ordered([*a, *b])
    for x, y in itertools.pairwise(merged):
        dt = max(y[0] - x[0], 0) + _err(x) + _err(y)
        d = (y[1] - x[1]) % ID_SPACE
        if d == 0 or d > max(min_bound, slack * v * dt / 1e9):
            return False
    return True


def alias_pairs(samples: Sequence[IdSample], **bounds: Any) -> list[tuple[str, str]]:
    """Every pair of addresses whose merged series passes `monotonic_bounds`, sorted."""
    series: dict[str, list[Point]] = defaultdict(list)
    for s in samples:
        series[s.addr].append((s.time_ns, s.ip_id, s.error_ns))
    usable = sorted(a for a, ser in series.items() if velocity(ser) is not None)
    return [
        (x, y)
        for x, y in itertools.combinations(usable, 2)
        if monotonic_bounds(series[x], series[y], **bounds)
    ]


def common_source_pairs(samples: Sequence[IdSample]) -> list[tuple[str, str]]:
    """Mercator's aliases: a probed address and the other address its port unreachable
    came from (the router that holds the address answered from another of its own), as
    scamper's ``dealias -m mercator`` and sc_ally's byproduct; sorted pairs."""
    got = {tuple(sorted((s.addr, s.replied_from))) for s in samples if s.replied_from}
    return sorted((a, b) for a, b in got)


def alias_sets(pairs: Sequence[tuple[str, str]]) -> list[list[str]]:
    """Connected components of the pairs (routers), each sorted."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in pairs:
        parent[find(x)] = find(y)
    groups: dict[str, list[str]] = defaultdict(list)
    for x in parent:
        groups[find(x)].append(x)
    return sorted(sorted(g) for g in groups.values())


async def _probe_from(
    session: EndpointSession,
    model: ClockModel,
    name: str,
    jobs: list[tuple[str, str]],  # (address, method)
    slots: list[tuple[int, int, int]],  # (local ns, job index, seq)
    wait: float,
    recorder: PcapRecorder | None = None,
    unsent: dict[str, str] | None = None,
    log: list[ProbeLog] | None = None,
    via: Via | None = None,
    unreached: dict[str, str] | None = None,
) -> list[IdSample]:
    via = via or {}
    first = as_target(jobs[0][0])
    span_s = (slots[-1][0] - slots[0][0]) / 1e9 if slots else 0.0
    ident = random.randrange(1, 0x10000)
    # ICMP but echo requests and others' echo replies: `icmp` took a ping flood's too, and
    # beside one on loopback the capture's queue overflowed (traceroute's, session 27)
    expression = icmp_capture(first, ident)
    if any(m == "tcp-syn-sport" for _, m in jobs):  # the targets' RSTs and SYN-ACKs too
        expression += " or (tcp[tcpflags] & (tcp-rst|tcp-syn) != 0)"
    elif any(m in TCP_METHODS for _, m in jobs):  # the targets' RSTs too (not our own TCP)
        expression += " or (tcp[tcpflags] & tcp-rst != 0)"
    cap = await open_capture(
        session, first, src=None, duration_s=span_s + wait + 1.0, expression=expression
    )
    table: ProbeTable[int] = ProbeTable()
    sends: list[Deferred[QueuedSend]] = []
    probes: list[Probe] = []
    for i, (local, ti, seq) in enumerate(slots):
        p = _probe(jobs[ti][1], cap.src, as_target(jobs[ti][0]), ident, seq, i, via)
        probes.append(p)
        table.pop(p.key)  # (an indirect probe 65,536 slots on: the old one's reply is late)
        table.add(p.key, i)
        sends.append(session.nsend(cap.sktid, p.packet, time=model.to_endpoint(local), ntag=True))
        if i % 64 == 63:
            await session.wait_writable()
    got: dict[int, tuple[int, int, Reply]] = {}  # slot -> (recv endpoint ns, ip id, reply)
    done: dict[Any, int] = {}  # the key of an answered probe -> its slot
    again: dict[int, list[tuple[int, Reply]]] = defaultdict(list)  # slot -> later copies
    try:
        queued = [await d for d in sends]
        reactor = session.reactor
        # Replies are awaited until `wait` after the last probe actually left (its ntag),
        # never only until `wait` after its slot: under load the queueing or the endpoint's
        # scheduler runs late, and a fixed deadline then cut a stage's last replies off,
        # leaving an address too few samples for a velocity and its true pairs untested.
        left_at: list[float] = []

        def went(tag: Ntag | Failure) -> Ntag | Failure:  # sent, or never will be
            left_at.append(steady(reactor))
            return tag

        last = queued[-1].ntag
        if last is not None:
            last.addBoth(went)
        planned = steady(reactor) + max(0.0, (slots[-1][0] - _now_local(session)) / 1e9)
        planned += wait
        while len(got) < len(slots):
            now = steady(reactor)
            end = max(planned, left_at[0] + wait) if left_at else planned + LATE_S
            if now >= end:
                break
            note = await next_note(cap, min(end, now + 0.1))
            if note is None:
                continue
            if recorder is not None and isinstance(note, Ndata):
                recorder.add(note.time, note.data)  # every captured packet, as captured
            parsed = parse_ndata(note)
            if parsed is None:
                continue
            key = parsed[0].key
            which = table.get(key)
            answered = done.get(key)
            if which is None and key.proto == 17 and parsed[0].quoted_sum is not None:
                # (a Paris UDP probe, `FlowProbe`'s: told by its checksum)
                key = dataclasses.replace(key, seq=parsed[0].quoted_sum)
                which = table.get(key)
            if which is None:
                answered = answered if answered is not None else done.get(key)
                if answered in got and _answers(parsed[0], *jobs[slots[answered][1]]):
                    again[answered].append((parsed[1], parsed[0]))  # (the same reply again)
                continue
            if not _answers(parsed[0], *jobs[slots[which][1]]):
                if unreached is not None and parsed[0].kind is ReplyKind.DEST_UNREACHABLE:
                    unreached.setdefault(jobs[slots[which][1]][0], _unreach_text(parsed[0]))
                continue
            table.pop(key)
            done[key] = which
            if parsed[0].ip_id is not None:
                got[which] = (parsed[1], parsed[0].ip_id, parsed[0])
        sent = []
        for q, (_, ti, _) in zip(queued, slots, strict=True):
            try:
                sent.append(await ntag_time(q.ntag, reactor, 1.0))
            except SendFailed as e:  # no route from the endpoint's address, ...: no sample
                sent.append(None)
                if unsent is not None:
                    unsent.setdefault(
                        jobs[ti][0], f"the endpoint could not send to it from {cap.src}: {e.name}"
                    )
    finally:
        await close_capture(cap)
    if recorder is not None:
        for t, packet in zip(sent, probes, strict=False):
            if t is not None:  # sent (an ntag came): the probe as the endpoint sent it
                recorder.add(t, packet.packet)
    if log is not None:
        for i, (p, (_, ti, seq)) in enumerate(zip(probes, slots, strict=True)):
            answer = got.get(i)
            tx = sent[i]
            log.append(ProbeLog(
                jobs[ti][0], jobs[ti][1], name, str(cap.src), seq, p,
                None if tx is None else model.to_local(tx),
                None if answer is None else answer[2],
                None if answer is None else model.to_local(answer[0]),
                tuple((r, model.to_local(ns)) for ns, r in again.get(i, ())),
            ))  # fmt: skip
    out = []
    clock_err = min(r.error_ns for r in model.rounds)
    for i, (recv_ns, ip_id, reply) in got.items():
        s_ns = sent[i]
        mid = recv_ns if s_ns is None else (s_ns + recv_ns) // 2
        half = (recv_ns - mid) if s_ns is not None else 1_000_000
        addr, method = jobs[slots[i][1]]
        src = str(reply.src)
        other = None if src == addr or method == INDIRECT else src  # (Mercator's)
        out.append(IdSample(addr, name, model.to_local(mid), ip_id, half + clock_err,
                            method, other))  # fmt: skip
    return out


def _probe(method: str, src: Any, dst: Any, ident: int, seq: int, index: int, via: Via) -> Probe:
    """The probe of slot `index` (round `seq`). Every probe of one endpoint's run has its
    own key: echo (ident, seq); TCP ACK the sequence number; UDP the source port (udp-dport:
    the destination port); tcp-*-sport the source port and sequence number; an
    indirect echo (to the destination beyond `dst`) its own ident and the slot."""
    if method == INDIRECT:
        beyond, ttl, *flow = via[str(dst)]
        if flow:  # through the flow that reached it (Paris probes, one key per slot)
            return flow[0](src, as_target(beyond), ttl, index)
        return echo_probe(src, as_target(beyond), ident=ident ^ 0x8000, seq=index & 0xFFFF,
                          ttl=ttl)  # fmt: skip
    if method == "icmp-echo":
        return echo_probe(src, dst, ident=ident, seq=seq & 0xFFFF)
    if method == "tcp-ack":
        return tcp_ack_probe(
            src, dst, sport=ident, dport=PROBE_PORT, seq=((ident << 16) + index) & 0xFFFFFFFF
        )
    if method == "udp":  # rounds <= 10,000 (the CLI's bound) keep the port in range
        return udp_probe(src, dst, sport=0x8000 + (ident + seq) % 0x8000, dport=PROBE_PORT)
    # scamper's port-changing variants, as scamper 20211212 sends them (tcpdump): a port
    # one up per round of the target; the source ports offset by 0x4000 from `udp`'s and
    # from each other (rounds <= 10,000), so no two probes of one run share a flow
    if method == "udp-dport":  # one source port; the destination port per round
        return udp_probe(src, dst, sport=0x8000 + (ident + 0x4000) % 0x8000,
                         dport=PROBE_PORT + seq)  # fmt: skip
    if method in ("tcp-ack-sport", "tcp-syn-sport"):
        shift = 0x4000 if method == "tcp-syn-sport" else 0
        sport = 0x8000 + (ident + shift + seq) % 0x8000
        number = (((~ident & 0xFFFF) << 16) + index) & 0xFFFFFFFF  # (not tcp-ack's)
        if method == "tcp-ack-sport":  # its RST's sequence number is our acknowledgment
            return tcp_ack_probe(src, dst, sport=sport, dport=PROBE_PORT, seq=number)
        # (no options, as scamper's; a RST or SYN-ACK acknowledges number + 1)
        return tcp_syn_probe(src, dst, sport=sport, dport=PROBE_PORT, seq=number, mss=None)
    raise ValueError(f"unknown probe method {method!r}; valid: {', '.join(ALL_METHODS)}")


# ICMP unreachable codes as iputils ping words them
_UNREACH = {0: "net unreachable", 1: "host unreachable", 2: "protocol unreachable",
            9: "net prohibited", 10: "host prohibited", 13: "packet filtered"}  # fmt: skip


def _unreach_text(reply: Reply) -> str:
    code = reply.icmp_code if reply.icmp_code is not None else -1
    return f"{reply.src} answered {_UNREACH.get(code, f'unreachable (code {code})')}"


def _answers(reply: Reply, addr: str, method: str) -> bool:
    """`reply` is what `method` waits for: the echo reply; the RST from the probed address
    itself (tcp-syn-sport: or its SYN-ACK); the port unreachable (udp, udp-dport), from
    any address of the node that holds the probed one; for an indirect probe the time
    exceeded from `addr`, not from another router after a change of path (whose IDs are
    another counter's)."""
    if method == INDIRECT:
        return reply.kind is ReplyKind.TIME_EXCEEDED and str(reply.src) == addr
    if method == "icmp-echo":
        return reply.kind is ReplyKind.ECHO_REPLY
    if method in ("tcp-ack", "tcp-ack-sport"):
        return reply.kind is ReplyKind.TCP_RST and reply.src == reply.key.dst
    if method == "tcp-syn-sport":  # a closed port's RST, or an open one's SYN-ACK
        answer = reply.kind in (ReplyKind.TCP_RST, ReplyKind.TCP_SYNACK)
        return answer and reply.src == reply.key.dst
    # A port unreachable is sent by the node holding the probed address (a router on the
    # way sends no such thing for a datagram not addressed to it), so its ID is that
    # router's even when it comes from another of its addresses (Mercator's common source
    # address; scamper's dealias counts its IP-ID too). Before session 24 one from
    # another address was dropped: `--method udp` on such a router found no counter.
    return reply.kind is ReplyKind.DEST_UNREACHABLE and reply.icmp_code == ICMP_PORT_UNREACH


def _jobs(targets: Sequence[str], method: MethodSpec, via: Via) -> list[tuple[str, str]]:
    """(target, method) to probe; of a list of methods, indirect only for the targets
    with a `via` (and a target needs one method it can be probed with)."""
    if isinstance(method, str):
        jobs = [(t, method) for t in targets]
    elif isinstance(method, Mapping):
        jobs = [(t, method[t]) for t in targets]
    else:
        jobs = [(t, m) for t in targets for m in method if m != INDIRECT or t in via]
    bad = [m for _, m in jobs if m not in ALL_METHODS]
    if bad:
        raise ValueError(f"unknown probe method {bad[0]!r}; valid: {', '.join(ALL_METHODS)}")
    for t in targets:
        if ((t, INDIRECT) in jobs and t not in via) or not any(x == t for x, _ in jobs):
            raise ValueError(
                f"{t}: the indirect method needs the destination beyond it and the TTL "
                f"that expires there ({t}@DST:TTL)"
            )
    for t, (beyond, ttl, *_) in via.items():
        if not 1 <= ttl <= 255:
            raise ValueError(f"{t}@{beyond}:{ttl}: the TTL must be 1..255")
    return jobs


def _now_local(session: EndpointSession) -> int:
    return int(session.clock_ns())


@deferred_api
async def collect_ip_ids(
    sessions: Sequence[EndpointSession],
    targets: Sequence[str],
    *,
    rounds: int = 10,
    spacing: float = 0.002,
    lead: float = 0.3,
    wait: float = 1.0,
    sync_rounds: int = 3,
    recorder: PcapRecorder | None = None,
    unsent: dict[str, str] | None = None,
    method: MethodSpec = "icmp-echo",
    runs: list[ProbeRun] | None = None,
    via: Via | None = None,
    unreached: dict[str, str] | None = None,
    shuffle: bool = False,
    round_wait: float = 0.0,
) -> list[IdSample]:
    """Probe every target `rounds` times from every endpoint: one probe per global slot
    `spacing` s apart, slots dealt round-robin over (target, endpoint), so each target's
    series alternates between endpoints. `method`: one of METHODS for every target, a
    mapping target -> method, or a sequence of methods every target is probed with (each
    in its own slots; the samples say which). Returns every answered sample; a probe
    the endpoint refuses to send (no route from its address, ...) has none, and `unsent`
    gets its target with the reason; `runs` gets this run's every probe (`ProbeRun`, in
    send order), for scamper's dealias record; `unreached` per target the first ICMP
    unreachable that answered a probe of it instead (who said what: "10.77.1.2 answered
    net unreachable"). `via`: per target probed ``indirect``, the
    destination beyond it and the TTL that expires at it. `shuffle`: each round probes
    the (target, method) pairs in a new random order (scamper's radargun ``-O shuffle``,
    which shuffles its definitions every round), not always in the order given.
    `round_wait`: each round starts at least this long (s) after the one before
    (scamper's radargun ``-r wait-round``: rounds spread over a longer time, for a slow
    counter), where by default a round follows the last one's last slot.
    `recorder` gets every probe sent and every packet captured (all endpoints' times)."""
    if not sessions or not targets:
        raise ValueError("need at least one endpoint and one target")
    via = via or {}
    jobs = _jobs(targets, method, via)
    models, infos = [], []
    for i, s in enumerate(sessions):
        try:
            models.append(await clock_sync(s, rounds=sync_rounds, interval=0.05))
            infos.append(await read_system_info(s))
        except Exception as e:
            if len(sessions) > 1:  # which one (gone before the probing, ...)
                raise ControllerError(f"endpoint {getattr(s, 'peer', i)}: {e}") from None
            raise
    names = endpoint_names([info.hostid for info in infos],
                           [f"endpoint{i}" for i in range(len(infos))])  # fmt: skip
    start = _now_local(sessions[0]) + int(lead * 1e9)
    per: list[list[tuple[int, int, int]]] = [[] for _ in sessions]
    # (a round's slots back to back; the next round after them, or after `round_wait`)
    gap = max(len(jobs) * len(sessions) * spacing, round_wait)
    for r in range(rounds):
        turn = list(range(len(jobs)))
        if shuffle:
            random.shuffle(turn)
        k = 0
        for ti in turn:
            for ei in range(len(sessions)):
                per[ei].append((start + int((r * gap + k * spacing) * 1e9), ti, r))
                k += 1
    logs: list[list[ProbeLog] | None] = [[] if runs is not None else None for _ in sessions]
    try:
        results = await gatherResults(
            [
                Deferred.fromCoroutine(
                    _probe_from(s, m, n, jobs, slots, wait, recorder, unsent, log, via, unreached)
                )
                for s, m, n, slots, log in zip(sessions, models, names, per, logs, strict=True)
            ],
            consumeErrors=True,
        )
    except FirstError as e:  # the endpoint's own error (no raw sockets, ...), not a wrapper
        if len(sessions) > 1:  # which one of them (it went away, it lacks raw sockets, ...)
            raise ControllerError(f"endpoint {names[e.index]}: {e.subFailure.value}") from None
        e.subFailure.raiseException()
    if runs is not None:
        every = itertools.chain.from_iterable(log for log in logs if log is not None)
        order = sorted(every, key=lambda p: (p.tx_ns is None, p.tx_ns or 0))
        runs.append(ProbeRun(rounds, spacing, wait, order, shuffle, round_wait))
    return sorted(itertools.chain.from_iterable(results), key=lambda s: s.time_ns)
