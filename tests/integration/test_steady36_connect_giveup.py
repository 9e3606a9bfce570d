"""A real `twistd -n pktendpoint` whose controller refuses (a bound port that does not
listen) and whose wall clock is stepped back 60 s after its first failed attempt
(libfaketime, FAKETIME_TIMESTAMP_FILE; CLOCK_MONOTONIC left alone): it still gives the
cycle up after its 5 s of retries (packetlab.clockstep.steady). Before: the 5 s were
measured on the wall clock, so it retried every second for ~65 s."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
from conftest import stop_process
from faketime_pair import needs_faketime, stepped_endpoint
from testkit.poll import poll_until

pytestmark = [needs_faketime, pytest.mark.serial]

STEP = 60


def _wait_for(what: str, text: str, deadline: float, log: Path) -> float:
    """When `text` appeared in the endpoint's `log` (time.monotonic())."""
    poll_until(
        lambda: text in log.read_text(errors="replace"),
        timeout=deadline,
        interval=0.05,
        what=lambda: f"{what}; log:\n{log.read_text(errors='replace')}",
    )
    return time.monotonic()


def test_the_connect_cycle_gives_up_after_5_s_across_a_step_back(tmp_path: Path) -> None:
    refusing = socket.socket()  # bound, not listening: each connect is refused
    refusing.bind(("127.0.0.1", 0))
    ep, stamp, log = stepped_endpoint(tmp_path, refusing.getsockname()[1], 30)
    try:
        first = _wait_for("failed attempt", "cannot reach controller", 30.0, log)
        stamp.write_text(f"-{STEP}\n")  # the wall clock 60 s back
        gave_up = _wait_for("give-up", "gave up reaching controller", 20.0, log)
        text = log.read_text(errors="replace")
    finally:
        stop_process(ep)
        refusing.close()
    assert f"wall clock stepped back {STEP}.0 s" in text, text
    said = re.search(r"gave up reaching controller \S+ after ([\d.]+) s", text)
    print(f"gave up {gave_up - first:.1f} s after the first failure; {said and said.group(0)}")
    assert said and 3.5 <= float(said.group(1)) < 10, text  # before: ~65 s
    assert text.count("cannot reach controller") <= 6, text  # one a second; before: ~65
    assert gave_up - first < 15, (first, gave_up)
