"""A traceroute with one probe in flight at a time (the paper's method, a controller
round trip per hop), and Butskoy's --mtu, which shrinks the probes as routers or the
endpoint refuse them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from packetlab.clockstep import steady
from packetlab.controller import EndpointSession, SendFailed, StopSignal
from packetlab.measure.capture import MeasureError, RawCapture, next_note, ntag_time, parse_ndata
from packetlab.measure.probes import REFUSABLE, Probe
from packetlab.measure.records_traceroute import Hop
from packetlab.measure.replies import Reply
from packetlab.measure.traceroute_probes import (
    MIN_MTU,
    Adopt,
    HopCallback,
    end_of_ttl,
    ends_trace,
    smaller_mtu,
    too_big,
)


def hop_of(probe: Probe, answer: tuple[Reply, int] | None, sent: int | None) -> Hop:
    """The hop a probe gives: a timeout, or the reply `answer` (reply, receive stamp)."""
    if answer is None:
        return Hop.timeout(probe.ttl, probe_send_ns=sent)
    return Hop.from_reply(
        probe.ttl, answer[0], probe_send_ns=sent, reply_recv_ns=answer[1], probe_len=len(probe)
    )


async def answer_to(
    cap: RawCapture, probe: Probe, adopt: Adopt, deadline: float, stop: StopSignal | None
) -> tuple[Reply, int] | None:
    """The captured reply to `probe` (and its receive time), read until `deadline`
    (reactor seconds) or `stop`; None if none came: one probe in flight at a time."""
    while True:
        note = await next_note(cap, deadline, stop)
        if note is None:
            return None
        got = parse_ndata(note)
        reply = adopt(got[0]) if got is not None else None
        if got is not None and reply is not None and reply.key == probe.key:
            return reply, got[1]


@dataclasses.dataclass
class Refusals:
    """What a sequential trace does with a long probe (session 29). `df` (traceroute
    -F): one the endpoint refuses is a hop `*  0.000 ms !F-MTU` that ends the trace, as
    traceroute -F's local EMSGSIZE; `mtu` the MTU the endpoint's kernel holds it to (its
    route's, lowered by a "too big"), None when not known (--listen: `!F`, for a probe
    over REFUSABLE bytes). Without DF, `rebuild(i, mtu)` makes probe i in fragments of
    `mtu`: once a "too big" named an MTU, the later probes go so, as traceroute -N 1's
    kernel sends them after that answer."""

    df: bool = False
    mtu: int | None = None
    rebuild: Callable[[int, int], Probe] | None = None


async def run_sequential(
    session: EndpointSession,
    cap: RawCapture,
    probes: list[Probe],
    adopt: Adopt,
    wait: float,
    on_hop: HopCallback | None,
    stop: StopSignal | None,
    refusals: Refusals | None = None,
) -> list[Hop]:
    """One probe in flight: send, wait for its answer (or `wait` s), then the next. Its
    ntag is awaited first: a probe the endpoint refused waits for no answer."""
    reactor = session.reactor
    how = refusals or Refusals()
    mtu, taught = how.mtu, None
    hops: list[Hop] = []
    end = len(probes)
    i = 0
    while i < end and not (stop is not None and stop.requested):
        probe = probes[i]
        if how.rebuild is not None and taught is not None and taught < _longest(probe):
            probe = probes[i] = how.rebuild(i, taught)
        deadline = steady(reactor) + wait
        queued = await session.nsend(cap.sktid, probe.packet, ntag=True)
        for piece in probe.more:  # the rest of a fragmented probe
            await session.nsend(cap.sktid, piece)
        try:
            sent = await ntag_time(queued.ntag, reactor, max(wait, 1.0))  # (-w 0 too)
        except SendFailed:
            if not how.df or (mtu is None and len(probe) <= REFUSABLE):
                raise
            hop, end = Hop.refused(probe.ttl, mtu), min(end, end_of_ttl(probes, i))
        else:
            answer = await answer_to(cap, probe, adopt, deadline, stop)
            if answer is not None and ends_trace(answer[0]):
                end = min(end, end_of_ttl(probes, i))  # the rest of this TTL's probes
            reply = answer[0] if answer is not None else None
            said = reply.mtu if reply is not None and too_big(reply) else None
            if reply is not None and said is not None and said >= MIN_MTU[reply.src.version]:
                taught = min(taught or said, said)
                mtu = min(mtu or said, said) if how.df else mtu
            hop = hop_of(probe, answer, sent)
        hops.append(hop)
        if on_hop is not None:
            on_hop(hop)
        i += 1
    return hops


def _longest(probe: Probe) -> int:
    """The longest packet a probe leaves as (itself, or its first fragment)."""
    return max([len(probe.packet), *(len(p) for p in probe.more)])


def _named_smaller(reply: Reply, size: int, least: int) -> int | None:
    """The size a "too big" answer to a `size` byte probe has --mtu try next: the MTU the
    router named, if it is below `size` and holds the headers (`least`), as traceroute
    2.1.2 takes its socket's ee_info; otherwise None, and the hop ends there with
    `!F-NUM`. No plateaus and no kernel floor: traceroute's IP_PMTUDISC_PROBE socket
    sends the size the router named, whatever Linux keeps as the path MTU (552 and 1280
    at least). Seen on the wire beside traceroute (session 26, icmp26): a router naming
    300 (IPv4) or 1000 (IPv6) to every probe gets a 1500 byte probe, then one of 300 /
    1000, then `!F-300` / `!F-1000`; ours went on down the plateaus to 68 (IPv4) or sent
    nothing smaller (IPv6)."""
    said = reply.mtu
    return said if said is not None and least <= said < size else None


async def run_mtu_sequential(
    session: EndpointSession,
    cap: RawCapture,
    build: Callable[[int, int], Probe],
    adopt: Adopt,
    ttls: list[int],
    size: int,
    least: int,
    hints: Sequence[int],
    wait: float,
    on_hop: HopCallback | None,
    stop: StopSignal | None,
) -> list[Hop]:
    """Butskoy's --mtu (with its -N 1): one DF probe at a time, `size` bytes to begin
    with (`build(i, size)` makes probe i, TTL `ttls[i]`). A probe the endpoint could not
    send (too big for its interface, or a path MTU its kernel cached) goes again at the
    next of `hints` (those MTUs, when known) or of the plateaus; one answered by
    "fragmentation needed" / "packet too big" goes again at the MTU the router named when
    that is smaller (else the hop ends `!F-NUM`, as traceroute's). The first probe
    answered at a new size carries it (`Hop.mtu`: traceroute's ``F=NUM``, which its
    line shows only when no `!` note replaces it)."""
    reactor = session.reactor
    hops: list[Hop] = []
    end, i, new_size = len(ttls), 0, None
    while i < end and not (stop is not None and stop.requested):
        probe = build(i, size)
        queued = await session.nsend(cap.sktid, probe.packet, ntag=True)
        try:
            sent = await ntag_time(queued.ntag, reactor, max(wait, 1.0))  # (-w 0 too)
        except SendFailed:  # too big for the endpoint's interface (EMSGSIZE)
            smaller = smaller_mtu(size, least, hints=hints)
            if smaller is None:
                raise MeasureError(f"the endpoint could not send a {size} byte probe") from None
            size = new_size = smaller
            continue
        answer = await answer_to(cap, probe, adopt, steady(reactor) + wait, stop)
        if answer is not None and too_big(answer[0]):
            smaller = _named_smaller(answer[0], size, least)
            if smaller is not None:
                size = new_size = smaller
                continue
        hop = hop_of(probe, answer, sent)
        if answer is not None:
            if new_size is not None:
                hop, new_size = dataclasses.replace(hop, mtu=new_size), None
            if ends_trace(answer[0]):
                while end > i + 1 and ttls[end - 1] != ttls[i]:
                    end -= 1
        hops.append(hop)
        if on_hop is not None:
            on_hop(hop)
        i += 1
    return hops
