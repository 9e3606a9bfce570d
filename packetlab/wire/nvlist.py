"""Name=value lists (PROTOCOL.md §4.3, §5.5, §5.6): cert_info, cert_limit, xdescr, dattr.

Syntax: pairs `name=value;` concatenated, every pair ends with `;`.
* names: `[A-Za-z0-9_-]+`; in cert_limit a leading `*` marks the pair optional;
* values: `[A-Za-z0-9_\\-.:\\[\\],/() \\t]*`; xdescr values may also hold the glob
  characters `*` and `?`.

Sans-IO, stdlib only. Bad input raises `NVListError` with the offset and the rule broken.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

__all__ = [
    "NVListError",
    "NVPair",
    "NVRule",
    "dattr_match",
    "encode_nvlist",
    "glob_match",
    "parse_nvlist",
    "quoted",
]

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
NAME_CHARS = _ALNUM | frozenset("_-")
VALUE_CHARS = _ALNUM | frozenset("_-.:[],/() \t")
GLOB_CHARS = frozenset("*?")
_BAD_NAME = re.compile(r"[^A-Za-z0-9_\-]")
_BAD_VALUE = re.compile(r"[^A-Za-z0-9_\-.:\[\],/() \t]")
_BAD_GLOB_VALUE = re.compile(r"[^A-Za-z0-9_\-.:\[\],/() \t*?]")


def quoted(text: str, most: int = 80) -> str:
    """`text` in quotes for an error line, cut at `most` characters with its length: a
    stranger's certificate put 90 KB of one name or value into a refusal's log line."""
    if len(text) <= most:
        return repr(text)
    return f"{text[:most]!r}... ({len(text)} characters)"


class NVRule(enum.Enum):
    """Which syntax rule a name=value list broke."""

    NOT_ASCII = "not_ascii"
    MISSING_TERMINATOR = "missing_terminator"  # last pair does not end with ';'
    MISSING_EQUALS = "missing_equals"  # a pair has no '='
    EMPTY_NAME = "empty_name"
    BAD_NAME_CHAR = "bad_name_char"
    OPTIONAL_NOT_ALLOWED = "optional_not_allowed"  # '*name' outside cert_limit
    BAD_VALUE_CHAR = "bad_value_char"
    DUPLICATE_NAME = "duplicate_name"


class NVListError(ValueError):
    """A name=value list broke a syntax rule at `offset` (0-based, in characters)."""

    def __init__(self, rule: NVRule, offset: int, detail: str) -> None:
        super().__init__(f"{rule.value} at offset {offset}: {detail}")
        self.rule = rule
        self.offset = offset
        self.detail = detail


class NVPair(NamedTuple):
    name: str
    value: str
    optional: bool = False


def parse_nvlist(
    data: str | bytes,
    *,
    allow_optional: bool = False,
    allow_duplicates: bool = False,
    allow_glob: bool = False,
) -> list[NVPair]:
    """Parse `name=value;...` into pairs, keeping their order.

    `allow_optional` admits the cert_limit `*name` marker; `allow_duplicates` admits
    repeated names (xdescr); `allow_glob` admits `*` and `?` in values (xdescr, dattr
    patterns). An empty input is an empty list.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError as e:
            raise NVListError(NVRule.NOT_ASCII, e.start, "byte is not ASCII") from None
    else:
        text = data
        for i, ch in enumerate(text):
            if ord(ch) > 0x7F:
                raise NVListError(NVRule.NOT_ASCII, i, f"character {ch!r} is not ASCII")
    pairs: list[NVPair] = []
    seen: set[str] = set()
    pos = 0
    while pos < len(text):
        end = text.find(";", pos)
        if end < 0:
            raise NVListError(NVRule.MISSING_TERMINATOR, len(text), "pair does not end with ';'")
        eq = text.find("=", pos, end)
        if eq < 0:
            raise NVListError(NVRule.MISSING_EQUALS, pos, f"{quoted(text[pos:end])} has no '='")
        name_start = pos
        optional = False
        if text[pos] == "*":
            if not allow_optional:
                raise NVListError(
                    NVRule.OPTIONAL_NOT_ALLOWED, pos, "'*' optional marker is not allowed here"
                )
            optional = True
            name_start = pos + 1
        name = text[name_start:eq]
        if not name:
            raise NVListError(NVRule.EMPTY_NAME, name_start, "empty name")
        bad = _BAD_NAME.search(name)
        if bad:
            i = name_start + bad.start()
            raise NVListError(NVRule.BAD_NAME_CHAR, i, f"{text[i]!r} is not allowed in a name")
        value = text[eq + 1 : end]
        # a regex scans in C: a certificate's 100 KB cert_limit, per character in Python,
        # cost ~10 ms on every handshake that presented it
        bad = (_BAD_GLOB_VALUE if allow_glob else _BAD_VALUE).search(value)
        if bad:
            i = eq + 1 + bad.start()
            raise NVListError(NVRule.BAD_VALUE_CHAR, i, f"{text[i]!r} is not allowed in a value")
        if name in seen and not allow_duplicates:
            raise NVListError(NVRule.DUPLICATE_NAME, pos, f"name {quoted(name)} appears twice")
        seen.add(name)
        pairs.append(NVPair(name, value, optional))
        pos = end + 1
    return pairs


