"""Scheduled UDP packet trains: N datagrams at fixed gaps from a start time on the
endpoint's clock, with the endpoint's actual send time (ntag) of each one (§3.3)."""

from __future__ import annotations

import statistics
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from packetlab.controller._deferred import deferred_api
from packetlab.controller.addresses import AddressLike, IPAddress, parse_address
from packetlab.controller.clock import read_time
from packetlab.controller.errors import RequestFailed
from packetlab.controller.exchange import _close_quietly, _fired_within
from packetlab.controller.requests import DEFAULT_RBUFSZ
from packetlab.wire import Ntag

if TYPE_CHECKING:
    from twisted.python.failure import Failure

    from packetlab.controller.session import EndpointSession

_SEQ = struct.Struct(">I")


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


@deferred_api
async def send_train(
    session: EndpointSession,
    host: AddressLike,
    port: int,
    count: int,
    gap: int,
    *,
    payload: bytes | Callable[[int], bytes] | None = None,
    size: int = 64,
    start: int | None = None,
    lead: int | None = None,
    lport: int = 0,
    sktid: int | None = None,
    rbufsz: int = DEFAULT_RBUFSZ,
    ntag_timeout: float = 5.0,
) -> TrainReport:
    """Send `count` UDP datagrams to `host:port`, packet i at endpoint time start + i*gap.

    `gap`, `start` and `lead` are ns. Without `start` the train begins `lead` ns after the
    endpoint's current time (default 50 ms plus 20 µs per packet, time for the nsends to
    reach the endpoint before their moment). Payloads are `payload(i)`, a fixed `payload`,
    or the sequence number padded to `size` bytes. A packet whose ntag has not come
    `ntag_timeout` s after the train's last moment is reported as "no ntag".
    """
    if count < 1 or gap < 0:
        raise ValueError(f"need count >= 1 and gap >= 0, got count={count} gap={gap}")
    ra = parse_address(host)
    make = default_payload(size) if payload is None else payload
    if sktid is None:
        sktid = session.free_sktid()
    await session.nopen_udp(sktid, family=ra.version, lport=lport, rbufsz=rbufsz, buffer=False)
    try:
        now = await read_time(session)
        if start is None:
            start = now + (50_000_000 + 20_000 * count if lead is None else lead)
        clock = session.reactor
        # ntags are due by the last packet's time; then allow `ntag_timeout` more.
        deadline = clock.seconds() + (start + (count - 1) * gap - now) / 1e9 + ntag_timeout
        report = TrainReport(ra, port, gap, [start + i * gap for i in range(count)])
        report.sent = [None] * count
        report.errors = [None] * count
        queued = []
        for i, t in enumerate(report.intended):
            data = make(i) if callable(make) else make
            queued.append(session.nsend(sktid, data, time=t, to=(ra, port), ntag=True))
            if i % 64 == 63:
                await session.wait_writable()
        pending = []
        for i, d in enumerate(queued):
            try:
                q = await d
            except RequestFailed as e:
                report.errors[i] = e.name
                continue
            assert q.ntag is not None
            q.ntag.addCallbacks(_store(report, i), _store_error(report, i))
            pending.append(q.ntag)
        for nd in pending:
            if not nd.called:
                await _fired_within(nd, deadline - clock.seconds(), clock)
        for i, when in enumerate(report.sent):
            if when is None and report.errors[i] is None:
                report.errors[i] = "no ntag"
    finally:
        await _close_quietly(session, sktid)
    return report


def _store(report: TrainReport, i: int) -> Callable[[Ntag], None]:
    def cb(n: Ntag) -> None:
        report.sent[i] = n.time

    return cb


def _store_error(report: TrainReport, i: int) -> Callable[[Failure], None]:
    def eb(f: Failure) -> None:
        report.errors[i] = getattr(f.value, "name", None) or str(f.value)

    return eb
