"""Asking a running measurement to wrap up early (the first Ctrl-C of a command line).

A measurement that accepts a `StopSignal` stops sending when it is requested, waits
briefly for the answers already in flight, and returns what it gathered, like ping and
traceroute do on SIGINT. Whoever requests it can tell whether anyone is listening
(`watched`): when nothing is, there is nothing to wrap up and it may simply quit.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed

__all__ = ["StopSignal"]


class StopSignal:
    """`request()` once; `requested` and `reason` tell, `when_requested()` fires then."""

    def __init__(self) -> None:
        self.requested = False
        self.reason = ""
        self.watched = False  # a measurement called when_requested() or listen()
        # called in the order they came (a Deferred's callback, or a `listen` function)
        self._waiters: dict[int, Callable[[str], object]] = {}
        self._key = 0

    def request(self, reason: str = "interrupted") -> None:
        if self.requested:
            return
        self.requested, self.reason = True, reason
        waiters, self._waiters = self._waiters, {}
        for f in waiters.values():
            f(reason)

    def when_requested(self) -> Deferred[str]:
        """Fires with the reason once requested (at once if it already was). Calling it
        marks the signal as watched; cancel the Deferred when no longer interested."""
        self.watched = True
        if self.requested:
            return succeed(self.reason)
        d: Deferred[str] = Deferred(lambda _: self._drop(key))
        key = self._add(d.callback)
        return d

    def listen(self, f: Callable[[str], object]) -> Callable[[], None]:
        """Call `f(reason)` once requested (at once if it already was); returns a remover:
        `when_requested` without a Deferred. (`Waker.sleep` waits on the signal at every
        turn of a loop; cancelling a Deferred each turn built a Failure each time, ~5 % of
        the CPU of `run ping -f`.)"""
        self.watched = True
        if self.requested:
            f(self.reason)
            return _nothing
        key = self._add(f)
        return lambda: self._drop(key)

    def _add(self, f: Callable[[str], object]) -> int:
        key = self._key
        self._key += 1
        self._waiters[key] = f
        return key

    def _drop(self, key: int) -> None:
        self._waiters.pop(key, None)


def _nothing() -> None:
    pass
