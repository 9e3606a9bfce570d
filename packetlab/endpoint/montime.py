"""A session's monitor time (docs/monitors.md, "Monitor time"): a token bucket.

Monitor calls run on the reactor thread with a per-call deadline (§8.2), so a check that
spins costs the whole endpoint one deadline per call, and an ndata check is called once
per received chunk: any peer that sends datagrams set the pace (50 datagrams held an
mread 5.6 s, session 30). `MonitorTime` caps what a session's monitors may take: `rate`
seconds of monitor time per second of `clock`, at most `burst` saved up. The session's
monitors are entered while the bucket holds time (what a call costs is taken afterwards,
so the bucket may go below zero: the debt is paid back before the next call, and over
time the share stays at `rate`); while it is empty the caller drops received data
(counted) and refuses checked requests, and counts them here (`refused`).

An episode starts with the first refusal and ends when the bucket is full again: a
monitor that keeps spinning whenever it is entered stays in one episode (one log line
at its start, one at its end, with the counts), not one per datagram. Sans-IO: the caller
gives the clock and the log.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["MonitorTime"]

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
        tokens = self.tokens + (now - self.stamp) * self.rate
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
            f"until it refills (in {-tokens / self.rate:.2f} s)"
        )

    def wait(self, stopped: bool = False) -> float:
        """Seconds until `start` lets the monitors in again (0: now). A TCP socket stops
        reading so long (flow control, not a hole in the stream); `stopped`: one did,
        counted in the episode, which this begins if none is going on."""
        now = self.clock()
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > 0.0:
            return 0.0
        if stopped:
            if self.since is None:
                self._began(now, tokens)
            self.paused += 1
        return -tokens / self.rate + WAIT_MARGIN

    def spent(self, start: float) -> float:
        """Take what the calls begun at `start` cost; the time now."""
        now = self.clock()
        self.tokens -= now - start
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
