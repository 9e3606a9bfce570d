"""Twisted side of PacketLab TLS: the PPKS check after the handshake, one record per write.

    app protocol  <-  PeerGate  <-  TLSMemoryBIOProtocol  <-  TCP transport

`PPKSTLSFactory` (`packetlab.tls.endpoints`) builds that stack; `PeerGate`
(`packetlab.tls.gate`) holds the application protocol back until the peer is verified.

The factory uses `PPKSTLSProtocol`, not Twisted's default `BufferingTLSTransport` which
joins the writes of one reactor turn into one TLS record: reference endpoints read one
message per record (INTEROP.md), so each `transport.write` must become its own record. It
does keep the records of one read (or, with `batch_turns`, one reactor turn) together and
hands them to the kernel in one `send` (`packetlab.tls.directwrite`).
"""

from __future__ import annotations

from typing import Any, cast

from OpenSSL import SSL
from OpenSSL.SSL import WantReadError
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
)
from twisted.internet.main import CONNECTION_LOST
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from packetlab.hostport import host_port

from .backlog import OwnBacklog
from .directwrite import Corked, DirectWriter, socket_connection, unsent
from .gate import PeerGate
from .records import MAX_CIPHERTEXT, RecordError, RecordLayer, alert_name
from .takeover import forget_secrets, record_mode, take_over

__all__ = [
    "PPKSTLSProtocol",
]


# Bytes taken from OpenSSL's send BIO per read (a cork's worth of records in one or two),
_BIO_CHUNK = 1 << 16  # below glibc's mmap threshold (128 KiB): no mmap+munmap per read
_RECORD_MAX = 1 << 14  # TLS plaintext per record
_RECORD_TYPES = frozenset((20, 21, 22, 23))  # change_cipher_spec .. application_data
# A refused peer's link after our alert (PPKSTLSProtocol.failVerification): a round trip
# or so is all the peer needs to read the alert before it learns of our close.
LINGER_S = 1.0
MAX_LINGERING = 256


