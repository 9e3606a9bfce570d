"""curl 7.88's globbing of -T file names (src/tool_urlglob.c): the names in curl's order
and its errors at curl's column, each case checked against /usr/bin/curl 7.88.1 (`curl
-T PATTERN http://host/up/`: the URLs it PUT to, or its "(3) ... in URL position N")."""

from __future__ import annotations

import pytest

from packetlab.measure.urlglob import (
    MAX_NAMES,
    GlobError,
    glob_count,
    glob_names,
    glob_urls,
    output_name,
)


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


def test_urls_keep_what_each_glob_matched() -> None:
    # curl's order (the rightmost glob fastest); the literal runs are no globs
    got = glob_urls("http://h/{a,b}/x[1-2]")
    assert [(m.url, m.matched) for m in got] == [
        ("http://h/a/x1", ("a", "1")), ("http://h/a/x2", ("a", "2")),
        ("http://h/b/x1", ("b", "1")), ("http://h/b/x2", ("b", "2")),
    ]  # fmt: skip
    assert glob_count("http://h/[1-100:10]/[a-e:2]/[001-003]") == 10 * 3 * 3
    assert [m.url for m in glob_urls("http://[::1]:8/[01-02]")] == [
        "http://[::1]:8/01", "http://[::1]:8/02"]  # fmt: skip


@pytest.mark.parametrize(
    ("template", "url", "names"),
    [  # each checked against curl 7.88.1 (`curl -o TEMPLATE URL`: the files it wrote)
        (
            "o_#1_#2.txt",
            "http://h/{a,b}/[1-2]",
            ["o_a_1.txt", "o_a_2.txt", "o_b_1.txt", "o_b_2.txt"],
        ),
        ("#2-#1", "http://h/[a-b]/[08-09]", ["08-a", "09-a", "08-b", "09-b"]),
        ("y#0#3#12#a#", "http://h/{a,b}", ["y#0#3#12#a#"] * 2),  # no such glob: as written
        ("same", "http://h/{a,b}", ["same", "same"]),
        ("x#1", "{http://h/a,http://h/b}", ["x#1", "x#1"]),  # curl's `num < glob->size`
        ("x#1", "{http://h/a,http://h/b}/", ["xhttp://h/a", "xhttp://h/b"]),
        ("x#1", "http://h/a", ["x#1"]),
    ],
)
def test_output_names_as_curl(template: str, url: str, names: list[str]) -> None:
    assert [output_name(template, m) for m in glob_urls(url)] == names


def test_too_many_urls_is_refused_before_any_list_is_made() -> None:
    assert len(glob_urls("http://h/[1-50][1-200]")) == MAX_NAMES
    with pytest.raises(GlobError, match=r"^over 10000 URLs \(each is listed before"):
        glob_urls("http://h/[1-1000000000000000][1-2]")
    # curl's own errors come first, also after a glob too big for ours
    with pytest.raises(GlobError, match="bad range at position 31"):
        glob_urls("http://h/[1-100000000000][3-1]")
