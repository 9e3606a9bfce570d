"""`bash scripts/test.sh --help`, README's second command asked what it does (session 32,
fresh32): its own usage, then pytest's options once. Before, the script passed --help to
both of its passes: pytest's help twice, the serial pass's banner between, and not a
word of the script's own. Run from a copy with a stub setup.sh, so nothing is set up."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_is_the_script_s_usage_then_pytest_s_once(tmp_path: Path, flag: str) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
    (tmp_path / "scripts" / "setup.sh").write_text("true\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    got = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "test.sh"), "-q", flag],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith("usage: bash scripts/test.sh [PYTEST_OPTIONS] [PATH ...]")
    assert "two passes" in got.stdout.split("\n\n", 1)[0]
    assert got.stdout.count("[file_or_dir]") == 2  # pytest's usage line, once
    assert "serial tests, one at a time ==" not in got.stdout
