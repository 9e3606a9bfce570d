"""The `pktlab` entry point: a Ctrl-C while `packetlab.cli` is still being imported is
one line and status 130, as later in the run, not a traceback."""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from types import ModuleType

import pytest

from packetlab import __main__ as entry


class Interrupting(importlib.abc.MetaPathFinder):
    """Raises KeyboardInterrupt when `packetlab.cli` is imported (a Ctrl-C mid-import)."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if name == "packetlab.cli":
            raise KeyboardInterrupt
        return None


def test_ctrl_c_while_the_cli_is_imported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delitem(sys.modules, "packetlab.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    assert entry.main() == 130
    assert capsys.readouterr().err == "\npktlab: interrupted\n"


def test_the_console_script_is_this_entry() -> None:
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "pktlab"]
    assert script.value == "packetlab.__main__:main"
