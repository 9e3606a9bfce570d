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


def pktlab_env(tmp_path: Path) -> dict[str, str]:
    """This checkout's packetlab; PKTLAB_HOME a directory of the test's own, not this host's."""
    env = dict(os.environ, PKTLAB_HOME=str(tmp_path / "home"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def pktlab(tmp_path: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "packetlab", *argv],
        capture_output=True, text=True, env=pktlab_env(tmp_path), cwd=REPO, timeout=120,
    )  # fmt: skip


def test_sendgap_trains_take_the_adaptive_lead_and_learn_the_nsends_cost(
    tmp_path: Path,
) -> None:
    # 4,000 nsends: enough to teach the second train's lead (LEARN_MIN_SENDS, and ~100 ms
    # of queueing against LEARN_MIN_NS)
    argv = ["run", "sendgap", "--count", "4000", "--gap-us", "10", "--trains", "2", "--json"]
    done = pktlab(tmp_path, argv)
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
    argv = ["run", "sendgap", "--to", to, "--count", "5", "--trains", "1", "--packets", "--json"]
    done = pktlab(tmp_path, argv)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["type"] for r in records] == ["sendgap-packet"] * 5 + ["sendgap", "summary"]
    assert (records[-1]["sent"], records[-1]["errors"]) == (5, 0)


@pytest.mark.parametrize("form", ["--json", "text"])
def test_a_ctrl_c_mid_train_reports_the_part_that_went_out(tmp_path: Path, form: str) -> None:
    """A Ctrl-C during a train: `# 0 trains, 0 of 0 sent (interrupted)` though datagrams
    had gone out (the train was not told of the stop, and its grace cut it: session 31,
    sg31). Now the train stops at the Ctrl-C and is reported as partial: what went out,
    as many as a sink on 127.0.0.1 received; exit 130."""
    import signal
    import socket
    import threading

    from testkit.poll import poll_until

    env = pktlab_env(tmp_path)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # room for every datagram of the train's first seconds, whatever net.core.rmem_max
    # (SO_RCVBUFFORCE, 33 on Linux: root), so that the sink's count is the wire's
    sink.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.2)
    got = [0]
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            try:
                sink.recv(2048)
                got[0] += 1
            except TimeoutError:
                pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    # 50,000 x 100 us: a 5 s train, the first datagram 0.2 s after the clock read
    argv = ["run", "sendgap", "--to", f"127.0.0.1:{sink.getsockname()[1]}", "--count", "50000",
            "--gap-us", "100", "--lead-ms", "200", "--trains", "2"]  # fmt: skip
    if form == "--json":
        argv.append("--json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "packetlab", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        poll_until(lambda: got[0] >= 500 or proc.poll() is not None, timeout=60,
                   what="the train under way")  # fmt: skip
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        done.set()
        reader.join(5)
        # (loopback delivers at the send: every datagram sent is in the sink's queue now)
        sink.setblocking(False)
        try:
            while True:
                sink.recv(2048)
                got[0] += 1
        except BlockingIOError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        done.set()
        reader.join(5)
        sink.close()
    assert proc.returncode == 130, (out, err)
    if form == "--json":
        records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert [r["type"] for r in records] == ["sendgap", "summary"], out
        train, summary = records
        assert train["partial"] is True and 0 < train["sent"] < 50000, train
        assert summary["stop_reason"] == "INTERRUPTED" and summary["trains"] == 1
        sent = train["sent"]
    else:
        lines = out.splitlines()
        assert len(lines) == 2 and lines[0].startswith("train 0: "), out
        assert "sent (partial: stopped), gap 100 us" in lines[0], out
        sent = int(lines[0].split()[2].split("/")[0])
        assert lines[1].startswith(f"# 1 train, {sent} of 50000 sent"), out
        assert lines[1].endswith("(interrupted)"), out
    # what the report says went out, the sink had (a datagram whose ntag was not read
    # before the close is sent but not counted: a few at most)
    assert 0 < sent <= got[0] <= sent + 100, (sent, got[0])
