"""packetlab installed as a user installs a release, not editable: an sdist, a wheel built
from it, installed into a fresh venv; then, from `/`, `pktlab` and every sub-command's
`--help`, the twistd roles, the package data read by path (pktmon's headers, pktlab wrap's
C sources) and the README's system demo (docs/install.md).

Offline and fast: the fresh venv gets no packages of its own; a .pth file lends it the
dependencies (and pip, setuptools) of the project's .venv, and the repository is copied
first (tracked files only) so the build writes nothing into the work tree.
"""

from __future__ import annotations

import email
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

import packetlab
from packetlab.monitor.build import find_clang

pytestmark = pytest.mark.slow  # two builds, an install and the system demo: ~1 min

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


def _tracked(*dirs: str) -> list[str]:
    """The repository's tracked files (paths relative to it) under `dirs`."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--", *dirs], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    return [os.fsdecode(name) for name in out if name and (REPO / os.fsdecode(name)).is_file()]


class Install(NamedTuple):
    bindir: Path
    env: dict[str, str]
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    """A fresh venv with packetlab installed as a user installs a release: an sdist built
    from a copy of the tracked files, a wheel built from that sdist (what `pip install
    packetlab-*.tar.gz` does), and that wheel installed, not editable."""
    problem = _build_backend_problem()
    if problem is not None:
        pytest.skip(problem)
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    for name in _tracked():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)

    venv = tmp / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=TIMEOUT
    )
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    lent = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (purelib / "lent-from-project-venv.pth").write_text("\n".join(sorted(lent)) + "\n")
    # Twisted's console script, which the venv lacks (twisted is lent, not installed there)
    bindir = venv / "bin"
    (bindir / "twistd").write_text(
        f"#!{bindir / 'python'}\nimport sys\nfrom twisted.scripts.twistd import run\n"
        "sys.argv[0] = 'twistd'\nsys.exit(run())\n"
    )
    (bindir / "twistd").chmod(0o755)

    home = tmp / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}", HOME=str(home))
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", XDG_CACHE_HOME=str(home / ".cache"))
    dist = tmp / "dist"
    done = _run(
        [venv / "bin" / "python", "-c",
         f"from setuptools import build_meta as b; print(b.build_sdist({str(dist)!r}))"],
        cwd=src,
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    sdist = dist / done.stdout.splitlines()[-1]
    done = _run(
        [venv / "bin" / "python", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", dist, sdist],
        cwd=tmp,
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = dist.glob("packetlab-*.whl")
    done = _run(
        [venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", wheel],
        cwd=tmp,
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    yield Install(bindir, env, sdist, wheel)


ROOT = Path("/")  # every command runs from /, far from the checkout, as a user runs them


def test_installed_not_editable(installed: Install) -> None:
    done = _run(
        [installed.bindir / "python", "-c", "import packetlab, twisted.plugins.packetlab_plugins"
         " as p; print(packetlab.__file__); print(p.__file__)"],
        cwd=ROOT,
        env=installed.env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        assert Path(line).is_relative_to(installed.bindir.parent), f"{line} is not installed"


def _wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return {n for n in z.namelist() if not n.split("/")[0].endswith(".dist-info")}


def test_the_wheel_holds_every_package_file_and_nothing_else(installed: Install) -> None:
    # Before session 33 the wheel lacked pktmon's headers and libc (packetlab/monitor/
    # include/pktmon/) and pktlab wrap's C sources (packetlab/wrap/csrc/): read by path at
    # run time, they were there in the checkout only.
    tracked = set(_tracked("packetlab", "twisted/plugins"))
    names = _wheel_names(installed.wheel)
    assert sorted(tracked - names) == []
    assert sorted(names - tracked) == []  # no tests, __pycache__, built .so or stray file


def test_the_sdist_holds_what_building_and_the_readme_need(installed: Install) -> None:
    with tarfile.open(installed.sdist) as t:
        top = f"{installed.sdist.name.removesuffix('.tar.gz')}/"
        names = {m.name.removeprefix(top) for m in t.getmembers() if m.isfile()}
    wanted = {"README.md", "CHANGELOG.md", "LICENSE", "setup.cfg", "pyproject.toml", "MANIFEST.in"}
    wanted |= set(_tracked("packetlab", "twisted/plugins", "examples"))
    wanted -= {"examples/mlets/.gitignore"}
    assert sorted(wanted - names) == []
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".so"))]


def test_the_metadata(installed: Install) -> None:
    with zipfile.ZipFile(installed.wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        fields = email.message_from_bytes(z.read(meta))
        points = z.read(meta.replace("METADATA", "entry_points.txt")).decode()
        # BSD-3-Clause asks that binary redistributions reproduce the notice (session 34)
        licence = [n for n in z.namelist() if n.split("/")[0].endswith(".dist-info")
                   and n.rsplit("/", 1)[-1] == "LICENSE"]  # fmt: skip
        assert licence, "the wheel lacks LICENSE"
        assert z.read(licence[0]) == (REPO / "LICENSE").read_bytes()
    assert fields["Name"] == "packetlab"
    assert fields["Version"] == packetlab.__version__
    assert fields["Requires-Python"] == ">=3.11"
    requires = fields.get_all("Requires-Dist") or []
    needs = {re.split(r"[\[<>=!; ]", r, maxsplit=1)[0].lower() for r in requires}
    assert {"twisted", "pyopenssl", "cryptography", "construct", "wasmtime"} <= needs
    # scipy and matplotlib (~300 MB with numpy) come only with the `analysis` extra
    assert not [r for r in requires if r.startswith(("scipy", "matplotlib")) and "extra" not in r]
    assert 'scipy>=1.10; extra == "analysis"' in requires
    assert "analysis" in (fields.get_all("Provides-Extra") or [])
    assert "pktlab = packetlab.__main__:main" in points


def _subcommands(help_text: str) -> list[str]:
    """The sub-command names that argparse lists under "positional arguments"."""
    section = help_text.split("positional arguments:")[1].split("\noptions:")[0]
    return re.findall(r"^    ([a-z][a-z0-9-]*)(?:  |$)", section, re.M)


def test_pktlab_and_every_subcommand_answer_help(installed: Install) -> None:
    pktlab = installed.bindir / "pktlab"
    done = _run([pktlab, "--version"], cwd=ROOT, env=installed.env)
    assert (done.returncode, done.stdout) == (0, f"pktlab {packetlab.__version__}\n")
    top = _run([pktlab, "--help"], cwd=ROOT, env=installed.env)
    assert top.returncode == 0, top.stderr
    commands = _subcommands(top.stdout)
    assert {"decode", "init", "run", "monitor", "xpmgr", "wrap"} <= set(commands)
    runs = _subcommands(_run([pktlab, "run", "--help"], cwd=ROOT, env=installed.env).stdout)
    assert {"traceroute", "ping", "dns", "http"} <= set(runs)
    for args in [[c] for c in commands] + [["run", r] for r in runs]:
        done = _run([pktlab, *args, "--help"], cwd=ROOT, env=installed.env)
        assert (done.returncode, done.stderr) == (0, ""), args
    frames = _run([pktlab, "decode", "--hex", REPO / "examples" / "every_message.hex"],
                  cwd=ROOT, env=installed.env)  # fmt: skip
    assert frames.returncode == 0, frames.stderr
    assert len(frames.stdout.splitlines()) == 28


def test_twistd_lists_the_roles_and_each_answers_help(installed: Install) -> None:
    twistd = installed.bindir / "twistd"
    done = _run([twistd, "--help"], cwd=ROOT, env=installed.env)
    assert done.returncode == 0, done.stderr
    for role in ("pktendpoint", "pktbroker", "pktproxy"):
        assert role in done.stdout, f"twistd --help does not list {role}:\n{done.stdout}"
        usage = _run([twistd, "-n", role, "--help"], cwd=ROOT, env=installed.env)
        assert (usage.returncode, usage.stderr) == (0, ""), role
        assert f"twistd [options] {role}" in usage.stdout


def test_pktbroker_without_credentials_says_what_to_do(installed: Install, tmp_path: Path) -> None:
    # The installed plugin loads; with an empty home it refuses with a usage error naming
    # `pktlab init` (after which `twistd -n pktbroker` runs with no arguments).
    args = ("--nodaemon", "--pidfile=", "--logfile=-", "pktbroker")
    env = {**installed.env, "PKTLAB_HOME": str(tmp_path)}
    done = _run([installed.bindir / "twistd", *args], cwd=ROOT, env=env)
    assert done.returncode != 0
    assert "pktlab init" in done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no cc")
def test_the_wrap_shim_builds_from_the_installed_sources(installed: Install) -> None:
    # Before: "No such file or directory: .../packetlab/wrap/csrc/pktwrap_clock.c", and
    # `pktlab wrap -- CMD` stopped at the same line.
    done = _run([installed.bindir / "python", "-m", "packetlab.wrap.shim"],
                cwd=ROOT, env=installed.env)  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert Path(done.stdout.strip()).name == "libpktwrap.so"


def _without_root_file_access() -> list[str] | None:
    """The prefix that runs a command unable to write where only its mode forbids it (as a
    user who does not own the install); None where that cannot be had."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no cc")
