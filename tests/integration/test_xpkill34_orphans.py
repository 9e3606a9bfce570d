"""Nothing outlives a `pktlab xpmgr` killed outright (session 34, xpkill34).

Session 33 left: an xpmgr killed with SIGKILL (the OOM killer, a crash) left its mlets
running, one per endpoint, orphans holding their sockets for good when they were not
reading fd 0. Now each mlet gets SIGTERM from the kernel when the manager dies
(`packetlab.controller.deathsig`). A real manager, two real TLS endpoints, long-running
mlets that neither read nor write: a Python experiment (pymlet) and a C program, in the
default mode and with `-s`, and the C example singleton (examples/mlets/test_single_mlet,
which ties its sub-mlets to itself the same way); SIGKILL the manager; every mlet is gone
within a bounded poll, each endpoint's session over, and what was written before the kill
still there: the manager's line for the endpoint whose mlet had finished, the Python
mlets' own file, and the endpoints' accounting of the datagrams the mlets sent.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from conftest import REPO
from pxworld import EndpointProc, XpmgrProc
from tls_world import controller_chain, home_fixture

from packetlab.ppks import CertLimits, PktlabHome

home = home_fixture(scope="function", root=True, command=False)  # a database each

SENT = 4  # datagrams each waiting Python mlet sends
#: The Python experiment: the first call (the marker file is new) ends at once, so its
#: endpoint has a results line before the kill; each later one sends SENT datagrams (the
#: endpoint accounts for them: the chain has limits), writes a line to its own results
#: file (not flushed: still in the file object's buffer) and waits for ever.
PY_MLET = """\
import os

from twisted.internet.defer import Deferred

from packetlab.controller import udp_exchange


async def mlet(session, args):
    marker, out, port = args
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        first = True
    except FileExistsError:
        first = False
    if first:
        print(f"py mlet {os.getpid()} first", flush=True)
        return
    await udp_exchange(session, "127.0.0.1", int(port), [b"x" * 500] * SENT, timeout=0.2)
    with open(out, "a") as f:
        f.write(f"result of {os.getpid()}\\n")
        print(f"py mlet {os.getpid()} waiting", flush=True)
        await Deferred()  # neither reads nor writes
""".replace("SENT", str(SENT))

#: A C program, as any C mlet (nothing of its own about the manager's death): with a
#: marker argument the first one ends at once; the others (and the -s singleton, given no
#: argument) pause for ever.
C_MLET = r"""
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int first = argc > 1 && open(argv[1], O_CREAT | O_EXCL | O_WRONLY, 0644) >= 0;
    printf("c mlet %d %s\n", (int)getpid(), first ? "first" : "waiting");
    fflush(stdout);
    if (first) return 0;
    for (;;) pause();
}
"""

GONE_WITHIN = 20.0  # seconds: a SIGTERMed Python mlet stops its reactor at load 15


def _start_time(pid: int) -> str | None:
    """The process's start time (/proc stat field 22), None once it is gone or a zombie
    (an orphan's zombie waits for its new parent: it runs no more)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def _poll(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _over(ep: EndpointProc, sessions: int) -> bool:
    """Whether `sessions` sessions of the endpoint are over (its log says so)."""
    return ep.text().count("session over") >= sessions


def _debited(db: Path) -> dict[str, int]:
    """What the endpoints' accounting database holds as spent, per counter."""
    if not db.exists():
        return {}
    con = sqlite3.connect(db, timeout=30)
    try:
        return dict(con.execute("SELECT counter, max(used) FROM rlim GROUP BY counter"))
    finally:
        con.close()


def _limited_conf(home: Path, tmp: Path) -> Path:
    """The demo xpmgr.conf with an exppriv that has send limits: the endpoint accounts
    for each session's datagrams in its database."""
    limits = CertLimits(max_send_pkt=1000, max_send_byte=1_000_000)
    chain = controller_chain(PktlabHome.at(home), tmp / "chain", limits=limits)
    text = (home / "xpmgr.conf").read_text()
    text = re.sub(r"(?m)^(ExpExec 1::)[^:]*", lambda m: m.group(1) + ",".join(map(str, chain)),
                  text)  # fmt: skip
    conf = tmp / "xpmgr.conf"
    conf.write_text(text)
    return conf


def _mlet(tmp: Path, kind: str, single: bool, sink: int) -> list[str]:
    marker, out = tmp / "first", tmp / "mlet-results.txt"
    if kind == "python":
        exp = tmp / "exp.py"
        exp.write_text(PY_MLET)
        return [str(exp), str(marker), str(out), str(sink)]
    exe = _cc(tmp, "pausing_mlet", C_MLET)
    if kind == "c_example":  # the example singleton, a sub-mlet per endpoint
        single_c = (REPO / "examples/mlets/test_single_mlet.c").read_text()
        return [str(_cc(tmp, "test_single_mlet", single_c)), str(exe), str(marker)]
    return [str(exe)] if single else [str(exe), str(marker)]


def _cc(tmp: Path, name: str, source: str) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc) on this machine")
    exe, src = tmp / name, tmp / f"{name}.c"
    src.write_text(source)
    flags = ["-std=c99", "-D_POSIX_C_SOURCE=200809L", "-O2", "-Wall", "-Wextra", "-Werror"]
    subprocess.run([cc, *flags, "-o", str(exe), str(src)], check=True, capture_output=True)
    return exe


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


