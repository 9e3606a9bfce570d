"""Session 26 (iperf26): a real `iperf3 -s` stopped (SIGSTOP) mid-test, beside native
iperf3 3.12 on loopback: with `--rcv-timeout` both fail with `error - idle timeout for
receiving data` (was ours: an unrecognized argument, and without it `nothing from ...
within 63 s`); a server stopped past the test's end and resumed: both print its sender
line over its own span, as 3.12's sender_time (was ours: `0.00-2.00` with the rate over
the server's longer span). The stall itself is the stimulus (a sleep of its length);
everything else is polled. One server per test (`-1`), its own port."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from test_throughput_iperf3_options import REPO, _free_port
from testkit.poll import wait_tcp_listening

pytestmark = pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 missing")

PKTLAB = [sys.executable, "-m", "packetlab", "run", "throughput", "--insecure-plaintext"]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def stalled(cmd: list[str], args: list[str], stall: float) -> subprocess.CompletedProcess[str]:
    """`cmd -c ... args` against its own `iperf3 -s`, stopped once the first interval line
    is out and resumed `stall` s later (or when the client is done, if sooner)."""
    p = _free_port()
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(p), "-B", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_tcp_listening(p, timeout=20)
        # --forceflush: native's stdout into a pipe is otherwise written at its exit
        proc = subprocess.Popen([*cmd, "-c", "127.0.0.1", "-p", str(p), "--forceflush",
                                 *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=ENV, cwd=REPO)  # fmt: skip
        assert proc.stdout is not None
        head = b""  # read from the descriptor: communicate() reads the rest from it too
        deadline = time.monotonic() + 20
        while b" sec " not in head and time.monotonic() < deadline and proc.poll() is None:
            head += os.read(proc.stdout.fileno(), 4096)
        server.send_signal(signal.SIGSTOP)
        resume = time.monotonic() + stall
        while proc.poll() is None and time.monotonic() < resume:
            time.sleep(0.05)  # the stall: the client may fail first (--rcv-timeout)
        server.send_signal(signal.SIGCONT)
        try:
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        return subprocess.CompletedProcess(cmd, proc.returncode, (head + out).decode(),
                                           err.decode())  # fmt: skip
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGCONT)
            server.kill()
        server.wait(5)


def test_rcv_timeout_on_a_stopped_server_as_native() -> None:
    """`-R -t 6 -b 100M --rcv-timeout 1000`, the server stopped after the first second:
    iperf3's line, exit 1, both, in about a second (not at 6 s)."""
    args = ["-t", "6", "-b", "100M", "--rcv-timeout", "1000"]
    began = time.monotonic()
    ours = stalled(PKTLAB, args, stall=5)
    took = time.monotonic() - began
    theirs = stalled(["iperf3", "-R"], args, stall=5)
    line = "error - idle timeout for receiving data"
    assert ours.returncode == theirs.returncode == 1, (ours, theirs)
    assert ours.stderr.splitlines()[-1] == f"pktlab run throughput: {line}", ours.stderr
    assert theirs.stderr.splitlines()[-1] == f"iperf3: {line}", theirs.stderr
    assert took < 6, took  # failed while the test ran, as native's


def test_a_server_resumed_after_the_end_shows_its_span_as_native() -> None:
    """`-R -t 2 -b 100M`, the server stopped after the first second for 3 s: it reads
    TEST_END late and reports its longer span; the sender line ends there (3.12's
    sender_time: native 4.05 here), the receiver line at 2.00 (native 2.00-2.01)."""
    args = ["-t", "2", "-b", "100M"]
    ours = stalled(PKTLAB, args, stall=3)
    theirs = stalled(["iperf3", "-R"], args, stall=3)
    for run in (ours, theirs):
        assert run.returncode == 0, run
        sender = re.search(r"\[  5\]   0\.00-(\S+)\s+sec .* sender$", run.stdout, re.M)
        receiver = re.search(r"\[  5\]   0\.00-(\S+)\s+sec .* receiver$", run.stdout, re.M)
        assert sender and receiver, run.stdout
        assert float(sender.group(1)) >= 3.5, run.stdout
        assert float(receiver.group(1)) < 2.1, run.stdout  # native's timer: 2.00-2.01


