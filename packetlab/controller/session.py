"""One controller ⇄ endpoint session: a Protocol that sends requests and matches responses.

There are no request IDs in PacketLab (§1.1): every request gets exactly one `result` or
`mdata`, in request order, so pending requests are a FIFO of Deferreds. Notifications can sit
between responses; they are routed to the `Socket` of their sktid (or to the Deferred of a
tracked ntag). Each message is one `transport.write` (one TLS record: the reference endpoint
only answers the first message of a multi-message record, INTEROP.md) with TCP_NODELAY on.

Anything the protocol forbids from the endpoint (a malformed frame, a response with no
request waiting, ...) ends the session at once with `ProtocolViolation`, and every pending
Deferred errbacks with `SessionClosed`, so nothing hangs.
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
from packetlab.controller.addresses import unpack_address
from packetlab.controller.errors import (
    AnswerTimeout,
    ControllerError,
    ProtocolViolation,
    RequestFailed,
    SendFailed,
    SessionClosed,
    SetupFailed,
    SocketClosed,
    Suspended,
)
from packetlab.controller.reflexes import ReflexMethods, private_frame
from packetlab.controller.requests import RequestMethods
from packetlab.controller.sockets import DEFAULT_MAX_BYTES, DEFAULT_MAX_NOTES, Note, Socket
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
    Nsend,
    Nstat,
    Ntag,
    Result,
    Resumd,
    Start,
    Suspd,
    Yield,
)
from packetlab.wire.constants import CDATA_HINT_MONITOR, MAX_SKT_CNT

Response = Result | Mdata
_NOTES = (Ntag, Nstat, Ndata, Ndrop, Nblock)

#: Seconds requests may wait with no answer at all before the session is given up
#: (`AnswerTimeout`). Answers flowing keep it alive however long a pipeline is; our own
#: backpressure (paused reads) and a suspended experiment do not count.
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


class EndpointSession(RequestMethods, ReflexMethods, Protocol):  # reflex hook
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
        self.linfo_dropped = 0  # linfo beyond MAX_LINFO
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
        self._opening: set[int] = set()
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
        #: Called first thing in connectionMade: under TLS only once the endpoint's chain
        #: passed the check (a refused endpoint never connects its session).
        self.on_connected: Callable[[EndpointSession], object] | None = None

    # ---------------------------------------------------------------- Protocol interface

    def connectionMade(self) -> None:
        if self.on_connected is not None:
            self.on_connected(self)
        self._out = self.transport  # typed Any: zope interfaces confuse mypy
        peer = self._out.getPeer()
        host, port = getattr(peer, "host", None), getattr(peer, "port", None)
        self.peer = str(peer) if host is None else f"{host}:{port}"
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
            self.log.warn("endpoint {peer}: {error}", peer=self.peer, error=e)
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
                self._finish(SessionClosed(self._loss_text(reason), cause))
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
        if self._dead or self._closing or self._out is None:
            return fail(self._closed_error())
        try:
            frame = private_frame(msg) or wire.encode(msg)  # reflex hook: private requests
        except wire.EncodeError as e:
            return fail(_field_error(msg) or e)
        if on_success is None and isinstance(msg, Nopen):  # a raw nopen: track it too
            nopen = msg

            def on_success() -> None:
                self._opened(nopen, True)

        d: Deferred[Response] = Deferred()
        if not self._pending:
            self._watch_since = self.reactor.seconds()  # the wait starts now
            self._watch_seen = self._answers
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

    # ---------------------------------------------------------------- sockets and tags

    def socket(self, sktid: int) -> Socket:
        """The live `Socket` for `sktid`; made now (buffering, unknown family) if none is
        open, so callbacks can be attached before an nopen sent with `request()`. Once
        the session has ended it is an ended one (its `get()` gives None or the error)."""
        sock = self._sockets.get(sktid)
        if sock is None:
            if not 0 <= sktid < MAX_SKT_CNT:
                raise ValueError(f"sktid must be 0..255, got {sktid!r}")
            sock = self._new_socket(sktid, None, None, True)
            if self._dead:  # nothing more will come: its readers must not wait
                del self._sockets[sktid]
                reason = self.close_reason
                sock.end(None if reason is None else Failure(self._closed_error()))
        return sock

    def find_socket(self, sktid: int) -> Socket | None:
        """The live `Socket` for `sktid`, or None."""
        return self._sockets.get(sktid)

    def free_sktid(self) -> int:
        """The lowest sktid with no open or opening socket."""
        for sktid in range(MAX_SKT_CNT):
            if sktid not in self._opening and (
                sktid not in self._sockets or self._sockets[sktid].family is None
            ):
                return sktid
        raise ControllerError("all 256 socket ids are in use")

    def _new_socket(self, sktid: int, family: int | None, proto: int | None, buf: bool) -> Socket:
        sock = Socket(
            sktid,
            family,
            proto,
            self.reactor,
            buffering=buf,
            max_notes=self.max_notes,
            max_bytes=self.max_bytes,
            on_pressure=self._pressure,
        )
        self._sockets[sktid] = sock
        return sock

    def _opened(self, msg: Nopen, buffering: bool) -> Socket:
        self._opening.discard(msg.sktid)
        sock = self._sockets.get(msg.sktid)
        if sock is not None and sock.family is None and not sock.ended:
            sock.family, sock.proto, sock.buffering = msg.family, msg.proto, buffering
        else:
            if sock is not None:
                sock.end()
            sock = self._new_socket(msg.sktid, msg.family, msg.proto, buffering)
        if msg.raddr is not None and msg.rport is not None:
            try:
                addr = unpack_address(msg.family, msg.raddr)
            except ValueError:
                pass
            else:
                host = f"[{addr}]" if addr.version == 6 else str(addr)
                sock.remote = f"{host}:{msg.rport}"
        return sock

    def _nopen_sent(self, sktid: int) -> None:
        self._opening.add(sktid)

    def _nopen_done(self, sktid: int) -> None:
        self._opening.discard(sktid)

    def _closed_socket(self, sktid: int) -> None:
        sock = self._sockets.pop(sktid, None)
        if sock is not None:
            sock.end()
            self._full.discard(sock)
            self._update_pause()
        for tag, (tsk, d) in list(self._tags.items()):
            if tsk == sktid:
                del self._tags[tag]
                d.errback(SocketClosed(sktid, f"ntag {tag}"))

    def _track_tag(self, sktid: int, tag: int | None = None) -> tuple[int, Deferred[Ntag]]:
        if tag is not None:
            if tag in self._tags:
                raise ValueError(f"tag {tag} is already waiting for its ntag")
        elif len(self._tags) >= 0xFFFF:
            raise ValueError("all 65535 ntag tags are waiting for their ntag")
        else:
            tag = self._next_tag
            while True:
                tag = tag % 0xFFFF + 1
                if tag not in self._tags:
                    break
            self._next_tag = tag
        # Cancelling (a timeout) forgets the tag, so a late ntag goes to the socket's queue.
        d: Deferred[Ntag] = Deferred(lambda _: self._untrack_tag(tag))
        self._tags[tag] = (sktid, d)
        return tag, d

    def _untrack_tag(self, tag: int) -> None:
        self._tags.pop(tag, None)

    # ---------------------------------------------------------------- input

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
            name = f" ({_type_name(part[0])})" if part else ""
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
            if len(self.linfo) >= MAX_LINFO:  # a reference endpoint sends one per monitor
                self.linfo_dropped += 1
                if self.linfo_dropped == 1:
                    self.log.warn(
                        "endpoint {peer} sent more than {n} linfo messages; dropping the rest",
                        peer=self.peer,
                        n=MAX_LINFO,
                    )
                return
            self.linfo.append(item)
            self.log.info(
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
                f"malformed {_type_name(item.msgtype)} from the endpoint "
                f"({len(item.body)}-byte body): {e.rule} (body offset {e.offset})"
            )
        elif isinstance(item, wire.Unknown):
            if self._reflex_note(item):  # reflex hook: rreport, rdetached
                return
            self.unknown_messages += 1
            if self.unknown_messages <= UNKNOWN_LOGGED:
                self.log.warn(
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
                self.log.warn(
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
    def paused(self) -> bool:
        """True while reading from the endpoint is paused for a full notification queue."""
        return self._paused

    # ---------------------------------------------------------------- ending

    def _loss_text(self, reason: Failure) -> str:
        """What a user needs to know of an unexpected loss: who closed, what was left."""
        clean = isinstance(reason.value, ConnectionDone)
        text = "the endpoint closed the connection" if clean else "connection lost"
        if self._pending:
            first = self._pending[0].request.NAME
            n = len(self._pending)
            text += f" with {n} request{'s' if n > 1 else ''} unanswered (first: {first})"
        text += self._partial_text()
        if self._pending:
            text += _loss_hint(self._pending[0].request)
        return text

    def _partial_text(self) -> str:
        part = self._framer.partial
        if part is None:
            return ""
        msgtype, held, whole = part
        if whole < 0:
            return f", in the middle of a frame header ({held} of 4 bytes)"
        if held < whole:
            return f", in the middle of a frame ({_type_name(msgtype)}, {held} of {whole} bytes)"
        return ""  # whole frames not read yet (paused): nothing was cut

    def _arm_watchdog(self) -> None:
        assert self.answer_timeout is not None
        self._watch_armed = self.reactor.seconds()
        self._watchdog = self.reactor.callLater(self.answer_timeout / 4, self._watch)

    def _watch(self) -> None:
        """Every timeout/4 while requests wait: give up once no answer came for the whole
        timeout (not counting time paused by us or suspended by the endpoint)."""
        self._watchdog = None
        if self._dead or not self._pending or self.answer_timeout is None:
            return
        now = self.reactor.seconds()
        # Late by more than a period: the reactor itself was held up (the experiment's own
        # work), so answers may be waiting unread in the socket: that time does not count.
        stalled = now - self._watch_armed > self.answer_timeout / 2
        if self._answers != self._watch_seen or self._paused or self.suspended or stalled:
            self._watch_seen = self._answers
            self._watch_since = now
        elif now - self._watch_since >= self.answer_timeout:
            first = self._pending[0].request.NAME
            n = len(self._pending)
            text = (
                f"the endpoint answered none of {n} waiting request{'s' if n > 1 else ''} "
                f"(first: {first}) for {self.answer_timeout:g} s"
            )
            err = AnswerTimeout(text + self._partial_text())
            self.log.error(
                "endpoint {peer}: {error}; closing the session", peer=self.peer, error=err
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
            self.log.warn(
                "endpoint {peer} did not close within {s:g} s of our close; cutting the connection",
                peer=self.peer,
                s=self.close_grace,
            )
            self._out.abortConnection()

    def _violation(self, text: str) -> None:
        err = ProtocolViolation(text)
        self.log.error("endpoint {peer}: {error}; closing the session", peer=self.peer, error=err)
        self.abort(err)

    def _closed_error(self) -> SessionClosed:
        if self.close_reason is not None:
            if isinstance(self.close_reason, SessionClosed):
                return self.close_reason
            return SessionClosed("session ended", self.close_reason)
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
            p.deferred.errback(closed)
        tags, self._tags = self._tags, {}
        for _, d in tags.values():
            d.errback(closed)
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


# The width of every integer field a request carries (PROTOCOL.md §1.2).
_WIDTHS = {
    "sktid": 8, "family": 8, "proto": 8, "command": 8, "tag": 16, "len": 16, "lport": 16,
    "rport": 16, "addr": 32, "rbufsz": 32, "time": 64, "endtime": 64, "rhint": 64,
}  # fmt: skip


def _field_error(msg: Message) -> wire.EncodeError | None:
    """`nclose: sktid must be 0..255, got 300` for a field out of its wire range."""
    for name, bits in _WIDTHS.items():
        value = getattr(msg, name, None)
        if isinstance(value, int) and not 0 <= value < 1 << bits:
            return wire.EncodeError(f"{msg.NAME}: {name} must be 0..{(1 << bits) - 1}, got {value}")
    return None


def _loss_hint(req: Message) -> str:
    """Why a reference endpoint closes instead of answering `req`, where it is known."""
    if isinstance(req, Cdata | Start):
        return (
            " (an endpoint closes before answering the setup when it refuses the "
            "experiment after TLS: exp_priority above the chain's max_num_priority, or the "
            "certificates' experiment time or validity used up; §1.4 step 2)"
        )
    if isinstance(req, Nopen) and req.proto == 6 and req.raddr is None:
        return " (a reference 1.1.0 endpoint exits on a TCP listen nopen: §3.1)"
    if isinstance(req, Nsend | Nopen) and req.proto == 17 and req.family == 6:
        return " (a reference 1.1.0 endpoint aborts on UDP over IPv6: §3.1)"
    return ""


def _type_name(msgtype: int) -> str:
    cls: Any = wire.BY_TYPE.get(msgtype)
    return cls.NAME if cls is not None else f"type 0x{msgtype:02x}"
