"""What each side of a PacketLab TLS link presents and trusts (PROTOCOL.md §4.6).

`Credentials` is a PPKS chain (leaf first) with the private key of the leaf. `ServerEntry`
is one row of a server's SNI map: credentials, verification mode and trusted roots.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from packetlab.ppks import (
    AuthMode,
    Certificate,
    CertType,
    PPKSError,
    load_certificates,
    raw_public_key,
    read_private_key,
)
from packetlab.ppks.keys import PublicKeyLike

__all__ = ["Credentials", "ServerEntry", "TLSConfigError", "normalize_roots"]

StrPath = str | os.PathLike[str]


class TLSConfigError(ValueError):
    """A TLS configuration that cannot work: says which part and why. `part` is "key" when
    the private key (its file or its type) is at fault, "pair" when key and certificate
    are each fine but do not belong together, else "cert", so that a caller can name the
    option or config key that gave it."""

    def __init__(self, message: str, part: str = "cert", errno: int | None = None) -> None:
        super().__init__(message)
        self.part = part
        self.errno = errno  # the OSError's, when a file could not be read

    def unreadable(self) -> str | None:
        """For a file that is there but cannot be read: what to do about it, where a
        daemon's `run pktlab init` (which writes missing files) would mislead; else None."""
        if self.errno in (errno.EACCES, errno.EPERM):
            return (
                f"the user twistd starts as (uid {os.geteuid()}) cannot read it: twistd "
                "reads it before -u drops privileges; run twistd as a user who can"
            )
        if self.errno == errno.EISDIR:
            return "give the file, not its directory"
        return None


def _file_error(what: str, path: StrPath, e: OSError | PPKSError, part: str) -> TLSConfigError:
    """`what PATH: why`, the path once (an OSError's text repeats it after `[Errno N]`)."""
    why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    code = e.errno if isinstance(e, OSError) else None
    return TLSConfigError(f"{what} {os.fspath(path)}: {why}", part, code)


def _describe(cert: Certificate) -> str:
    return f"{cert.cert_type.label} cert with key {cert.public_key.hex()[:16]}..."


def normalize_roots(roots: Sequence[PublicKeyLike]) -> tuple[bytes, ...]:
    """Trusted root keys as raw 32-byte Ed25519 keys (accepts key objects or raw bytes)."""
    out = []
    for i, r in enumerate(roots):
        try:
            out.append(raw_public_key(r))
        except (PPKSError, TypeError, AttributeError) as e:
            raise TLSConfigError(f"trusted root #{i} is not an Ed25519 public key: {e}") from None
    return tuple(out)


class Credentials:
    """A PPKS certificate chain, leaf first, and the Ed25519 private key of the leaf.

    The leaf goes out as the TLS certificate, the others as extra chain certs. The key must
    match the leaf's public key (the reference uses `cert_ls[0]`); `TLSConfigError` if not.
    """

    __slots__ = ("chain", "key")

    def __init__(self, chain: Sequence[Certificate], key: Ed25519PrivateKey) -> None:
        chain = tuple(chain)
        if not chain:
            raise TLSConfigError("empty certificate chain: at least the leaf cert is needed")
        for i, c in enumerate(chain):
            if not isinstance(c, Certificate):
                raise TLSConfigError(f"chain item #{i} is {type(c).__name__}, not a Certificate")
        if not isinstance(key, Ed25519PrivateKey):
            raise TLSConfigError(f"private key is {type(key).__name__}, not Ed25519", "key")
        if raw_public_key(key) != chain[0].public_key:
            raise TLSConfigError(
                f"private key (public {raw_public_key(key).hex()[:16]}...) does not match the "
                f"leaf, the first certificate ({_describe(chain[0])})",
                "pair",
            )
        self.chain: tuple[Certificate, ...] = chain
        self.key = key

    @property
    def leaf(self) -> Certificate:
        return self.chain[0]

    @classmethod
    def from_unordered(cls, certs: Sequence[Certificate], key: Ed25519PrivateKey) -> Credentials:
        """Put first the cert whose public key is `key`'s (xpmgr's ExpExec lists certs in any
        order); the others keep their order. A leaf type wins over a CA cert of the same key."""
        if not isinstance(key, Ed25519PrivateKey):
            raise TLSConfigError(f"private key is {type(key).__name__}, not Ed25519", "key")
        pub = raw_public_key(key)
        matching = [i for i, c in enumerate(certs) if c.public_key == pub]
        if not matching:
            raise TLSConfigError(
                f"no certificate among {len(certs)} has the private key's public key "
                f"({pub.hex()[:16]}...)"
            )
        leaf = next((i for i in matching if not certs[i].cert_type.is_ca), matching[0])
        return cls([certs[leaf], *(c for i, c in enumerate(certs) if i != leaf)], key)

    @classmethod
    def load(
        cls,
        cert_paths: Sequence[StrPath],
        key_path: StrPath,
        passphrase: bytes | None = None,
        *,
        any_order: bool = False,
    ) -> Credentials:
        """Read PEM/DER cert files (each may hold several PEM blocks) and a PKCS#8 key.

        Without `any_order` the first cert of the first file is the leaf (pktendpt's
        `ControllerCertChainPath`); with it the leaf is found by key (xpmgr's ExpExec)."""
        certs: list[Certificate] = []
        for p in cert_paths:
            try:
                certs.extend(load_certificates(Path(p).read_bytes()))
            except (OSError, PPKSError) as e:
                raise _file_error("certificate file", p, e, "cert") from None
            refused = openssl_refusal(certs)
            if refused is not None:
                raise TLSConfigError(f"certificate file {os.fspath(p)}: {refused}")
        try:
            key = read_private_key(key_path, passphrase)
        except (OSError, PPKSError) as e:
            raise _file_error("private key file", key_path, e, "key") from None
        return cls.from_unordered(certs, key) if any_order else cls(certs, key)

    def __repr__(self) -> str:
        return f"Credentials({', '.join(c.cert_type.label for c in self.chain)})"


