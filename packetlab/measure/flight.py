"""Probes in flight: the pieces ping and traceroute share to read replies *while* they send.

Replies are taken from the capture socket by a callback the moment they arrive (the
socket keeps no queue, so a long run can never fill it and stall the session, which would
hold back the very nsend results the sender waits for). The sender and the waiting loop
sleep on a `Waker`, which any arrival, a deadline or a `StopSignal` wakes up.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred

from packetlab.controller import StopSignal

__all__ = ["GRACE_S", "Waker"]

GRACE_S = 1.0  # after a stop request: how long replies already in flight are awaited
# A deadline wakes the sleeper only after the reactor has polled for input so many times:
# Twisted runs due timers before it reads sockets, so a process descheduled past a deadline
# gave up on an answer already waiting in a socket (native traceroute's loop reads first).
# A call a timer makes with callLater(0) runs after the next poll; an in-process
# endpoint's answer takes up to three (its raw socket, then the controller's link).
READ_TURNS = 3


class Waker:
    """`await waker.sleep(until, stop)` returns at the next `poke()`, at `until` (reactor
    seconds, None: no limit; after the input waiting by then is read) or when `stop` is
    requested, whichever comes first."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._d: Deferred[None] | None = None

    def poke(self) -> None:
        d, self._d = self._d, None
        if d is not None and not d.called:
            d.callback(None)

    async def sleep(self, until: float | None = None, stop: StopSignal | None = None) -> None:
        if stop is not None and stop.requested:
            return
        d: Deferred[None] = Deferred()
        self._d = d
        timer: list[Any] = []  # the pending call of the deadline, if any

        def due(turns: int) -> None:
            if turns == 0:
                self.poke()
            else:  # once more round the reactor: it polls for input first
                timer[0] = self.reactor.callLater(0, due, turns - 1)

        if until is not None:
            delay = max(0.0, until - self.reactor.seconds())
            timer.append(self.reactor.callLater(delay, due, READ_TURNS))
        asked: Deferred[str] | None = None
        if stop is not None:
            asked = stop.when_requested()
            asked.addCallback(lambda _: self.poke())
            asked.addErrback(lambda f: f.trap(CancelledError))
        try:
            await d
        finally:
            if timer and timer[0].active():
                timer[0].cancel()
            if asked is not None and not asked.called:
                asked.cancel()
            if self._d is d:
                self._d = None
