"""A real `twistd -n pktendpoint` whose wall clock is stepped under it (libfaketime,
FAKETIME_TIMESTAMP_FILE re-read at each read; CLOCK_MONOTONIC left alone, as a real
step leaves it): its reconnection timer keeps its delay (packetlab.clockstep).

The endpoint connects to our listener, which closes each connection at once: the
endpoint then waits `--reconnect-delay 8` s and connects again. The step is made once
that timer is armed (its log line), so it lies across the step, as on a host where
chrony steps the clock under a running daemon. Before: after a 60 s step back no
connection came in the 16 s waited (the timer was due 68 s later); after a 60 s step
forward the connection came at once."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import stop_process, twistd
from faketime_pair import ENV, libfaketime, needs_faketime
from testkit.poll import poll_until

pytestmark = [needs_faketime, pytest.mark.serial]

DELAY = 8.0  # the endpoint's --reconnect-delay
STEP = 60


def test_a_reconnection_timer_keeps_its_delay_across_clock_steps(tmp_path: Path) -> None:
    stamp = tmp_path / "faketime"
    stamp.write_text("+0\n")
    log = tmp_path / "ep.log"
    log.touch()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    fake = libfaketime(
        FAKETIME_TIMESTAMP_FILE=str(stamp), FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1"
    )
    conf = tmp_path / "endpt.conf"
    conf.write_text("NoSubMode 1\n")
    ep = subprocess.Popen(
        [*twistd(), "-n", "--pidfile=", f"--logfile={log}", "pktendpoint", "--config",
         str(conf), "--reconnect-delay", str(DELAY), "--insecure-plaintext",
         f"127.0.0.1:{port}"],
        env={**ENV, **fake}, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def accept(timeout: float) -> float:
            listener.settimeout(timeout)
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                raise AssertionError(
                    f"no connection within {timeout} s:\n{log.read_text(errors='replace')}"
                ) from None
            at = time.monotonic()
            conn.close()
            return at

        def armed(n: int) -> bool:
            return log.read_text(errors="replace").count("next connection to") >= n

        first = accept(30.0)
        poll_until(
            lambda: armed(1),
            timeout=10.0,
            what=lambda: f"reconnection timer; log:\n{log.read_text(errors='replace')}",
        )
        stamp.write_text(f"-{STEP}\n")  # the wall clock 60 s back
        second = accept(2 * DELAY)  # before: none (due 68 s later)
        poll_until(
            lambda: armed(2),
            timeout=10.0,
            what=lambda: f"reconnection timer; log:\n{log.read_text(errors='replace')}",
        )
        stamp.write_text("+0\n")  # and 60 s forward again
        third = accept(2 * DELAY)
        text = log.read_text(errors="replace")
        assert f"wall clock stepped back {STEP}.0 s" in text, text
        assert f"wall clock stepped forward {STEP}.0 s" in text, text
        # the delay is a lower bound (a timer never fires early); the margin is for our
        # own accept seen late under load
        assert second - first >= DELAY - 2, (first, second)
        assert third - second >= DELAY - 2, (second, third)  # before: at the next wake
    finally:
        stop_process(ep)
        listener.close()