class PPKSTLSProtocol(Corked, TLSMemoryBIOProtocol):
    """`TLSMemoryBIOProtocol` that writes one record per `write()` and sends the records
    of one read, or of one cork, with one `send`.

    Twisted's own protocol seals each write into a record and hands it to the TCP
    transport at once: one buffered write, one `startWriting`/`stopWriting` (two
    `epoll_ctl`) and one `send` per message. Here the writes made while corked (always
    during `dataReceived`; see `Corked` for more) are kept as a list of frames; when the
    cork ends each is sealed (one record each) and sent at once, directly when the socket
    is idle (`DirectWriter`), else through the transport (its buffer limit still pauses
    the producer). Handshake and alert bytes are never held back.

    OpenSSL does the handshake, fed one whole record at a time so that it never reads past
    its end; then the Python record layer (`packetlab.tls.records`, keyed through
    `packetlab.tls.takeover`) seals and opens the records, unless its secrets or cipher
    are not available or `record_layer` / $PACKETLAB_TLS_RECORDS says "openssl": then
    pyOpenSSL carries on as before.
    """

    log = Logger()
    # "auto", "python" or "openssl"; None: $PACKETLAB_TLS_RECORDS (default auto).
    record_layer: str | None = None

    # The reactor for the backlog's checks (`packetlab.tls.backlog`); None: the global one.
    clock: Any = None

    _direct: DirectWriter | None = None
    _tcp: Any = None  # the TCP connection below, if any
    _backlog: OwnBacklog | None = None  # our own records unsent, once we sent some
    _app_paused = False  # the application paused reading (pauseProducing)
    _app_write = False  # OpenSSL's send BIO holds the application's records
    _sealing = False  # _emit is feeding OpenSSL: read its BIO once, after the last record
    _records: RecordLayer | None = None  # the Python record layer, once it took over
    _rx = b""  # the start of a handshake record not yet whole
    #: The peer sent a byte before the handshake ended (a refusal of a peer that sent
    #: nothing names a plaintext peer, `PeerGate._classify_loss`).
    heard = False
    _alerted = False  # our refusal's alert is sent (failVerification lingers)
    _linger: Any = None  # the abort that ends a lingering close
    _lingering = 0  # links lingering after an alert, process-wide (MAX_LINGERING)

    def makeConnection(self, transport: Any) -> None:
        conn = socket_connection(transport)
        self._tcp = conn
        self._direct = DirectWriter(conn) if conn is transport else None
        super().makeConnection(transport)

    @property
    def record_path(self) -> str:
        """Who seals the records now: "python", "openssl" (or "handshake" before)."""
        if self._records is not None:
            return "python"
        return "openssl" if self._handshakeDone else "handshake"

    def dataReceived(self, data: bytes) -> None:
        if self._linger is not None:
            return  # after our refusal's alert: dropped (failVerification)
        # OpenSSL gives the application one record per read call; the gate gets them all
        # and hands them on as one piece, and what the application writes meanwhile
        # leaves in one send.
        gate: Any = self.wrappedProtocol
        holds = isinstance(gate, PeerGate)
        self.cork()
        try:
            if holds:
                gate.hold()
                try:
                    self._receive(data)
                finally:
                    gate.release()
            else:
                self._receive(data)
        finally:
            self.uncork()

    def _receive(self, data: bytes) -> None:
        records = self._records
        if records is not None:
            self._receive_records(records, data)
        elif self._handshakeDone:
            TLSMemoryBIOProtocol.dataReceived(self, data)
        else:
            self._receive_handshake(data)

    def _receive_handshake(self, data: bytes) -> None:
        # Whole records, one at a time, so OpenSSL never takes a byte past its handshake.
        self.heard = True
        buf = self._rx + data if self._rx else data
        pos, end_all = 0, len(buf)
        conn = self._tlsConnection
        while not self._handshakeDone and end_all - pos >= 5:
            length = (buf[pos + 3] << 8) | buf[pos + 4]
            if length <= MAX_CIPHERTEXT and buf[pos] in _RECORD_TYPES and buf[pos + 1] == 3:
                end = pos + 5 + length
            else:  # not a TLS record: all to OpenSSL, which fails it with its own alert
                end = end_all
            if end > end_all:
                break
            conn.bio_write(buf[pos:end])
            pos = end
            self._checkHandshakeStatus()
            if self._lostTLSConnection or self._aborted:
                self._rx = b""
                return
        rest = buf[pos:] if pos else buf
        if not self._handshakeDone:
            self._rx = rest
            return
        self._rx = b""
        if self._appSendBuffer:
            self._unbufferPendingWrites()
        if rest:
            self._receive(rest)
        elif self._records is None:
            self._flushReceiveBIO()

    def _checkHandshakeStatus(self) -> None:
        # TLSMemoryBIOProtocol's, with the hand-over between the handshake's end and the
        # gate's check (the application may write as soon as it is connected).
        if self._aborted:
            return
        try:
            self._tlsConnection.do_handshake()
        except WantReadError:
            self._flushSendBIO()
            return
        except SSL.Error:
            self._tlsShutdownFinished(Failure())
            return
        self._handshakeDone = True
        self._take_over()
        if IHandshakeListener.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.handshakeCompleted()

    def _take_over(self) -> None:
        conn = self._tlsConnection
        written = self._drain_bio()
        try:
            mode = record_mode(self.record_layer)
        except ValueError as e:  # a typo in the environment must not cost the link
            self.log.error("TLS record layer: {error}; using auto", error=str(e))
            mode = "auto"
        is_client = getattr(self.factory, "is_client", None)
        layer = None
        if mode != "openssl" and is_client is not None:
            layer = take_over(conn, is_client, written)
        forget_secrets(conn)
        if written:
            self._send(written)  # a server's tickets, a client's Finished
        if layer is None:
            if mode == "python":
                self.log.warn(
                    "TLS record layer: staying on pyOpenSSL for {cipher} (secrets or "
                    "cipher not available)",
                    cipher=conn.get_cipher_name(),
                )
            return
        self._records = layer

    def release_openssl(self) -> bool:
        """Free the OpenSSL connection (its SSL object, BIOs and buffers, ~30 KB) once the
        Python record layer carries the link and the peer has been checked; True if done.
        For servers holding many quiet links (the broker). After it, `getHandle()` is
        None; the verified peer stays known (`peer_of`)."""
        if self._records is None or self._lostTLSConnection or self._tlsConnection is None:
            return False
        gate = self.wrappedProtocol
        if isinstance(gate, PeerGate) and gate.peer is None:
            return False  # not checked yet (or refused): the check reads the connection
        self._tlsConnection = cast(Any, None)  # TLSMemoryBIOProtocol types it as always set
        return True

    def refusal_alert(self, description: int) -> bool:
        """Send the fatal alert `description` (the PPKS check refused the peer, docs/tls.md)
        before the link is aborted, so the peer learns why; True if sent. Only the Python
        record layer can: pyOpenSSL sends no alert of our choosing after the handshake."""
        records = self._records
        if records is None or records.sent_close or self._lostTLSConnection:
            return False
        self.discard()  # nothing of ours goes after it
        self._send(records.fatal_alert(description))
        self._alerted = True
        return True

    def failVerification(self, reason: Failure) -> None:
        """After our refusal's alert, close with a FIN, not the RST of an abort: an RST
        can overtake the alert at the peer, whose kernel then fails its next read or write
        before the alert is read (a TLS server writing its session tickets after our
        Finished got ECONNRESET and never learnt why). So: our side shut, the peer's bytes
        read and dropped, the link closed at the peer's FIN or after LINGER_S (an abort).
        At most MAX_LINGERING links linger at once; past that, the abort at once."""
        tcp: Any = self.transport
        if (
            not self._alerted
            or not hasattr(tcp, "loseWriteConnection")
            or PPKSTLSProtocol._lingering >= MAX_LINGERING
        ):
            super().failVerification(reason)
            return
        self._reason = reason
        self._aborted = self.disconnecting = True  # nothing more in or out
        PPKSTLSProtocol._lingering += 1
        self._linger = self._clock().callLater(LINGER_S, tcp.abortConnection)
        tcp.loseWriteConnection()
        tcp.resumeProducing()  # a delayed refusal paused reading: the peer's FIN must come

    def getPeerCertificate(self) -> Any:
        conn = self._tlsConnection
        return None if conn is None else conn.get_peer_certificate()

    def _receive_records(self, records: RecordLayer, data: bytes) -> None:
        if self._lostTLSConnection:
            return
        try:
            got = records.receive(data)
        except RecordError as e:
            self._record_failed(records, e)
            return
        if got.out:
            self._send_own(got.out)  # a KeyUpdate answer: at most one until we send data
        if got.chunks and not self._aborted:
            deliver = self.wrappedProtocol.dataReceived  # one record per call, as OpenSSL
            for chunk in got.chunks:
                deliver(chunk)
                if self._aborted or self._lostTLSConnection:
                    break
        if got.closed and not self._lostTLSConnection:
            gate = self.wrappedProtocol
            app = gate.app if isinstance(gate, PeerGate) and gate.app_connected else gate
            if IHalfCloseableProtocol.providedBy(app) and not self.disconnecting:
                # TLS 1.3 (RFC 8446 §6.1): the peer's close_notify closes its side only;
                # our pending writes are not discarded. The application answers what
                # came, then closes (our close_notify then). The endpoint's controller
                # link: 400 pipelined mreads and a close_notify got 126 answers.
                if isinstance(gate, PeerGate):
                    gate.hand_over()
                app.readConnectionLost()
                return
            self._shutdownTLS()  # our close_notify, then the TCP close
            self._tlsShutdownFinished(None)

    def _record_failed(self, records: RecordLayer, err: RecordError) -> None:
        self.log.warn(
            "TLS record layer: closing the link to {peer}: {error}{alert}",
            peer=_address_of(self.transport),
            error=str(err),
            alert="" if err.alert is None else f"; sent the fatal alert {alert_name(err.alert)}",
        )
        if err.alert is not None and not records.sent_close:
            self._send(records.fatal_alert(err.alert))
        else:
            records.sent_close = True
        if self._reason is None:
            self._reason = Failure(err)
        self._tlsShutdownFinished(None)

    write = Corked.write  # not TLSMemoryBIOProtocol's (both bases define it)

    def _write_now(self, data: bytes) -> None:
        TLSMemoryBIOProtocol.write(self, data)

    def _write(self, data: bytes) -> None:
        records = self._records
        if records is None:
            app, self._app_write = self._app_write, True
            try:
                super()._write(data)  # its _flushSendBIO sends the application's records
            finally:
                self._app_write = app
        elif not self._lostTLSConnection:
            self._send(records.seal(data))

    def key_update(self, request: bool = True) -> None:
        """Send a KeyUpdate (asking the peer to update too when `request`), Python record
        layer only (RFC 8446 §4.6.3)."""
        records = self._records
        if records is None:
            raise RuntimeError("KeyUpdate needs the Python record layer")
        self.flush()
        if not self._lostTLSConnection and not records.sent_close:
            self._send(records.key_update(request))

    def _emit(self, frames: list[bytes]) -> None:
        # As TLSMemoryBIOProtocol.write: nothing after loseConnection unless a producer
        # is registered, nothing after an abort or once TLS is gone.
        records = self._records
        if self._aborted or self._lostTLSConnection:
            return
        if records is None and self._tlsConnection is None:
            return
        if self.disconnecting and self._producer is None:
            return
        if records is not None:
            self._send(records.seal_many(frames))
            return
        seal = self._tlsConnection.send
        self._sealing = True
        try:
            for i, frame in enumerate(frames):
                if len(frame) > _RECORD_MAX:
                    self._write(frame)  # Twisted's loop: one record per 16 KiB piece
                    continue
                # One record, sealed directly (Twisted's _write costs ~0.5 µs more per
                # record); its error handling as in _write.
                try:
                    sent = seal(frame)
                except WantReadError:  # not in TLS 1.3 on memory BIOs; as Twisted would
                    for rest in frames[i:]:
                        self._write(rest)
                    break
                except SSL.Error:
                    self._tlsShutdownFinished(Failure())
                    return
                if sent < len(frame):
                    self._write(frame[sent:])
        finally:
            self._sealing = False
        self._flush_app()

    def _drain_bio(self) -> bytes:
        conn = self._tlsConnection
        parts = []
        try:
            while True:
                chunk = conn.bio_read(_BIO_CHUNK)
                if not chunk:
                    break
                parts.append(chunk)
                if len(chunk) < _BIO_CHUNK:
                    break
        except WantReadError:  # nothing (more) to send
            pass
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _send(self, data: bytes) -> None:
        if self._direct is not None:
            self._direct.send(data)
        else:
            cast(Any, self.transport).write(data)

    def _send_own(self, data: bytes) -> None:
        # Records TLS writes of its own accord (handshake, KeyUpdate answers, alerts):
        # the application's backpressure does not see them, the backlog does.
        before = self._unsent()
        self._send(data)
        backlog = self._backlog
        if backlog is None:
            if self._unsent() <= before:
                return  # all sent: no backlog object for the many links that never queue
            self._backlog = backlog = OwnBacklog(
                self._unsent,
                self._clock(),
                self._hold_reading,
                self._resume_reading,
                self._cut_unread,
            )
        backlog.sent(before)

    def _clock(self) -> Any:
        """`clock`, or the global reactor when none was given."""
        if self.clock is not None:
            return self.clock
        from twisted.internet import reactor

        return reactor

    def _unsent(self) -> int:
        """Bytes the TCP transport holds, not yet sent (ours and the application's)."""
        return unsent(self._tcp)

    def _flushSendBIO(self) -> None:
        # What OpenSSL writes outside the application's writes is its own. With the
        # record layer OpenSSL writes nothing more (its last bytes went at the hand-over).
        if self._sealing or self._tlsConnection is None or self._records is not None:
            return
        data = self._drain_bio()
        if not data:
            return
        if self._app_write:  # the application's records: the transport's backpressure
            self._send(data)
        else:
            self._send_own(data)

    def _flush_app(self) -> None:
        self._app_write = True
        try:
            self._flushSendBIO()
        finally:
            self._app_write = False

    # -- reading, paused by the application or by our own backlog --

    def pauseProducing(self) -> None:
        self._app_paused = True
        cast(Any, self.transport).pauseProducing()

    def resumeProducing(self) -> None:
        self._app_paused = False
        backlog = self._backlog
        if backlog is None or not backlog.paused:
            cast(Any, self.transport).resumeProducing()

    def _hold_reading(self) -> None:
        cast(Any, self.transport).pauseProducing()

    def _resume_reading(self) -> None:
        if not self._app_paused and not self._lostTLSConnection:
            cast(Any, self.transport).resumeProducing()

    def _cut_unread(self, queued: int, waited: float) -> None:
        self.log.warn(
            "TLS: closing the link to {peer}: it left {n} bytes of our TLS records "
            "(answers to its KeyUpdates) unread for {s:.0f} s",
            peer=_address_of(self.transport),
            n=queued,
            s=waited,
        )
        self.abortConnection()

    def _shutdownTLS(self) -> None:
        # The data of this read goes to the application, and the frames it writes (corked)
        # before our close_notify: a controller that sent its last requests and then its
        # close_notify in one read lost their answers (the gate still held the requests).
        gate = self.wrappedProtocol
        if isinstance(gate, PeerGate):
            gate.hand_over()
        self.flush()
        records = self._records
        if records is None:
            super()._shutdownTLS()
            return
        # As SSL_shutdown: send our close_notify; the TCP connection closes once the
        # peer's has come too (TLSMemoryBIOProtocol waits for it likewise).
        if not records.sent_close and not self._lostTLSConnection:
            self._send(records.close_notify())
        if records.closed:
            cast(Any, self.transport).loseConnection()

    def unregisterProducer(self) -> None:
        self.flush()  # the frames go before a close_notify the base may send now
        super().unregisterProducer()

    def loseConnection(self) -> None:
        self.flush()
        super().loseConnection()

    def abortConnection(self) -> None:
        self.discard()
        super().abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        linger, self._linger = self._linger, None
        if linger is not None:
            PPKSTLSProtocol._lingering -= 1
            if linger.active():
                linger.cancel()
        self.discard()
        if self._backlog is not None:
            self._backlog.stop()
        records = self._records
        if records is not None and not self._lostTLSConnection:
            # The TCP stream ended without the peer's close_notify: a truncation, as
            # TLSMemoryBIOProtocol reports it (OpenSSL's unexpected EOF).
            self._lostTLSConnection = True
            if self._reason is None and not records.closed:
                self._reason = Failure(CONNECTION_LOST)
        super().connectionLost(reason)


def _address_of(transport: Any) -> str:
    try:
        peer = transport.getPeer()
    except Exception:
        return "?"
    return host_port(peer)
