"""Session 29 (wrap29): `pktlab wrap` fidelity left by session 28 (docs/usability.md
"Session 28 (wrap28)"). Each test runs a program natively and wrapped (in-process
endpoint, servers on loopback) and failed on the code before its fix (its docstring says
how)."""

from __future__ import annotations

import shutil
import subprocess
import sys
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
    assert wrapped.stdout.decode().splitlines() == lines, wrapped.stderr
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
