"""Scheduled UDP packet trains: N datagrams at fixed gaps from a start time on the
endpoint's clock, with the endpoint's actual send time (ntag) of each one (§3.3)."""

from __future__ import annotations

import contextlib
import statistics
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from weakref import WeakKeyDictionary

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from packetlab.clockstep import steady
from packetlab.controller._deferred import deferred_api
from packetlab.controller.addresses import AddressLike, IPAddress, parse_address
from packetlab.controller.clock import read_time
from packetlab.controller.errors import (
    ControllerError,
    RequestFailed,
    SessionClosed,
    SocketClosed,
)
from packetlab.controller.exchange import _close_quietly, _fired_within
from packetlab.controller.requests import DEFAULT_RBUFSZ, QueuedSend
from packetlab.controller.stop import StopSignal
from packetlab.gcpolicy import fewer_collections
from packetlab.wire import Ntag, vmem

if TYPE_CHECKING:
    from packetlab.controller.session import EndpointSession

_SEQ = struct.Struct(">I")
# per session: the queue_cost of its last train that was long enough (see LEARN_SPARE)
_learned: WeakKeyDictionary[EndpointSession, int] = WeakKeyDictionary()
MAX_PENDING = 32768  # packets waiting for their ntag at most (tags are 16 bits)
# ... and their bytes: the endpoint charges each queued send to its buffer budget (BUFMAX,
# endpt.conf BufMax, §3.5) and refuses past it (ESYSNOBUFS): a 10,000 x 1,400 B train at
# 100 µs against the default 8 MiB had 4,467 nsends refused (session 32). So a train
# whose sends would pass BUF_CHECK bytes reads BUFMAX first, and keeps at most
# 1/BUF_SHARE of it waiting, counting each send as its payload + SEND_CHARGE (this
# endpoint charges 116 bytes beyond the payload: endpoint/budget.py SEND_BUF_OVERHEAD).
BUF_CHECK = 1 << 20
BUF_SHARE = 2
SEND_CHARGE = 128

