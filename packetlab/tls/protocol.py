"""Twisted side of PacketLab TLS: the PPKS check after the handshake, one record per write.

    app protocol  <-  PeerGate  <-  TLSMemoryBIOProtocol  <-  TCP transport

`PPKSTLSFactory` builds that stack. The gate runs the PPKS chain check when the handshake
completes and only then connects the application protocol (its `connectionMade` runs on a
verified link, with the TLS protocol as its transport). On failure it aborts the connection
and logs the rule that was broken.

The factory uses `PPKSTLSProtocol`, not Twisted's default `BufferingTLSTransport` which
joins the writes of one reactor turn into one TLS record: reference endpoints read one
message per record (INTEROP.md), so each `transport.write` must become its own record. It
does keep the records of one read (or, with `batch_turns`, one reactor turn) together and
hands them to the kernel in one `send` (`packetlab.tls.directwrite`).
"""

from __future__ import annotations

import enum
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from OpenSSL.SSL import WantReadError
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IAddress,
    IHandshakeListener,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.main import CONNECTION_LOST
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from packetlab.hostport import host_port
from packetlab.logbudget import LogBudget
from packetlab.ppks import (
    AuthMode,
    Certificate,
    ChainError,
    PPKSError,
    VerifiedChain,
    parse_certificate,
    verify_chain,
)

from .context import PeerPolicy, PPKSClientCreator, PPKSServerOptions, RefusedName
from .credentials import ServerEntry
from .directwrite import Corked, DirectWriter, socket_connection
from .records import MAX_CIPHERTEXT, RecordError, RecordLayer, alert_name
from .takeover import forget_secrets, record_mode, take_over

# zope interfaces are not types to mypy without the mypy-zope plugin, so a `Factory` or a
# `TCP4ClientEndpoint` would not type-check as its interface; these aliases name the
# interface expected and accept any object.
AnyProtocol = Any  # IProtocol provider
AnyProtocolFactory = Any  # IProtocolFactory provider
AnyClientEndpoint = Any  # IStreamClientEndpoint provider
AnyServerEndpoint = Any  # IStreamServerEndpoint provider
AnyListeningPort = Any  # IListeningPort provider
AnyReactorTime = Any  # IReactorTime provider
RefusalDelay = tuple[Callable[[str], float], AnyReactorTime]  # (seconds for a host, clock)

__all__ = [
    "IPPKSPeerListener",
    "PPKSClientEndpoint",
    "PPKSServerEndpoint",
    "PPKSTLSFactory",
    "PPKSTLSProtocol",
    "PeerGate",
    "PeerRefusal",
    "PeerVerificationError",
    "VerifiedPeer",
    "default_pending_max",
    "peer_of",
    "verify_peer",
]


class PeerRefusal(enum.Enum):
    """Why a TLS peer was refused (before any application byte was exchanged)."""

    HANDSHAKE_FAILED = "handshake_failed"  # TLS itself failed (version, alert, no cert...)
    UNKNOWN_SNIKEY = "unknown_snikey"  # server: no entry for the client's SNI
    NO_DEFAULT_ENTRY = "no_default_entry"  # server: no SNI sent and no default entry
    NO_PEER_CERTIFICATE = "no_peer_certificate"  # a certificate was required, none came
    BAD_CHAIN = "bad_chain"  # the PPKS check refused the chain (see chain_error)
    CONNECTION_LOST = "connection_lost"  # closed before the peer was verified


class PeerVerificationError(Exception):
    """The peer of a TLS link was refused. `rule` is the most specific reason: the PPKS
    `Reason` value for a bad chain (e.g. "expired", "untrusted_root"), else the refusal."""

    def __init__(
        self, refusal: PeerRefusal, detail: str = "", *, chain_error: ChainError | None = None
    ) -> None:
        self.refusal = refusal
        self.detail = detail
        self.chain_error = chain_error
        super().__init__(f"{refusal.value}: {detail}" if detail else refusal.value)

    @property
    def rule(self) -> str:
        if self.chain_error is not None:
            return self.chain_error.reason.value
        return self.refusal.value


REFUSAL_LOG = LogBudget(time.monotonic)  # refused TLS clients, for the whole process


