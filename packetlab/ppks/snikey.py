"""SNI keys (PROTOCOL.md §4.6, §7.2): 1..63 characters of [a-z0-9]; lowercase only
(the reference docs say case-insensitive but its check requires lowercase)."""

from __future__ import annotations

import re
import secrets

__all__ = ["SNIKEY_MAX_LEN", "generate_snikey", "is_valid_snikey"]

SNIKEY_MAX_LEN = 63
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_SNIKEY_RE = re.compile(r"[a-z0-9]{1,63}")


def is_valid_snikey(key: str | bytes) -> bool:
    if isinstance(key, bytes):
        try:
            key = key.decode("ascii")
        except UnicodeDecodeError:
            return False
    return _SNIKEY_RE.fullmatch(key) is not None


def generate_snikey(length: int = SNIKEY_MAX_LEN) -> str:
    """A random snikey (the reference makes 63-character ones)."""
    if not 1 <= length <= SNIKEY_MAX_LEN:
        raise ValueError("snikey length must be 1..63")
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
