"""curl's --netrc, --netrc-optional and --netrc-file: a host's login and password read
from a .netrc file as the curl 7.88.1 of Debian 12 reads one (lib/netrc.c with the
CVE-2024-11053 and CVE-2025-0167 fixes backported: the parser of curl 8.11.1).

The file is read for each request's host (a redirect to another host looks that host
up), as curl does for each connection. Words are separated by blanks; `"..."` is one
word with `\\n`, `\\r`, `\\t` and `\\X` escapes (an unterminated one: curl's `.netrc
parser error`, 26); `#` starts a comment; `macdef NAME` skips the lines up to an empty
one. `machine HOST` (the host compared without case), then `login L` and `password P`
in any order; `default` matches every host. Without a user in the URL the first entry
of the host with both is taken; with one (`http://alice@h/`), the entry whose login is
that user."""

from __future__ import annotations

import os
from dataclasses import dataclass

MAX_LINE = 4096  # curl's MAX_NETRC_LINE (a longer line: curl's Curl_get_line skips it)
MAX_FILE = 1 << 20  # bytes read of a .netrc (a larger one: refused, not a credentials file)
_BLANK = " \t"
_SPACE = " \t\n\v\f\r"


class NetrcError(Exception):
    """curl's `.netrc parser error` (26): a quoted word that does not end."""


def _lines(data: str) -> list[str]:
    """The lines as curl's Curl_get_line gives them (the newline kept, a line over
    MAX_LINE dropped, a last line without a newline given one)."""
    out = []
    for line in data.splitlines(keepends=True):
        if len(line) >= MAX_LINE:
            continue
        out.append(line if line.endswith("\n") else line + "\n")
    return out


def _words(line: str) -> list[str]:
    """A line's words as curl's netrc loop cuts them (a quoted word unescaped; the byte
    after a word's end passed over, as curl's `tok = ++tok_end`)."""
    words, i = [], 0
    while i < len(line):
        while i < len(line) and line[i] in _BLANK:
            i += 1
        if i >= len(line) or line[i] == "#" or line[i] == "\n":
            break
        if line[i] != '"':
            end = i
            while end < len(line) and line[end] not in _SPACE:
                end += 1
            words.append(line[i:end])
            i = end + 1
            continue
        out, end, closed, escape = [], i + 1, False, False
        while end < len(line):
            c = line[end]
            end += 1
            if escape:
                escape = False
                out.append({"n": "\n", "r": "\r", "t": "\t"}.get(c, c))
            elif c == "\\":
                escape = True
            elif c == '"':
                closed = True
                break
            else:
                out.append(c)
        if escape or not closed:
            raise NetrcError(".netrc parser error")
        words.append("".join(out))
        i = end + 1
    return words


def parse(data: str, host: str, login: str | None) -> tuple[str | None, str | None] | None:
    """(login, password) for `host` (`login`: the URL's user, the entry to find), None
    when the file has neither that host nor a `default` with credentials."""
    specific = bool(login)
    found_host, state, keyword = False, "nothing", ""
    user: str | None = login if specific else None
    password: str | None = None
    got_login = got_password = our_login = False
    for line in _lines(data):
        if state == "macdef":
            if line[0] in "\r\n":
                state = "nothing"
            continue
        for word in _words(line):
            if state == "nothing":
                if word.lower() == "macdef":
                    state = "macdef"
                elif word.lower() == "machine":
                    state, keyword = "host", ""
                    got_login = got_password = our_login = False
                    password, user = None, user if specific else None
                elif word.lower() == "default":
                    state, found_host = "valid", True
            elif state == "host":
                state = "valid" if word.lower() == host.lower() else "nothing"
                found_host = found_host or state == "valid"
            elif state == "valid":
                if keyword == "login":
                    our_login = word == login if specific else True
                    user = user if specific else word
                    got_login, keyword = True, ""
                elif keyword == "password":
                    password, got_password, keyword = word, True, ""
                elif word.lower() in ("login", "password"):
                    keyword = word.lower()
                elif word.lower() in ("machine", "default"):  # (our_login kept, as curl's)
                    state = "host" if word.lower() == "machine" else "valid"
                    found_host = found_host or state == "valid"
                    keyword, got_login, got_password = "", False, False
                    password, user = None, user if specific else None
                if got_login and got_password and our_login:
                    return user, password
    if not found_host:
        return None
    if password is None and our_login:
        return user, ""
    if user is None and password is None:  # a `default` without credentials
        return None
    return user, password


@dataclass(frozen=True, slots=True)
class Netrc:
    """The .netrc of a run: `path` (None: $HOME/.netrc, as curl's), `optional`
    (--netrc-optional: a URL with a password is not looked up)."""

    path: str | None = None
    optional: bool = False

    def file(self) -> str | None:
        if self.path is not None:
            return self.path
        home = os.environ.get("HOME")
        if not home:
            import pwd

            try:
                home = pwd.getpwuid(os.geteuid()).pw_dir
            except KeyError:
                return None
        return os.path.join(home, ".netrc")

    def credentials(self, host: str, url_user: str | None, url_password: str | None
                    ) -> tuple[str, str] | None:  # fmt: skip
        """The (user, password) curl sends to `host` given the URL's own, or None for
        none from the file (the URL's own then, as before)."""
        if self.optional and url_password is not None:
            return None
        name = self.file()
        try:
            with open(name or "", "rb") as f:
                raw = f.read(MAX_FILE + 1)
        except OSError:  # curl: a missing file is no credentials, no error
            return None
        if len(raw) > MAX_FILE:
            raise NetrcError(f".netrc parser error ({name}: over {MAX_FILE} bytes)")
        got = parse(raw.decode("utf-8", "surrogateescape"), host, url_user)
        if got is None:
            return None
        user, password = got
        # curl 7.88.1 (Debian 12): the URL's password stays when the entry has none
        return user or "", password if password is not None else url_password or ""