@dataclass(frozen=True)
class VerifiedPeer:
    """What the PPKS check established about the peer.

    `chain` is the verified chain (leaf first, with `root_index`), or None when the peer
    presented no certificate and none was required, or when the mode is NO_VERIFY.
    `presented` is every certificate the peer sent (DER, leaf first). `snikey` is the SNI of
    the connection (sent by us as a client, received as a server); `entry` is the server's
    SNI map row that served it (None on the client side).
    """

    mode: AuthMode
    chain: VerifiedChain | None
    presented: tuple[bytes, ...]
    snikey: str | None
    entry: ServerEntry | None

    @property
    def leaf(self) -> Certificate | None:
        return self.chain.leaf if self.chain is not None and self.chain.certs else None

    @property
    def public_key(self) -> bytes | None:
        """The raw Ed25519 key of the verified leaf (the peer agent's key)."""
        leaf = self.leaf
        return leaf.public_key if leaf is not None else None


class IPPKSPeerListener(Interface):
    """Optional for application protocols: told the verified peer before connectionMade."""

    def peerVerified(peer: VerifiedPeer) -> None:
        """The peer passed the PPKS check; `makeConnection` follows at once."""


def _presented_chain(conn: SSL.Connection, is_client: bool) -> list[bytes]:
    leaf = conn.get_peer_certificate(as_cryptography=True)
    if leaf is None:
        return []
    rest = conn.get_peer_cert_chain(as_cryptography=True) or []
    ders = [c.public_bytes(Encoding.DER) for c in rest]
    # OpenSSL's peer chain includes the leaf on the client side only.
    if is_client and ders:
        ders = ders[1:]
    return [leaf.public_bytes(Encoding.DER), *ders]


def _servername(conn: SSL.Connection) -> str | None:
    raw = conn.get_servername()
    return None if raw is None else raw.decode("ascii", "replace")


def verify_peer(conn: SSL.Connection, is_client: bool) -> VerifiedPeer:
    """The PPKS check of a finished handshake on `conn`, under the `PeerPolicy` its context
    carries (PeerGate's check; also used by links that drive pyOpenSSL themselves, such as
    the proxy handoff). Raises `PeerVerificationError`."""
    policy = conn.get_context().get_app_data()
    if not isinstance(policy, PeerPolicy):
        raise PeerVerificationError(
            PeerRefusal.HANDSHAKE_FAILED, "TLS context carries no PPKS policy"
        )
    presented = tuple(_presented_chain(conn, is_client))
    snikey = _servername(conn)
    if policy.mode is AuthMode.NO_VERIFY:
        return VerifiedPeer(policy.mode, None, presented, snikey, policy.entry)
    if not presented:
        if policy.require_cert:
            raise PeerVerificationError(
                PeerRefusal.NO_PEER_CERTIFICATE,
                f"the {'server' if is_client else 'client'} sent no certificate",
            )
        return VerifiedPeer(policy.mode, None, (), snikey, policy.entry)
    try:
        chain = verify_chain(policy.mode, presented, policy.roots, policy.clock())
    except ChainError as e:
        raise PeerVerificationError(
            PeerRefusal.BAD_CHAIN,
            f"{policy.mode.name}: {e}{role_hint(policy.mode, presented[0])}",
            chain_error=e,
        ) from None
    except PPKSError as e:  # defensive: verify_chain reports ChainError
        raise PeerVerificationError(PeerRefusal.BAD_CHAIN, str(e)) from None
    return VerifiedPeer(policy.mode, chain, presented, snikey, policy.entry)


# Who presents a leaf of each type, and what each mode expects: an address that reaches the
# wrong daemon (an endpoint pointed at a broker's port) said only `wrong_cert_type: cert
# #0: agent where pubcmd is expected`.
_ROLE_OF_LEAF = {
    "agent": "a broker, a proxy's setup port or an agent link",
    "pubcmd": "a controller (pktlab xpmgr or the controller API)",
    "subcmd": "an endpoint",
}
_LEAF_WANTED = {
    AuthMode.ENDPOINT_AUTH_CONTROLLER: ("pubcmd", "a controller"),
    AuthMode.CONTROLLER_AUTH_ENDPOINT: ("subcmd", "an endpoint"),
    AuthMode.AGENT: ("agent", "a broker or an agent"),
}


