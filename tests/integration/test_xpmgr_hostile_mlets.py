"""Hostile or broken mlets under a real `pktlab xpmgr` (passive mode), session 28.

Each case runs a misbehaving mlet for three scripted TLS endpoints at once: every endpoint
gets its one result line with the status the mlet earned, the progress counts add up, no
traceback is logged, and afterwards the manager holds no more descriptors, no mlet
process and no memory to speak of, not even at its peak.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from procstat import open_fds, rss_kib
from pxworld import XpmgrProc
from test_hostile_xpmgr import Endpoint
from test_xpmgr_churn import children
from tls_world import pktlab_init

ENDPOINTS = 3
#: The manager's RSS growth allowed over a case (an mlet's flood is 16 MB).
RSS_GROWTH_KIB = 8 * 1024

# name: (the mlet's shell script, the status every endpoint gets)
MLETS = {
    "exits_at_once": ("exit 0\n", "done"),
    "crashes": ("kill -SEGV $$\n", "failed"),
    "closes_fd0_and_keeps_running": ("exec 0<&-\nsleep 1\n", "done"),
    "forks_a_child_that_holds_fd0": ("(sleep 1) &\nexit 0\n", "done"),
    # 16 MB without a newline: the held partial line grew by all of it (session 28)
    "floods_stdout_without_newlines": ("head -c 16000000 /dev/zero | tr '\\0' x\n", "done"),
    "floods_stderr": ("head -c 16000000 /dev/zero | tr '\\0' x >&2\n", "done"),
    # a frame header and body cut short by the exit
    "sends_a_cut_frame": ("printf '\\050\\377\\377\\377abc'\n", "done"),
}


def peak_kib(pid: int) -> int:
    """The highest resident set size so far (VmHWM): a flood held until the mlet's end
    is freed by then."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _wait(cond: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not cond() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


def _drain(ep: Endpoint) -> None:
    """Read what the relay sends until the manager closes the connection."""
    ep.sock.settimeout(15)
    try:
        while ep.sock.recv(65536):
            pass
    except OSError:  # a timeout too
        pass
    ep.close()


@pytest.mark.parametrize("name", sorted(MLETS))
def test_a_hostile_mlet_costs_one_result_per_endpoint_and_leaves_nothing(
    tmp_path: Path, name: str
) -> None:
    script, status = MLETS[name]
    home = pktlab_init(tmp_path / "home").root
    mlet = tmp_path / "mlet.sh"
    mlet.write_text("#!/bin/sh\n" + script)
    mlet.chmod(0o755)
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet)], "-n", "100000")
    try:
        port = xp.port()
        time.sleep(0.3)  # start-up done: its descriptors and memory are the baseline
        fds0, rss0 = open_fds(xp.proc.pid), rss_kib(xp.proc.pid)
        peak0 = peak_kib(xp.proc.pid)
        eps = [Endpoint(port, home) for _ in range(ENDPOINTS)]
        for ep in eps:
            ep.answer_setup()
        for ep in eps:
            _drain(ep)
        _wait(lambda: len(xp.result_lines()) >= ENDPOINTS, 30)
        time.sleep(0.3)  # the last descriptors
        results = xp.result_lines()
        assert [r["status"] for r in results] == [status] * ENDPOINTS, results
        if name == "crashes":
            assert {r["signal"] for r in results} == {signal.SIGSEGV}
        counts = re.findall(r"seen (\d+), running (\d+), done (\d+), failed (\d+)", xp.text())
        for s, r, d, f in (tuple(map(int, c)) for c in counts):
            assert s == r + d + f
        assert counts[-1][1] == "0"
        assert "Traceback" not in xp.text()
        assert open_fds(xp.proc.pid) == fds0
        assert children(xp.proc.pid) == []
        grown = rss_kib(xp.proc.pid) - rss0
        assert grown < RSS_GROWTH_KIB, f"RSS grew {grown} KiB"
        peak = peak_kib(xp.proc.pid) - peak0
        assert peak < RSS_GROWTH_KIB, f"peak RSS grew {peak} KiB"
        xp.proc.send_signal(signal.SIGINT)
        # every endpoint failed: exit status 3 (session 31; was 0)
        assert xp.wait_exit(20) == (0 if status == "done" else 3)
    finally:
        xp.stop()


