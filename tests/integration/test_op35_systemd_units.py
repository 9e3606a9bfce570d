"""The unit files of examples/systemd as an operator installs them (session 35, op35):
`systemd-analyze verify` passes on each, and each `ExecStart` line, run as written with
the venv's twistd and a `pktlab init` home for /var/lib/pktlab (and free loopback ports
for the fixed ones), starts the daemon, which SIGTERM then stops with status 0."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from broker_world import free_ports, pythonpath_env
from conftest import stop_process
from tls_world import home_fixture

from packetlab.ppks import PktlabHome

UNITS = Path(__file__).resolve().parents[2] / "examples" / "systemd"
BIN = str(Path(sys.executable).parent) + "/"
STARTED = {
    "pktendpoint": "pktendpoint: broker mode, subscribing to broker",
    "pktbroker": "pktbroker subscribe port listening",
    "pktproxy": "endpoints port listening",
}

home = home_fixture(scope="module")


def _unit(name: str, home: PktlabHome, tmp_path: Path) -> Path:
    """The unit with the venv for /opt/pktlab and `home` for /var/lib/pktlab."""
    text = (UNITS / f"{name}.service").read_text()
    assert "/opt/pktlab/bin/" in text and "/var/lib/pktlab" in text
    text = text.replace("/opt/pktlab/bin/", BIN).replace("/var/lib/pktlab", str(home.root))
    out = tmp_path / f"{name}.service"
    out.write_text(text)
    return out


@pytest.mark.parametrize("name", sorted(STARTED))
def test_the_example_unit_verifies_and_its_execstart_runs(
    name: str, home: PktlabHome, tmp_path: Path
) -> None:
    unit = _unit(name, home, tmp_path)
    if shutil.which("systemd-analyze"):
        got = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
        assert got.returncode == 0 and not got.stderr.strip(), got.stderr
    line = next(ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    pub, sub, status, setup, eps = free_ports(5)
    conf = tmp_path / "broker.conf"  # the home's, on free ports
    conf.write_text(
        (home.root / "broker.conf").read_text()
        .replace("tcp:20556", f"tcp:{pub}").replace("tcp:20557", f"tcp:{sub}")
        .replace("tcp:20558", f"tcp:{status}")
    )  # fmt: skip
    ports = {"tcp:20557": f"tcp:{setup}", "tcp:20556": f"tcp:{eps}",
             str(home.root / "broker.conf"): str(conf),
             "broker.example.org": f"127.0.0.1:{sub}"}  # fmt: skip
    argv = [ports.get(a, a) for a in argv]
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=pythonpath_env(home), stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while STARTED[name] not in log.read_text() and proc.poll() is None:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.05)
            assert proc.poll() is None, log.read_text()[-3000:]
        finally:
            stop_process(proc)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
