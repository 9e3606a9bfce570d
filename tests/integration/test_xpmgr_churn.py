"""`pktlab xpmgr` while endpoints (real `twistd pktendpoint` processes) arrive and leave,
some killed with SIGKILL in the middle of a session: every progress line adds up, each
endpoint session has its one result line, and the manager holds no more descriptors and
no mlet process afterwards (session 26, a week of churn in miniature; the same with 20
endpoints for 25 s gave 311 sessions, 311 result lines, 11 descriptors before and after)."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from pxworld import EndpointProc, XpmgrProc


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def test_endpoints_that_come_and_go_each_get_one_result_and_nothing_leaks(
    tmp_path: Path,
) -> None:
    from tls_world import pktlab_init

    home = pktlab_init(tmp_path / "home").root
    mlet = tmp_path / "mlet.sh"
    mlet.write_text("#!/bin/sh\nsleep 0.4\n")  # a session of ~0.5 s
    mlet.chmod(0o755)
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet)], "-n", "100000")
    eps: list[EndpointProc] = []
    try:
        port = xp.port()
        before = fds(xp.proc.pid)
        where = (f"127.0.0.1:{port}", "--ipv4", "127.0.0.1/8")
        for i in range(6):
            eps.append(EndpointProc(tmp_path, home, *where))
            time.sleep(0.5)
            if i % 2:  # every other one leaves: killed outright, or stopped
                gone = eps.pop(0)
                gone.proc.send_signal(signal.SIGKILL if i % 4 == 1 else signal.SIGTERM)
                gone.stop()
        time.sleep(3)
        for ep in eps:
            ep.proc.send_signal(signal.SIGKILL)
            ep.stop()
        eps = []

        def counts() -> list[tuple[int, ...]]:
            found = re.findall(r"seen (\d+), running (\d+), done (\d+), failed (\d+)", xp.text())
            return [tuple(map(int, c)) for c in found]

        deadline = time.monotonic() + 20
        while not (counts() and counts()[-1][1] == 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the last result line and its descriptors
        lines = counts()
        assert lines, xp.text()
        for s, r, d, f in lines:  # S = R + D + F at every moment
            assert s == r + d + f, (s, r, d, f)
        seen, running, done, failed = lines[-1]
        assert running == 0 and seen >= 6, xp.text()[-2000:]
        results = xp.result_lines()
        assert len(results) == seen
        assert sum(r["status"] == "done" for r in results) == done
        assert sum(r["status"] == "failed" for r in results) == failed
        assert fds(xp.proc.pid) == before
        assert children(xp.proc.pid) == []
        assert "Traceback" not in xp.text()
        xp.proc.send_signal(signal.SIGINT)
        assert xp.wait_exit(20) == 0
    finally:
        for ep in eps:
            ep.stop()
        xp.stop()