def role_hint(mode: AuthMode, leaf_der: bytes) -> str:
    """` (the peer presents an agent certificate: it is a broker, ..., not a
    controller)` when the peer's leaf is another role's, else the empty string."""
    try:
        label = parse_certificate(leaf_der).cert_type.label
    except PPKSError:
        return ""
    wanted = _LEAF_WANTED.get(mode)
    role = _ROLE_OF_LEAF.get(label)
    if wanted is None or role is None or label == wanted[0]:
        return ""
    article = "an" if label[0] in "aeiou" else "a"
    return f" (the peer presents {article} {label} certificate: it is {role}, not {wanted[1]})"


def _sni_hint(sni: str | None) -> str:
    """What an `unrecognized_name` alert means to the client (an endpoint): alone, `tlsv1
    unrecognized name` did not say that the snikey was the problem."""
    if sni is None:
        return (
            " (we sent no SNI and the server wants one: a proxy routes by it, and a "
            "controller may serve only named snikeys; give the endpoint the experiment's "
            "snikey, NoSubModeSNIKey or --snikey)"
        )
    return (
        f" (the server knows no snikey {sni!r}: a proxy with no backlog registered for "
        "it, or a controller without that ExpExec; check NoSubModeSNIKey / --snikey)"
    )


def _ssl_error_text(err: SSL.Error) -> str:
    parts = []
    for item in err.args[0] if err.args and isinstance(err.args[0], list) else ():
        if isinstance(item, tuple) and item:
            parts.append(str(item[-1]))
    return "; ".join(p for p in parts if p) or str(err) or type(err).__name__