def encode_nvlist(
    pairs: Iterable[NVPair | tuple[str, str] | tuple[str, str, bool]],
    *,
    allow_optional: bool = True,
    allow_duplicates: bool = True,
    allow_glob: bool = True,
) -> str:
    """Encode pairs back to text; the result is checked with `parse_nvlist`."""
    parts = []
    for p in pairs:
        name, value = p[0], p[1]
        optional = bool(p[2]) if len(p) > 2 else False
        parts.append(f"{'*' if optional else ''}{name}={value};")
    text = "".join(parts)
    parse_nvlist(
        text,
        allow_optional=allow_optional,
        allow_duplicates=allow_duplicates,
        allow_glob=allow_glob,
    )
    return text


def glob_match(pattern: str, text: str) -> bool:
    """Shell-style match with `*` (any run, also empty) and `?` (one char); no `[]`.

    The pieces between the stars are found left to right, each at its leftmost place
    (which leaves the most room for the rest), with `str.find`, or a compiled regex where
    a piece has `?`. A backtracking matcher took over a second for a 2,000-character
    `*aaa...ab` against 4,000 `a`s, and a broker matches on its reactor.
    """
    if "*" not in pattern:
        return _piece_at(pattern, text, 0) and len(pattern) == len(text)
    pieces = pattern.split("*")
    first, last = pieces[0], pieces[-1]
    end = len(text) - len(last)
    if end < len(first) or not _piece_at(first, text, 0) or not _piece_at(last, text, end):
        return False
    pos = len(first)
    for piece in pieces[1:-1]:
        if not piece:
            continue
        if "?" in piece:
            m = _piece_regex(piece).search(text, pos, end)
            if m is None:
                return False
            pos = m.end()
        else:
            i = text.find(piece, pos, end)
            if i < 0:
                return False
            pos = i + len(piece)
    return True


def _piece_at(piece: str, text: str, at: int) -> bool:
    """Whether `piece` (no `*`) matches `text` at `at`."""
    if at + len(piece) > len(text):
        return False
    if "?" not in piece:
        return text.startswith(piece, at)
    return all(p == "?" or p == c for p, c in zip(piece, text[at : at + len(piece)], strict=True))


@functools.lru_cache(maxsize=256)
def _piece_regex(piece: str) -> re.Pattern[str]:
    return re.compile(".".join(re.escape(part) for part in piece.split("?")), re.DOTALL)


def dattr_match(xdescr: Sequence[NVPair], dattr: Sequence[NVPair]) -> bool:
    """Broker matching of an experiment descriptor against endpoint attributes (§5.5).

    Empty dattr or empty xdescr matches. Otherwise for each dattr pair: an xdescr with no
    pair of that name matches; else at least one of its values (a glob pattern) must match
    the dattr value. The result is the AND over the dattr pairs.
    """
    if not xdescr or not dattr:
        return True
    for d in dattr:
        patterns = [x.value for x in xdescr if x.name == d.name]
        if patterns and not any(glob_match(pat, d.value) for pat in patterns):
            return False
    return True
