"""The installed `pktlab` entry point (the .venv's console script) runs `pktlab decode`
as a process: output, exit status and error message, as tests/unit/test_cli_wire.py
checks them in-process."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_HEX = REPO / "examples" / "every_message.hex"
EXAMPLE_JSONL = REPO / "examples" / "every_message.jsonl"
PKTLAB = REPO / ".venv" / "bin" / "pktlab"


def test_installed_entry_point() -> None:
    assert PKTLAB.exists(), f"{PKTLAB} missing: run scripts/setup.sh to install packetlab"
    done = subprocess.run(
        [str(PKTLAB), "decode", "--hex", str(EXAMPLE_HEX)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == EXAMPLE_JSONL.read_text().splitlines()
    bad = subprocess.run(
        [str(PKTLAB), "decode", "--hex"],
        input="21000000 2c0000",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stdout == '{"type": "start"}\n'
    assert "truncated frame at byte offset 4" in bad.stderr
