"""The shared link options end to end (root: raw sockets): `pktlab run --listen` over TLS
with a real `twistd pktendpoint`, the in-process endpoint over TLS, and what the
controller's user is told when a chain is not trusted or credentials are missing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from packetlab.controller.local import twistd_command

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
RUN = [sys.executable, "-m", "packetlab.cli.run"]


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the endpoint's raw sockets")


def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), e.get("PYTHONPATH")]))
    e["PKTLAB_HOME"] = str(tmp_path / "default-home")  # never this host's ~/.pktlab
    return e


def init(path: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "packetlab", "init", "--home", str(path)],
        check=True, capture_output=True, cwd=REPO,
    )  # fmt: skip
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def endpoint(home: Path, port: int, log: Path, tmp_path: Path) -> subprocess.Popen[bytes]:
    argv = [*twistd_command(), "-n", "--pidfile=", f"--logfile={log}", "pktendpoint"]
    argv += ["-c", str(home / "endpt.conf"), "--transproto", "raw,tcp,udp"]
    argv += ["--ipv4", "127.0.0.1", "--retry-delay", "0.2", f"127.0.0.1:{port}"]
    argv += ["--log-level", "debug"]  # the TLS peer's mode is a debug line
    return subprocess.Popen(argv, env=env(tmp_path), cwd=tmp_path)


def run_with_endpoint(
    tmp_path: Path, controller_home: Path, endpoint_home: Path, *extra: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    port = free_port()
    ep = endpoint(endpoint_home, port, tmp_path / "ep.log", tmp_path)
    try:
        got = subprocess.run(
            [*RUN, "ping", "-c", "2", "-i", "0.05", "--home", str(controller_home),
             "--listen", f"127.0.0.1:{port}", *extra, "127.0.0.1"],
            capture_output=True, text=True, timeout=60, env=env(tmp_path), cwd=REPO,
            check=False,
        )  # fmt: skip
    finally:
        ep.terminate()
        ep.wait(10)
    return got, (tmp_path / "ep.log").read_text()


def test_listen_over_tls_with_a_real_endpoint(tmp_path: Path) -> None:
    home = init(tmp_path / "home")
    got, log = run_with_endpoint(tmp_path, home, home, "--timeout", "30")
    assert got.returncode == 0, got.stderr + log
    assert "2 packets transmitted, 2 received" in got.stdout
    assert f"(TLS 1.3, PPKS certificates from {home})" in got.stderr
    assert "refused TLS peer" not in log and "ENDPOINT_AUTH_CONTROLLER" in log


def test_an_untrusted_chain_is_explained_on_the_controller(tmp_path: Path) -> None:
    ours, theirs = init(tmp_path / "ours"), init(tmp_path / "theirs")
    got, log = run_with_endpoint(tmp_path, ours, theirs, "--timeout", "3")
    assert "untrusted_root" in log  # the endpoint's own words
    assert got.returncode == 2
    err = got.stderr
    # Each side distrusts the other's chain: whichever checks first explains it, the
    # controller (the endpoint's chain, with the rule) or the endpoint (its close).
    assert "closed the TLS link before its chain was checked" in err or (
        "refused endpoint 127.0.0.1" in err and "untrusted_root" in err
    ), err
    assert "our chain pubcmd_exper_xc.cert + exppriv_eop_exper.cert ends at EOp key id" in err
    assert "k_eop.pub" in err and "Traceback" not in err
    assert "no result within 3 s: no endpoint connected" in err


def test_in_process_tls_refusal_is_reported_at_once(tmp_path: Path) -> None:
    home = init(tmp_path / "home")
    other = init(tmp_path / "other")
    shutil.copy(other / "keys/k_eop.pub", home / "keys/k_eop.pub")  # endpoint trusts another EOp
    got = subprocess.run(
        [*RUN, "ping", "-c", "1", "--home", str(home), "127.0.0.1"],
        capture_output=True, text=True, timeout=60, env=env(tmp_path), cwd=REPO, check=False,
    )  # fmt: skip
    assert got.returncode == 2
    assert "the endpoint refused our certificate chain: untrusted_root" in got.stderr
    assert "Traceback" not in got.stderr


def test_in_process_default_is_tls_without_any_setup(tmp_path: Path) -> None:
    got = subprocess.run(
        [*RUN, "ping", "-v", "-c", "1", "127.0.0.1"],
        capture_output=True, text=True, timeout=60, env=env(tmp_path), cwd=REPO, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert "verified in CONTROLLER_AUTH_ENDPOINT mode" in got.stderr
    assert not (tmp_path / "default-home").exists()  # a temporary home, removed


def test_listen_without_credentials_says_what_to_do(tmp_path: Path) -> None:
    got = subprocess.run(
        [*RUN, "ping", "--listen", "127.0.0.1:0", "127.0.0.1"],
        capture_output=True, text=True, timeout=60, env=env(tmp_path), cwd=REPO, check=False,
    )  # fmt: skip
    assert got.returncode == 2
    assert "no controller credentials in" in got.stderr
    assert "run `pktlab init --home" in got.stderr and "Traceback" not in got.stderr
