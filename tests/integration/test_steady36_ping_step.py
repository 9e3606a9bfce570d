"""`pktlab run ping -c 6 -i 1 127.0.0.1 --listen` whose (controller's) wall clock is
stepped back 60 s under it, three replies in (libfaketime, FAKETIME_TIMESTAMP_FILE
re-read at each read; CLOCK_MONOTONIC left alone, as a real step leaves it), against a
real `twistd -n pktendpoint` on the real clock: the run keeps its 1 s schedule
(packetlab.clockstep.steady).

Before (step36 only): the reactor's timer fired on time, but the loop compared the wall
clock with its old due time and slept again: 67 s and 3 of 6 received. iputils ping
under the same step: 5.1 s, 6 of 6 (one RTT shown as 60000 ms)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import readline
from faketime_pair import RAW_CONF, Pair, libfaketime, needs_faketime

pytestmark = [needs_faketime, pytest.mark.serial]

STEP = 60


def test_ping_keeps_its_schedule_across_a_step_back(tmp_path: Path) -> None:
    stamp = tmp_path / "faketime"
    stamp.write_text("+0\n")
    conf = tmp_path / "endpt.conf"
    conf.write_text(RAW_CONF)
    fake = libfaketime(
        FAKETIME_TIMESTAMP_FILE=str(stamp), FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1"
    )
    pair = Pair("ping", "-c", "6", "-i", "1", "127.0.0.1", fake=fake, faked="controller",
                config=conf)  # fmt: skip
    try:
        assert pair.ctl.stdout is not None
        seen: list[str] = []
        while sum("bytes from" in line for line in seen) < 3:  # bounded: finish's timeout
            line = readline(pair.ctl.stdout)
            assert line, "".join(seen)
            seen.append(line)
        stepped = time.monotonic()
        stamp.write_text(f"-{STEP}\n")  # the controller's wall clock 60 s back
        rc, out, err = pair.finish(timeout=40)  # before: 67 s
    finally:
        pair.stop()
    took = time.monotonic() - stepped
    text = "".join(seen) + out
    assert rc == 0, (text, err)
    assert "6 packets transmitted, 6 received" in text, (text, err)
    # three more at 1 s apart, then ping's linger (2 x the largest RTT): ~3 s; before: 64 s
    assert took < 20, (took, text)
    # the RTTs are the endpoint's stamps' business: none shows the step
    rtts = [float(m) for m in re.findall(r"time=([\d.]+) ms", text)]
    print(f"after the step: {took:.1f} s; RTTs {rtts} ms")  # (-s: the numbers in the docs)
    assert len(rtts) == 6 and max(rtts) < 1000, text