# The adaptive lead (no `start`, no `lead`): every nsend should be queued at the endpoint
# before its packet is due, however loaded the link and the two hosts are. So the
# cost of one request is measured first: rounds of LEAD_PROBES pipelined mreads of TIME
# (harmless: no socket, quota or burst window is touched), a round's time minus one round
# trip, per request. One round (~0.6 ms in-process) fits in one of a loaded machine's time
# slices and sees the unloaded cost, while the train's nsends take many slices at the
# process's share of a CPU (3 busy loops on 2 cores: 12-50%; the 1000-datagram example was
# queued late in 13 of 15 runs, session 10). So while the train would take longer to
# queue than the rounds so far, more rounds follow, back to back, for up to LEAD_PROBE_NS
# (a few scheduling periods) or LEAD_ROUNDS_MAX rounds, and the mean round is used: the
# slices lost are in it. (One large pipelined round instead costs 1.6-2.3x more per
# request even unloaded: it would count as load.) The round trip is the fastest of
# LEAD_RTTS single mreads. An nsend with an ntag costs ~6 mreads to build, send, check,
# queue and answer (in-process endpoint over TLS, fresh process: 48-57 µs against 8-14 µs,
# session 10; docs/performance.md), so one nsend costs c = LEAD_NSEND_COST * that cost:
# a factor of 2 to spare for load that changes after the probe.
#
# The lead is LEAD_MIN_NS + 2 round trips + `queue_lead`: with the sends begun at s and
# the first packet due at s + L, nsend k (0-based) is queued by about s + (k+1)*c and its
# packet is due at s + L + k*gap, so L >= c + k*(c - gap) for every k < n = min(count,
# MAX_PENDING). But the nsends are built in bursts of LEAD_BURST, then the reactor gets
# a turn to write them (before, a burst lasted until the write buffer was full, ~650
# nsends: the first ones reached an in-process endpoint 47 ms late), and the endpoint
# queues one burst while the next is built, so nsend k is queued by (k + B)*c with
# B = min(n, 2*LEAD_BURST), and all n by n*c (the work is the same, however
# interleaved): L = max over k of min(k + B, n)*c - k*gap = max(B*c, n*c - (n-B)*gap).
# A gap of 0 gives n*c (the lead before session 19); a gap at least c gives B*c (~20 ms
# in-process), however long the train: the endpoint is fed while the earlier packets go
# out (a 10,000 x 1 ms train waited 1.6 s for nothing).
# Past MAX_PENDING packets waiting for their ntag the train stops queueing until fewer
# than MAX_PENDING/2 wait, i.e. until packet MAX_PENDING/2 was sent, at about
# start + (MAX_PENDING/2)*gap whatever the lead: the nsends after the first MAX_PENDING
# are paced by the train itself, and the lead cannot bring them forward. It can only
# delay them: if the first MAX_PENDING are still being queued when the next ones come,
# those queue behind them. When c <= gap the endpoint keeps pace and they are on time
# anyway (packet MAX_PENDING+j is queued about (MAX_PENDING+j)*c after the first packet is
# due, and due (MAX_PENDING+j)*gap after it). When c > gap they are late in any case
# (by (j+1)*(c - gap), the endpoint cannot keep up), and the lead keeps them no later
# than before by having the first MAX_PENDING queued by start + (MAX_PENDING/2)*gap:
# L = MAX_PENDING*c - (MAX_PENDING/2)*gap (above MAX_PENDING*c - (MAX_PENDING-B)*gap).
LEAD_PROBES = 32
LEAD_PROBE_NS = 30_000_000
LEAD_ROUNDS_MAX = 200
LEAD_RTTS = 3
LEAD_NSEND_COST = 12
LEAD_MIN_NS = 20_000_000
LEAD_BURST = 64  # nsends built between two turns of the reactor (see above)
# The probe's estimate is pessimistic by design and noisy: the first 32,768 nsends of a
# 100,000 x 1 us train were queued in 0.6-2.2 s against leads of 2.3-13.4 s, the probe
# putting an nsend at 2.4-10x its real cost in-process and 1.4-4.5x with the endpoint in
# another process (session 20, docs/performance.md): with 1.4 in the worst run, 12 stays.
# So a train measures what its nsends
# really took to queue (`TrainReport.queue_cost`); the session's next adaptive lead takes
# c within [1, LEARN_SPARE] x that: the same factor to spare as the probe's, from the
# nsends themselves. Only from a train whose queueing lasted at least LEARN_MIN_NS, and
# had LEARN_MIN_SENDS: a short burst fits in a time slice and sees the unloaded cost (the
# probe's reason to run for a while, above); and none refused (a refusal is cheap).
LEARN_SPARE = 2
LEARN_MIN_SENDS = 1024
LEARN_MIN_NS = LEAD_PROBE_NS
# A lead longer than this is worth a line to the user (`lead_note`): the first packet
# of a 100,000-packet train waited 7-15 s with no word (session 19).
LONG_LEAD_NS = 1_000_000_000
# After a stop: how long the ntags of the packets already due may take to come (s); then
# the socket is closed, and the endpoint drops the sends still queued (§3.1).
STOP_WAIT_S = 1.0
STOP_POLL_S = 0.01  # meanwhile, how often the ntags still missing are looked at
STOPPED = "stopped"  # the error of a packet a stop kept from being sent


def default_payload(size: int) -> Callable[[int], bytes]:
    """Payload i = i as u32 (big-endian), zero-padded to `size` bytes (≥ 4)."""
    return lambda i: _SEQ.pack(i).ljust(max(size, 4), b"\0")


def _quantiles(values: list[int]) -> dict[str, int]:
    if not values:
        return {}
    s = sorted(values)

    def q(p: float) -> int:
        return s[min(len(s) - 1, round(p * (len(s) - 1)))]

    return {"min": s[0], "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": s[-1]}


