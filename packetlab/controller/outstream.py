"""The manager's writes to its stdout and stderr: the mlets' output passed through, the
progress line, `--results -`.

A reader that went away (`pktlab xpmgr ... | head -1`) made each write raise
`BrokenPipeError` inside the reactor: the mlet's `processEnded` failed half-way, its
endpoint was never reported and the manager hung. Now the first such error points the
stream at /dev/null (so that nothing later, the interpreter's exit included, fails on
it), is logged once, and the manager goes on: the results file still gets every line.
"""

from __future__ import annotations

import errno
import os
import weakref
from typing import IO

from twisted.logger import Logger

__all__ = ["write"]

log = Logger(namespace="xpmgr")
_gone: weakref.WeakSet[IO[str]] = weakref.WeakSet()  # the streams found closed


def write(stream: IO[str], data: bytes) -> None:
    """`data` to `stream` (through its binary buffer when it has one), then flush."""
    if stream in _gone:
        return
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
