"""Backpressure on the records TLS writes of its own accord (issue 15, session 20).

TLS answers some records whatever the application does: OpenSSL answers each KeyUpdate
with update_requested at once. A peer that sends them (a byte of data after every 31, to
dodge OpenSSL's own limit of 32 in a row) and never reads made those answers pile up in
the TCP transport's buffer without bound: +18.5 MiB for 930,000 (the pyOpenSSL record
path; the Python one answers at most one until we send data, `packetlab.tls.records`).
The application's own writes have their backpressure (the transport pauses its producer,
`packetlab.endpoint.outbox`); these had none.

`OwnBacklog` counts the bytes of our own records the transport still holds. Past
`OWN_BOUND` the link stops reading from the peer; it reads again once they are down to
half of it. A peer that leaves them unread for `UNREAD_DEADLINE` seconds is cut. A TCP
transport tells only its registered producer (the application's) when it drains, so the
backlog looks every `CHECK_EVERY` seconds, and only while it holds the link paused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from packetlab.clockstep import steady

__all__ = ["CHECK_EVERY", "OWN_BOUND", "UNREAD_DEADLINE", "OwnBacklog"]

OWN_BOUND = 16 * 1024  # ~600 KeyUpdate answers; a handshake's own flight is far below
CHECK_EVERY = 0.25
UNREAD_DEADLINE = 30.0


class OwnBacklog:
    """Our own TLS bytes still unsent on one link; pauses and resumes its reading."""

    __slots__ = ("_clock", "_cut", "_pause", "_resume", "_timer", "_unsent", "queued", "since")

    def __init__(
        self,
        unsent: Callable[[], int],
        clock: Any,
        pause: Callable[[], None],
        resume: Callable[[], None],
        cut: Callable[[int, float], None],
    ) -> None:
        self._unsent = unsent  # bytes the transport holds, ours and the application's
        self._clock = clock
        self._pause = pause
        self._resume = resume
        self._cut = cut  # (our bytes unread, seconds paused): the link must go
        self._timer: Any = None
        self.queued = 0  # our bytes among the transport's unsent ones (at most)
        self.since: float | None = None  # when reading was paused

    @property
    def paused(self) -> bool:
        return self.since is not None

    def sent(self, before: int) -> None:
        """Our own records were just written to the transport, which held `before` bytes
        then: the part of them it did not send at once counts."""
        # The transport's buffer is first in, first out: what it holds of ours is at
        # most all it holds.
        queued = min(self.queued, before) + max(self._unsent() - before, 0)
        self.queued = queued
        if queued > OWN_BOUND and self.since is None:
            self.since = steady(self._clock)
            self._pause()
            self._timer = self._clock.callLater(CHECK_EVERY, self._check)

    def _check(self) -> None:
        self._timer = None
        since = self.since
        if since is None:
            return
        self.queued = min(self.queued, self._unsent())
        if self.queued <= OWN_BOUND // 2:
            self.since = None
            self._resume()
            return
        waited = steady(self._clock) - since
        if waited >= UNREAD_DEADLINE:
            self.since = None
            self._cut(self.queued, waited)
            return
        self._timer = self._clock.callLater(CHECK_EVERY, self._check)

    def stop(self) -> None:
        """The link is gone: no more checks."""
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self.since = None
