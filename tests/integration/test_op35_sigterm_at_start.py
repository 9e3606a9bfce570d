"""SIGTERM as soon as twistd has written its pid file (a `systemctl restart`, or a
`kill $(cat NAME.pid)`, right after a start): the daemon stops cleanly (its log's last
line `Server Shut Down.`), its pid file removed. Before (session 35, op35), SIGTERM kept
its default action until the reactor ran: 10 of 10 such brokers died of the signal
(status -15) with no stop, the pid file left behind. Real `twistd -n --pidfile`
processes of each daemon on loopback."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from broker_world import free_ports, pythonpath_env
from conftest import stop_process, twistd
from tls_world import home_fixture

from packetlab.ppks import PktlabHome

home = home_fixture(scope="module")


def _args(name: str, tmp_path: Path) -> list[str]:
    a, b = free_ports(2)
    if name == "pktendpoint":
        return ["pktendpoint", "--insecure-plaintext", f"127.0.0.1:{a}"]
    if name == "pktbroker":
        conf = tmp_path / "broker.conf"
        conf.write_text(f"PublishListen tcp:{a}:interface=127.0.0.1\n"
                        f"SubscribeListen tcp:{b}:interface=127.0.0.1\n")  # fmt: skip
        return ["pktbroker", "--config", str(conf)]
    return ["pktproxy", "--setup", f"tcp:{a}:interface=127.0.0.1",
            "--endpoints", f"tcp:{b}:interface=127.0.0.1"]  # fmt: skip


@pytest.mark.parametrize("name", ["pktendpoint", "pktbroker", "pktproxy"])
def test_sigterm_once_the_pid_file_is_there_stops_cleanly(
    name: str, home: PktlabHome, tmp_path: Path
) -> None:
    for round_ in range(3):
        pid = tmp_path / f"{name}.{round_}.pid"
        log = tmp_path / f"{name}.{round_}.log"
        argv = [*twistd(), "-n", f"--pidfile={pid}", f"--logfile={log}", *_args(name, tmp_path)]
        proc = subprocess.Popen(argv, cwd=tmp_path, env=pythonpath_env(home))
        try:
            deadline = time.monotonic() + 60
            while not pid.exists() and proc.poll() is None:
                assert time.monotonic() < deadline, "no pid file in 60 s"
                time.sleep(0.001)
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        finally:
            stop_process(proc)
        text = log.read_text() if log.exists() else ""
        # a clean stop: the reactor's own (-15: twistd re-raises the signal it stopped on,
        # in the moment the reactor's SIGTERM handler is in place) or ours (0)
        assert proc.returncode in (0, -signal.SIGTERM), text[-2000:]
        assert "Server Shut Down." in text and not pid.exists(), text[-2000:]
