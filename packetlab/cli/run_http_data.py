"""curl 7.88's --data-urlencode and --url-query for `pktlab run http`: the bytes each adds
(tool_getparam.c's data_urlencode) and a query appended to a URL as curl's URL API
appends it (-G's data, or --url-query)."""

from __future__ import annotations

import re
from collections.abc import Callable

from packetlab.cli.run import RunError

_SAFE = re.compile(rb"[A-Za-z0-9._~-]")  # curl_easy_escape leaves these as they are
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")


def escape(data: bytes) -> bytes:
    """curl_easy_escape, then its space (%20) made +: every byte but letters, digits and
    -._~ as %XX (upper-case hex)."""
    out = bytearray()
    for b in data:
        c = bytes((b,))
        out += c if _SAFE.fullmatch(c) else b"+" if b == 0x20 else b"%%%02X" % b
    return bytes(out)


def urlencode_parts(arg: str) -> tuple[str, str | None]:
    """--data-urlencode ARG split as curl 7.88 splits it: (name, "=" or "@" or None,
    the rest). The first = makes NAME=CONTENT (=CONTENT: no name); without one, the
    first @ makes NAME@FILE (@FILE: no name); neither: CONTENT alone."""
    for sep in ("=", "@"):
        name, found, rest = arg.partition(sep)
        if found:
            return name, sep + rest
    return "", None


def reads_stdin(arg: str) -> bool:
    """--data-urlencode ARG (or --url-query ARG) reads stdin: NAME@- or @-."""
    _, rest = urlencode_parts(arg)
    return rest == "@-"


def urlencode(arg: str, read: Callable[[str], bytes | None],
              warn: Callable[[str], object]) -> bytes:  # fmt: skip
    """The bytes curl 7.88 makes of --data-urlencode ARG: CONTENT, =CONTENT, NAME=CONTENT
    (only CONTENT encoded: `escape`), @FILE, NAME@FILE (the file's bytes encoded; `read`
    gives them, "-" stdin, None: it cannot be opened, warned as curl warns: an empty
    part). NAME= is written only when the content is not empty: an empty or unreadable
    file gives nothing, not even NAME (curl's file2memory returns no buffer)."""
    name, rest = urlencode_parts(arg)
    if rest is None:
        return escape(arg.encode("utf-8", "surrogateescape"))
    if rest[0] == "=":
        content: bytes | None = rest[1:].encode("utf-8", "surrogateescape")
    else:
        content = read(rest[1:])
        if content is None:  # curl's words, the whole argument quoted
            warn(f'Couldn\'t read data from file "{arg}", this makes an empty POST.')
        if not content:
            return b""
    assert content is not None
    return (name.encode("utf-8", "surrogateescape") + b"=" if name else b"") + escape(content)


def read_file(name: str, option: str, stdin: Callable[[], bytes]) -> bytes | None:
    """A --data-urlencode or --url-query @FILE as curl reads it: "-" stdin, None when
    it cannot be opened (curl: a warning); one that opens and cannot be read (a
    directory) is curl's error (26), one line here."""
    if name == "-":
        return stdin()
    try:
        with open(name, "rb") as f:
            return f.read()
    except IsADirectoryError as e:  # C's fopen opens it, its read fails: curl's error
        raise RunError(f"{option} @{name}: error encountered when reading a file: "
                       f"{e.strerror or e} (curl: 26)") from None  # fmt: skip
    except OSError:
        return None


def url_query(items: list[str], read: Callable[[int, str], bytes | None],
              warn: Callable[[str], object]) -> str | None:  # fmt: skip
    """--url-query's query (curl 7.87+): each ARG as --data-urlencode makes it (its
    @FILE from `read(its number, FILE)`), or +ARG as is, joined with &; None without any."""
    parts = []
    for i, arg in enumerate(items):
        if arg.startswith("+"):
            parts.append(arg[1:])
        else:
            data = urlencode(arg, lambda name, i=i: read(i, name), warn)  # type: ignore[misc]
            parts.append(data.decode("utf-8", "surrogateescape"))
    return "&".join(parts) if items else None


def append_query(url: str, query: str, option: str) -> str:
    """`url` with `query` appended as curl 7.88 appends -G's data or --url-query's
    (curl_url_set CURLU_APPENDQUERY): after ? (or & when the URL has a query not ending
    in &), before any #fragment, a URL without a path given /, the query's %XX
    escapes in lower case. A space or control byte in it: the URL is bad (curl: 3),
    one line here."""
    if re.search(r"[\x00-\x20\x7f]", query):
        raise RunError(f"{option}: the query {query!r} has a space or control byte: not a "
                       "URL (curl: 3, URL using bad/illegal format)")  # fmt: skip
    query = _PERCENT.sub(lambda m: m.group().lower(), query)
    base, sep, fragment = url.partition("#")
    _, found, rest = base.partition("://")
    if found and not re.search(r"[/?]", rest):  # no path: curl's URL has "/"
        base += "/"
    if "?" in base:
        old = base.partition("?")[2]
        base += "&" if old and not old.endswith("&") else ""
    else:
        base += "?"
    return base + query + sep + fragment
