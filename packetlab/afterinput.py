"""Deadlines that let the reactor read first.

Twisted runs due timers before it polls sockets, so a process descheduled or busy past a
deadline gave up on an answer already waiting in a socket: a timeout (a `*` in a
traceroute, `None` from `Socket.get(timeout)`) where a tool that reads first, as native
traceroute's loop does, had the answer. A deadline here fires only after the reactor has
polled for input `READ_TURNS` more times: a call a timer makes with `callLater(0)` runs
after the next poll, and an in-process endpoint's answer takes up to three (its raw
socket, then the controller's link).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

__all__ = ["READ_TURNS", "AfterInput", "timeout_after_input"]

READ_TURNS = 3

T = TypeVar("T")


class AfterInput:
    """`f(*args)` once `delay` seconds have passed and the reactor has then polled for
    input `READ_TURNS` times; `cancel()`/`active()` as an `IDelayedCall`'s."""

    def __init__(
        self, reactor: IReactorTime, delay: float, f: Callable[..., object], *args: Any
    ) -> None:
        self._reactor = reactor
        self._f = f
        self._args = args
        self._call: IDelayedCall = reactor.callLater(max(0.0, delay), self._due, READ_TURNS)

    def _due(self, turns: int) -> None:
        if turns == 0:
            self._f(*self._args)
        else:  # once more round the reactor: it polls for input before it runs this
            self._call = self._reactor.callLater(0, self._due, turns - 1)

    def active(self) -> bool:
        return self._call.active()

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()


def timeout_after_input(
    d: Deferred[T], timeout: float, reactor: IReactorTime
) -> Deferred[T | None]:
    """`d`, cancelled with result None if it has not fired `timeout` seconds from now and
    after the input waiting by then is read (`d.addTimeout(timeout, reactor,
    onTimeoutCancel=lambda r, t: None)`, reading first)."""
    expired = [False]

    def expire() -> None:
        if not d.called:
            expired[0] = True
            d.cancel()

    deadline = AfterInput(reactor, timeout, expire)

    def settle(result: T | Failure) -> T | Failure | None:
        deadline.cancel()
        if expired[0] and isinstance(result, Failure) and result.check(CancelledError):
            return None
        return result

    return d.addBoth(settle)
