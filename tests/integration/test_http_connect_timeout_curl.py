"""`pktlab run http --connect-timeout` beside curl 7.88.1's: a loopback server that
accepts the TCP connection and never answers the TLS ClientHello; curl's connect timeout
covers the handshake (`(28) SSL connection timeout` after S s, long before -m), so must
ours. And a port whose listener's queue is full (the SYN dropped): 28 for both."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from test_http_curl_side_by_side import REPO, pytestmark  # noqa: F401

WRITE_OUT = "%{exitcode} %{errormsg}"


@pytest.fixture(scope="module")
def mute() -> Iterator[int]:
    """A port that accepts connections and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield listener.getsockname()[1]
    stop.set()
    t.join(5)
    for s in [*held, listener]:
        s.close()


@pytest.fixture
def full() -> Iterator[int]:
    """A loopback port whose listener's queue is full: the kernel drops new SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    yield port
    for s in [*fillers, listener]:
        s.close()


def _run(who: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]
    return subprocess.run([*argv, "-s", "-w", WRITE_OUT, *args], capture_output=True,
                          text=True, timeout=60, env=env)  # fmt: skip


@pytest.mark.parametrize("by_name", [False, True], ids=["address", "resolve"])
def test_a_mute_tls_server_is_a_connect_timeout_as_curl(mute: int, by_name: bool) -> None:
    # -m 20: were the handshake bounded by -m (ours before), the words would be -m's
    host = "mute.test" if by_name else "127.0.0.1"
    argv = ["--connect-timeout", "1", "-m", "20", f"https://{host}:{mute}/"]
    if by_name:
        argv = ["--resolve", f"mute.test:{mute}:127.0.0.1", *argv]
    theirs, ours = _run("curl", *argv), _run("ours", *argv)
    assert (theirs.returncode, theirs.stdout) == (28, "28 SSL connection timeout")
    assert ours.returncode == 1, ours.stderr  # ours: 1, the URL's curl code in %{exitcode}
    assert ours.stdout == theirs.stdout, ours.stdout  # curl's words since session 26


def test_a_dropped_syn_is_a_connect_timeout_as_curl(full: int) -> None:
    argv = ["--connect-timeout", "1", f"http://127.0.0.1:{full}/"]
    theirs, ours = _run("curl", *argv), _run("ours", *argv)
    assert theirs.stdout.startswith("28 Failed to connect to 127.0.0.1 port")
    assert theirs.stdout.endswith("Timeout was reached")
    # %{errormsg} in curl's words since session 26 (the time in it masked); ours were
    # "connect to A:P: no answer to the SYN: not established within 1 s (...)"
    assert re.sub(r"after \d+ ms", "", ours.stdout) == re.sub(r"after \d+ ms", "", theirs.stdout)
