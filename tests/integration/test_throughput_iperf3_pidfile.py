"""iperf3 3.12's -I (--pidfile) and -d beside native (session 26, iperf26b): the file
holds the client's PID while the test runs and is gone after a SIGTERM mid-test, both
tools; -d's lines are on stderr here (native's own on stdout). One server per test."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_throughput_iperf3_options import REPO, _free_port
from testkit.poll import wait_tcp_listening

pytestmark = pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 missing")

PKTLAB = [sys.executable, "-m", "packetlab", "run", "throughput", "--insecure-plaintext"]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def _poll(what: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not what() and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.parametrize("tool", ["pktlab", "iperf3"])
def test_pidfile_holds_the_pid_and_goes_with_sigterm_as_native(tool: str, tmp_path: Path) -> None:
    p = _free_port()
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(p), "-B", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    pid = tmp_path / "client.pid"
    cmd = [*PKTLAB, "-d"] if tool == "pktlab" else ["iperf3", "-R"]
    try:
        wait_tcp_listening(p, timeout=20)
        proc = subprocess.Popen([*cmd, "-c", "127.0.0.1", "-p", str(p), "-t", "20", "-b",
                                 "10M", "-I", str(pid), "--forceflush"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
                                cwd=REPO, text=True)  # fmt: skip
        try:
            _poll(pid.exists)
            _poll(lambda: pid.read_text() != "")
            assert pid.read_text() == str(proc.pid)  # no newline, as 3.12's
            assert pid.stat().st_mode & 0o777 == 0o600
            assert proc.stdout is not None
            head = ""  # the first interval line: the test runs (the file came before)
            while " sec " not in head and proc.poll() is None:
                head += proc.stdout.readline()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        out = head + out
        assert not pid.exists(), (out, err)
        if tool == "pktlab":
            assert "pktlab run throughput: debug: state TEST_START (1) received" in err, err
            assert "debug:" not in out, out
        else:
            assert proc.returncode != 0, out  # interrupted
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(5)
