"""Session 26 (iperf26): a real `iperf3 -s` stopped (SIGSTOP) mid-test, beside native
iperf3 3.12 on loopback: with `--rcv-timeout` both fail with `error - idle timeout for
receiving data` (was ours: an unrecognized argument, and without it `nothing from ...
within 63 s`); a server stopped past the test's end and resumed: both print its sender
line over its own span, as 3.12's sender_time (was ours: `0.00-2.00` with the rate over
the server's longer span). The stall itself is the stimulus (a sleep of its length);
everything else is polled. One server per run (`-1`), its own port: ours and native run
at once (`at_once`), each against its own server and stall (one after the other, the
file took 56 s of the serial pass at load 5-18; suite34)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from iperf3_beside import PKTLAB, client, first_interval, own_server, rest

pytestmark = pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 missing")

T = TypeVar("T")


def at_once(ours: Callable[[], T], theirs: Callable[[], T]) -> tuple[T, T]:
    """Both calls in threads of their own, at once; their results (ours, theirs)."""
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(ours), pool.submit(theirs)
        return a.result(), b.result()


def stalled(cmd: list[str], args: list[str], stall: float) -> subprocess.CompletedProcess[str]:
    """`cmd -c ... args` against its own `iperf3 -s`, stopped once the first interval line
    is out and resumed `stall` s later (or when the client is done, if sooner)."""
    with own_server() as (p, server):
        proc = client(cmd, p, args)
        head = first_interval(proc)
        server.send_signal(signal.SIGSTOP)
        resume = time.monotonic() + stall
        while proc.poll() is None and time.monotonic() < resume:
            time.sleep(0.05)  # the stall: the client may fail first (--rcv-timeout)
        server.send_signal(signal.SIGCONT)
        return rest(proc, head)


def test_rcv_timeout_on_a_stopped_server_as_native() -> None:
    """`-R -t 6 -b 100M --rcv-timeout 1000`, the server stopped after the first second:
    iperf3's line, exit 1, both, in about a second (not at 6 s)."""
    args = ["-t", "6", "-b", "100M", "--rcv-timeout", "1000"]

    def timed(cmd: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
        began = time.monotonic()
        return stalled(cmd, args, stall=5), time.monotonic() - began

    (ours, took), (theirs, _) = at_once(lambda: timed(PKTLAB), lambda: timed(["iperf3", "-R"]))
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
    ours, theirs = at_once(
        lambda: stalled(PKTLAB, args, stall=3), lambda: stalled(["iperf3", "-R"], args, stall=3)
    )
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
    with own_server() as (p, server):
        proc = client(cmd, p, args)
        head = first_interval(proc)
        server.kill()
        at = time.monotonic()
        run = rest(proc, head)
        return run, time.monotonic() - at


def test_a_udp_upload_to_a_killed_server_fails_at_once_as_native() -> None:
    """`-u -b 1M -t 8`, the server SIGKILLed after the first second: iperf3's `control
    socket has closed unexpectedly`, exit 1, within a second of the kill, both (was ours:
    at the end of the 8 s, the datagrams' sends never failing)."""
    args = ["-u", "-b", "1M", "-t", "8"]
    (ours, ours_s), (theirs, theirs_s) = at_once(
        lambda: killed([*PKTLAB, "--direction", "upload"], args), lambda: killed(["iperf3"], args)
    )
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
    resumed: list[float] = []
    with own_server() as (p, server):

        def resume() -> None:
            server.send_signal(signal.SIGCONT)
            resumed.append(time.monotonic())

        timer = threading.Timer(stall, resume)
        try:
            proc = client(cmd, p, args, stderr=subprocess.DEVNULL, text=True, bufsize=1)
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


@pytest.mark.parametrize("direction", [["-R"], []], ids=["download", "upload"])
def test_a_stalled_servers_empty_intervals_come_as_they_pass_as_native(
    direction: list[str],
) -> None:
    """`-t 6 -b 100M`, the server stopped after the first interval line for 3.5 s: an
    interval with `0.00 Bytes` is printed while it is still stopped, by both (session 26,
    iperf26b; ours printed them when the data resumed, with the next one)."""
    args = ["-t", "6", "-b", "100M"]
    cmds = (PKTLAB + (["--direction", "upload"] if not direction else []),
            ["iperf3", *direction])  # fmt: skip
    runs = at_once(*(lambda c=c: stalled_lines(c, args, stall=3.5) for c in cmds))
    for cmd, (lines, resumed) in zip(cmds, runs, strict=True):
        empty = [(t, text) for t, text in lines if " sec  0.00 Bytes  0.00 bits/sec" in text]
        assert empty, lines
        assert empty[0][0] < resumed - 0.2, (cmd[:1], lines, resumed)


def test_a_stalled_servers_empty_bidir_intervals_come_as_they_pass_as_native() -> None:
    """`--bidir -t 6 -b 100M`, the server stopped after the first interval line for 3.5 s:
    both roles' `0.00 Bytes` lines (TX-C once the endpoint's socket buffer is full,
    RX-C at once) are printed while it is still stopped, by both (session 27, iperf27;
    ours printed --bidir's when the data resumed, iperf26b's clock left it out)."""
    args = ["--bidir", "-t", "6", "-b", "100M"]
    cmds = (PKTLAB, ["iperf3"])
    runs = at_once(*(lambda c=c: stalled_lines(c, args, stall=3.5) for c in cmds))
    for cmd, (lines, resumed) in zip(cmds, runs, strict=True):
        for role in ("[TX-C]", "[RX-C]"):
            empty = [t for t, text in lines
                     if role in text and " sec  0.00 Bytes  0.00 bits/sec" in text]  # fmt: skip
            assert empty, (cmd[:1], role, lines)
            assert empty[0] < resumed - 0.2, (cmd[:1], role, lines, resumed)
