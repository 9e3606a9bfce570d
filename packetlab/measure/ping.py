"""ICMP(v6) echo ("ping") through a PacketLab endpoint's raw socket.

All echo requests are queued at once with endpoint send times `interval` apart (nsend
`time`), so the endpoint paces them itself; replies come back through an ncap capture. An
RTT is the reply's ndata time minus the request's ntag time, both taken by the endpoint.
"""

from __future__ import annotations

import random

from twisted.internet.defer import Deferred

from packetlab.controller import EndpointSession, QueuedSend, read_time
from packetlab.controller._deferred import deferred_api
from packetlab.measure.probes import PING_PAYLOAD, Probe, ProbeTable, echo_probe
from packetlab.measure.records import PingReply, PingResult, Stamp
from packetlab.measure.replies import Reply, ReplyKind
from packetlab.measure.traceroute import (
    Address,
    as_target,
    close_capture,
    next_note,
    ntag_time,
    open_capture,
    parse_ndata,
)
from packetlab.wire import Ndata

__all__ = ["MAX_COUNT", "ping"]

MAX_COUNT = 10_000
LEAD_S = 0.05  # the first request leaves this long after the endpoint's clock was read


def _payload(size: int) -> bytes:
    if size == len(PING_PAYLOAD):
        return PING_PAYLOAD
    return bytes(i & 0xFF for i in range(size))


def _icmp_size(reply: Reply, data: bytes) -> int:
    """Bytes of ICMP message in the reply (what ping prints as "N bytes from")."""
    header = (data[0] & 0x0F) * 4 if reply.src.version == 4 else 40
    return max(0, reply.size - header)


@deferred_api
async def ping(
    session: EndpointSession,
    dst: str | Address,
    *,
    count: int = 5,
    interval: float = 1.0,
    wait: float = 2.0,
    size: int = len(PING_PAYLOAD),
    ttl: int = 64,
    ident: int | None = None,
    src: str | Address | None = None,
    send_stamp: str = Stamp.KERNEL,
    recv_stamp: str = Stamp.KERNEL,
) -> PingResult:
    """Send `count` echo requests `interval` seconds apart from the endpoint and wait up to
    `wait` seconds after the last one for replies. Lost requests are listed with
    `addr=None`. `ident` is the ICMP identifier (default random)."""
    target = as_target(dst)
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be 1..{MAX_COUNT}, got {count}")
    if not 0 <= interval <= 60:
        raise ValueError(f"interval must be 0..60 seconds, got {interval}")
    if not 0 < wait <= 60:
        raise ValueError(f"wait must be in (0, 60] seconds, got {wait}")
    if not 0 <= size <= 65000:
        raise ValueError(f"size must be 0..65000 bytes of payload, got {size}")
    if not 1 <= ttl <= 255:
        raise ValueError(f"ttl must be 1..255, got {ttl}")
    if ident is None:
        ident = random.randrange(1, 0x10000)
    elif not 0 <= ident <= 0xFFFF:
        raise ValueError(f"ident must be 0..65535, got {ident}")
    source = as_target(src) if src is not None else None
    reactor = session.reactor
    span = (count - 1) * interval
    cap = await open_capture(session, target, src=source, duration_s=LEAD_S + span + wait)
    payload = _payload(size)
    table: ProbeTable[int] = ProbeTable()
    probes: list[Probe] = []
    sends: list[Deferred[QueuedSend]] = []
    replies: dict[int, tuple[Reply, int, int]] = {}  # seq -> reply, recv time, ICMP size
    try:
        start = await read_time(session) + int(LEAD_S * 1e9)
        local_start = reactor.seconds()
        for seq in range(count):
            p = echo_probe(cap.src, target, ident=ident, seq=seq, ttl=ttl, payload=payload)
            probes.append(p)
            table.add(p.key, seq)
            at = start + int(seq * interval * 1e9)
            sends.append(session.nsend(cap.sktid, p.packet, time=at, ntag=True))
            await session.wait_writable()
        queued = [await d for d in sends]
        deadline = local_start + LEAD_S + span + wait
        while len(replies) < count:
            note = await next_note(cap, deadline)
            if note is None:
                break
            if not isinstance(note, Ndata):
                continue
            got = parse_ndata(note)
            if got is None or got[0].kind is not ReplyKind.ECHO_REPLY:
                continue
            which = table.pop(got[0].key)
            if which is not None:  # else not ours, or a duplicate
                replies[which] = (got[0], got[1], _icmp_size(got[0], note.data))
        sent = [await ntag_time(q.ntag, reactor, 1.0) for q in queued]
    finally:
        await close_capture(cap)
    out: list[PingReply] = []
    for seq in range(count):
        if seq not in replies:
            out.append(PingReply(seq, None, None, probe_send_ns=sent[seq]))
            continue
        reply, recv_ns, icmp_size = replies[seq]
        sent_ns = sent[seq]
        rtt = (recv_ns - sent_ns) / 1000.0 if sent_ns is not None else None
        out.append(
            PingReply(
                seq,
                str(reply.src),
                rtt,
                ttl=reply.ttl,
                size=icmp_size,
                probe_send_ns=sent[seq],
                reply_recv_ns=recv_ns,
            )
        )
    return PingResult(
        dst=str(target),
        sent=count,
        replies=tuple(out),
        src=str(cap.src),
        start_ns=sent[0],
        send_stamp=send_stamp,
        recv_stamp=recv_stamp,
    )
