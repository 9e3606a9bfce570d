"""Ed25519 keys (PROTOCOL.md §4.1): PEM SubjectPublicKeyInfo public keys, PKCS#8 private
keys (optionally passphrase-encrypted), key id = SHA-256(raw 32-byte public key)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from cryptography.exceptions import InternalError, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import KeyFileError, Reason

__all__ = [
    "KEYID_LEN",
    "KEY_LEN",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "generate_private_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "private_key_pem",
    "public_key_pem",
    "raw_public_key",
    "read_private_key",
    "read_public_key",
    "write_key_pair",
]

KEY_LEN = 32
KEYID_LEN = 32

PublicKeyLike = Ed25519PublicKey | Ed25519PrivateKey | bytes


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def raw_public_key(key: PublicKeyLike) -> bytes:
    """The raw 32-byte public key of a public key, a private key, or raw bytes."""
    if isinstance(key, bytes):
        if len(key) != KEY_LEN:
            raise KeyFileError(Reason.KEY_NOT_ED25519, f"raw key is {len(key)} bytes, not 32")
        return key
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: PublicKeyLike) -> bytes:
    """PKTLAB key identifier: SHA-256 of the raw public key (used for SKI/AKI, channels)."""
    return hashlib.sha256(raw_public_key(key)).digest()


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """Load a PEM (or DER) SubjectPublicKeyInfo Ed25519 public key, or a raw 32-byte key."""
    if len(data) == KEY_LEN:
        return Ed25519PublicKey.from_public_bytes(data)
    try:
        if b"-----BEGIN" in data:  # text before the block is skipped, as OpenSSL does
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        why = _why(e, data, "a public key")
        raise KeyFileError(Reason.KEY_NOT_PEM, f"not a public key: {why}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(Reason.KEY_NOT_ED25519, f"{type(key).__name__} is not Ed25519")
    return key


_FAQ = re.compile(r"\s*See https?://\S+ for more details\.")


_PEM_KINDS = (
    (b"-----BEGIN CERTIFICATE-----", "a certificate"),
    (b"-----BEGIN CERTIFICATE REQUEST-----", "a certificate signing request"),
    (b"-----BEGIN PUBLIC KEY-----", "a public key"),
)


def _why(e: Exception, data: bytes, wanted: str) -> str:
    """Why `data` is not the `wanted` key, short: what it is when it is another PEM file
    of ours (a .pub given as the signer), else cryptography's reason without its
    boilerplate, the FAQ link and the generic "Could not deserialize key data. The data
    may be ..." sentence (a refusal line read ~280 characters for a text file)."""
    for marker, what in _PEM_KINDS:
        if marker in data[:4096] and not what.endswith(wanted):
            return f"{what} where {wanted} is needed"
    text = _FAQ.sub("", str(e)).strip()
    _, sep, details = text.partition("Details: ")
    return details.strip() if sep else text


def load_private_key(data: bytes, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Load a PEM PKCS#8 Ed25519 private key; `passphrase` if it is encrypted."""
    try:
        key = serialization.load_pem_private_key(data, passphrase or None)
    except TypeError as e:
        # cryptography says TypeError both for "needs a password" and "was not encrypted".
        if passphrase:
            return load_private_key(data, None)
        raise KeyFileError(Reason.KEY_NEEDS_PASSPHRASE, str(e)) from None
    except ValueError as e:
        if passphrase and b"ENCRYPTED" in data:
            raise KeyFileError(Reason.KEY_BAD_PASSPHRASE, "wrong passphrase") from None
        why = _why(e, data, "a private key")
        raise KeyFileError(Reason.KEY_NOT_PEM, f"not a PEM private key: {why}") from None
    except UnsupportedAlgorithm as e:
        raise KeyFileError(Reason.KEY_NOT_ED25519, str(e)) from None
    except InternalError:
        # OpenSSL's "key setup failed" for an Ed25519 key that is not 32 bytes (a damaged
        # or hand-made PKCS#8; also what a damaged encrypted key may decrypt to): not a
        # ValueError, so it was a traceback here and from every daemon's key loading.
        why = "wrong passphrase, or a damaged key" if passphrase else "a damaged key"
        raise KeyFileError(
            Reason.KEY_BAD_PASSPHRASE if passphrase else Reason.KEY_NOT_PEM,
            f"not a usable Ed25519 private key ({why}; OpenSSL: key setup failed)",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(Reason.KEY_NOT_ED25519, f"{type(key).__name__} is not Ed25519")
    return key


def public_key_pem(key: PublicKeyLike) -> bytes:
    pub = Ed25519PublicKey.from_public_bytes(raw_public_key(key))
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_key_pem(key: Ed25519PrivateKey, passphrase: bytes | None = None) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def read_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    return load_public_key(Path(path).read_bytes())


def read_private_key(
    path: str | os.PathLike[str], passphrase: bytes | None = None
) -> Ed25519PrivateKey:
    return load_private_key(Path(path).read_bytes(), passphrase)


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start: the key never exists with looser permissions.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def write_key_pair(
    path: str | os.PathLike[str], key: Ed25519PrivateKey, passphrase: bytes | None = None
) -> tuple[Path, Path]:
    """Write `path` (private, PKCS#8) and `path.pub` (SubjectPublicKeyInfo), both 0600
    like the reference tools. Returns (private path, public path)."""
    priv = Path(path)
    pub = priv.with_name(priv.name + ".pub")
    _write_private(priv, private_key_pem(key, passphrase))
    _write_private(pub, public_key_pem(key))
    return priv, pub
