"""`pktlab run` as a person uses it (root: the in-process endpoint's raw sockets): Ctrl-C
mid-run prints what was gathered and the statistics and exits 130; Ctrl-C during start-up
and a second Ctrl-C exit 130 at once, never with a traceback; a 10,000-request ping
without interval completes (replies are read while requests are sent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import readline

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]


PKTLAB = [sys.executable, "-m", "packetlab"]


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the in-process endpoint's raw sockets")


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PKTLAB_HOME"] = str(tmp_path / "home")
    return subprocess.Popen(
        [*PKTLAB, "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, cwd=REPO, preexec_fn=sigint_as_in_a_terminal,
    )  # fmt: skip


def sigint_as_in_a_terminal() -> None:
    """In the child before exec: SIGINT at its default, as for a command typed in a
    terminal. A test run started in the background of a script (`cmd &` without job
    control, or CI's harness) ignores SIGINT, and the children would inherit that:
    `pktlab run` keeps an inherited SIG_IGN until its reactor runs (like Twisted), so a
    Ctrl-C sent 0.5 s after the start was ignored on a loaded machine (still importing)
    and the ping ran to its end, exit 0."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_first_ctrl_c_prints_what_was_gathered_and_the_statistics(tmp_path: Path) -> None:
    proc = start(tmp_path, "ping", "-c", "50", "-i", "0.2", "127.0.0.1")
    assert proc.stdout is not None
    lines = [readline(proc.stdout) for _ in range(4)]  # the header and 3 replies, streamed
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert lines[0].startswith("PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.")
    assert [x.split()[4] for x in lines[1:]] == ["icmp_seq=1", "icmp_seq=2", "icmp_seq=3"]
    out = "".join(lines) + rest
    assert "--- 127.0.0.1 ping statistics ---" in out
    sent = int(out.split("--- 127.0.0.1 ping statistics ---\n")[1].split()[0])
    assert 3 <= sent < 50 and f"{sent} packets transmitted, {sent} received" in out
    assert out.count("bytes from 127.0.0.1") == sent  # every reply gathered is printed
    assert "stopping" in err and "Traceback (most recent" not in err


def test_ctrl_c_during_start_up_exits_130_without_a_traceback(tmp_path: Path) -> None:
    # as soon as the controller listens (the endpoint is starting), and a little later
    proc = start(tmp_path, "ping", "-v", "-c", "50", "-i", "0.2", "127.0.0.1")
    assert proc.stderr is not None
    while "starting on" not in (line := readline(proc.stderr)):
        assert line, "the run ended before it started listening"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert (
        proc.returncode == 130 and "interrupted" in err and "Traceback (most recent" not in err
    ), err
    for delay in (0.5, 1.0):
        proc = start(tmp_path, "ping", "-c", "50", "-i", "0.2", "127.0.0.1")
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert "Traceback (most recent" not in err, (delay, err)
        assert proc.returncode == 130, (delay, err)


def test_second_ctrl_c_exits_at_once(tmp_path: Path) -> None:
    proc = start(tmp_path, "ping", "-c", "50", "-i", "0.2", "-W", "30", "127.0.0.1")
    assert proc.stdout is not None and proc.stderr is not None
    readline(proc.stdout)
    readline(proc.stdout)  # running
    proc.send_signal(signal.SIGINT)
    assert "stopping" in readline(proc.stderr) + readline(proc.stderr)
    proc.send_signal(signal.SIGINT)  # during the grace for replies in flight
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback (most recent" not in err
    assert "statistics" not in out  # it did not wait to print them


def test_json_interrupted_ends_with_a_summary(tmp_path: Path) -> None:
    import json

    proc = start(tmp_path, "ping", "--json", "-c", "50", "-i", "0.2", "127.0.0.1")
    assert proc.stdout is not None
    first = json.loads(readline(proc.stdout))
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert (first["type"], first["seq"]) == ("reply", 1)
    summary = json.loads(rest.splitlines()[-1])
    assert (summary["type"], summary["stop_reason"]) == ("summary", "INTERRUPTED")
    assert summary["sent"] == summary["received"] >= 1


def test_deadline_stops_ping_like_iputils_w(tmp_path: Path) -> None:
    proc = start(tmp_path, "ping", "-c", "100", "-i", "0.1", "-w", "1", "127.0.0.1")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err  # iputils: -w and fewer replies than -c (10 of 100)
    sent = int(out.split("ping statistics ---\n")[1].split()[0])
    assert 5 <= sent < 100


def test_ten_thousand_requests_without_interval(tmp_path: Path) -> None:
    proc = start(tmp_path, "ping", "-c", "10000", "-i", "0", "-q", "127.0.0.1")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "10000 packets transmitted, 10000 received, 0% packet loss" in out


def test_a_run_cut_by_its_timeout_is_one_line(tmp_path: Path) -> None:
    proc = start(tmp_path, "ping", "--timeout", "3", "-c", "100", "-i", "0.5", "127.0.0.1")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().splitlines()[-1] == (
        "pktlab run ping: no result within 3 s: the experiment did not end"
    )
    assert "Traceback" not in err
