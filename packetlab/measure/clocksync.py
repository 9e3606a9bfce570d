"""Clock synchronisation: the endpoint clock's offset and drift against the controller's,
NTP-style, over a run.

Each round takes `samples` mread TIME round trips (one at a time) and keeps the one with
the smallest RTT (NTP's clock filter): offset = te - (t0 + t3) / 2, within ± rtt / 2.
The sign is NTP's (server minus client, as `ntpdate -q` prints it): the endpoint's clock
minus ours, positive when the endpoint's clock is ahead. Both ends read CLOCK_REALTIME in
user space (the endpoint's TIME, PROTOCOL.md §2.2; our `session.clock_ns`); no kernel
packet timestamp enters the estimate.
Over the rounds, the drift is the least-squares slope of offset against local time,
weighted by 1 / error² so that rounds with a tight bound count more; in ppm (µs per s).
`ClockModel.to_endpoint(local_ns)` then says what the endpoint clock reads at a local
moment, which is how synchronised sends across several endpoints are scheduled (MIDAR).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
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

__all__ = [
    "ClockModel",
    "ClockRound",
    "ClockStep",
    "clock_sync",
    "find_steps",
    "fit_clock",
    "fit_drift",
]

#: The largest rate at which two sound clocks part (ntpd's NTP_MAXFREQ, 500 ppm): an offset
#: that moves between two rounds by more than this over their interval, plus both rounds'
#: bounds, was stepped (by the endpoint's NTP, an operator, or ours).
MAX_RATE_PPM = 500.0
#: A round further off the fitted line than this many times its ± bound: the truth lies
#: within the bound of every round, so a steady clock cannot put it there.
STRAY_FACTOR = 2


@dataclass(frozen=True, slots=True)
class ClockRound:
    local_ns: int  # our clock at the middle of the best sample
    offset_ns: int  # endpoint - local
    rtt_ns: int
    samples: int = 1  # round trips taken, the best of which this is

    @property
    def error_ns(self) -> int:
        return self.rtt_ns // 2

    @property
    def bound_ns(self) -> int:
        """`error_ns`, at least 1 µs (a tighter bound is the clock read's own cost)."""
        return max(self.error_ns, 1000)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "clocksync",
            "local_ns": self.local_ns,
            "offset_us": self.offset_ns / 1000,
            "rtt_us": self.rtt_ns / 1000,
            "error_us": self.error_ns / 1000,
        }


@dataclass(frozen=True, slots=True)
class ClockStep:
    """The offset jumped by `step_ns` between round `round - 1` and `round` (1-based)."""

    round: int
    local_ns: int
    step_ns: int

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "local_ns": self.local_ns, "step_us": self.step_ns / 1000}


@dataclass(frozen=True, slots=True)
class ClockModel:
    """offset(t) = offset_ns + drift_ppm * 1e-6 * (t - ref_ns), t local ns.

    The offset is kept as `base_ns` (an int: the first round's) plus the fitted
    `intercept_ns` from it: a float holds an offset of decades (an endpoint whose clock
    reads 1970, no RTC yet) only to 256 ns, which the fit, its residuals and
    `to_endpoint` would otherwise inherit.

    `drift_error_ppm` is the drift's standard error had each round's offset an error of
    its ± rtt/2 (1/sqrt(sum w (t - mean t)^2), w = 1/error^2): a drift well inside it is
    not one. None with fewer than two rounds apart in time. `offset_error_ns(t)` is the
    fitted offset's standard error at t on the same terms."""

    ref_ns: int
    intercept_ns: float  # the offset at ref_ns, from base_ns
    drift_ppm: float
    rounds: tuple[ClockRound, ...]
    drift_error_ppm: float | None = None
    base_ns: int = 0
    steps: tuple[ClockStep, ...] = ()  # found by fit_clock; `rounds` are those after
    before: tuple[ClockRound, ...] = ()  # the rounds before the last step (not fitted)

    @property
    def first_round(self) -> int:
        """The number (1-based, in the run) of `rounds[0]`, the first round fitted."""
        return len(self.before) + 1

    @property
    def offset_ns(self) -> float:
        """The offset at `ref_ns` (the first round)."""
        return self.base_ns + self.intercept_ns

    def _rest_at(self, local_ns: int) -> float:
        """offset_at(local_ns) - base_ns, in full precision."""
        return self.intercept_ns + self.drift_ppm * 1e-6 * (local_ns - self.ref_ns)

    def offset_at(self, local_ns: int) -> float:
        return self.base_ns + self._rest_at(local_ns)

    def offset_error_ns(self, local_ns: int) -> float:
        """The standard error of `offset_at(local_ns)`: sqrt(1/sum w + (t - mean t)^2 / sxx)."""
        sw, mx, sxx = _moments(list(self.rounds), self.ref_ns)
        dx = (local_ns - self.ref_ns) / 1e9 - mx
        return math.sqrt(1.0 / sw + (0.0 if sxx == 0 else dx * dx / sxx))

    def to_endpoint(self, local_ns: int) -> int:
        # ints: ns since 1970 exceed a float
        return local_ns + self.base_ns + round(self._rest_at(local_ns))

    def to_local(self, endpoint_ns: int) -> int:
        """The inverse of `to_endpoint` (e = l + offset(l), solved for l)."""
        k = self.drift_ppm * 1e-6
        return self.ref_ns + round(
            (endpoint_ns - self.ref_ns - self.base_ns - self.intercept_ns) / (1 + k)
        )

    def residuals_ns(self) -> list[float]:
        return [(r.offset_ns - self.base_ns) - self._rest_at(r.local_ns) for r in self.rounds]

    def to_dict(self) -> dict[str, Any]:
        res = self.residuals_ns()
        last = self.rounds[-1].local_ns
        stray = [
            self.first_round + i
            for i, (x, r) in enumerate(zip(res, self.rounds, strict=True))
            if abs(x) > STRAY_FACTOR * r.bound_ns
        ]
        every = (*self.before, *self.rounds)
        return {
            "rounds": len(every),  # measured (those fitted: from first_round on)
            "first_round": self.first_round,
            "samples": sum(r.samples for r in every),
            "offset_us": self.offset_ns / 1000,
            # what a researcher corrects by: the fit at the end of the run (with a drift,
            # the first round's offset is already stale)
            "offset_last_us": (self.base_ns + self._rest_at(last)) / 1000,
            "offset_last_error_us": self.offset_error_ns(last) / 1000,
            "drift_ppm": self.drift_ppm,
            "drift_error_ppm": self.drift_error_ppm,
            "min_rtt_us": min(r.rtt_ns for r in every) / 1000,
            # RMS of the residuals (chronyc sourcestats' "Std Dev"; NTP's jitter is the
            # RMS of offset differences): how far a round strays from the line. None
            # below 3 rounds: a line through two points fits them exactly.
            "jitter_us": (
                math.sqrt(sum(x * x for x in res) / len(res)) / 1000 if len(res) >= 3 else None
            ),
            "max_residual_us": max(abs(x) for x in res) / 1000,
            "span_s": (last - self.rounds[0].local_ns) / 1e9,
            "steps": [s.to_dict() for s in self.steps],
            # off the line beyond STRAY_FACTOR x their bound: not a steady clock
            "stray_rounds": stray,
        }