def killed(cmd: list[str], args: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """`cmd -c ... args` against its own `iperf3 -s`, SIGKILLed once the first interval
    line is out; with the seconds from the kill to the client's exit."""
    p = _free_port()
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(p), "-B", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_tcp_listening(p, timeout=20)
        proc = subprocess.Popen([*cmd, "-c", "127.0.0.1", "-p", str(p), "--forceflush",
                                 *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=ENV, cwd=REPO)  # fmt: skip
        assert proc.stdout is not None
        head = b""
        deadline = time.monotonic() + 20
        while b" sec " not in head and time.monotonic() < deadline and proc.poll() is None:
            head += os.read(proc.stdout.fileno(), 4096)
        server.kill()
        at = time.monotonic()
        try:
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        took = time.monotonic() - at
        run = subprocess.CompletedProcess(cmd, proc.returncode, (head + out).decode(),
                                          err.decode())  # fmt: skip
        return run, took
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(5)


def test_a_udp_upload_to_a_killed_server_fails_at_once_as_native() -> None:
    """`-u -b 1M -t 8`, the server SIGKILLed after the first second: iperf3's `control
    socket has closed unexpectedly`, exit 1, within a second of the kill, both (was ours:
    at the end of the 8 s, the datagrams' sends never failing)."""
    args = ["-u", "-b", "1M", "-t", "8"]
    ours, ours_s = killed([*PKTLAB, "--direction", "upload"], args)
    theirs, theirs_s = killed(["iperf3"], args)
    line = "error - control socket has closed unexpectedly"
    assert ours.returncode == theirs.returncode == 1, (ours, theirs)
    assert ours.stderr.splitlines()[-1] == f"pktlab run throughput: {line}", ours.stderr
    assert theirs.stderr.splitlines()[-1] == f"iperf3: {line}", theirs.stderr
    assert theirs_s < 1 and ours_s < 2, (ours_s, theirs_s)


def stalled_lines(
    cmd: list[str], args: list[str], stall: float
) -> tuple[list[tuple[float, str]], float]:
    """As `stalled`, with each stdout line's arrival (s from the stop) and the resume's
    (a timer: the client may print nothing meanwhile)."""
    import threading

    p = _free_port()
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(p), "-B", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    resumed: list[float] = []

    def resume() -> None:
        server.send_signal(signal.SIGCONT)
        resumed.append(time.monotonic())

    timer = threading.Timer(stall, resume)
    try:
        wait_tcp_listening(p, timeout=20)
        proc = subprocess.Popen([*cmd, "-c", "127.0.0.1", "-p", str(p), "--forceflush",
                                 *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=ENV, cwd=REPO, text=True, bufsize=1)  # fmt: skip
        assert proc.stdout is not None
        lines: list[tuple[float, str]] = []
        stopped = 0.0
        try:
            for line in proc.stdout:
                lines.append((time.monotonic(), line.rstrip("\n")))
                if not stopped and " sec " in line:
                    server.send_signal(signal.SIGSTOP)
                    stopped = time.monotonic()
                    timer.start()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
            if stopped:
                timer.join(stall + 1)
        assert stopped and resumed, lines
        return [(t - stopped, text) for t, text in lines], resumed[0] - stopped
    finally:
        timer.cancel()
        if server.poll() is None:
            server.send_signal(signal.SIGCONT)
            server.kill()
        server.wait(5)


@pytest.mark.parametrize("direction", [["-R"], []], ids=["download", "upload"])
def test_a_stalled_servers_empty_intervals_come_as_they_pass_as_native(
    direction: list[str],
) -> None:
    """`-t 6 -b 100M`, the server stopped after the first interval line for 3.5 s: an
    interval with `0.00 Bytes` is printed while it is still stopped, by both (session 26,
    iperf26b; ours printed them when the data resumed, with the next one)."""
    args = ["-t", "6", "-b", "100M"]
    for cmd in (PKTLAB + (["--direction", "upload"] if not direction else []),
                ["iperf3", *direction]):  # fmt: skip
        lines, resumed = stalled_lines(cmd, args, stall=3.5)
        empty = [(t, text) for t, text in lines if " sec  0.00 Bytes  0.00 bits/sec" in text]
        assert empty, lines
        assert empty[0][0] < resumed - 0.2, (cmd[:1], lines, resumed)
