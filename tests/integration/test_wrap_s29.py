"""Session 29 (wrap29): `pktlab wrap` fidelity left by session 28 (docs/usability.md
"Session 28 (wrap28)"). Each test runs a program natively and wrapped (in-process
endpoint, servers on loopback) and failed on the code before its fix (its docstring says
how)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO
from test_wrap_sockets25 import _ipv6, _proxychains

PKTLAB = [sys.executable, "-m", "packetlab"]
C_DIR = Path(__file__).with_name("wrap_c")


def _compile(tmp_path: Path, name: str) -> Path:
    """One of wrap_c/'s programs, built with the system compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler (cc)")
    exe = tmp_path / name
    subprocess.run([cc, "-O2", "-Wall", "-o", str(exe), str(C_DIR / f"{name}.c")], check=True)
    return exe


def _native_and_wrapped(
    cmd: list[str], timeout: float = 60
) -> tuple[subprocess.CompletedProcess[bytes], subprocess.CompletedProcess[bytes]]:
    _proxychains()
    native = subprocess.run(cmd, capture_output=True, timeout=timeout)
    wrapped = subprocess.run(
        [*PKTLAB, "wrap", "--", *cmd], capture_output=True, timeout=timeout + 30, cwd=REPO
    )
    return native, wrapped


@pytest.mark.parametrize("family", ["4", "6"])
def test_non_blocking_connects_look_as_natively_to_poll_select_and_epoll(
    tmp_path: Path, family: str
) -> None:
    """A refused non-blocking connect polled `POLLOUT|POLLHUP` without `POLLERR` (epoll
    `EPOLLOUT|EPOLLHUP`), its read() failed `ENOTCONN` and a second connect() was
    `EINPROGRESS` for ever (not the native `ECONNREFUSED`); one that succeeded returned 0
    at once, not `EINPROGRESS`, and a second connect() was `EISCONN`, not 0."""
    if family == "6" and not _ipv6():
        pytest.skip("no IPv6 loopback")
    exe = _compile(tmp_path, "nonblocking_connect")
    native, wrapped = _native_and_wrapped([str(exe), family])
    assert native.returncode == 0, native.stderr
    lines = native.stdout.decode().splitlines()
    assert len(lines) == 6
    # what the native run shows, so the comparison means something
    assert "closed connect EINPROGRESS poll 1 revents IN OUT ERR HUP" in lines[0]
    assert "open connect EINPROGRESS" in lines[1]
    assert "again ECONNREFUSED" in lines[2] and "again 0 again EISCONN" in lines[3]
    assert "events OUT ERR HUP read ECONNREFUSED SO_ERROR 0" in lines[4]
    # The third connect (a new try after the refusal) is parked since session 31: its
    # refusal comes a controller round trip later, not within the call as a loopback
    # port's natively, so the poll(0) right after it may show nothing yet.
    late = "again EINPROGRESS after OUT ERR HUP"
    soon = [line.replace(late, "again EINPROGRESS after") for line in lines]
    got = [
        line.replace(late, "again EINPROGRESS after")
        for line in wrapped.stdout.decode().splitlines()
    ]
    assert got == soon, wrapped.stderr
    assert wrapped.returncode == 0


def test_many_refused_non_blocking_connects_each_poll_an_error(tmp_path: Path) -> None:
    """200 refused non-blocking connects in a row (an event loop's retries): each has
    `POLLERR` and its `SO_ERROR`, and none leaves a descriptor behind (the shim's helper
    socket is closed each time)."""
    probe = tmp_path / "many.py"
    probe.write_text(
        "import errno, os, select, socket\n"
        "ports = []\n"
        "for _ in range(200):\n"
        "    b = socket.socket(); b.bind(('127.0.0.1', 0)); ports.append(b)\n"
        "before = len(os.listdir('/proc/self/fd'))\n"
        "errs = set()\n"
        "for b in ports:\n"
        "    s = socket.socket(); s.setblocking(False)\n"
        "    rc = s.connect_ex(b.getsockname())\n"
        "    p = select.poll(); p.register(s, select.POLLOUT)\n"
        "    ev = p.poll(5000)[0][1]\n"
        "    errs.add((errno.errorcode.get(rc), ev & select.POLLERR != 0,\n"
        "              errno.errorcode.get(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))))\n"
        "    s.close()\n"
        "print(sorted(errs), len(os.listdir('/proc/self/fd')) - before)\n"
    )
    native, wrapped = _native_and_wrapped(["python3", str(probe)], timeout=120)
    assert native.stdout == b"[('EINPROGRESS', True, 'ECONNREFUSED')] 0\n", native.stderr
    assert wrapped.stdout == native.stdout, wrapped.stderr


_DAEMON = """\
import os, socket, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
if os.fork():
    os._exit(3)  # the parent's status is the command's, as `ssh -f` returns at once
os.setsid()
time.sleep(4)  # the shell has returned by now
with socket.create_connection(("127.0.0.1", port)) as s:
    data = s.recv(100)
with open(out + ".tmp", "wb") as f:
    f.write(data)
os.rename(out + ".tmp", out)
"""


# Runs the command as the shell would, but as the child subreaper of what it leaves
# (PR_SET_CHILD_SUBREAPER): those processes become this launcher's children, so it knows
# them by pid, waits for them, and ends any still running by pid (session 30: the test
# found them by a tag in their command line before, and killed what matched).
_LAUNCHER = """\
import ctypes, os, subprocess, sys, time
from packetlab.wrap.orphans import children
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
out, cmd = sys.argv[1], sys.argv[2:]
started = time.monotonic()
status = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL).wait()
print("status", status, os.path.exists(out), round(time.monotonic() - started, 1), flush=True)
left = children()  # the daemon and the wrapper's copy: ours now that their parents exited
print("left", len(left), flush=True)
deadline = time.monotonic() + 30
while left and time.monotonic() < deadline:
    time.sleep(0.05)
    left = [pid for pid in left if os.waitpid(pid, os.WNOHANG)[0] == 0]
for pid in left:
    os.kill(pid, 15)
    os.waitpid(pid, 0)
print("still running", len(left), flush=True)
"""


def test_a_program_that_daemonises_returns_at_once_and_its_daemon_stays_wrapped(
    tmp_path: Path,
) -> None:
    """`ssh -f` (fork, the parent exits): `pktlab wrap` waited for the daemon, so the
    shell did not return until it ended; natively it returns with the parent's status
    at once. Now it does too, and the daemon's later connection still goes out from the
    endpoint (a copy of `pktlab wrap` serves it, and ends with it)."""
    _proxychains()
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    seen: list[tuple[str, int]] = []

    def serve() -> None:
        conn, peer = srv.accept()
        with conn:
            seen.append(peer)
            conn.sendall(b"hello from the server\n")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    script = tmp_path / "daemonise.py"
    script.write_text(_DAEMON)
    out = tmp_path / "got"
    cmd = [*PKTLAB, "wrap", "--", "python3", str(script), str(port), str(out)]
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(out), *cmd],
            capture_output=True, timeout=120, cwd=REPO,
        )  # fmt: skip
    finally:
        srv.close()
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 3, done
    status, fetched_yet, returned_after = lines[0].split()[1:]
    assert status == "3", done.stderr
    assert fetched_yet == "False", f"returned after the daemon's fetch ({returned_after} s)"
    assert lines[1] == "left 2", done  # the daemon and the wrapper's copy
    assert out.read_bytes() == b"hello from the server\n", done.stderr
    assert seen and seen[0][0] == "127.0.0.1"
    assert lines[2] == "still running 0", "the daemon or the wrapper's copy did not end"
