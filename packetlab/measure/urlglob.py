"""curl 7.88's URL globbing (src/tool_urlglob.c), as curl applies it to URLs and to `-T`
upload file names: `{a,b,c}` sets, `[1-10]`/`[001-100]`/`[a-z]` ranges with an optional
`:STEP`, `\\` before a brace or bracket for the character itself, `[]` and an IPv6
literal `[::1]` kept as is. Names come out in curl's order (the rightmost pattern
fastest). Malformed patterns are a `GlobError` with curl's words and column; more than
`limit` names is one too (curl has no such limit: it walks them lazily, we look at each
file, or list each URL, before anything is sent). `glob_urls` keeps what each glob
matched for curl's `-o 'out_#1'` (`output_name`).
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Iterator
from typing import NamedTuple

__all__ = ["MAX_NAMES", "GlobError", "GlobMatch", "glob_count", "glob_names", "glob_urls",
           "output_name"]  # fmt: skip

MAX_NAMES = 10_000  # file names one -T, or URLs one URL, may expand to (ours)
PATTERN_NUM = 100  # curl's GLOB_PATTERN_NUM: literal runs and patterns in one glob
_ULONG = 1 << 64


class GlobError(ValueError):
    """curl's "(3) bad range in URL position 7:" and friends: `why`, `pos` (1-based)."""

    def __init__(self, why: str, pos: int, pattern: str, curl_error: bool = True) -> None:
        self.why, self.pos, self.pattern = why, pos, pattern
        where = f" at position {pos}" if pos else ""
        super().__init__(f"{why}{where}{' (curl: 3)' if curl_error else ''}")


def _strtoul(s: str, i: int) -> tuple[int | None, int]:
    """C strtoul(base 10) at s[i]: (value or None when no digits / overflow, end)."""
    j = i
    while j < len(s) and s[j] in " \t\n\v\f\r":
        j += 1
    neg = j < len(s) and s[j] in "+-" and s[j] == "-"
    if j < len(s) and s[j] in "+-":
        j += 1
    k = j
    while k < len(s) and s[k].isdigit() and s[k].isascii():
        k += 1
    if k == j:
        return None, i
    value = int(s[j:k])
    if value >= _ULONG:
        return None, k  # ERANGE
    return (_ULONG - value) % _ULONG if neg else value, k


def _isdigit(c: str) -> bool:
    return c.isascii() and c.isdigit()


def _isalpha(c: str) -> bool:
    return c.isascii() and c.isalpha()


_Pattern = list[str] | range | tuple[int, int, int, int]


def _parse(pattern: str) -> tuple[list[_Pattern], list[bool], int]:
    """The glob's patterns in order: a list of strings (a set or a literal), a char
    range as `range` of code points, a number range as (min, max, step, padding); for
    each whether it is a glob (not a literal run); and how many names they make."""
    pats: list[_Pattern] = []
    globs: list[bool] = []
    s, i, pos, n = pattern, 0, 1, len(pattern)
    amount = 1

    def at(k: int) -> str:
        return s[k] if k < n else ""

    while i < n:
        buf: list[str] = []
        while i < n and s[i] != "{":
            if s[i] == "[":
                end = s.find("]", i)
                skip = 0
                if end > 0 and _ipv6(s[i + 1 : end]):
                    skip = end - i + 1
                elif at(i + 1) == "]":
                    skip = 2
                if skip:
                    buf.append(s[i : i + skip])
                    i += skip
                    continue
                break
            if s[i] in "}]":
                raise GlobError("unmatched close brace/bracket", pos, pattern)
            if s[i] == "\\" and at(i + 1) in ("{", "[", "}", "]") and at(i + 1):
                i += 1
                pos += 1
            buf.append(s[i])
            i += 1
            pos += 1
        if buf:
            pats.append(["".join(buf)])
            globs.append(False)
        elif i < n and s[i] == "{":
            i += 1
            pos += 1
            opos, start = pos - 1, i
            elements: list[str] = []
            cur: list[str] = []
            while True:
                c = at(i)
                if not c:
                    raise GlobError("unmatched brace", opos, pattern)
                if c in "{[":
                    raise GlobError("nested brace", pos, pattern)
                if c in "},":
                    if c == "}" and i == start:
                        raise GlobError("empty string within braces", pos, pattern)
                    elements.append("".join(cur))
                    cur = []
                    i += 1
                    if c == "}":
                        break
                    pos += 1
                    continue
                if c == "]":
                    raise GlobError("unmatched close brace/bracket", pos, pattern)
                if c == "\\" and at(i + 1):
                    i += 1
                    pos += 1
                cur.append(s[i])
                i += 1
                pos += 1
            amount *= len(elements)
            pats.append(elements)
            globs.append(True)
        elif i < n and s[i] == "[":
            i += 1
            pos += 1
            start = i
            pat, i = _range(s, i, pos, pattern)
            pos += i - start
            amount *= len(pat) if isinstance(pat, range) else (pat[1] - pat[0]) // pat[2] + 1
            pats.append(pat)
            globs.append(True)
        if len(pats) >= PATTERN_NUM:
            raise GlobError("too many globs", pos, pattern)
    return pats, globs, amount


