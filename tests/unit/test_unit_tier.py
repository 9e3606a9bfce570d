"""tests/unit/ stays synchronous over fakes: no module there starts processes, makes
sockets, sleeps, drives the global reactor or reads the project's `../shared` or `.venv`.
Such tests belong in tests/integration/ (docs/testing.md). Checked on the AST, so the rule
holds for tests added later too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent
BANNED_MODULES = {"subprocess", "multiprocessing", "pytest_twisted"}
BANNED_CALLS = {
    ("time", "sleep"): "sleeps",
    ("socket", "socket"): "makes a socket",
    ("socket", "socketpair"): "makes a socket",
    ("socket", "create_connection"): "connects a socket",
    ("socket", "create_server"): "listens on a socket",
    ("os", "system"): "runs a process",
    ("os", "fork"): "forks",
}
BANNED_PATHS = ("shared", ".venv")


def _outside_path(value: object) -> bool:
    return isinstance(value, str) and (value in BANNED_PATHS or "shared/spec" in value)


def offences(source: str) -> list[str]:
    """What in a unit-test module needs the real world."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [
                f"{line}: imports {a.name}"
                for a in node.names
                if a.name.split(".")[0] in BANNED_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in BANNED_MODULES:
                found.append(f"{line}: imports {node.module}")
            if node.module == "twisted.internet" and any(a.name == "reactor" for a in node.names):
                found.append(f"{line}: uses the global reactor")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and (why := BANNED_CALLS.get((node.func.value.id, node.func.attr)))
        ):
            found.append(f"{line}: {why} ({node.func.value.id}.{node.func.attr})")
        elif isinstance(node, ast.Constant) and _outside_path(node.value):
            found.append(f"{line}: reads {node.value!r} outside the repository's tests")
    return found


MODULES = sorted(p for p in UNIT.rglob("*.py") if p.name != Path(__file__).name)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(UNIT)))
def test_unit_module_needs_only_fakes(path: Path) -> None:
    assert offences(path.read_text()) == [], "move it to tests/integration/"


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("import subprocess", "imports subprocess"),
        ("from multiprocessing import Process", "imports multiprocessing"),
        ("import pytest_twisted", "imports pytest_twisted"),
        ("from twisted.internet import reactor", "global reactor"),
        ("def f():\n    time.sleep(0.3)\n", "sleeps"),
        ("s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)", "makes a socket"),
        ("socket.create_server(('127.0.0.1', 0))", "listens"),
        ("TRACES = ROOT.parent / 'shared' / 'spec'", "reads 'shared'"),
        ("PKTLAB = REPO / '.venv' / 'bin' / 'pktlab'", "reads '.venv'"),
    ],
)
def test_checker_flags(source: str, fragment: str) -> None:
    found = offences(source)
    assert len(found) == 1 and fragment in found[0], found


def test_checker_allows_fakes_and_constants() -> None:
    source = (
        "import socket\n"
        "from twisted.internet.testing import MemoryReactorClock\n"
        "anc = [(socket.SOL_SOCKET, 35, b'')]\n"
        "clock = MemoryReactorClock()\n"
        "clock.advance(1)\n"
    )
    assert offences(source) == []
