"""ICMP(v6) echo ("ping") through a PacketLab endpoint's raw socket.

Echo requests are queued with endpoint send times `interval` apart (nsend `time`), so the
endpoint paces them itself, a little ahead of their time (`AHEAD_S`, at most `WINDOW`
unanswered); replies come back through an ncap capture and are read as they
arrive, while sending goes on. An RTT is the reply's ndata time minus the request's ntag
time, both taken by the endpoint.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from packetlab.clockstep import steady
from packetlab.controller import (
    EndpointSession,
    QueuedSend,
    SendFailed,
    SessionClosed,
    StopSignal,
    deferred_api,
    read_time,
)
from packetlab.measure.capture import (
    Address,
    MeasureError,
    RawCapture,
    as_target,
    close_capture,
    open_capture,
    parse_ndata,
)
from packetlab.measure.flight import GRACE_S, Waker
from packetlab.measure.packets_ip_options import (
    MAX_PING_ROUTE,
    TIMESTAMP_KINDS,
    TS_PRESPEC,
    IpTimestamps,
    SourceRoute,
    ip_timestamps,
    loose_source_route,
    ms_of_day,
    received_timestamps,
    record_route_option,
    recorded_route,
    source_route,
    timestamp_option,
    with_ip_options,
)
from packetlab.measure.ping_notice import PingNotice, parse_notice
from packetlab.measure.probes import (
    PING_PAYLOAD,
    REFUSABLE,
    Probe,
    ProbeKey,
    ProbeTable,
    echo_probe,
    fragmented,
)
from packetlab.measure.records_fields import Stamp
from packetlab.measure.records_ping import (
    PING_TIMING_MIN_SIZE,
    PingError,
    PingReply,
    PingResult,
    WrongData,
)
from packetlab.measure.replies import Reply, ReplyKind
from packetlab.wire import Ndata, Ntag

__all__ = ["MAX_COUNT", "parse_pattern", "ping"]

MAX_COUNT = 10_000
# -s: the most an echo request can carry over IPv6 (65535 - 8; IPv4: 65507, a larger one
# is a local error, as ping's kernel refuses it: `message too long, mtu=65535`)
MAX_SIZE = 65527
LOCAL_ERROR = "local-error"  # a PingError no router sent: ping's kernel refused the request
PMTUDISC = ("want", "dont", "do")  # iputils -M (20221126 takes no "probe")
MAX_PRELOAD = 65536  # iputils -l's limit (it takes more than 3 from root only)
LEAD_S = 0.05  # the first request leaves this long after the endpoint's clock was read
AHEAD_S = 0.2  # a request is queued at most this long before its send time...
WANTED_AHEAD_S = 0.02  # ...or this long with `answers_wanted`: whether it goes at all
# depends on the answers in by its time (iputils decides at the moment of sending)
WINDOW = 256  # ...and at most this many are unanswered (for less than `wait`): flow
# control like ping -f, so that replies never pile up faster than they are read
ADAPTIVE_FLOOD_S = 0.01  # -A below 0.5 ms of RTT: unanswered, the next after this (ping's)


def capture_expression(version: int, ident: int) -> str:
    """The ICMP(v6) messages iputils' sockets take, and echo replies only to `ident`
    (its socket filter, ping4/ping6_install_filter): IPv4 unreachables, source quenches,
    redirects, time exceeded, parameter problems (its ICMP_FILTER) and any type past 31
    (which ICMP_FILTER cannot block: `-v`'s `Bad ICMP type`); ICMPv6 errors (types below
    128: ping6 reads them, known or not, from its error queue). `icmp` alone took in
    every ICMP message on the host (on loopback, this ping's own requests too): beside
    a `ping -f` the capture's queue overflowed and replies were lost (20-100% in each of 5
    runs where iputils lost none). A long reply's fragments pass whole: libpcap's
    `icmp[N]` holds only in a first fragment (hence the offset test), `icmp6[N]` only
    without extension headers (hence the fragment header, next header 44)."""
    if version == 4:
        kinds = " or ".join(f"icmp[0] = {t}" for t in (3, 4, 5, 11, 12))
        return (
            f"icmp and (ip[6:2] & 0x1fff != 0 or (icmp[0] = 0 and icmp[4:2] = {ident})"
            f" or {kinds} or icmp[0] > 31)"
        )
    reply = f"(icmp6[0] = 129 and icmp6[4:2] = {ident})"
    return f"icmp6 and (ip6[6] = 44 or icmp6[0] < 128 or {reply})"


def _payload(size: int, pattern: bytes | None = None) -> bytes:
    """`size` bytes: `pattern` repeated (ping -p), else counting bytes."""
    if pattern:
        return (pattern * (size // len(pattern) + 1))[:size]
    if size == len(PING_PAYLOAD):
        return PING_PAYLOAD
    return bytes(i & 0xFF for i in range(size))


def parse_pattern(text: str) -> bytes:
    """iputils ping -p: up to 16 bytes given as hex digits (pairs; a last odd digit is a
    byte of its own, as ping's ``%2x``). Raises ValueError naming the first bad digit."""
    for i, c in enumerate(text):
        if c not in "0123456789abcdefABCDEF":
            raise ValueError(f"patterns must be specified as hex digits: {text[i:]}")
    return bytes(int(text[i : i + 2], 16) for i in range(0, min(len(text), 32), 2))


def _icmp_size(reply: Reply, data: bytes, whole: int | None = None) -> int:
    """Bytes of ICMP message in the reply (what ping prints as "N bytes from"); `whole`
    for the first fragment of a reply that came in fragments (an echo reply is as long
    as its request)."""
    if whole is not None and _first_fragment(data):
        return whole
    header = (data[0] & 0x0F) * 4 if reply.src.version == 4 else 40
    return max(0, reply.size - header)


def wrong_data(data: bytes, payload: bytes) -> WrongData | None:
    """The reply packet `data`'s echo data checked against the request's `payload` past
    the timestamp area, as iputils checks them (a bit flipped on the way, a responder
    that answers with other bytes); None when they agree, or when `data` does not hold
    the whole payload (a truncated reply, a fragment: not checked, as ping's) or an IPv6
    extension header comes before the ICMPv6 one (not read here: not checked)."""
    if data[0] >> 4 == 6 and (len(data) < 40 or data[6] != 58):
        return None
    start = ((data[0] & 0x0F) * 4 if data[0] >> 4 == 4 else 40) + 8
    got = data[start + PING_TIMING_MIN_SIZE : start + len(payload)]
    want = payload[PING_TIMING_MIN_SIZE:]
    if got == want or len(got) < len(want):
        return None
    i = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
    return WrongData(PING_TIMING_MIN_SIZE + i, want[i], got[i], got.hex())


def _dropped_by_the_kernel(reply: Reply) -> bool:
    """An IPv4 error Linux's icmp_unreach drops before any socket hears of it (so ping
    prints nothing, counts nothing): "fragment reassembly time exceeded" (time exceeded
    code 1) and an unreachable with a code past 15 (NR_ICMP_UNREACH)."""
    if reply.src.version != 4 or reply.icmp_type is None:
        return False
    code = reply.icmp_code or 0
    return (reply.icmp_type, code) == (11, 1) or (reply.icmp_type == 3 and code > 15)


# Linux's least path MTU: an IPv4 router's smaller one is raised to it
# (net.ipv4.route.min_pmtu, 552 unless set); IPv6 ignores one below 1280 (RFC 8200's
# least MTU) and keeps sending whole packets
IPV4_MIN_PMTU, IPV6_MIN_MTU = 552, 1280


def kernel_pmtu(reply: Reply) -> int | None:
    """The path MTU ping's kernel learns from a "fragmentation needed" / "packet too
    big" (`reply.mtu` as Linux takes it), None when it learns none (no MTU, or an IPv6
    one below 1280). Checked beside iputils: a router's 300 sent the next requests in
    fragments of 548 bytes, an IPv6 1000 left them whole."""
    if not reply.mtu:
        return None
    if reply.src.version == 4:
        return max(reply.mtu, IPV4_MIN_PMTU)
    return reply.mtu if reply.mtu >= IPV6_MIN_MTU else None


def _pointer(reply: Reply, data: bytes) -> int | None:
    """A parameter problem's pointer: the byte after an IPv4 error's checksum (ping:
    ``pointer = N``), the word there over IPv6 (ping6: ``at N``); None for other errors."""
    if reply.kind is not ReplyKind.PARAM_PROBLEM:
        return None
    if data[0] >> 4 == 4:
        at = (data[0] & 0x0F) * 4 + 4
        return data[at] if len(data) > at else None
    return int.from_bytes(data[44:48], "big") if len(data) >= 48 else None


def _first_fragment(data: bytes) -> bool:
    """The packet is the first of several IP fragments (MF set; IPv6: a Fragment header)."""
    if data[0] >> 4 == 4:
        return bool(data[6] & 0x20)
    return len(data) > 6 and data[6] == 44


@deferred_api
async def ping(
    session: EndpointSession,
    dst: str | Address,
    *,
    count: int = 5,
    interval: float = 1.0,
    wait: float = 2.0,
    size: int = len(PING_PAYLOAD),
    pattern: bytes | None = None,
    ttl: int = 64,
    ident: int | None = None,
    src: str | Address | None = None,
    send_stamp: str = Stamp.KERNEL,
    recv_stamp: str = Stamp.KERNEL,
    on_reply: Callable[[PingReply], object] | None = None,
    on_error: Callable[[PingError], object] | None = None,
    on_sent: Callable[[int, int], object] | None = None,
    on_outstanding: Callable[[int, int], object] | None = None,
    on_notice: Callable[[PingNotice], object] | None = None,
    stop: StopSignal | None = None,
    linger_like_ping: bool = False,
    answers_wanted: int | None = None,
    fragment_mtu: int | None = None,
    tos: int = 0,
    pmtudisc: str = "want",
    preload: int = 1,
    record_route: bool = False,
    timestamps: str | None = None,
    prespec: Sequence[str | Address] = (),
    route: Sequence[str | Address] = (),
    ends_at_once: frozenset[str] = frozenset(),
    adaptive: bool = False,
    deadline: float | None = None,
) -> PingResult:
    """Send `count` echo requests `interval` seconds apart from the endpoint and wait up to
    `wait` seconds after the last one for replies. Sequence numbers count from 1 (like
    iputils ping); lost requests are listed with `addr=None`, second replies to a request
    after the others with `dup=True` (ping's "(DUP!)"). `ident` is the ICMP
    identifier (default random).

    `on_reply(reply)` is called for each answered request the moment its reply is in, and
    `on_error(error)` for each ICMP error a router sent for a request (time exceeded,
    unreachable: iputils' ``From ... icmp_seq=N ...`` lines); such a request is settled,
    not answered, and listed in the result's ``errors``. `on_sent(seq, send_ns)` is
    called as each request is known to have left (its ntag: ping -f prints a dot), and
    `on_outstanding(seq, send_ns)` just before it when the request before it (`seq`) has
    no reply yet (iputils -O: ``no answer yet for icmp_seq=N``; `send_ns` is the time of
    the request that found it unanswered). `on_notice(notice)` for a source quench or a
    redirect about a request (IPv4; iputils prints them, counts them nowhere: the request
    stays open).
    `pattern` fills the payload, repeated (iputils -p; default: counting bytes).
    `fragment_mtu` (the MTU the endpoint can send, when the caller knows it) has requests
    longer than that sent in IP fragments, as ping's kernel sends them; a reply in
    fragments is matched by its first (its RTT ends there, not at the last). When the
    endpoint could send no request at all, MeasureError says so.
    With `linger_like_ping`, `wait` is iputils ping's -W: waited after the last request
    only when no reply came before it was sent; otherwise the run ends twice the largest
    RTT so far (at least `interval`, longer than `wait` too) after it. With `answers_wanted`, no
    request is sent once that many were answered (replies and ICMP errors), and the run
    ends then: iputils' -c with -w (`count` is then the most that fit the deadline).
    `tos`: the requests' TOS byte (IPv6: traffic class), iputils -Q. `pmtudisc`, iputils
    -M: ``want`` (default, as ping's kernel) DF set (IPv4), fragments once an MTU is
    known; ``dont`` no DF, fragments; ``do`` DF set and never in fragments (a
    "fragmentation needed" is an error line each time). `preload`, iputils -l: the first `preload`
    requests leave at once, the rest `interval` apart after them. `adaptive`, iputils -A (as
    root): its interval is the replies' smoothed RTT rounded to whole ms (`interval`
    until the first reply); 1 ms or more: `preload` requests each interval, answered or
    not; 0: the next as soon as fewer than `preload` are unanswered, or 10 ms after the
    last (a controller round trip after each reply: the endpoint cannot be told to send
    on one); `interval` 0 without `adaptive` (-i 0, -f) sends by that rule too, as
    ping's pinger. `record_route`, iputils
    -R: IPv4 requests carry a record route option; each reply's `route` is what it holds.
    `timestamps`, iputils -T (``tsonly``, ``tsandaddr``, ``tsprespec`` with up to 4
    `prespec` addresses): IPv4 requests carry a timestamp option with the entry ping's
    kernel would add (the endpoint time the request is scheduled for; ping's: when it
    left); each reply's `ip_timestamps` is what it holds once the endpoint's kernel
    stamped it on arrival (its kernel receive time), as ping reads it. `route`, iputils'
    HOST... TARGET (IPv4, at most 9 hosts, not with `record_route` or `timestamps`): the
    requests go to the first host with a loose source route option through the others
    to `dst`, as ping's kernel sends them; each reply's `source_route` is the option it
    came back with (the route reversed, from a Linux target).

    `deadline`, iputils -w (needs `stop`): seconds from the first request's time to
    `stop.request("deadline")`; a reply or error the endpoint's kernel received after that
    moment is not taken (ping has exited by then), and one received before it is awaited
    however late it reaches the controller (the endpoint's clock is read until it has
    passed the deadline: a run stopped by it had taken the last request as lost, `100
    packets transmitted, 99 received, 1% packet loss` for ping's 0% at -i 0.01 -w 1).

    When `stop` is requested, no further request is sent, replies in flight are awaited
    for up to `GRACE_S` (or `wait`, if shorter), and the result holds what was sent;
    a stop whose reason is in `ends_at_once` awaits only the sent requests' ntags (iputils'
    -w deadline and its first ICMP error under -w end ping at once).
    """
    target = as_target(dst)
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be 1..{MAX_COUNT}, got {count}")
    if not 0 <= interval <= 60:
        raise ValueError(f"interval must be 0..60 seconds, got {interval}")
    if not 0 < wait <= 60:
        raise ValueError(f"wait must be in (0, 60] seconds, got {wait}")
    if not 0 <= size <= MAX_SIZE:
        raise ValueError(f"size must be 0..{MAX_SIZE} bytes of payload, got {size}")
    if not 1 <= ttl <= 255:
        raise ValueError(f"ttl must be 1..255, got {ttl}")
    if fragment_mtu is not None and not 68 <= fragment_mtu <= 0xFFFF:
        raise ValueError(f"fragment_mtu must be 68..65535, got {fragment_mtu}")
    if not 0 <= tos <= 255:
        raise ValueError(f"tos must be 0..255, got {tos}")
    if pmtudisc not in PMTUDISC:
        raise ValueError(f"pmtudisc must be one of {', '.join(PMTUDISC)}, got {pmtudisc!r}")
    if not 1 <= preload <= MAX_PRELOAD:
        raise ValueError(f"preload must be 1..{MAX_PRELOAD}, got {preload}")
    if timestamps is not None and timestamps not in TIMESTAMP_KINDS:
        raise ValueError(f"invalid timestamp type: {timestamps}")
    if (prespec and timestamps != "tsprespec") or len(prespec) > 4:
        raise ValueError("up to 4 prespec addresses, with tsprespec only")
    if record_route and timestamps is not None:
        raise ValueError("only one of -T or -R may be used")
    if route and (record_route or timestamps is not None):
        raise ValueError("a source route (hosts before the target) is not with -R or -T")
    if route and target.version != 4:
        raise ValueError("a source route (hosts before the target) is built over IPv4 only")
    if deadline is not None and (stop is None or not deadline > 0):
        raise ValueError("deadline needs a stop signal and a positive number of seconds")
    if ident is None:
        ident = random.randrange(1, 0x10000)
    elif not 0 <= ident <= 0xFFFF:
        raise ValueError(f"ident must be 0..65535, got {ident}")
    source = as_target(src) if src is not None else None
    hold = interval  # -A: how long an unanswered request holds its place at first
    # -i 0 (-f): as -A at an interval of 0, iputils' pinger for both (session 30: ours
    # sent every request at once, `-f -c 30` to a target 20 ms away `pipe 30` for ping's 2)
    paced_by_replies = adaptive or (interval == 0 and count > preload)
    if adaptive:  # (sent as places free up, not on a schedule)
        interval, span = 0.0, count * max(hold, wait)
    elif paced_by_replies:  # (at most one each ADAPTIVE_FLOOD_S when none is answered)
        span = count * ADAPTIVE_FLOOD_S
    else:
        span = max(0, count - preload) * interval
    cap = await open_capture(
        session, target, src=source, duration_s=LEAD_S + span + wait,
        expression=capture_expression(target.version, ident),
    )  # fmt: skip
    run = _PingRun(session, cap, target, ident, ttl, _payload(size, pattern), on_reply, on_error)
    run.wanted = answers_wanted
    run.deadline = deadline
    run.on_sent, run.on_outstanding, run.on_notice = on_sent, on_outstanding, on_notice
    run.tos, run.preload = tos, preload
    if paced_by_replies:
        run.window, run.hold, run.adaptive = preload, hold, adaptive
    run.options = record_route_option(cap.src) if record_route and target.version == 4 else b""
    if route:
        run.first_hop, run.options = loose_source_route(
            route, target, target_listed=False, most=MAX_PING_ROUTE
        )
    if timestamps is not None and target.version == 4:
        run.ts_kind = TIMESTAMP_KINDS[timestamps]
        run.prespec = tuple(str(a) for a in prespec)
    run.dont_fragment = target.version == 4 and pmtudisc != "dont"
    run.fragments_ok = pmtudisc in ("want", "dont")
    run.fragment_mtu = fragment_mtu if run.fragments_ok else None
    if not run.fragments_ok and fragment_mtu is not None:
        # -M do over the route's MTU: ping's kernel refuses each request (`local error:
        # message too long, mtu=1500`, counted as errors, exit 1); the run failed here
        # (`could not send a 1528 byte echo request`, exit 2; session 28, icmp28)
        run.local_mtu = fragment_mtu
    try:
        await run.send(count, interval, wait, stop)
        await run.collect(count, interval, wait, stop, linger_like_ping, ends_at_once)
    finally:
        run.detach()
        await close_capture(cap)
        if run.deadline_call is not None and run.deadline_call.active():
            run.deadline_call.cancel()
    sent = [seq for seq in range(1, run.queued + 1) if seq not in run.unsent]
    if not sent and run.refused:
        n = len(run.payload) + 8 + (20 if target.version == 4 else 40)
        raise MeasureError(
            f"the endpoint could not send a {n} byte echo request (over its interface's MTU "
            "or a path MTU its kernel learnt?): give a smaller -s"
        )
    out = [run.record(seq) for seq in sent] + run.duplicates
    return PingResult(
        dst=str(target),
        sent=len(sent),
        replies=tuple(out),
        src=str(cap.src),
        start_ns=run.sent_ns.get(1),
        send_stamp=send_stamp,
        recv_stamp=recv_stamp,
        errors=tuple(run.errors[seq] for seq in sorted(run.errors) if seq in sent),
    )


def stop_reason(stop: StopSignal | None) -> str:
    return "" if stop is None else stop.reason


class _PingRun:
    """The state of one ping: requests queued, their send times, replies in."""

    def __init__(
        self,
        session: EndpointSession,
        cap: RawCapture,
        target: Address,
        ident: int,
        ttl: int,
        payload: bytes,
        on_reply: Callable[[PingReply], object] | None,
        on_error: Callable[[PingError], object] | None = None,
    ) -> None:
        self.session, self.cap, self.target = session, cap, target
        self.ident, self.ttl, self.payload = ident, ttl, payload
        self.on_reply, self.on_error = on_reply, on_error
        self.errors: dict[int, PingError] = {}  # seq -> the ICMP error a router sent
        self.wanted: int | None = None  # stop once this many are answered (ping -c with -w)
        self.deadline: float | None = None  # -w: seconds from the first request's time
        self.deadline_call: IDelayedCall | None = None  # ... the stop's timer
        self.cutoff_ns: int | None = None  # ... that moment in endpoint time
        self.past_cutoff = False  # the endpoint's clock was read past it (replies in)
        self.reading: Deferred[None] | None = None  # ... being read so (`_await_cutoff`)
        self.clock_pair: tuple[float, int] | None = None  # (reactor s, endpoint ns) at once
        self.answered: dict[object, int] = {}  # key -> seq of answered requests (dups)
        self.duplicates: list[PingReply] = []
        self.reactor = session.reactor
        self.waker = Waker(self.reactor)
        self.table: ProbeTable[int] = ProbeTable()
        self.queued = 0  # requests handed to the endpoint: seq 1..queued
        self.in_flight = 0  # queued, ntag not in yet
        self.sending = False  # `send` runs (its loop waits on no ntag that says "sent")
        self.open: dict[int, float] = {}  # seq -> when it is given up on, unanswered ones
        self.sent_ns: dict[int, int] = {}  # seq -> ntag time
        self.unsent: set[int] = set()  # seq whose ntag said "not sent" (or never came)
        self.replies: dict[int, tuple[Reply, int, int]] = {}  # seq -> reply, time, size
        self.settled: set[int] = set()  # answered, or known not to have been sent
        self.told: set[int] = set()
        self.on_sent: Callable[[int, int], object] | None = None
        self.on_notice: Callable[[PingNotice], object] | None = None
        self.on_outstanding: Callable[[int, int], object] | None = None
        self.fragment_mtu: int | None = None
        self.refused = 0  # requests the endpoint did not send (ntag: not sent)
        self.again: set[int] = set()  # requests sent again in smaller fragments
        self.learnt_ns: int | None = None  # when the first "too big" came
        self.built: dict[int, int] = {}  # seq -> the largest packet it was sent in
        self.parked: set[int] = set()  # refused, waiting for a smaller MTU to be named
        self.failure: BaseException | None = None
        self.tos, self.preload = 0, 1  # iputils -Q, -l
        # at most this many unanswered (None: each held `wait`); -A: `_adaptive_room`,
        # `hold` the interval before the first reply (-i)
        self.window = WINDOW
        self.hold: float | None = None
        self.adaptive = False  # -A (else, with `hold`, -i 0: its interval stays 0)
        self.sent_at: dict[int, float] = {}  # -A: the last `window` requests' send times
        self.srtt_ns = 0  # iputils' rtt: x8, smoothed as each reply comes
        self.options = b""  # IPv4 options of the requests (iputils -R, HOST... TARGET)
        self.first_hop: Address | None = None  # HOST... TARGET: the requests' IP destination
        self.reverse: dict[int, SourceRoute | None] = {}  # seq -> its reply's source route
        self.wrong: dict[int, WrongData] = {}  # seq -> how its reply's data differed
        self.elsewhere: set[int] = set()  # the requests answered from another address
        self.local_mtu: int | None = None  # -M do: the MTU a router named (ping's kernel's)
        self.routes: dict[int, tuple[str, ...] | None] = {}  # seq -> its reply's record route
        self.ts_kind: int | None = None  # iputils -T: the timestamp option's kind
        self.prespec: tuple[str, ...] = ()  # ... and its tsprespec addresses
        self.stamps: dict[int, IpTimestamps | None] = {}  # seq -> its reply's timestamps
        self.due_ns: dict[int, int] = {}  # seq -> the endpoint time it is sent at
        self.dont_fragment = target.version == 4  # DF: iputils -M want/do
        self.fragments_ok = True  # iputils -M want/dont: long requests in fragments
        cap.sock.buffering = False  # every note goes to the callback: never a full queue
        self._remove = cap.sock.add_callback(self._note)

    def detach(self) -> None:
        self._remove()

    def enough(self) -> bool:
        """As many requests answered (replies or errors) as wanted: iputils' exit test."""
        return self.wanted is not None and len(self.replies) + len(self.errors) >= self.wanted

    # -- arrivals --

    def _note(self, note: object) -> None:
        if not isinstance(note, Ndata):
            return
        if self.cutoff_ns is not None and note.time > self.cutoff_ns:
            return  # after -w's deadline: ping has exited, it never reads this
        got = parse_ndata(note)
        if got is None:
            if self.on_notice is not None and self.target.version == 4:
                notice = parse_notice(note.data, self.ident, str(self.target), note.time)
                if notice is not None:
                    self.on_notice(notice)
            return
        if got[0].kind is not ReplyKind.ECHO_REPLY:
            if got[0].is_error and got[0].icmp_type is not None:
                self._error(got[0], got[1], note.data)
            return
        key, elsewhere = self._key(got[0])
        seq = self.table.pop(key)
        wrong = wrong_data(note.data, self.payload)
        if seq is None:  # not ours, or a duplicate
            dup = self.answered.get(key)
            if dup is not None:
                size = self._size(got[0], note.data)
                self._duplicate(dup, got[0], got[1], size, wrong, elsewhere)
            return
        self.answered[key] = seq
        self.replies[seq] = (got[0], got[1], self._size(got[0], note.data))
        if wrong is not None:
            self.wrong[seq] = wrong
        if elsewhere:
            self.elsewhere.add(seq)
        if self.first_hop is not None:
            self.reverse[seq] = source_route(note.data[20 : (note.data[0] & 0x0F) * 4])
        elif self.options:
            options = note.data[20 : (note.data[0] & 0x0F) * 4]
            self.routes[seq] = recorded_route(options, received_by=got[0].dst)
        elif self.ts_kind is not None:  # stamped as the endpoint's kernel does on arrival
            options = note.data[20 : (note.data[0] & 0x0F) * 4]
            here = received_timestamps(options, got[0].dst, got[1], self._local)
            self.stamps[seq] = ip_timestamps(here)
        self.settled.add(seq)
        self.open.pop(seq, None)
        sent = self.sent_ns.get(seq)
        if self.hold is not None and sent is not None:  # (-A: ping's update_interval)
            rtt = max(0, got[1] - sent)
            self.srtt_ns = rtt * 8 if not self.srtt_ns else self.srtt_ns + rtt - self.srtt_ns // 8
        self._tell(seq)
        self.waker.poke()

    def _key(self, reply: Reply) -> tuple[ProbeKey, bool]:
        """The key of the request `reply` answers, and whether it came from an address
        other than the target's: iputils matches an echo reply by its identifier alone
        and takes one from elsewhere (`(DIFFERENT ADDRESS!)`), ours was a lost request."""
        key = reply.key
        if key in self.table or key in self.answered:
            return key, False
        there = dataclasses.replace(key, dst=self.target)
        if there in self.table or there in self.answered:
            return there, True
        return key, False

    def _size(self, reply: Reply, data: bytes) -> int:
        return _icmp_size(reply, data, 8 + len(self.payload))

    def _duplicate(
        self,
        seq: int,
        reply: Reply,
        recv_ns: int,
        size: int,
        wrong: WrongData | None,
        elsewhere: bool = False,
    ) -> None:
        """A second reply to an answered request: ping's "(DUP!)" line, "+N duplicates"."""
        sent_ns = self.sent_ns.get(seq)
        rtt = (recv_ns - sent_ns) / 1000.0 if sent_ns is not None else None
        d = PingReply(
            seq, str(reply.src), rtt, ttl=reply.ttl, size=size, probe_send_ns=sent_ns,
            reply_recv_ns=recv_ns, dup=True, wrong_data=wrong, different_address=elsewhere,
        )  # fmt: skip
        self.duplicates.append(d)
        if self.on_reply is not None:
            self.on_reply(d)

    def _error(self, reply: Reply, recv_ns: int, data: bytes) -> None:
        """A router's ICMP error quoting one of the requests: that request is settled.
        One ping's kernel drops is nothing here either (ping never hears of it)."""
        if _dropped_by_the_kernel(reply):
            return
        seq = self.table.pop(reply.key)
        if seq is None:
            return
        too_big = reply.kind in (ReplyKind.PACKET_TOO_BIG, ReplyKind.DEST_UNREACHABLE)
        mtu = kernel_pmtu(reply)
        if too_big and mtu and self._again_in_fragments(seq, mtu, recv_ns):
            return
        self.errors[seq] = e = PingError(
            seq,
            str(reply.src),
            str(reply.kind),
            reply.icmp_type or 0,
            reply.icmp_code or 0,
            mtu=reply.mtu,
            pointer=_pointer(reply, data),
            probe_send_ns=self.sent_ns.get(seq),
            reply_recv_ns=recv_ns,
        )
        self.settled.add(seq)
        self.open.pop(seq, None)
        if self.on_error is not None:
            self.on_error(e)
        self.waker.poke()

    def _again_in_fragments(self, seq: int, mtu: int, recv_ns: int) -> bool:
        """A "fragmentation needed" / "packet too big" naming `mtu` for request `seq`:
        later requests go in fragments of it, as ping's kernel sends them once it learnt
        it. One sent after an earlier such answer came (queued before it) is sent again
        now in fragments, as ping would have sent it (True): not an error then."""
        learnt = self.learnt_ns
        sent = self.sent_ns.get(seq)
        if learnt is None or recv_ns < learnt:
            self.learnt_ns = recv_ns
        if not self.fragments_ok:  # -M do: an error, as ping's; the later ones local errors
            self.local_mtu = min(self.local_mtu or mtu, mtu)
            if learnt is None or sent is None or sent < learnt:
                return False
            if self.built.get(seq, 0) <= self.local_mtu:
                # It fits what ping's kernel learnt (a router's 300 is 552 there): ping
                # sent it and heard the router again, an error, not a local one (ours
                # said `message too long, mtu=552` of a 528 byte request; session 26)
                return False
            # Queued before the first one came, sent after it: ping's kernel, knowing the
            # MTU by then, would have refused it (on a loaded host the answer can take
            # longer than the AHEAD_S a request is queued early).
            self._local_error(seq, sent)
            return True
        self.fragment_mtu = min(self.fragment_mtu or mtu, mtu)
        for waiting in sorted(self.parked):  # refused before this came: again, smaller
            self.parked.discard(waiting)
            self._resend(waiting)
        if learnt is None or sent is None or sent < learnt or seq in self.again:
            return False
        if self.built.get(seq, 0) <= self.fragment_mtu:  # (sent in such fragments already:
            return False  # an error about them, as ping's, not a second copy of them)
        p = self._request(seq)
        if not p.more:
            return False
        self.again.add(seq)
        self.table.add(p.key, seq)
        self.in_flight += 1
        self._send(p, 0).addCallbacks(self._queued(seq), self._failed)
        return True

    def _ntag(self, seq: int, tag: Ntag | None) -> None:
        self.in_flight -= 1
        late = tag is not None and self.cutoff_ns is not None and tag.time > self.cutoff_ns
        if late and seq not in self.sent_ns:  # left after -w's deadline: ping's had not
            tag = None
        if tag is None:
            self.unsent.add(seq)
            self.settled.add(seq)
            self.open.pop(seq, None)
        elif seq in self.sent_ns:  # sent again in fragments: its time is the new one
            self.sent_ns[seq] = tag.time
            self._tell(seq)
        else:
            self.sent_ns[seq] = tag.time
            if self.on_outstanding is not None and seq > 1 and seq - 1 not in self.replies:
                self.on_outstanding(seq - 1, tag.time)
            if self.on_sent is not None:
                self.on_sent(seq, tag.time)
            self._tell(seq)
        if tag is None or not self.sending:
            # (`collect` waits for the ntags; `send` only for room, which a request sent
            # does not make: waking it for nothing cost ~10 % of `run ping -f`'s CPU)
            self.waker.poke()

    def _tell(self, seq: int) -> None:
        if self.on_reply is None or seq in self.told:
            return
        if seq in self.replies and seq in self.sent_ns:
            self.told.add(seq)
            self.on_reply(self.record(seq))

    def record(self, seq: int) -> PingReply:
        sent_ns = self.sent_ns.get(seq)
        if seq not in self.replies:
            return PingReply(seq, None, None, probe_send_ns=sent_ns)
        reply, recv_ns, icmp_size = self.replies[seq]
        rtt = (recv_ns - sent_ns) / 1000.0 if sent_ns is not None else None
        return PingReply(
            seq,
            str(reply.src),
            rtt,
            ttl=reply.ttl,
            size=icmp_size,
            probe_send_ns=sent_ns,
            reply_recv_ns=recv_ns,
            route=self.routes.get(seq),
            ip_timestamps=self._sent_stamp(seq, sent_ns),
            source_route=self.reverse.get(seq),
            wrong_data=self.wrong.get(seq),
            different_address=seq in self.elsewhere,
        )

    def _sent_stamp(self, seq: int, sent_ns: int | None) -> IpTimestamps | None:
        """Request `seq`'s timestamps with the entry ping's kernel writes as it sends
        (which the controller wrote: the time the request was due at) made the time it
        left, its ntag's. ping's kernel stamps the moment of sending; the endpoint sends
        a little after the due time, 0.3-9 ms on a loaded machine (session 29: iputils'
        first difference 0-1 ms, ours up to 9 before). The wire keeps the due time."""
        stamps = self.stamps.get(seq)
        due = self.due_ns.get(seq)
        if stamps is None or sent_ns is None or due is None or not stamps.entries:
            return stamps
        if self.ts_kind == TS_PRESPEC and self.prespec[:1] != (str(self.cap.src),):
            return stamps  # (its first slot names another host: not ours to stamp)
        addr, ms = stamps.entries[0]
        if ms != ms_of_day(due) or addr not in (None, str(self.cap.src)):
            return stamps
        first = (addr, ms_of_day(sent_ns))
        return dataclasses.replace(stamps, entries=(first, *stamps.entries[1:]))

    # -- sending --

    async def send(self, count: int, interval: float, wait: float, stop: StopSignal | None) -> None:
        """Queue the requests with endpoint send times `interval` apart, at most AHEAD_S
        before their time and while fewer than WINDOW are unanswered, so that a stop stops
        them promptly and replies never come faster than they are read."""
        self.sending = True
        try:
            await self._send_all(count, interval, wait, stop)
        finally:
            self.sending = False

    async def _send_all(
        self, count: int, interval: float, wait: float, stop: StopSignal | None
    ) -> None:
        # Every request due at once (-c 1; -c N with -l N), and no -T stamping its due
        # time: sent with time 0, as soon as the endpoint has it, as ping sends its first
        # at once; the lead is for the ones after it, whose times must still be ahead
        # when they arrive (a `run ping -c 1` waited 50 ms for it, docs/performance.md).
        at_once = count <= self.preload and self.ts_kind is None
        lead = 0.0 if at_once else LEAD_S
        start = await read_time(self.session) + int(lead * 1e9)
        local_start = steady(self.reactor) + lead
        self.clock_pair = (local_start, start)
        if self.deadline is not None and stop is not None:
            self.cutoff_ns = start + int(self.deadline * 1e9)
            self.deadline_call = self.reactor.callLater(
                max(0.0, local_start + self.deadline - steady(self.reactor)),
                stop.request,
                "deadline",
            )
        for i in range(count):
            at = max(0, i - self.preload + 1) * interval  # -l: the first ones at once
            due = local_start + at - (AHEAD_S if self.wanted is None else WANTED_AHEAD_S)
            while self.failure is None and not (stop is not None and stop.requested):
                if self.enough():
                    return
                room = self._room()
                if room is None and steady(self.reactor) >= due:
                    break
                await self.waker.sleep(due if room is None else room, stop)
            if self.failure is not None:
                raise self.failure
            if stop is not None and stop.requested:
                return
            seq = i + 1
            self.due_ns[seq] = start + int(at * 1e9)
            if self._too_long(seq):  # ping's kernel: `message too long, mtu=65535`
                self.local_mtu = 0xFFFF
                self.queued = seq
                self._local_error(seq, start + int(at * 1e9))
                continue
            p = self._request(seq)
            if self.local_mtu is not None and len(p.packet) > self.local_mtu:
                self.queued = seq
                self._local_error(seq, start + int(at * 1e9))
                continue
            self.table.add(p.key, seq)
            d = self._send(p, 0 if at_once else start + int(at * 1e9))
            self.queued, self.in_flight = seq, self.in_flight + 1
            leaves = max(steady(self.reactor), local_start + at)  # (the first: the lead)
            self.open[seq] = leaves + self._held(wait)
            if self.hold is not None:
                self.sent_at[seq] = leaves
                while len(self.sent_at) > self.window:
                    del self.sent_at[next(iter(self.sent_at))]
            d.addCallbacks(self._queued(seq), self._failed)
            if seq % 64 == 0:
                await self.session.wait_writable()

    def _awaiting_cutoff(self) -> bool:
        """-w's deadline came with a request sent and unanswered, and the endpoint's clock
        has not yet been read past it (its reply may be on its way)."""
        if self.cutoff_ns is None or self.past_cutoff:
            return False
        return any(seq not in self.settled for seq in self.sent_ns)

    def _cut_at(self, local: float) -> bool:
        """The linger ended at `local` (reactor seconds) with requests unanswered: what
        the endpoint's kernel received before then is still awaited (under load the
        controller reads it late: `-l 200` through a tbf at load 14 missed 0-32 of 300
        replies, session 30), what came after is not taken (ping has exited). False when
        nothing is to be awaited."""
        if self.clock_pair is None:
            return False
        if self.cutoff_ns is None or not self.past_cutoff:
            at = self.clock_pair[1] + int((local - self.clock_pair[0]) * 1e9)
            self.cutoff_ns = at if self.cutoff_ns is None else min(self.cutoff_ns, at)
        return self._awaiting_cutoff()

    def _await_cutoff(self) -> None:
        """Start reading the endpoint's clock past the cutoff (once: the -w stop and the
        linger's end both await the replies its kernel had by then)."""
        if self.reading is None:
            self.reading = ensureDeferred(self._read_past_cutoff())
            self.reading.addErrback(lambda _: None)

    async def _read_past_cutoff(self) -> None:
        """Read the endpoint's clock until it is past -w's deadline, then once more (the
        capture read in the same turn as the first answer is in by the second): every
        reply the endpoint's kernel had by the deadline has reached `_note` then."""
        assert self.cutoff_ns is not None
        try:
            while await read_time(self.session) <= self.cutoff_ns:
                pass
            await read_time(self.session)
        finally:  # (a session lost meanwhile: nothing more will come)
            self.past_cutoff = True
            self.waker.poke()

    def _local_error(self, seq: int, at_ns: int) -> None:
        """-M do: ping's kernel, having learnt a smaller MTU, refuses a request longer
        than it (`local error: message too long, mtu=N`: counted, not sent). The
        endpoint's kernel would send it (a raw packet is not held to path MTUs), so the
        controller refuses it, as ping's would."""
        self.errors[seq] = e = PingError(
            seq, str(self.cap.src), LOCAL_ERROR, 0, 0, mtu=self.local_mtu, probe_send_ns=at_ns
        )
        self.settled.add(seq)
        self.open.pop(seq, None)
        if self.on_error is not None:
            self.on_error(e)
        self.waker.poke()

    def _request(self, seq: int) -> Probe:
        """Echo request `seq`: with DF (IPv4) as ping's (Linux's path MTU discovery), or,
        longer than the MTU known (`fragment_mtu`, or one a router named), in fragments."""
        options = self._options(seq)
        payload = self._stamped(seq)
        p = echo_probe(
            self.cap.src, self.target, ident=self.ident, seq=seq, ttl=self.ttl,
            payload=payload, dont_fragment=self.dont_fragment, tos=self.tos,
            options=options,
        )  # fmt: skip
        p = self._routed(p, options)
        self.built[seq] = len(p.packet)
        if self.fragment_mtu is not None and len(p.packet) > self.fragment_mtu:
            whole = echo_probe(
                self.cap.src, self.target, ident=self.ident, seq=seq, ttl=self.ttl,
                payload=payload, ip_id=p.ip_id, tos=self.tos, options=options,
            )  # fmt: skip
            p = fragmented(self._routed(whole, options), self.fragment_mtu)
            self.built[seq] = self.fragment_mtu
        return p

    def _stamped(self, seq: int) -> bytes:
        """The data of request `seq`: iputils writes its send time as a struct timeval
        (64-bit little-endian seconds and microseconds, as on x86-64 and arm64) over the
        first 16 bytes when there are at least 16; here the endpoint time it is due at
        (the endpoint sends it then; the RTTs are still the endpoint's kernel times)."""
        if len(self.payload) < PING_TIMING_MIN_SIZE:
            return self.payload
        at = self.due_ns.get(seq) or max(self.due_ns.values(), default=0)
        stamp = struct.pack("<qq", at // 1_000_000_000, at // 1000 % 1_000_000)
        return stamp + self.payload[PING_TIMING_MIN_SIZE:]

    def _routed(self, p: Probe, options: bytes) -> Probe:
        """`p` addressed to the first host of a source route (its option already in),
        as ping's kernel sends it; `p` itself without one. (Matched still by the target.)"""
        if self.first_hop is None:
            return p
        return dataclasses.replace(p, packet=with_ip_options(p.packet, options, self.first_hop))

    def _too_long(self, seq: int) -> bool:
        """Request `seq` would be an IPv4 packet over 65535 bytes (-s above 65507 less
        its options): ping's kernel refuses it as a local error."""
        head = 20 + len(self._options(seq)) + 8
        return self.target.version == 4 and head + len(self.payload) > 0xFFFF

    def _options(self, seq: int) -> bytes:
        """The IPv4 options of request `seq`: -R's, or -T's with the entry ping's kernel
        adds as it sends (its time: the endpoint time the request is due at)."""
        if self.ts_kind is None:
            return self.options
        at = self.due_ns.get(seq) or max(self.due_ns.values(), default=0)
        return timestamp_option(self.ts_kind, self.prespec, src=self.cap.src, sent_ns=at)

    def _local(self, addr: Address) -> bool:
        """An address of the endpoint's host (it stamps a tsprespec slot naming it)."""
        return addr == self.cap.src

    def _send(self, p: Probe, at: int) -> Deferred[QueuedSend]:
        d = self.session.nsend(self.cap.sktid, p.packet, time=at, ntag=True)
        for piece in p.more:  # the rest of a fragmented request, right after it
            self.session.nsend(self.cap.sktid, piece, time=at).addErrback(self._failed)
        return d

    def _held(self, wait: float) -> float:
        """How long a request just sent holds its place in the window unanswered."""
        if self.hold is None:
            return wait
        return self.srtt_ns / 8e9 if self.srtt_ns else self.hold

    def _adaptive_step(self) -> float:
        """iputils -A's interval (s): the replies' smoothed RTT rounded to whole ms, as
        ping's update_interval ((rtt/8 + 500) / 1000); `hold` (-i) before the first."""
        if not self.adaptive:
            return 0.0
        if not self.srtt_ns:
            return self.hold or 0.0
        return (self.srtt_ns // 8_000 + 500) // 1000 / 1000

    def _adaptive_room(self, now: float) -> float | None:
        """iputils -A as root (pinger's tokens): an interval of 1 ms or more, one request
        each interval, answered or not (`window`, -l, at once); 0 (an RTT under 0.5 ms),
        the next as soon as fewer than `window` are unanswered, or 10 ms (MININTERVAL)
        after the last. (Session 29: each place was freed by its reply or after the
        smoothed RTT, so at 10 µs of RTT the controller sent as fast as it could, `pipe
        115`, 3.5 % of them unanswered at -w's end, where ping kept one in flight.)"""
        step = self._adaptive_step()
        if step > 0:
            held = [t + step for t in self.sent_at.values() if t + step > now]
        else:
            held = [
                t + ADAPTIVE_FLOOD_S
                for seq, t in self.sent_at.items()
                if seq not in self.replies and t + ADAPTIVE_FLOOD_S > now
            ]
        return None if len(held) < self.window else min(held)

    def _room(self) -> float | None:
        """None when another request may go, else when the oldest unanswered one is given
        up on (and makes room)."""
        now = steady(self.reactor)
        if self.hold is not None:
            return self._adaptive_room(now)
        while self.open:
            seq, give_up = next(iter(self.open.items()))
            if give_up > now:
                break
            del self.open[seq]
        if len(self.open) < self.window:
            return None
        return next(iter(self.open.values()))

    def _queued(self, seq: int) -> Callable[[QueuedSend], None]:
        def cb(q: QueuedSend) -> None:
            assert q.ntag is not None
            q.ntag.addCallbacks(lambda tag: self._ntag(seq, tag), lambda f: self._no_ntag(seq, f))

        return cb

    def _no_ntag(self, seq: int, f: Failure) -> None:
        if f.check(SendFailed) and self.fragment_mtu is not None and seq not in self.again:
            # refused: too long for an MTU a router named since it was queued (the
            # endpoint's kernel learnt it). Sent again in fragments of it, as ping's
            # kernel sends the next ones: now if it is known here, else once it is.
            if self.fragment_mtu < self.built.get(seq, 0):
                self._resend(seq)
            else:
                self.parked.add(seq)
            return
        unknown = self.local_mtu is None and self.built.get(seq, 0) > REFUSABLE
        if f.check(SendFailed) and not self.fragments_ok and (self.local_mtu or unknown):
            # -M do, refused by the endpoint's kernel over the MTU a router named (IPv6
            # raw sockets are held to path MTUs): ping's kernel's local error, counted;
            # it was neither counted nor told (`2 packets transmitted, +2 errors` for 3).
            # Its MTU not known (--listen), a request over REFUSABLE bytes is taken as
            # over it (session 29: the run failed, `could not send a 1528 byte ...`)
            self.in_flight -= 1
            self._local_error(seq, self.due_ns.get(seq, 0))
            return
        if f.check(SessionClosed) and self.failure is None:
            self.failure = f.value
        if f.check(SendFailed):
            self.refused += 1
        self._ntag(seq, None)

    def _resend(self, seq: int) -> None:
        """Request `seq` again at once, in fragments of the MTU known now."""
        self.again.add(seq)
        self._send(self._request(seq), 0).addCallbacks(self._queued(seq), self._failed)

    def _failed(self, f: Failure) -> None:
        self.in_flight -= 1
        if self.failure is None:
            self.failure = f.value
        self.waker.poke()

    # -- waiting --

    def _linger(self, wait: float, interval: float) -> float:
        """iputils' __schedule_exit as its last request leaves: 2 x the largest RTT (at
        least `interval`, -W or not) if a reply had come by then, else `wait` (-W). The
        replies the endpoint received before the last request's ntag time count (all in
        so far while that ntag is not); decided at queueing (0.2 s ahead), `-c 3 -i 0.2
        -W 0.1` at 250 ms lost its 3rd reply and `-c 2 -i 0.2`, the 2nd lost, waited 10 s
        (session 30)."""
        last = self.sent_ns.get(self.queued)
        rtts = [
            got[1] - self.sent_ns[seq]
            for seq, got in self.replies.items()
            if seq in self.sent_ns and (last is None or got[1] <= last)
        ]
        return max(2 * max(rtts) / 1e9, interval) if rtts else wait

    async def collect(
        self,
        count: int,
        interval: float,
        wait: float,
        stop: StopSignal | None,
        like_ping: bool = False,
        ends_at_once: frozenset[str] = frozenset(),
    ) -> None:
        """Wait for the replies: until every request sent is answered, `wait` s after the
        last request's time (`like_ping`: 2 x the largest RTT, if any reply came), or
        briefly once a stop was requested."""
        linger = self._linger(wait, interval) if like_ping else wait
        since = steady(self.reactor) + LEAD_S + AHEAD_S  # (the last request's time)
        deadline = since + linger
        held_until = since + wait + wait  # a bound on waiting for sends the endpoint holds
        hard_end = held_until + GRACE_S  # ... and on reading the endpoint's clock after it
        stopped_at: float | None = None
        while True:
            if self.failure is not None:
                raise self.failure
            now = steady(self.reactor)
            if like_ping and stopped_at is None:  # (replies that came in the meantime)
                linger = self._linger(wait, interval)
                deadline = since + linger
            if stop is not None and stop.requested and stopped_at is None:
                stopped_at = now
                deadline = min(deadline, now + min(wait, GRACE_S))
            if self.in_flight and stopped_at is None and deadline <= now < held_until:
                # Requests not sent yet (the endpoint's socket buffer full: they wait, as
                # ping's own send blocks): the linger counts from the last one's leaving,
                # as iputils schedules its exit after its last send. They were counted
                # unsent (`-l 200` through a 20 Mbit/s tbf under load: 254 of 300).
                since = now
                deadline = now + linger
            if self.in_flight == 0 and len(self.settled) >= self.queued:
                break
            if now >= deadline:
                if stopped_at is not None or not self._cut_at(deadline) or now >= hard_end:
                    break
                self._await_cutoff()  # replies the endpoint had by the linger's end
                await self.waker.sleep(hard_end, stop)
                continue
            at_once = stopped_at is not None and stop_reason(stop) in ends_at_once
            if at_once and stop_reason(stop) == "deadline" and self._awaiting_cutoff():
                self._await_cutoff()  # replies the endpoint had by the deadline
                at_once = False
            if self.in_flight == 0 and (self.enough() or at_once):  # (the ntags are in)
                break
            await self.waker.sleep(deadline, stop if stopped_at is None else None)
        self.refused += len(self.parked)  # (refused, and no smaller MTU came)
        # ntags still missing: unsent (the socket is about to close)
        for seq in range(1, self.queued + 1):
            local = seq in self.errors and self.errors[seq].reply_type == LOCAL_ERROR
            if seq not in self.sent_ns and not local:  # (ping counts its local errors sent)
                self.unsent.add(seq)
