"""Processes the wrapped program left behind: `sh -c 'curl URL &'` exits at once while its
curl goes on. Natively that curl finishes; through `pktlab wrap` the SOCKS server and
relay ports closed when the shell exited, and its connection failed. So `pktlab wrap`
is a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`): orphans of the program become our
children, and the run waits for those of them that carry this run's environment marker
(reaping each by its pid, never with `waitpid(-1)`, which would take Twisted's own
children, or the caller's, from it). The subreaper flag is the process's: it is set
while any run is going on.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable, Iterator

PR_SET_CHILD_SUBREAPER = 36


_runs = 0  # runs that asked for it: the flag is cleared when the last one ends


def become_subreaper(on: bool = True) -> bool:
    """Orphans of our descendants become our children (False where this is not Linux);
    `on=False`: one run less wants it (cleared when none does)."""
    global _runs
    if not sys.platform.startswith("linux"):
        return False
    _runs = _runs + 1 if on else max(0, _runs - 1)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, int(_runs > 0), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _stats(proc: str) -> Iterator[tuple[int, list[bytes]]]:
    """Each process's pid and the fields of its /proc stat after `(comm)` (state, ppid,
    ...): comm may hold spaces and parentheses, so the fields start after the last `)`."""
    try:
        names = os.listdir(proc)
    except OSError:
        return
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"{proc}/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        yield int(name), stat[stat.rfind(b")") + 2 :].split()


def children(parent: int | None = None, proc: str = "/proc") -> list[int]:
    """Pids whose parent is `parent` (default: us)."""
    parent = os.getpid() if parent is None else parent
    return [pid for pid, fields in _stats(proc) if len(fields) > 1 and int(fields[1]) == parent]


def marked(pid: int, marker: bytes, proc: str = "/proc") -> bool:
    """Does `pid`'s environment hold `marker` (``PKTLAB_WRAP_SOCKS=HOST:PORT`` of this
    run)? So only processes of this run's program are waited for, not children the
    calling program started otherwise (a server of its own, another run's)."""
    try:
        with open(f"{proc}/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


def reap(pids: Iterable[int]) -> list[int]:
    """Reap those of `pids` that ended; the ones still running."""
    alive = []
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not ours (any more)
            continue
        if done == 0:
            alive.append(pid)
    return alive


def running_marked(marker: bytes, exclude: Iterable[int] = (), proc: str = "/proc") -> list[int]:
    """Every live process (not a zombie) whose environment holds `marker`, wherever it
    is in the process tree: once `pktlab wrap` has detached (`detach`), what the program
    left running is no longer its child (its parent exited) and may have forked again."""
    skip = set(exclude)
    return [
        pid
        for pid, fields in _stats(proc)
        if pid not in skip
        and fields[:1] not in ([b"Z"], [b"X"])  # ended, not yet reaped by its new parent
        and marked(pid, marker, proc)
    ]


def detach(status: int) -> bool:
    """The wrapped program exited with `status` but left processes running (`ssh -f`,
    `sh -c 'curl URL &'`). Natively the shell returns now, with the program's status; the
    processes it left go on. They still need us (the SOCKS server, the relay ports, the
    endpoint session), so we fork: the parent exits now with `status`, and the copy goes
    on serving them in a session of its own (no Ctrl-C or hang-up of the terminal reaches
    it, as none reaches `ssh -f`), with stdin and stdout on /dev/null (a shell's `$(...)`
    does not wait for it); stderr stays, for its diagnostics, as a background job's.
    Returns in the copy only (False where fork is not possible: nothing changed)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid != 0:
        # No clean-up here: it would close the connections the copy goes on with
        # (Twisted shuts a socket down for an orderly close, and both share it).
        os._exit(status)
    try:
        os.setsid()
    except OSError:
        pass
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):
            os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass
    return True
