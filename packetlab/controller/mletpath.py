"""Why an MLET that is a program cannot be executed, said before the manager listens.

The manager runs a program mlet with ``execve`` (as pktxpmgr does): a file that is not
there, a directory, a file without the execute bit, a script without a ``#!`` line
(``ENOEXEC``: a shell would run it with ``sh``, ``execve`` does not) or one whose ``#!``
names an interpreter that is not there (``ENOENT``) would fail at every endpoint, each
result then saying ``cannot start the mlet: [Errno 8] Exec format error``.
"""

from __future__ import annotations

import os

__all__ = ["program_problem"]

_HEAD = 1024  # bytes read to tell a script from a binary


def program_problem(path: str) -> str | None:
    """What stops ``execve(path)``, in words, or None when it looks runnable."""
    if not os.path.exists(path):
        return "no such file" if not os.path.islink(path) else "a broken symbolic link"
    if os.path.isdir(path):
        return "is a directory, not a program"
    if not os.path.isfile(path):
        return "is not a regular file"
    if not os.access(path, os.X_OK):
        return (
            f"is not executable (chmod +x {path}; the manager executes the MLET, as pktxpmgr does)"
        )
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD)
    except OSError as e:
        return f"cannot be read: {e.strerror}"
    if head.startswith(b"#!"):
        return _interpreter_problem(head)
    if head.startswith(b"\x7fELF") or b"\0" in head:
        return None  # a binary: the kernel knows its format (ELF, binfmt_misc)
    return (
        "is a script with no '#!' line, which execve cannot run (a shell would run it "
        "with sh): make its first line '#!/bin/sh' or the interpreter it needs"
    )


def _interpreter_problem(head: bytes) -> str | None:
    line = head[2:].split(b"\n", 1)[0]
    if line.endswith(b"\r"):  # the kernel would look for "/bin/sh\r"
        return (
            "has Windows line ends (CRLF): its '#!' line names an interpreter ending in "
            "a carriage return (convert it, e.g. sed -i 's/\\r$//' FILE)"
        )
    line = line.strip()
    words = line.split(None, 1)
    if not words:
        return "has an empty '#!' line"
    interpreter = os.fsdecode(words[0])
    if not os.path.isfile(interpreter) or not os.access(interpreter, os.X_OK):
        return f"its '#!' line names {interpreter}, which is not an executable file"
    return None
