"""Certificate limits on an endpoint session (PROTOCOL.md §1.4 step 2, §4.5).

`admit` runs the chain checks of §1.4 step 2 on the controller's verified chain (rlim
begin, priority, monitor digests, end time) and gives a `LimitsGate`, the `RequestGate`
that enforces every limit during the session:

* valid_dest: TCP nopen → ESKTOPNDENY; UDP nsend → ESKTPKTDENY;
* max_socket_count: nopens per session → ENORES once used up;
* send quotas (bytes, packets): persisted (`packetlab.ppks.Accounting`), debited before
  use; a send the quota cannot cover → ESKTPKTDENY;
* burst windows (every cert's, plus the built-in 10 Mb/s over 10 s): a send that would
  overfill a window at its send time → ESKTPKTDENY (refused, not delayed; docs/security.md);
* receive quotas: data past the quota is dropped and counted (DROPSTAT/ndrop);
* max_exp_period and notAfter: the session ends at min(notAfter, now + remaining runtime);
  runtime is debited ahead in `RUNTIME_CHUNK` steps, so a kill -9 loses at most one step.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from packetlab.endpoint.checks import NDATA_DELIVER, NDATA_DROP_COUNTED, SessionRefused
from packetlab.endpoint.sockets import Skt
from packetlab.logbudget import LogBudget
from packetlab.ppks import (
    Accounting,
    AccountingError,
    Budget,
    BurstRate,
    Certificate,
    Counter,
    Limits,
    Meter,
    combine_limits,
    experiment_end_time,
)
from packetlab.wire.constants import Proto, Status
from packetlab.wire.messages import Message, Nopen, Nsend, Result

__all__ = [
    "BURST_BUCKETS",
    "NOSUB_PRIORITY",
    "QUOTA_CHUNK",
    "RUNTIME_CHUNK",
    "BurstWindow",
    "LimitsGate",
    "SessionRefused",
    "admit",
]

TCP = int(Proto.TCP)
UDP = int(Proto.UDP)
NS = 1_000_000_000
QUOTA_CHUNK = 64 * 1024  # bytes reserved per disk write (at most this is lost on a crash)
RUNTIME_CHUNK = 5 * NS  # runtime reserved ahead, ns
# Packets reserved per disk write grow from 64 up to this in a burst (e.g. a 1000-nsend
# train checked on arrival): a crash loses at most this many packets of budget.
PKT_CHUNK_MAX = 4096
# Buckets per burst window (BurstWindow): a send is counted for < window + 1 % of it.
BURST_BUCKETS = 100
# NoSub mode builds its own xdescr, which has no exp_priority: we take 0 (docs/security.md).
NOSUB_PRIORITY = 0

_DENY_PKT = Result(errid=int(Status.ESKTPKTDENY))
_DENY_OPEN = Result(errid=int(Status.ESKTOPNDENY))
_NORES = Result(errid=int(Status.ENORES))
_NOHDAT = Result(errid=int(Status.ECRTNOHDAT))
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}


class BurstWindow:
    """At most `rate.amount` in any window of `rate.window_ns` (§4.5 burst rates), in
    memory and time per send that do not grow with the send rate.

    Sends are recorded at max(their send time, the latest recorded time), so recorded
    time never goes back (a send scheduled before an already accounted one, or a clock
    that steps back, is counted as if it were as late as that one: conservative for the
    windows that follow). Recorded sends are coalesced into buckets of
    `ceil(window_ns / BURST_BUCKETS)` ns; a bucket keeps its total and the time of its
    latest send, and leaves the window only when that latest send does. So every send is
    counted for at least `window_ns`, as an entry per send would count it (no window ever
    holds more than `amount`), and for less than `window_ns` + one bucket: the rounding
    only ever refuses, a send an exact window would allow while the oldest counted
    bucket straddles the window's start (by at most 1 % of the window). At most
    `BURST_BUCKETS` + 1 buckets are kept (an entry per send was ~195,000 entries, ~20 MB,
    for the 10 s default window at 20k nsend/s)."""

    __slots__ = ("_count", "_index", "buckets", "latest", "rate", "total", "width")

    def __init__(self, rate: BurstRate) -> None:
        self.rate = rate
        self.width = max(1, -(-rate.window_ns // BURST_BUCKETS))  # ns per bucket
        #: Closed buckets, oldest first: (time of the latest send in it, total).
        self.buckets: deque[tuple[int, int]] = deque()
        self.total = 0  # in the window: the closed buckets' and the open one's
        self.latest = 0  # the latest recorded send (in the open bucket, if it counts)
        self._index = -1  # the open bucket's number (its start: _index * width)
        self._count = 0  # the open bucket's total

    def fits(self, when_ns: int, n: int) -> bool:
        if n > self.rate.amount:
            return False
        # Only looks: what leaves the window by `when_ns` is forgotten when a send is
        # recorded (`add`), never by a check. A refused send at a later time must not
        # forget sends that still count for an earlier one checked after it (a clock
        # stepping back, a send scheduled before): that admitted one too many.
        start = max(when_ns, self.latest) - self.rate.window_ns
        total = self.total
        for latest, count in self.buckets:  # oldest first: stop at the first that stays
            if latest > start:
                break
            total -= count
        else:
            if self._count and self.latest <= start:
                total -= self._count
        return total + n <= self.rate.amount

    def add(self, when_ns: int, n: int) -> None:
        t = max(when_ns, self.latest)
        index = t // self.width
        if index != self._index:  # close the open bucket; expire here too, so that
            if self._count:  # add() alone keeps the bound
                self.buckets.append((self.latest, self._count))
            self._index = index
            self._count = 0
            self._expire(t)
        self.latest = t
        self._count += n
        self.total += n

    def take_back(self, n: int) -> None:
        """Undo the latest `add` of `n`: the send was refused after it was counted (the
        gate's check and its `done` run in one request, so no other send came between
        and the open bucket still holds it)."""
        n = min(n, self._count)
        self._count -= n
        self.total -= n

    def _expire(self, t: int) -> None:
        start = t - self.rate.window_ns
        buckets = self.buckets
        while buckets and buckets[0][0] <= start:
            self.total -= buckets.popleft()[1]
        if self._count and self.latest <= start:  # the open bucket too: all gone
            self.total -= self._count
            self._count = 0


@dataclass
class LimitsGate:
    """The `RequestGate` of a session run under certificate limits."""

    limits: Limits
    budget: Budget | None
    clock: Callable[[], int]  # ns since the epoch
    end_ns: int
    rule_log: Logger = field(default_factory=Logger)
    opened: int = 0
    required_digests: tuple[bytes, ...] = ()
    #: Digests seen in cdata that matched (filled by `packetlab.endpoint.monitors`).
    supplied_digests: set[bytes] = field(default_factory=set)
    #: The chain (leaf first): monitors key their persistent memory by its certificates.
    certs: tuple[Certificate, ...] = ()

    def __post_init__(self) -> None:
        self.required_digests = self.limits.monitor_digests
        clock = self.clock
        self._deny_log = LogBudget(lambda: clock() / 1e9)
        b = self.budget
        limited = b is not None
        # No meter for a counter no certificate limits: nothing to debit, and no call per
        # packet on the send and receive paths.
        self._send_bytes = _meter(b, Counter.SEND_BYTE, QUOTA_CHUNK)
        self._send_pkts = _meter(b, Counter.SEND_PKT, 64, PKT_CHUNK_MAX)
        self._recv_bytes = _meter(b, Counter.RECV_BYTE, QUOTA_CHUNK)
        self._recv_pkts = _meter(b, Counter.RECV_PKT, 64, PKT_CHUNK_MAX)
        self._runtime = b.meter(Counter.RUNTIME, RUNTIME_CHUNK) if b else None
        if b is not None and self._runtime is not None and b.is_limited(Counter.RUNTIME):
            # Runtime is paid ahead: the first step now, the next ones in charge_runtime.
            self._runtime.held += b.reserve(Counter.RUNTIME, RUNTIME_CHUNK, partial=True)
        self._byte_windows = [BurstWindow(r) for r in self.limits.burst_rate_byte]
        self._pkt_windows = [BurstWindow(r) for r in self.limits.burst_rate_pkt]
        self._started_ns = self.clock()
        self._runtime_spent = 0
        self.checks_ndata = limited and (
            self.limits.max_recv_byte is not None or self.limits.max_recv_pkt is not None
        )
        self.denied = 0
        self.dropped = 0
        self._closed = False
        self._unrecorded = 0  # requests refused because the database could not record them

    # -- RequestGate ------------------------------------------------------------------

    def program(self, hint: bytes, data: bytes) -> Status:
        # Programs are loaded by the MonitorGate in front of this gate; alone, none can be.
        return Status.ECRTBADHDAT

    def start(self) -> tuple[Result | None, list[bytes]]:
        missing = [d for d in self.required_digests if d not in self.supplied_digests]
        if missing:
            self.rule_log.warn(
                "start refused (ECRTNOHDAT): the chain requires {n} monitor(s) not supplied "
                "through cdata, e.g. {d}",
                n=len(missing),
                d=missing[0].hex(),
            )
            return _NOHDAT, []
        return None, []

    def check(self, msg: Message) -> Result | None:
        if type(msg) is Nsend:  # first: one per send, the hot path
            return self._check_nsend(msg)
        if type(msg) is Nopen:
            return self._check_nopen(msg)
        return None

    def done(self, msg: Message, errid: int) -> None:
        if type(msg) is Nopen and errid == 0:
            self.opened += 1
        elif type(msg) is Nsend and errid != 0:
            # Refused after our check (ESKTNOTOPEN, ESYSNOBUFS...): it is never sent, so
            # give back its quota and its place in the burst windows.
            n = len(msg.data)
            self._give_back(n)
            for w in self._byte_windows:
                w.take_back(n)
            for w in self._pkt_windows:
                w.take_back(1)

    def check_ndata(
        self, skt: Skt, data: bytes, time: int, raddr: bytes | None, rport: int | None
    ) -> int:
        ok = True
        if self._recv_pkts is not None and not self._recv_pkts.consume(1):
            self._not_recorded(self._recv_pkts, "received data (dropped)")
            ok = False
        elif self._recv_bytes is not None and not self._recv_bytes.consume(len(data)):
            if self._recv_pkts is not None:
                _unspend(self._recv_pkts, 1)  # not received after all
            self._not_recorded(self._recv_bytes, "received data (dropped)")
            ok = False
        if ok:
            return NDATA_DELIVER
        self.dropped += 1
        return NDATA_DROP_COUNTED

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.charge_runtime()
        for m in (self._send_bytes, self._send_pkts, self._recv_bytes, self._recv_pkts):
            if m is not None:
                m.release()
        if self._runtime is not None:
            self._runtime.release()
        meters = (self._send_bytes, self._send_pkts, self._recv_bytes, self._recv_pkts)
        errors = [m.error for m in (*meters, self._runtime) if m is not None and m.error]
        if errors:
            self.rule_log.warn(
                "session's accounting could not all be recorded ({n} request(s) refused, "
                "unsent reservations kept as used): {e}",
                n=self._unrecorded,
                e=errors[-1],
            )
        elif self._unrecorded:  # its first refusal was logged, the rest only counted
            self.rule_log.warn(
                "session's accounting: {n} request(s) refused while the database could not "
                "record them; recorded again since",
                n=self._unrecorded,
            )

    def _not_recorded(self, meter: Meter, what: str) -> bool:
        """After a refused `consume`: True when the database failed (logged once per
        session, with what to do), not the limit."""
        if meter.error is None:
            return False
        self._unrecorded += 1
        if self._unrecorded == 1:
            self.rule_log.error(
                "{what} refused: {e}; every request of a chain with limits is refused while "
                "its debit cannot be recorded ({remedy}); this session's next refusals are "
                "counted, not logged",
                what=what,
                e=meter.error,
                remedy=remedy(meter.error),
            )
        return True

    # -- runtime ------------------------------------------------------------------------

    def charge_runtime(self) -> bool:
        """Spend the runtime used so far (reserving ahead); False when it ran out."""
        if self._runtime is None:
            return True
        elapsed = max(0, self.clock() - self._started_ns)
        due = elapsed - self._runtime_spent
        if due <= 0:
            return True
        # The meter reserves up to RUNTIME_CHUNK ahead, so a crash loses at most that.
        if self._runtime.consume(due):
            self._runtime_spent += due
            return True
        self._not_recorded(self._runtime, "the experiment's runtime (the session ends)")
        return False

    # -- checks -------------------------------------------------------------------------

    def _deny(self, result: Result, rule: str, **kw: Any) -> Result:
        self.denied += 1
        note = self._deny_log.allow()  # a controller can be refused by the million
        if note is not None:
            # `dest=192.0.2.1`, not `{'dest': '192.0.2.1'}`; max_send_pkt said `{}`.
            detail = "".join(f" {k}={v}" for k, v in kw.items())
            self.rule_log.info(
                "request refused by certificate limit {rule}{detail}{note}",
                rule=rule,
                detail=detail,
                note=note,
            )
        return result

    def _check_nopen(self, msg: Nopen) -> Result | None:
        cap = self.limits.max_socket_count
        if cap is not None and self.opened >= cap:
            return self._deny(_NORES, "max_socket_count", limit=cap)
        if msg.proto == TCP and self.limits.valid_dest:
            # A passive open (no raddr) would accept any peer: refused under valid_dest.
            dest = _addr(msg.family, msg.raddr) if msg.raddr is not None else None
            if dest is None or not self.limits.dest_allowed(dest):
                return self._deny(_DENY_OPEN, "valid_dest", dest=str(dest))
        return None

    def _check_nsend(self, msg: Nsend) -> Result | None:
        if msg.proto != TCP and self.limits.valid_dest:
            raddr = msg.raddr if msg.proto == UDP else _ip_header_dst(msg.family, msg.data)
            dest = _addr(msg.family, raddr) if raddr is not None else None
            if dest is None or not self.limits.dest_allowed(dest):
                return self._deny(_DENY_PKT, "valid_dest", dest=str(dest))
        n = len(msg.data)
        windows = self._byte_windows or self._pkt_windows
        when = max(msg.time, self.clock()) if windows else 0
        for w in self._byte_windows:
            if not w.fits(when, n):
                return self._deny(_DENY_PKT, "max_burst_rate_byte", rate=str(w.rate))
        for w in self._pkt_windows:
            if not w.fits(when, 1):
                return self._deny(_DENY_PKT, "max_burst_rate_pkt", rate=str(w.rate))
        if self._send_pkts is not None and not self._send_pkts.consume(1):
            if self._not_recorded(self._send_pkts, "nsend (ESKTPKTDENY)"):
                return _DENY_PKT
            return self._deny(_DENY_PKT, "max_send_pkt", limit=self.limits.max_send_pkt, left=0)
        if self._send_bytes is not None and not self._send_bytes.consume(n):
            if self._send_pkts is not None:
                _unspend(self._send_pkts, 1)
            if self._not_recorded(self._send_bytes, "nsend (ESKTPKTDENY)"):
                return _DENY_PKT
            return self._deny(
                _DENY_PKT, "max_send_byte", limit=self.limits.max_send_byte, nsend=f"{n}B"
            )
        for w in self._byte_windows:
            w.add(when, n)
        for w in self._pkt_windows:
            w.add(when, 1)
        return None

    def _give_back(self, n: int) -> None:
        if self._send_pkts is not None:
            _unspend(self._send_pkts, 1)
        if self._send_bytes is not None:
            _unspend(self._send_bytes, n)


def remedy(e: AccountingError) -> str:
    """What the operator can do about `e` (every failure said "free space there, or move
    RLimDBPath", also for a database locked by another process or deleted)."""
    text = str(e)
    if "database is locked" in text:
        return "another process holds the database's write lock: end its transaction"
    if "deleted or replaced" in text:
        return "restart the endpoint"
    if "readonly" in text or "read-only" in text or "Permission denied" in text:
        return "make the database and its directory writable by the endpoint, or move RLimDBPath"
    return "free space there, or move RLimDBPath"


def _meter(
    budget: Budget | None, counter: Counter, chunk: int, max_chunk: int | None = None
) -> Meter | None:
    if budget is None or not budget.is_limited(counter):
        return None
    return budget.meter(counter, chunk, max_chunk=max_chunk)


def _unspend(meter: Meter, n: int) -> None:
    """Return `n` spent units to the meter's reservation (refunded at release)."""
    n = min(n, meter.spent)
    meter.spent -= n
    meter.held += n


def _ip_header_dst(family: int, packet: bytes) -> bytes | None:
    """The destination of a raw packet: its IP header's (§3.3)."""
    if family == 4 and len(packet) >= 20:
        return packet[16:20]
    if family == 6 and len(packet) >= 40:
        return packet[24:40]
    return None


def _addr(family: int, raw: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    af = _AF.get(family)
    if af is None or len(raw) != (4 if family == 4 else 16):
        return None
    return ipaddress.ip_address(socket.inet_ntop(af, raw))


def admit(
    certs: Sequence[Certificate],
    accounting: Accounting | None,
    clock: Callable[[], int],
    *,
    priority: int = NOSUB_PRIORITY,
    log: Logger | None = None,
) -> LimitsGate:
    """§1.4 step 2 on the verified controller chain (leaf first): rlim begin, priority,
    monitor digests, end time. Raises `SessionRefused` (the endpoint then disconnects)."""
    limits = combine_limits(certs)
    if not limits.priority_allowed(priority):
        raise SessionRefused(
            "max_num_priority",
            f"experiment priority {priority} > max_num_priority {limits.max_num_priority}",
        )
    if len(limits.monitor_digests) > 100:
        raise SessionRefused("monitor", f"{len(limits.monitor_digests)} digests (at most 100)")
    try:
        budget = accounting.budget(certs) if accounting is not None else None
    except AccountingError as e:
        raise SessionRefused("accounting", f"{e} ({remedy(e)})") from e
    now = clock()
    remaining = budget.remaining(Counter.RUNTIME) if budget is not None else None
    if remaining is None and limits.max_exp_period is not None:
        remaining = limits.max_exp_period  # no accounting: per-session runtime only
    end_ns = experiment_end_time(certs, now, remaining)
    if end_ns <= now:
        why = "max_exp_period used up" if remaining == 0 else "a certificate has expired"
        raise SessionRefused("max_exp_period" if remaining == 0 else "not_after", why)
    try:
        return LimitsGate(
            limits, budget, clock, end_ns, rule_log=log or Logger(), certs=tuple(certs)
        )
    except AccountingError as e:  # the runtime paid ahead could not be recorded
        raise SessionRefused("accounting", f"{e} ({remedy(e)})") from e
