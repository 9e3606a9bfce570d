"""Finding the processes a wrapped program left behind (packetlab.wrap.orphans)."""

from __future__ import annotations

from pathlib import Path

from packetlab.wrap.orphans import children


def _stat(proc: Path, pid: int, comm: str, ppid: int) -> None:
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1\n")


def test_children_by_parent_even_with_odd_command_names(tmp_path: Path) -> None:
    _stat(tmp_path, 10, "curl", 1)
    _stat(tmp_path, 11, "a) S 1 (b", 7)  # a name that looks like fields
    _stat(tmp_path, 12, "sleep", 7)
    _stat(tmp_path, 13, "sh", 8)
    (tmp_path / "self").mkdir()  # not a pid
    (tmp_path / "14").mkdir()  # a process gone between listdir and open
    assert sorted(children(7, proc=str(tmp_path))) == [11, 12]
    assert children(99, proc=str(tmp_path)) == []
    assert children(7, proc=str(tmp_path / "nowhere")) == []
