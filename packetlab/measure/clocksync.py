"""Clock synchronisation: the endpoint clock's offset and drift against the controller's,
NTP-style, over a run.

Each round takes `samples` mread TIME round trips (one at a time) and keeps the one with
the smallest RTT (NTP's clock filter): offset = te - (t0 + t3) / 2, within ± rtt / 2.
Over the rounds, the drift is the least-squares slope of offset against local time,
weighted by 1 / error² so that rounds with a tight bound count more; in ppm (µs per s).
`ClockModel.to_endpoint(local_ns)` then says what the endpoint clock reads at a local
moment, which is how synchronised sends across several endpoints are scheduled (MIDAR).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred

from packetlab.controller import (
    ClockEstimate,
    EndpointSession,
    StopSignal,
    deferred_api,
    estimate_clock,
)

__all__ = ["ClockModel", "ClockRound", "clock_sync", "fit_drift"]


@dataclass(frozen=True, slots=True)
class ClockRound:
    local_ns: int  # our clock at the middle of the best sample
    offset_ns: int  # endpoint - local
    rtt_ns: int

    @property
    def error_ns(self) -> int:
        return self.rtt_ns // 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "clocksync",
            "local_ns": self.local_ns,
            "offset_us": self.offset_ns / 1000,
            "rtt_us": self.rtt_ns / 1000,
            "error_us": self.error_ns / 1000,
        }


@dataclass(frozen=True, slots=True)
class ClockModel:
    """offset(t) = offset_ns + drift_ppm * 1e-6 * (t - ref_ns), t local ns.

    `drift_error_ppm` is the drift's standard error had each round's offset an error of
    its ± rtt/2 (1/sqrt(sum w (t - mean t)^2), w = 1/error^2): a drift well inside it is
    not one. None with fewer than two rounds apart in time."""

    ref_ns: int
    offset_ns: float
    drift_ppm: float
    rounds: tuple[ClockRound, ...]
    drift_error_ppm: float | None = None

    def offset_at(self, local_ns: int) -> float:
        return self.offset_ns + self.drift_ppm * 1e-6 * (local_ns - self.ref_ns)

    def to_endpoint(self, local_ns: int) -> int:
        return local_ns + round(self.offset_at(local_ns))  # ints: ns since 1970 exceed a float

    def to_local(self, endpoint_ns: int) -> int:
        """The inverse of `to_endpoint` (e = l + offset(l), solved for l)."""
        k = self.drift_ppm * 1e-6
        return self.ref_ns + round((endpoint_ns - self.ref_ns - self.offset_ns) / (1 + k))

    def residuals_ns(self) -> list[float]:
        return [r.offset_ns - self.offset_at(r.local_ns) for r in self.rounds]

    def to_dict(self) -> dict[str, Any]:
        res = [abs(x) for x in self.residuals_ns()]
        return {
            "rounds": len(self.rounds),
            "offset_us": self.offset_ns / 1000,
            "drift_ppm": self.drift_ppm,
            "drift_error_ppm": self.drift_error_ppm,
            "min_rtt_us": min(r.rtt_ns for r in self.rounds) / 1000,
            "max_residual_us": max(res) / 1000 if res else 0.0,
            "span_s": (self.rounds[-1].local_ns - self.rounds[0].local_ns) / 1e9,
        }


def fit_drift(rounds: list[ClockRound]) -> ClockModel:
    """Weighted least squares of offset on local time (weights 1/error², error >= 1 µs)."""
    if not rounds:
        raise ValueError("no clock rounds")
    ref = rounds[0].local_ns
    ws = [1.0 / max(r.error_ns, 1000) ** 2 for r in rounds]
    xs = [(r.local_ns - ref) / 1e9 for r in rounds]  # s
    ys = [float(r.offset_ns) for r in rounds]  # ns
    sw = sum(ws)
    mx = sum(w * x for w, x in zip(ws, xs, strict=True)) / sw
    my = sum(w * y for w, y in zip(ws, ys, strict=True)) / sw
    sxx = sum(w * (x - mx) ** 2 for w, x in zip(ws, xs, strict=True))
    slope = (
        0.0
        if sxx == 0
        else sum(w * (x - mx) * (y - my) for w, x, y in zip(ws, xs, ys, strict=True)) / sxx
    )  # ns per s = ppb
    intercept = my - slope * mx
    spread = None if sxx == 0 else 1.0 / math.sqrt(sxx) / 1000  # ns per s -> ppm
    return ClockModel(ref, intercept, slope / 1000, tuple(rounds), spread)


def _round(est: ClockEstimate) -> ClockRound:
    best = min(est.samples, key=lambda s: s.rtt)
    return ClockRound((best.sent + best.received) // 2, est.offset, est.rtt)


async def _pause(reactor: Any, seconds: float, stop: StopSignal | None) -> None:
    """`seconds`, or until `stop` is requested."""
    d: Deferred[None] = Deferred()
    call = reactor.callLater(seconds, d.callback, None)
    if stop is None:
        await d
        return

    def wake(reason: str) -> None:
        if not d.called:
            call.cancel()
            d.callback(None)

    stopped = stop.when_requested()
    stopped.addCallbacks(wake, lambda f: None)  # the errback: cancelled below
    await d
    stopped.cancel()


@deferred_api
async def clock_sync(
    session: EndpointSession,
    *,
    rounds: int = 10,
    interval: float = 1.0,
    samples: int = 8,
    on_round: Callable[[ClockRound], object] | None = None,
    stop: StopSignal | None = None,
) -> ClockModel:
    """`rounds` estimates `interval` seconds apart, then the offset/drift fit. Once
    `stop` is requested no further round starts and the fit is of the rounds so far."""
    if rounds < 1 or samples < 1 or interval < 0:
        raise ValueError("need rounds >= 1, samples >= 1 and interval >= 0")
    got: list[ClockRound] = []
    for i in range(rounds):
        if i:
            await _pause(session.reactor, interval, stop)
            if stop is not None and stop.requested:
                break
        r = _round(await estimate_clock(session, samples))
        got.append(r)
        if on_round is not None:
            on_round(r)
    return fit_drift(got)
