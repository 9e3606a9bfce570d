"""pyOpenSSL contexts for PacketLab links (PROTOCOL.md §4.6).

TLS 1.3 only, no session resumption, Ed25519 PPKS certificates. OpenSSL's own X.509 path
check is switched off (the verify callback accepts everything); the PPKS chain check runs
right after the handshake in `packetlab.tls.peer`, in the mode and with the roots of the
`PeerPolicy` that each context carries as its app data.

A server starts every connection on a "lobby" context that holds no certificate; the
servername callback then moves it to the context of its snikey (or of the default entry).
An unknown snikey moves it to a context without a certificate, so the handshake fails with
a handshake_failure alert, and the gate reports `unknown_snikey`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from OpenSSL import SSL
from OpenSSL.crypto import X509
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from packetlab.ppks import AuthMode, is_valid_snikey
from packetlab.ppks.keys import PublicKeyLike

from .credentials import Credentials, ServerEntry, TLSConfigError, normalize_roots
from .takeover import watch_secrets

__all__ = ["PPKSClientCreator", "PPKSServerOptions", "PeerPolicy", "RefusedName"]

Clock = Callable[[], float]
_SESSION_ID_CONTEXT = b"packetlab"


@dataclass(frozen=True)
class PeerPolicy:
    """How to check the peer of a connection made on the context that carries it."""

    mode: AuthMode
    roots: tuple[bytes, ...]
    require_cert: bool
    clock: Clock
    entry: ServerEntry | None = None  # server side: the SNI map row chosen


@dataclass(frozen=True)
class RefusedName:
    """App data of the contexts that fail the handshake (no entry for the client's SNI)."""


_REFUSED = RefusedName()


def _accept_any(conn: SSL.Connection, cert: X509, errno: int, depth: int, ok: int) -> bool:
    # OpenSSL's path check does not understand PPKS; the PPKS check runs after the handshake.
    return True


def _base_context(*, server: bool) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    # The reference sets num_tickets 0, which pyOpenSSL cannot reach. NO_TICKET plus no
    # session cache means no ticket is ever resumable (tests check it).
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    watch_secrets(ctx)  # the Python record layer takes over after the handshake
    if server:
        ctx.set_session_id(_SESSION_ID_CONTEXT)
    return ctx


def _install(ctx: SSL.Context, creds: Credentials) -> None:
    ctx.use_certificate(x509.load_der_x509_certificate(creds.leaf.der))
    ctx.use_privatekey(creds.key)
    for cert in creds.chain[1:]:
        ctx.add_extra_chain_cert(x509.load_der_x509_certificate(cert.der))
    try:
        ctx.check_privatekey()
    except SSL.Error as e:  # Credentials checked this already; keep OpenSSL's word too
        raise TLSConfigError(f"OpenSSL refuses the key for the leaf certificate: {e}") from None


def _server_verify_flags(require_cert: bool) -> int:
    flags = SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE
    return flags | SSL.VERIFY_FAIL_IF_NO_PEER_CERT if require_cert else flags


@implementer(IOpenSSLClientConnectionCreator)
class PPKSClientCreator:
    """Client side of a PacketLab TLS link (the endpoint toward a controller or broker,
    a controller toward a broker or proxy).

    `credentials` may be None (nothing to present). The server's chain is checked in
    `mode` against `roots` (empty: any root). `snikey` is sent as SNI when given.
    `clock` gives Unix seconds for certificate validity.
    """

    def __init__(
        self,
        credentials: Credentials | None,
        mode: AuthMode | int,
        roots: Sequence[PublicKeyLike] = (),
        *,
        snikey: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        if snikey is not None and not is_valid_snikey(snikey):
            raise TLSConfigError(f"invalid snikey {snikey!r}: must be 1..63 of [a-z0-9]")
        if credentials is not None and not isinstance(credentials, Credentials):
            raise TLSConfigError(
                f"credentials must be Credentials, not {type(credentials).__name__}"
            )
        try:
            auth_mode = AuthMode(mode)
        except ValueError:
            raise TLSConfigError(f"unknown verification mode {mode!r}") from None
        self.snikey = snikey
        self.policy = PeerPolicy(
            auth_mode, normalize_roots(roots), auth_mode is not AuthMode.NO_VERIFY, clock
        )
        self._ctx = _base_context(server=False)
        if credentials is not None:
            _install(self._ctx, credentials)
        self._ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
        self._ctx.set_app_data(self.policy)

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        conn = SSL.Connection(self._ctx, None)
        if self.snikey is not None:
            conn.set_tlsext_host_name(self.snikey.encode("ascii"))
        return conn


@implementer(IOpenSSLServerConnectionCreator)
class PPKSServerOptions:
    """Server side: picks the certificate chain, mode and roots by SNI = snikey.

    `entries` maps snikey -> `ServerEntry`; `default` serves clients that send no SNI.
    A client naming an unknown snikey, or sending no SNI when there is no default, fails
    the handshake. Entries can be added and removed while listening.
    """

    log = Logger()

    def __init__(
        self,
        entries: Mapping[str, ServerEntry] | None = None,
        default: ServerEntry | None = None,
        *,
        clock: Clock = time.time,
        release_buffers: bool = False,
    ) -> None:
        self._clock = clock
        self._contexts: dict[str, SSL.Context] = {}
        self._default: SSL.Context | None = None
        self._refuse = _base_context(server=True)
        self._refuse.set_app_data(_REFUSED)
        self._lobby = _base_context(server=True)
        self._lobby.set_verify(_server_verify_flags(False), _accept_any)
        self._lobby.set_app_data(None)  # a failure here is not about the SNI
        self._lobby.set_tlsext_servername_callback(self._select)
        if release_buffers:
            # Free OpenSSL's ~34 KiB of record buffers while a connection is idle: for
            # servers holding many quiet links (the broker), not for data paths.
            self._lobby.set_mode(SSL.MODE_RELEASE_BUFFERS)
        for name, entry in (entries or {}).items():
            self.add(name, entry)
        if default is not None:
            self.set_default(default)

    def _context_for(self, entry: ServerEntry) -> SSL.Context:
        if not isinstance(entry, ServerEntry):
            raise TLSConfigError(f"entry must be a ServerEntry, not {type(entry).__name__}")
        ctx = _base_context(server=True)
        _install(ctx, entry.credentials)
        ctx.set_verify(_server_verify_flags(entry.client_cert_required), _accept_any)
        ctx.set_app_data(
            PeerPolicy(entry.mode, entry.roots, entry.client_cert_required, self._clock, entry)
        )
        return ctx

    def add(self, snikey: str, entry: ServerEntry) -> None:
        """Serve `entry` to clients sending SNI `snikey` (replaces an existing entry)."""
        if not is_valid_snikey(snikey):
            raise TLSConfigError(f"invalid snikey {snikey!r}: must be 1..63 of [a-z0-9]")
        self._contexts[snikey] = self._context_for(entry)

    def remove(self, snikey: str) -> None:
        """Stop serving `snikey`; KeyError if it is not served."""
        del self._contexts[snikey]

    def set_default(self, entry: ServerEntry | None) -> None:
        """Serve `entry` to clients that send no SNI (None: refuse them)."""
        self._default = None if entry is None else self._context_for(entry)

    @property
    def snikeys(self) -> frozenset[str]:
        return frozenset(self._contexts)

    def entry(self, snikey: str | None) -> ServerEntry | None:
        """The entry served for `snikey` (None = no SNI), or None if refused."""
        ctx = self._default if snikey is None else self._contexts.get(snikey)
        return None if ctx is None else ctx.get_app_data().entry

    def _select(self, conn: SSL.Connection) -> None:
        # Exceptions here would reach sys.excepthook, so nothing may escape.
        try:
            raw = conn.get_servername()
            if raw is None:
                ctx = self._default
            else:
                ctx = self._contexts.get(raw.decode("ascii", "replace"))
            if ctx is None:
                conn.set_context(self._refuse)
                return
            # SSL_set_SSL_CTX swaps the certificate but keeps the verify mode of the
            # connection, so set the mode of this entry on the connection itself.
            conn.set_verify(_server_verify_flags(ctx.get_app_data().require_cert), _accept_any)
            conn.set_context(ctx)
        except Exception:
            self.log.failure("while choosing the TLS context by SNI")
            conn.set_context(self._refuse)

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        return SSL.Connection(self._lobby, None)
