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


def test_an_endpoint_killed_mid_campaign_is_its_error_the_other_finishes() -> None:
    port = free_port()
    ctl = campaign(port, "clocksync", "--rounds", "8", "--interval", "0.5")
    eps = endpoints(port)
    try:
        assert ctl.stdout is not None
        first = json.loads(readline(ctl.stdout))
        peers = {p.pid: p for p in eps}
        # the first record's endpoint is killed: which process it is does not matter, so
        # kill either one (SIGKILL: no goodbye, the connection just ends)
        eps[0].kill()
        out, err = ctl.communicate(timeout=120)
    finally:
        stop(list(peers.values()))
    assert ctl.returncode == 1, err
    records = [first, *(json.loads(x) for x in out.splitlines())]
    (gone,) = [r for r in records if r["type"] == "error"]
    assert "connection" in gone["error"], gone
    models = {r["endpoint"]: r for r in records if r["type"] == "clockmodel"}
    (other,) = set(models) - {gone["endpoint"]}
    assert models[other]["rounds"] == 8  # the other endpoint measured to the end
    if gone["endpoint"] in models:  # the killed one's rounds before it went: their model
        assert 1 <= models[gone["endpoint"]]["rounds"] < 8
    summary = records[-1]
    assert (summary["type"], summary["stop_reason"]) == ("summary", "COMPLETED")
    assert (summary["endpoints"], summary["errors"]) == (2, 1)


def test_an_endpoint_gone_before_the_start_is_its_error_the_other_measures() -> None:
    # One endpoint connects and is killed while the campaign waits for the second: the
    # campaign once ended at the first word it asked the dead one (exit 2, nothing).
    import time

    port = free_port()
    ctl = campaign(port, "clocksync", "--rounds", "3", "--interval", "0.3")
    argv = [*twistd_command(), "-n", "--pidfile=", "pktendpoint", "--insecure-plaintext",
            "--config", os.devnull, "--host-id", "early", "--reconnect-delay", "60",
            f"127.0.0.1:{port}"]  # fmt: skip
    quiet = subprocess.DEVNULL
    early = subprocess.Popen(argv, stdout=quiet, stderr=quiet, env=ENV, cwd=REPO)
    later: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while not established(port) and time.monotonic() < deadline:  # its session is up
            time.sleep(0.1)
        early.kill()
        early.wait(10)
        later = endpoints(port, 1)
        out, err = ctl.communicate(timeout=120)
    finally:
        stop([early, *later])
    assert ctl.returncode == 1, err
    records = [json.loads(x) for x in out.splitlines()]
    (gone,) = [r for r in records if r["type"] == "error"]
    assert gone["endpoint"].startswith("127.0.0.1:"), gone  # no HOSTID read: its address
    (model,) = [r for r in records if r["type"] == "clockmodel"]
    assert model["rounds"] == 3 and model["endpoint"] == "pktendpt"
    assert (records[-1]["endpoints"], records[-1]["errors"]) == (2, 1)


def established(port: int) -> bool:
    """A connection to the controller's port is up (an endpoint's session)."""
    got = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True)  # fmt: skip
    return bool(got.stdout.strip())
