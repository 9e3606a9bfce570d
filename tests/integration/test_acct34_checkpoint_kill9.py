"""SIGKILL of a process while the accounting database's WAL is being checkpointed (acct34):
a child meters spending as the endpoint does (`Accounting(prefetch=True)`, top-ups
committed by the worker) with a checkpoint after every commit (`CHECKPOINT_COMMITS = 1`,
so most of the worker's time is in a commit or a checkpoint), and says on stdout each
amount once it is spent, and when a checkpoint starts and ends. Killed at seeded random
moments (most inside a checkpoint), then: the database opens cleanly (integrity_check
ok), what was debited covers every amount the child said it spent (nothing spent before
it is debited), and never goes back between kills."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

UNIT_PPKS = Path(__file__).resolve().parents[1] / "unit" / "ppks"
KILLS = int(os.environ.get("ACCT34_KILLS", "6"))
SEED = 3434
STEP = 100  # bytes spent a line
CHUNK = 1000  # the meter's reservation: at most this (+ one in flight) unspent on a kill
LIMIT = 10**12

CHILD = f"""
import os
import sys
sys.path.insert(0, {str(UNIT_PPKS)!r})
from ppks_factory import NOW, cert
from packetlab.ppks import accounting
from packetlab.ppks import Accounting, Counter

accounting.CHECKPOINT_COMMITS = 1
acct = Accounting(sys.argv[1], clock=lambda: NOW, prefetch=True)
checkpoint = acct.checkpoint

def marked():  # "c" when a checkpoint starts, "C" when it is over (a write each: atomic)
    os.write(1, b"c\\n")
    checkpoint()
    os.write(1, b"C\\n")

acct.checkpoint = marked
exppriv = cert("exppriv", "eop", "exper", limits="max_send_byte={LIMIT};", serial=34)
m = acct.budget([exppriv]).meter(Counter.SEND_BYTE, {CHUNK})
spent = 0
while True:
    assert m.consume({STEP})
    spent += {STEP}
    sys.stdout.write(f"{{spent}}\\n")
    sys.stdout.flush()
"""


def debited(db: Path) -> int:
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (used,) = c.execute("SELECT used FROM rlim WHERE counter = 'max_send_byte'").fetchone()
        return int(used)  # (one row: every child has the same certificate, serial 34)


def run_and_kill(db: Path, lines: int) -> tuple[int, int, bool]:
    """The child killed once it has said `lines` amounts (plus what it says before the
    signal lands); returns (the last amount it said, the lines read, whether it was in a
    checkpoint then)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    killer = threading.Timer(60, proc.kill)  # (a child that hangs fails, not the suite)
    killer.start()
    last, read, marker = 0, 0, ""
    try:
        for line in proc.stdout:
            if not line.endswith("\n"):
                break  # cut by the kill: not said
            if line in ("c\n", "C\n"):
                marker = line
                continue
            last, read = int(line), read + 1
            if read == lines:
                os.kill(proc.pid, signal.SIGKILL)
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, proc.returncode
    return last, read, marker == "c\n"


def test_sigkill_mid_checkpoint_loses_no_debit(tmp_path: Path) -> None:
    db = tmp_path / "rlim.sqlite3"
    rng = random.Random(SEED)
    before, mid_checkpoint = 0, 0
    for i in range(KILLS):
        t0 = time.monotonic()
        said, lines, in_checkpoint = run_and_kill(db, rng.randint(20, 400))
        now = debited(db)
        wal = Path(f"{db}-wal")
        wal_size = wal.stat().st_size if wal.exists() else 0
        print(f"kill {i}: {lines} lines, said {said}, debited {now - before}, "
              f"WAL {wal_size} B, in a checkpoint: {in_checkpoint}, "
              f"{time.monotonic() - t0:.2f} s")  # fmt: skip
        # Everything said was debited first; unspent: the held chunk and one in flight.
        assert before + said <= now <= before + said + 2 * CHUNK + STEP
        # Checkpointed all along: a few pages, not one per commit (lines / 10 commits).
        assert wal_size <= 8 * (4096 + 24) + 32
        before = now
        mid_checkpoint += in_checkpoint
    # The child mostly waits for a top-up queued behind a checkpoint: 29 of 30 kills
    # landed inside one (ACCT34_KILLS=30, load 6-7)
    assert mid_checkpoint >= 1
