"""packetlab without its `analysis` extra (scipy, matplotlib, numpy), as an endpoint host
installs it (docs/install.md): a fresh `pktlab` / `twistd` process whose imports of them
are refused, as `No module named ...` would be in a venv without them. `pktlab compare`
says what to install in one line before any run; every other command's `--help`, the
endpoint's included, works and tries none of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from packetlab.cli import COMMANDS

BIN = Path(sys.executable).parent
HINT = "(pip install 'packetlab[analysis]')"

# Refuses the top-level packages named in $PKTLAB_TEST_REFUSE and lists, at exit, each
# import of one that was tried (and refused) in $PKTLAB_TEST_REFUSED.
SITECUSTOMIZE = """\
import atexit, os, sys

_REFUSE = set(os.environ["PKTLAB_TEST_REFUSE"].split(","))
_tried = []

class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _REFUSE:
            _tried.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Refuse())

@atexit.register
def _list():
    with open(os.environ["PKTLAB_TEST_REFUSED"], "a") as f:
        f.write("".join(n + "\\n" for n in _tried))
"""


class Without:
    """Runs the commands of this venv with some packages refused."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.site = tmp_path / "site"
        self.site.mkdir()
        (self.site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.listing = tmp_path / "tried.txt"

    def run(self, argv: list[str], refuse: str = "scipy,matplotlib,numpy") -> tuple[int, str, str]:
        """(exit status, stdout, stderr) of the venv's argv[0] with `refuse` refused."""
        self.listing.write_text("")
        env = {**os.environ, "PYTHONPATH": str(self.site), "PKTLAB_TEST_REFUSE": refuse,
               "PKTLAB_TEST_REFUSED": str(self.listing), "HOME": str(self.tmp)}  # fmt: skip
        done = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True,
                              env=env, cwd=self.tmp, timeout=120)  # fmt: skip
        return done.returncode, done.stdout, done.stderr

    def tried(self) -> list[str]:
        """The refused imports the last command tried."""
        return self.listing.read_text().split()


@pytest.fixture
def without(tmp_path: Path) -> Without:
    return Without(tmp_path)


def test_compare_names_the_extra_before_any_run(without: Without) -> None:
    """Failed before the extra: the runs went ahead, and C2's `from scipy.stats import
    ks_2samp` ended the command with a traceback after them, their figures lost."""
    argv = ["pktlab", "compare", "ping", "127.0.0.1", "-c", "1", "--runs", "2"]
    status, out, err = without.run(argv)
    assert (status, out, err) == (2, "", f"pktlab compare ping: scipy is not installed {HINT}\n")
    assert without.tried() == ["scipy"]


def test_compare_plot_names_matplotlib(without: Without, tmp_path: Path) -> None:
    argv = ["pktlab", "compare", "traceroute", "127.0.0.1", "--plot", str(tmp_path / "x.png")]
    status, out, err = without.run(argv, refuse="matplotlib")
    assert (status, out) == (2, "")
    assert err == f"pktlab compare traceroute: matplotlib is not installed {HINT}\n"


def test_every_help_and_the_endpoints_work_and_try_none_of_it(without: Without) -> None:
    argvs = [["pktlab", "--help"]] + [["pktlab", c, "--help"] for c in COMMANDS]
    argvs += [["pktlab", "compare", "ping", "--help"], ["pktlab", "run", "ping", "--help"]]
    argvs += [["twistd", "-n", r, "--help"] for r in ("pktendpoint", "pktbroker", "pktproxy")]
    for argv in argvs:
        status, out, err = without.run(argv)
        assert (status, err) == (0, ""), argv
        assert out, argv
        assert without.tried() == [], argv
