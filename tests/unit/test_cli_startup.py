"""The start-up of `pktlab`: no cycle collection while its modules are imported (frozen
after only for the command itself), and a run's throwaway files on a memory file system."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from packetlab import cli
from packetlab.cli import link


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
    assert link._memory_dir() == str(tmp_path)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "gone"))
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    assert link._memory_dir() == shm
