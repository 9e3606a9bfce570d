"""The accounting database's write-ahead log on disk (acct34): checkpointed by the worker,
never inside a commit on the caller's (the endpoint's reactor's) thread, and kept small.

Before, SQLite checkpointed inside whichever COMMIT reached 1000 pages, and the WAL file
stayed at ~4 MiB beside a database of a few KiB. These tests turn `synchronous` down to
OFF: they are about where checkpoints run and what size the files reach, not about
durability (tests/integration/test_acct34_checkpoint_kill9.py kills a process mid-checkpoint),
and 1000+ fsyncs would take seconds."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ppks_factory import NOW
from test_ppks_accounting import chain

from packetlab.ppks import Accounting, Counter
from packetlab.ppks.accounting import CHECKPOINT_COMMITS, WAL_LIMIT

PAST_SQLITES_OWN = 1100  # commits: SQLite's own checkpoint came at 1000 pages (~1 a commit)


class Queued:
    """An executor that runs what it is given only when `run` is called: the caller's
    thread and the worker's turns, apart."""

    def __init__(self) -> None:
        self.tasks: list[tuple[Future[Any], Callable[[], Any]]] = []

    def submit(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Future[Any]:
        f: Future[Any] = Future()
        self.tasks.append((f, lambda: fn(*args, **kw)))
        return f

    def run(self) -> int:
        done = 0
        while self.tasks:
            f, task = self.tasks.pop(0)
            f.set_result(task())
            done += 1
        return done

    def shutdown(self, wait: bool = True) -> None:
        self.run()


def fast(acct: Accounting) -> None:
    acct._db.execute("PRAGMA synchronous=OFF")


def wal_size(db: Path) -> int:
    wal = Path(f"{db}-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_checkpoints_run_in_the_worker_never_in_a_callers_commit(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Accounting(db, clock=lambda: NOW, prefetch=True) as acct:
        fast(acct)
        assert acct._worker is not None
        acct._worker.shutdown()
        worker = Queued()
        acct._worker = worker  # type: ignore[assignment]
        b = acct.budget(chain())
        worker_turns = 0
        for i in range(PAST_SQLITES_OWN):
            before = db.read_bytes()  # only a checkpoint writes the database file
            assert b.reserve(Counter.SEND_BYTE, 1) == 1
            assert db.read_bytes() == before, f"commit {i}: checkpointed on the caller's thread"
            if worker.run():
                worker_turns += 1
                assert db.read_bytes() != before  # the worker's checkpoint wrote it
        assert worker_turns == (PAST_SQLITES_OWN + 1) // CHECKPOINT_COMMITS
        assert wal_size(db) <= (CHECKPOINT_COMMITS + 2) * (4096 + 24) + 32
        assert b.remaining(Counter.SEND_BYTE) == 1_000_000_000 - PAST_SQLITES_OWN


def test_the_wal_stays_small_with_prefetching_meters(tmp_path: Path) -> None:
    """The endpoint's pattern: metered sends, the top-ups committed by the worker."""
    db = tmp_path / "a.db"
    with Accounting(db, clock=lambda: NOW, prefetch=True) as acct:
        fast(acct)
        sizes = []
        for _ in range(6):  # sessions
            b = acct.budget(chain())
            m = b.meter(Counter.SEND_BYTE, 1000)
            for _ in range(200_000 // 1000 * 2):  # ~400 commits a session
                assert m.consume(500)
            m.release()
            sizes.append(wal_size(db))
        assert acct._worker is not None
        acct._worker.submit(lambda: None).result()
        assert max(sizes) <= WAL_LIMIT, sizes  # (was 4 MiB from the third session on)
        assert wal_size(db) <= WAL_LIMIT


def test_without_a_worker_the_caller_checkpoints(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Accounting(db, clock=lambda: NOW) as acct:
        fast(acct)
        b = acct.budget(chain())
        for _ in range(PAST_SQLITES_OWN):
            b.reserve(Counter.SEND_BYTE, 1)
            assert wal_size(db) <= (CHECKPOINT_COMMITS + 2) * (4096 + 24) + 32


def test_a_wal_a_reader_held_open_is_cut_back(tmp_path: Path) -> None:
    """A reader (an operator's `sqlite3` shell in a transaction) pins the log: it grows
    while the reader lasts, and is cut back to WAL_LIMIT once it has gone."""
    db = tmp_path / "a.db"
    with Accounting(db, clock=lambda: NOW) as acct:
        fast(acct)
        b = acct.budget(chain())
        reader = sqlite3.connect(db, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM rlim").fetchone()
            for _ in range(300):
                b.reserve(Counter.SEND_BYTE, 1)
            held = wal_size(db)
            assert held > WAL_LIMIT
            reader.execute("COMMIT")
        finally:
            reader.close()
        for _ in range(2 * CHECKPOINT_COMMITS):
            b.reserve(Counter.SEND_BYTE, 1)
        assert wal_size(db) <= WAL_LIMIT, held
