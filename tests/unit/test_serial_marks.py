"""The `serial` list of tests/conftest.py names tests that exist.

scripts/test.sh runs the tests marked `serial` (they measure time or rates) alone, after
the parallel pass; an entry that names a renamed file or test would silently put that
test back beside the others, where it flakes. Read from the AST: the root conftest is not
importable by name (tests/integration/conftest.py is the module `conftest` too).
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _serial_entries() -> list[str]:
    tree = ast.parse((TESTS / "conftest.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "SERIAL" for t in node.targets
        ):
            return [
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            ]
    raise AssertionError("tests/conftest.py has no SERIAL")


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        n.name
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
    }


def test_every_serial_entry_names_an_existing_test_file_or_test() -> None:
    entries = _serial_entries()
    assert len(entries) > 10
    files = {p.name: p for p in TESTS.rglob("test_*.py")}
    for entry in entries:
        base, _, name = entry.partition("::")
        assert base in files, f"SERIAL names {base}, which is not a test file"
        if name:
            assert name in _test_names(files[base]), f"SERIAL names {entry}: no such test"
