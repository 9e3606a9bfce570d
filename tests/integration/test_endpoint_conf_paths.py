"""`twistd pktendpoint` with a path key it cannot use: one line naming the file, the line
and the key, exit 1, no traceback; the unreadable and unwritable cases as root with
every capability dropped (a `nobody`-like daemon: root alone reads a mode-000 file)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from packetlab.controller.local import twistd_command

NO_CAPS = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all"]


def start(tmp_path: Path, line: str) -> str:
    """The daemon's output with endpt.conf's line 2 `line`; asserts it stopped (exit 1)."""
    conf = tmp_path / "endpt.conf"
    conf.write_text(f"# scratch\n{line}\n")
    prefix = NO_CAPS if os.geteuid() == 0 else []
    cmd = [*prefix, *twistd_command(), "-n", "--pidfile=", "--logfile=-", "pktendpoint", "-c",
           str(conf), "--insecure-plaintext", "127.0.0.1:1"]  # fmt: skip
    got = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    out = (got.stdout + got.stderr).strip()
    assert got.returncode == 1, out
    assert "Traceback" not in out
    return out.splitlines()[-1]


def test_monitor_persistent_path_checked_at_start(tmp_path: Path) -> None:
    """Before session 29 each of these started without a word."""
    conf = tmp_path / "endpt.conf"
    key = "MonitorPersistentPath"
    pm = tmp_path / "no" / "pm.sqlite3"
    assert start(tmp_path, f"{key} {pm}").endswith(
        f"{conf}:2: {key}: {pm}: directory '{pm.parent}' does not exist "
        "(create it, or correct the path)"
    )
    assert f"{conf}:2: {key}: {tmp_path}: is a directory" in start(tmp_path, f"{key} {tmp_path}")
    locked = tmp_path / "locked.sqlite3"
    locked.write_bytes(b"")
    locked.chmod(0)
    assert start(tmp_path, f"{key} {locked}").endswith(
        f"{conf}:2: {key}: {locked}: cannot be opened for reading and writing: Permission denied"
    )
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    assert start(tmp_path, f"{key} {ro}/pm.sqlite3").endswith(
        f"{conf}:2: {key}: {ro}/pm.sqlite3: directory '{ro}' is not writable by this user "
        "(SQLite makes the database's -wal and -shm files beside it)"
    )


@pytest.mark.parametrize("key", ["RLimDBPath", "EndpointPrivKey"])
def test_plaintext_leaves_the_tls_keys_unread(tmp_path: Path, key: str) -> None:
    """--insecure-plaintext reads no credentials and no accounting database, so their
    keys are not looked at: the daemon runs (stopped here by the bad key after them)."""
    conf = tmp_path / "endpt.conf"
    out = start(tmp_path, f"{key} {tmp_path}/no/x\nMonitorPersistentPath {tmp_path}")
    assert out.endswith(f"{conf}:3: MonitorPersistentPath: {tmp_path}: is a directory; the key "
                        "names the database file in it (e.g. DIR/name.sqlite3)")  # fmt: skip