def _moments(rounds: list[ClockRound], ref: int) -> tuple[float, float, float]:
    """(sum w, weighted mean of t in s from `ref`, sum w (t - mean)^2), w = 1/error² in ns
    (error at least 1 µs: a tighter bound is the clock read's own cost, not precision)."""
    ws = [1.0 / r.bound_ns**2 for r in rounds]
    xs = [(r.local_ns - ref) / 1e9 for r in rounds]  # s
    sw = sum(ws)
    mx = sum(w * x for w, x in zip(ws, xs, strict=True)) / sw
    sxx = sum(w * (x - mx) ** 2 for w, x in zip(ws, xs, strict=True))
    return sw, mx, sxx


def fit_drift(rounds: list[ClockRound]) -> ClockModel:
    """Weighted least squares of offset on local time (weights 1/error², error >= 1 µs)."""
    if not rounds:
        raise ValueError("no clock rounds")
    ref = rounds[0].local_ns
    sw, mx, sxx = _moments(rounds, ref)
    ws = [1.0 / r.bound_ns**2 for r in rounds]
    xs = [(r.local_ns - ref) / 1e9 for r in rounds]  # s
    base = rounds[0].offset_ns
    ys = [float(r.offset_ns - base) for r in rounds]  # ns, from the first (exact: ints)
    my = sum(w * y for w, y in zip(ws, ys, strict=True)) / sw
    slope = (
        0.0
        if sxx == 0
        else sum(w * (x - mx) * (y - my) for w, x, y in zip(ws, xs, ys, strict=True)) / sxx
    )  # ns per s = ppb
    intercept = my - slope * mx
    spread = None if sxx == 0 else 1.0 / math.sqrt(sxx) / 1000  # ns per s -> ppm
    return ClockModel(ref, intercept, slope / 1000, tuple(rounds), spread, base)


def find_steps(rounds: Sequence[ClockRound]) -> list[ClockStep]:
    """Where the offset moved between consecutive rounds by more than both their bounds
    plus MAX_RATE_PPM over the time between them: a clock step, not a drift."""
    steps = []
    for i in range(1, len(rounds)):
        a, b = rounds[i - 1], rounds[i]
        jump = b.offset_ns - a.offset_ns
        allowed = a.bound_ns + b.bound_ns + MAX_RATE_PPM * 1e-6 * abs(b.local_ns - a.local_ns)
        if abs(jump) > allowed:
            steps.append(ClockStep(i + 1, b.local_ns, jump))
    return steps


def fit_clock(rounds: Sequence[ClockRound]) -> ClockModel:
    """`fit_drift` of the rounds since the last clock step (the clocks as they run now),
    the steps said in the model. A line through a step is neither clock: a 2 ms step
    amid 10 rounds 0.3 s apart was "+1056 +- 26 ppm", the first round's offset -695 us
    for a measured +13 +- 92."""
    steps = find_steps(rounds)
    first = steps[-1].round - 1 if steps else 0
    model = fit_drift(list(rounds[first:]))
    return dataclasses.replace(model, steps=tuple(steps), before=tuple(rounds[:first]))


def _round(est: ClockEstimate) -> ClockRound:
    best = min(est.samples, key=lambda s: s.rtt)
    return ClockRound((best.sent + best.received) // 2, est.offset, est.rtt, len(est.samples))


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
    """`rounds` estimates `interval` seconds apart, then the offset/drift fit (of the
    rounds since the last clock step, `fit_clock`). Once `stop` is requested no further
    round starts and the fit is of the rounds so far."""
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
    return fit_clock(got)
