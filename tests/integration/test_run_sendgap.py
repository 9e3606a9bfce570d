"""`pktlab run sendgap` end to end (root: the in-process endpoint's raw sockets): the
trains take send_train's adaptive lead, the records say it, and a session's second long
train counts what the first one's nsends really took to queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the in-process endpoint's raw sockets")


def test_sendgap_trains_take_the_adaptive_lead_and_learn_the_nsends_cost(
    tmp_path: Path,
) -> None:
    env = dict(os.environ, PKTLAB_HOME=str(tmp_path / "home"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # 4,000 nsends: enough to teach the second train's lead (LEARN_MIN_SENDS, and ~100 ms
    # of queueing against LEARN_MIN_NS)
    argv = ["run", "sendgap", "--count", "4000", "--gap-us", "10", "--trains", "2", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "packetlab", *argv],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    trains = [r for r in records if r["type"] == "sendgap"]
    assert [(r["train"], r["sent"]) for r in trains] == [(0, 4000), (1, 4000)], records
    first, second = trains
    for r in trains:
        assert r["lead_ms"] >= 20  # the floor of the adaptive lead, not a fixed 200 ms
        assert r["queue_cost_us"] > 0 and r["queued_ahead_ms"] is not None
    # the second lead counts at most twice what the first train's nsends took (4,000 of
    # them, 10 us apart: queue_lead's n*c - (n-128)*gap with c <= 2 x queue_cost), plus
    # the 20 ms floor and its two round trips (at most a probe round each: no 100 ms)
    cost = first["queue_cost_us"]
    if cost * 4000 >= 30_000:  # LEARN_MIN_NS: the queueing was long enough to learn from
        bound = max(4000 * 2 * cost - 3872 * 10, 128 * 2 * cost) / 1e3
        assert second["lead_ms"] <= 20 + bound + 100, (first, second)


@pytest.mark.parametrize("to", ["::1", "localhost:9", "127.0.0.1:9"])
def test_packets_to_any_form_of_to_exit_0_when_all_went_out(tmp_path: Path, to: str) -> None:
    """`pktlab run sendgap --packets` exited 1 with every datagram sent (`"error": null`
    counted as a failure); `--to ::1` and `--to localhost:9` failed before sending
    (`':' does not appear to be an IPv4 or IPv6 address`, exit 2). Session 31."""
    env = dict(os.environ, PKTLAB_HOME=str(tmp_path / "home"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    argv = ["run", "sendgap", "--to", to, "--count", "5", "--trains", "1", "--packets", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "packetlab", *argv],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["type"] for r in records] == ["sendgap-packet"] * 5 + ["sendgap", "summary"]
    assert (records[-1]["sent"], records[-1]["errors"]) == (5, 0)