def test_the_wrap_shim_is_built_in_the_cache_when_the_install_is_read_only(
    installed: Install,
) -> None:
    # A system-wide install run by a user: before, the linker's "cannot open output file
    # .../site-packages/packetlab/wrap/libpktwrap.*.tmp: Permission denied" stopped
    # `pktlab wrap`, although the next place, ~/.cache/packetlab, was writable.
    prefix = _without_root_file_access()
    if prefix is None:
        pytest.skip("running as root without setpriv")
    where = "import packetlab.wrap.shim as s; print(s.CSRC)"
    done = _run([installed.bindir / "python", "-c", where], cwd=ROOT, env=installed.env)
    package = Path(done.stdout.strip()).parent
    mode = package.stat().st_mode
    package.chmod(0o555)
    try:
        done = _run([*prefix, installed.bindir / "python", "-m", "packetlab.wrap.shim"],
                    cwd=ROOT, env=installed.env)  # fmt: skip
    finally:
        package.chmod(mode)
    cache = Path(installed.env["XDG_CACHE_HOME"]) / "packetlab"
    assert (done.returncode, done.stderr) == (0, ""), done.stdout
    # named by its sources (review33A): another install's shim in the cache is not taken
    assert re.fullmatch(rf"{re.escape(str(cache))}/libpktwrap-[0-9a-f]{{16}}\.so\n", done.stdout)
    assert not list(package.glob("*.tmp"))


