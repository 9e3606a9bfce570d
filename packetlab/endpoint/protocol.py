"""The controller connection: feeds the framer into the session, the outbox into the
transport, with backpressure both ways (PROTOCOL.md §1.1, §1.4).

* Outgoing: we are the transport's streaming producer. While it takes frames they go
  straight through; when it pauses us, frames wait in the outbox (and ndata keep their
  budget, so TCP sockets stop reading and UDP sockets drop).
* Incoming: we stop taking requests from the framer, and pause the transport, while
  `MAX_QUEUED` (100) or more frames wait in the outbox; below that we carry on. Meanwhile
  TCP sockets read no more (`ReceivePath.held_back`): their budgets may pay for more than
  100 ndata, which kept the outbox full and the requests unread for good. While a
  cdata's program compiles in a worker thread (`Session.waiting`) no request is handled;
  they wait in the framer, and past `WAIT_BUFFER` bytes we pause the transport too.

The transport is whatever the connector gave us (TLS or plain TCP): this class only needs
ITransport + IProducer, and TCP_NODELAY when the transport offers it. Frames go out through
`packetlab.tls.directwrite.frame_writer`: corked during each read and each reactor turn,
then one `send` (one TLS record per frame); a long read's answers leave every
`FLUSH_AFTER` seconds of work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet import defer
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from packetlab.endpoint.checks import SessionRefused
from packetlab.endpoint.session import Phase, Session, SessionEnd
from packetlab.hostport import host_port
from packetlab.tls.directwrite import frame_writer, socket_connection
from packetlab.wire.codec import encode
from packetlab.wire.constants import MAX_MSGQ_LEN
from packetlab.wire.framer import Framer, Item
from packetlab.wire.messages import Resumd, Suspd

__all__ = [
    "FLUSH_AFTER",
    "LINGER_TIMEOUT",
    "MAX_QUEUED",
    "SETUP_TIMEOUT",
    "WAIT_BUFFER",
    "ControllerProtocol",
]

MAX_QUEUED = MAX_MSGQ_LEN  # stop reading requests while this many frames wait
SETUP_TIMEOUT = 10.0  # STATE_SET_UP_TIME (s)
CLOSE_TIMEOUT = 10.0  # at most this long to flush the last frames to a stalled controller
# After the last frame went to the transport we read (and drop) what the controller still
# sends until it closes, for at most this long; then we close (see _lose).
LINGER_TIMEOUT = 2.0
# A long read's answers leave every FLUSH_AFTER seconds of work on it (one send, one TLS
# record per frame) rather than at its end, so the controller reads them and sends more
# requests while we handle the rest of the read (each on its CPU) instead of waiting for
# the whole read; a short read's answers still leave in one send. Time, not a count:
# requests that cost little (plain TCP) need no split, and a split costs a send and a
# wake-up of the controller. Picked with bench_endpoint (docs/performance.md).
FLUSH_AFTER = 300e-6
# While a cdata's program compiles, requests wait in the framer, up to this many bytes;
# then we stop reading until it is answered.
WAIT_BUFFER = 256 * 1024
# Bytes the transport may hold before it pauses us. Twisted also reads with this size, and
# above glibc's mmap threshold (128 KiB) every read would cost mmap+mremap+munmap.
TRANSPORT_BUFFER = 120 * 1024


@implementer(IPushProducer, IHalfCloseableProtocol)
class ControllerProtocol(Protocol):
    log = Logger()

    def __init__(self, make_session: Callable[[], Session], reactor: IReactorTime) -> None:
        self._make_session = make_session
        self._reactor = reactor
        self.session: Session | None = None
        self.framer = Framer()
        self._items: Iterator[Item] = iter(())
        self._read_paused = False
        self._consuming = False
        self._closing = False
        self._setup_timer: IDelayedCall | None = None
        self._link: Any = None  # corkable frame writer over the transport (directwrite)
        self._close_timer: IDelayedCall | None = None
        self._linger_timer: IDelayedCall | None = None
        self._refused: SessionRefused | None = None
        self._peer = "?"  # the controller as host:port (connectionMade)
        self._heard = False  # any byte from the controller yet
        self._ending: str | None = None  # why we closed it ourselves (end_session)
        self.suspended = False  # pre-empted: see suspend()
        self._wait_paused = False  # a cdata's program compiles and WAIT_BUFFER bytes wait
        self._setup_late = False  # the setup window passed while it compiled
        self._out_paused = False  # the transport paused us
        self._read_eof = False  # the controller half-closed: nothing more to read
        #: Fires with the SessionEnd once the connection is gone.
        self.done: defer.Deferred[SessionEnd] = defer.Deferred()

    @property
    def _t(self) -> Any:
        """The transport with its TCP/TLS extras (producer, abortConnection, ...)."""
        return self.transport

    def connectionMade(self) -> None:
        transport = self._t
        set_nodelay = getattr(transport, "setTcpNoDelay", None)
        if set_nodelay is not None:
            set_nodelay(True)
        if hasattr(transport, "bufferSize"):
            transport.bufferSize = TRANSPORT_BUFFER
        self._peer = host_port(transport.getPeer())
        try:
            try:
                self.session = session = self._make_session()
            except SessionRefused:
                raise
            except Exception as e:
                # Not the chain's fault (a module unreadable after `twistd -u`, a bug):
                # refused the same way, its traceback logged once. Raised out of here, it
                # left the connect cycle (ClientService) stuck: no session, no reconnect.
                self.log.failure("cannot make a session for this controller")
                raise SessionRefused("internal", f"{type(e).__name__}: {e}") from e
        except SessionRefused as e:  # the chain's limits allow no session now (§1.4)
            self._refused = e
            self._closing = True  # what the controller sent already is read and dropped
            self.log.warn(  # the error starts with the rule (SessionRefused's text)
                "refusing controller {peer}: {error}",
                peer=self._peer,  # was IPv4Address(type='TCP', ...)
                rule=e.rule,
                error=str(e),
            )
            self._refuse()
            return
        transport.registerProducer(self, True)
        # Frames written by timers and socket events (ntag, ndata) leave once per reactor
        # turn; the answers to a read at the end of that read (a long read: every
        # FLUSH_AFTER seconds of work).
        self._link = link = frame_writer(transport)
        link.batch_turns(self._reactor)
        session.outbox.on_drain = self._drained
        session.on_ready = self._ready
        session.outbox.attach(link.write)
        self._setup_timer = self._reactor.callLater(SETUP_TIMEOUT, self._setup_expired)
        self.log.info("controller session started with {peer}", peer=self._peer)

    # -- requests in -------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._heard = True
        if self._closing:
            return
        if self.suspended:  # bytes already in flight when we paused: keep them for later
            self._refeed(data)
            return
        # The answers to one read leave together (a long read's in chunks, see
        # FLUSH_AFTER): one send, one TLS record each.
        link = self._link
        link.cork()
        try:
            self._refeed(data)
            self._consume()
        finally:
            link.uncork()
        if self.session is not None and self.session.waiting is not None:
            self._hold()

    def _hold(self) -> None:
        """While a cdata's program compiles: read on (a hang-up ends the session now), but
        stop once `WAIT_BUFFER` bytes of requests wait unhandled."""
        if not self._wait_paused and self.framer.buffered > WAIT_BUFFER:
            self._wait_paused = True
            self._t.pauseProducing()

    def _refeed(self, data: bytes = b"") -> None:
        close = getattr(self._items, "close", None)
        if close is not None:
            close()  # the previous iterator was abandoned part-way: frames stay buffered
        self._items = self.framer.feed(data)

    def _consume(self) -> None:
        session = self.session
        if self._consuming or session is None or self.suspended or session.waiting is not None:
            return
        self._consuming = True
        try:
            outbox = session.outbox
            flush = self._link.flush
            now = self._reactor.seconds
            due = now() + FLUSH_AFTER
            for item in self._items:
                session.handle(item)
                if session.ended is not None:
                    self._end(session.ended)
                    return
                if session.waiting is not None:
                    # A cdata's program compiles in a worker thread: the requests after
                    # it wait in the framer until it is answered (_ready).
                    self._hold()
                    return
                if now() >= due:
                    flush()
                    due = now() + FLUSH_AFTER
                # Frames wait only while the outbox is paused (otherwise each is written
                # at once); the flag first spares a len() call per request.
                if outbox.paused and len(outbox) >= MAX_QUEUED:
                    if not self._read_paused:
                        self._read_paused = True
                        self._t.pauseProducing()
                    session.receiving.held_back = True  # until the outbox drains
                    return
            if self._setup_timer is not None and session.phase is not Phase.SETUP:
                self._setup_timer.cancel()
                self._setup_timer = None
            if self._read_paused:
                self._read_paused = False
                self._t.resumeProducing()
            receiving = session.receiving
            if receiving.held_back:  # the waiting requests came first; now the data again
                receiving.held_back = False
                receiving.unblock()
            if self._read_eof and not self._closing:  # the last requests are answered
                self._input_over()
        finally:
            self._consuming = False

    def _ready(self) -> None:
        """The cdata's program is loaded (its answer is in the outbox): read on."""
        session = self.session
        if self._consuming or self._closing or session is None:
            return
        link = self._link
        link.cork()
        try:
            self._refeed()
            self._consume()
        finally:
            link.uncork()
        if session.ended is not None:  # e.g. ended by a request the session held
            self._end(session.ended)
        if self._closing or session.waiting is not None:
            return
        if self._setup_late:  # the timer fired during the compile: as a blocked reactor
            self._setup_late = False
            self._setup_expired()
            if session.ended is not None:
                return
        if self._wait_paused:
            self._wait_paused = False
            if not self._read_paused and not self.suspended:
                self._t.resumeProducing()

    def _drained(self) -> None:
        session = self.session
        if session is None:
            return
        if self._closing:
            if not len(session.outbox):
                self._lose()
        elif self._read_paused and len(session.outbox) < MAX_QUEUED:
            self._refeed()
            self._consume()
        elif session.ended is not None:
            self._end(session.ended)

    # -- frames out (IPushProducer, driven by the transport) ----------------------------

    def pauseProducing(self) -> None:
        self._out_paused = True
        if self.session is not None:
            self.session.outbox.pause()

    def resumeProducing(self) -> None:
        self._out_paused = False
        if self.session is not None and not self.suspended:
            link = self._link
            link.cork()  # the drained frames (and answers to requests it lets in) together
            try:
                self.session.outbox.resume()
            finally:
                link.uncork()

    # -- pre-emption (broker mode, docs/broker.md) -----------------------------------

    def suspend(self) -> None:
        """A higher-priority experiment pre-empts this one: tell the controller (`suspd`),
        then hold the session as it is: no request is read, notifications wait in the
        outbox (their budgets stay charged, so TCP sockets stop reading and UDP drops,
        §3.5). Sockets, budgets and accounting are kept for `resume()`."""
        session = self.session
        if self.suspended or self._closing or session is None or self.transport is None:
            return
        self.suspended = True
        session.outbox.pause()
        self._link.write(encode(Suspd()))  # ahead of the held notifications
        self._link.flush()
        self._t.pauseProducing()

    def resume(self) -> None:
        """The pre-empting experiment ended: `resumd`, then carry on where we stopped."""
        session = self.session
        if not self.suspended or session is None or self.transport is None:
            return
        self.suspended = False
        link = self._link
        link.cork()
        try:
            link.write(encode(Resumd()))
            if not self._out_paused:
                session.outbox.resume()
            if not self._read_paused and not self._wait_paused:
                self._t.resumeProducing()
            self._refeed()
            self._consume()
        finally:
            link.uncork()

    def stopProducing(self) -> None:
        pass  # connectionLost follows

    # -- ending ------------------------------------------------------------------------

    def _setup_expired(self) -> None:
        self._setup_timer = None
        if self.session is not None and self.session.waiting is not None:
            # A cdata's program compiles: the window ends after its answer and the
            # requests read before (the reference compiles inline, so its timer waits).
            self._setup_late = True
            return
        if self.session is not None and self.session.expire_setup():
            self._t.abortConnection()

    def _end(self, end: SessionEnd) -> None:
        """The session asked to end: flush what is queued, then close."""
        if self._closing:
            return
        self._closing = True
        # (no line: `session over` says the reason once the close is done; `session
        # ending: REASON` before it said it a second time)
        self._flush_then_close()

    def _flush_then_close(self) -> None:
        if self._setup_timer is not None:
            self._setup_timer.cancel()
            self._setup_timer = None
        self._close_timer = self._reactor.callLater(CLOSE_TIMEOUT, self._close_expired)
        assert self.session is not None
        if not len(self.session.outbox):
            self._lose()

    # -- IHalfCloseableProtocol (plain TCP's FIN; over TLS the controller's close_notify,
    # with the Python record layer: packetlab.tls.protocol) --

    def readConnectionLost(self) -> None:
        """The controller's EOF while it can still read (a half-close; a full close looks
        the same until our writes fail). The session ends as at a close, but the answers
        already queued go out first, then we close (within CLOSE_TIMEOUT). They were
        dropped: 2,000 pipelined 64 KiB mreads and a half-close got 1,912 answers."""
        self._read_eof = True
        session = self.session
        if session is None or not self._heard or self.suspended:
            self._close_now()  # nothing to answer (or nothing leaves until a resume)
            return
        if self._closing:  # ending already: lingering is over, or _lose will close
            if self._linger_timer is not None:
                self._close_now()
            return
        if self._read_paused:
            return  # requests wait behind a full outbox (TLS read past them): _consume
        self._input_over()

    def _close_now(self) -> None:
        try:  # TLS sends its close_notify only once no producer is registered
            self._t.unregisterProducer()
        except RuntimeError:
            pass
        self._t.loseConnection()

    def _input_over(self) -> None:
        """Every request before the controller's EOF is handled: end the session."""
        assert self.session is not None
        self._closing = True
        self.session.input_ended()
        self._flush_then_close()

    def writeConnectionLost(self) -> None:
        pass  # our FIN after the last answer (_lose): the controller's EOF ends it

    def _lose(self) -> None:
        """Every answer is with the transport: half-close, and read until the controller
        closes, at most LINGER_TIMEOUT (then close; the flush stays bounded by
        CLOSE_TIMEOUT). Closing at once would make the kernel answer bytes the
        controller still sends with a reset, and a reset discards the answers the
        controller has received but not yet read (issue 15)."""
        self._link.flush()
        # TLS waits for the producer to go before its close_notify: unregister first.
        try:
            self._t.unregisterProducer()
        except RuntimeError:
            pass
        self._linger_close()

    def _linger_close(self) -> None:
        """Half-close (TLS: close_notify, then FIN) and close once the controller has
        closed, or after LINGER_TIMEOUT."""
        fd = socket_connection(self.transport, FileDescriptor)
        if fd is None or self._read_eof:  # not a socket (tests), or nothing more will come
            self._t.loseConnection()
            return
        if fd is not self._t:
            self._t.loseConnection()  # TLS: close_notify after the last record
        fd.loseWriteConnection()  # FIN once everything written so far has left
        if self._read_paused:
            self._read_paused = False
            self._t.resumeProducing()
        self._linger_timer = self._reactor.callLater(LINGER_TIMEOUT, fd.loseConnection)

    def _refuse(self) -> None:
        """A refused session ends as the reference's does (its `check_exp_priority`
        refusal, beside `rlim_begin`, observed: close_notify, then FIN; the protocol has
        no message saying why, BROKER-PROXY-OBSERVED.md §2.2). It was an abort: a reset,
        which the controller saw as `lost in a non-clean fashion`. The close lingers as
        `_lose`'s does: closing at once with the controller's first requests unread
        would make the kernel send a reset all the same."""
        self._linger_close()  # no producer registered yet: TLS's close_notify goes now

    def _close_expired(self) -> None:
        self._close_timer = None
        self.log.warn("controller did not take the last frames in {t} s", t=CLOSE_TIMEOUT)
        self._t.abortConnection()

    def _silent_close(self) -> str:
        """The controller closed without a byte: over TLS, what a controller does that
        refuses our certificate chain (it checks it after the handshake and aborts,
        with no alert), so say so rather than leave the operator guessing."""
        text = "controller closed the connection before its first message"
        fd = socket_connection(self.transport, FileDescriptor) if self.transport else None
        if fd is not None and fd is not self._t:
            text += (
                " (right after the TLS handshake: a controller that refuses this "
                "endpoint's certificate chain does so; see the controller's log)"
            )
        return text

    def end_session(self, why: str = "the endpoint is stopping", *, drain: bool = False) -> None:
        """Close from our side. `why` is the session's end reason in the log (it said
        `controller closed the connection` when the endpoint was stopped). The endpoint
        stopping aborts: no more frames. With `drain` (the experiment's end time, §4.5)
        the session ends as at the controller's EOF: sockets freed, what is queued goes
        out, then close_notify and FIN as a refusal's (`_lose`). It aborted too: a reset,
        which lost the queued answers and notifications and which the controller saw as
        a connection lost, not closed."""
        if self.transport is None:
            return
        self._ending = self._ending or why
        session = self.session
        if drain and session is not None and not self.suspended:
            if not self._closing:
                session.input_ended(f"closed by the endpoint: {why}")
                assert session.ended is not None
                self._end(session.ended)
            return
        self._t.abortConnection()

    def _log_over(self, end: SessionEnd) -> None:
        """The session's last line. One the endpoint ended (a malformed request, no
        start in time, start refused) is a warning with what an operator greps for: the
        controller, the status answered, the request's type (a field). The reason was
        said 3 times in 5 lines (a warning, `session ending`, `session over`)."""
        if end.clean:
            self.log.info("session over: {reason}", reason=end.reason)
            return
        answered = "" if end.answered is None else f", answered {end.answered}"
        self.log.warn(
            "session over: {reason} (controller {peer}{answered})",
            reason=end.reason,
            peer=self._peer,
            answered=answered,
            code=end.answered,
            msgtype=end.msgtype,
        )

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        for timer in (self._setup_timer, self._close_timer, self._linger_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._setup_timer = self._close_timer = self._linger_timer = None
        if self._link is not None:
            self._link.discard()
        session = self.session
        end = SessionEnd("controller closed the connection")
        if self._ending is not None:
            end = SessionEnd(f"closed by the endpoint: {self._ending}")
        elif not self._heard:
            end = SessionEnd(self._silent_close())
        if self._refused is not None:
            end = SessionEnd(f"controller refused: {self._refused}", clean=False)
        if session is not None:
            if session.ended is not None:
                end = session.ended
            session.close()
            self._log_over(end)
        if self.transport is not None:
            try:
                self._t.unregisterProducer()
            except RuntimeError:
                pass
        self.done.callback(end)
