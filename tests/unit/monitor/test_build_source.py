"""`pktlab monitor build` / `reflex build` with a source that cannot be read: one line
(session 23, doctour23: `error: /usr/bin/clang failed:` then clang's own words on a second
line), before clang runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from packetlab.monitor import build as build_mod
from packetlab.monitor.build import BuildError, build


def test_a_missing_c_source_is_one_line_and_clang_is_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[object] = []
    monkeypatch.setattr(build_mod.subprocess, "run", lambda *a, **k: ran.append(a))
    missing = tmp_path / "nope.c"
    with pytest.raises(BuildError) as e:
        build(missing)
    assert str(e.value) == f"cannot read {missing}: No such file or directory"
    assert ran == []


def test_an_unreadable_wat_source_is_one_line_too(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wat"
    with pytest.raises(BuildError) as e:
        build(missing)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"cannot read {missing}")
