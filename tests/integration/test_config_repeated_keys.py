"""A real `twistd -n pktbroker` and `twistd -n pktproxy` given a config that sets a key
twice: each starts with the last value (as before) and logs one warning naming the file,
the lines and the value that counts (it was silent)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from packetlab.cli.init import init_home
from packetlab.controller.local import twistd_command
from packetlab.ppks import PktlabHome

ANY = "tcp:0:interface=127.0.0.1"


def log_until(proc: subprocess.Popen[bytes], word: str, deadline: float = 30.0) -> str:
    """The daemon's log so far, read until `word` is in it (or the deadline, or its end)."""
    assert proc.stdout is not None
    out, end = b"", time.monotonic() + deadline
    while word.encode() not in out and time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
    return out.decode(errors="replace")


@pytest.mark.parametrize(
    ("tap", "text", "warning", "started"),
    [
        ("pktbroker", f"ErrorDelay 1\nPublishListen {ANY}\nSubscribeListen {ANY}\nErrorDelay 2\n",
         "{conf}:4: ErrorDelay repeated (line 1); the last one wins: 2", "subscribe port"),
        ("pktproxy", f"SetupEndpoint {ANY}\nEndpointsEndpoint {ANY}\nHelloCap 4096\n"
         "StatsInterval 0\nHelloCap 2048\nHelloCap 1024\n",
         "{conf}:6: HelloCap repeated (lines 3, 5); the last one wins: 1024", "listening"),
    ],
)  # fmt: skip
def test_a_key_given_twice_is_warned_about_at_start(
    tmp_path: Path, tap: str, text: str, warning: str, started: str
) -> None:
    home = tmp_path / "home"
    init_home(PktlabHome.at(home))
    conf = tmp_path / f"{tap}.conf"
    conf.write_text(text)
    proc = subprocess.Popen(
        [*twistd_command(), "-n", "--pidfile=", tap, "--config", str(conf)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
        env=dict(os.environ, PKTLAB_HOME=str(home)),
    )  # fmt: skip
    try:
        log = log_until(proc, started)
        assert proc.poll() is None, log  # it started
        assert f"config: {warning.format(conf=conf)}" in log, log
        assert log.count("repeated") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
