"""An MLET that execve cannot run is said in words at start (`packetlab.controller.mletpath`),
and the manager stops before it listens. Before, each case was one sentence for all
(`is not an executable file, a .py file or a Python module path`), or the manager started
and every endpoint's result said `cannot start the mlet: [Errno 8] Exec format error`."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from packetlab.cli.init import init_home
from packetlab.controller.mletpath import program_problem
from packetlab.controller.xpmgr import HostPort, Manager, ManagerError
from packetlab.controller.xpmgrconf import parse_xpmgr_config
from packetlab.ppks import PktlabHome


def _file(tmp: Path, name: str, data: bytes, mode: int = 0o755) -> str:
    p = tmp / name
    p.write_bytes(data)
    p.chmod(mode)
    return str(p)


@pytest.mark.parametrize(
    ("name", "data", "mode", "problem"),
    [
        ("plain", b"echo hi\n", 0o755, "is a script with no '#!' line"),
        ("crlf", b"#!/bin/sh\r\necho hi\r\n", 0o755, "has Windows line ends (CRLF)"),
        ("typo", b"#!/usr/bin/pyhton3\nprint(1)\n", 0o755,
         "its '#!' line names /usr/bin/pyhton3, which is not an executable file"),
        ("empty", b"#!\n", 0o755, "has an empty '#!' line"),
        ("noexec", b"#!/bin/sh\necho hi\n", 0o644, "is not executable (chmod +x"),
    ],
)  # fmt: skip
def test_what_execve_would_refuse_is_named(
    tmp_path: Path, name: str, data: bytes, mode: int, problem: str
) -> None:
    path = _file(tmp_path, name, data, mode)
    why = program_problem(path)
    assert why is not None and problem in why, why


def test_paths_that_are_no_file_are_named(tmp_path: Path) -> None:
    assert program_problem(str(tmp_path / "nothing")) == "no such file"
    assert program_problem(str(tmp_path)) == "is a directory, not a program"
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    assert program_problem(str(tmp_path / "link")) == "a broken symbolic link"


@pytest.mark.parametrize(
    "data",
    [b"#!/bin/sh\necho hi\n", b"#! /bin/sh -e\n", b"\x7fELF\x02\x01\x01", b"MZ\0\0binary"],
)
def test_what_execve_runs_is_taken(tmp_path: Path, data: bytes) -> None:
    assert program_problem(_file(tmp_path, "prog", data)) is None


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> PktlabHome:
    h = PktlabHome.at(tmp_path_factory.mktemp("mletpath") / "home")
    init_home(h)
    return h


def _manager(home: PktlabHome, mlet: list[str]) -> Manager:
    r = home.root
    text = (
        f"EnableExpPublication 0\nControllerPrivkeyPath {r}/keys/k_xc\n"
        f"ExpExec 1::{r}/certs/exppriv_eop_exper.cert,{r}/certs/pubcmd_exper_xc.cert:"
        f"{r}/keys/k_eop.pub::\n"
    )
    return Manager(MemoryReactorClock(), parse_xpmgr_config(text, "xpmgr.conf"), mlet,
                   address=HostPort("127.0.0.1", 0), progress=io.StringIO())  # fmt: skip


@pytest.mark.parametrize(
    ("mlet", "message"),
    [
        ("./missing", "MLET './missing': no such file"),
        ("./adir", "MLET './adir': is a directory, not a program"),
        ("./noexec", "MLET './noexec': is not executable (chmod +x ./noexec"),
        ("noexec", "MLET 'noexec': is not executable"),
        ("./plain", "MLET './plain': is a script with no '#!' line"),
        ("plain", "MLET 'plain': is a script with no '#!' line"),
        ("./typo", "its '#!' line names /usr/bin/pyhton3"),
    ],
)
def test_the_manager_refuses_at_start_what_it_could_not_run(
    home: PktlabHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlet: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    _file(tmp_path, "noexec", b"#!/bin/sh\necho hi\n", 0o644)
    _file(tmp_path, "plain", b"echo hi\n")
    _file(tmp_path, "typo", b"#!/usr/bin/pyhton3\nprint(1)\n")
    with pytest.raises(ManagerError, match=re.escape(message)):
        _manager(home, [mlet, "arg"])


def test_a_program_on_path_without_a_shebang_is_refused_too(
    home: PktlabHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _file(bindir, "my-mlet", b"echo hi\n")
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ManagerError, match=re.escape(f"MLET '{bindir}/my-mlet': is a script")):
        _manager(home, ["my-mlet"])