@dataclass(slots=True)
class TrainReport:
    """Intended vs actual endpoint send times (ns). `sent[i]` is None when packet i was
    not sent (its reason in `errors[i]`)."""

    raddr: IPAddress
    rport: int
    gap: int
    intended: list[int]
    sent: list[int | None] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    #: ns from the endpoint's TIME reading to the first packet (the lead used)
    lead: int = 0
    #: ns by which every nsend was queued before its packet was due: the smallest margin
    #: (endpoint clock, ± half a round trip); negative: part of the train was queued late
    queued_ahead: int | None = None
    #: a `StopSignal` or a cancel ended the train early: the packets not sent say
    #: "stopped" (or "no ntag": due, their ntag not come)
    stopped: bool = False
    #: it was cancelled (not stopped): the report was written at once, without waiting
    #: for the ntags of the packets due (a partial report, `send_train`)
    cancelled: bool = False
    #: ns it took, per nsend, to have the first min(count, window) queued (from the
    #: first nsend to the last one's answer); None if they were not all answered
    queue_cost: int | None = None
    #: packets waiting for their ntag at most: MAX_PENDING, or fewer to fit the endpoint's
    #: buffer budget (BUF_SHARE)
    window: int = MAX_PENDING

    @property
    def count(self) -> int:
        return len(self.intended)

    @property
    def sent_count(self) -> int:
        return sum(t is not None for t in self.sent)

    def offsets(self) -> list[int]:
        """Actual minus intended send time, for each packet sent (ns)."""
        return [s - i for i, s in zip(self.intended, self.sent, strict=True) if s is not None]

    def gaps(self) -> list[int]:
        """Actual gaps between consecutive packets that were both sent (ns)."""
        return [
            b - a
            for a, b in zip(self.sent, self.sent[1:], strict=False)
            if a is not None and b is not None
        ]

    def gap_errors(self) -> list[int]:
        return [g - self.gap for g in self.gaps()]

    def summary(self) -> dict[str, object]:
        """Counts and quantiles (min/p50/p90/p99/max) of offsets, gaps and |gap error|."""
        gaps = self.gaps()
        return {
            "count": self.count,
            "sent": self.sent_count,
            "gap": self.gap,
            "offset": _quantiles(self.offsets()),
            "actual_gap": _quantiles(gaps),
            "abs_gap_error": _quantiles([abs(g - self.gap) for g in gaps]),
            "mean_gap": statistics.fmean(gaps) if gaps else None,
        }


