"""Every Python block in the docs is checked: a complete program (it starts with
`#!/usr/bin/env python3`) is run and must exit 0; any other block is a fragment and must
at least compile (top-level `await` allowed). So a doc cannot drift from the code
without a test failing."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
BLOCK = re.compile(r"^[ \t]*```python\n(.*?)^[ \t]*```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            line = text[: m.start()].count("\n") + 1
            out.append((f"{page.name}:{line}", textwrap.dedent(m.group(1))))
    return out


BLOCKS = blocks()


def test_the_docs_have_code() -> None:
    assert any(name.startswith("controller.md") for name, _ in BLOCKS)
    assert any(code.startswith("#!/usr/bin/env python3") for _, code in BLOCKS)


@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[w for w, _ in BLOCKS])
def test_block(where: str, code: str, tmp_path: Path) -> None:
    if not code.startswith("#!/usr/bin/env python3"):
        compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        return
    script = tmp_path / "snippet.py"
    script.write_text(code)
    env = dict(os.environ, PKTLAB_HOME=str(tmp_path / "home"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    got = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
        cwd=tmp_path, env=env, check=False,
    )  # fmt: skip
    assert got.returncode == 0, f"{where}:\n{got.stdout}\n{got.stderr}"
    assert "Traceback" not in got.stderr
