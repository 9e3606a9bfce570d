"""Persistent accounting (§4.5) under SIGKILL: a real process spends from the budget and is
killed mid-debit; what it reported spent plus what is left never exceeds the limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ppks_factory import NOW
from test_ppks_accounting import LIMIT, chain

from packetlab.ppks import Accounting, Counter

_CHILD = textwrap.dedent(
    """
    import sys
    from packetlab.ppks import Accounting, Certificate, Counter, load_certificates
    certs = load_certificates(open(sys.argv[2], "rb").read())
    acct = Accounting(sys.argv[1], clock=lambda: int(sys.argv[3]))
    budget = acct.budget(certs)
    meter = budget.meter(Counter.SEND_BYTE, chunk=1500)
    while True:
        # spend in odd sizes; print only what was really granted and spent
        if not meter.consume(1234):
            break
        print(1234, flush=True)
    print("exhausted", flush=True)
    sys.stdin.read()
    """
)


def test_sigkill_mid_debit_never_overspends(tmp_path: Path) -> None:
    """A real process spends from the budget and is killed with SIGKILL at varying
    moments (often inside a commit). After each kill the database is reopened: what the
    dead processes reported spent, plus what is still available, never exceeds the limit."""
    db = tmp_path / "endpt.rlim.sqlite3"
    pem = tmp_path / "chain.pem"
    c = chain(LIMIT)
    pem.write_bytes(b"".join(x.to_pem() for x in c))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    reported = 0
    for delay in (0.05, 0.15, 0.3, 0.02):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(db), str(pem), str(NOW)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the child is spending now
        assert first.strip() == b"1234"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        lines = [first, *out.splitlines()]
        reported += sum(int(x) for x in lines if x.strip().isdigit())
        with Accounting(db, clock=lambda: NOW) as acct:
            assert acct._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            left = acct.budget(c).remaining(Counter.SEND_BYTE)
            assert left is not None
            assert reported + left <= LIMIT, (reported, left)
    assert reported > 0
    # drain what is left in this process: the grand total still fits
    with Accounting(db, clock=lambda: NOW) as acct:
        b = acct.budget(c)
        got = b.reserve(Counter.SEND_BYTE, LIMIT, partial=True)
        assert reported + got <= LIMIT
        assert b.reserve(Counter.SEND_BYTE, 1) == 0
