"""Session 30 (lead): `pktlab run ping -w DEADLINE` beside iputils ping 20221126. ping's
deadline alarm is set as it starts, just before its first request, and a reply its kernel
received before the alarm is counted; ours stopped at a deadline counted from before the
capture was opened, then took the request in flight as lost without awaiting its reply
(`-i 0.01 -w 1 127.0.0.1`: `100 packets transmitted, 99 received, 1% packet loss` in
three runs of three, ping's `0% packet loss`; `-A -w 1`: one lost in each run). Now the
deadline runs from the first request's time, replies the endpoint had by then are
awaited, and nothing that left or came after it counts."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from test_pktlab_run import pktlab_run
from test_run_like_native import beside_native, native

pytestmark = [pytest.mark.root]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside_native(tmp_path, monkeypatch, f"pdl30{os.getpid() % 10000}-", home=False)


def counts(text: str) -> tuple[int, int, str]:
    m = re.search(r"(\d+) packets transmitted, (\d+) received, (?:\+\d+ \w+, )*(\S+) packet loss",
                  text)  # fmt: skip
    assert m is not None, text
    return int(m.group(1)), int(m.group(2)), m.group(3)


@pytest.mark.parametrize(
    "argv",
    [["-q", "-i", "0.01", "-w", "1"], ["-q", "-A", "-w", "1"], ["-q", "-i", "0.2", "-w", "1"]],
    ids=["i0.01", "adaptive", "i0.2"],
)
def test_a_deadline_loses_no_reply_on_loopback_as_iputils(argv: list[str]) -> None:
    theirs = native("ping", *argv, "127.0.0.1")
    assert theirs.returncode == 0, theirs.stderr
    assert counts(theirs.stdout)[2] == "0%"
    for _ in range(2):  # (the old code lost the last request every time)
        ours = pktlab_run("ping", *argv, "127.0.0.1")
        assert ours.returncode == 0, ours.stderr
        sent, received, loss = counts(ours.stdout)
        assert (received, loss) == (sent, "0%"), ours.stdout
        if "-i" in argv:  # ping's: those due strictly before the deadline, at the most
            assert sent <= round(1 / float(argv[argv.index("-i") + 1])), ours.stdout
