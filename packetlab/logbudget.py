"""At most so many log lines a minute for one kind of event that a peer can cause at will.

A daemon's listening port logs one line per refused connection (a failed TLS handshake,
a registration never finished): one line per connection an untrusted peer opens, so a
flood of connections was a flood of log lines, as fast as the peer could connect (1,500
connections: 1,500 lines). `LogBudget.allow()` lets `burst` lines through per `window`
seconds and counts the rest; the next line let through says how many were left out.
Sans-IO: the caller gives the clock.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LogBudget"]


class LogBudget:
    """`burst` lines per `window` seconds of `clock`; see the module docstring."""

    def __init__(self, clock: Callable[[], float], burst: int = 20, window: float = 60.0) -> None:
        self.clock = clock
        self.burst = burst
        self.window = window
        self._start = -window  # the current window's start
        self._used = 0
        self.hidden = 0  # left out since the last line let through

    def allow(self) -> str | None:
        """None: do not log this one (it is counted). Else log it, with the returned text
        appended: empty, or how many were left out before it."""
        now = self.clock()
        if now - self._start >= self.window:
            self._start, self._used = now, 0
        if self._used >= self.burst:
            self.hidden += 1
            return None
        self._used += 1
        hidden, self.hidden = self.hidden, 0
        if self._used == self.burst:
            return (
                f" [{self.burst} such lines in {self.window:g} s: the next ones are counted, "
                f"not logged, until {self.window:g} s have passed]"
                + (f" [{hidden} not logged before this one]" if hidden else "")
            )
        return f" [{hidden} not logged before this one]" if hidden else ""