def _ns(value: float, what: str) -> int:
    """A duration in ns as an int: `gap=1e6` (a float, as Python writes a million) is
    1,000,000 ns, not a float in every send time."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise TypeError(f"{what} must be a number of ns, got {value!r}")
    if isinstance(value, float):
        if value in (float("inf"), float("-inf")):
            raise ValueError(f"{what} must be a finite number of ns, got {value!r}")
        if value and not round(value):  # gap=0.001 meant a ms: it was a silent 0 ns
            raise ValueError(
                f"{what} is in ns: {value!r} ns rounds to 0 (1 ms is 1e6; give 0 for none)"
            )
        return round(value)
    return value


@deferred_api
async def send_train(
    session: EndpointSession,
    host: AddressLike,
    port: int,
    count: int,
    gap: float,
    *,
    payload: bytes | Callable[[int], bytes] | None = None,
    size: int = 64,
    start: int | None = None,
    lead: float | None = None,
    lport: int = 0,
    sktid: int | None = None,
    rbufsz: int = DEFAULT_RBUFSZ,
    ntag_timeout: float = 5.0,
    stop: StopSignal | None = None,
    stop_wait: float = STOP_WAIT_S,
    on_lead: Callable[[int], object] | None = None,
) -> TrainReport:
    """Send `count` UDP datagrams to `host:port`, packet i at endpoint time start + i*gap.

    `gap`, `start` and `lead` are ns (`gap` and `lead` may be floats, `gap=1e6`: rounded
    to the ns; `start`, ns since the epoch, an int). Without `start` the train begins
    `lead` ns after the endpoint's current time; without `lead` either, the lead adapts:
    long enough for
    every nsend to be queued before its packet is due (the nsends are queued while the
    earlier packets go out), from the measured cost of a request on this link
    (`measure_lead`) and what the nsends of the session's last long train took to queue
    (`TrainReport.queue_cost`, LEARN_SPARE); `TrainReport.queued_ahead` says whether
    they were. `on_lead` is
    called with the lead (ns) once it is known, before the first nsend (`lead_note`: what
    to tell the user of a long one).
    Payloads are `payload(i)`, a fixed `payload`, or the sequence number padded to `size`
    bytes. A packet whose ntag has not come
    `ntag_timeout` s after the train's last moment, and after the last ntag that did come
    (an endpoint that is behind still gets its time), is reported as "no ntag". At most
    `MAX_PENDING` packets wait for their ntag at once (tags are 16 bits), and no more than
    fit in half the endpoint's buffer budget (BUFMAX, read when the train's sends would
    pass BUF_CHECK bytes; `TrainReport.window`); notifications are read while the train
    is queued.

    When `stop` is requested (a `StopSignal`: the first Ctrl-C of a command), no further
    nsend is queued; the ntags of the packets already due by then are awaited for up to
    `stop_wait` s; then the socket is closed, which drops the sends still queued at the
    endpoint. The report holds what was sent so far, `stopped` is True, and a packet not
    due when the train was stopped says "stopped" (one that was due and whose ntag did not
    come: "no ntag").

    Cancelled (its Deferred's `cancel()`, as `pktlab run` does to what is still in flight
    after its grace) once the first nsend is queued, the train fires at once with the
    report so far, `stopped` and `cancelled` True (the ntags still missing are not waited
    for: a packet due says "no ntag"); the socket is closed without waiting for the
    answer. Cancelled before, it fails with `CancelledError`, as it did.
    """
    gap, lead = _ns(gap, "gap"), None if lead is None else _ns(lead, "lead")
    if start is not None and (not isinstance(start, int) or isinstance(start, bool)):
        raise TypeError(
            f"start must be an int of ns since the epoch (endpoint clock; a float cannot "
            f"hold them exactly), got {start!r}"
        )
    if not isinstance(count, int) or count < 1 or gap < 0:
        raise ValueError(f"need count >= 1 and gap >= 0, got count={count} gap={gap}")
    ra = parse_address(host)
    make = default_payload(size) if payload is None else payload
    if sktid is None:
        sktid = session.free_sktid()
    await session.nopen_udp(sktid, family=ra.version, lport=lport, rbufsz=rbufsz, buffer=False)
    # Watched from the start (a stop while the lead is measured stops the train too); a
    # stop wakes whatever the train waits for.
    flows: list[_Flow] = []
    watch: Deferred[Any] | None = None
    if stop is not None:
        watch = stop.when_requested()

        def wake(_: object) -> None:
            for f in flows:
                f.wake()

        watch.addCallbacks(wake, lambda f: f.trap(CancelledError))
    # Each packet's Deferred and callbacks live until its ntag: without this, collections
    # traversing them were ~40 % of a 100,000-packet train's CPU (packetlab.gcpolicy).
    hold = contextlib.ExitStack()
    hold.enter_context(fewer_collections())
    flow: _Flow | None = None
    cancelled = written = False
    try:
        first = make(0) if callable(make) else make  # (made once: it stands for them all)
        window = await _window(session, count, len(first))
        t0 = session.clock_ns()
        now = await read_time(session)
        t3 = session.clock_ns()
        # endpoint clock minus ours (± rtt/2), from the reading, not the extrapolation
        # below: that one counted the probe's time twice, ~30 ms (session 19)
        offset = now - t3
        if start is None:
            if lead is None:
                lead = await measure_lead(session, count, gap=gap, rtt=t3 - t0, most=window)
                now += session.clock_ns() - t3  # the endpoint's time after the probe
            start = now + lead
        clock = session.reactor
        # ntags are due by the last packet's time; then allow `ntag_timeout` more.
        deadline = steady(clock) + (start + (count - 1) * gap - now) / 1e9 + ntag_timeout
        report = TrainReport(ra, port, gap, [start + i * gap for i in range(count)])
        report.sent = [None] * count
        report.errors = [None] * count
        report.lead = start - now
        report.window = window
        if on_lead is not None:
            on_lead(report.lead)
        flow = _Flow(report, clock, session.clock_ns, offset)
        flows.append(flow)
        for i, t in enumerate(report.intended):
            if stop is not None and stop.requested:
                break
            data = make(i) if i and callable(make) else first
            d = session.nsend(sktid, data, time=t, to=(ra, port), ntag=True)
            flow.track(i, d)
            if flow.waiting >= window:  # ntags are tracked per tag: never run out
                await flow.below(max(1, window // 2))
            elif i % LEAD_BURST == LEAD_BURST - 1:
                await session.wait_writable()
                # a turn of the reactor: these are written, and the endpoint queues them
                # while the next ones are built (the lead counts on it, see LEAD_BURST)
                await deferLater(clock, 0, lambda: None)
            if flow.failure is not None:
                raise flow.failure
        while flow.pending and flow.failure is None:
            if stop is not None and stop.requested:
                await _wind_down(flow, session, offset, stop_wait)
                # Closed before the report is written: a packet that leaves before the
                # endpoint takes the nclose has its ntag ahead of the answer, so it counts
                # as sent (it said "stopped" while the sink had it: session 30, eyes30).
                flow.closing = True
                await _close_quietly(session, sktid)
                break
            # One wait for every ntag, not a timer per packet: with the endpoint in this
            # process, that per-packet work ran in the gaps of the train it measures.
            # An endpoint that is behind but still sending gets its time.
            until = max(deadline, flow.last + ntag_timeout)
            fired = await _fired_within(flow.below(1), until - steady(clock), clock)
            if not fired and steady(clock) >= max(deadline, flow.last + ntag_timeout):
                break
        if flow.failure is not None:
            raise flow.failure
        if flow.queue_cost is not None and flow.learnable():
            _learned[session] = flow.queue_cost
        _write(flow, session.clock_ns() + offset, stop is not None and stop.requested)
        written = True
    except CancelledError:
        # `pktlab run`'s grace ran out (a long train's Ctrl-C): what went out is still
        # a result, and is reported at once (it said "0 trains" though datagrams went
        # out: session 31, sg31). Before the first nsend there is nothing to report.
        if flow is None or written:
            raise
        cancelled = True
        flow.report.cancelled = True
        _write(flow, session.clock_ns() + offset, True)
    finally:
        hold.close()
        if watch is not None:
            watch.cancel()
        if cancelled:
            _close_later(session, sktid)
        else:
            try:
                await _close_quietly(session, sktid)
            except CancelledError:
                if not written:  # (the report is whole: the close is not its business)
                    raise
                _close_later(session, sktid)
    assert flow is not None
    return flow.report


def _write(flow: _Flow, ended: int, stopping: bool) -> None:
    """Write the report's last fields once the train is over, `ended` the endpoint's
    time then (± rtt/2); `stopping`: a stop or a cancel came."""
    report = flow.report
    report.queued_ahead = flow.ahead
    report.queue_cost = flow.queue_cost
    flow.settled = True  # what the close does to the ntags still awaited is not news
    # (a stop once every packet was sent did not end the train early)
    report.stopped = stopping and report.sent_count < report.count
    for i, when in enumerate(report.sent):
        if when is None and report.errors[i] is None:
            due = report.intended[i] <= ended
            report.errors[i] = "no ntag" if due or not report.stopped else STOPPED


def _close_later(session: EndpointSession, sktid: int) -> None:
    """Close `sktid` without waiting for the answer (a cancelled train returns at once;
    the endpoint drops the sends still queued on it)."""
    if session.find_socket(sktid) is None:
        return
    d: Deferred[Any] = session.nclose(sktid)
    d.addErrback(lambda f: f.trap(ControllerError))


def queue_lead(count: int, gap: int, cost: int, window: int = MAX_PENDING) -> int:
    """The part of the lead (ns) that lets each nsend of a train of `count` packets `gap`
    ns apart be queued before its packet is due, one nsend taking `cost` ns to queue at
    the endpoint, at most `window` waiting (see the comment above LEAD_PROBES)."""
    n = min(count, window)
    burst = min(n, 2 * LEAD_BURST)
    need = max(burst * cost, n * cost - (n - burst) * gap)
    if count > window and cost > gap:
        need = max(need, window * cost - window // 2 * gap)
    return need


def lead_note(lead: int, count: int) -> str | None:
    """What to tell the user before a long wait for a train's first packet (`lead` ns
    after the endpoint's time, `count` packets), or None under LONG_LEAD_NS."""
    if lead <= LONG_LEAD_NS:
        return None
    return (
        f"queueing {min(count, MAX_PENDING)} nsends at the endpoint: "
        f"first packet in {lead / 1e9:.1f} s"
    )


