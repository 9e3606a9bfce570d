"""A real `pktlab init` signalled mid-way (session 32, ops32): SIGINT or SIGTERM once the
home appears leaves no home at all (it left empty keys/ certs/ csrs/), or, when the
signal came too late, the whole home; SIGKILL while it stages leaves its staging
directory, which the next `pktlab init` removes (it stayed for good) before it
writes the home."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tls_world import REPO

from packetlab.cli.init import missing_files
from packetlab.ppks import PktlabHome

DEADLINE = 60.0


INIT = [sys.executable, "-m", "packetlab", "init", "--home"]


def start(home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*INIT, str(home)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )


def init(home: Path) -> subprocess.CompletedProcess[str]:
    """`pktlab init --home HOME` run to its end (the re-run after an interrupted one)."""
    return subprocess.run(
        [*INIT, str(home)], capture_output=True, text=True, cwd=REPO, timeout=DEADLINE
    )


def wait_for(proc: subprocess.Popen[str], ready: object) -> bool:
    """Poll (no fixed sleep) until `ready()` or the process ended; True if `ready()`."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if ready():  # type: ignore[operator]
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.001)
    proc.kill()
    raise AssertionError("pktlab init neither made its home nor ended")


def stages(home: Path) -> list[Path]:
    return list(home.glob(".pktlab-init-*")) if home.is_dir() else []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_once_the_home_appears_leaves_none_or_all_of_it(
    tmp_path: Path, sig: signal.Signals
) -> None:
    home = tmp_path / "home"
    proc = start(home)
    try:
        wait_for(proc, home.exists)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode == 130:
        assert err.endswith(f"pktlab init: interrupted; no file written in {home}\n")
        assert not home.exists()  # before: empty keys/ certs/ csrs/ (and the home) stayed
    else:  # the signal came after the last rename: the whole home
        assert proc.returncode == 0, err
        assert missing_files(PktlabHome.at(home)) == [] and stages(home) == []
    # either way a re-run needs no --force when nothing was written
    rerun = init(home)
    assert rerun.returncode == (0 if proc.returncode == 130 else 1), rerun.stderr


def test_a_killed_inits_staging_directory_is_removed_by_the_next(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = start(home)
    try:
        staged = wait_for(proc, lambda: any((s / "keys").is_dir() for s in stages(home)))
        proc.kill()  # SIGKILL: nothing of init runs
        proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if not staged:
        pytest.skip("pktlab init ended before its staging directory was seen")
    assert stages(home) and missing_files(PktlabHome.at(home))  # the killed one's, no home
    rerun = init(home)
    assert rerun.returncode == 0, rerun.stderr
    assert stages(home) == []  # before: the killed one's stayed, with its private keys
    assert missing_files(PktlabHome.at(home)) == []
