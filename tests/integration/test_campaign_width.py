"""`pktlab campaign` at width (session 24): eight real `twistd pktendpoint`s, each in a
network namespace of its own behind one router, connect over TLS to a campaign in a
ninth. A `dns --split` campaign deals 40 names 5 to each, every record saying its
endpoint's HOSTID and address, the wait on a terminal naming who came; then a
`clocksync` campaign over the same endpoints (they reconnect) loses one (SIGKILL) mid-way
and is cut by Ctrl-C: every endpoint's records so far, the lost one's record, the summary,
exit status 130. Time and peak RSS of such runs are in docs/campaign.md."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from packetlab.controller.local import demo_home, twistd_command
from packetlab.testbed import Testbed, Topology

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO))
N = 8
PORT = 20556
NAMES = [f"{w}.test" for w in ("a", "v6", "mx", "www", "nope")] * 8  # 40: 5 each


def read_until(fd: int, text: str, limit: float = 60.0) -> str:
    """What the terminal `fd` shows until `text` appears ("": until it closes)."""
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


def start_campaign(tb: Testbed, home: Path, *argv: str) -> tuple[subprocess.Popen[str], int]:
    """The campaign in `ctl`, its stderr on a terminal (the progress line), once it listens."""
    master, tty = pty.openpty()
    ctl = tb.popen("ctl", [sys.executable, "-m", "packetlab", "campaign", *argv,
                           "--listen", f"{tb.addr('ctl')}:{PORT}", "--endpoints", str(N),
                           "--replace", "0", "--home", str(home), "--json", "--timeout", "120"],
                   stdout=subprocess.PIPE, stderr=tty, text=True, env=ENV, cwd=REPO)  # fmt: skip
    os.close(tty)
    read_until(master, "waiting for 8 endpoints")
    return ctl, master


def endpoints(tb: Testbed, home: Path) -> dict[str, subprocess.Popen[bytes]]:
    """One endpoint per namespace e1..e8 (HOSTID lab-I), each with its own accounting
    database, coming back 0.5 s after a session ends."""
    eps = {}
    base = (home / "endpt.conf").read_text()
    for i in range(1, N + 1):
        conf = home / f"endpt-{i}.conf"
        conf.write_text(base.replace("endpt.rlim.", f"endpt-{i}.rlim.")
                        .replace("endpt.persistent.", f"endpt-{i}.persistent."))  # fmt: skip
        eps[f"lab-{i}"] = tb.popen(f"e{i}", [*twistd_command(), "-n", "--pidfile=",
                                             "pktendpoint", "--config", str(conf), "--host-id",
                                             f"lab-{i}", "--reconnect-delay", "0.5",
                                             f"{tb.addr('ctl')}:{PORT}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=ENV, cwd=REPO)  # fmt: skip
    return eps


def test_eight_endpoints_in_namespaces_one_lost_then_ctrl_c(
    testbed_factory: Callable[..., Testbed], tmp_path: Path
) -> None:
    topo = Topology()
    topo.add_node("hub", router=True)
    for name in ["ctl", "tg", *(f"e{i}" for i in range(1, N + 1))]:
        topo.add_node(name)
        topo.add_link(name, "hub")
    tb = testbed_factory(topo)
    home = demo_home(tmp_path / "home").root
    zone = str(REPO / "tests/integration/dns_zone_server.py")
    dns = tb.popen("tg", [sys.executable, zone, str(tb.addr("tg"))], stdout=subprocess.PIPE,
                   text=True, env=ENV)  # fmt: skip
    assert dns.stdout is not None
    server = f"{tb.addr('tg')}:{int(dns.stdout.readline())}"
    addr = {f"lab-{i}": str(tb.addr(f"e{i}")) for i in range(1, N + 1)}

    ctl, master = start_campaign(tb, home, "dns", "--server", server, "--split", *NAMES)
    eps = endpoints(tb, home)
    try:
        out, _ = ctl.communicate(timeout=120)
        screen = read_until(master, "")
    finally:
        os.close(master)
    assert ctl.returncode == 0, screen
    records = [json.loads(x) for x in out.splitlines()]
    answers = [r for r in records if r["type"] == "dns"]
    assert sorted(r["qname"] for r in answers) == sorted(n + "." for n in NAMES)
    for r in answers:  # each endpoint's lines: its HOSTID and its own namespace's address
        assert r["hostid"] == r["endpoint"] and r["address"].startswith(addr[r["endpoint"]] + ":")
    summary = records[-1]
    assert summary["per_endpoint"] == {name: 5 for name in addr}
    assert [summary[k] for k in ("asked", "used", "lost", "errors")] == [8, 8, 0, 0]
    assert "Traceback" not in screen  # (the queries are too quick for the progress line
    # to be drawn every time: the clocksync campaign below shows it)

    # The same endpoints, back: one killed mid-campaign, then Ctrl-C
    ctl, master = start_campaign(tb, home, "clocksync", "--rounds", "200", "--interval", "0.2")
    try:
        assert ctl.stdout is not None
        seen: list[dict[str, Any]] = []
        while len({r["endpoint"] for r in seen}) < N or len(seen) < 3 * N:
            line = ctl.stdout.readline()
            assert line, read_until(master, "")
            seen.append(json.loads(line))
        # The progress line is drawn once the run is a second old: waited for here. Its
        # SIGINT came first when the endpoints answered fast (an idle machine, session 25).
        drawn = read_until(master, "] clocksync round ")
        eps["lab-3"].kill()
        eps["lab-3"].wait(10)
        while not any(r["type"] == "lost" for r in seen):
            line = ctl.stdout.readline()
            assert line, read_until(master, "")
            seen.append(json.loads(line))
        ctl.send_signal(signal.SIGINT)
        out, _ = ctl.communicate(timeout=60)
        screen = drawn + read_until(master, "")
    finally:
        os.close(master)
    assert ctl.returncode == 130, screen
    records = seen + [json.loads(x) for x in out.splitlines()]
    (lost,) = [r for r in records if r["type"] == "lost"]
    assert (lost["endpoint"], lost["hostid"], lost["when"]) == ("lab-3", "lab-3", "mid-campaign")
    assert lost["address"].startswith(addr["lab-3"] + ":") and lost["partial"]
    models = {r["endpoint"]: r["rounds"] for r in records if r["type"] == "clockmodel"}
    assert set(models) == set(addr) and all(2 <= n < 200 for n in models.values()), models
    summary = records[-1]
    assert (summary["type"], summary["stop_reason"]) == ("summary", "INTERRUPTED")
    assert [summary[k] for k in ("asked", "used", "lost")] == [8, 8, 1]
    assert summary["partial"] == ["lab-3"]
    assert "] clocksync round " in screen and "Ctrl-C again to quit now" in screen
    assert "Traceback" not in screen
