"""UDP traceroute through a PacketLab endpoint, as in the Marionette paper (§5.3).

The controller opens a raw socket on the endpoint, captures ICMP(v6) there with an ncap
filter, and sends one TTL-limited UDP probe per hop (Butskoy's ports and payload) with
`nsend(..., ntag=True)`. A hop's RTT is the reply's ndata time minus the probe's ntag time:
both are taken by the endpoint (this project's endpoint stamps both in the kernel), so the
controller's distance to the endpoint is not in them.

`open_capture` and `pick_source` are shared with `packetlab.measure.ping`.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred

from packetlab.controller import EndpointSession, Note, Socket, read_system_info, read_time
from packetlab.controller._deferred import deferred_api
from packetlab.controller.errors import ControllerError
from packetlab.controller.filters import tcpdump_filter
from packetlab.measure.probes import TRACEROUTE_BASE_PORT, Probe, ProbeTable, traceroute_probe
from packetlab.measure.records import Hop, Stamp, TracerouteResult
from packetlab.measure.replies import ParseError, Reply, ReplyKind, parse_reply
from packetlab.wire import Ndata, Ntag, TransSup

__all__ = [
    "CAPTURE_FILTERS",
    "MeasureError",
    "RawCapture",
    "close_capture",
    "open_capture",
    "pick_source",
    "traceroute",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Only ICMP of the probe's family: errors quoting our probes and echo replies. Everything
# else stays in the endpoint's kernel.
CAPTURE_FILTERS = {4: "icmp", 6: "icmp6"}
SETUP_SLACK_S = 30.0  # capture time beyond what the probes need (request round trips)
PACED_LEAD_S = 0.05  # paced: the first probe leaves this long after the clock was read


class MeasureError(ControllerError):
    """The endpoint cannot run this measurement (no raw sockets, no address of the family)."""


def as_target(value: str | Address) -> Address:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"target {value!r} is not an IPv4 or IPv6 address") from None


def pick_source(addresses: Sequence[Address], dst: Address) -> Address:
    """The exported address to send from: of dst's family, loopback only for a loopback
    dst, link-local only for a link-local dst; the first one that fits otherwise."""
    same = [a for a in addresses if a.version == dst.version]
    if not same:
        raise MeasureError(
            f"the endpoint exports no IPv{dst.version} address, so it cannot probe {dst}"
        )

    def scope(a: Address) -> int:  # 0 = the same kind of address as dst, larger = worse
        if a.is_loopback != dst.is_loopback:
            return 2
        return int(a.is_link_local != dst.is_link_local)

    return min(same, key=scope)


@dataclass
class RawCapture:
    """An open raw socket capturing `expression` on the endpoint until `endtime` (ns)."""

    session: EndpointSession
    sktid: int
    sock: Socket
    src: Address
    endtime: int
    opened_at: int  # endpoint time read just before the nopen


async def open_capture(
    session: EndpointSession,
    dst: Address,
    *,
    src: Address | None,
    duration_s: float,
    expression: str | None = None,
) -> RawCapture:
    """Read the endpoint's addresses (unless `src` is given), open a raw socket there and
    capture for `duration_s` seconds (plus slack) with a tcpdump filter (default: ICMP of
    dst's family). Raises MeasureError when the endpoint has no raw sockets."""
    info_d = read_system_info(session)
    time_d = read_time(session)
    info = await info_d
    now = await time_d
    if not info.transsup & TransSup.RAW:
        raise MeasureError(
            "the endpoint does not offer raw sockets (TRANSSUP has no raw; it needs "
            "TransprotoSup raw,... in endpt.conf and CAP_NET_RAW)"
        )
    if src is None:
        src = pick_source(info.addresses, dst)
    elif src.version != dst.version:
        raise ValueError(f"source {src} and target {dst} are different IP versions")
    program = tcpdump_filter(expression or CAPTURE_FILTERS[dst.version])
    sktid = session.free_sktid()
    sock = await session.nopen_raw(sktid, laddr=src)
    endtime = now + int((duration_s + SETUP_SLACK_S) * 1e9)
    try:
        await session.ncap(sktid, program, endtime=endtime)
    except BaseException:
        await close_capture(RawCapture(session, sktid, sock, src, endtime, now))
        raise
    return RawCapture(session, sktid, sock, src, endtime, now)


async def close_capture(cap: RawCapture) -> None:
    """nclose, ignoring a session that already ended (its error is reported elsewhere)."""
    if cap.sock.ended:
        return
    try:
        await cap.session.nclose(cap.sktid)
    except ControllerError:
        pass


async def next_note(cap: RawCapture, deadline: float) -> Note | None:
    """The capture socket's next notification, or None once `deadline` (reactor seconds)
    has passed. Raises MeasureError when the endpoint closed the socket."""
    left = deadline - cap.session.reactor.seconds()
    if left <= 0:
        return None
    note = await cap.sock.get(timeout=left)
    if note is None and cap.sock.ended:
        raise MeasureError("the endpoint closed the capture socket")
    return note


def parse_ndata(note: object) -> tuple[Reply, int] | None:
    """(reply, kernel receive time) of a captured packet, or None for anything else."""
    if not isinstance(note, Ndata):
        return None
    try:
        return parse_reply(note.data), note.time
    except ParseError:
        return None


async def ntag_time(d: Deferred[Ntag] | None, reactor: Any, timeout: float) -> int | None:
    """The send time of an ntag Deferred, None if it does not come within `timeout`."""
    if d is None:
        return None
    box: list[int | None] = [None]

    def got(tag: Ntag) -> None:
        box[0] = tag.time

    d.addCallback(got)
    d.addTimeout(timeout, reactor, onTimeoutCancel=lambda result, t: None)
    await d
    return box[0]


def _ends_trace(reply: Reply) -> bool:
    # The destination answered (port unreachable), or a router says it cannot get there
    # (!H, !N, !X...): further TTLs would only repeat that.
    return reply.from_destination or reply.kind is ReplyKind.DEST_UNREACHABLE


async def _sequential(
    session: EndpointSession, cap: RawCapture, probes: list[Probe], wait: float
) -> list[Hop]:
    """One probe in flight: send, wait for its answer (or `wait` s), then the next."""
    reactor = session.reactor
    hops: list[Hop] = []
    for probe in probes:
        queued = await session.nsend(cap.sktid, probe.packet, ntag=True)
        deadline = reactor.seconds() + wait
        answer: tuple[Reply, int] | None = None
        while answer is None:
            note = await next_note(cap, deadline)
            if note is None:
                break
            got = parse_ndata(note)
            if got is not None and got[0].key == probe.key:
                answer = got
        sent = await ntag_time(queued.ntag, reactor, wait)
        if answer is None:
            hops.append(Hop.timeout(probe.ttl, probe_send_ns=sent))
            continue
        reply, recv_ns = answer
        hops.append(Hop.from_reply(probe.ttl, reply, probe_send_ns=sent, reply_recv_ns=recv_ns))
        if _ends_trace(reply):
            break
    return hops


async def _paced(
    session: EndpointSession, cap: RawCapture, probes: list[Probe], wait: float, pace: float
) -> list[Hop]:
    """Every probe queued at once with endpoint send times `pace` s apart; answers are
    collected until all TTLs up to the end of the path have one, or `wait` s after the
    last send. TTLs beyond the first that ends the trace are dropped from the result."""
    reactor = session.reactor
    table: ProbeTable[int] = ProbeTable()
    for i, probe in enumerate(probes):
        table.add(probe.key, i)
    start = await read_time(session) + int(PACED_LEAD_S * 1e9)
    local_start = reactor.seconds()
    sends = [
        session.nsend(cap.sktid, p.packet, time=start + int(i * pace * 1e9), ntag=True)
        for i, p in enumerate(probes)
    ]
    queued = [await d for d in sends]
    answers: dict[int, tuple[Reply, int]] = {}
    end_at = len(probes)  # index of the first probe that ends the trace, when known
    deadline = local_start + PACED_LEAD_S + (len(probes) - 1) * pace + wait
    while not all(i in answers for i in range(min(end_at + 1, len(probes)))):
        note = await next_note(cap, deadline)
        if note is None:
            break
        got = parse_ndata(note)
        if got is None:
            continue
        which = table.pop(got[0].key)
        if which is not None:  # else not ours, or a duplicate
            answers[which] = got
            if _ends_trace(got[0]):
                end_at = min(end_at, which)
    sent = [await ntag_time(q.ntag, reactor, 1.0) for q in queued]
    hops = []
    for i, probe in enumerate(probes[: end_at + 1]):
        if i not in answers:
            hops.append(Hop.timeout(probe.ttl, probe_send_ns=sent[i]))
            continue
        reply, recv_ns = answers[i]
        hops.append(Hop.from_reply(probe.ttl, reply, probe_send_ns=sent[i], reply_recv_ns=recv_ns))
    return hops


@deferred_api
async def traceroute(
    session: EndpointSession,
    dst: str | Address,
    *,
    first_ttl: int = 1,
    max_ttl: int = 30,
    wait: float = 2.0,
    sport: int | None = None,
    base_port: int = TRACEROUTE_BASE_PORT,
    src: str | Address | None = None,
    pace: float | None = None,
    send_stamp: str = Stamp.KERNEL,
    recv_stamp: str = Stamp.KERNEL,
) -> TracerouteResult:
    """Trace the path to `dst` from the endpoint: one UDP probe per TTL, each answered
    within `wait` seconds or recorded as `Hop.timeout`. Stops at the destination (or a
    destination unreachable) or after `max_ttl`.

    Probes go one at a time (the paper's method; a controller round trip per hop) unless
    `pace` (seconds) is given: then all TTLs are queued at once with endpoint send times
    `pace` apart, and the run takes about max_ttl * pace + wait whatever the controller's
    distance. `sport` is the UDP source port of every probe (default: random,
    32768..60999); probe n goes to `base_port + n` like Butskoy's traceroute. `src`
    defaults to the endpoint's exported address of dst's family. `send_stamp`/`recv_stamp`
    only label the result: the defaults describe this project's endpoint (kernel TX and RX
    timestamps).
    """
    target = as_target(dst)
    if not 1 <= first_ttl <= max_ttl <= 255:
        raise ValueError(f"need 1 <= first_ttl <= max_ttl <= 255, got {first_ttl}, {max_ttl}")
    if not 0 < wait <= 60:
        raise ValueError(f"wait must be in (0, 60] seconds, got {wait}")
    if pace is not None and not 0 <= pace <= 10:
        raise ValueError(f"pace must be 0..10 seconds, got {pace}")
    if sport is None:
        sport = random.randrange(32768, 61000)
    elif not 0 < sport <= 0xFFFF:
        raise ValueError(f"sport must be 1..65535, got {sport}")
    if base_port + (max_ttl - first_ttl) > 0xFFFF or base_port < 1:
        raise ValueError(f"base_port {base_port} + probes does not fit in 1..65535")
    source = as_target(src) if src is not None else None
    n = max_ttl - first_ttl + 1
    budget = n * (wait + 1.0) if pace is None else PACED_LEAD_S + n * pace + wait
    cap = await open_capture(session, target, src=source, duration_s=budget)
    try:
        probes = [
            traceroute_probe(cap.src, target, ttl, sport=sport, index=i, base_port=base_port)
            for i, ttl in enumerate(range(first_ttl, max_ttl + 1))
        ]
        if pace is None:
            hops = await _sequential(session, cap, probes, wait)
        else:
            hops = await _paced(session, cap, probes, wait, pace)
    finally:
        await close_capture(cap)
    return TracerouteResult(
        dst=str(target),
        hops=tuple(hops),
        src=str(cap.src),
        max_ttl=max_ttl,
        probe_size=len(probes[0].packet),
        start_ns=next((h.probe_send_ns for h in hops if h.probe_send_ns is not None), None),
        send_stamp=send_stamp,
        recv_stamp=recv_stamp,
    )