@pytest.mark.parametrize(
    ("kind", "single"),
    [("python", False), ("python", True), ("c", False), ("c", True), ("c_example", True)],
    ids=["python", "python-s", "c", "c-s", "c-example-s"],
)
def test_a_killed_manager_leaves_no_mlet_running(
    tmp_path: Path, home: Path, kind: str, single: bool
) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the datagrams land here
    sink.bind(("127.0.0.1", 0))
    argv = _mlet(tmp_path, kind, single, sink.getsockname()[1])
    db = home / "endpt.rlim.sqlite3"
    xp = XpmgrProc(tmp_path, _limited_conf(home, tmp_path), argv, *(["-s"] if single else []))
    eps: list[EndpointProc] = []
    mlets: dict[int, str | None] = {}
    try:
        port = xp.port()
        eps = [EndpointProc(tmp_path, home, f"127.0.0.1:{port}") for _ in range(2)]
        # Two mlets (or two calls of the singleton) wait; one finished before them, except
        # the C singleton's, which takes no endpoint and so finishes none.
        waiting = 1 if (single and kind == "c") else 2
        xp.wait_log(r"(?s)(mlet \d+ waiting.*){" + str(waiting) + "}", timeout=60)
        if waiting == 2:
            assert _poll(lambda: len(xp.result_lines()) == 1, 20), xp.text()[-3000:]
            before = xp.result_lines()
            assert before[0]["status"] == "done", before
        else:  # the C singleton took nothing: both endpoints have a session open
            xp.wait_log(r"endpoints seen 2", timeout=60)
        sessions = [ep.text().count("controller session started") for ep in eps]
        found = {pid: _start_time(pid) for pid in _descendants(xp.proc.pid)}
        mlets = {pid: t for pid, t in found.items() if t is not None}  # not a zombie
        # the singleton and, of the C example, its two sub-mlets (grandchildren)
        count = {"c_example": 3}.get(kind, 1 if single else 2)
        assert len(mlets) == count, (mlets, xp.text()[-3000:])

        xp.proc.kill()  # SIGKILL: the manager runs nothing of its own
        xp.proc.wait(10)

        def running() -> list[int]:
            return sorted(pid for pid, born in mlets.items() if _start_time(pid) == born)

        assert _poll(lambda: not running(), GONE_WITHIN), (
            f"mlets {running()} of {sorted(mlets)} still running {GONE_WITHIN:g} s after "
            f"the manager's SIGKILL:\n{xp.text()[-3000:]}"
        )
        # each endpoint's sessions are over (the kernel closed the manager's sockets)
        for ep, started in zip(eps, sessions, strict=True):
            assert _poll(partial(_over, ep, started), 20), ep.text()[-3000:]
        if waiting == 2:  # what was written before the kill is kept
            assert xp.result_lines() == before
        if kind == "python":
            # the mlets' own lines, flushed as they stopped
            lines = (tmp_path / "mlet-results.txt").read_text().splitlines()
            assert len(lines) == 2 and all(x.startswith("result of ") for x in lines), lines
            # the endpoints accounted for what the two sent, exactly (the reservations
            # not spent given back at the session's end)
            got = _debited(db)
            assert got["max_send_pkt"] == 2 * SENT, got
    finally:
        sink.close()
        for ep in eps:
            ep.stop()
        xp.stop()
        for pid, born in mlets.items():  # those the manager left (before session 34)
            if _start_time(pid) == born:
                os.kill(pid, signal.SIGKILL)


CHECK_HANGS = """\
import time


def check(args):
    time.sleep(600)  # a check that never ends: the manager is killed meanwhile


async def mlet(session, args):
    pass
"""


def test_a_killed_manager_leaves_no_check_running(tmp_path: Path, home: Path) -> None:
    """The Python experiment's `check(args)` runs in a child before the manager listens
    (pymletcheck.py, a 120 s timeout the manager enforces): it ran on after the manager's
    SIGKILL, for as long as it liked."""
    exp = tmp_path / "exp.py"
    exp.write_text(CHECK_HANGS)
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(exp)])
    checks: dict[int, str | None] = {}
    try:

        def found() -> bool:
            for pid in _children(xp.proc.pid):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"--check" in cmd:
                    checks[pid] = _start_time(pid)
            return bool(checks)

        assert _poll(found, 60), xp.text()[-3000:]
        xp.proc.kill()
        xp.proc.wait(10)
        gone = _poll(lambda: all(_start_time(p) != b for p, b in checks.items()), GONE_WITHIN)
        assert gone, f"check {sorted(checks)} still running {GONE_WITHIN:g} s after the SIGKILL"
    finally:
        xp.stop()
        for pid, born in checks.items():
            if _start_time(pid) == born:
                os.kill(pid, signal.SIGKILL)