class ServerEntry:
    """One row of a TLS server's SNI map: what to present and how to check the client.

    `require_client_cert=None` applies the reference rule: a client cert is mandatory only if
    trusted roots are configured or the mode is AGENT (§4.6). Without roots, any root is
    accepted (only the chain's form is checked).
    """

    __slots__ = ("_require", "credentials", "mode", "roots")

    def __init__(
        self,
        credentials: Credentials,
        mode: AuthMode | int,
        roots: Sequence[PublicKeyLike] = (),
        *,
        require_client_cert: bool | None = None,
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise TLSConfigError(
                f"credentials must be Credentials, not {type(credentials).__name__}"
            )
        try:
            self.mode = AuthMode(mode)
        except ValueError:
            raise TLSConfigError(f"unknown verification mode {mode!r}") from None
        self.credentials = credentials
        self.roots = normalize_roots(roots)
        self._require = require_client_cert

    @property
    def client_cert_required(self) -> bool:
        if self._require is not None:
            return self._require
        return bool(self.roots) or self.mode is AuthMode.AGENT

    def __repr__(self) -> str:
        return (
            f"ServerEntry({self.credentials!r}, {self.mode.name}, {len(self.roots)} root(s), "
            f"client cert {'required' if self.client_cert_required else 'optional'})"
        )


EXPIRY_WARNING = 7 * 86400  # s: one of our own certificates expiring sooner is warned about


def _utc(ts: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def openssl_refusal(certs: Sequence[Certificate]) -> str | None:
    """Why OpenSSL refuses one of `certs`, or None. The PPKS parser reads no names: an
    issuer name string of a context-specific tag passed it and every daemon given such
    a file stopped at start with pyOpenSSL's traceback out of its TLS context (fuzz28's
    broker_files target)."""
    from OpenSSL import crypto

    for i, cert in enumerate(certs):
        try:
            crypto.load_certificate(crypto.FILETYPE_ASN1, cert.der)
        except crypto.Error as e:
            queue = e.args[0] if e.args and isinstance(e.args[0], list) else None
            why = "; ".join(dict.fromkeys(str(r[-1]) for r in queue if r)) if queue else str(e)
            return f"OpenSSL refuses certificate #{i} ({cert.cert_type.label}): {why}"
    return None


def agent_leaf_error(leaf: Certificate, what: str, checker: str) -> str | None:
    """An agent daemon's own leaf (the broker's, the proxy's) that is not an agent
    certificate: the text saying so, for a refusal at start (`checker` names who checks
    it: every such peer refuses it in the handshake, so starting would only spin them)."""
    if leaf.cert_type is CertType.AGENT:
        return None
    return (
        f"{what} is a {leaf.cert_type.label} certificate, not an agent certificate: "
        f"every {checker} in agent mode and refuses it"
    )


# (below this many seconds, unit, its seconds): 89 s, 89 min, 47.9 h, then days
_UNITS_LEFT = ((90, "s", 1), (90 * 60, "min", 60), (48 * 3600, "h", 3600))


def time_left(seconds: float) -> str:
    """`seconds` to go in the unit a reader wants: "42 s", "12 min", "3.5 h", "2 d" (hours
    alone said "0.0 h" with a minute left)."""
    unit, size = next(((u, n) for limit, u, n in _UNITS_LEFT if seconds < limit), ("d", 86400))
    value = max(seconds, 0) / size
    return f"{value:.0f} {unit}" if size <= 60 else f"{round(value, 1):g} {unit}"


def chain_validity(
    certs: Sequence[Certificate], what: str, now: float
) -> tuple[str | None, str | None, int]:
    """A daemon's own certificates (`what`: where they were set) at start-up: an error text
    when one has expired or is not valid yet (every peer refuses the chain), else a warning
    text when one expires within `EXPIRY_WARNING`, and the earliest `not_after`."""
    for i, c in enumerate(certs):
        name = f"{what}: certificate #{i} ({c.cert_type.label})"
        if now > c.not_after:
            return (
                f"{name} expired at {_utc(c.not_after)}: every peer refuses the chain; renew "
                f"it (pktlab ppks sign {c.cert_type.label} ...) and start again",
                None,
                c.not_after,
            )
        if now < c.not_before:
            return (
                f"{name} is not valid before {_utc(c.not_before)}: every peer refuses the "
                "chain until then (is this host's clock right?)",
                None,
                c.not_after,
            )
    first = min(certs, key=lambda c: c.not_after)
    warning = None
    if first.not_after - now < EXPIRY_WARNING:
        warning = (
            f"{what}: certificate #{list(certs).index(first)} ({first.cert_type.label}) "
            f"expires at {_utc(first.not_after)}, in {time_left(first.not_after - now)}: "
            "renew it before then "
            "(every peer refuses an expired chain) and restart"
        )
    return None, warning, first.not_after
