"""CpuLatencyUs with a real `twistd pktendpoint` and the kernel's PM QoS device: the
machine's CPU latency limit (what reading /dev/cpu_dma_latency returns) is the
endpoint's while a controller session is open, and back to what it was once it closes,
with the endpoint still running."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from packetlab.controller.local import twistd_command
from packetlab.endpoint.cpulatency import DEVICE

pytestmark = pytest.mark.skipif(
    not os.access(DEVICE, os.R_OK | os.W_OK),
    reason=f"needs read/write access to {DEVICE} (root on Linux)",
)


def limit_us() -> int:
    """The kernel's current CPU latency limit: the lowest of all open requests."""
    fd = os.open(DEVICE, os.O_RDONLY)
    try:
        return int(struct.unpack("=i", os.read(fd, 4))[0])
    finally:
        os.close(fd)


def until(check: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_limit_is_held_only_while_a_session_is_open(tmp_path: Path) -> None:
    before = limit_us()
    if before <= 3:
        pytest.skip(f"another process already holds the CPU latency limit at {before} µs")
    conf, log = tmp_path / "endpt.conf", tmp_path / "endpoint.log"
    conf.write_text("CpuLatencyUs 3\n")
    port = free_port()  # nobody listens yet: the endpoint retries, no session
    proc = subprocess.Popen(
        [*twistd_command(), "-n", "--pidfile=", f"--logfile={log}", "pktendpoint", "-c",
         str(conf), "--insecure-plaintext", "--retry-delay", "0.2", f"127.0.0.1:{port}"],
        cwd=tmp_path,
    )  # fmt: skip
    try:
        until(lambda: log.exists() and "CPU wake-up latency 3 µs" in log.read_text(), "start")
        time.sleep(0.3)  # a connection attempt or two
        assert limit_us() == before  # started, no session: nothing asked
        with socket.create_server(("127.0.0.1", port)) as listener:
            listener.settimeout(20)
            conn, _ = listener.accept()
            until(lambda: limit_us() == 3, "the limit held during the session")
        conn.close()  # listener closed first: the endpoint's retries are refused
        until(lambda: limit_us() == before, "the limit given back when the session ended")
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)
    assert "Traceback" not in log.read_text()


def test_an_unopenable_device_stops_the_daemon_in_one_line() -> None:
    """Without write access (a user without the permission), one line and exit 1; run as
    `nobody` through setpriv, which root has (pytest's tmp_path is root's alone)."""
    with tempfile.TemporaryDirectory(prefix="pktlab-cpulat-") as tmp:
        run_as_nobody(Path(tmp))


def run_as_nobody(tmp_path: Path) -> None:
    conf = tmp_path / "endpt.conf"
    conf.write_text("CpuLatencyUs 0\n")
    tmp_path.chmod(0o777)
    conf.chmod(0o644)
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--reset-env"]
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    probe = subprocess.run([*nobody, *twistd_command(), "--version"], capture_output=True,
                           timeout=60, cwd=tmp_path, check=False, env=env)  # fmt: skip
    if probe.returncode != 0:  # e.g. a checkout under a directory only root may enter
        pytest.skip(f"user nobody cannot run this virtualenv's twistd: {probe.stderr[-200:]!r}")
    cmd = [*nobody, *twistd_command(), "-n", "--pidfile=", "--logfile=-", "pktendpoint", "-c",
           str(conf), "--insecure-plaintext", "127.0.0.1:1"]  # fmt: skip
    got = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False, env=env
    )
    out = (got.stdout + got.stderr).strip()
    assert got.returncode == 1, out
    assert out.splitlines()[-1].endswith(
        f"{conf}:1: CpuLatencyUs needs write access to {DEVICE} (root, or an operator-granted "
        "permission on the device); remove CpuLatencyUs or run the endpoint as root"
    ), out
    assert "Traceback" not in out
