"""iperf3 3.12's -I (--pidfile) and -d beside native (session 26, iperf26b): the file
holds the client's PID while the test runs and is gone after a SIGTERM mid-test, both
tools; -d's lines are on stderr here (native's own on stdout). One server per test."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from iperf3_beside import PKTLAB, client, first_interval, own_server, rest

pytestmark = pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 missing")


def _poll(what: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not what() and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.parametrize("tool", ["pktlab", "iperf3"])
def test_pidfile_holds_the_pid_and_goes_with_sigterm_as_native(tool: str, tmp_path: Path) -> None:
    pid = tmp_path / "client.pid"
    cmd = [*PKTLAB, "-d"] if tool == "pktlab" else ["iperf3", "-R"]
    with own_server() as (p, _server):
        proc = client(cmd, p, ["-t", "20", "-b", "10M", "-I", str(pid)])
        try:
            _poll(pid.exists)
            _poll(lambda: pid.read_text() != "")
            assert pid.read_text() == str(proc.pid)  # no newline, as 3.12's
            assert pid.stat().st_mode & 0o777 == 0o600
            head = first_interval(proc)  # the test runs (the file came before)
        except BaseException:
            proc.kill()
            proc.wait(5)
            raise
        proc.send_signal(signal.SIGTERM)
        run = rest(proc, head)
    out, err = run.stdout, run.stderr
    assert not pid.exists(), (out, err)
    if tool == "pktlab":
        assert "pktlab run throughput: debug: state TEST_START (1) received" in err, err
        assert "debug:" not in out, out
    else:
        assert run.returncode != 0, out  # interrupted
