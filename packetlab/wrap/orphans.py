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
from collections.abc import Iterable

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


def children(parent: int | None = None, proc: str = "/proc") -> list[int]:
    """Pids whose parent is `parent` (default: us)."""
    parent = os.getpid() if parent is None else parent
    out: list[int] = []
    try:
        names = os.listdir(proc)
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"{proc}/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == parent:
            out.append(int(name))
    return out


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
