"""A controller session's two timers: the answer watchdog (requests waiting with no
answer for `answer_timeout` end the session with `AnswerTimeout`) and the close cut (an
endpoint that does not close within `close_grace` of our EOF is cut off). Mixed into
`EndpointSession`.

Reads paused for a full socket queue count as progress only while the experiment takes
notifications from it: paused with none taken for the whole timeout, requests waiting, is
a deadlock (their answers sit behind the unread notifications; an endpoint flooding a
socket the experiment reads only later, or one it is closing, caused it) and ends the
session as well, saying which socket."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from packetlab.clockstep import steady
from packetlab.controller.errors import AnswerTimeout, ControllerError
from packetlab.controller.sessiontext import partial_text

if TYPE_CHECKING:
    from collections import deque

    from twisted.logger import Logger

    from packetlab import wire
    from packetlab.controller.sockets import Socket
    from packetlab.logbudget import LogBudget


class SessionTimers:
    """`EndpointSession` owns the state (made in its `__init__`)."""

    log_budget: LogBudget | None = None  # set per session by its listener

    if TYPE_CHECKING:
        log: Logger
        reactor: Any
        peer: str
        answer_timeout: float | None
        close_grace: float | None
        suspended: bool
        _out: Any
        _framer: wire.Framer
        _pending: deque[Any]
        _dead: bool
        _lost: bool
        _paused: bool
        _full: set[Socket]
        _answers: int
        _watch_seen: int
        _watch_since: float
        _watch_armed: float
        _watchdog: Any
        _cut: Any

        def abort(self, error: ControllerError) -> None: ...
        def abort_connection(self) -> None: ...

    def _say(self, level: str, fmt: str, **fields: Any) -> None:
        """Log a line the endpoint caused, within the shared `log_budget` (if any)."""
        budget = self.log_budget
        note = "" if budget is None else budget.allow()
        if note is not None:
            getattr(self.log, level)(fmt + "{budget_note}", budget_note=note, **fields)

    def _progress(self) -> int:
        """Answers taken, plus notifications the experiment took from full queues."""
        return self._answers + sum(s.taken for s in self._full)

    def _arm_watchdog(self) -> None:
        assert self.answer_timeout is not None
        self._watch_armed = steady(self.reactor)
        self._watchdog = self.reactor.callLater(self.answer_timeout / 4, self._watch)

    def _watch(self) -> None:
        """Every timeout/4 while requests wait: give up once no answer came for the whole
        timeout (not counting time suspended by the endpoint, nor paused by us while the
        experiment reads the full socket)."""
        self._watchdog = None
        if self._dead or not self._pending or self.answer_timeout is None:
            return
        now = steady(self.reactor)
        # Late by more than a period: the reactor itself was held up (the experiment's own
        # work), so answers may be waiting unread in the socket: that time does not count.
        stalled = now - self._watch_armed > self.answer_timeout / 2
        progress = self._progress()
        if progress != self._watch_seen or self.suspended or stalled:
            self._watch_seen = progress
            self._watch_since = now
        elif now - self._watch_since >= self.answer_timeout:
            first = self._pending[0].request.NAME
            n = len(self._pending)
            waiting = f"{n} waiting request{'s' if n > 1 else ''} (first: {first})"
            if self._paused and self._full:
                sock = min(self._full, key=lambda s: s.sktid)
                err = AnswerTimeout(
                    f"socket {sock.sktid} has {sock.queued} unread notifications and the "
                    f"experiment took none for {self.answer_timeout:g} s while {waiting} "
                    "could not be answered (reads from the endpoint stay paused until "
                    "the experiment reads that socket, or nopen with buffer=False)"
                )
            else:
                text = f"the endpoint answered none of {waiting} for {self.answer_timeout:g} s"
                err = AnswerTimeout(text + partial_text(self._framer))
            self._say(
                "error", "endpoint {peer}: {error}; closing the session", peer=self.peer, error=err
            )
            self.abort(err)
            self.abort_connection()
            return
        self._arm_watchdog()

    def _arm_cut(self) -> None:
        if self._cut is None and not self._lost and self.close_grace is not None:
            self._cut = self.reactor.callLater(self.close_grace, self._cut_now)

    def _cancel_cut(self) -> None:
        cut, self._cut = self._cut, None
        if cut is not None and cut.active():
            cut.cancel()

    def _cut_now(self) -> None:
        self._cut = None
        if not self._lost and self._out is not None:
            self._say(
                "warn",
                "endpoint {peer} did not close within {s:g} s of our close; cutting the connection",
                peer=self.peer,
                s=self.close_grace,
            )
            self._out.abortConnection()
