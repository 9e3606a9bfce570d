"""The docs build as README.md and docs/index.md say (`sphinx-build -b html docs
docs/_build/html`) without a warning: a heading level skipped, a broken cross-reference or
a page left out of every toctree fails here, not on the reader's screen (session 32: 19
"H1 to H3" warnings had accumulated in congruence, dns, http and throughput.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


def test_the_docs_build_without_a_warning(tmp_path: Path) -> None:
    sphinx = Path(sys.executable).parent / "sphinx-build"
    if not sphinx.exists():
        pytest.skip("sphinx-build is not installed (setup.cfg's dev extra)")
    build = subprocess.run(
        [str(sphinx), "-W", "--keep-going", "-q", "-b", "html", str(REPO / "docs"),
         str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-4000:]
    assert (tmp_path / "html" / "index.html").exists()
