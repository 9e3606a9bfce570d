"""Persistent resource accounting (PROTOCOL.md §4.5) that survives restarts and kill -9.

The reference keeps per-certificate counters in LMDB keyed by AKI||serial and debits them
at session end, so a crash mid-session forgets what was spent. We keep them in SQLite
(WAL, synchronous=FULL) and debit *before* use: a caller reserves an amount in one
committed transaction and only then spends it; what is left unspent is refunded at the
end. A crash can lose a reservation (the budget shrinks a little) but can never let an
experiment spend more than its certificates allow. See docs/ppks.md.

With `prefetch=True` a `Meter` tops its reservation back up to one chunk in a background
thread once less than half a chunk is left, so the commit (an fsync, milliseconds) is not
on the caller's thread while packets are being sent. Nothing changes for the guarantee: a
meter spends only what a committed reservation holds; if the top-up has not come back when
it is needed, the caller waits for it (or reserves itself), exactly as without prefetch.
What is reserved and unspent (held + in flight) stays within one chunk, so a crash loses
at most one chunk of budget, as before.

The write-ahead log is checkpointed by us, not by SQLite: every `CHECKPOINT_COMMITS`
commits a PASSIVE checkpoint runs in that same worker (inline without prefetch), and
`journal_size_limit` cuts the log back to `WAL_LIMIT` when SQLite reuses it. SQLite's own
checkpoint ran inside whichever COMMIT reached 1000 pages (about one commit in twelve of
the endpoint's is the reactor's) and never shrank the file: the WAL sat at ~4 MiB beside a
database of 4-100 KiB. A checkpoint only copies committed pages into the database (crash-safe by
SQLite's design, kill -9 tested): the guarantee above is unchanged. See docs/ppks.md.
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .cert import Certificate

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "CHECKPOINT_COMMITS",
    "WAL_LIMIT",
    "Accounting",
    "AccountingError",
    "Budget",
    "Counter",
    "Meter",
]

_SQLITE_MAX = 2**63 - 1  # SQLite INTEGER is signed 64-bit; larger limits are clamped
_SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database
# A commit appends ~1 page (4 KiB + 24 B) to the WAL: a checkpoint every 32 commits keeps
# it at ~34 pages (140,112 B measured), and a log grown past WAL_LIMIT (a reader held it
# open) is cut back to it.
CHECKPOINT_COMMITS = 32
WAL_LIMIT = 256 * 1024


class AccountingError(Exception):
    """The database could not record a debit, a refund or a session's records (disk full,
    an I/O error, a read-only file): what needed recording is refused (fail closed), and
    the message names the database and SQLite's reason. Before, the `sqlite3` error
    escaped into the reactor as an unhandled traceback and the request got no answer."""


def _recording(acct: Accounting) -> _Recording:
    return _Recording(acct.path)


class _Recording:
    """Turns an SQLite error inside it into `AccountingError`."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: object) -> None:
        if exc is not None and type(exc).__module__ == "sqlite3":
            raise AccountingError(f"accounting database {self.path}: {exc}") from exc


class Counter(enum.Enum):
    """Persisted counters, with the cert_limit field that bounds each (§4.5)."""

    SEND_PKT = "max_send_pkt"
    RECV_PKT = "max_recv_pkt"
    SEND_BYTE = "max_send_byte"
    RECV_BYTE = "max_recv_byte"
    RUNTIME = "max_exp_period"  # ns


_SCHEMA = """
CREATE TABLE IF NOT EXISTS rlim (
    key BLOB NOT NULL,       -- AKI(32) || serial, as in the reference
    counter TEXT NOT NULL,   -- Counter value (cert_limit field name)
    used INTEGER NOT NULL,   -- amount reserved so far (spent or in flight)
    exptime INTEGER NOT NULL, -- notAfter of the cert, Unix seconds
    PRIMARY KEY (key, counter)
) WITHOUT ROWID
"""


@dataclass(frozen=True)
class _Record:
    key: bytes
    limit: int
    exptime: int


