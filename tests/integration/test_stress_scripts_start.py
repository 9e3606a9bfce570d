"""Every `stress/` script docs/reliability.md and docs/performance.md point at starts:
`--help` exits 0 without a traceback (session 23, doctour23: `stress/memgrowth.py` and
`stress/soak.py` stopped at their first import, `ImportError: cannot import name
'DEFAULT_CONFIG' from 'conftest'`: tests/conftest.py, added in session 22, came before
tests/integration/conftest.py on their path). Their runs themselves are long and by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.name for p in (REPO / "stress").glob("*.py") if not p.name.startswith("_"))


def test_there_are_scripts() -> None:
    assert {"memgrowth.py", "soak.py", "fuzz.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name: str) -> None:
    got = subprocess.run(
        [sys.executable, str(REPO / "stress" / name), "--help"], capture_output=True,
        text=True, timeout=120, cwd=REPO, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr[-2000:]
    assert "Traceback" not in got.stderr and "usage" in got.stdout.lower(), got
