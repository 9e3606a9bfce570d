"""One endpoint socket as the controller sees it: its notifications, delivered to callbacks
and to a bounded queue that experiments read with `async for` or `get(timeout)`.

A queue above its high-water mark (`max_notes` notifications or `max_bytes` of ndata
payload) tells the session, which stops reading from the endpoint until the queue is
drained below half of both marks. The endpoint then stops reading its sockets (TCP) or
drops and counts what does not fit (UDP/raw, §3.5): nothing is buffered without a budget.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TypeAlias

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab.afterinput import timeout_after_input
from packetlab.controller.errors import ConnectFailed, SessionClosed, SocketClosed
from packetlab.wire import Nblock, Ndata, Ndrop, Nstat, NstatCode, Ntag, Proto

Note: TypeAlias = Ntag | Nstat | Ndata | Ndrop | Nblock
NoteCallback: TypeAlias = Callable[[Note], object]

DEFAULT_MAX_NOTES = 256
DEFAULT_MAX_BYTES = 4 << 20


def _nstat_name(code: int) -> str:
    try:
        return NstatCode(code).name
    except ValueError:
        return f"nstat code {code}"


def _fresh(reason: Failure) -> Failure:
    """`reason` with a new exception of its own when it is a SessionClosed: one instance
    raised into several coroutines collects all their frames in its traceback."""
    value = reason.value
    if isinstance(value, SessionClosed):
        return Failure(value.again())
    return reason


class Socket:
    """Notifications of socket `sktid` (ntag, nstat, ndata, ndrop, nblock).

    A callback that raises is logged (and counted in `callback_errors`); the note still
    goes on to the queue and the session carries on.

    Made by the session when an nopen succeeds; ended when nclose succeeds or the session
    ends. Every notification goes to the callbacks first, then to a waiting `get()`, then
    (if `buffering`) into the queue. Once the socket has ended, what is queued can still be
    read; then iteration stops (clean end) or raises the session's error (broken session).
    """

    log = Logger()

    def __init__(
        self,
        sktid: int,
        family: int | None,
        proto: int | None,
        reactor: IReactorTime,
        *,
        buffering: bool = True,
        max_notes: int = DEFAULT_MAX_NOTES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        on_pressure: Callable[[Socket, bool], None] | None = None,
    ) -> None:
        self.sktid = sktid
        self.family = family
        self.proto = proto
        self.buffering = buffering
        self.max_notes = max_notes
        self.max_bytes = max_bytes
        self.dropped = 0  # notifications nobody took (buffering off, no callback)
        self.callback_errors = 0  # exceptions raised by callbacks (logged)
        self.taken = 0  # notifications the experiment took from the queue (progress)
        self.last_nstat: Nstat | None = None
        self.remote: str | None = None  # "192.0.2.1:80" of a TCP connect (messages)
        self.established: Nstat | None = None
        self._reactor = reactor
        self._on_pressure = on_pressure
        self._callbacks: list[NoteCallback] = []
        self._queue: deque[Note] = deque()
        self._bytes = 0
        self._full = False
        self._waiters: deque[Deferred[Note | None]] = deque()
        self._estab_waiters: list[Deferred[Nstat]] = []
        self._ended = False
        self._end_reason: Failure | None = None
        #: An nclose is on its way: a full queue no longer holds reads back (its answer
        #: waited behind the unread notifications until the answer watchdog cut the
        #: session, up to session 31).
        self.closing = False

    def __repr__(self) -> str:
        return (
            f"<Socket {self.sktid} family={self.family} proto={self.proto} "
            f"queued={len(self._queue)}{' ended' if self._ended else ''}>"
        )

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def queued(self) -> int:
        """Notifications waiting in the queue."""
        return len(self._queue)

    # ------------------------------------------------------------------ consumer side

    def add_callback(self, callback: NoteCallback) -> Callable[[], None]:
        """Call `callback(note)` for every notification from now on; returns a remover.

        Callbacks run synchronously as notes arrive and do not stop the note from being
        queued; set `buffering = False` (or nopen with `buffer=False`) to rely on callbacks
        alone.
        """
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def notifications(self) -> Socket:
        """`async for note in sock.notifications(): ...` (the socket is its own iterator)."""
        return self

    def __aiter__(self) -> Socket:
        return self

    async def __anext__(self) -> Note:
        note = await self.get()
        if note is None:
            raise StopAsyncIteration
        return note

    def get(self, timeout: float | None = None) -> Deferred[Note | None]:
        """The next notification; None when the socket has ended (or `timeout` seconds
        passed). Errbacks with the session's error if the session broke."""
        if self._queue:
            note = self._queue.popleft()
            self._taken(note)
            return succeed(note)
        if self._ended:
            if self._end_reason is not None:
                return fail(_fresh(self._end_reason))
            return succeed(None)
        d: Deferred[Note | None] = Deferred(lambda d: self._waiters.remove(d))
        self._waiters.append(d)
        if timeout is not None:  # (the input waiting at the deadline is read first)
            return timeout_after_input(d, timeout, self._reactor)
        return d

    def drain(self) -> list[Note]:
        """Take every queued notification at once (no waiting)."""
        notes = list(self._queue)
        self.taken += len(notes)
        self._queue.clear()
        self._bytes = 0
        self._check_pressure()
        return notes

    def wait_established(self) -> Deferred[Nstat]:
        """Fires with the ESTABLISHED nstat of a TCP connect; errbacks with ConnectFailed if
        another nstat code comes first, SocketClosed/SessionClosed if the socket ends.

        The reference endpoint sends no nstat when a connect fails (§3.1); the helper
        `wait_connected` also polls STAT for that case.
        """
        if self.established is not None:
            return succeed(self.established)
        if self.last_nstat is not None:
            return fail(ConnectFailed(self.sktid, _nstat_name(self.last_nstat.code)))
        if self._ended:
            if self._end_reason is not None:
                return fail(_fresh(self._end_reason))
            return fail(SocketClosed(self.sktid, "TCP connect"))
        d: Deferred[Nstat] = Deferred(lambda d: self._estab_waiters.remove(d))
        self._estab_waiters.append(d)
        return d

    # ------------------------------------------------------------------ session side

    def deliver(self, note: Note) -> None:
        if self._ended:
            self.dropped += 1
            return
        if isinstance(note, Nstat):
            self._saw_nstat(note)
        for cb in list(self._callbacks):
            try:
                cb(note)
            except Exception:
                # One note a callback cannot take (odd bytes from the endpoint, a bug in
                # the callback) must not cut the session and drop what follows.
                self.callback_errors += 1
                self.log.failure(
                    "socket {sktid}: notification callback {cb!r} raised on {name}; "
                    "the session goes on",
                    sktid=self.sktid,
                    cb=cb,
                    name=note.NAME,
                )
        if self._waiters:
            self._waiters.popleft().callback(note)
        elif self.buffering:
            self._queue.append(note)
            if isinstance(note, Ndata):
                self._bytes += len(note.data)
            self._check_pressure()
        elif not self._callbacks:
            self.dropped += 1

    def end(self, reason: Failure | None = None) -> None:
        """No more notifications: waiters get None (clean) or `reason`."""
        if self._ended:
            return
        self._ended = True
        self._end_reason = reason
        waiters, self._waiters = self._waiters, deque()
        for d in waiters:
            if reason is None:
                d.callback(None)
            else:
                d.errback(_fresh(reason))
        estab, self._estab_waiters = self._estab_waiters, []
        for e in estab:
            e.errback(SocketClosed(self.sktid, "TCP connect") if reason is None else _fresh(reason))

    def _saw_nstat(self, note: Nstat) -> None:
        self.last_nstat = note
        if self.proto != Proto.TCP:
            return
        estab, self._estab_waiters = self._estab_waiters, []
        if note.code == NstatCode.ESTABLISHED and self.established is None:
            self.established = note
            for d in estab:
                d.callback(note)
        elif self.established is None:
            for d in estab:
                d.errback(ConnectFailed(self.sktid, _nstat_name(note.code)))

    def _taken(self, note: Note) -> None:
        self.taken += 1
        if isinstance(note, Ndata):
            self._bytes -= len(note.data)
        self._check_pressure()

    def set_closing(self, closing: bool) -> None:
        """An nclose was sent (True), or failed (False): see `closing`."""
        self.closing = closing
        self._check_pressure()

    def _check_pressure(self) -> None:
        n, b = len(self._queue), self._bytes
        if not self._full and not self.closing and (n >= self.max_notes or b >= self.max_bytes):
            self._full = True
            if self._on_pressure is not None:
                self._on_pressure(self, True)
        elif self._full and (
            self.closing or (n <= self.max_notes // 2 and b <= self.max_bytes // 2)
        ):
            self._full = False
            if self._on_pressure is not None:
                self._on_pressure(self, False)
