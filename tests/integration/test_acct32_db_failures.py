"""The endpoint's accounting database when something else goes wrong with it (acct32): a
real `twistd pktendpoint` over TLS, a chain with send limits, and the database locked by
another process. The endpoint refuses what it cannot debit (ESKTPKTDENY, one log line),
never sends undebited, keeps answering, and resumes once the database records again."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import RawController
from test_endpoint_tls import LO, _udp_open
from tls_world import (
    SendWorld,
    TLSController,
    TLSEndpoint,
    controller_chain,
    drain,
    pktlab_init,
    send_world,
    udp_sink,
)

from packetlab import wire
from packetlab.ppks import CertLimits
from packetlab.wire.constants import Proto, Status

PKT = 1000
LIMITS = CertLimits(max_send_byte=10_000_000, max_send_pkt=100_000)


def send(c: RawController, port: int, timeout: float = 15.0) -> int:
    r = c.request(wire.Nsend(1, 4, int(Proto.UDP), 0, 0, b"x" * PKT, LO, port), timeout)
    assert isinstance(r, wire.Result), r
    return r.errid


def spending(w: SendWorld) -> RawController:
    """A session on a new endpoint of `w` that has sent 10 packets (debited, recorded)."""
    w.endpoint()
    c = w.udp_session()
    for _ in range(10):
        assert send(c, w.port) == 0
    return c


def resumes(c: RawController, port: int) -> None:
    """Sends succeed again, 20 in a row, within 30 s: the packet and byte meters each
    retry on their own, so a few refusals may come between the first success and the
    last retry's landing."""
    deadline = time.monotonic() + 30
    run = 0
    while run < 20:
        run = run + 1 if send(c, port) == 0 else 0
        assert time.monotonic() < deadline, "the endpoint never sent again"


def debited(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db, timeout=30)
    try:
        return dict(con.execute("SELECT counter, max(used) FROM rlim GROUP BY counter"))
    finally:
        con.close()


