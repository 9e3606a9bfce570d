"""`twistd pktendpoint` as an operator meets it: an option or config error is the error
line (file, line, key) without twistd's usage dump; started without -n it says that it
goes to the background and where its log is, instead of vanishing silently."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from packetlab.controller.local import twistd_command


def twistd(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*twistd_command(), *args], capture_output=True, text=True, timeout=60, cwd=tmp_path,
        check=False,
    )  # fmt: skip


def test_a_config_error_is_one_line_naming_file_line_and_key(tmp_path: Path) -> None:
    conf = tmp_path / "endpt.conf"
    conf.write_text("# demo\nBufMax lots\n")
    got = twistd(tmp_path, "-n", "pktendpoint", "-c", str(conf), "127.0.0.1:1")
    out = (got.stdout + got.stderr).strip().splitlines()
    assert got.returncode == 1
    assert out[-1].endswith(f"{conf}:2: BufMax: expected an integer, got 'lots'")
    assert len(out) <= 3, out  # not the 47-line option list
    assert "--insecure-plaintext" not in got.stdout


def test_an_unknown_option_is_short_too(tmp_path: Path) -> None:
    got = twistd(tmp_path, "-n", "pktendpoint", "--bogus")
    out = (got.stdout + got.stderr).strip().splitlines()
    assert got.returncode == 1 and out[-1].endswith("option --bogus not recognized")
    assert len(out) <= 3 and "twistd pktendpoint --help" in out[-2]


def test_help_still_lists_everything(tmp_path: Path) -> None:
    got = twistd(tmp_path, "pktendpoint", "--help")
    assert got.returncode == 0 and "--insecure-plaintext" in got.stdout


def test_without_n_it_says_it_goes_to_the_background(tmp_path: Path) -> None:
    log, pid = tmp_path / "ep.log", tmp_path / "ep.pid"
    got = twistd(
        tmp_path, f"--logfile={log}", f"--pidfile={pid}", "pktendpoint",
        "--insecure-plaintext", "--config", os.devnull, "127.0.0.1:1",
    )  # fmt: skip
    try:
        assert got.returncode == 0, got.stderr
        assert "going to the background (twistd without -n)" in got.stderr
        assert f"log in {log}" in got.stderr and "twistd -n pktendpoint" in got.stderr
    finally:
        for _ in range(50):
            if pid.exists() and pid.read_text().strip():
                os.kill(int(pid.read_text()), signal.SIGTERM)
                break
            time.sleep(0.1)
