"""`pktlab campaign` with real `twistd pktendpoint` processes left at the default HostID
(`pktendpt`, as every endpoint without one): each gets a name of its own (its records,
its --pcap file), and one killed mid-campaign is an error record while the other
measures to the end (exit status 1, the summary printed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import readline

from packetlab.controller.local import twistd_command

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def campaign(port: int, *argv: str) -> subprocess.Popen[str]:
    ctl = subprocess.Popen(
        [sys.executable, "-m", "packetlab", "campaign", *argv, "--listen", f"127.0.0.1:{port}",
         "--endpoints", "2", "--insecure-plaintext", "--json", "--timeout", "150"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO,
    )  # fmt: skip
    assert ctl.stderr is not None
    assert "waiting for 2 endpoints" in ctl.stderr.readline()
    return ctl


def endpoints(port: int, n: int = 2) -> list[subprocess.Popen[bytes]]:
    """`n` endpoints with no HostID of their own (the default, `pktendpt`)."""
    argv = [*twistd_command(), "-n", "--pidfile=", "pktendpoint", "--insecure-plaintext",
            "--config", os.devnull, "--reconnect-delay", "30", f"127.0.0.1:{port}"]  # fmt: skip
    quiet = subprocess.DEVNULL
    return [subprocess.Popen(argv, stdout=quiet, stderr=quiet, env=ENV, cwd=REPO) for _ in range(n)]


def stop(procs: list[subprocess.Popen[Any]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
        p.wait(10)


def test_endpoints_with_the_default_hostid_are_told_apart(tmp_path: Path) -> None:
    port = free_port()
    pcap = tmp_path / "gaps.pcap"
    ctl = campaign(port, "sendgap", "--trains", "1", "--count", "20", "--gap-us", "1000",
                   "--pcap", str(pcap))  # fmt: skip
    eps = endpoints(port)
    try:
        out, err = ctl.communicate(timeout=120)
    finally:
        stop(eps)
    assert ctl.returncode == 0, err
    records = [json.loads(x) for x in out.splitlines()]
    names = {r["endpoint"] for r in records if r["type"] == "sendgap"}
    assert len(names) == 2 and all(n.startswith("pktendpt@127.0.0.1:") for n in names), names
    assert sorted(records[-1]["per_endpoint"].values()) == [1, 1]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(f"gaps-{n}.pcap" for n in names)  # one file each, none shared
    assert all((tmp_path / f).stat().st_size > 24 + 20 * 16 for f in files)


def named(port: int, *hostids: str, again: float = 60) -> list[subprocess.Popen[bytes]]:
    """One endpoint per HOSTID (reconnecting `again` s after a session ends: by default
    only after the test is over)."""
    quiet = subprocess.DEVNULL
    return [subprocess.Popen([*twistd_command(), "-n", "--pidfile=", "pktendpoint",
                              "--insecure-plaintext", "--config", os.devnull, "--host-id", h,
                              "--reconnect-delay", str(again), f"127.0.0.1:{port}"],
                             stdout=quiet, stderr=quiet, env=ENV, cwd=REPO)
            for h in hostids]  # fmt: skip


def test_an_endpoint_killed_mid_campaign_is_reported_once_and_a_spare_replaces_it() -> None:
    # Three endpoints for two places: the third waits as a spare. The one killed (SIGKILL:
    # no goodbye) was an error record, its place left empty while a spare was there.
    port = free_port()
    ctl = campaign(port, "clocksync", "--rounds", "6", "--interval", "0.3")
    eps = dict(zip(("ep0", "ep1", "ep2"), named(port, "ep0", "ep1", "ep2"), strict=True))
    try:
        assert ctl.stdout is not None
        first = json.loads(readline(ctl.stdout))
        eps[first["endpoint"]].kill()  # one that measures
        out, err = ctl.communicate(timeout=120)
    finally:
        stop(list(eps.values()))
    assert ctl.returncode == 1, err
    records = [first, *(json.loads(x) for x in out.splitlines())]
    (gone,) = [r for r in records if "error" in r]  # told once
    assert (gone["type"], gone["when"], gone["endpoint"]) == (
        "lost",
        "mid-campaign",
        first["endpoint"],
    )
    assert gone["hostid"] == first["endpoint"] and gone["address"].startswith("127.0.0.1:")
    assert gone["partial"] and gone["records"] >= 1
    (took,) = [r for r in records if r["type"] == "replaced"]
    assert took["replaces"] == gone["endpoint"]
    models = {r["endpoint"]: r["rounds"] for r in records if r["type"] == "clockmodel"}
    assert models[took["endpoint"]] == 6  # the spare measured from the start
    (other,) = set(eps) - {gone["endpoint"], took["endpoint"]}
    assert models[other] == 6  # the other endpoint measured to the end
    summary = records[-1]
    assert (summary["type"], summary["stop_reason"]) == ("summary", "COMPLETED")
    assert [summary[k] for k in ("asked", "used", "lost", "replaced")] == [2, 3, 1, 1]
    assert summary["partial"] == [gone["endpoint"]] and summary["errors"] == 1


def test_an_endpoint_gone_before_the_start_is_reported_and_another_measures() -> None:
    # One endpoint connects and is killed while the campaign waits for the second: it once
    # kept its place (an error record named by its address, one vantage point short). On a
    # terminal the wait said nothing of who had come; now the progress line does.
    import pty

    port = free_port()
    master, tty = pty.openpty()
    ctl = subprocess.Popen(
        [sys.executable, "-m", "packetlab", "campaign", "clocksync", "--rounds", "3",
         "--interval", "0.3", "--listen", f"127.0.0.1:{port}", "--endpoints", "2",
         "--insecure-plaintext", "--json", "--timeout", "150"],
        stdout=subprocess.PIPE, stderr=tty, text=True, env=ENV, cwd=REPO,
    )  # fmt: skip
    os.close(tty)
    early = named(port, "early")
    later: list[subprocess.Popen[bytes]] = []
    try:
        screen = read_until(master, "1 of 2 endpoints here (latest: early)")
        early[0].kill()
        early[0].wait(10)
        later = named(port, "late1", "late2")
        out, _ = ctl.communicate(timeout=120)
        screen += read_until(master, "")
    finally:
        stop([*early, *later])
        os.close(master)
    assert ctl.returncode == 0, screen  # two endpoints measured all: nothing failed
    assert "waiting for 2 endpoints" in screen and "Traceback" not in screen
    records = [json.loads(x) for x in out.splitlines()]
    (gone,) = [r for r in records if r["type"] == "lost"]
    assert (gone["when"], gone["hostid"], gone["endpoint"]) == (
        "before the start",
        "early",
        "early",
    )
    assert gone["address"].startswith("127.0.0.1:") and "error" not in gone
    models = {r["endpoint"]: r["rounds"] for r in records if r["type"] == "clockmodel"}
    assert models == {"late1": 3, "late2": 3}
    assert [records[-1][k] for k in ("asked", "used", "lost", "replaced")] == [2, 2, 1, 1]


def read_until(fd: int, text: str, limit: float = 60.0) -> str:
    """What the terminal `fd` shows until `text` appears ("": until it closes)."""
    import select
    import time

    got = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not (text and text.encode() in got):
        if select.select([fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            got += chunk
    if text:
        assert text.encode() in got, got
    return got.decode(errors="replace")


def test_ctrl_c_mid_campaign_prints_what_was_gathered_and_exits_130() -> None:
    # The same two endpoints (they come back 0.5 s after a session) for both campaigns.
    import signal

    port = free_port()
    ctl = campaign(port, "clocksync", "--rounds", "100", "--interval", "0.3")
    eps = named(port, "c1", "c2", again=0.5)
    try:
        assert ctl.stdout is not None
        first = json.loads(readline(ctl.stdout))
        ctl.send_signal(signal.SIGINT)
        out, err = ctl.communicate(timeout=60)
        # then a second campaign, Ctrl-C twice: the second quits at once
        again = campaign(port, "clocksync", "--rounds", "100", "--interval", "0.3")
        assert again.stdout is not None
        readline(again.stdout)
        again.send_signal(signal.SIGINT)
        again.send_signal(signal.SIGINT)
        _, err2 = again.communicate(timeout=60)
    finally:
        stop(eps)
    assert ctl.returncode == 130, err
    records = [first, *(json.loads(x) for x in out.splitlines())]
    models = {r["endpoint"]: r["rounds"] for r in records if r["type"] == "clockmodel"}
    assert set(models) == {"c1", "c2"} and all(1 <= n < 100 for n in models.values())
    summary = records[-1]
    assert (summary["stop_reason"], summary["used"], summary["lost"]) == ("INTERRUPTED", 2, 0)
    assert "Ctrl-C again to quit now" in err and "Traceback" not in err
    assert again.returncode == 130 and "Traceback" not in err2, err2
