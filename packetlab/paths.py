"""File names as operators write them in configuration files and on command lines."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = [
    "RepeatedKeys",
    "config_line",
    "config_text",
    "expand_path",
    "home_dir",
    "pktlab_home",
]


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


def home_dir() -> Path:
    """The user's home: ``$HOME``, or the password database's when ``$HOME`` is unset or
    empty. (`Path.home()` made an empty ``$HOME`` the root directory: `pktlab init` as
    root under ``env HOME= ...``, as some service managers start commands, wrote
    ``/.pktlab``.)"""
    if os.environ.get("HOME"):
        return Path(os.environ["HOME"])
    import pwd

    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:  # no entry for this uid (a container's): as before
        return Path.home()


def pktlab_home() -> Path:
    """The default pktlab home: ``$PKTLAB_HOME`` (``~`` expanded: a value set where no
    shell expands it, as systemd's ``Environment=`` and docker's ``-e``, was a directory
    named ``~`` under the current one), else ``~/.pktlab``. Every consumer takes its
    default files from here: endpt.conf, xpmgr.conf, broker.conf, keys/, certs/."""
    env = os.environ.get("PKTLAB_HOME")
    if env:
        try:
            return expand_path(env)
        except ValueError:  # ~nosuchuser: the name as written, which fails where it is used
            return Path(env)
    return home_dir() / ".pktlab"


def config_text(path: Path) -> str:
    """The text of a configuration file, which must be UTF-8. OSError as `read_text`;
    bytes that are not UTF-8 are a one-line ValueError naming the file and the line
    (`broker.conf:2: not UTF-8 text (byte 0xff)`), as the parsers name a bad key."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def config_line(line: str) -> tuple[str, str] | None:
    """The key and the value of one line of a ``Key value`` config file (endpt.conf,
    broker.conf, the proxy's), None for a blank or comment line (``#`` starts a comment).
    A line written ``Key=value`` or ``Key = value`` is a ValueError that shows the line
    as it should be: the endpoint ignored ``BufMax=100`` as an unknown key (a warning
    in the log, the default used), the broker and the proxy refused it as an unknown
    key, "did you mean BufMax?"."""
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    key, value = [*text.split(None, 1), ""][:2]
    value = value.strip()
    before, eq, after = key.partition("=")
    if eq and _WORD.fullmatch(before):  # Key=value (Key= value)
        value = f"{after} {value}".strip()
    elif re.match(r"=(\s|$)", value):  # Key = value
        before, value = key, value[1:].strip()
    else:
        return key, value
    raise ValueError(
        f"{text!r}: a key and its value are separated by blanks, not '=': "
        f"write {before} {value or 'VALUE'}"
    )


class RepeatedKeys:
    """The lines each key of one ``Key value`` config file was set on. A key set twice is
    no error (the reference's readers are not observable, and ours took the last one);
    it is one warning naming the file, its lines and the value that counts:
    ``broker.conf:7: Store repeated (line 3); the last one wins: redis:/tmp/r.sock``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._lines: dict[str, list[tuple[int, str]]] = {}

    def note(self, key: str, lineno: int, value: str) -> None:
        self._lines.setdefault(key, []).append((lineno, value))

    def last_lines(self) -> dict[str, int]:
        """Key -> the line of its value (the last one)."""
        return {key: seen[-1][0] for key, seen in self._lines.items()}

    def warnings(self) -> list[str]:
        out = []
        for key, seen in sorted(self._lines.items(), key=lambda kv: kv[1][-1][0]):
            if len(seen) > 1:
                (last, value), earlier = seen[-1], [str(n) for n, _ in seen[:-1]]
                lines = f"line{'s' if len(earlier) > 1 else ''} {', '.join(earlier)}"
                out.append(f"{self.source}:{last}: {key} repeated ({lines}); the last one "
                           f"wins: {value}")  # fmt: skip
        return out
