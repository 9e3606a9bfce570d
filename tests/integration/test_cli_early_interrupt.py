"""A Ctrl-C in the first milliseconds of `pktlab` (session 25): from the import of the
`packetlab` package on (the console script's first line of ours), one line `pktlab:
interrupted` and status 130, not a KeyboardInterrupt traceback of an import. Before, the
handling began in `cli.main` (~20 ms in): a SIGINT while `packetlab.cli.interrupt` was
imported ended with a traceback (6 of 90 runs at 20-50 ms after spawn). The SIGINT comes
at a fixed point here: a `sitecustomize` (imported by `site`, before the command) sends
it when the module `at` is about to be imported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

KILL_AT = (
    "import importlib.abc, os, signal, sys\n"
    "class Kill(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name == {at!r}:\n"
    "            os.kill(os.getpid(), signal.SIGINT)\n"
    "        return None\n"
    "sys.meta_path.insert(0, Kill())\n"
)
PKTLAB = str(Path(sys.executable).with_name("pktlab"))  # the console script


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        check=False, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


@pytest.mark.parametrize("at", ["packetlab.__main__", "packetlab.cli", "packetlab.cli.interrupt"])
@pytest.mark.parametrize(
    "command", [[PKTLAB], [sys.executable, "-m", "packetlab"]], ids=["pktlab", "python-m"]
)
def test_ctrl_c_from_the_package_import_on_is_one_line_and_130(
    tmp_path: Path, at: str, command: list[str]
) -> None:
    (tmp_path / "sitecustomize.py").write_text(KILL_AT.format(at=at))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    got = run([*command, "decode"], env)
    assert got.stderr == "\npktlab: interrupted\n", got.stderr
    assert got.returncode == 130, got
    assert got.stdout == ""


@pytest.mark.parametrize(
    "argv0", ["/usr/bin/pktlab-not", "-c", "/usr/bin/twistd"], ids=["other", "c", "twistd"]
)
def test_importing_packetlab_elsewhere_leaves_sigint_alone(argv0: str) -> None:
    """A program (a test runner, twistd, an mlet) that imports packetlab keeps Python's
    KeyboardInterrupt: only the `pktlab` process itself ends at once."""
    code = (
        f"import signal, sys\nsys.argv[0] = {argv0!r}\nimport packetlab\n"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\nprint('ok')\n"
    )
    got = run([sys.executable, "-c", code])
    assert got.stdout == "ok\n", got.stderr


def test_python_m_of_another_module_leaves_sigint_alone(tmp_path: Path) -> None:
    """`python -m packetlab.controller.pymlet` (an mlet) is not the `pktlab` command."""
    (tmp_path / "sitecustomize.py").write_text(KILL_AT.format(at="packetlab.controller"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    got = run([sys.executable, "-m", "packetlab.controller.pymlet", "x:y"], env)
    assert "KeyboardInterrupt" in got.stderr, got.stderr  # Python's own, as before
    assert "pktlab: interrupted" not in got.stderr


def test_a_sigint_ignored_by_the_shell_stays_ignored() -> None:
    """`pktlab ... &` from a script: SIGINT ignored, as it was given."""
    code = (
        "import signal, sys\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "sys.argv[0] = '/usr/bin/pktlab'\n"
        "import packetlab\n"
        "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
        "print('ok')\n"
    )
    got = run([sys.executable, "-c", code])
    assert got.stdout == "ok\n", got.stderr