@pytest.mark.skipif(find_clang() is None, reason="clang/lld not installed")
def test_a_pktmon_monitor_builds_with_the_installed_headers(
    installed: Install, tmp_path: Path
) -> None:
    # Before: clang: no such file or directory: .../include/pktmon/pktmon_libc.c
    src = tmp_path / "pm.c"
    src.write_text(
        '#include "monitor_helper.h"\n#include "pktlab.h"\n'
        "int32_t check_pktlab_message_nclose(uint8_t sktid, void *pm, uint32_t pmlen) {\n"
        "    return 0;\n}\n"
    )
    done = _run([installed.bindir / "pktlab", "monitor", "build", src, "-o", tmp_path / "pm.wasm"],
                cwd=ROOT, env=installed.env)  # fmt: skip
    # (stderr has the load checks' notes for the checks it leaves out)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pm.wasm").read_bytes()[:4] == b"\0asm"


def test_the_readme_system_demo_runs_from_the_install(installed: Install, tmp_path: Path) -> None:
    # The README's main job (pktlab init, a broker, two endpoints, pktlab xpmgr) with the
    # installed pktlab and twistd: examples/system_demo.py takes them beside its python.
    demo = REPO / "examples" / "system_demo.py"
    done = _run([installed.bindir / "python", demo, "--home", tmp_path / "home"],
                cwd=ROOT, env=installed.env)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 of 2 endpoints ran the experiment (xpmgr exit 0)" in done.stdout
    assert (tmp_path / "home" / "broker.conf").is_file()
