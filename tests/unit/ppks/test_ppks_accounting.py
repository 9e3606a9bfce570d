"""Persistent accounting (§4.5): debit before use, survive restarts and SIGKILL."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import wait
from pathlib import Path

import pytest
from ppks_factory import NA, NOW, cert

from packetlab.ppks import Accounting, AccountingError, Certificate, Counter

LIMIT = 1_000_000_000


def chain(limit: int = LIMIT, na: int = NA) -> list[Certificate]:
    return [
        cert("pubcmd", "exper1", "xc"),
        cert(
            "delpriv",
            "exper",
            "exper1",
            del_type="exppriv",
            limits=f"max_send_byte={limit * 2};",
            na=na,
        ),
        cert("exppriv", "eop", "exper", limits=f"max_send_byte={limit};max_exp_period=50;", na=na),
    ]


def test_wal_and_full_sync(tmp_path: Path) -> None:
    with Accounting(tmp_path / "a.db", clock=lambda: NOW) as acct:
        assert acct._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert acct._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_reserve_refund_remaining(tmp_path: Path) -> None:
    with Accounting(tmp_path / "a.db", clock=lambda: NOW) as acct:
        b = acct.budget(chain(100))
        assert b.remaining(Counter.SEND_BYTE) == 100  # min(100, 200)
        assert b.remaining(Counter.RUNTIME) == 50
        assert b.remaining(Counter.RECV_BYTE) is None
        assert b.reserve(Counter.SEND_BYTE, 60) == 60
        assert b.reserve(Counter.SEND_BYTE, 60) == 0  # all or nothing
        assert b.reserve(Counter.SEND_BYTE, 60, partial=True) == 40
        assert b.remaining(Counter.SEND_BYTE) == 0
        b.refund(Counter.SEND_BYTE, 30)
        assert b.remaining(Counter.SEND_BYTE) == 30
        assert b.reserve(Counter.RECV_BYTE, 10**12) == 10**12  # unlimited
        b.refund(Counter.SEND_BYTE, 10**6)  # never below zero
        assert b.remaining(Counter.SEND_BYTE) == 100
        with pytest.raises(ValueError):
            b.reserve(Counter.SEND_BYTE, -1)
        with pytest.raises(ValueError):
            b.refund(Counter.SEND_BYTE, -1)


def test_shared_cert_budgets_across_sessions(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    c = chain(100)
    with Accounting(db, clock=lambda: NOW) as acct:
        assert acct.budget(c).reserve(Counter.SEND_BYTE, 70) == 70
    # restart; a second session with the same exppriv but another pubcmd shares the budget
    other = [cert("pubcmd", "exper", "xc2"), c[2]]
    with Accounting(db, clock=lambda: NOW) as acct:
        b = acct.budget(other)
        assert b.remaining(Counter.SEND_BYTE) == 30
        # the delpriv's own (larger) budget was debited too
        assert acct.budget([c[1]]).remaining(Counter.SEND_BYTE) == 200 - 70


def test_expired_records_are_cleared(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    c = chain(100, na=NOW + 10)
    with Accounting(db, clock=lambda: NOW) as acct:
        acct.budget(c).reserve(Counter.SEND_BYTE, 100)
    with Accounting(db, clock=lambda: NOW + 11) as acct:  # cleared at open
        rows = acct._db.execute("SELECT count(*) FROM rlim").fetchone()[0]
        assert rows == 0
    with Accounting(db, clock=lambda: NOW) as acct:
        acct.budget(c).reserve(Counter.SEND_BYTE, 1)
        # rows: delpriv max_send_byte, exppriv max_send_byte and max_exp_period
        assert acct.clear_expired(NOW + 11) == 3
        assert acct.clear_expired(NOW + 11) == 0


def test_meter_spends_from_chunks(tmp_path: Path) -> None:
    with Accounting(tmp_path / "a.db", clock=lambda: NOW) as acct:
        b = acct.budget(chain(1000))
        m = b.meter(Counter.SEND_BYTE, chunk=300)
        assert m.consume(100) and m.held == 200
        assert b.remaining(Counter.SEND_BYTE) == 700  # whole chunk debited up front
        assert m.consume(500) and m.spent == 600
        assert not m.consume(500)  # 400 left in total
        assert m.consume(400) and m.spent == 1000
        assert not m.consume(1)
        m.release()
        assert b.remaining(Counter.SEND_BYTE) == 0
        m2 = acct.budget(chain(1000)).meter(Counter.RECV_PKT, chunk=1)
        assert m2.consume(10**9)  # unlimited counter
        with pytest.raises(ValueError):
            b.meter(Counter.SEND_BYTE, chunk=0)


def test_meter_release_refunds(tmp_path: Path) -> None:
    with Accounting(tmp_path / "a.db", clock=lambda: NOW) as acct:
        b = acct.budget(chain(1000))
        m = b.meter(Counter.SEND_BYTE, chunk=300)
        m.consume(1)
        m.release()
        assert b.remaining(Counter.SEND_BYTE) == 999


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "endpt.rlim"
    bad.write_bytes(b"\x00" * 4096)
    with pytest.raises(sqlite3.DatabaseError):
        Accounting(bad)


def test_a_home_relative_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/security.md's `Accounting("~/.pktlab/endpt.rlim.sqlite3")`: `~` is the home, as
    in a shell (it was taken literally: sqlite3's "unable to open database file")."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".pktlab").mkdir()
    with Accounting("~/.pktlab/endpt.rlim.sqlite3", clock=lambda: NOW) as acct:
        assert acct.budget(chain(100)).remaining(Counter.SEND_BYTE) == 100
        assert acct.path == str(tmp_path / ".pktlab" / "endpt.rlim.sqlite3")
    assert (tmp_path / ".pktlab" / "endpt.rlim.sqlite3").is_file()


def test_a_file_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    with pytest.raises(AccountingError, match=r"accounting database .*/nodir/a\.db: unable"):
        Accounting(tmp_path / "nodir" / "a.db")


# ------------------------------------------------------------- background reservations


def used(db: Path) -> int:
    """What the database says is reserved for the exppriv's send bytes (a fresh reader)."""
    con = sqlite3.connect(db)
    try:
        row = con.execute("SELECT max(used) FROM rlim WHERE counter = 'max_send_byte'").fetchone()
        return int(row[0] or 0)
    finally:
        con.close()