#: A train whose p50 send offset passes this gets `late_note`'s explanation.
LATE_NS = 100_000
#: `late_note(where=...)`'s words for an endpoint this command runs in-process.
HERE = "this command"
#: ... and for an endpoint run as its own process (--listen): chrt must start that one.
ENDPOINT_COMMAND = "the endpoint's command (`chrt -f 10 twistd -n pktendpoint ...`)"


def late_note(rep: TrainReport, *, where: str = HERE) -> str | None:
    """Why a train whose nsends were all queued in time went out late (p50 offset over
    LATE_NS), or None; `where` is what `chrt -f 10` must start (HERE or ENDPOINT_COMMAND).
    A gap shorter than what the endpoint takes per datagram (a gap of 0: every packet due
    at once) is late by design: blaming the CPU and advising chrt cannot help there. Shared
    by examples/udp_train.py and `pktlab run sendgap` (session 32: sendgap said nothing of
    p50 offsets of ms at load). With an endpoint of its own (--listen), chrt before the
    controller's command did nothing for the sends (1000 x 100 µs: offset p50 0.36-14 ms
    either way, 0.3 µs with the endpoint under chrt; session 32, train32)."""
    s = rep.summary()
    off: Any = s["offset"]
    if not off or off["p50"] <= LATE_NS or (rep.queued_ahead or 0) < 0:
        return None
    pace: Any = s["actual_gap"]
    if pace and pace["p50"] > rep.gap:  # back to back most of the train, still behind
        return (
            f"late although every nsend was queued in time: the endpoint sent one datagram "
            f"every {pace['p50'] / 1e3:.1f} µs (actual gap p50), slower than the "
            f"{rep.gap / 1e3:g} µs asked, so the train fell behind its schedule"
        )
    return (
        "late although every nsend was queued in time: the endpoint lost its CPU "
        f"during the train (a busy machine); `chrt -f 10` before {where} gives it priority"
    )


