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


def test_only_processes_of_this_run_are_waited_for(tmp_path: Path) -> None:
    """A server the calling program started itself is its child too: it must not be
    taken for the wrapped program's orphan (the run would wait for it for ever)."""
    from packetlab.wrap.orphans import marked

    mark = b"PKTLAB_WRAP_SOCKS=127.0.0.1:4242"
    for pid, env in ((20, b"A=1\0" + mark + b"\0"), (21, b"A=1\0"), (22, mark + b"0\0")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "environ").write_bytes(env)
    assert marked(20, mark, proc=str(tmp_path))
    assert not marked(21, mark, proc=str(tmp_path))
    assert not marked(22, mark, proc=str(tmp_path))  # another run's port
    assert not marked(23, mark, proc=str(tmp_path))  # gone


def test_a_detached_run_finds_its_processes_anywhere_but_not_zombies(tmp_path: Path) -> None:
    """Once `pktlab wrap` has detached (session 29, wrap29), what the program left is no
    longer its child: it is found by the run's marker wherever it is, and one that has
    ended but not been reaped by its new parent (a zombie) no longer holds the run."""
    from packetlab.wrap.orphans import running_marked

    mark = b"PKTLAB_WRAP_SOCKS=127.0.0.1:4242"
    for pid, state, env in (
        (30, "S", mark),  # the daemon, its parent now init
        (31, "Z", mark),  # ended, not yet reaped
        (32, "R", b"A=1"),  # someone else's
        (33, "S", mark),  # the wrapper's own copy: excluded by the caller
    ):
        _stat(tmp_path, pid, "ssh", 1)
        text = (tmp_path / str(pid) / "stat").read_text().replace(" S ", f" {state} ", 1)
        (tmp_path / str(pid) / "stat").write_text(text)
        (tmp_path / str(pid) / "environ").write_bytes(b"X=1\0" + env + b"\0")
    (tmp_path / "34").mkdir()  # gone meanwhile
    assert sorted(running_marked(mark, exclude=(33,), proc=str(tmp_path))) == [30]
    assert running_marked(mark, proc=str(tmp_path / "nowhere")) == []
