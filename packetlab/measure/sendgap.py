"""The send-gap microbenchmark (the paper's scheduled-send precision experiment): trains
of UDP datagrams scheduled at fixed gaps on the endpoint's clock, and how far the actual
send times (ntag stamps; kernel TX stamps on this project's endpoint) are from the plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from packetlab.controller import (
    STOP_WAIT_S,
    AddressLike,
    EndpointSession,
    StopSignal,
    TrainReport,
    deferred_api,
    send_train,
)
from packetlab.measure.pcap import PcapRecorder, local_udp_end

__all__ = ["SendGapResult", "send_gap"]


def _q_us(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)

    def q(p: float) -> float:
        return s[min(len(s) - 1, round(p * (len(s) - 1)))] / 1000

    return {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": s[-1] / 1000}


@dataclass(slots=True)
class SendGapResult:
    train: int
    report: TrainReport

    def to_dict(self) -> dict[str, Any]:
        r = self.report
        gaps = r.gaps()
        return {
            "type": "sendgap",
            "train": self.train,
            "dst": f"[{r.raddr}]:{r.rport}" if r.raddr.version == 6 else f"{r.raddr}:{r.rport}",
            "count": r.count,
            "sent": r.sent_count,
            "gap_us": r.gap / 1000,
            "mean_gap_us": sum(gaps) / len(gaps) / 1000 if gaps else None,
            "abs_offset_us": _q_us([abs(x) for x in r.offsets()]),
            "abs_gap_error_us": _q_us([abs(g - r.gap) for g in gaps]),
            "errors": sorted({e for e in r.errors if e is not None}),
            # the lead used, and by how much every nsend was queued before its datagram
            # was due (negative: some were late, their offsets are not the endpoint's)
            "lead_ms": r.lead / 1e6,
            "queued_ahead_ms": None if r.queued_ahead is None else r.queued_ahead / 1e6,
            "queue_cost_us": None if r.queue_cost is None else r.queue_cost / 1e3,
            # stopped (Ctrl-C) before every datagram was sent: what went out, with its times
            "partial": r.stopped,
        }

    def packets(self) -> list[dict[str, Any]]:
        r = self.report
        return [
            {"type": "sendgap-packet", "train": self.train, "seq": i, "intended_ns": want,
             "sent_ns": got, "offset_us": None if got is None else (got - want) / 1000,
             "error": r.errors[i]}
            for i, (want, got) in enumerate(zip(r.intended, r.sent, strict=True))
        ]  # fmt: skip


@deferred_api
async def send_gap(
    session: EndpointSession,
    host: AddressLike,
    port: int,
    *,
    count: int = 100,
    gap_ns: int = 100_000,
    size: int = 64,
    train: int = 0,
    lead_ns: int | None = None,
    recorder: PcapRecorder | None = None,
    on_lead: Callable[[int], object] | None = None,
    stop: StopSignal | None = None,
    stop_wait: float = STOP_WAIT_S,
) -> SendGapResult:
    """One train of `count` datagrams `gap_ns` apart to `host:port`, the first `lead_ns`
    after the endpoint's clock was read (default: send_train's adaptive lead).
    `recorder` gets every datagram sent, at its ntag time (from a port chosen here);
    `on_lead` the lead used (ns), before the first datagram is queued. `stop` and
    `stop_wait` are send_train's: a stop (or a cancel) gives the train sent so far,
    `partial` in its record."""

    def payload(i: int) -> bytes:  # the sequence number, zero-padded (send_train's default)
        return i.to_bytes(4, "big").ljust(max(size, 4), b"\0")

    local, lport = await local_udp_end(session, host) if recorder is not None else ("", 0)
    report = await send_train(
        session, host, port, count, gap_ns, payload=payload, lead=lead_ns, lport=lport,
        on_lead=on_lead, stop=stop, stop_wait=stop_wait,
    )  # fmt: skip
    if recorder is not None:
        for i, sent in enumerate(report.sent):
            if sent is not None:
                recorder.udp(sent, local, lport, str(report.raddr), port, payload(i))
    return SendGapResult(train, report)
