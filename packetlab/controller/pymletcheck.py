"""A Python mlet's own check of its arguments, run by the manager before it listens.

An experiment module may define ``check(args)`` beside its ``mlet(session, args)``: it
raises (or exits, as argparse's ``parser.error`` does) when `args` are wrong. The
manager runs it once at start, in a child (``python -m packetlab.controller.pymlet
--check TARGET ARGS``: the experiment's code never runs in the manager), so that a bad
argument is one line and exit status 2 before anything listens, instead of the same
failure at every endpoint (session 30, camp30: `RunError: --server 127.0.0.1:: bad port
''` three times, and the manager exited 0). A module without a top-level ``check`` (found
in its source, nothing imported) costs nothing.
"""

from __future__ import annotations

import ast
import subprocess
import sys

from packetlab.controller.deathsig import preexec
from packetlab.controller.mlet import python_mlet_argv, python_mlet_source

__all__ = ["CHECK_TIMEOUT", "defines_check", "precheck"]

#: Seconds the check may take (an import of Twisted and the module on a loaded machine).
CHECK_TIMEOUT = 120.0


def defines_check(mlet: str) -> bool:
    """Whether the Python experiment `mlet`'s source defines a top-level `check`."""
    path = python_mlet_source(mlet)
    if path is None:
        return False
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return False
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "check"
        for node in tree.body
    )


def precheck(mlet: str, args: list[str]) -> str | None:
    """What `mlet`'s `check(args)` said was wrong (its last line on stderr), or None when
    it has none or took the arguments."""
    if python_mlet_argv(mlet, args) is None or not defines_check(mlet):
        return None  # (a program, run as it is: an executable Python script too)
    argv = [sys.executable, "-m", "packetlab.controller.pymlet", "--check", mlet, *args]
    try:
        # preexec: a check still running when the manager is killed ends with it
        done = subprocess.run(argv, capture_output=True, text=True, timeout=CHECK_TIMEOUT,
                              stdin=subprocess.DEVNULL, preexec_fn=preexec())  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"its check(args) took more than {CHECK_TIMEOUT:g} s"
    if done.returncode == 0:
        return None
    said = [x.strip() for x in done.stderr.splitlines() if x.strip()]
    return said[-1] if said else f"its check(args) exited with status {done.returncode}"
