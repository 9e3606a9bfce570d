"""`packetlab.controller.deathsig` over fakes: what runs in the child between fork and exec
(the prctl, the parent check), the fallback to `reactor.spawnProcess`, and the Twisted
hooks it relies on. The real fork, exec and SIGKILL: tests/integration/test_xpkill34_orphans.py."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from twisted.internet import process

from packetlab.controller import deathsig


class Exited(Exception):
    pass


def _no_exit(code: int) -> None:
    raise Exited(code)


class Prctl:
    """A fake prctl: records its calls, answers `status`."""

    def __init__(self, status: int = 0) -> None:
        self.status = status
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, *args: int) -> int:
        self.calls.append(args)
        return self.status


class FakeReactor:
    """Not Twisted's POSIX reactor: `spawn` must hand it the call as it is."""

    def __init__(self) -> None:
        self.got: list[tuple[Any, ...]] = []

    def spawnProcess(self, *args: Any, **kwargs: Any) -> str:
        self.got.append((args, kwargs))
        return "transport"


def test_the_child_asks_for_sigterm_at_its_parents_death(monkeypatch: Any) -> None:
    prctl = Prctl()
    monkeypatch.setattr(os, "getppid", lambda: 4242)
    monkeypatch.setattr(os, "_exit", _no_exit)
    deathsig._arm(prctl, 4242)
    assert prctl.calls == [(deathsig.PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)]


def test_a_child_whose_parent_died_before_the_prctl_exits_at_once(monkeypatch: Any) -> None:
    """The race: nobody would send the signal to a child reparented before its prctl."""
    monkeypatch.setattr(os, "getppid", lambda: 1)  # reparented to init
    monkeypatch.setattr(os, "_exit", _no_exit)
    with pytest.raises(Exited) as e:
        deathsig._arm(Prctl(), 4242)
    assert e.value.args == (128 + signal.SIGTERM,)


def test_a_refused_prctl_fails_the_start_instead_of_running_untied(monkeypatch: Any) -> None:
    with pytest.raises(OSError, match="PR_SET_PDEATHSIG"):
        deathsig._arm(Prctl(-1), os.getpid())


def test_preexec_ties_a_subprocess_to_this_process(monkeypatch: Any) -> None:
    prctl = Prctl()
    monkeypatch.setattr(deathsig, "_libc_prctl", lambda: prctl)
    fn = deathsig.preexec()
    assert fn is not None
    monkeypatch.setattr(os, "getppid", os.getpid)  # as the child of this process sees it
    fn()
    assert prctl.calls == [(deathsig.PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)]


def test_preexec_is_none_where_there_is_no_prctl(monkeypatch: Any) -> None:
    monkeypatch.setattr(deathsig, "_libc_prctl", lambda: None)
    assert deathsig.preexec() is None


def test_a_fake_reactor_gets_spawnprocess_unchanged() -> None:
    reactor = FakeReactor()
    assert not deathsig.supported(reactor)
    out = deathsig.spawn(reactor, "proto", "/bin/x", ("x", "y"), env={"A": "1"},
                         childFDs={0: 5, 1: "r"})  # fmt: skip
    assert out == "transport"
    assert reactor.got == [
        (("proto", "/bin/x", ["x", "y"]), {"env": {"A": "1"}, "childFDs": {0: 5, 1: "r"}})
    ]


def test_the_twisted_hooks_it_overrides_are_there() -> None:
    """A Twisted that renamed them would spawn untied, silently: this fails instead."""
    for name in ("_fork", "_execChild", "_trySpawnInsteadOfFork", "_setupChild"):
        assert hasattr(process.Process, name), name
    tied = deathsig._tied_class()
    assert issubclass(tied, process.Process)
    assert (
        tied._trySpawnInsteadOfFork(object.__new__(tied), None, None, None, "x", [], {}, {})
        is False
    )


def test_exec_child_arms_then_execs(monkeypatch: Any) -> None:
    """In the child: the prctl and the check first, then Twisted's own exec."""
    order: list[str] = []
    monkeypatch.setattr(deathsig, "_arm", lambda prctl, parent: order.append(f"arm {parent}"))
    monkeypatch.setattr(process.Process, "_execChild",
                        lambda self, *a: order.append(f"exec {a[3]}"))  # fmt: skip
    tied = object.__new__(deathsig._tied_class())
    tied._tied_prctl, tied._tied_parent = Prctl(), 77
    tied._execChild(None, None, None, "/bin/x", ["x"], {})
    assert order == ["arm 77", "exec /bin/x"]


def test_a_bare_name_is_found_on_our_path_as_posix_spawnp_finds_it(monkeypatch: Any) -> None:
    """The fork path's execvpe searches the child's PATH (an mlet's environment has
    none); Twisted's posix_spawnp searched ours."""
    made: list[tuple[Any, ...]] = []

    def tied(*args: Any) -> str:
        made.append(args)
        return "process"

    monkeypatch.setattr(deathsig, "supported", lambda reactor: True)
    monkeypatch.setattr(deathsig, "_tied_class", lambda: tied)
    monkeypatch.setattr(deathsig.shutil, "which", lambda name: f"/usr/bin/{name}")
    reactor = FakeReactor()
    assert deathsig.spawn(reactor, "proto", "true", ["true"], env={}) == "process"
    assert made == [(reactor, "/usr/bin/true", ["true"], {}, None, "proto", None, None, None)]
    deathsig.spawn(reactor, "proto", "/opt/x", ["x"], env=None, childFDs={0: 3})
    assert made[1] == (reactor, "/opt/x", ["x"], None, None, "proto", None, None, {0: 3})