@pytest.mark.skipif(
    subprocess.run(["which", "sqlite3"], capture_output=True).returncode != 0,
    reason="needs the sqlite3 command",
)
def test_a_locked_database_refuses_at_once_and_resumes(tmp_path: Path) -> None:
    """An operator's `sqlite3` shell holds BEGIN IMMEDIATE on the endpoint's database.
    Before, the first nsend that needed a reservation froze the endpoint's reactor for
    SQLite's 30 s busy timeout, and every later one again (the second was unanswered
    after 60 s); now the first waits the endpoint's 1 s and the rest are refused at once
    (measured: 2000 nsends in 1.4 s, p50 0.14 ms), and spending resumes on unlock."""
    shell: subprocess.Popen[str] | None = None
    with send_world(tmp_path, LIMITS) as w:
        try:
            c = spending(w)
            shell = subprocess.Popen(
                ["sqlite3", str(w.db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            assert shell.stdin is not None and shell.stdout is not None
            shell.stdin.write("BEGIN IMMEDIATE;\nSELECT 'locked';\n")
            shell.stdin.flush()
            assert shell.stdout.readline().strip() == "locked"
            # Each answered within 15 s (before: the first after 30 s, the second never).
            statuses = [send(c, w.port) for _ in range(300)]
            assert set(statuses) <= {0, int(Status.ESKTPKTDENY)}
            assert statuses.count(int(Status.ESKTPKTDENY)) >= 200  # only what was held is sent
            shell.stdin.write("ROLLBACK;\n.quit\n")
            shell.stdin.flush()
            shell.wait(10)
            shell = None
            resumes(c, w.port)
            c.close()
            ep = w.eps[0]
            ep.wait_log("session over")
            got = debited(w.db)
            assert (
                drain(w.sink) <= got["max_send_pkt"]
                and got["max_send_byte"] == PKT * got["max_send_pkt"]
            )
            out = ep.output()
            assert out.count("database is locked; every request") == 1  # one line, not 1 per nsend
            assert "another process holds the database's write lock" in out
            assert "Traceback" not in out
        finally:
            if shell is not None:
                shell.kill()
                shell.wait()


def test_a_database_deleted_in_use_is_refused_not_forgotten(tmp_path: Path) -> None:
    """The database (and its -wal, -shm) removed under a running endpoint. Before, SQLite
    went on recording into the unlinked file: all 3000 nsends after the `rm` were sent,
    and the restarted endpoint began from a new, empty file (limits reset, 3100 packets
    forgotten). Now what is already debited is spent and the rest refused, with one line
    that says what happened; the endpoint keeps answering."""
    with send_world(tmp_path, LIMITS) as w:
        c = spending(w)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{w.db}{suffix}").unlink(missing_ok=True)
        statuses = [send(c, w.port) for _ in range(1000)]
        # At most what was reserved before the rm (one chunk of 64 KiB, 64+ packets).
        assert statuses.count(0) < 200, statuses.count(0)
        assert statuses[-100:] == [int(Status.ESKTPKTDENY)] * 100
        c.close()
        ep = w.eps[0]
        ep.wait_log("session over")
        out = ep.output()
        assert out.count("deleted or replaced while in use") == 2  # the refusal, the close
        assert "restart the endpoint" in out and "Traceback" not in out
        assert ep.proc.poll() is None


def test_two_endpoints_on_one_database_share_the_limit(tmp_path: Path) -> None:
    """An operator points two endpoints at the same RLimDBPath and one chain sends
    through both at once: every debit is an IMMEDIATE transaction that reads what the
    other committed, so together they send exactly the limit, never more (measured:
    40,000 of 40,000, 21,919 + 18,081, no refusal before the limit). Sharing is safe:
    nothing is refused at start."""
    limit = 6000
    home = pktlab_init(tmp_path / "home")
    db = home.root / "endpt.rlim.sqlite3"
    chain = controller_chain(home, tmp_path / "c", limits=CertLimits(max_send_pkt=limit))
    sink, port = udp_sink()
    ctls = [TLSController(chain, home.key_path("k_xc"), tmp_path) for _ in range(2)]
    eps = [TLSEndpoint(home, c.address, tmp_path) for c in ctls]
    sent = [0, 0]
    early = [0, 0]  # refusals before the limit
    full = [0, 0]  # refused batches after it
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            c = ctls[k].accept(timeout=60)
            c.start()
            _udp_open(c, 1)
            msg = wire.Nsend(1, 4, int(Proto.UDP), 0, 0, b"y" * 100, LO, port)
            while True:
                c.send(*[msg] * 8)
                statuses = [c.response(timeout=30) for _ in range(8)]
                assert all(isinstance(r, wire.Result) for r in statuses), statuses
                ok = sum(r == wire.Result(0) for r in statuses)
                sent[k] += ok
                if ok == 8:
                    continue
                if debited(db)["max_send_pkt"] < limit:
                    early[k] += 8 - ok  # refused with some left: the database failed
                    continue
                # Refused, nothing left in the database: the other holds the rest. Three
                # times, so that a retry of ours in flight has landed and been spent.
                full[k] += 1
                if full[k] == 3:
                    break
            c.close()
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        for e in eps:
            e.wait_log("session over")
        logs = [line for e in eps for line in e.output().splitlines() if "refused" in line]
        assert sum(sent) == limit, (sent, early, logs)
        assert min(sent) > 0  # both really sent
        assert drain(sink) <= limit
        assert debited(db)["max_send_pkt"] == limit
        assert not any("Traceback" in e.output() for e in eps)
    finally:
        for e in eps:
            e.stop()
        for c in ctls:
            c.close()
        sink.close()


def test_a_full_disk_refuses_then_resumes(tmp_path: Path) -> None:
    """RLimDBPath on a 256 KiB tmpfs this test mounts, filled up mid-session: what is
    already debited is sent, the rest ESKTPKTDENY (one error line), nothing undebited
    leaves, and sends resume once there is room (measured: 63 of 3000 sent while full;
    after the room was made, 35 refusals, about 5 ms, before the retry landed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    home = pktlab_init(tmp_path / "home")
    mnt = tmp_path / "acct32-full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "acct32-full", str(mnt)], check=True)
    try:
        db = mnt / "rlim.sqlite3"
        conf = home.root / "endpt.conf"
        conf.write_text(conf.read_text().replace(str(home.root / "endpt.rlim.sqlite3"), str(db)))
        with send_world(tmp_path, LIMITS, home) as w:
            c = spending(w)
            fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
            try:  # fill the file system
                while os.write(fd, b"\0" * 4096):
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
            statuses = [send(c, w.port) for _ in range(1000)]
            assert statuses.count(0) < 200 and statuses[-1] == int(Status.ESKTPKTDENY)
            (mnt / "filler").unlink()
            resumes(c, w.port)
            c.close()
            ep = w.eps[0]
            ep.wait_log("session over")
            got = debited(db)
            assert drain(w.sink) <= got["max_send_pkt"]
            out = ep.output()
            assert out.count("database or disk is full; every request") == 1
            assert "Traceback" not in out
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
