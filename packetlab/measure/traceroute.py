"""UDP traceroute through a PacketLab endpoint, as in the Marionette paper (§5.3).

The controller opens a raw socket on the endpoint, captures ICMP(v6) there with an ncap
filter, and sends one TTL-limited UDP probe per hop (Butskoy's ports and payload) with
`nsend(..., ntag=True)`. A hop's RTT is the reply's ndata time minus the probe's ntag time:
both are taken by the endpoint (this project's endpoint stamps both in the kernel), so the
controller's distance to the endpoint is not in them.

The raw capture it probes through is `packetlab.measure.capture`'s (shared with ping,
MDA, alias resolution and DNS); its names stay importable from here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.python.failure import Failure

from packetlab.controller import (
    EndpointSession,
    QueuedSend,
    SendFailed,
    StopSignal,
    deferred_api,
    read_time,
)
from packetlab.measure.capture import (
    CAPTURE_FILTERS,
    MeasureError,
    RawCapture,
    as_target,
    close_capture,
    next_note,
    ntag_time,
    open_capture,
    parse_ndata,
    pick_source,
)
from packetlab.measure.flight import GRACE_S, Waker
from packetlab.measure.packets import (
    DCCP_SERVICE_CODE,
    TCP_ACK,
    loose_source_route,
    with_ip_options,
)
from packetlab.measure.probes import (
    BARE_ACK,
    LINUX_SYN,
    TRACEROUTE_BASE_PORT,
    TRACEROUTE_PAYLOAD,
    Probe,
    ProbeKey,
    ProbeTable,
    TcpFlavor,
    dccp_probe,
    echo_probe,
    fragmented,
    paris_echo_probe,
    paris_udp_probe,
    tcp_probe,
    traceroute_payload,
    traceroute_probe,
    udp_probe,
)
from packetlab.measure.records import Hop, Stamp, TracerouteResult
from packetlab.measure.replies import Reply, ReplyKind
from packetlab.wire import Ntag, Status

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

PACED_LEAD_S = 0.05  # paced: the first probe leaves this long after the clock was read


def _ends_trace(reply: Reply) -> bool:
    # The destination answered (port unreachable), or a router says it cannot get there
    # (!H, !N, !X..., or ICMPv6 "packet too big": !F), or any other error but a time
    # exceeded in transit (traceroute's final `!<TYPE-CODE>`, e.g. a parameter
    # problem): further TTLs would only repeat that.
    return (
        reply.from_destination
        or reply.kind
        in (ReplyKind.DEST_UNREACHABLE, ReplyKind.PACKET_TOO_BIG, ReplyKind.PARAM_PROBLEM)
        or (reply.kind is ReplyKind.TIME_EXCEEDED and bool(reply.icmp_code))
    )


HopCallback = Callable[[Hop], object]
# scamper's method names. TCP probes are one flow already (fixed ports; the index is in
# the sequence number), so TCP is Paris too, like scamper's and tcptraceroute's.
# "udp-fixed" is Butskoy's -U: UDP to one port (53), the probe index in the source port;
# "udplite" its -UL (the same with UDP-Lite) and "dccp" its -D (DCCP-Requests to one port,
# 33434, the index in the source port too).
METHODS = (
    "udp", "icmp", "tcp", "tcp-ack", "udp-paris", "icmp-paris", "udp-fixed", "udplite", "dccp",
)  # fmt: skip
PARIS = {"udp": "udp-paris", "icmp": "icmp-paris", "tcp": "tcp", "tcp-ack": "tcp-ack"}
TCP_METHODS = ("tcp", "tcp-ack")
MAX_PACKET_LEN = 65000  # Butskoy's largest packetlen
# methods whose probes are their headers whatever packetlen says (as traceroute's)
FIXED_LENGTH = ("tcp", "tcp-ack", "dccp")
DCCP_REQUEST_LEN = 20  # traceroute -D: the generic header, 48-bit sequence, service code


def probe_headers(
    method: str, version: int, tcp: TcpFlavor | None = None, ip_options: int = 0
) -> int:
    """Bytes of IP and transport header of a probe by `method` (TCP: `tcp`'s header, by
    default traceroute's SYN with 20 bytes of options), with `ip_options` bytes of IPv4
    options (-g): the least a packet can be (traceroute's packetlen is raised to it)."""
    if method in TCP_METHODS:
        transport = (tcp or (LINUX_SYN if method == "tcp" else BARE_ACK)).length
    elif method == "dccp":
        transport = DCCP_REQUEST_LEN
    else:
        transport = 8
    return (20 + ip_options if version == 4 else 40) + transport


def probe_length(
    method: str,
    version: int,
    packetlen: int | None,
    tcp: TcpFlavor | None = None,
    ip_options: int = 0,
) -> int:
    """The IP length of the probes for traceroute's `packetlen` (None: Butskoy's default,
    32 bytes of payload): raised to the headers (and 2 payload bytes for the Paris
    methods, which steer their checksums with them); TCP and DCCP probes are always their
    headers, as traceroute -T's and -D's."""
    headers = probe_headers(method, version, tcp, ip_options)
    if method in FIXED_LENGTH:
        return headers
    if packetlen is None:
        return headers + len(TRACEROUTE_PAYLOAD)
    least = headers + (2 if method in ("udp-paris", "icmp-paris") else 0)
    return max(least, packetlen)


@dataclass(frozen=True)
class ProbeShape:
    """What traceroute's packetlen, -t and -F set: the IP length (None: the method's
    default), the TOS byte (IPv6: traffic class), DF (IPv4); and -l's IPv6 flow label."""

    length: int | None = None
    tos: int = 0
    dont_fragment: bool = False
    flow_label: int = 0
    tcp: TcpFlavor | None = None  # -T's flags and options (-O); None: the method's own
    # -g over IPv4: the first gateway (the packets' destination) and the IP options
    route: tuple[Address, bytes] | None = None
    coverage: int = 8  # -UL's checksum coverage (-O coverage=NUM; traceroute's default)
    service: int = DCCP_SERVICE_CODE  # -D's service code (-O service=NUM)


def _probe(
    method: str,
    src: Address,
    dst: Address,
    ttl: int,
    i: int,
    sport: int,
    port: int,
    shape: ProbeShape = ProbeShape(),
) -> Probe:
    """Probe i (TTL `ttl`) of a traceroute by `method`; each identifies itself by i. With
    `shape.route` (-g) it goes to the first gateway with a loose source route."""
    probe = _plain_probe(method, src, dst, ttl, i, sport, port, shape)
    if shape.route is None or dst.version != 4:
        return probe
    gateway, options = shape.route
    return dataclasses.replace(probe, packet=with_ip_options(probe.packet, options, gateway))


def _plain_probe(
    method: str,
    src: Address,
    dst: Address,
    ttl: int,
    i: int,
    sport: int,
    port: int,
    shape: ProbeShape,
) -> Probe:
    payload = TRACEROUTE_PAYLOAD
    extra = len(shape.route[1]) if shape.route is not None else 0
    if shape.length is not None and method not in FIXED_LENGTH:
        payload = traceroute_payload(
            shape.length - probe_headers(method, dst.version, ip_options=extra)
        )
    kw: dict[str, Any] = {"tos": shape.tos, "dont_fragment": shape.dont_fragment}
    if dst.version == 6:
        kw["flow_label"] = shape.flow_label
    if method == "icmp":
        return echo_probe(src, dst, ident=sport, seq=i + 1, ttl=ttl, payload=payload, **kw)
    if method == "icmp-paris":  # the checksum held at the identifier's value: any constant
        return paris_echo_probe(
            src, dst, ttl, ident=sport, seq=i + 1, checksum=sport, payload=payload, **kw
        )
    if method in TCP_METHODS:
        flavor = shape.tcp or (LINUX_SYN if method == "tcp" else BARE_ACK)
        return tcp_probe(src, dst, sport=sport, dport=port, seq=i + 1, ttl=ttl, flavor=flavor, **kw)
    if method == "udp-paris":
        return paris_udp_probe(
            src, dst, ttl, sport=sport, dport=port, index=i, payload=payload, **kw
        )
    if method in ("udp-fixed", "udplite"):  # one destination port; each its own source port
        lite = shape.coverage if method == "udplite" else None
        return udp_probe(
            src, dst, sport=(sport - 1 + i) % 0xFFFF + 1, dport=port, ttl=ttl, payload=payload,
            coverage=lite, **kw,
        )  # fmt: skip
    if method == "dccp":  # as -U: each probe its own source port
        return dccp_probe(
            src, dst, sport=(sport - 1 + i) % 0xFFFF + 1, dport=port, ttl=ttl,
            service=shape.service, **kw,
        )  # fmt: skip
    return traceroute_probe(
        src, dst, ttl, sport=sport, index=i, base_port=port, payload=payload, **kw
    )


def reply_key(
    method: str, reply: Reply, shape: ProbeShape | None = None, target: Address | None = None
) -> ProbeKey:
    """The key of the probe `reply` answers: a Paris UDP probe is told by its checksum; a
    TCP probe by the ack of the target's SYN-ACK/RST-ACK as its flags count it
    (`TcpFlavor.reply_shift`); with -g (`shape.route`) whatever address a quote names
    (a gateway's, before the route reached it) stands for `target`."""
    key = reply.key
    if method == "udp-paris" and reply.quoted_sum is not None:
        key = dataclasses.replace(key, seq=reply.quoted_sum)
    if shape is None:
        return key
    flags = reply.tcp_flags
    if shape.tcp is not None and flags is not None and flags & TCP_ACK:
        key = dataclasses.replace(key, seq=(key.seq + shape.tcp.reply_shift) & 0xFFFFFFFF)
    if shape.route is not None and target is not None:
        key = dataclasses.replace(key, dst=target)
    return key


# a reply with the key of the probe it answers (`reply_key`), which it is then matched by
Adopt = Callable[[Reply], Reply]


def _end_of_ttl(probes: list[Probe], i: int) -> int:
    """Index just past the probes with the TTL of probe i (they are in TTL order)."""
    j = i
    while j < len(probes) and probes[j].ttl == probes[i].ttl:
        j += 1
    return j


def _hop(probe: Probe, answer: tuple[Reply, int] | None, sent: int | None) -> Hop:
    """The hop a probe gives: a timeout, or the reply `answer` (reply, receive stamp)."""
    if answer is None:
        return Hop.timeout(probe.ttl, probe_send_ns=sent)
    return Hop.from_reply(
        probe.ttl, answer[0], probe_send_ns=sent, reply_recv_ns=answer[1], probe_len=len(probe)
    )


async def _answer_to(
    cap: RawCapture, probe: Probe, adopt: Adopt, deadline: float, stop: StopSignal | None
) -> tuple[Reply, int] | None:
    """The captured reply to `probe` (and its receive time), read until `deadline`
    (reactor seconds) or `stop`; None if none came: one probe in flight at a time."""
    while True:
        note = await next_note(cap, deadline, stop)
        if note is None:
            return None
        got = parse_ndata(note)
        if got is not None and adopt(got[0]).key == probe.key:
            return adopt(got[0]), got[1]


async def _sequential(
    session: EndpointSession,
    cap: RawCapture,
    probes: list[Probe],
    adopt: Adopt,
    wait: float,
    on_hop: HopCallback | None,
    stop: StopSignal | None,
) -> list[Hop]:
    """One probe in flight: send, wait for its answer (or `wait` s), then the next."""
    reactor = session.reactor
    hops: list[Hop] = []
    end = len(probes)
    i = 0
    while i < end and not (stop is not None and stop.requested):
        probe = probes[i]
        queued = await session.nsend(cap.sktid, probe.packet, ntag=True)
        for piece in probe.more:  # the rest of a fragmented probe
            await session.nsend(cap.sktid, piece)
        answer = await _answer_to(cap, probe, adopt, reactor.seconds() + wait, stop)
        sent = await ntag_time(queued.ntag, reactor, wait)
        hop = _hop(probe, answer, sent)
        if answer is not None and _ends_trace(answer[0]):
            end = min(end, _end_of_ttl(probes, i))  # the rest of this TTL's probes
        hops.append(hop)
        if on_hop is not None:
            on_hop(hop)
        i += 1
    return hops


# Common MTUs (RFC 1191's plateaus, Ethernet's, IPv6's least): the next size to try when
# the endpoint cannot send a probe and does not say its interface's MTU.
#: The least MTU a link may have (RFC 791, RFC 8200): a "too big" naming less is not
#: believed for fragmenting (a hostile router's 40 would leave no room for a fragment).
MIN_MTU = {4: 68, 6: 1280}
MTU_PLATEAUS = (32000, 17914, 9000, 8166, 4352, 2002, 1500, 1492, 1480, 1280, 1006, 576, 296, 68)


def too_big(reply: Reply) -> bool:
    """IPv4 "fragmentation needed and DF set" or ICMPv6 "packet too big"."""
    return reply.kind is ReplyKind.PACKET_TOO_BIG or (
        reply.kind is ReplyKind.DEST_UNREACHABLE and reply.src.version == 4 and reply.icmp_code == 4
    )


def smaller_mtu(
    size: int, least: int, said: int | None = None, hints: Sequence[int] = ()
) -> int | None:
    """The size to try after `size` was too big: `said` (the MTU a router named) if it is
    smaller, else the next of `hints` (MTUs the caller knows of, e.g. the endpoint's
    interface's and the path's it has cached) and then of the plateaus below them; None
    below `least`."""
    if said is not None and least <= said < size:
        return said
    floor = min(hints, default=MAX_PACKET_LEN + 1)
    sizes = sorted(set(hints), reverse=True) + [m for m in MTU_PLATEAUS if m < floor]
    return next((m for m in sizes if least <= m < size), None)


async def _mtu_sequential(
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
    "fragmentation needed" / "packet too big" goes again at the MTU the router named. The
    first probe answered at a new size carries it (`Hop.mtu`: traceroute's ``F=NUM``)."""
    reactor = session.reactor
    hops: list[Hop] = []
    end, i, new_size = len(ttls), 0, None
    while i < end and not (stop is not None and stop.requested):
        probe = build(i, size)
        queued = await session.nsend(cap.sktid, probe.packet, ntag=True)
        try:
            sent = await ntag_time(queued.ntag, reactor, wait)
        except SendFailed:  # too big for the endpoint's interface (EMSGSIZE)
            smaller = smaller_mtu(size, least, hints=hints)
            if smaller is None:
                raise MeasureError(f"the endpoint could not send a {size} byte probe") from None
            size = new_size = smaller
            continue
        answer = await _answer_to(cap, probe, adopt, reactor.seconds() + wait, stop)
        if answer is not None and too_big(answer[0]):
            smaller = smaller_mtu(size, least, answer[0].mtu, hints)
            if smaller is not None:
                size = new_size = smaller
                continue
        hop = _hop(probe, answer, sent)
        if answer is not None:
            if new_size is not None:
                hop, new_size = dataclasses.replace(hop, mtu=new_size), None
            if _ends_trace(answer[0]):
                while end > i + 1 and ttls[end - 1] != ttls[i]:
                    end -= 1
        hops.append(hop)
        if on_hop is not None:
            on_hop(hop)
        i += 1
    return hops


# How long a silent probe is waited for once a later hop (NEAR) or another probe of the
# same hop (HERE) answered: that many times their RTT (Butskoy traceroute's -w 5,3,10).
HERE, NEAR = 3.0, 10.0
INF = float("inf")


class _Parallel:
    """Every probe queued at once, with endpoint send times `pace` s apart; answers taken
    as they arrive; hops told in TTL order as soon as each is settled (answered, or given
    up on: `wait` s, or less once a later hop answered, as native traceroute does)."""

    def __init__(
        self,
        session: EndpointSession,
        cap: RawCapture,
        probes: list[Probe],
        adopt: Adopt,
        on_hop: HopCallback | None,
    ) -> None:
        self.session, self.cap, self.probes, self.on_hop = session, cap, probes, on_hop
        self.adopt = adopt
        self.reactor = session.reactor
        self.waker = Waker(self.reactor)
        self.table: ProbeTable[int] = ProbeTable()
        for i, probe in enumerate(probes):
            self.table.add(probe.key, i)
        self.answers: dict[int, tuple[Reply, int]] = {}
        self.sent: dict[int, int] = {}
        self.tagged_at: dict[int, float] = {}  # when each probe's ntag came (reactor time)
        self.failure: BaseException | None = None
        self.unsent: dict[int, BaseException] = {}  # probes the endpoint did not send
        # fragmented probes: `rebuild(i, mtu)` cuts probe i in fragments of mtu, to send
        # one again that the endpoint refused after a "too big" taught its kernel a
        # smaller MTU (None: no fragments, e.g. with DF)
        self.rebuild: Callable[[int, int], Probe] | None = None
        self.frag_mtu: int | None = None
        self.parked: set[int] = set()  # refused, waiting for a smaller MTU to be named
        self.resent: set[int] = set()
        self.end = len(probes)  # probes past the TTL that ends the trace are not waited for
        self.here, self.near = HERE, NEAR  # traceroute -w's factors
        self.hops: list[Hop] = []
        self.next = 0  # the first probe not sent yet
        self.floor = float("inf")  # no wait is shortened before `_distance` is known
        cap.sock.buffering = False
        self._remove = cap.sock.add_callback(self._note)

    def _note(self, note: object) -> None:
        got = parse_ndata(note)
        if got is None:
            return
        got = (self.adopt(got[0]), got[1])
        i = self.table.pop(got[0].key)
        if i is None:  # not ours, or a duplicate
            return
        self.answers[i] = got
        if _ends_trace(got[0]):
            self.end = min(self.end, _end_of_ttl(self.probes, i))
        mtu = got[0].mtu or 0
        if too_big(got[0]) and mtu >= MIN_MTU[got[0].src.version] and self.rebuild is not None:
            self._learnt(mtu)
        self.waker.poke()

    def _learnt(self, mtu: int) -> None:
        """A "too big" named `mtu`: probes refused since (the endpoint's kernel learnt it
        too) go again in fragments of it, as traceroute's kernel sends the next ones."""
        self.frag_mtu = min(self.frag_mtu or mtu, mtu)
        for i in sorted(self.parked):
            self.parked.discard(i)
            self._again(i)

    def _again(self, i: int) -> None:
        assert self.rebuild is not None and self.frag_mtu is not None
        self.probes[i] = probe = self.rebuild(i, self.frag_mtu)
        self.resent.add(i)
        self.tagged_at.pop(i, None)
        d = self.session.nsend(self.cap.sktid, probe.packet, ntag=True)
        d.addCallbacks(self._queued(i), self._failed)
        for piece in probe.more:
            self.session.nsend(self.cap.sktid, piece).addErrback(self._failed)

    def _ntag(self, i: int, tag: Ntag) -> None:
        self.sent[i] = tag.time
        self.tagged_at[i] = self.reactor.seconds()
        self.waker.poke()

    def _failed(self, f: Failure) -> None:
        if self.failure is None:
            self.failure = f.value
        self.waker.poke()

    async def run(
        self, wait: float, pace: float, stop: StopSignal | None, window: int | None = None
    ) -> list[Hop]:
        """`window`: at most that many probes in flight (sent, neither answered nor
        `wait` s old), the next one sent as one leaves (traceroute -N); None: all."""
        try:
            t0 = self.reactor.seconds()
            n = len(self.probes)
            if pace == 0:  # all at once: time 0 sends as soon as the endpoint has them
                clock = read_time(self.session)  # only to learn our distance to it
                clock.addCallbacks(lambda _: self._distance(t0), self._failed)
                times, local = [0] * n, [t0] * n
            else:  # paced by the endpoint's clock, from just after now
                start = await read_time(self.session) + int(PACED_LEAD_S * 1e9)
                now = self.reactor.seconds()
                self._distance(t0)
                times = [start + int(i * pace * 1e9) for i in range(n)]
                local = [now + PACED_LEAD_S + i * pace for i in range(n)]
            if window is None:
                for i in range(n):
                    self._send(i, times[i])
            else:
                local = [INF] * n  # when each was sent; not yet
            stop_by: float | None = None
            last = self.end  # after a stop: the probes due by then (-N's sent, --pace's
            # scheduled); those after it are no hops, not silent ones
            while len(self.hops) < min(self.end, last):
                if self.failure is not None:
                    raise self.failure
                now = self.reactor.seconds()
                if stop is not None and stop.requested and stop_by is None:
                    stop_by = now + min(wait, GRACE_S)
                    last = next((i for i in range(len(self.hops), n) if local[i] > now), n)
                    if last <= len(self.hops):
                        break
                if window is not None and stop_by is None:
                    self._fill(window, local, wait, now)
                due = self._settle(local, wait, self.floor, now, stop_by)
                if due is None:
                    continue
                if window is not None:
                    due = min(due, self._next_expiry(local, wait))
                until = None if due == INF else due
                await self.waker.sleep(until, stop if stop_by is None else None)
            return self.hops
        finally:
            self._remove()

    def _send(self, i: int, time: int) -> None:
        d = self.session.nsend(self.cap.sktid, self.probes[i].packet, time=time, ntag=True)
        d.addCallbacks(self._queued(i), self._failed)
        for piece in self.probes[i].more:  # the rest of a fragmented probe, right after
            self.session.nsend(self.cap.sktid, piece, time=time).addErrback(self._failed)
        self.next = i + 1

    def _in_flight(self, local: list[float], wait: float, now: float) -> list[int]:
        settled = len(self.hops)
        return [
            j for j in range(settled, self.next) if j not in self.answers and now < local[j] + wait
        ]

    def _fill(self, window: int, local: list[float], wait: float, now: float) -> None:
        """Send the next probes (at once) while fewer than `window` are in flight."""
        flying = len(self._in_flight(local, wait, now))
        while self.next < self.end and flying < window:
            local[self.next] = now
            self._send(self.next, 0)
            flying += 1

    def _next_expiry(self, local: list[float], wait: float) -> float:
        """When the next probe in flight stops holding its place in the window."""
        flying = self._in_flight(local, wait, self.reactor.seconds())
        return min((local[j] + wait for j in flying), default=INF)

    def _distance(self, t0: float) -> None:
        """A request answered, sent at `t0`: the floor of a shortened wait is twice that
        round trip (our distance to the endpoint, which every answer also travels)."""
        self.floor = max(0.05, 2 * (self.reactor.seconds() - t0))
        self.waker.poke()

    def _queued(self, i: int) -> Callable[[QueuedSend], None]:
        def cb(q: QueuedSend) -> None:
            assert q.ntag is not None
            q.ntag.addCallbacks(lambda tag: self._ntag(i, tag), lambda f: self._unsent(i, f))

        return cb

    def _pieces(self, i: int) -> list[bytes]:
        return [self.probes[i].packet, *self.probes[i].more]

    def _unsent(self, i: int, f: Failure) -> None:
        """Probe i was not sent: the trace fails when it comes to that probe, not if it
        ends before (a probe past a "too big" that taught the endpoint's kernel a smaller
        MTU, whose ntag may come before that answer)."""
        if not f.check(SendFailed):
            self._failed(f)
            return
        if self.rebuild is not None and i not in self.resent:  # (fragments allowed)
            if self.frag_mtu is not None and self.frag_mtu < max(map(len, self._pieces(i))):
                self._again(i)
            else:
                self.parked.add(i)  # until a "too big" names a smaller MTU, or its wait ends
            self.waker.poke()
            return
        assert f.value is not None
        self.unsent[i] = f.value
        self.waker.poke()

    def _settle(
        self, local: list[float], wait: float, floor: float, now: float, stop_by: float | None
    ) -> float | None:
        """Tell the next hop if it is settled (then None: look again), else return when
        it will be given up on."""
        i = len(self.hops)
        probe = self.probes[i]
        if i in self.unsent:
            raise self.unsent[i]
        if i in self.parked and now >= local[i] + wait:
            raise SendFailed(self.cap.sktid, 0, 0, int(Status.EPKTNOTSENT))
        if i in self.answers and i in self.sent:
            reply, recv_ns = self.answers[i]
            hop = Hop.from_reply(
                probe.ttl,
                reply,
                probe_send_ns=self.sent[i],
                reply_recv_ns=recv_ns,
                probe_len=len(probe),
            )
        else:
            # A shortened wait counts from when the probe is known to have left (its ntag
            # came): a busy endpoint may send the last of many queued probes late.
            give_up = local[i] + wait
            if i in self.tagged_at:
                give_up = min(give_up, self.tagged_at[i] + self._patience(i, wait, floor))
            if i in self.answers:  # answered, its ntag not in yet: it cannot be long
                give_up = local[i] + wait + 1.0
            if stop_by is not None:
                give_up = min(give_up, stop_by)
            if now < give_up:
                return give_up
            if i in self.answers:
                reply, recv_ns = self.answers[i]
                hop = Hop.from_reply(
                    probe.ttl,
                    reply,
                    probe_send_ns=None,
                    reply_recv_ns=recv_ns,
                    probe_len=len(probe),
                )
            else:
                hop = Hop.timeout(probe.ttl, probe_send_ns=self.sent.get(i))
        self.hops.append(hop)
        if self.on_hop is not None:
            self.on_hop(hop)
        return None

    def _patience(self, i: int, wait: float, floor: float) -> float:
        """`wait`, shortened once the same hop (HERE) or a later hop (NEAR) answered: that
        many times the longest of their RTTs, but at least `floor`."""
        ttl = self.probes[i].ttl
        longest = 0.0
        for j, (_, recv_ns) in self.answers.items():
            sent = self.sent.get(j)
            if sent is None or self.probes[j].ttl < ttl or j >= self.end:
                continue
            factor = self.here if self.probes[j].ttl == ttl else self.near
            longest = max(longest, factor * (recv_ns - sent) / 1e9)
        return wait if longest == 0.0 else min(wait, max(floor, longest))


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
    queries: int = 1,
    squeries: int | None = None,
    method: str = "udp",
    send_stamp: str = Stamp.KERNEL,
    recv_stamp: str = Stamp.KERNEL,
    on_hop: HopCallback | None = None,
    stop: StopSignal | None = None,
    here: float = HERE,
    near: float = NEAR,
    packetlen: int | None = None,
    tos: int = 0,
    dont_fragment: bool = False,
    mtu_discovery: bool = False,
    mtu_hints: Sequence[int] = (),
    fragment_mtu: int | None = None,
    flow_label: int = 0,
    tcp: TcpFlavor | None = None,
    gateways: Sequence[str | Address] = (),
    coverage: int = 8,
    service: int = DCCP_SERVICE_CODE,
) -> TracerouteResult:
    """Trace the path to `dst` from the endpoint: one UDP probe per TTL, each answered
    within `wait` seconds or recorded as `Hop.timeout`. Stops at the destination (or a
    destination unreachable) or after `max_ttl`.

    Probes go one at a time (the paper's method; a controller round trip per hop) unless
    `pace` (seconds) is given: then all TTLs are queued at once with endpoint send times
    `pace` apart, and a silent hop is waited for `wait` s, or only 10 times the RTT of a
    later hop that answered (at least 50 ms), like native traceroute. `queries` probes go
    to each TTL (traceroute -q). With `pace`, `squeries` (traceroute -N) keeps at most that
    many probes in flight, sending the next as one is answered or `wait` s old (None: all
    at once; `pace` is then ignored: each probe leaves as a place frees up). `here` and
    `near` are traceroute -w's HERE and NEAR factors (3, 10; 0: no shortening).

    `on_hop(hop)` is called for each probe in TTL order as soon as it is settled (answered
    or given up on). When `stop` is requested no further probe is sent (sequential) or
    waited for beyond `GRACE_S`, and the result holds the hops settled so far.

    `method` is the probe: "udp" (Butskoy's default), "icmp" (echo requests, like
    traceroute -I: identifier `sport`, sequence number = probe index) or "tcp" (SYNs to
    port `base_port`, like traceroute -T: source port `sport`, sequence number = probe
    index; the target answers SYN-ACK or RST) or "tcp-ack" (bare ACKs, like scamper's
    tcp-ack: the index in the sequence and acknowledgment numbers; the target answers
    RST). "udp-paris" and "icmp-paris" are Paris
    traceroute's (scamper's names): every probe of the trace is one flow for a per-flow
    load balancer. UDP to the fixed port `base_port`, the probe index in the UDP checksum;
    ICMP with a constant checksum (= `sport`), the index in the sequence number ("tcp" is
    one flow already). `sport` is the source port (ICMP: the
    identifier) of every probe (default: random, 32768..60999); UDP probe n goes to
    `base_port + n` like Butskoy's traceroute. `src` defaults to the endpoint's
    exported address of dst's family. `send_stamp`/`recv_stamp` only label the result: the
    defaults describe this project's endpoint (kernel TX and RX timestamps).
    "udp-fixed" is traceroute -U: UDP to the one port `base_port` (traceroute's 53), probe
    n from source port `sport + n`.

    `packetlen` is traceroute's: the IP length of each probe (`probe_length`: at least
    the headers; TCP probes keep theirs); at most 65000. `tos` is the TOS byte (IPv6:
    traffic class; traceroute -t), `dont_fragment` sets DF (traceroute -F). With
    `mtu_discovery` (traceroute --mtu) probes go one at a time with DF, starting at
    `packetlen` (default 65000) and shrinking to the MTU a "fragmentation needed" /
    "packet too big" names, or, when the endpoint cannot send one, to the next of
    `mtu_hints` (its interface's MTU and the path MTU its kernel cached, if the caller
    knows them) or of the common MTUs; the first hop answered at a new size has it in
    `Hop.mtu`. Without it, a probe longer than the endpoint can send raises MeasureError;
    `fragment_mtu` (the MTU the endpoint can send, when the caller knows it) has probes
    longer than that without DF sent in fragments, as traceroute's kernel sends them.
    `flow_label` is the IPv6 probes' flow label (traceroute -l; ignored over IPv4, as
    traceroute ignores it). `tcp`: the TCP probes' flags, options and window (traceroute
    -T -O, `TcpFlavor`; default Linux's SYN as traceroute -T sends it, or a bare ACK for
    "tcp-ack"). `gateways` (traceroute -g, IPv4, at most 8): the probes go to the first
    with a loose source route through the others to `dst`, as Butskoy's.

    "udplite" is traceroute -UL: "udp-fixed" with UDP-Lite datagrams whose checksum covers
    `coverage` bytes (-O coverage=NUM: less than 8 is 8, past the end the whole datagram,
    as Linux sends them). "dccp" is traceroute -D: DCCP-Requests (service code `service`,
    -O service=NUM) to the one port `base_port` (traceroute's 33434), probe n from source
    port `sport + n`; 40 (IPv6: 60) bytes whatever `packetlen`; the target's Reset (closed
    port) or Response (open) is its answer, as the ICMP errors of the routers on the way.
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
    if not 1 <= base_port <= 0xFFFF:
        raise ValueError(f"base_port must be 1..65535, got {base_port}")
    if not 1 <= queries <= 10:
        raise ValueError(f"queries must be 1..10 probes per hop, got {queries}")
    if squeries is not None and not 1 <= squeries <= 1000:
        raise ValueError(f"squeries must be 1..1000 probes in flight, got {squeries}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if packetlen is not None and not 0 <= packetlen <= MAX_PACKET_LEN:
        raise ValueError(f"too big packetlen {packetlen} specified (at most {MAX_PACKET_LEN})")
    if not 0 <= tos <= 255:
        raise ValueError(f"tos must be 0..255, got {tos}")
    if not 0 <= flow_label <= 0xFFFFF:
        raise ValueError(f"flow_label must be 0..1048575 (20 bits), got {flow_label}")
    if fragment_mtu is not None and not 68 <= fragment_mtu <= 0xFFFF:
        raise ValueError(f"fragment_mtu must be 68..65535, got {fragment_mtu}")
    if any(not 68 <= m <= 0xFFFF for m in mtu_hints):
        raise ValueError(f"mtu_hints must be 68..65535, got {tuple(mtu_hints)}")
    if not 0 <= coverage <= 0xFFFF:
        raise ValueError(f"coverage must be 0..65535, got {coverage}")
    if not 0 <= service <= 0xFFFFFFFF:
        raise ValueError(f"service must be 0..4294967295, got {service}")
    if tcp is not None and method not in TCP_METHODS:
        raise ValueError(f"tcp flags and options are for tcp probes, not {method}")
    route = None
    if gateways:
        if target.version != 4:
            raise ValueError("gateways (loose source routing) are built over IPv4 only")
        route = loose_source_route(gateways, target)
    source = as_target(src) if src is not None else None
    n = (max_ttl - first_ttl + 1) * queries
    if method == "udp-paris" and n > 0xFFFE:
        raise ValueError(f"{n} Paris probes: at most 65534 (the index is the UDP checksum)")
    if method == "udp" and base_port + n - 1 > 0xFFFF:
        raise ValueError(f"base_port {base_port} + {n} probes does not fit in 1..65535")
    if mtu_discovery:
        pace = None  # one probe at a time (traceroute --mtu implies -N 1)
        if packetlen is None:
            packetlen = MAX_PACKET_LEN
    extra = len(route[1]) if route is not None else 0
    length = probe_length(method, target.version, packetlen, tcp, extra)
    shape = ProbeShape(
        None if packetlen is None else length, tos, dont_fragment or mtu_discovery, flow_label,
        tcp, route, coverage, service,
    )  # fmt: skip

    def adopt(reply: Reply) -> Reply:
        key = reply_key(method, reply, shape, target)
        return reply if key == reply.key else dataclasses.replace(reply, key=key)

    if pace is None:
        budget = n * (wait + 1.0)
    elif squeries:  # each place in the window held at most `wait` s per probe
        budget = -(-n // squeries) * wait + wait
    else:
        budget = PACED_LEAD_S + n * pace + wait
    expression = None
    if method in TCP_METHODS:  # the target's SYN-ACK or RST as well as the routers' ICMP
        expression = f"{CAPTURE_FILTERS[target.version]} or (tcp and src host {target})"
    elif method == "dccp":  # the target's Reset or Response
        ip = "ip" if target.version == 4 else "ip6"
        expression = f"{CAPTURE_FILTERS[target.version]} or ({ip} proto 33 and src host {target})"
    cap = await open_capture(session, target, src=source, duration_s=budget, expression=expression)
    try:
        ttls = [ttl for ttl in range(first_ttl, max_ttl + 1) for _ in range(queries)]
        least = probe_length(method, target.version, 0, tcp, extra)

        def build(i: int, size: int) -> Probe:
            at = dataclasses.replace(shape, length=max(size, least))
            probe = _probe(method, cap.src, target, ttls[i], i, sport, base_port, at)
            if fragment_mtu is not None and not shape.dont_fragment:
                probe = fragmented(probe, fragment_mtu)
            return probe

        def rebuild(i: int, mtu: int) -> Probe:  # probe i in fragments of `mtu`
            at = dataclasses.replace(shape, length=max(length, least))
            whole = _probe(method, cap.src, target, ttls[i], i, sport, base_port, at)
            return fragmented(whole, mtu)

        probes = [] if mtu_discovery else [build(i, length) for i in range(len(ttls))]
        if mtu_discovery:
            hops = await _mtu_sequential(
                session, cap, build, adopt, ttls, length, least, mtu_hints, wait, on_hop, stop
            )
        elif pace is None:
            hops = await _sequential(session, cap, probes, adopt, wait, on_hop, stop)
        else:
            run = _Parallel(session, cap, probes, adopt, on_hop)
            run.here, run.near = here, near
            if fragment_mtu is not None and not shape.dont_fragment:
                run.rebuild, run.frag_mtu = rebuild, fragment_mtu
            hops = await run.run(wait, 0.0 if squeries else pace, stop, squeries)
    except SendFailed:
        if length <= 1280:
            raise
        raise MeasureError(
            f"the endpoint could not send a {length} byte probe (over its interface's MTU "
            "or a path MTU its kernel learnt?): give a smaller packetlen, or --mtu"
        ) from None
    finally:
        await close_capture(cap)
    return TracerouteResult(
        dst=str(target),
        hops=tuple(hops),
        src=str(cap.src),
        method=method,
        max_ttl=max_ttl,
        probe_size=length,
        start_ns=next((h.probe_send_ns for h in hops if h.probe_send_ns is not None), None),
        send_stamp=send_stamp,
        recv_stamp=recv_stamp,
    )
