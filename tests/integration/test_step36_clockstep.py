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
import time
from pathlib import Path

import pytest
from conftest import stop_process
from faketime_pair import needs_faketime, stepped_endpoint
from testkit.poll import poll_until

pytestmark = [needs_faketime, pytest.mark.serial]

DELAY = 8.0  # the endpoint's --reconnect-delay
STEP = 60


def test_a_reconnection_timer_keeps_its_delay_across_clock_steps(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    ep, stamp, log = stepped_endpoint(tmp_path, listener.getsockname()[1], DELAY)
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
