"""A real, non-editable `pip install .` makes the twistd plugins and `pktlab` work.

Offline and fast: the fresh venv gets no packages of its own; a .pth file lends it the
dependencies (and pip, setuptools) of the project's .venv, and the repository is copied
first (tracked files only) so the build writes nothing into the work tree.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 180


def _build_backend_problem() -> str | None:
    """Why this .venv cannot build a wheel offline, or None if it can."""
    import setuptools

    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    if (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None:
        return None  # setuptools >= 70.1 has bdist_wheel built in; older ones need `wheel`
    return (
        f"setuptools {setuptools.__version__} without the `wheel` package cannot build a "
        "wheel offline (pip --no-build-isolation); add setuptools>=70.1 or wheel to the "
        "dev extras"
    )


def _run(cmd: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """(bin directory of a fresh venv with packetlab installed from a copy, its env)."""
    problem = _build_backend_problem()
    if problem is not None:
        pytest.skip(problem)
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        path = REPO / os.fsdecode(name)
        if path.is_file():  # a tracked file may be deleted in the work tree
            (src / path.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / path.relative_to(REPO))

    venv = tmp / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=TIMEOUT
    )
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    lent = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (purelib / "lent-from-project-venv.pth").write_text("\n".join(sorted(lent)) + "\n")

    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1")
    done = _run(
        [venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", src],
        cwd=tmp,
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    yield venv / "bin", env


def test_installed_not_editable(installed: tuple[Path, dict[str, str]]) -> None:
    bindir, env = installed
    done = _run(
        [bindir / "python", "-c", "import packetlab, twisted.plugins.packetlab_plugins as p; "
         "print(packetlab.__file__); print(p.__file__)"],
        cwd=bindir.parent,
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        assert Path(line).is_relative_to(bindir.parent), f"{line} is not from the install"


def twistd(bindir: Path, *args: str) -> list[str | Path]:
    """The venv's twistd: what twisted's console script runs, with the venv's python (the
    venv lends twisted from the project's .venv, so it has no twistd script of its own)."""
    boot = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
    return [bindir / "python", "-c", boot, *args]


def test_twistd_lists_the_roles(installed: tuple[Path, dict[str, str]]) -> None:
    bindir, env = installed
    done = _run(twistd(bindir, "--help"), cwd=bindir.parent, env=env)
    assert done.returncode == 0, done.stderr
    for role in ("pktendpoint", "pktbroker", "pktproxy"):
        assert role in done.stdout, f"twistd --help does not list {role}:\n{done.stdout}"


def test_pktlab_help(installed: tuple[Path, dict[str, str]]) -> None:
    bindir, env = installed
    done = _run([bindir / "pktlab", "--help"], cwd=bindir.parent, env=env)
    assert done.returncode == 0, done.stderr
    assert "decode" in done.stdout and "encode" in done.stdout
    frames = _run([bindir / "pktlab", "decode", "--hex", REPO / "examples" / "every_message.hex"],
                  cwd=bindir.parent, env=env)  # fmt: skip
    assert frames.returncode == 0, frames.stderr
    assert len(frames.stdout.splitlines()) == 28


def test_pktbroker_without_credentials_says_what_to_do(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    # The installed plugin loads; with an empty home it refuses with a usage error naming
    # `pktlab init` (after which `twistd -n pktbroker` runs with no arguments).
    bindir, env = installed
    args = ("--nodaemon", "--pidfile=", "--logfile=-", "pktbroker")
    done = _run(twistd(bindir, *args), cwd=bindir.parent, env={**env, "PKTLAB_HOME": str(tmp_path)})
    assert done.returncode != 0
    assert "pktlab init" in done.stdout + done.stderr
