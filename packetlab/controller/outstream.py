"""The manager's writes to its stdout and stderr: the mlets' output passed through, the
progress line, `--results -`.

A reader that went away (`pktlab xpmgr ... | head -1`) made each write raise
`BrokenPipeError` inside the reactor: the mlet's `processEnded` failed half-way, its
endpoint was never reported and the manager hung. Now the first such error points the
stream at /dev/null (so that nothing later, the interpreter's exit included, fails on
it), is logged once, and the manager goes on: the results file still gets every line.

On a terminal the command draws a progress line on stderr (`packetlab.cli.xpmgr_screen`):
`before_writes(hook)` has each write here call `hook(stream, data)` first, so that the
line is erased before an mlet's output or a line of ours reaches the screen.
"""

from __future__ import annotations

import errno
import os
import weakref
from collections.abc import Callable
from typing import IO

from twisted.logger import Logger

__all__ = ["Hook", "before_writes", "write"]

Hook = Callable[[IO[str], bytes], object]

log = Logger(namespace="xpmgr")
_gone: weakref.WeakSet[IO[str]] = weakref.WeakSet()  # the streams found closed
_before: Hook | None = None


def before_writes(hook: Hook | None) -> Hook | None:
    """Call `hook(stream, data)` before each write from now on (None: no more); returns
    the hook it replaces."""
    global _before
    old, _before = _before, hook
    return old


def write(stream: IO[str], data: bytes) -> None:
    """`data` to `stream` (through its binary buffer when it has one), then flush."""
    if stream in _gone:
        return
    if _before is not None:
        _before(stream, data)
    try:
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            buffer.write(data)
        else:
            stream.write(data.decode("utf-8", "replace"))
        stream.flush()
    except (BrokenPipeError, ValueError) as e:  # ValueError: the file was closed
        _closed(stream, e)
    except OSError as e:
        if e.errno not in (errno.EPIPE, errno.EBADF):
            raise
        _closed(stream, e)


def _closed(stream: IO[str], e: Exception) -> None:
    _gone.add(stream)
    name = getattr(stream, "name", "?")
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)  # what is still buffered, and later writes, go nowhere
        os.close(null)
    except (OSError, ValueError):
        pass
    log.warn(
        "{name} is closed ({e}): nothing more is written there; every endpoint's outcome "
        "still goes to the results file",
        name=name,
        e=e.strerror if isinstance(e, OSError) and e.strerror else e,
    )
