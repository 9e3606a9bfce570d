"""The clock of a `pktlab run` summary's `start_time` and `stop_time` (`RunClock`).

Every time in a run's records is the endpoint's (its kernel's packet stamps, its TIME);
scamper keeps one clock too, the vantage point's. So with one endpoint the summary's
times are put on the endpoint's clock, which may be minutes off ours (with --json: the
text shows no such times, and its callers then make no reads):

* When the experiment gets its session, TIME is read first, before the experiment's first
  request (pipelined: nothing waits for it). The endpoint handles requests in order, so
  that read (te0) comes before any probe leaves; with our clock before the request (t0)
  and after the answer (t1) it gives the offset, te0 - (t0 + t1) / 2, within ± (t1 -
  t0) / 2 (`controller.clock`'s NTP-style sample).
* When the experiment returns, TIME is read once more (te1): after every stamp of the run.
* start_time = min(our start + offset, te0): the command began before te0 was read.
  stop_time = max(now + offset, te1): the summary is written after te1 was read. So the
  summary brackets every stamp of its records, whatever the offset's error.

Without a known offset (the run failed before the first read was answered, a command
with several endpoints, one whose records carry our clock's times: `run alias`, `run
clocksync`) both stay on our clock. The summary says which (`clock`), with the offset
seen and its error.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["RunClock"]

T = TypeVar("T")


class RunClock:
    """A run's start and stop, on the endpoint's clock once `around` has read it.
    `now_ns`: our clock (ns since the epoch); the run starts when this is made."""

    def __init__(self, now_ns: Callable[[], int] = time.time_ns) -> None:
        self.now_ns = now_ns
        self.started_ns = now_ns()
        self.first: tuple[int, int, int] | None = None  # (t0, te0, t1): ours, its, ours
        self.last: int | None = None  # te1, the endpoint's clock once the run was done

    def around(
        self, experiment: Callable[[Any], Awaitable[T]]
    ) -> Callable[[Any], Coroutine[Any, Any, T]]:
        """`experiment(session)`, with TIME read before its first request and after it
        returns (not when it fails or is cancelled: the session may be gone)."""

        async def timed(session: Any) -> T:
            self.begin(session)
            result = await experiment(session)
            await self.end(session)
            return result

        return timed

    def begin(self, session: Any) -> None:
        """Read TIME now, pipelined (the request goes out before this returns)."""
        from packetlab.controller import read_time

        t0 = self.now_ns()

        def got(te: int) -> None:
            self.first = (t0, te, self.now_ns())

        # A failed read (the session gone) leaves the summary on our clock.
        read_time(session).addCallbacks(got, lambda _: None)

    async def end(self, session: Any) -> None:
        """Read TIME once the experiment is done. A session it closed itself fails the read
        at once: the stop is then our clock's + the offset (the run's result stands)."""
        from packetlab.controller import ControllerError, read_time

        try:
            self.last = await read_time(session)
        except ControllerError:  # (not a cancel: that ends the run as before)
            pass

    def fields(self) -> dict[str, Any]:
        """The summary's `start_time` and `stop_time` (s since the epoch), `clock` (whose
        they are: "endpoint" or "controller"), `clock_offset_us` (endpoint - controller,
        from the first read) and `clock_error_us` (its ± bound); the last two None on
        our clock."""
        start, stop = self.started_ns, self.now_ns()
        if self.first is None:
            return {
                "start_time": round(start / 1e9, 6),
                "stop_time": round(stop / 1e9, 6),
                "clock": "controller",
                "clock_offset_us": None,
                "clock_error_us": None,
            }
        t0, te0, t1 = self.first
        offset = te0 - (t0 + t1) // 2
        start = min(start + offset, te0)
        stop = stop + offset if self.last is None else max(stop + offset, self.last)
        return {  # (to the µs, down and up: still around the stamps, in ns)
            "start_time": start // 1000 / 1e6,
            "stop_time": -(-stop // 1000) / 1e6,
            "clock": "endpoint",
            "clock_offset_us": round(offset / 1000, 3),
            "clock_error_us": round((t1 - t0) / 2000, 3),
        }