@implementer(IHandshakeListener)
class PeerGate(Protocol):
    """Sits between `TLSMemoryBIOProtocol` and the application protocol; connects the
    latter only once the peer passed the PPKS check of the connection's `PeerPolicy`."""

    log = Logger()

    def __init__(
        self,
        app: AnyProtocol,
        *,
        is_client: bool,
        tcp_nodelay: bool = True,
        handshake_timeout: tuple[float, AnyReactorTime] | None = None,
        refusal_delay: RefusalDelay | None = None,
    ) -> None:
        # Typed Any: zope interfaces are not types to mypy without mypy-zope.
        self.app: Any = app
        self.is_client = is_client
        self.tcp_nodelay = tcp_nodelay
        # (seconds, clock): a peer that has not finished the handshake by then is cut off
        # (the application's own timeouts start only once it is connected).
        self.handshake_timeout = handshake_timeout
        # (seconds for a peer host, clock): a server holds a refused client that long
        # before the abort, reading nothing meanwhile (a reference client refused
        # reconnects at once, for ever: BROKER-PROXY-OBSERVED.md §1.4).
        self.refusal_delay = refusal_delay
        self._deadline: Any = None
        self.peer: VerifiedPeer | None = None
        self.refused: PeerVerificationError | None = None
        self._app_connected = False
        self._waiting: list[Deferred[VerifiedPeer]] = []
        self._held: list[bytes] | None = None
        # Told once when the handshake is over or the connection is lost (the factory's
        # set of connections still in the handshake, `pending_max`).
        self.on_settled: Callable[[PeerGate], None] | None = None

    # -- application-facing --

    def when_verified(self) -> Deferred[VerifiedPeer]:
        """Fires with the `VerifiedPeer` once verified, or fails with
        `PeerVerificationError`. Cancelling it aborts the connection."""
        if self.peer is not None:
            return succeed(self.peer)
        if self.refused is not None:
            return fail(Failure(self.refused))
        d: Deferred[VerifiedPeer] = Deferred(self._cancel)
        self._waiting.append(d)
        return d

    def _cancel(self, d: Deferred[VerifiedPeer]) -> None:
        if d in self._waiting:
            self._waiting.remove(d)
        if self.transport is not None and self.peer is None:
            cast(Any, self.transport).abortConnection()

    def _fire(self, result: VerifiedPeer | PeerVerificationError) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if isinstance(result, VerifiedPeer):
                d.callback(result)
            else:
                d.errback(Failure(result))

    # -- IProtocol / IHandshakeListener --

    def connectionMade(self) -> None:
        if self.handshake_timeout is not None:
            seconds, clock = self.handshake_timeout
            self._deadline = cast(Any, clock).callLater(seconds, self._handshake_expired)
        if self.tcp_nodelay:
            # Each message is sent whole as one record; do not let Nagle hold it back.
            setter = getattr(self.transport, "setTcpNoDelay", None)
            if setter is not None:
                try:
                    setter(True)
                except OSError:
                    pass

    def _handshake_expired(self) -> None:
        self._deadline = None
        seconds = self.handshake_timeout[0] if self.handshake_timeout else 0
        self._refuse(  # aborts the connection
            PeerVerificationError(
                PeerRefusal.HANDSHAKE_FAILED, f"TLS handshake not done in {seconds:g} s"
            )
        )

    def _disarm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if self._refusal is not None and self._refusal.active():
            self._refusal.cancel()
        self._refusal = None

    _refusal: Any = None  # the delayed abort of a refused client

    def _settled(self) -> None:
        settled, self.on_settled = self.on_settled, None
        if settled is not None:
            settled(self)

    def evict(self, why: str) -> None:
        """Close a connection still in the handshake to make room for a new one (no
        refusal line: the factory logs the episode once)."""
        self._settled()
        self._disarm()
        self.refused = PeerVerificationError(PeerRefusal.HANDSHAKE_FAILED, why)
        if self.transport is not None:
            cast(Any, self.transport).abortConnection()
        self._fire(self.refused)

    def handshakeCompleted(self) -> None:
        self._settled()
        self._disarm()
        try:
            peer = self._verify()
        except PeerVerificationError as e:
            self._refuse(e)
            return
        except Exception as e:  # a peer's certificates must never take more than its link
            self.log.failure("PPKS check crashed")
            self._refuse(PeerVerificationError(PeerRefusal.BAD_CHAIN, f"internal error: {e!r}"))
            return
        self.peer = peer
        _PEERS[self.app] = _PEERS[self.transport] = peer
        self.log.debug(
            "TLS peer {peer} verified in {mode} mode ({n} cert(s), snikey {snikey})",
            peer=host_port(self._peer_address_obj()),
            mode=peer.mode.name,
            n=len(peer.chain.certs) if peer.chain else 0,
            snikey=peer.snikey,
        )
        if IPPKSPeerListener.providedBy(self.app):
            self.app.peerVerified(peer)
        self._app_connected = True
        self.app.makeConnection(self.transport)
        self._fire(peer)

    def dataReceived(self, data: bytes) -> None:
        # TLS delivers no application data before the handshake, and none after an abort.
        if self._app_connected:
            held = self._held
            if held is not None:
                held.append(data)
            else:
                self.app.dataReceived(data)

    def hold(self) -> None:
        """Keep the records decrypted from now on (one read of the socket, see
        `PPKSTLSProtocol.dataReceived`) to deliver them in one piece on `release()`."""
        self._held = []

    def release(self) -> None:
        held, self._held = self._held, None
        if held and self._app_connected:
            self.app.dataReceived(held[0] if len(held) == 1 else b"".join(held))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._settled()
        self._disarm()
        if self._app_connected:
            self.app.connectionLost(reason)
        elif self.refused is None:
            self._refuse(self._classify_loss(reason), abort=False)

    def logPrefix(self) -> str:
        app_prefix = getattr(self.app, "logPrefix", None)
        return f"{app_prefix() if app_prefix else type(self.app).__name__} (PPKS)"

    # -- the check --

    def _connection(self) -> SSL.Connection:
        return cast(TLSMemoryBIOProtocol, self.transport).getHandle()

    def _verify(self) -> VerifiedPeer:
        return verify_peer(self._connection(), self.is_client)

    def _classify_loss(self, reason: Failure) -> PeerVerificationError:
        conn: SSL.Connection | None = None
        if not self.is_client and self.transport is not None:
            conn = self._connection()
        if conn is not None and isinstance(conn.get_context().get_app_data(), RefusedName):
            name = _servername(conn)
            if name is None:
                return PeerVerificationError(
                    PeerRefusal.NO_DEFAULT_ENTRY, "client sent no SNI and there is no default"
                )
            return PeerVerificationError(PeerRefusal.UNKNOWN_SNIKEY, f"unknown snikey {name!r}")
        if isinstance(reason.value, SSL.Error):
            text = _ssl_error_text(reason.value)
            if not self.is_client and "did not return a certificate" in text:
                return PeerVerificationError(
                    PeerRefusal.NO_PEER_CERTIFICATE,
                    "the client sent no certificate and this entry requires one",
                )
            if self.is_client and "unrecognized name" in text and self.transport is not None:
                text += _sni_hint(_servername(self._connection()))
            return PeerVerificationError(PeerRefusal.HANDSHAKE_FAILED, text)
        return PeerVerificationError(
            PeerRefusal.CONNECTION_LOST, f"before the peer was verified: {reason.getErrorMessage()}"
        )

    def _peer_address_obj(self) -> Any:
        try:
            return cast(Any, self.transport).getPeer()
        except Exception:
            return None

    def _refuse(self, err: PeerVerificationError, *, abort: bool = True) -> None:
        self.refused = err
        delay = 0.0
        held = (
            abort
            and self.transport is not None
            and self.refusal_delay is not None
            and not self.is_client
            and err.refusal is not PeerRefusal.HANDSHAKE_FAILED  # a deadline: now
        )
        if held:
            assert self.refusal_delay is not None
            delay = self.refusal_delay[0](self._peer_host())
        # A client's refusals come as fast as anyone connects: a budget of lines a minute
        # for all of them (a flood of 1,500 bad handshakes was 1,500 lines).
        more = "" if self.is_client else REFUSAL_LOG.allow()
        if more is not None:
            error = str(err)
            rule = err.rule
            self.log.warn(
                "refused TLS peer {peer} ({side}): {rule}: {error}{later}{more}",
                peer=host_port(self._peer_address_obj()),
                side="server" if self.is_client else "client",
                rule=rule,
                # "handshake_failed: handshake_failed: unexpected message": said once
                error=error.removeprefix(f"{rule}: "),
                later=f" (closing in {delay:.1f} s)" if delay > 0 else "",
                more=more,
            )
        if abort and self.transport is not None:
            tls = cast(TLSMemoryBIOProtocol, self.transport)
            if delay > 0:
                assert self.refusal_delay is not None
                tls.pauseProducing()  # read nothing more from it
                self._refusal = cast(Any, self.refusal_delay[1]).callLater(
                    delay, self._refuse_now, err
                )
            else:
                tls.failVerification(Failure(err))
        self._fire(err)

    def _refuse_now(self, err: PeerVerificationError) -> None:
        self._refusal = None
        if self.transport is not None:
            cast(TLSMemoryBIOProtocol, self.transport).failVerification(Failure(err))

    def _peer_host(self) -> str:
        try:
            return str(cast(Any, self.transport).getPeer().host)
        except Exception:
            return "?"