class Accounting:
    """A SQLite-backed store of per-certificate usage. One per endpoint process (several
    processes may share the file: every debit is an IMMEDIATE transaction).

    With `lazy=True` the database is opened (and SQLite loaded, ~1.9 MiB of RSS) when a
    chain with limits first needs it; the constructor only checks, without SQLite, that
    the file can be opened for writing and is empty or an SQLite 3 database (OSError or
    ValueError otherwise), so that a bad path still fails at start-up."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
        prefetch: bool = False,
        lazy: bool = False,
    ) -> None:
        # `~` as a shell would (docs/security.md: Accounting("~/.pktlab/endpt.rlim.sqlite3")
        # was "unable to open database file")
        self.path = os.path.expanduser(os.fspath(path))
        self._clock = clock
        self._timeout = timeout
        # One connection, used by the caller's thread and (with prefetch) one worker; the
        # lock serialises them (sqlite3 objects must not be used by two threads at once).
        self._lock = threading.RLock()
        self._worker: ThreadPoolExecutor | None = None
        if prefetch:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="pktlab-accounting")
        self._conn: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened
        self._commits = 0  # since the last checkpoint was asked for
        self._checkpointing = False  # a checkpoint is queued in the worker
        if lazy:
            _precheck(self.path)
        else:
            self._open()

    def _open(self) -> sqlite3.Connection:
        import sqlite3  # here, not at import: see `lazy`

        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves.
        try:
            db = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:  # SQLite's text names no file
            raise AccountingError(f"accounting database {self.path}: {e}") from e
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL journal on {self.path}: {mode}")
            # FULL: every commit is fsynced, so a reservation survives power loss too.
            db.execute("PRAGMA synchronous=FULL")
            # No checkpoint inside a COMMIT (which may be the reactor's): ours, in the
            # worker (`_committed`); the file cut back when SQLite restarts the log.
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            db.execute(_SCHEMA)
        except BaseException:
            db.close()
            raise
        self._conn = db
        self._file = _identity(self.path)
        self.clear_expired()
        return db

    @property
    def _db(self) -> sqlite3.Connection:
        db = self._conn
        if db is None:
            with self._lock:
                db = self._conn if self._conn is not None else self._open()
        return db

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)  # reservations in flight are committed first
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def __enter__(self) -> Accounting:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def clear_expired(self, now: float | None = None) -> int:
        """Delete records of certificates past their notAfter; returns how many."""
        t = self._clock() if now is None else now
        with self._lock:
            cur = self._db.execute("DELETE FROM rlim WHERE exptime < ?", (int(t),))
            return cur.rowcount

    def budget(self, certs: Sequence[Certificate]) -> Budget:
        """The budget of a session whose chain holds `certs` (only exppriv/delpriv certs
        with limits matter). Records are seeded on first sight."""
        records: dict[Counter, list[_Record]] = {c: [] for c in Counter}
        for cert in certs:
            if cert.limits is None:
                continue
            for counter in Counter:
                limit = getattr(cert.limits, counter.value)
                if limit is not None:
                    records[counter].append(
                        _Record(cert.accounting_key, min(limit, _SQLITE_MAX), cert.not_after)
                    )
        if not any(records.values()):
            return Budget(self, records)  # nothing to count: no database work (nor SQLite)
        with _recording(self), self._transaction():
            for counter, recs in records.items():
                for r in recs:
                    self._db.execute(
                        "INSERT OR IGNORE INTO rlim (key, counter, used, exptime)"
                        " VALUES (?, ?, 0, ?)",
                        (r.key, counter.value, r.exptime),
                    )
        return Budget(self, records)

    # -- used by Budget ---------------------------------------------------------------

    def _transaction(self) -> _Txn:
        db = self._db
        self._check_file()
        return _Txn(db, self._lock, self._committed)

    def _committed(self) -> None:
        """After each COMMIT (the lock held): every `CHECKPOINT_COMMITS`, a checkpoint,
        queued to the worker so that it never runs on the caller's (the reactor's) thread;
        inline when there is no worker, as SQLite's own would."""
        self._commits += 1
        if self._commits < CHECKPOINT_COMMITS or self._checkpointing:
            return
        self._commits = 0
        if self._worker is None:
            self.checkpoint()
            return
        self._checkpointing = True
        try:
            self._worker.submit(self._queued_checkpoint)
        except RuntimeError:  # shut down (close): closing the connection checkpoints
            self._checkpointing = False

    def _queued_checkpoint(self) -> None:
        with self._lock:
            self._checkpointing = False
            self.checkpoint()

    def checkpoint(self) -> tuple[int, int] | None:
        """Copy the WAL's committed pages into the database (PASSIVE: without waiting for
        another process's reader or writer); the next commit then restarts the log from
        its start. Returns (pages in the log, pages copied); None if SQLite refused (busy,
        an I/O error): nothing is lost then, the pages stay in the log for the next one."""
        import sqlite3

        with self._lock:
            if self._conn is None:
                return None
            try:
                busy, log, done = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error:
                return None
        return None if busy else (int(log), int(done))

    def _check_file(self) -> None:
        """Refuse to record into a file no longer at `path`. SQLite goes on writing to a
        database deleted (or replaced) under it, so its debits vanished with the process
        and the next endpoint started from a new, empty file: its limits reset (found by
        acct32: 3100 packets sent after an `rm` were forgotten). One stat per commit."""
        try:
            now = _identity(self.path)
        except OSError:
            now = None
        if now != self._file:
            raise AccountingError(
                f"accounting database {self.path}: the file was deleted or replaced while "
                "in use; nothing more is recorded in it (restart to use the file now at "
                "that path: what the old one recorded is lost)"
            )

    def _used(self, key: bytes, counter: Counter) -> int:
        row = self._db.execute(
            "SELECT used FROM rlim WHERE key = ? AND counter = ?", (key, counter.value)
        ).fetchone()
        return int(row[0]) if row else 0

    def _available(self, recs: Sequence[_Record], counter: Counter) -> int:
        return min(max(0, r.limit - self._used(r.key, counter)) for r in recs)

    def _set_used(self, key: bytes, counter: Counter, used: int, exptime: int) -> None:
        # INSERT OR REPLACE: a record cleared as expired mid-session is recreated.
        self._db.execute(
            "INSERT OR REPLACE INTO rlim (key, counter, used, exptime) VALUES (?, ?, ?, ?)",
            (key, counter.value, used, exptime),
        )


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _precheck(path: str) -> None:
    """What opening `path` would refuse, found without loading SQLite: a file that cannot
    be opened for writing (or created), or that is neither empty nor an SQLite 3 database."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        head = os.read(fd, len(_SQLITE_MAGIC))
    finally:
        os.close(fd)
    if head and head != _SQLITE_MAGIC:
        raise ValueError(f"{path} is not an SQLite 3 database")


class _Txn:
    def __init__(
        self, db: sqlite3.Connection, lock: threading.RLock, committed: Callable[[], None]
    ) -> None:
        self._db = db
        self._lock = lock
        self._committed = committed

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                try:
                    self._db.execute("COMMIT")
                except BaseException:
                    self._rollback()  # a COMMIT that failed must not leave it open
                    raise
                self._committed()
            else:
                self._rollback()
        finally:
            self._lock.release()

    def _rollback(self) -> None:
        # SQLite may have rolled back already (SQLITE_FULL does): ROLLBACK then raises
        # "no transaction is active", which would hide the error that matters.
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except Exception:
                pass


class Budget:
    """What one session may still use, counter by counter (min over its certificates)."""

    def __init__(self, acct: Accounting, records: dict[Counter, list[_Record]]) -> None:
        self._acct = acct
        self._records = records

    def is_limited(self, counter: Counter) -> bool:
        return bool(self._records[counter])

    def remaining(self, counter: Counter) -> int | None:
        """Amount still available (None: unlimited)."""
        recs = self._records[counter]
        if not recs:
            return None
        with self._acct._lock:
            return self._acct._available(recs, counter)

    def reserve(self, counter: Counter, amount: int, *, partial: bool = False) -> int:
        """Debit `amount` before it is used, durably. Returns the amount granted: all of
        it, or 0 when not enough is left (with `partial`, as much as is left)."""
        if amount < 0:
            raise ValueError("amount must be >= 0")
        recs = self._records[counter]
        if not recs or amount == 0:
            return amount
        acct = self._acct
        with _recording(acct), acct._transaction():
            avail = acct._available(recs, counter)
            grant = min(amount, avail) if partial else (amount if avail >= amount else 0)
            if grant:
                for r in recs:
                    acct._set_used(r.key, counter, acct._used(r.key, counter) + grant, r.exptime)
        return grant

    def refund(self, counter: Counter, amount: int) -> None:
        """Give back a reserved amount that was not used (never below zero)."""
        if amount < 0:
            raise ValueError("amount must be >= 0")
        recs = self._records[counter]
        if not recs or amount == 0:
            return
        acct = self._acct
        with _recording(acct), acct._transaction():
            for r in recs:
                acct._set_used(
                    r.key, counter, max(0, acct._used(r.key, counter) - amount), r.exptime
                )

    def meter(self, counter: Counter, chunk: int, *, max_chunk: int | None = None) -> Meter:
        return Meter(self, counter, chunk, max_chunk=max_chunk)


class Meter:
    """Per-event spending from reservations taken `chunk` at a time, so the hot path
    (one packet) does not touch the disk. Call `release()` at session end.

    With an `Accounting(prefetch=True)` the reservation is topped up to a chunk in the
    background once less than half a chunk is held (see the module docstring); `held`
    only ever grows on the caller's thread, from a reservation that has been committed."""

    def __init__(
        self, budget: Budget, counter: Counter, chunk: int, *, max_chunk: int | None = None
    ) -> None:
        if chunk <= 0:
            raise ValueError("chunk must be > 0")
        self._budget = budget
        self.counter = counter
        self.chunk = chunk
        # A burst that outruns the reservations (the caller must wait for a commit) doubles
        # the chunk, up to max_chunk: fewer commits on the caller's thread in a burst, at
        # most max_chunk lost on a crash.
        self.max_chunk = max(chunk, max_chunk or chunk)
        self.held = 0  # reserved and not yet spent
        self.spent = 0
        self._worker = budget._acct._worker if budget.is_limited(counter) else None
        self._next: Future[int] | None = None  # the background reservation in flight
        self._asked = 0  # ... and what it asked for
        #: The database's last `AccountingError` (then `consume` grants nothing more
        #: than is held, and `release` could not refund); None again once a reservation
        #: is recorded (a refusal after that is the limit's).
        self.error: AccountingError | None = None
        self._failed = False  # the last reservation failed: retried in the background

    def consume(self, n: int) -> bool:
        """Spend `n` if the budget allows; False (nothing spent) otherwise."""
        if n < 0:
            raise ValueError("n must be >= 0")
        if n > self.held:
            if not self._budget.is_limited(self.counter):
                self.spent += n
                return True
            if self._retrying(n):
                return False
            if self.spent:  # ran dry after the first reservation: the top-ups are too small
                self.chunk = min(2 * self.chunk, self.max_chunk)
            try:
                self._take_next(wait=True)
                if n > self.held:
                    want = max(self.chunk, n - self.held)
                    self.held += self._budget.reserve(self.counter, want, partial=True)
            except AccountingError as e:  # nothing recorded: nothing granted
                self.error = e
                self._failed = True
            else:  # recorded: a refusal from here is the limit's, not the database's
                self.error = None
            if n > self.held:
                return False
        self.held -= n
        self.spent += n
        if self._worker is not None and self.held < self.chunk // 2:
            try:
                self._prefetch()
            except AccountingError as e:  # the next consume reserves (or fails) itself
                self.error = e
                self._failed = True
        return True

    def _retrying(self, n: int) -> bool:
        """After the database failed, with a worker: True (refuse `n` at once) while a
        retry runs in the background. Before, every request waited on the caller's thread
        for SQLite's busy timeout (an endpoint's reactor froze 30 s per nsend while another
        process held the database's write lock); now only the first one after a success
        does, and the requests meanwhile are refused as before, without the wait."""
        acct_worker = self._budget._acct._worker
        if not self._failed or acct_worker is None:
            return False
        nxt = self._next
        if nxt is not None:
            if not nxt.done():
                return True
            try:
                self._take_next(wait=False)
            except AccountingError as e:
                self.error = e
            else:  # recorded again: the normal path from here
                self._failed = False
                self.error = None
                return False
        # Ask for what this request needs as well as a chunk (held + asked may then pass a
        # chunk: only after a failure, and the surplus is refunded at release as ever).
        self._asked = max(self.chunk - self.held, n - self.held)
        self._next = acct_worker.submit(
            self._budget.reserve, self.counter, self._asked, partial=True
        )
        return True

    def _prefetch(self) -> None:
        self._take_next(wait=False)  # may find the budget used up and stop prefetching
        worker = self._worker
        if worker is not None and self._next is None and self.held < self.chunk // 2:
            # Top up to one chunk: held + in flight never exceed a chunk, so a crash
            # loses at most one chunk, as without prefetch.
            self._asked = self.chunk - self.held
            self._next = worker.submit(
                self._budget.reserve, self.counter, self._asked, partial=True
            )

    def _take_next(self, *, wait: bool) -> None:
        """Add a finished background reservation to `held` (waiting for it if `wait`)."""
        nxt = self._next
        if nxt is not None and (wait or nxt.done()):
            self._next = None
            grant = nxt.result()
            self.held += grant
            if grant < self._asked:  # the budget is (nearly) used up: no more prefetching
                self._worker = None

    def release(self) -> None:
        """Refund what was reserved and not spent (a reservation in flight included)."""
        try:
            self._take_next(wait=True)
            if self.held:
                self._budget.refund(self.counter, self.held)
                self.held = 0
        except AccountingError as e:  # what is held stays debited: never more than used
            self.error = e
