"""Asking a running measurement to wrap up early (the first Ctrl-C of a command line).

A measurement that accepts a `StopSignal` stops sending when it is requested, waits
briefly for the answers already in flight, and returns what it gathered, like ping and
traceroute do on SIGINT. Whoever requests it can tell whether anyone is listening
(`watched`): when nothing is, there is nothing to wrap up and it may simply quit.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed

__all__ = ["StopSignal"]


class StopSignal:
    """`request()` once; `requested` and `reason` tell, `when_requested()` fires then."""

    def __init__(self) -> None:
        self.requested = False
        self.reason = ""
        self.watched = False  # a measurement called when_requested()
        self._waiters: list[Deferred[str]] = []

    def request(self, reason: str = "interrupted") -> None:
        if self.requested:
            return
        self.requested, self.reason = True, reason
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(reason)

    def when_requested(self) -> Deferred[str]:
        """Fires with the reason once requested (at once if it already was). Calling it
        marks the signal as watched; cancel the Deferred when no longer interested."""
        self.watched = True
        if self.requested:
            return succeed(self.reason)
        d: Deferred[str] = Deferred(
            lambda d: self._waiters.remove(d) if d in self._waiters else None
        )
        self._waiters.append(d)
        return d