# Peers by application protocol and by TLS protocol: still known after the connection is
# lost (TLSMemoryBIOProtocol drops its wrapped protocol then), forgotten with the objects.
_PEERS: weakref.WeakKeyDictionary[object, VerifiedPeer] = weakref.WeakKeyDictionary()


def peer_of(protocol_or_transport: object) -> VerifiedPeer | None:
    """The `VerifiedPeer` of a connection, from its application protocol or from that
    protocol's transport (None if not verified, or not a PPKS TLS connection)."""
    try:
        return _PEERS.get(protocol_or_transport)
    except TypeError:  # not weak-referenceable: cannot be one of ours
        return None


# Bytes taken from OpenSSL's send BIO per read (a cork's worth of records in one or two),
_BIO_CHUNK = 1 << 16  # below glibc's mmap threshold (128 KiB): no mmap+munmap per read
_RECORD_MAX = 1 << 14  # TLS plaintext per record
_RECORD_TYPES = frozenset((20, 21, 22, 23))  # change_cipher_spec .. application_data


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

    _direct: DirectWriter | None = None
    _sealing = False  # _emit is feeding OpenSSL: read its BIO once, after the last record
    _records: RecordLayer | None = None  # the Python record layer, once it took over
    _rx = b""  # the start of a handshake record not yet whole

    def makeConnection(self, transport: Any) -> None:
        conn = socket_connection(transport)
        self._direct = DirectWriter(conn) if conn is transport else None
        super().makeConnection(transport)

    @property
    def record_path(self) -> str:
        """Who seals the records now: "python", "openssl" (or "handshake" before)."""
        if self._records is not None:
            return "python"
        return "openssl" if self._handshakeDone else "handshake"

    def dataReceived(self, data: bytes) -> None:
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
            self._send(got.out)
        if got.chunks and not self._aborted:
            deliver = self.wrappedProtocol.dataReceived  # one record per call, as OpenSSL
            for chunk in got.chunks:
                deliver(chunk)
                if self._aborted or self._lostTLSConnection:
                    break
        if got.closed and not self._lostTLSConnection:
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
            super()._write(data)
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
        self._flushSendBIO()

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

    def _flushSendBIO(self) -> None:
        # With the record layer OpenSSL writes nothing more (its last bytes were sent at
        # the hand-over).
        if self._sealing or self._tlsConnection is None or self._records is not None:
            return
        data = self._drain_bio()
        if data:
            self._send(data)

    def _shutdownTLS(self) -> None:
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
        self.discard()
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
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    return f"{host}:{port}" if host is not None else str(peer)