async def _window(session: EndpointSession, count: int, size: int) -> int:
    """How many packets may wait for their ntag at once: MAX_PENDING, or fewer when
    their sends would not fit in 1/BUF_SHARE of the endpoint's BUFMAX (read only for a
    train whose sends pass BUF_CHECK bytes; payload 0's `size` stands for all)."""
    each = size + SEND_CHARGE
    if min(count, MAX_PENDING) * each <= BUF_CHECK:
        return MAX_PENDING
    (bufmax,) = struct.unpack(">I", await session.mread(vmem.BUFMAX.addr, vmem.BUFMAX.size))
    if not bufmax:  # not said: the tags are the only bound
        return MAX_PENDING
    return max(1, min(MAX_PENDING, bufmax // BUF_SHARE // each))


@deferred_api
async def measure_lead(
    session: EndpointSession,
    count: int,
    *,
    gap: int = 0,
    rtt: int | None = None,
    most: int = MAX_PENDING,
) -> int:
    """A lead (ns) for a train of `count` nsends `gap` ns apart: long enough for each to
    be queued at the endpoint before its packet is due, from the cost of a request
    estimated from `LEAD_PROBES` pipelined mreads of TIME (see LEAD_NSEND_COST), within
    1-LEARN_SPARE x what this session's last long train's nsends took, if one ran.
    `rtt` is one measured round trip (ns), if the caller has one; `most`: packets that
    may wait for their ntag at once (`TrainReport.window`)."""
    ahead = min(count, most)  # queued before the first ntag at most
    # The round trip subtracted below: the fastest of LEAD_RTTS single mreads (and `rtt`,
    # measured by the caller). One sample that lost its CPU (4 ms instead of 0.2) made the
    # cost per request 0 and the lead the 20 ms floor.
    for _ in range(LEAD_RTTS):
        t0 = session.clock_ns()
        await read_time(session)
        took = session.clock_ns() - t0
        rtt = took if rtt is None else min(rtt, took)
    assert rtt is not None
    took = total = await _probe_round(session)
    rounds = 1
    # As long as the train's queueing would take, up to LEAD_PROBE_NS: more rounds, back to
    # back, so that the time slices this process and the endpoint lose show (see above).
    window = min(LEAD_PROBE_NS, ahead * LEAD_NSEND_COST * max(took - rtt, 0) // LEAD_PROBES)
    while total < window and rounds < LEAD_ROUNDS_MAX:
        total += await _probe_round(session)
        rounds += 1
    # The mean round: the time slices lost during the probe are in it.
    per_request = max(total // rounds - rtt, 0) // (LEAD_PROBES - 1)
    cost = LEAD_NSEND_COST * per_request
    seen = _learned.get(session)
    if seen is not None:  # what this session's nsends really cost (see LEARN_SPARE)
        cost = max(seen, min(cost, LEARN_SPARE * seen))
    return LEAD_MIN_NS + 2 * max(rtt, took // LEAD_PROBES) + queue_lead(count, gap, cost, most)


async def _wind_down(flow: _Flow, session: EndpointSession, offset: int, stop_wait: float) -> None:
    """After a stop: wait (up to `stop_wait` s) for the ntags of the packets due by now,
    endpoint time `offset` ns ahead of ours; the later ones are dropped by the close."""
    clock = session.reactor
    cutoff = session.clock_ns() + offset
    until = steady(clock) + stop_wait
    intended = flow.report.intended
    while flow.pending and intended[min(flow.pending)] <= cutoff:
        left = until - steady(clock)
        if left <= 0:
            break
        # (polled: one wake-up per ntag would cost the train's own gaps, see above)
        await _fired_within(flow.below(1), min(left, STOP_POLL_S), clock)


async def _probe_round(session: EndpointSession) -> int:
    """The time (ns) LEAD_PROBES pipelined mreads of TIME take."""
    t0 = session.clock_ns()
    probes = [session.mread(vmem.TIME.addr, vmem.TIME.size) for _ in range(LEAD_PROBES)]
    for d in probes:
        await d
    return session.clock_ns() - t0


class _Flow:
    """The train's packets between their nsend and their ntag: results go into the report
    as they come (notifications are read while the train is still being queued), and
    `below(n)` waits until fewer than n are waiting for their ntag."""

    def __init__(
        self, report: TrainReport, clock: Any, clock_ns: Callable[[], int], offset: int
    ) -> None:
        self.report = report
        self.clock = clock
        self.clock_ns = clock_ns
        self.offset = offset  # endpoint clock minus ours
        self.ahead: int | None = None  # the smallest (due - answered) of an nsend so far
        self.began = clock_ns()  # the first nsend (ours, ns)
        self._first = min(report.count, report.window)  # queued before any flow control
        self._answered = 0  # of those
        self._refusals = 0  # of those
        self.queue_took = 0  # ns to have them all answered
        self.queue_cost: int | None = None  # the same per nsend
        self.last = steady(clock)  # when the last ntag (or refusal) came
        self.pending: dict[int, Deferred[Any]] = {}  # packet -> its nsend, then its ntag
        self.failure: BaseException | None = None
        self.settled = False  # the report is written: later ntags and errors are ignored
        self.closing = False  # a stop closes the socket: its SocketClosed ends no packet
        self._room: list[tuple[int, Deferred[None]]] = []

    @property
    def waiting(self) -> int:
        return len(self.pending)

    def track(self, i: int, d: Deferred[QueuedSend]) -> None:
        # bound methods and the packet's index, no closures: a train makes 100,000 of these
        self.pending[i] = d
        d.addCallbacks(self._queued, self._refused, (i,), errbackArgs=(i,))

    def _queued(self, q: QueuedSend, i: int) -> None:
        now = self.clock_ns()
        if i < self._first:
            self._count_first(now)
        margin = self.report.intended[i] - (now + self.offset)
        if self.ahead is None or margin < self.ahead:
            self.ahead = margin
        assert q.ntag is not None
        nd = q.ntag.addCallbacks(self._sent, self._not_sent, (i,), errbackArgs=(i,))
        if not nd.called:
            self.pending[i] = nd

    def learnable(self) -> bool:
        """Whether the queueing was long enough to tell the next lead (LEARN_SPARE)."""
        return (
            self._first >= LEARN_MIN_SENDS
            and self.queue_took >= LEARN_MIN_NS
            and not self._refusals
        )

    def _count_first(self, now: int) -> None:
        self._answered += 1
        if self._answered == self._first:
            self.queue_took = now - self.began
            self.queue_cost = self.queue_took // self._first

    def _refused(self, f: Failure, i: int) -> None:
        if i < self._first:
            self._refusals += 1
            self._count_first(self.clock_ns())
        if f.check(RequestFailed):
            self.report.errors[i] = cast(RequestFailed, f.value).name
        elif self.failure is None:  # the session ended: no use queuing more
            self.failure = f.value
        self._done(i)

    def _sent(self, n: Ntag, i: int) -> None:
        if not self.settled:
            self.report.sent[i] = n.time
        self._done(i)

    def _not_sent(self, f: Failure, i: int) -> None:
        if not self.settled and not (self.closing and f.check(SocketClosed)):
            err = f.value  # a short reason, the same for every packet it cut
            why = err.reason if isinstance(err, SessionClosed) else None
            self.report.errors[i] = why or getattr(err, "name", None) or str(err)
        self._done(i)

    def _done(self, i: int) -> None:
        self.last = steady(self.clock)
        self.pending.pop(i, None)
        ready = [d for n, d in self._room if self.waiting < n]
        self._room = [(n, d) for n, d in self._room if self.waiting >= n]
        for d in ready:
            if not d.called:  # (cancelled: the train was)
                d.callback(None)

    def wake(self) -> None:
        """Fire every `below()` waiting (a stop: the train looks at what to do next)."""
        room, self._room = self._room, []
        for _, d in room:
            if not d.called:
                d.callback(None)

    def below(self, n: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self.waiting < n:
            d.callback(None)
        else:
            self._room.append((n, d))
        return d
