"""One controller ⇄ endpoint session: a Protocol that sends requests and matches responses.

There are no request IDs in PacketLab (§1.1): every request gets exactly one `result` or
`mdata`, in request order, so pending requests are a FIFO of Deferreds. Notifications can sit
between responses; they are routed to the `Socket` of their sktid (or to the Deferred of a
tracked ntag). Each message is one `transport.write` (one TLS record: the reference endpoint
only answers the first message of a multi-message record, INTEROP.md) with TCP_NODELAY on.

Anything the protocol forbids from the endpoint (a malformed frame, a response with no
request waiting, ...) ends the session at once with `ProtocolViolation`, and every pending
Deferred errbacks with `SessionClosed`, so nothing hangs.

The session's socket and ntag table is `socktable.SocketTable`, its answer watchdog and
close cut `watchdog.SessionTimers` (both mixed in: no extra call per message), and what it
says of a loss `sessiontext`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from packetlab import wire
from packetlab.clockstep import steady
from packetlab.controller.errors import (
    AnswerTimeout,
    ControllerError,
    ProtocolViolation,
    RequestFailed,
    SendFailed,
    SessionClosed,
    SetupFailed,
    Suspended,
)
from packetlab.controller.reflexes import ReflexMethods, private_frame
from packetlab.controller.requests import RequestMethods
from packetlab.controller.sessiontext import field_error, loss_text, type_name
from packetlab.controller.sockets import DEFAULT_MAX_BYTES, DEFAULT_MAX_NOTES, Note, Socket
from packetlab.controller.socktable import SocketTable
from packetlab.controller.watchdog import SessionTimers
from packetlab.hostport import host_port
from packetlab.logbudget import LogBudget
from packetlab.tls.directwrite import frame_writer, socket_connection
from packetlab.wire import (
    Cdata,
    Linfo,
    Mdata,
    Message,
    Mread,
    Nblock,
    Nclose,
    Ndata,
    Ndrop,
    Nopen,
    Nstat,
    Ntag,
    Result,
    Resumd,
    Start,
    Suspd,
    Yield,
)
from packetlab.wire.constants import CDATA_HINT_MONITOR

Response = Result | Mdata
_NOTES = (Ntag, Nstat, Ndata, Ndrop, Nblock)

#: Seconds requests may wait with no answer at all before the session is given up
#: (`AnswerTimeout`). Answers flowing keep it alive however long a pipeline is; our own
#: backpressure (paused reads) while the experiment reads the full socket, and a suspended
#: experiment, do not count.
ANSWER_TIMEOUT = 60.0
#: Seconds the endpoint gets to close after our EOF before the connection is cut.
CLOSE_GRACE = 5.0
#: The largest frame body taken from an endpoint. The protocol allows 16 MiB - 1, but an
#: endpoint's largest messages are an ndata or a linfo of 64 KiB (NDATA_MAX,
#: LINFO_INFO_MAX) and an mdata of 65535 bytes: a bigger header is an endpoint gone wrong,
#: and is refused before its body is buffered.
MAX_FRAME_BODY = 1 << 20
#: A TLS record's first byte (a handshake) followed by 3 (TLS 1.x): no PacketLab message
#: type is 0x16, so a stream starting so is an endpoint speaking TLS to a plaintext link.
TLS_HANDSHAKE = 0x16
#: `linfo` messages kept (the reference sends one per monitor: at most 100 + 16).
MAX_LINFO = 128
#: Bytes of `linfo` kept (name, aux and info): the reference's are a few bytes each; 128
#: of 1 MiB (the frame bound) held 128 MiB for as long as the session lived.
MAX_LINFO_BYTES = 1 << 20
#: What a request made before the session has its connection fails with.
NOT_CONNECTED = (
    "the session is not connected yet: requests can be made from connectionMade on "
    "(await session.ready, or use the session an experiment is given)"
)
#: Unknown message types (and notifications for sockets that are not open) logged one by
#: one; the rest are only counted.
UNKNOWN_LOGGED = 10


@implementer(IPushProducer)
class _WriteGate:
    """Registered with the transport so the session knows when its write buffer is full."""

    def __init__(self) -> None:
        self.paused = False
        self._waiters: list[Deferred[None]] = []

    def wait(self) -> Deferred[None]:
        if not self.paused:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def stopProducing(self) -> None:
        self.resumeProducing()


class _Pending:
    __slots__ = ("deferred", "on_success", "request")

    def __init__(
        self,
        request: Message,
        deferred: Deferred[Response],
        on_success: Callable[[], None] | None,
    ) -> None:
        self.request = request
        self.deferred = deferred
        self.on_success = on_success


class EndpointSession(  # reflex hook: ReflexMethods
    SocketTable, SessionTimers, RequestMethods, ReflexMethods, Protocol
):
    """The controller's end of one endpoint connection.

    On connection it sends the setup: one `cdata` per program in `programs` (encoded
    programs, sent with hint "monitor"; or ready `Cdata` messages), then `start`. `ready`
    fires with the session once `start` succeeded, and errbacks with SetupFailed (or
    SessionClosed) otherwise. Requests may be issued before that; they queue behind `start`.

    With `start=False` (and no programs) nothing is sent and `ready` fires on connection:
    an mlet gets a session its experiment manager has already started (§7.3).

    `reactor` provides timeouts for `Socket.get(timeout)` and the helpers; `clock_ns` is the
    local clock (ns since the epoch) used by clock-offset estimation.
    """

    log = Logger()

    def __init__(
        self,
        *,
        programs: Iterable[bytes | Cdata] = (),
        reactor: IReactorTime | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        max_notes: int = DEFAULT_MAX_NOTES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        start: bool = True,
        answer_timeout: float | None = ANSWER_TIMEOUT,
        close_grace: float | None = CLOSE_GRACE,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = cast(IReactorTime, default_reactor)
        self.reactor: Any = reactor  # IReactorTime (typed Any: no mypy-zope here)
        self.clock_ns = clock_ns
        self.max_notes = max_notes
        self.max_bytes = max_bytes
        self.setup_messages: list[Cdata | Start] = [
            p if isinstance(p, Cdata) else Cdata(CDATA_HINT_MONITOR, p) for p in programs
        ]
        if start:  # False: already started (an mlet: the manager sent cdata and start)
            self.setup_messages.append(Start())
        self.ready: Deferred[EndpointSession] = Deferred()
        self.linfo: list[Linfo] = []  # monitor info messages (§8.4)
        self.stray_notes = 0  # notifications for sockets we do not know
        self.unknown_messages = 0  # frames of undefined types (logged, then counted)
        self.linfo_dropped = 0  # linfo beyond MAX_LINFO or MAX_LINFO_BYTES
        self.linfo_bytes = 0
        self.answer_timeout = answer_timeout
        self.close_grace = close_grace
        self.suspended = False
        self.close_reason: ControllerError | None = None  # None while open or after close()
        self.peer = "?"
        self._out: Any = None
        self._link: Any = None  # corkable frame writer over _out (packetlab.tls.directwrite)
        self._write: Callable[[bytes], None] = lambda frame: None
        self._framer = wire.Framer(MAX_FRAME_BODY)
        self._head: bytes | None = b""  # the first bytes, until two are here (TLS check)
        self._pending: deque[_Pending] = deque()
        self._sockets: dict[int, Socket] = {}
        self._opening: dict[int, tuple[int, int]] = {}  # sktid -> (family, proto)
        self._tags: dict[int, tuple[int, Deferred[Ntag]]] = {}
        self._next_tag = 0
        self._gate = _WriteGate()
        self._full: set[Socket] = set()
        self._paused = False
        self._pumping = False
        self._closing = False  # we asked for the close (EOF): a clean end
        self._dead = False  # no more input is processed
        self._lost = False
        self._closed_waiters: list[Deferred[None]] = []
        self._answers = 0  # responses taken (the answer watchdog's progress count)
        self._watch_seen = 0
        self._watch_since = 0.0
        self._watch_armed = 0.0
        self._watchdog: Any = None  # DelayedCall while requests wait
        self._cut: Any = None  # DelayedCall: abort if the endpoint ignores our EOF
        #: Shared by the sessions of one listener (`Controller`): the lines an endpoint
        #: causes at will (its violations, unknown frames, linfo, losses in the setup)
        #: are at most `burst` a minute over all of them, the rest counted.
        self.log_budget: LogBudget | None = None
        #: Called first thing in connectionMade: under TLS only once the endpoint's chain
        #: passed the check (a refused endpoint never connects its session).
        self.on_connected: Callable[[EndpointSession], object] | None = None

    # ---------------------------------------------------------------- Protocol interface

    def connectionMade(self) -> None:
        if self.on_connected is not None:
            self.on_connected(self)
        self._out = self.transport  # typed Any: zope interfaces confuse mypy
        peer = self._out.getPeer()
        self.peer = host_port(peer)
        nodelay = getattr(self._out, "setTcpNoDelay", None)
        if nodelay is not None:
            try:
                nodelay(True)
            except Exception:  # not a TCP socket underneath (tests, unix sockets)
                pass
        self._out.registerProducer(self._gate, True)
        # Requests written in one read or one reactor turn (a train's nsends) leave in one
        # send, one TLS record each; not over fake transports, which have no socket.
        self._link = link = frame_writer(self._out)
        if socket_connection(self._out) is not None:
            link.batch_turns(self.reactor)
        self._write = link.write
        Deferred.fromCoroutine(self._setup())

    async def _setup(self) -> None:
        sent = [(m, self.request(m)) for m in self.setup_messages]
        try:
            for _msg, d in sent:
                try:
                    await d
                except RequestFailed as e:
                    raise SetupFailed(f"setup refused: {e}") from e
        except ControllerError as e:
            for _, d in sent:
                d.addErrback(lambda f: None)
            if not isinstance(getattr(e, "cause", None), ProtocolViolation | AnswerTimeout):
                self._say("warn", "endpoint {peer}: {error}", peer=self.peer, error=e)
            if not self.ready.called:
                self.ready.errback(e)
            self.abort(e)
            return
        self.ready.callback(self)

    def dataReceived(self, data: bytes) -> None:
        if self._dead:
            return
        if self._head is not None:  # the stream's first bytes: is it TLS?
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, None
            if data[0] == TLS_HANDSHAKE and data[1] == 3:
                self._violation(
                    "the endpoint started a TLS handshake, but this controller listens in "
                    "plain TCP: listen with TLS (tls_server, run_on_link; `pktlab run` "
                    "without --insecure-plaintext) or start the endpoint with "
                    "--insecure-plaintext"
                )
                return
        self._pump(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self._cancel_cut()
        if self._link is not None:
            self._link.discard()
        if not self._dead:
            if self._closing:
                self._finish(None)
            elif self.suspended:
                self._finish(Suspended())
            else:
                clean = isinstance(reason.value, ConnectionDone)  # the text says it
                cause = None if clean else reason.value
                first = self._pending[0].request if self._pending else None
                text = loss_text(clean, first, len(self._pending), self._framer)
                self._finish(SessionClosed(text, cause))
        waiters, self._closed_waiters = self._closed_waiters, []
        for d in waiters:
            d.callback(None)

    # ---------------------------------------------------------------- requests

    def request(
        self, msg: Message, on_success: Callable[[], None] | None = None
    ) -> Deferred[Response]:
        """Send any request message; the Deferred fires with its `Result` or `Mdata`.

        A non-SUCCESS result errbacks with RequestFailed; `on_success` runs just before the
        Deferred fires on success.
        """
        if self._out is None and not self._dead:
            return fail(SessionClosed(NOT_CONNECTED))
        if self._dead or self._closing:
            return fail(self._closed_error())
        try:
            frame = private_frame(msg) or wire.encode(msg)  # reflex hook: private requests
        except wire.EncodeError as e:
            return fail(field_error(msg) or e)
        if on_success is None and isinstance(msg, Nopen):  # a raw nopen: track it too
            nopen = msg

            def on_success() -> None:
                self._opened(nopen, True)

        d: Deferred[Response] = Deferred()
        if not self._pending:
            self._watch_since = steady(self.reactor)  # the wait starts now
            self._watch_seen = self._progress()
            if self._watchdog is None and self.answer_timeout is not None:
                self._arm_watchdog()
        self._pending.append(_Pending(msg, d, on_success))
        self._write(frame)
        return d

    @property
    def pending(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._pending)

    def wait_writable(self) -> Deferred[None]:
        """Fires once the transport's write buffer has room (use it when sending many
        requests in a loop)."""
        return self._gate.wait()

    def close(self) -> Deferred[None]:
        """End the session cleanly: EOF to the endpoint (§1.4 step 7). Fires once the
        connection is gone."""
        d: Deferred[None] = Deferred()
        if self._lost or self._out is None:  # gone, or never connected
            d.callback(None)
            return d
        self._closed_waiters.append(d)
        if not self._closing and not self._dead:
            self._closing = True
            self._link.flush()
            self._unregister_gate()
            self._out.loseConnection()
            self._arm_cut()
        return d

    def abort(self, error: ControllerError) -> None:
        """End the session at once with `error` (pending requests errback)."""
        if self._dead:
            return
        self._finish(error)
        self._unregister_gate()
        if self._out is not None and not self._lost:
            self._link.flush()
            self._out.loseConnection()
            self._arm_cut()

    def abort_connection(self) -> None:
        """Cut the connection now (no flushing); for an endpoint that does not close."""
        if self._out is not None and not self._lost:
            self._out.abortConnection()

    def when_closed(self) -> Deferred[None]:
        """Fires once the connection is gone (see `close_reason` for why)."""
        if self._lost:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed_waiters.append(d)
        return d

    def _pump(self, data: bytes = b"") -> None:
        if self._pumping:  # re-entered from a callback: the outer loop takes these frames
            if data:
                self._framer.feed(data)  # buffers at once; the returned iterator is unused
            return
        if self._paused:  # delivered after pauseProducing: held until reads resume
            self._framer.feed(data)  # (_update_pause pumps them; the iterator is unused)
            return
        self._pumping = True
        try:
            frames = self._framer.feed(data)
            try:
                for item in frames:
                    self._dispatch(item)
                    if self._paused or self._dead:
                        break
            finally:
                frames.close()  # type: ignore[attr-defined,unused-ignore]
        except wire.FrameTooLarge as e:
            part = self._framer.partial
            name = f" ({type_name(part[0])})" if part else ""
            self._violation(
                f"the endpoint announced a frame{name} with a {e.length}-byte body, more "
                f"than any endpoint sends (limit {e.limit}; stream offset {e.offset})"
            )
        finally:
            self._pumping = False

    def _dispatch(self, item: wire.Item) -> None:
        if isinstance(item, Result | Mdata):
            self._on_response(item)
        elif isinstance(item, _NOTES):
            self._on_note(item)
        elif isinstance(item, Linfo):
            size = len(item.name) + len(item.aux) + len(item.info)
            if len(self.linfo) >= MAX_LINFO or self.linfo_bytes + size > MAX_LINFO_BYTES:
                self.linfo_dropped += 1  # a reference endpoint sends one per monitor
                if self.linfo_dropped == 1:
                    self._say(
                        "warn",
                        "endpoint {peer} sent more than {n} linfo messages or {b} bytes of "
                        "them; dropping the rest (counted in linfo_dropped)",
                        peer=self.peer,
                        n=MAX_LINFO,
                        b=MAX_LINFO_BYTES,
                    )
                return
            self.linfo_bytes += size
            self.linfo.append(item)
            self._say(
                "info",
                "endpoint {peer} linfo {name}: {info}",
                peer=self.peer,
                name=item.name.decode("utf-8", "replace"),
                info=item.info[:200].decode("utf-8", "replace"),
            )
        elif isinstance(item, Suspd):
            # Pre-empted. The reference endpoint closes next (the loss then says
            # Suspended); ours holds the session and sends resumd later: requests wait.
            self.suspended = True
            self.log.info("endpoint {peer} suspended the experiment (suspd)", peer=self.peer)
        elif isinstance(item, Resumd):
            self.suspended = False
            self.log.info("endpoint {peer} resumed the experiment (resumd)", peer=self.peer)
        elif isinstance(item, wire.Malformed):
            e = item.error
            self._violation(
                f"malformed {type_name(item.msgtype)} from the endpoint "
                f"({len(item.body)}-byte body): {e.rule} (body offset {e.offset})"
            )
        elif isinstance(item, wire.Unknown):
            if self._reflex_note(item):  # reflex hook: rreport, rdetached
                return
            self.unknown_messages += 1
            if self.unknown_messages <= UNKNOWN_LOGGED:
                self._say(
                    "warn",
                    "endpoint {peer} sent unknown message type 0x{t:02x} ({n} bytes); "
                    "ignored{more}",
                    peer=self.peer,
                    t=item.msgtype,
                    n=len(item.body),
                    more=(
                        "; further unknown messages are only counted (unknown_messages)"
                        if self.unknown_messages == UNKNOWN_LOGGED
                        else ""
                    ),
                )
        else:
            self._violation(
                f"the endpoint sent a message it must not send: {item.NAME} (0x{item.TYPE:02x})"
            )

    def _on_response(self, msg: Response) -> None:
        if not self._pending:
            self._violation(f"the endpoint sent a {msg.NAME} with no request waiting")
            return
        p = self._pending.popleft()
        self._answers += 1
        req = p.request
        if isinstance(msg, Mdata):
            if not isinstance(req, Mread):
                self._pending.appendleft(p)  # so that it fails with the rest
                self._violation(f"the endpoint answered {req.NAME} with mdata")
                return
            if msg.addr != req.addr or len(msg.data) != req.len:  # always len bytes (§2.1)
                self._pending.appendleft(p)
                self._violation(
                    f"mdata for 0x{msg.addr:08x} ({len(msg.data)} bytes) answers "
                    f"mread 0x{req.addr:08x} ({req.len} bytes)"
                )
                return
            p.deferred.callback(msg)
            return
        if msg.errid:
            p.deferred.errback(RequestFailed(req, msg.errid, msg.monindx, msg.monerrid))
            return
        if isinstance(req, Mread):
            self._pending.appendleft(p)
            self._violation("the endpoint answered mread with result(SUCCESS) instead of mdata")
            return
        if isinstance(req, Nclose):
            self._closed_socket(req.sktid)
        if p.on_success is not None:
            p.on_success()
        p.deferred.callback(msg)
        if isinstance(req, Yield):  # the endpoint closes next (§1.4 step 5): a clean end
            self.close()

    def _on_note(self, note: Note) -> None:
        if isinstance(note, Ntag) and note.tag in self._tags:
            sktid, d = self._tags[note.tag]
            if sktid == note.sktid:
                del self._tags[note.tag]
                if note.errid:
                    d.errback(SendFailed(note.sktid, note.tag, note.time, note.errid))
                else:
                    d.callback(note)
                return
        sock = self._sockets.get(note.sktid)
        if sock is None:
            self.stray_notes += 1
            if self.stray_notes <= UNKNOWN_LOGGED:
                self._say(
                    "warn",
                    "endpoint {peer} sent {name} for socket {sktid}, which is not open; "
                    "dropped{more}",
                    peer=self.peer,
                    name=note.NAME,
                    sktid=note.sktid,
                    more=(
                        "; further ones are only counted (stray_notes)"
                        if self.stray_notes == UNKNOWN_LOGGED
                        else ""
                    ),
                )
            return
        sock.deliver(note)

    # ---------------------------------------------------------------- backpressure

    def _pressure(self, sock: Socket, full: bool) -> None:
        if full:
            self._full.add(sock)
            if not self._paused:
                self.log.info(
                    "endpoint {peer}: socket {sktid} has {n} unread notifications; "
                    "pausing reads until the experiment takes them (read "
                    "socket({sktid}).notifications(), or nopen with buffer=False)",
                    peer=self.peer,
                    sktid=sock.sktid,
                    n=sock.queued,
                )
        else:
            self._full.discard(sock)
        self._update_pause()

    def _update_pause(self) -> None:
        want = bool(self._full) and not self._dead
        if want == self._paused:
            return
        self._paused = want
        t = self._out
        if t is not None and not self._lost and not getattr(t, "disconnecting", False):
            if want:
                t.pauseProducing()
            else:
                t.resumeProducing()
        if not want and not self._dead:
            self._pump()  # frames already buffered

    @property
    def ended(self) -> bool:
        """True once the session is over (closed by either side, or cut by an error)."""
        return self._dead

    @property
    def paused(self) -> bool:
        """True while reading from the endpoint is paused for a full notification queue."""
        return self._paused

    # ---------------------------------------------------------------- ending

    def _violation(self, text: str) -> None:
        err = ProtocolViolation(text)
        self._say(
            "error", "endpoint {peer}: {error}; closing the session", peer=self.peer, error=err
        )
        self.abort(err)

    def _closed_error(self) -> SessionClosed:
        """A new exception each time: one instance raised into several coroutines grew one
        traceback with all their frames (up to session 31, tcp_exchange's showed
        udp_exchange's and read_time's lines)."""
        reason = self.close_reason
        if isinstance(reason, SessionClosed):
            return reason.again()
        if reason is not None:
            return SessionClosed("session ended", reason)
        return SessionClosed("session closed")

    def _finish(self, error: ControllerError | None) -> None:
        """Stop processing input; fail everything that waits."""
        if self._dead:
            return
        self._dead = True
        self.close_reason = error
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog.active():
            watchdog.cancel()
        closed = self._closed_error()
        pending, self._pending = self._pending, deque()
        for p in pending:
            p.deferred.errback(closed.again())
        tags, self._tags = self._tags, {}
        for tag, (sktid, d) in tags.items():
            # which send it was: an unawaited one is logged as an unhandled error
            err = SessionClosed(closed.reason, waiting=f"ntag {tag} of socket {sktid}")
            err.cause = closed.cause
            d.errback(err)
        sockets, self._sockets = self._sockets, {}
        reason = None if error is None else Failure(closed)
        for sock in sockets.values():
            sock.end(reason)
        self._full.clear()
        self._paused = False
        self._gate.resumeProducing()
        if not self.ready.called:
            self.ready.errback(closed)

    def _unregister_gate(self) -> None:
        t = self._out
        if t is not None and not self._lost:
            try:
                t.unregisterProducer()
            except RuntimeError:
                pass
