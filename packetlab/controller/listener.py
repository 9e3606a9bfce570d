"""The passive controller: listen for endpoints and run an experiment on each (§1.4).

Endpoints are always the TCP clients. For each connection the session sends its setup;
once `start` succeeded the experiment function runs with the session; when it returns (or
fails) the session is closed, which is how a PacketLab experiment ends (EOF, §1.4 step 7).
Every run gives an `Outcome`; failures are logged per endpoint and never stop the listener.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab.clockstep import steady_clock
from packetlab.controller._deferred import deferred_api
from packetlab.controller.errors import (
    AnswerTimeout,
    ControllerError,
    ProtocolViolation,
    SessionClosed,
    SetupFailed,
)
from packetlab.controller.session import EndpointSession
from packetlab.controller.setupcap import SetupCap
from packetlab.hostport import host_port
from packetlab.logbudget import LogBudget
from packetlab.wire import Cdata

T = TypeVar("T")
# An async def, or a function returning a Deferred (a plain value is accepted too).
Experiment = Callable[[EndpointSession], Awaitable[T]]

CLOSE_GRACE = 5.0  # seconds an endpoint gets to take our EOF before the connection is cut
# Outcomes kept for a caller that does not take them with next_outcome() (the newest);
# older ones are dropped and counted, so that a listener serving for days stays bounded.
KEEP_OUTCOMES = 1000


@dataclass(slots=True)
class Outcome(Generic[T]):
    """The end of one experiment run: its result, or the failure (with `peer`, the
    endpoint's address, and local start/finish times in seconds since the epoch)."""

    peer: str
    started: float
    finished: float
    result: T | None = None
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def unwrap(self) -> T:
        """The result, or raise the failure's exception."""
        if self.failure is not None:
            self.failure.raiseException()
        return cast(T, self.result)


class _SessionFactory(ServerFactory):
    def __init__(self, controller: Controller[Any]) -> None:
        self.controller = controller

    def buildProtocol(self, addr: Any) -> EndpointSession:
        return self.controller._new_session()


class Controller(Generic[T]):
    """Runs `experiment(session)` for each endpoint that connects.

    `experiment` may be an `async def`, return a Deferred, or return a plain value.
    `programs` are the encoded monitor programs sent as `cdata` before `start`.
    `limit` stops listening after that many endpoints connected (None: no limit).
    `session_options` go to each `EndpointSession` (max_notes, max_bytes, clock_ns).
    `setup_max`: at most so many sessions wait for their setup answer at once (default
    `default_pending_max()`: 1024, or 1/8 of the descriptor limit); the oldest is closed
    for each new one past it, said in one log line per episode (endpoints that connect
    and then stay silent held a descriptor each for the 60 s answer timeout, until none
    was left for a real one).
    `report_failures`: log a failed run with its traceback (the default: nobody else may
    see it); False when the caller takes every outcome's error itself (`run_once`), which
    leaves one info line.

    `outcomes` holds the outcomes `next_outcome()` has not handed out, oldest first: one
    it hands out leaves the list, and of the others only the newest `keep_outcomes` are
    kept (None: all). An older one is dropped (`dropped_outcomes` counts them) and
    `next_outcome()` skips it. `finished` counts the runs that ended. A `next_outcome()`
    cancelled (a timeout) takes none: the next outcome goes to the next call.
    """

    log = Logger()

    def __init__(
        self,
        experiment: Experiment[T],
        *,
        reactor: Any = None,
        programs: Iterable[bytes | Cdata] = (),
        limit: int | None = None,
        setup_max: int | None = None,
        report_failures: bool = True,
        keep_outcomes: int | None = KEEP_OUTCOMES,
        **session_options: Any,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
        self.experiment = experiment
        self.programs = list(programs)
        self.limit = limit
        self._setup: SetupCap[EndpointSession] = SetupCap(self, setup_max)
        self.report_failures = report_failures
        self.session_options = session_options
        if keep_outcomes is not None and keep_outcomes < 0:
            raise ValueError(f"keep_outcomes must be >= 0 or None, got {keep_outcomes}")
        self.keep_outcomes = keep_outcomes
        # the outcomes not taken, in the order their runs ended (at most keep_outcomes);
        # none while a next_outcome() waits
        self.outcomes: list[Outcome[T]] = []
        self.finished = 0
        self.dropped_outcomes = 0
        self.sessions: set[EndpointSession] = set()
        self.accepted = 0
        self.port: Any = None  # IListeningPort while listening
        self._runs: set[Deferred[None]] = set()
        self._running: set[Deferred[Any]] = set()  # the experiments themselves
        # the lines endpoints cause at will, over all sessions (EndpointSession.log_budget)
        self.log_budget = LogBudget(steady_clock(reactor))
        # the next_outcome() calls waiting, in their order (a cancelled one leaves)
        self._waiters: deque[Deferred[Outcome[T]]] = deque()

    @deferred_api
    async def listen(self, where: str | IStreamServerEndpoint) -> IListeningPort:
        """Listen on an endpoint description ("tcp:20556:interface=127.0.0.1") or a
        server endpoint object (for TLS, pass one)."""
        ep: Any = where
        if isinstance(where, str):  # imported here: an endpoint object needs none of it
            from twisted.internet.endpoints import serverFromString

            ep = serverFromString(self.reactor, where)
        port: Any = await ep.listen(_SessionFactory(self))
        self.port = port
        self.log.info("controller listening on {where}", where=host_port(port.getHost()))
        return port

    def next_outcome(self) -> Deferred[Outcome[T]]:
        """The next outcome not yet taken by this method (the first call: the first run to
        finish, and so on; one dropped from `outcomes` unread is skipped); fires at once if
        it is already there. The outcome leaves `outcomes`: it is the caller's. A call
        whose Deferred is cancelled (a timeout) takes none: it gives its place up, and
        the outcome it would have had goes to the next call (or stays in `outcomes`)."""
        if self.outcomes:
            return succeed(self.outcomes.pop(0))
        d: Deferred[Outcome[T]] = Deferred(self._give_up)
        self._waiters.append(d)
        return d

    def _give_up(self, d: Deferred[Outcome[T]]) -> None:
        """A waiting next_outcome() cancelled: out of the queue (it fails CancelledError)."""
        if d in self._waiters:
            self._waiters.remove(d)

    @deferred_api
    async def stop(self) -> None:
        """Stop listening, close the live sessions, cancel the experiments still running
        (a `CancelledError` in each: one waiting on anything but its session would never
        end), and wait for their runs to end."""
        await self.stop_listening()
        for s in list(self.sessions):
            s.close()
        # An experiment waiting on something other than its session (a Deferred of its
        # own, a sleep) would never end: it is cancelled (CancelledError in it).
        for running in list(self._running):
            running.cancel()
        runs = list(self._runs)
        if runs:
            await DeferredList(runs, consumeErrors=True)

    @deferred_api
    async def stop_listening(self) -> None:
        """Accept no more endpoints (the sessions and runs go on); again: nothing."""
        if self.port is not None:
            port, self.port = self.port, None
            await maybeDeferred(port.stopListening)  # (a Deferred, or None)

    # ------------------------------------------------------------------ per endpoint

    def _new_session(self) -> EndpointSession:
        session = EndpointSession(
            programs=self.programs, reactor=self.reactor, **self.session_options
        )
        # The run starts when the session connects: behind TLS, only once the endpoint
        # passed the PPKS check (a refused one never does, and leaves nothing behind).
        session.on_connected = self._connected
        session.log_budget = self.log_budget
        return session

    def _connected(self, session: EndpointSession) -> None:
        self.accepted += 1
        self._admit_setup(session)
        self.sessions.add(session)
        session.when_closed().addCallback(lambda _: self.sessions.discard(session))
        run = Deferred.fromCoroutine(self._run(session))
        self._runs.add(run)
        run.addBoth(lambda _: self._runs.discard(run))
        if self.limit is not None and self.accepted >= self.limit:
            self.stop_listening()

    @property
    def setup_max(self) -> int:
        return self._setup.cap

    @property
    def setup_evicted(self) -> int:
        """Sessions closed for newer ones past `setup_max`."""
        return self._setup.evicted

    def _admit_setup(self, session: EndpointSession) -> None:
        """Count `session` in the setup; past `setup_max`, close the oldest there."""

        def close(oldest: EndpointSession, why: str) -> bool:
            oldest.abort(SetupFailed(why))
            oldest.abort_connection()
            return True

        self._setup.admit(session, close)

        def settled(result: object) -> object:
            self._setup.settled(session)
            return result

        session.ready.addBoth(settled)

    async def _run(self, session: EndpointSession) -> None:
        started = time.time()
        result: Any = None
        failure: Failure | None = None
        ready = False
        try:
            await session.ready
            ready = True
            self.log.info("endpoint {peer} ready; running the experiment", peer=session.peer)
            result = self.experiment(session)
            if inspect.isawaitable(result):
                running = Deferred.fromCoroutine(_awaited(result))
                self._running.add(running)
                running.addBoth(_passing(lambda: self._running.discard(running)))
                result = await running
        except GeneratorExit:  # collected while waiting (never connected on): no outcome
            raise
        except BaseException:
            failure = Failure()
            result = None  # (not the experiment's coroutine, which raised)
            if not ready and failure.check(ControllerError):
                # The endpoint's doing (no experiment ran): the session said why in one
                # line, within the budget; no traceback, nothing held.
                _forget_frames(failure)
            elif self.report_failures and failure.check(SessionClosed):
                # The endpoint ended the session under the experiment: its reason in one
                # line (none when the session said it: a violation, the watchdog).
                cause = getattr(failure.value, "cause", None)
                if not isinstance(cause, ProtocolViolation | AnswerTimeout):
                    note = self.log_budget.allow()
                    if note is not None:
                        self.log.warn(
                            "experiment on endpoint {peer} ended with its session: "
                            "{error}{budget_note}",
                            peer=session.peer,
                            error=failure.value,
                            budget_note=note,
                        )
                _forget_frames(failure)
            elif self.report_failures:
                self.log.failure("experiment on endpoint {peer} failed", failure, peer=session.peer)
                # Logged with its traceback: now drop the frames, which hold the session
                # (its sockets, their queued data) for as long as the outcome is kept.
                _forget_frames(failure)
            else:  # the caller gets the error: a traceback here would tell it twice
                self.log.info(
                    "experiment on endpoint {peer} failed: {error}",
                    peer=session.peer,
                    error=failure.getErrorMessage(),
                )
        await self._close(session)
        outcome: Outcome[T] = Outcome(session.peer, started, time.time(), result, failure)
        if failure is None:
            self.log.info("endpoint {peer} done", peer=session.peer)
        self._record(outcome)

    def _record(self, outcome: Outcome[T]) -> None:
        """Hand `outcome` to the first `next_outcome()` waiting, or keep it (at most
        `keep_outcomes`: the oldest kept goes)."""
        self.finished += 1
        while self._waiters:
            d = self._waiters.popleft()
            if not d.called:
                d.callback(outcome)
                return
        self.outcomes.append(outcome)
        if self.keep_outcomes is not None and len(self.outcomes) > self.keep_outcomes:
            del self.outcomes[0]
            self.dropped_outcomes += 1

    async def _close(self, session: EndpointSession) -> None:
        closed = session.close()
        if not closed.called:
            cut = self.reactor.callLater(CLOSE_GRACE, session.abort_connection)
            await closed
            if cut.active():
                cut.cancel()


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _passing(action: Callable[[], object]) -> Callable[[Any], Any]:
    """A callback that runs `action` and passes the result (or failure) on."""

    def both(result: Any) -> Any:
        action()
        return result

    return both


def _forget_frames(failure: Failure) -> None:
    """Drop the frames `failure` holds, and those of the exceptions chained to it (the log
    event that carried it may be kept too: Twisted buffers events until logging starts)."""
    _ = failure.frames  # the text of its frames, now: Failure computes them lazily from tb
    failure.cleanFailure()  # (its frames kept as text, for printing)
    failure.tb = None  # (pytest-twisted makes cleanFailure a no-op)
    seen: set[int] = set()
    e: BaseException | None = failure.value
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        e = e.__cause__ or e.__context__


def listen(
    reactor: Any,
    where: str | IStreamServerEndpoint,
    experiment: Experiment[T],
    **options: Any,
) -> Deferred[Controller[T]]:
    """Listen on `where` and run `experiment(session)` for every endpoint that connects.
    Fires with the `Controller` (its `next_outcome()`, `outcomes` not yet taken, `stop()`)
    once listening.
    `options` go to `Controller`."""
    ctl: Controller[T] = Controller(experiment, reactor=reactor, **options)
    return ctl.listen(where).addCallback(lambda _: ctl)


@deferred_api
async def run_once(
    reactor: Any,
    where: str | IStreamServerEndpoint,
    experiment: Experiment[T],
    *,
    timeout: float | None = None,
    on_listening: Callable[[IListeningPort], object] | None = None,
    **options: Any,
) -> T:
    """Run `experiment` against the first endpoint that connects, then stop listening.

    Returns the experiment's result (or raises its error). `on_listening(port)` is called
    once listening (to start an endpoint pointed at `port.getHost().port`, for instance).
    `timeout` (seconds) bounds the wait for the endpoint and the run.
    """
    options.setdefault("report_failures", False)  # raised to our caller instead
    ctl: Controller[T] = Controller(experiment, reactor=reactor, limit=1, **options)
    port = await ctl.listen(where)
    try:
        if on_listening is not None:
            on_listening(port)
        d = ctl.next_outcome()
        if timeout is not None:
            d.addTimeout(timeout, reactor)
        try:
            outcome = await d
        except defer.TimeoutError:
            why = "no endpoint connected" if not ctl.accepted else "the experiment did not end"
            raise ControllerError(f"no experiment finished within {timeout:g} s ({why})") from None
    finally:
        await ctl.stop()
    return outcome.unwrap()
