"""`demo_home(path)`: a home `pktlab init` set up is taken as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from packetlab.cli.init import init_home
from packetlab.controller.local import demo_home
from packetlab.ppks import PktlabHome


def test_a_tilde_path_already_set_up_is_not_initialised_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/security.md's `demo_home("~/.pktlab")`: the `~` home is checked, not a
    directory named `~` (which never held the files, so `pktlab init` ran on every call)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    init_home(PktlabHome.at(tmp_path / ".pktlab"))

    def no_init(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"pktlab init run again: {args}")

    monkeypatch.setattr("packetlab.controller.local.subprocess.run", no_init)
    assert demo_home("~/.pktlab").root == tmp_path / ".pktlab"
