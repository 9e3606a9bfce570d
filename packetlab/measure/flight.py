"""Probes in flight: the pieces ping and traceroute share to read replies *while* they send.

Replies are taken from the capture socket by a callback the moment they arrive (the
socket keeps no queue, so a long run can never fill it and stall the session, which would
hold back the very nsend results the sender waits for). The sender and the waiting loop
sleep on a `Waker`, which any arrival, a deadline or a `StopSignal` wakes up.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from packetlab.afterinput import AfterInput
from packetlab.clockstep import steady
from packetlab.controller import StopSignal

__all__ = ["GRACE_S", "Waker"]

GRACE_S = 1.0  # after a stop request: how long replies already in flight are awaited


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
        # (a deadline passed while this process was busy reads the waiting input first)
        timer = (
            None
            if until is None
            else AfterInput(self.reactor, until - steady(self.reactor), self.poke)
        )
        # (a listener, not `when_requested()`: cancelling that Deferred at every wake-up
        # built a Failure each time, ~5 % of `run ping -f`'s CPU)
        unlisten = stop.listen(lambda _: self.poke()) if stop is not None else None
        try:
            await d
        finally:
            if timer is not None:
                timer.cancel()
            if unlisten is not None:
                unlisten()
            if self._d is d:
                self._d = None
