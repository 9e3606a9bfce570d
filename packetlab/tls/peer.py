"""The PPKS check of a TLS peer, right after the handshake (PROTOCOL.md §4.4, §4.6).

`verify_peer` reads the chain the peer presented and the SNI of the connection and checks
it against the connection's `PeerPolicy`: a `VerifiedPeer`, or a `PeerVerificationError`
naming the `PeerRefusal` and the rule that was broken. `packetlab.tls.gate.PeerGate` runs
it for Twisted connections; links that drive pyOpenSSL themselves call it directly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from OpenSSL import SSL, crypto
from zope.interface import Interface

from packetlab.ppks import (
    AuthMode,
    Certificate,
    ChainError,
    PPKSError,
    VerifiedChain,
    parse_certificate,
    verify_chain,
)

from .context import PeerPolicy
from .credentials import ServerEntry

__all__ = [
    "IPPKSPeerListener",
    "PeerRefusal",
    "PeerVerificationError",
    "VerifiedPeer",
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
    """The peer's certificates as DER, leaf first, as OpenSSL holds them (`i2d_X509`: the
    signed part byte for byte as sent). Not through `cryptography` objects: that parsed
    every certificate a second time (with a stricter parser than OpenSSL's, so a
    certificate OpenSSL took but `cryptography` did not, such as an explicit
    `critical FALSE`, raised out of the check instead of being refused by it)."""
    leaf = conn.get_peer_certificate()
    if leaf is None:
        return []
    rest = conn.get_peer_cert_chain() or []
    # OpenSSL's peer chain includes the leaf on the client side only.
    if is_client and rest:
        rest = rest[1:]
    return [crypto.dump_certificate(crypto.FILETYPE_ASN1, c) for c in (leaf, *rest)]


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


# What OpenSSL's `excessive message size` means in a handshake: a certificate list over
# its 100 KB max_cert_list (a chain of 1,000 certificates, one of 16 MiB). It said no more.
_TOO_LARGE_HINT = (
    " (the peer's certificate list is over OpenSSL's 100 KB limit; a PPKS chain is a"
    " few KB, and at most 32 certificates are read)"
)


def _ssl_error_text(err: SSL.Error) -> str:
    """OpenSSL's reasons in one line (the gate's and the proxy hand-off's)."""
    parts = []
    for item in err.args[0] if err.args and isinstance(err.args[0], list) else ():
        if isinstance(item, tuple) and item:
            parts.append(str(item[-1]))
    text = "; ".join(p for p in parts if p) or str(err) or type(err).__name__
    return text + _TOO_LARGE_HINT if "excessive message size" in text else text
