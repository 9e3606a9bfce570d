"""Child processes that end with the process that started them (Linux).

A manager or controller killed outright (SIGKILL, the OOM killer, a crash) runs no
clean-up: before session 34 each mlet it had started (and a `run_with_local_endpoint`
endpoint) ran on, an orphan holding its sockets, for as long as it liked; one that was
not reading fd 0 never saw the EOF. `spawn` starts the child as `reactor.spawnProcess`
does, with Linux's parent-death signal (`prctl(PR_SET_PDEATHSIG, SIGTERM)`) set in the
child between fork and exec, so the kernel sends it SIGTERM when we die, however we die.

* Twisted's `spawnProcess` has no hook before exec, and its `posix_spawnp` path (taken
  whenever it can be) runs no Python in the child; `_TiedProcess` takes its fork path,
  as Twisted does on systems without `posix_spawnp`, and calls prctl in `_execChild`.
  The price is a fork of our heap per child (docs/performance.md, session 34). The
  signal survives the exec: a C mlet needs nothing of its own (SIGTERM's default action
  ends it); a Python mlet (pymlet) stops its reactor and exits.
* The race: a parent that dies between the fork and the prctl sends nothing. The child
  then checks that its parent is still the process that forked it; if not (it was
  reparented), it exits at once (status 143, as if by SIGTERM).
* The signal is tied to the *thread* that forked (Linux): spawn from the reactor thread,
  which lives as long as the reactor. It is cleared by the exec of a set-user-ID program
  or one with file capabilities (the kernel's rule), and it is not inherited by the
  child's own children: a shell script's `sleep` runs on, as it does under the reference.
* A child that ignores or handles SIGTERM and runs on is not killed: it finds its fd 0 at
  EOF and its stdout a broken pipe.

Elsewhere (not Linux, or a reactor that is not Twisted's POSIX reactor, as the unit tests'
fakes), `spawn` is `reactor.spawnProcess` unchanged.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["DEATH_SIGNAL", "preexec", "spawn", "supported"]

PR_SET_PDEATHSIG = 1
#: The signal the child gets when we die: ends a C program by its default action, lets a
#: Python or Twisted one stop cleanly (flush, close its session).
DEATH_SIGNAL = signal.SIGTERM
#: The child's exit status when its parent died before the prctl (128 + SIGTERM).
ORPHAN_STATUS = 128 + int(DEATH_SIGNAL)

_prctl: Callable[..., int] | None = None
_errno: Callable[[], int] = lambda: 0  # noqa: E731 (ctypes.get_errno once loaded)
_looked = False


def _libc_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent (nothing is loaded in the child; ctypes
    only once a child is started)."""
    global _prctl, _errno, _looked
    if not _looked:
        _looked = True
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                fn = ctypes.CDLL(None, use_errno=True).prctl
                fn.restype = ctypes.c_int
                _prctl, _errno = fn, ctypes.get_errno
            except (ImportError, OSError, AttributeError):
                _prctl = None
    return _prctl


def _arm(prctl: Callable[..., int], parent: int) -> None:
    """In the child, before exec: the death signal, then the check that `parent` (the
    process that forked) is still there. No imports, little allocation: another thread
    of the parent may have held a lock at the fork."""
    if prctl(PR_SET_PDEATHSIG, int(DEATH_SIGNAL), 0, 0, 0):
        raise OSError(_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # it died before the prctl: reparented, nobody sends it
        os._exit(ORPHAN_STATUS)


def preexec() -> Callable[[], None] | None:
    """A `subprocess` ``preexec_fn`` that ties the child to us the same way (None where
    it cannot be done: then pass nothing)."""
    prctl = _libc_prctl()
    if prctl is None:
        return None
    parent = os.getpid()
    return lambda: _arm(prctl, parent)


def _process_class() -> Any:
    """Twisted's POSIX `Process` with the hooks `_TiedProcess` overrides, or None."""
    try:
        from twisted.internet import process
    except ImportError:
        return None
    cls = getattr(process, "Process", None)
    if cls is None or not hasattr(cls, "_execChild") or not hasattr(cls, "_fork"):
        return None
    return cls


def supported(reactor: Any) -> bool:
    """Whether `spawn` on `reactor` gives its children the parent-death signal."""
    if _libc_prctl() is None or _process_class() is None:
        return False
    try:
        from twisted.internet.posixbase import PosixReactorBase
    except ImportError:
        return False
    return isinstance(reactor, PosixReactorBase)


def spawn(
    reactor: Any,
    proto: Any,
    executable: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    childFDs: Mapping[int, Any] | None = None,
) -> Any:
    """`reactor.spawnProcess(proto, executable, args, env=env, childFDs=childFDs)`, the
    child getting SIGTERM when this process dies (see the module docstring)."""
    fds = dict(childFDs) if childFDs is not None else None
    environ = dict(env) if env is not None else None
    if not supported(reactor):
        return reactor.spawnProcess(proto, executable, list(args), env=environ, childFDs=fds)
    if os.sep not in executable:  # posix_spawnp searches our PATH; the fork path's
        executable = shutil.which(executable) or executable  # execvpe the child's (env's)
    return _tied_class()(reactor, executable, list(args), environ, None, proto, None, None, fds)


_tied: Any = None


def _tied_class() -> Any:
    """`_TiedProcess`, made on first use (Twisted's process module imported then)."""
    global _tied
    if _tied is None:
        base = _process_class()

        class _TiedProcess(base):  # type: ignore[misc,valid-type]
            """Twisted's `Process`, forked (never `posix_spawnp`), with the prctl and the
            parent check in the child before the exec."""

            def _fork(self, *args: Any, **kwargs: Any) -> None:
                self._tied_parent = os.getpid()  # read in the child after the prctl
                self._tied_prctl = _libc_prctl()
                super()._fork(*args, **kwargs)

            def _trySpawnInsteadOfFork(self, *args: Any, **kwargs: Any) -> bool:
                return False  # posix_spawnp runs nothing in the child

            def _execChild(self, *args: Any, **kwargs: Any) -> None:
                if self._tied_prctl is not None:  # in the child, between fork and exec
                    _arm(self._tied_prctl, self._tied_parent)
                super()._execChild(*args, **kwargs)

        _tied = _TiedProcess
    return _tied