def test_a_singleton_that_closes_fd0_ends_the_greeting_in_words(tmp_path: Path) -> None:
    """-s, the singleton closes its fd 0 and runs on: each endpoint failed with `cannot
    start the mlet: [Errno 32] Broken pipe`, as many as kept coming for as long as the
    singleton ran. Now it says so once, wraps up and exits when the singleton does."""
    home = pktlab_init(tmp_path / "home").root
    mlet = tmp_path / "mlet.sh"
    mlet.write_text("#!/bin/sh\nexec 0<&-\nsleep 1\n")
    mlet.chmod(0o755)
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet)], "-s")
    try:
        port = xp.port()
        time.sleep(0.3)  # the singleton has closed its fd 0
        ep = Endpoint(port, home)
        ep.answer_setup()
        _drain(ep)
        assert xp.wait_exit(15) == 0
        results = [r for r in xp.result_lines() if "hostid" in r]
        assert [(r["status"], r["error"]) for r in results] == [
            ("failed", "cannot start the mlet: the singleton mlet closed its fd 0")
        ], results
        assert xp.text().count("the singleton mlet closed its fd 0: it takes no more") == 1
        assert "Traceback" not in xp.text()
    finally:
        xp.stop()


def test_forty_endpoints_at_once_some_vanishing_or_garbling_each_one_result(
    tmp_path: Path,
) -> None:
    """40 scripted endpoints at once (passive): 30 behave, 5 close mid-setup, 5 send
    garbage after the TLS handshake. Every progress line adds up, each endpoint has one
    result line, and the descriptors, children and memory are back afterwards."""
    home = pktlab_init(tmp_path / "home").root
    mlet = tmp_path / "mlet.sh"
    mlet.write_text("#!/bin/sh\nsleep 0.5\necho ran for $EPADDR\n")
    mlet.chmod(0o755)
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet)], "-n", "100000")
    try:
        port = xp.port()
        time.sleep(0.3)
        fds0, rss0 = open_fds(xp.proc.pid), rss_kib(xp.proc.pid)
        eps = [Endpoint(port, home) for _ in range(40)]
        for i, ep in enumerate(eps):
            if i % 8 == 1:
                ep.close()  # gone mid-setup
            elif i % 8 == 2:
                ep.sock.sendall(b"\xff" * 64)  # a frame of 16 MiB - 1 announced: too large
            else:
                ep.answer_setup()
        for i, ep in enumerate(eps):
            if i % 8 != 1:
                _drain(ep)
        _wait(lambda: len(xp.result_lines()) >= 40, 30)
        time.sleep(0.3)
        results = xp.result_lines()
        assert len(results) == 40
        statuses = sorted(r["status"] for r in results)
        assert statuses == ["done"] * 30 + ["failed"] * 10, results
        errors = sorted(r["error"].split(":")[0] for r in results if r["status"] == "failed")
        assert errors == ["endpoint closed during setup"] * 5 + ["endpoint sent a bad frame"] * 5
        counts = re.findall(r"seen (\d+), running (\d+), done (\d+), failed (\d+)", xp.text())
        for s, r, d, f in (tuple(map(int, c)) for c in counts):
            assert s == r + d + f
        assert counts[-1] == ("40", "0", "30", "10")
        assert xp.text().count("ran for 127.0.0.1") == 30
        assert "Traceback" not in xp.text()
        assert open_fds(xp.proc.pid) == fds0
        assert children(xp.proc.pid) == []
        assert rss_kib(xp.proc.pid) - rss0 < RSS_GROWTH_KIB
    finally:
        xp.stop()


def test_thirty_endpoints_through_pktproxy_each_one_result(tmp_path: Path) -> None:
    """Active mode, `-n 30`: 30 `twistd pktendpoint` processes arrive at once through a
    `twistd pktproxy` with a backlog of 8: every progress line adds up, each endpoint one
    result line and its mlet's output, the manager exits 0 by itself and the proxy has
    spliced 30 sessions with none left open (session 28: 30 in about 20 s)."""
    from pxworld import EndpointProc, ProxyProc, active_conf

    home = pktlab_init(tmp_path / "home").root
    mlet = tmp_path / "mlet.sh"
    mlet.write_text("#!/bin/sh\nsleep 1\necho ran for $EPADDR\n")
    mlet.chmod(0o755)
    proxy = ProxyProc(tmp_path, home)
    conf = active_conf(home, tmp_path / "active.conf", "many28", "TargetBacklogConn 8")
    xp = XpmgrProc(tmp_path, conf, [str(mlet)], "-n", "30", addr=f"127.0.0.1:{proxy.setup}")
    eps: list[EndpointProc] = []
    try:
        proxy.counters("backlog == 8", timeout=20)
        where = f"127.0.0.1:{proxy.endpoints}"
        for _ in range(30):
            eps.append(EndpointProc(tmp_path, home, where, "--snikey", "many28", "--sessions", "1"))
        assert xp.wait_exit(120) == 0, xp.text()[-3000:]
        results = xp.result_lines()
        assert [r["status"] for r in results] == ["done"] * 30, results
        counts = re.findall(r"seen (\d+), running (\d+), done (\d+), failed (\d+)", xp.text())
        for s, r, d, f in (tuple(map(int, c)) for c in counts):
            assert s == r + d + f
        assert counts[-1] == ("30", "0", "30", "0")
        assert xp.text().count("ran for 127.0.0.1") == 30
        assert "Traceback" not in xp.text()
        proxy.counters("splices == 30 and active_splices == 0 and backlog == 0")
    finally:
        for ep in eps:
            ep.stop()
        xp.stop()
        proxy.stop()


