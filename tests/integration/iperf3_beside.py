"""What the beside-native iperf3 tests that stop or kill their server share (session 27,
iperf27: the prologues of test_throughput_iperf3_stalled.py and of
test_throughput_iperf3_errors.py were one copy each, flagged by `duplicates`): a server of
the test's own (`own_server`), a client started against it (`client`), its output up to
the first interval line (`first_interval`), and the rest once it ends (`rest`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from test_throughput_iperf3_options import REPO, _free_port
from testkit.poll import wait_tcp_listening

PKTLAB = [sys.executable, "-m", "packetlab", "run", "throughput", "--insecure-plaintext"]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


@contextmanager
def own_server() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """(port, process) of an `iperf3 -s -1` of this test's own on loopback, listening; at
    the end continued (a test may have stopped it) and killed."""
    p = _free_port()
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(p), "-B", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_tcp_listening(p, timeout=20)
        yield p, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGCONT)
            server.kill()
        server.wait(5)


def client(cmd: list[str], port: int, args: list[str], **popen: Any) -> subprocess.Popen[Any]:
    """`cmd -c 127.0.0.1 -p PORT --forceflush args` (native's stdout into a pipe is
    otherwise written at its exit, after whatever the test did to its server), stdout and
    stderr piped unless `popen` says otherwise."""
    opts: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    opts.update(popen)
    return subprocess.Popen([*cmd, "-c", "127.0.0.1", "-p", str(port), "--forceflush", *args],
                            env=ENV, cwd=REPO, **opts)  # fmt: skip


def first_interval(proc: subprocess.Popen[bytes], timeout: float = 20) -> bytes:
    """The client's stdout until its first interval line is out (read from the
    descriptor: `rest`'s communicate() reads the remainder from it too), or it exited."""
    assert proc.stdout is not None
    head = b""
    deadline = time.monotonic() + timeout
    while b" sec " not in head and time.monotonic() < deadline and proc.poll() is None:
        head += os.read(proc.stdout.fileno(), 4096)
    return head


def rest(proc: subprocess.Popen[bytes], head: bytes = b"") -> subprocess.CompletedProcess[str]:
    """The client run to its end (killed after 30 s), `head` before the rest of stdout."""
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return subprocess.CompletedProcess(proc.args, proc.returncode, (head + out).decode(),
                                       err.decode())  # fmt: skip
