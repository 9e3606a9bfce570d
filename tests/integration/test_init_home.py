"""`pktlab init` on a real file system that fills up (session 24, testbed24): nothing is
written. Before, files went one by one into the home: 9 of 28 (the last one empty), then
`error: [Errno 28] No space left on device`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.root
def test_a_full_disk_leaves_no_file(small_disk: Path) -> None:
    home = small_disk / "h"
    proc = subprocess.run(
        [sys.executable, "-m", "packetlab", "init", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1,
        "",
        f"error: cannot set up {home}: No space left on device; no file written\n",
    )
    assert not home.exists()  # made by init, then removed (empty keys/ certs/ csrs/ stayed)