def test_prefetch_reserves_the_next_chunk_before_it_is_needed(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Accounting(db, clock=lambda: NOW, prefetch=True) as acct:
        m = acct.budget(chain(10_000)).meter(Counter.SEND_BYTE, 1000)
        assert m.consume(100)  # first chunk: reserved on this thread
        assert used(db) == 1000 and m._next is None
        assert m.consume(450)  # held 450 < 500: the top-up (550) goes to the worker
        assert m._next is not None
        assert m._next.result(timeout=10) == 550
        assert used(db) == 1550  # committed before any of it is spent
        assert m.consume(900)  # takes the top-up without touching the disk
        assert m.spent == 1450 and m.held + m.spent == 1550
        m.release()
        assert used(db) == m.spent == 1450


def test_prefetch_never_spends_more_than_is_debited(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    sizes = [((i * 7919) % 300) + 1 for i in range(3000)]
    with Accounting(db, clock=lambda: NOW, prefetch=True) as acct:
        m = acct.budget(chain(100_000)).meter(Counter.SEND_BYTE, 4096)
        refused = 0
        for n in sizes:
            if m.consume(n):
                assert used(db) >= m.spent  # nothing spent before it is debited
                assert used(db) - m.spent <= 4096 + 300  # unspent: within one chunk
            else:
                refused += 1
        assert used(db) <= 100_000  # the limit holds
        assert m.spent > 100_000 - 300 and refused  # used up, then refused
        m.release()
        assert used(db) == m.spent


def test_release_waits_for_the_reservation_in_flight(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Accounting(db, clock=lambda: NOW, prefetch=True) as acct:
        m = acct.budget(chain(10_000)).meter(Counter.SEND_BYTE, 1000)
        assert m.consume(600)
        assert m._next is not None  # in flight (or done): refunded either way
        m.release()
        assert used(db) == 600 and m.held == 0 and m._next is None


@pytest.mark.parametrize("limit", [3, 64, 100, 1000])
def test_prefetch_with_a_budget_smaller_than_chunks(tmp_path: Path, limit: int) -> None:
    db = tmp_path / "a.db"
    with Accounting(db, clock=lambda: NOW, prefetch=True) as acct:
        m = acct.budget(chain(limit)).meter(Counter.SEND_BYTE, 64)
        granted = 0
        for _ in range(limit + 50):
            if m.consume(1):
                granted += 1
            if m._next is not None:
                m._next.result(timeout=10)  # let every background reservation land
        assert granted == limit and used(db) == limit
        m.release()
        assert used(db) == limit


def test_chunk_grows_when_a_burst_outruns_the_reservations(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Accounting(db, clock=lambda: NOW) as acct:  # no prefetch: every refill is a stall
        m = acct.budget(chain(10**6)).meter(Counter.SEND_BYTE, 64, max_chunk=512)
        commits = []
        for _ in range(2000):
            before = m.held
            assert m.consume(1)
            if m.held > before:
                commits.append(m.held + 1)
        assert commits == [64, 128, 256, 512, 512, 512, 512, 512][: len(commits)]
        assert used(db) - m.spent <= 512  # unspent stays within max_chunk
        m.release()
        assert used(db) == 2000


# ------------------------------------------------------------ lazy opening (the endpoint)


def test_lazy_opens_only_for_a_chain_with_limits(tmp_path: Path) -> None:
    """The endpoint's store: no database work (nor SQLite loaded) until a chain with
    limits needs it; then the same guarantees as an eager store."""
    db = tmp_path / "sub" / "a.db"
    db.parent.mkdir()
    with Accounting(db, clock=lambda: NOW, lazy=True) as acct:
        assert acct._conn is None and db.exists() and db.stat().st_size == 0
        unlimited = [cert("pubcmd", "exper1", "xc")]
        b = acct.budget(unlimited)
        assert b.remaining(Counter.SEND_BYTE) is None
        assert b.reserve(Counter.SEND_BYTE, 10**9) == 10**9
        assert acct._conn is None  # still nothing opened
        limited = chain(100)
        b = acct.budget(limited)
        assert acct._conn is not None
        assert acct._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert b.reserve(Counter.SEND_BYTE, 60) == 60
    with Accounting(db, clock=lambda: NOW, lazy=True) as acct:  # persisted, as eagerly
        assert acct.budget(limited).remaining(Counter.SEND_BYTE) == 40


def test_lazy_still_refuses_a_bad_path_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "endpt.rlim"
    bad.write_bytes(b"\x00" * 4096)
    with pytest.raises(ValueError, match="not an SQLite 3 database"):
        Accounting(bad, lazy=True)
    with pytest.raises(OSError):
        Accounting(tmp_path / "missing-dir" / "a.db", lazy=True)
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(OSError):
        Accounting(tmp_path / "dir.db", lazy=True)


def test_a_locked_database_is_retried_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the write lock (an operator's `sqlite3` shell in BEGIN
    IMMEDIATE): the first request that needs a reservation waits out the busy timeout and
    is refused; the next ones are refused at once while a worker retries, instead of each
    waiting the busy timeout again on the caller's thread (the endpoint's reactor: 30 s
    per nsend before, found by acct32). Once the lock is gone, spending resumes; what was
    spent never exceeds what is debited."""
    db = tmp_path / "a.db"
    with Accounting(db, clock=lambda: NOW, prefetch=True, timeout=0.05) as acct:
        b = acct.budget(chain(10_000))
        m = b.meter(Counter.SEND_BYTE, 1000)
        assert m.consume(100)  # held 900: no top-up yet
        callers: list[str] = []
        reserve = b.reserve

        def spy(counter: Counter, amount: int, *, partial: bool = False) -> int:
            callers.append(threading.current_thread().name)
            return reserve(counter, amount, partial=partial)

        monkeypatch.setattr(b, "reserve", spy)
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            for _ in range(6):
                assert not m.consume(2000)  # needs a reservation: refused
            assert m.consume(10)  # already debited: spent without the database
            assert m.error is not None and "locked" in str(m.error)
            on_caller = [c for c in callers if c == threading.current_thread().name]
            assert len(on_caller) == 1, callers  # only the first waited (6 before)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        for _ in range(3):  # a retry that ran under the lock fails; the next one lands
            if m._next is not None:
                wait([m._next], timeout=30)
            if m.consume(2000):
                break
        else:
            raise AssertionError("spending never resumed")
        assert m.error is None  # recorded again: a refusal now is the limit's (review32A)
        assert used(db) >= m.spent == 2110
        m.release()
        assert used(db) == m.spent


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_deleted_or_replaced_in_use_records_nothing_more(
    tmp_path: Path, how: str
) -> None:
    """SQLite writes on into a file unlinked under it: the debits were lost with the
    process and the next start began from an empty file (limits reset). Now a debit
    into a file no longer at the path is refused (AccountingError, fail closed)."""
    db = tmp_path / "a.db"
    with Accounting(db, clock=lambda: NOW) as acct:
        b = acct.budget(chain(10_000))
        assert b.reserve(Counter.SEND_BYTE, 1000) == 1000
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        if how == "replaced":
            Accounting(db, clock=lambda: NOW).close()  # a new, empty database at the path
        with pytest.raises(AccountingError, match="deleted or replaced while in use"):
            b.reserve(Counter.SEND_BYTE, 1000)
        with pytest.raises(AccountingError, match="deleted or replaced"):
            acct.budget(chain(10_000))
