"""`PeerGate`: the application protocol is connected only once its TLS peer is verified.

    app protocol  <-  PeerGate  <-  PPKSTLSProtocol  <-  TCP transport

The gate runs the PPKS chain check (`packetlab.tls.peer.verify_peer`) when the handshake
completes and only then connects the application protocol (its `connectionMade` runs on a
verified link, with the TLS protocol as its transport). On failure it aborts the connection
and logs the rule that was broken. `peer_of` finds a connection's `VerifiedPeer` later.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any, cast

from OpenSSL import SSL
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IHandshakeListener,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from packetlab.hostport import host_port
from packetlab.logbudget import LogBudget

from .anytypes import AnyProtocol, AnyReactorTime, RefusalDelay
from .context import RefusedName
from .peer import (
    IPPKSPeerListener,
    PeerRefusal,
    PeerVerificationError,
    VerifiedPeer,
    _servername,
    _sni_hint,
    _ssl_error_text,
    verify_peer,
)
from .records import (
    BAD_CERTIFICATE,
    CERTIFICATE_EXPIRED,
    CERTIFICATE_REQUIRED,
    CERTIFICATE_UNKNOWN,
    UNKNOWN_CA,
    UNSUPPORTED_CERTIFICATE,
)

__all__ = [
    "PeerGate",
    "peer_of",
]


REFUSAL_LOG = LogBudget(time.monotonic)  # refused TLS clients, for the whole process
#: A client that closed without one byte of TLS: a plaintext peer waiting for us to speak
#: (an endpoint run with --insecure-plaintext closes after 10 s), or a port scan.
SILENT_PEER = " (it sent no TLS at all: a plaintext peer?)"


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

    @property
    def app_connected(self) -> bool:
        """The peer was verified and the application protocol connected."""
        return self._app_connected

    def hand_over(self) -> None:
        """Deliver what is held now and hold on: the peer's close_notify ends the link
        within this read, and the data before it must reach the application first."""
        if self._held:
            self.release()
            self._held = []

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
        silent = not self.is_client and getattr(self.transport, "heard", None) is False
        return PeerVerificationError(
            PeerRefusal.CONNECTION_LOST,
            f"before the peer was verified: {reason.getErrorMessage()}"
            + (SILENT_PEER if silent else ""),
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
                _fail_verification(tls, err)
        self._fire(err)

    def _refuse_now(self, err: PeerVerificationError) -> None:
        self._refusal = None
        if self.transport is not None:
            _fail_verification(cast(TLSMemoryBIOProtocol, self.transport), err)

    def _peer_host(self) -> str:
        try:
            return str(cast(Any, self.transport).getPeer().host)
        except Exception:
            return "?"


# The fatal alert a refused peer gets (RFC 8446 §6.2), by the PPKS rule: a TLS peer can
# learn only this of why. The reference checks inside the handshake and sends OpenSSL's
# alert (BROKER-PROXY-OBSERVED.md §1.1: certificate_unknown); we check after it, and sent
# nothing but a close before (session 20).
_ALERT_OF_RULE = {
    "expired": CERTIFICATE_EXPIRED,
    "not_yet_valid": CERTIFICATE_EXPIRED,  # "expired or is not currently valid"
    "untrusted_root": UNKNOWN_CA,
    "bad_root_signature": UNKNOWN_CA,
    "missing_parent": UNKNOWN_CA,
    "chain_loop": UNKNOWN_CA,
    "wrong_cert_type": UNSUPPORTED_CERTIFICATE,
    "del_type_not_exppriv": UNSUPPORTED_CERTIFICATE,
    "del_type_not_reppriv": UNSUPPORTED_CERTIFICATE,
    "pathlen_exceeded": CERTIFICATE_UNKNOWN,
    "leaf_key_mismatch": CERTIFICATE_UNKNOWN,
    "too_many_certs": CERTIFICATE_UNKNOWN,
    "no_peer_certificate": CERTIFICATE_REQUIRED,
}


def refusal_alert(err: PeerVerificationError) -> int | None:
    """The alert for a refusal after the handshake: by its rule, `bad_certificate` for any
    certificate that does not decode or breaks an encoding rule; None when TLS itself
    failed or the link is already gone (nothing to say)."""
    if err.refusal in (PeerRefusal.HANDSHAKE_FAILED, PeerRefusal.CONNECTION_LOST):
        return None
    if err.refusal is not PeerRefusal.BAD_CHAIN:
        return _ALERT_OF_RULE.get(err.rule, CERTIFICATE_UNKNOWN)
    return _ALERT_OF_RULE.get(err.rule, BAD_CERTIFICATE)


def _fail_verification(tls: TLSMemoryBIOProtocol, err: PeerVerificationError) -> None:
    alert = refusal_alert(err)
    send = getattr(tls, "refusal_alert", None)
    if alert is not None and send is not None:
        send(alert)
    tls.failVerification(Failure(err))


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
