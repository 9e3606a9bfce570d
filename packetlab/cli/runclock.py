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
* When the experiment returns, TIME is read again (te1, after every stamp of the run),
  and up to 3 more times, one after another (`END_READS`, within `END_BUDGET_NS`): the
  summary's offset is that of the read with the smallest round trip, the first or one
  of these (the first, made while the session and the experiment start, was off by up
  to ±3.9 ms; these cost no wait in the experiment, only before the summary).
  Pipelined reads would not do: each waits behind the one before it, so none has a
  smaller round trip than the first of them.
* start_time = min(our start + offset, te0): the command began before te0 was read.
  stop_time = max(now + offset, te_last): the summary is written after the last read.
  So the summary brackets every stamp of its records, whatever the offset's error.

Without a known offset (the run failed before the first read was answered, a command
with several endpoints, one whose records carry our clock's times: `run alias`, `run
clocksync`) both stay on our clock. The summary says which (`clock`), with the offset
seen and its error.

The same offset puts on the endpoint's clock the times a native tool run there would
print from its host's clock (`now`, `now_of`): dig's `;; WHEN:` and +yaml's times,
iperf3's -J `start.timestamp` and --timestamps, curl's --trace-time; and iperf3's
authtoken (its server refuses one 10 s off its clock). A run that needs one before the
endpoint answered anything (a TSIG signature, the authtoken, curl's `Trying` line) has
the first read answered before the experiment starts (`around(..., first=True)`: one
round trip); one that prints it only from answers (dig's WHEN, iperf3's -J) has it read,
pipelined, not waited for (its answer comes first); without --json no last read (no
summary to bound). Each such time is then ours + the offset: no more reads.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["RunClock", "now_of"]

T = TypeVar("T")
END_READS = 4  # TIME reads once the experiment is done (the first of them: its stop)
END_BUDGET_NS = 20_000_000  # no further read once they took this long (a slow link)


class RunClock:
    """A run's start and stop, on the endpoint's clock once `around` has read it.
    `now_ns`: our clock (ns since the epoch); the run starts when this is made."""

    def __init__(self, now_ns: Callable[[], int] = time.time_ns) -> None:
        self.now_ns = now_ns
        self.started_ns = now_ns()
        # (t0, te, t1) of a TIME read: ours before it, its answer, ours after it
        self.first: tuple[int, int, int] | None = None  # before the first request
        self.ends: list[tuple[int, int, int]] = []  # once the experiment was done
        self.last: int | None = None  # te of the latest: after every stamp of the run

    def around(
        self, experiment: Callable[[Any], Awaitable[T]], *, first: bool = False,
        last: bool = True,
    ) -> Callable[[Any], Coroutine[Any, Any, T]]:  # fmt: skip
        """`experiment(session)`, with TIME read before its first request and (`last`)
        after it returns (not when it fails or is cancelled: the session may be gone).
        `first`: the first read's answer is waited for before the experiment starts (for
        what it stamps with `now` from its start)."""

        async def timed(session: Any) -> T:
            read = self.begin(session)
            if first:
                await _answered(read)
            result = await experiment(session)
            if last:
                await self.end(session)
            return result

        return timed

    def begin(self, session: Any) -> Any:
        """Read TIME now, pipelined (the request goes out before this returns); the
        Deferred fires (None) once it is answered or failed."""
        from packetlab.controller import read_time

        t0 = self.now_ns()

        def got(te: int) -> None:
            self.first = (t0, te, self.now_ns())

        # A failed read (the session gone) leaves the summary on our clock.
        return read_time(session).addCallbacks(got, lambda _: None)

    async def end(self, session: Any) -> None:
        """Read TIME once the experiment is done: `END_READS` reads one after another
        (a pipelined one would wait behind the one before it: no smaller round trip),
        fewer once they took `END_BUDGET_NS`; the summary's offset is that of the read
        with the smallest round trip. A session the experiment closed itself fails the
        read at once: the stop is then our clock's + the offset (the result stands)."""
        from packetlab.controller import ControllerError, read_time

        began = self.now_ns()
        for _ in range(END_READS):
            t0 = self.now_ns()
            try:
                te = await read_time(session)
            except ControllerError:  # (not a cancel: that ends the run as before)
                return
            t1 = self.now_ns()
            self.ends.append((t0, te, t1))
            self.last = te
            if self.first is None or t1 - began >= END_BUDGET_NS:
                return

    def best(self) -> tuple[int, int, int] | None:
        """The read with the smallest round trip (the first of equals); None before one."""
        if self.first is None:
            return None
        return min([self.first, *self.ends], key=lambda s: s[2] - s[0])

    @property
    def offset_ns(self) -> int | None:
        """The endpoint's clock minus ours (ns), from the read with the smallest round
        trip so far (during the run: the first); None before it."""
        best = self.best()
        if best is None:
            return None
        t0, te, t1 = best
        return te - (t0 + t1) // 2

    def now(self) -> float:
        """Now (s since the epoch) on the endpoint's clock once the first read was
        answered; on ours before it, or without one."""
        return (self.now_ns() + (self.offset_ns or 0)) / 1e9

    def fields(self) -> dict[str, Any]:
        """The summary's `start_time` and `stop_time` (s since the epoch), `clock` (whose
        they are: "endpoint" or "controller"), `clock_offset_us` (endpoint - controller,
        from the read with the smallest round trip), `clock_error_us` (its ± bound: half
        that round trip); the last two None on our clock."""
        start, stop = self.started_ns, self.now_ns()
        best = self.best()
        if self.first is None or best is None:  # (both or neither)
            return {
                "start_time": round(start / 1e9, 6),
                "stop_time": round(stop / 1e9, 6),
                "clock": "controller",
                "clock_offset_us": None,
                "clock_error_us": None,
            }
        t0, te, t1 = best
        offset = te - (t0 + t1) // 2  # (the same as offset_ns)
        # bracketed by the reads themselves, whatever the offset's error: the first was
        # answered before any stamp of the run, the last after every one
        start = min(start + offset, self.first[1])
        stop = stop + offset if self.last is None else max(stop + offset, self.last)
        return {  # (to the µs, down and up: still around the stamps, in ns)
            "start_time": start // 1000 / 1e6,
            "stop_time": -(-stop // 1000) / 1e6,
            "clock": "endpoint",
            "clock_offset_us": round(offset / 1000, 3),
            "clock_error_us": round((t1 - t0) / 2000, 3),
        }


async def _answered(read: Any) -> None:
    """Once `read` (`RunClock.begin`'s) fired. A cancel of the run while it waits is
    raised here, and cancels the read: awaiting `read` itself, the cancel reached the
    read, whose errback (a failed read leaves the run on our clock) took it for a failed
    read, and the experiment started anyway."""
    from twisted.internet.defer import CancelledError, Deferred

    waiting: Deferred[None] = Deferred()
    read.addBoth(lambda _: None if waiting.called else waiting.callback(None))
    try:
        await waiting
    except CancelledError:
        read.cancel()
        raise


def now_of(args: Any) -> float:
    """Now on the run's clock (`run_command.measure` puts its RunClock in `args._clock`):
    the endpoint's once known, else ours (a text form rendered outside a run: ours)."""
    clock = getattr(args, "_clock", None)
    return clock.now() if isinstance(clock, RunClock) else time.time()