def _local(gate: PeerGate) -> str:
    """The listening address a server connection came in on, for log lines."""
    try:
        return host_port(cast(Any, gate.transport).getHost())
    except Exception:
        return "?"


def default_pending_max(nofile: int | None = None) -> int:
    """A TLS server port's cap on connections in the handshake (`PPKSTLSFactory`
    `pending_max`): 1024, or 1/8 of the descriptor limit if lower (the established
    connections need the rest; past the limit accept() fails with EMFILE)."""
    if nofile is None:
        import resource

        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile == resource.RLIM_INFINITY:
            return 1024
    return max(16, min(1024, nofile // 8))


class PPKSTLSFactory(TLSMemoryBIOFactory):
    """Wraps `wrapped_factory` in TLS with the PPKS check, one TLS record per write.

    `creator` is a `PPKSClientCreator` (is_client=True) or `PPKSServerOptions`.
    Listen with it, or connect with it (the returned protocol is the TLS one; use
    `PPKSClientEndpoint` to get the application protocol once the peer is verified).
    """

    # Not BufferingTLSTransport: it would join the writes of one reactor turn.
    protocol = PPKSTLSProtocol

    def __init__(
        self,
        creator: PPKSClientCreator | PPKSServerOptions,
        is_client: bool,
        wrapped_factory: AnyProtocolFactory,
        *,
        tcp_nodelay: bool = True,
        clock: AnyReactorTime | None = None,
        handshake_timeout: tuple[float, AnyReactorTime] | None = None,
        refusal_delay: RefusalDelay | None = None,
        pending_max: int | None = None,
    ) -> None:
        if is_client and not isinstance(creator, PPKSClientCreator):
            raise TypeError("a client PPKSTLSFactory needs a PPKSClientCreator")
        if not is_client and not isinstance(creator, PPKSServerOptions):
            raise TypeError("a server PPKSTLSFactory needs PPKSServerOptions")
        # The clock only serves BufferingTLSTransport, which we do not use; passing one
        # keeps the base class from importing the global reactor.
        super().__init__(
            cast(Any, creator),
            is_client,
            wrapped_factory,
            clock=cast(Any, clock or Clock()),
        )
        self.is_client = is_client
        self.tcp_nodelay = tcp_nodelay
        self.handshake_timeout = handshake_timeout
        self.refusal_delay = refusal_delay
        # At most so many connections in the handshake at once (None: no cap): each new
        # one past it closes the oldest. Silent connections otherwise each hold a
        # descriptor and an OpenSSL session until the handshake deadline, and once the
        # descriptors run out Twisted closes every new connection at accept (EMFILE),
        # a real peer's too.
        self.pending_max = pending_max
        self.pending: dict[PeerGate, None] = {}
        self.evicted = 0
        self._saturated = False
        self._where = "?"  # the port's address, for the episode's lines

    def buildProtocol(self, addr: IAddress | None) -> TLSMemoryBIOProtocol | None:  # type: ignore[override]
        app = self.wrappedFactory.buildProtocol(cast(IAddress, addr))
        if app is None:
            return None
        gate = PeerGate(
            app,
            is_client=self.is_client,
            tcp_nodelay=self.tcp_nodelay,
            handshake_timeout=self.handshake_timeout,
            refusal_delay=self.refusal_delay,
        )
        if self.pending_max is not None:
            self._admit(gate)
        return self.protocol(self, gate)

    def _admit(self, gate: PeerGate) -> None:
        assert self.pending_max is not None
        while len(self.pending) >= self.pending_max:
            oldest = next(iter(self.pending))
            if not self._saturated:
                self._saturated = True
                self._where = _local(oldest)
                PeerGate.log.warn(
                    "TLS port {port}: {n} connections in the handshake (cap {cap}): "
                    "closing the oldest one for each new one",
                    port=self._where,
                    n=len(self.pending),
                    cap=self.pending_max,
                )
            self.evicted += 1
            oldest.evict(f"closed for a newer connection ({self.pending_max} in the handshake)")
            self.pending.pop(oldest, None)
        self.pending[gate] = None
        gate.on_settled = self._settled

    def _settled(self, gate: PeerGate) -> None:
        self.pending.pop(gate, None)
        if self._saturated and len(self.pending) < (self.pending_max or 0) * 3 // 4:
            self._saturated = False
            PeerGate.log.info(
                "TLS port {port}: {n} connections in the handshake, under the cap again "
                "(closed so far for newer ones: {evicted})",
                port=self._where,
                n=len(self.pending),
                evicted=self.evicted,
            )


@implementer(IStreamClientEndpoint)
class PPKSClientEndpoint:
    """Connects over `endpoint` with TLS + the PPKS check. `connect(factory)` fires with
    the application protocol once the server is verified, or fails with
    `PeerVerificationError` (or the endpoint's connection error)."""

    def __init__(
        self,
        endpoint: AnyClientEndpoint,
        creator: PPKSClientCreator,
        *,
        tcp_nodelay: bool = True,
        handshake_timeout: tuple[float, AnyReactorTime] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._creator = creator
        self._tcp_nodelay = tcp_nodelay
        # (seconds, clock): a server silent in the handshake is given up on (the connect
        # fails), as the server side cuts off a silent client
        self._handshake_timeout = handshake_timeout

    def connect(self, protocolFactory: AnyProtocolFactory) -> Deferred[AnyProtocol]:
        factory = PPKSTLSFactory(
            self._creator,
            True,
            protocolFactory,
            tcp_nodelay=self._tcp_nodelay,
            handshake_timeout=self._handshake_timeout,
        )

        def verified(tls: TLSMemoryBIOProtocol) -> Deferred[AnyProtocol]:
            gate = cast(PeerGate, tls.wrappedProtocol)
            return gate.when_verified().addCallback(lambda _: gate.app)

        d: Deferred[TLSMemoryBIOProtocol] = cast(Any, self._endpoint).connect(factory)
        return d.addCallback(verified)


@implementer(IStreamServerEndpoint)
class PPKSServerEndpoint:
    """Listens on `endpoint` with TLS + the PPKS check (e.g. around
    `serverFromString(reactor, "tcp:20556")`, for `StreamServerEndpointService`).
    `handshake_timeout` (seconds, clock): a client still in the handshake by then is cut
    off (a slow or silent client would otherwise hold its descriptor for good).
    `refusal_delay` (function of the client's host giving seconds, clock): a client whose
    certificates are refused is cut off that much later, not at once."""

    def __init__(
        self,
        endpoint: AnyServerEndpoint,
        options: PPKSServerOptions,
        *,
        tcp_nodelay: bool = True,
        handshake_timeout: tuple[float, AnyReactorTime] | None = None,
        refusal_delay: RefusalDelay | None = None,
        pending_max: int | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._options = options
        self._pending_max = pending_max
        self._tcp_nodelay = tcp_nodelay
        self._handshake_timeout = handshake_timeout
        self._refusal_delay = refusal_delay

    def listen(self, protocolFactory: AnyProtocolFactory) -> Deferred[AnyListeningPort]:
        return cast(Any, self._endpoint).listen(
            PPKSTLSFactory(
                self._options,
                False,
                protocolFactory,
                tcp_nodelay=self._tcp_nodelay,
                handshake_timeout=self._handshake_timeout,
                refusal_delay=self._refusal_delay,
                pending_max=self._pending_max,
            )
        )
