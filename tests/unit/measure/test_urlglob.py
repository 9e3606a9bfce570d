"""curl 7.88's globbing of -T file names (src/tool_urlglob.c): the names in curl's order
and its errors at curl's column, each case checked against /usr/bin/curl 7.88.1 (`curl
-T PATTERN http://host/up/`: the URLs it PUT to, or its "(3) ... in URL position N")."""

from __future__ import annotations

import pytest

from packetlab.measure.urlglob import MAX_NAMES, GlobError, glob_names


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("{a,b}", ["a", "b"]),
        ("file[1-3]", ["file1", "file2", "file3"]),
        ("{a,b}{1,2}", ["a1", "a2", "b1", "b2"]),  # the rightmost pattern fastest
        ("f[01-02]", ["f01", "f02"]),  # a leading zero: that width
        ("[009-011]", ["009", "010", "011"]),
        ("f[a-c:2]", ["fa", "fc"]),
        ("[1-9:3]", ["1", "4", "7"]),
        ("[1-1]", ["1"]),
        ("{a,}", ["a", ""]),
        ("x[]", ["x[]"]),  # [] is no pattern
        ("f\\{a", ["f{a"]),  # \ before a brace: the brace itself
        ("a[::1]b", ["a[::1]b"]),  # an IPv6 literal is no range
        ("plain.txt", ["plain.txt"]),
    ],
)
def test_names_as_curl(pattern: str, names: list[str]) -> None:
    assert glob_names(pattern) == names


@pytest.mark.parametrize(
    ("pattern", "why", "pos"),
    [
        ("{a,b", "unmatched brace", 1),
        ("{a,b}{", "unmatched brace", 5),
        ("a}", "unmatched close brace/bracket", 2),
        ("ab]", "unmatched close brace/bracket", 3),
        ("[0-2]{x,y}]", "unmatched close brace/bracket", 10),
        ("{a,{b,c}}", "nested brace", 4),
        ("{a[1-2],b}", "nested brace", 3),
        ("{}", "empty string within braces", 2),
        ("f[3-1]", "bad range", 7),  # backwards
        ("f[1-", "bad range", 5),
        ("f[1-3:0]", "bad range", 9),
        ("f[1-3:-1]", "bad range", 10),
        ("f[a-3]", "bad range", 7),
        ("f[a-Z]", "bad range", 7),
        ("f[A-Z:0]", "bad range", 9),
        ("{a}" * 100, "too many globs", 201),
        ("x{a}" * 50, "too many globs", 151),
    ],
)
def test_errors_as_curl(pattern: str, why: str, pos: int) -> None:
    with pytest.raises(GlobError) as e:
        glob_names(pattern)
    assert (e.value.why, e.value.pos) == (why, pos)
    assert str(e.value) == f"{why} at position {pos} (curl: 3)"


def test_too_many_names_is_refused_before_any_list_is_made() -> None:
    # curl walks f[1-100000000] lazily (and stops at the first missing file); we look at
    # every file before anything is sent, so at most MAX_NAMES of them
    assert len(glob_names(f"[1-{MAX_NAMES}]")) == MAX_NAMES
    for pattern in ("f[1-100000000]", "[1-100][1-101]", "[0-99999999999999999999999]"):
        with pytest.raises(GlobError, match=r"over 10000 file names|bad range"):
            glob_names(pattern)
