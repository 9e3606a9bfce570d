"""Persistent monitor memory (PROTOCOL.md §8.4, §8.5) that survives restarts and kill -9.

The reference keeps each monitor's 256 bytes in LMDB (``~/.pktlab/endpt.persistent``),
keyed by ``AKI(32) || serial || relative_idx:u16`` (host byte order) of the certificate
that listed the monitor's digest; aux monitors are keyed by their digest. Trailing zero
bytes are trimmed when stored. We keep the same keys and trimming in SQLite (WAL,
synchronous=FULL), as `packetlab.ppks.Accounting` does: every write is one committed
transaction, so a kill -9 at any point leaves either the old or the new bytes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from packetlab.monitor.abi import PM_LEN

__all__ = ["PersistentMemory", "PersistentMemoryError", "aux_key", "cert_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pm (
    key BLOB PRIMARY KEY,  -- AKI||serial||idx (cert monitors) or the digest (aux)
    data BLOB NOT NULL     -- at most 256 bytes, trailing zeros trimmed
) WITHOUT ROWID
"""


def cert_key(aki: bytes, serial: bytes, index: int) -> bytes:
    """The reference key of a certificate-listed monitor (index in host byte order)."""
    return aki + serial + index.to_bytes(2, sys.byteorder)


def aux_key(digest: bytes) -> bytes:
    """Aux monitors (``--monitor``) have no certificate: keyed by their digest (§8.5)."""
    return digest


class PersistentMemoryError(Exception):
    """The store cannot be opened, read or written (its path, its disk, a lock held by
    another process); the message says which and why."""


class PersistentMemory:
    """A SQLite store of 256-byte monitor memories. One per endpoint process.

    Every failure of the store is a `PersistentMemoryError`."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        import sqlite3  # here, not at import: an endpoint without monitors never loads it

        self.path = os.fspath(path)
        self.timeout = timeout  # how long a write waits for another process's lock
        self._errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise PersistentMemoryError(f"cannot use WAL journal on {self.path}: {mode}")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except self._errors as e:
            raise PersistentMemoryError(f"cannot open {self.path}: {e}") from None

    def load(self, key: bytes) -> bytes:
        """The stored bytes of `key`, zero-padded to 256 (all zeros if none)."""
        try:
            row = self._db.execute("SELECT data FROM pm WHERE key = ?", (key,)).fetchone()
        except self._errors as e:
            raise PersistentMemoryError(f"cannot read {self.path}: {e}") from None
        data = bytes(row[0]) if row else b""
        return data[:PM_LEN].ljust(PM_LEN, b"\0")

    def store(self, key: bytes, data: bytes) -> None:
        """Write one monitor's memory (trailing zeros trimmed) in its own transaction."""
        self.store_many([(key, data)])

    def store_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Write several memories in one transaction (session end)."""
        if not items:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except self._errors as e:
            raise PersistentMemoryError(f"cannot write {self.path}: {e}") from None
        try:
            for key, data in items:
                trimmed = data[:PM_LEN].rstrip(b"\0")
                if trimmed:
                    self._db.execute(
                        "INSERT OR REPLACE INTO pm (key, data) VALUES (?, ?)", (key, trimmed)
                    )
                else:
                    self._db.execute("DELETE FROM pm WHERE key = ?", (key,))
            self._db.execute("COMMIT")
        except BaseException as e:
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except self._errors:
                    pass  # the first error is the one to report
            if isinstance(e, self._errors):
                raise PersistentMemoryError(f"cannot write {self.path}: {e}") from None
            raise

    def keys(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._db.execute("SELECT key FROM pm ORDER BY key")]

    def close(self) -> None:
        self._db.close()