def _checked(pattern: str, limit: int, what: str) -> tuple[list[_Pattern], list[bool]]:
    """_parse, and more than `limit` names refused before any list of them is made."""
    pats, globs, amount = _parse(pattern)
    if amount > limit:
        raise GlobError(f"over {limit} {what}; curl has no such limit)", 0, pattern, False)
    return pats, globs


def _range(s: str, i: int, pos: int, pattern: str) -> tuple[range | tuple[int, int, int, int], int]:
    """glob_range at s[i] (after the '['): the range and the index after its ']'."""
    start = i
    c = s[i] if i < len(s) else ""
    if _isalpha(c):
        ok = len(s) >= i + 4 and s[i + 1] == "-"
        step = 1
        if ok:
            lo, hi, end = s[i], s[i + 2], s[i + 3]
            if end == ":":
                given, e = _strtoul(s, i + 4)
                if given is None or e >= len(s) or s[e] != "]":
                    step = 0
                else:
                    step, i = given, e + 1
            elif end != "]":
                ok = False
            else:
                i += 4
        bad = (not ok or not step or step > 0x7FFFFFFF
               or (ok and lo == hi and step != 1)
               or (ok and lo != hi and (lo > hi or step > ord(hi) - ord(lo)
                                        or ord(hi) - ord(lo) > 25)))  # fmt: skip
        if bad:
            raise GlobError("bad range", pos + (i - start), pattern)
        return range(ord(lo), ord(hi) + 1, step), i
    if _isdigit(c):
        pad = 0
        if c == "0":  # a leading zero: every number that wide
            while i + pad < len(s) and _isdigit(s[i + pad]):
                pad += 1
        first, e = _strtoul(s, i)
        last: int | None = 0
        step_n: int | None = 0
        good = first is not None and e < len(s) and s[e] == "-"
        if good:
            i = e + 1
            while i < len(s) and s[i] in " \t":
                i += 1
            good = i < len(s) and _isdigit(s[i])
        if good:
            last, e = _strtoul(s, i)
            step_n = 1
            if last is None:
                good = False
            elif e < len(s) and s[e] == ":":
                i = e + 1
                step_n, e = _strtoul(s, i)
                good = step_n is not None
            if good and e < len(s) and s[e] == "]":
                i = e + 1
            else:
                good = False
        lo_n, hi_n, st = first or 0, last or 0, step_n or 0
        if (not good or not st or (lo_n == hi_n and st != 1)
                or (lo_n != hi_n and (lo_n > hi_n or st > hi_n - lo_n))):  # fmt: skip
            raise GlobError("bad range", pos + (i - start), pattern)
        return (lo_n, hi_n, st, pad), i
    raise GlobError("bad range specification", pos, pattern)


def _ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _values(p: list[str] | range | tuple[int, int, int, int]) -> Iterator[str]:
    if isinstance(p, list):
        return iter(p)
    if isinstance(p, range):
        return (chr(c) for c in p)
    lo, hi, step, pad = p
    return (str(v).zfill(pad) for v in range(lo, hi + 1, step))


def glob_count(pattern: str) -> int:
    """How many names `pattern` expands to (none made); GlobError if it is malformed."""
    return _parse(pattern)[2]


def glob_names(pattern: str, limit: int = MAX_NAMES) -> list[str]:
    """The names `pattern` expands to, in curl's order (-T: each a file looked at before
    anything is sent)."""
    what = "file names (each is looked at before anything is sent"
    pats, _ = _checked(pattern, limit, what)
    return ["".join(t) for t in itertools.product(*(list(_values(p)) for p in pats))]


class GlobMatch(NamedTuple):
    """One URL of a glob: its text, what each glob matched (`-o`'s #1, #2...), and curl's
    count of patterns (literal runs too: a #N from it up is no glob's, see output_name)."""

    url: str
    matched: tuple[str, ...]
    size: int


def glob_urls(pattern: str, limit: int = MAX_NAMES) -> list[GlobMatch]:
    """The URLs `pattern` expands to, in curl's order, each with what its globs matched."""
    pats, globs = _checked(pattern, limit, "URLs (each is listed before anything is sent")
    return [
        GlobMatch("".join(t), tuple(v for v, g in zip(t, globs, strict=True) if g), len(pats))
        for t in itertools.product(*(list(_values(p)) for p in pats))
    ]


def output_name(template: str, match: GlobMatch) -> str:
    """curl's glob_match_url: each #N in an -o name replaced by what the URL's Nth glob
    matched. A #N with no such glob stays as written, and so does every #N when N is
    not below curl's pattern count (its `num < glob->size`: `-o 'x#1' '{URL1,URL2}'`,
    a URL that is one glob and nothing else, writes the file `x#1`, as curl 7.88.1)."""

    def fill(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if 0 < n < match.size and n <= len(match.matched):
            return match.matched[n - 1]
        return m.group()

    return re.sub(r"#([0-9]+)", fill, template)
