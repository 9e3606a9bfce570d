"""The start-up of `pktlab`: no cycle collection while its modules are imported (frozen
after only for the command itself), and a run's throwaway files on a memory file system."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from packetlab import cli
from packetlab.cli import link_endpoint, run


def test_startup_gc_pauses_and_restores_the_collector() -> None:
    frozen = gc.get_freeze_count()
    with cli._startup_gc(freeze=False):
        assert not gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() == frozen  # a caller's objects stay collectable


def test_startup_gc_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with cli._startup_gc(freeze=False):
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_main_called_by_a_program_freezes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    frozen = gc.get_freeze_count()
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    assert capsys.readouterr().out.startswith("pktlab ")


def test_throwaway_files_go_to_the_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert link_endpoint.memory_dir() == str(tmp_path)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "gone"))
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    assert link_endpoint.memory_dir() == shm


def test_imports_ahead_are_what_the_command_names_and_a_failure_waits() -> None:
    """`_import_ahead` imports the command's `startup_imports(args)`; one that fails to
    import raises nothing there (the command meets the error when it imports it)."""
    command = types.ModuleType("zzcommand")
    command.startup_imports = lambda args: ("colorsys", "zz_no_such_module")  # type: ignore[attr-defined]
    sys.modules.pop("colorsys", None)
    cli._import_ahead(command, argparse.Namespace())
    assert "colorsys" in sys.modules and "zz_no_such_module" not in sys.modules
    cli._import_ahead(types.ModuleType("zzplain"), argparse.Namespace())  # names none


def test_pktlab_run_names_the_endpoint_only_for_an_in_process_link() -> None:
    args = cli.parse(["run", "traceroute", "-n", "192.0.2.1"])
    assert "packetlab.endpoint.tap" in run.startup_imports(args)
    assert "twisted.internet.reactor" in run.startup_imports(args)
    args = cli.parse(["run", "ping", "--listen", "20556", "192.0.2.1"])
    assert "packetlab.measure.ping" in run.startup_imports(args)
    assert "packetlab.endpoint.tap" not in run.startup_imports(args)
    names = run.startup_imports(cli.parse(["run", "dns", "a.test"]))
    assert "packetlab.endpoint.tap" in names and "packetlab.cli.report" not in names


def test_argparse_looks_the_message_catalogue_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """`pktlab` binds argparse's `_`/`ngettext` to one looked-up catalogue: building and
    using a parser then searches for none (it searched at each of its 45+ messages), and
    says the same texts."""
    import gettext

    monkeypatch.setattr(argparse, "_", argparse._)  # type: ignore[attr-defined]
    monkeypatch.setattr(argparse, "ngettext", argparse.ngettext)  # type: ignore[attr-defined]
    before = cli.build_parser("run", "ping").format_help()
    cli._translate_once()
    searched: list[str] = []
    find = gettext.find

    def counting_find(*args: Any, **kw: Any) -> Any:
        searched.append(str(args[0]))
        return find(*args, **kw)

    monkeypatch.setattr(gettext, "find", counting_find)
    after = cli.build_parser("run", "ping").format_help()
    assert searched == [] and after == before
    assert argparse.ngettext("expected %s argument", "expected %s arguments", 2) == (  # type: ignore[attr-defined]
        gettext.ngettext("expected %s argument", "expected %s arguments", 2)
    )
