"""File names as operators write them in configuration files and on command lines."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["expand_path"]


def expand_path(value: str | os.PathLike[str]) -> Path:
    """`value` with ``~`` and ``~user`` expanded. ValueError with a one-line reason for a
    ``~user`` that does not exist or a NUL byte (`Path.expanduser` raises a bare
    RuntimeError, and `~` then a NUL a bare ValueError, which daemons showed as
    tracebacks)."""
    text = os.fspath(value)
    if "\x00" in text:
        raise ValueError(f"{text!r}: a file name cannot contain a NUL byte")
    try:
        return Path(text).expanduser()
    except RuntimeError:
        user = text[1:].split("/", 1)[0]
        why = f"there is no user {user!r}" if user else "this process has no home directory"
        raise ValueError(f"{text!r}: cannot expand '~{user}': {why}") from None