def _running(marker: str) -> list[int]:
    """Processes whose command line holds `marker` (`sleep 30.28NN`, unique per case)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marker.encode() in cmd and state != "Z":
                found.append(int(entry))
    return found


# what the mlet script runs, then the process it leaves behind (a unique `sleep`)
ORPHANS = {
    "plain": "sleep {t}\n",
    "ignoring_sigterm": 'trap "" TERM\nsleep {t}\n',
    "a_child_ignoring_sigterm": '(trap "" TERM; sleep {t}) &\nwait\n',
}


@pytest.mark.parametrize("name", sorted(ORPHANS))
def test_sigterm_leaves_nothing_an_mlet_started_running(tmp_path: Path, name: str) -> None:
    """SIGTERM to the manager: the mlets got SIGTERM, then SIGKILL, but a shell mlet's
    `sleep` (its child) ran on, orphaned, after the manager had exited (session 28).
    Now what each mlet started gets the same signals."""
    marker = f"30.28{sorted(ORPHANS).index(name)}{os.getpid() % 1000}"
    home = pktlab_init(tmp_path / "home").root
    mlet = tmp_path / "mlet.sh"
    mlet.write_text("#!/bin/sh\n" + ORPHANS[name].format(t=marker))
    mlet.chmod(0o755)
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet)], "-n", "100000")
    try:
        ep = Endpoint(xp.port(), home)
        ep.answer_setup()
        _wait(lambda: _running(marker), 10)
        assert _running(marker)
        xp.proc.send_signal(signal.SIGTERM)
        assert xp.wait_exit(15) == 143
        ep.close()
        _wait(lambda: not _running(marker), 2)
        assert _running(marker) == [], "the mlet's child outlived the manager"
        assert [r["error"] for r in xp.result_lines()] == ["interrupted"]
    finally:
        for pid in _running(marker):
            os.kill(pid, signal.SIGKILL)
        xp.stop()


def test_an_mlet_whose_child_holds_its_output_is_reported_when_it_exits(
    tmp_path: Path,
) -> None:
    """The mlet exits and leaves a child holding fd 0, 1 and 2: its end (and its endpoint's
    result) waited for the child's, 20 s here, for ever for a daemon (session 28). Now
    its output is read PIPE_GRACE (1 s) more and the endpoint is reported; the child is
    the mlet's business and runs on (session 29: its output still read until the
    manager's exit)."""
    marker = f"20.28{os.getpid() % 1000}"
    home = pktlab_init(tmp_path / "home").root
    mlet = tmp_path / "mlet.sh"
    mlet.write_text(f"#!/bin/sh\necho started\n(sleep {marker}) &\nexit 0\n")
    mlet.chmod(0o755)
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet)], "-n", "1")
    try:
        ep = Endpoint(xp.port(), home)
        ep.answer_setup()
        _drain(ep)  # the manager closes it once the mlet has exited
        assert xp.wait_exit(8) == 0
        [r] = xp.result_lines()
        assert (r["status"], r["output"]) == ("done", "started\n"), r
        # session 29: still read while the manager runs (the words were "no longer read")
        assert "still holds its stdout or stderr: its output is still passed on" in xp.text()
        assert "1 exited mlet(s) left a process that still holds their output" in xp.text()
        assert _running(marker), "the child is not the manager's to kill"
    finally:
        for pid in _running(marker):
            os.kill(pid, signal.SIGKILL)
        xp.stop()
