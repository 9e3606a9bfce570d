"""A session's monitor time (docs/monitors.md, "Monitor time"): a token bucket.

Monitor calls run on the reactor thread with a per-call deadline (§8.2), so a check that
spins costs the whole endpoint one deadline per call, and an ndata check is called once
per received chunk: any peer that sends datagrams set the pace (50 datagrams held an
mread 5.6 s, session 30). `MonitorTime` caps what a session's monitors may take: `rate`
seconds of monitor time per second of `clock`, at most `burst` saved up. The session's
monitors are entered while the bucket holds time (what a call costs is taken afterwards,
so the bucket may go below zero: the debt is paid back before the next call); while it
is empty the caller drops received data (counted) and refuses checked requests, and
counts them here (`refused`).

The longest the monitors hold the reactor at once is about the burst (and an epoch
tick), however long `MonitorDeadlineMillsec` lets one call run (session 34):

* no call runs past the burst (the caller's box cuts it off there, as at a deadline:
  `packetlab.monitor.runtime.Box`). Before, the burst was two deadlines, 120 s with
  `MonitorDeadlineMillsec 60000`, and one call could take 60 s of it. A call is not cut
  off for the bucket being nearly empty: a usual check entered with a crumb left
  finishes, and a TCP chunk it checks is not lost (cut off, it would be a crash, and a
  hole in the stream); the debt is paid back by the next entries' refusals. So at worst
  two bursts back to back: an entry that left a crumb, then one that spins.
* time comes back only while no monitor runs (`refill` = rate / (1 - rate) a second of
  it, so over time the share is still `rate`): the datagrams read in one reactor turn
  are checked one after the other, and a spinner would otherwise go on with what came
  back during its own calls, burst / (1 - rate) in all (2 s of a 1 s burst at 500 ms a
  second, measured).

An episode starts with the first refusal and ends when the bucket is full again: a
monitor that keeps spinning whenever it is entered stays in one episode (one log line
at its start, one at its end, with the counts), not one per datagram. Sans-IO: the caller
gives the clock and the log.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["MonitorTime"]

NO_CAP = 1e12  # `refill` of `rate` 1: a second of monitor time back in a picosecond
WAIT_MARGIN = 0.001  # s past the debt's end: a timer set for `wait` finds it paid


class MonitorTime:
    """`rate` s of monitor time per s of `clock`, `burst` s saved up at most."""

    __slots__ = (
        "burst",
        "clock",
        "dropped",
        "entered",
        "note",
        "paused",
        "rate",
        "refill",
        "refused",
        "since",
        "stamp",
        "tokens",
    )

    def __init__(
        self, clock: Callable[[], float], rate: float, burst: float, note: Callable[[str], None]
    ) -> None:
        self.clock = clock
        self.rate = rate
        # back per second while no monitor runs: over time the monitors then get `rate`
        # of every second; 1000 ms a second: no cap (whatever they took, back at once)
        self.refill = rate / (1.0 - rate) if rate < 1.0 else NO_CAP
        self.burst = burst
        self.note = note  # one line at an episode's start and one at its end
        self.tokens = burst
        self.stamp = clock()
        self.since: float | None = None  # when the current episode began
        self.dropped = 0  # received chunks dropped in this episode
        self.refused = 0  # requests refused in this episode
        self.entered = 0  # times the monitors were entered again in this episode
        self.paused = 0  # times a TCP socket stopped reading for it in this episode

    def start(self) -> float | None:
        """The time now if the monitors may be entered (give it to `spent` after the
        calls), else None (the caller refuses, and counts it with `drop` or `refuse`)."""
        now = self.clock()
        tokens = self.tokens + (now - self.stamp) * self.refill
        self.stamp = now
        if tokens >= self.burst:
            self.tokens = self.burst
            if self.since is not None:
                self._ended(now)
            return now
        self.tokens = tokens
        if tokens > 0.0:
            if self.since is not None:
                self.entered += 1
            return now
        if self.since is None:
            self._began(now, tokens)
        return None

    def _began(self, now: float, tokens: float) -> None:
        self.since = now
        self.note(
            f"the session's monitor time is spent ({self.rate * 1000:g} ms a second, "
            f"{self.burst * 1000:g} ms saved up at most): received datagrams are dropped "
            "and counted, TCP sockets stop reading, and checked requests are refused, "
            f"until it refills (in {-tokens / self.refill:.2f} s)"
        )

    def wait(self, stopped: bool = False) -> float:
        """Seconds until `start` lets the monitors in again (0: now). A TCP socket stops
        reading so long (flow control, not a hole in the stream); `stopped`: one did,
        counted in the episode, which this begins if none is going on."""
        now = self.clock()
        tokens = self.tokens + (now - self.stamp) * self.refill
        if tokens > 0.0:
            return 0.0
        if stopped:
            if self.since is None:
                self._began(now, tokens)
            self.paused += 1
        return -tokens / self.refill + WAIT_MARGIN

    def spent(self, start: float) -> float:
        """Take what the calls begun at `start` cost; the time now. What came back
        before `start` (a result callback is not entered through `start`) is counted
        first, and nothing of the calls' own time."""
        now = self.clock()
        idle = start - self.stamp
        if idle > 0.0:
            self.tokens = min(self.burst, self.tokens + idle * self.refill)
        self.tokens -= now - start
        self.stamp = now
        return now

    def drop(self) -> None:
        self.dropped += 1

    def refuse(self) -> None:
        self.refused += 1

    def close(self) -> None:
        """At the session's end: the end line of an episode still going on."""
        if self.since is not None:
            self._ended(self.clock(), " (at the session's end)")

    def _ended(self, now: float, how: str = "") -> None:
        assert self.since is not None
        self.note(
            f"the session's monitor time refilled{how} after {now - self.since:.2f} s: "
            f"{self.dropped} received chunk(s) dropped, {self.refused} request(s) refused, "
            f"the monitors entered {self.entered} time(s) meanwhile, "
            f"TCP reading paused {self.paused} time(s)"
        )
        self.since = None
        self.dropped = self.refused = self.entered = self.paused = 0
