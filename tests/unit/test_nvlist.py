"""Name=value lists (§4.3) and broker dattr/xdescr matching (§5.5)."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packetlab.wire.nvlist import (
    NAME_CHARS,
    VALUE_CHARS,
    NVListError,
    NVPair,
    NVRule,
    dattr_match,
    encode_nvlist,
    glob_match,
    parse_nvlist,
)


def test_parse_keeps_order_and_values() -> None:
    text = "cert_type=exppriv;cert_desc=hello world (v1.0) [a,b]/c:d\t;x-y_z=;"
    assert parse_nvlist(text) == [
        NVPair("cert_type", "exppriv"),
        NVPair("cert_desc", "hello world (v1.0) [a,b]/c:d\t"),
        NVPair("x-y_z", ""),
    ]


def test_parse_bytes_and_empty() -> None:
    assert parse_nvlist(b"a=1;") == [NVPair("a", "1")]
    assert parse_nvlist("") == []


def test_optional_marker_only_when_allowed() -> None:
    assert parse_nvlist("*max_send_byte=5;a=1;", allow_optional=True) == [
        NVPair("max_send_byte", "5", True),
        NVPair("a", "1", False),
    ]
    with pytest.raises(NVListError) as e:
        parse_nvlist("*max_send_byte=5;")
    assert e.value.rule is NVRule.OPTIONAL_NOT_ALLOWED and e.value.offset == 0


def test_duplicates() -> None:
    with pytest.raises(NVListError) as e:
        parse_nvlist("a=1;b=2;a=3;")
    assert e.value.rule is NVRule.DUPLICATE_NAME and e.value.offset == 8
    # an optional and a plain pair of the same name are still duplicates
    with pytest.raises(NVListError):
        parse_nvlist("a=1;*a=2;", allow_optional=True)
    assert parse_nvlist("c=USA;c=CAN;", allow_duplicates=True) == [
        NVPair("c", "USA"),
        NVPair("c", "CAN"),
    ]


@pytest.mark.parametrize(
    ("text", "rule", "offset"),
    [
        ("a=1", NVRule.MISSING_TERMINATOR, 3),
        ("a=1;b=2", NVRule.MISSING_TERMINATOR, 7),
        ("a1;", NVRule.MISSING_EQUALS, 0),
        ("a=1;;", NVRule.MISSING_EQUALS, 4),
        ("=1;", NVRule.EMPTY_NAME, 0),
        ("a=1;a b=2;", NVRule.BAD_NAME_CHAR, 5),
        ("a.b=2;", NVRule.BAD_NAME_CHAR, 1),
        ("a=x=y;", NVRule.BAD_VALUE_CHAR, 3),
        ("a=h*;", NVRule.BAD_VALUE_CHAR, 3),
        ("a=h?;", NVRule.BAD_VALUE_CHAR, 3),
        ("a=\n;", NVRule.BAD_VALUE_CHAR, 2),
        ("a=é;", NVRule.NOT_ASCII, 2),
    ],
)
def test_each_rule_with_offset(text: str, rule: NVRule, offset: int) -> None:
    with pytest.raises(NVListError) as e:
        parse_nvlist(text)
    assert e.value.rule is rule
    assert e.value.offset == offset
    assert isinstance(e.value, ValueError)
    assert rule.value in str(e.value)


def test_not_ascii_bytes() -> None:
    with pytest.raises(NVListError) as e:
        parse_nvlist(b"a=\xff;")
    assert e.value.rule is NVRule.NOT_ASCII and e.value.offset == 2


def test_star_alone_is_empty_name() -> None:
    with pytest.raises(NVListError) as e:
        parse_nvlist("*=1;", allow_optional=True)
    assert e.value.rule is NVRule.EMPTY_NAME


def test_glob_values_when_allowed() -> None:
    pairs = parse_nvlist("hostid=h*;loc=FN3?;", allow_glob=True)
    assert pairs[0].value == "h*" and pairs[1].value == "FN3?"


def test_encode() -> None:
    pairs = [NVPair("a", "1"), NVPair("b", "x y", True)]
    assert encode_nvlist(pairs) == "a=1;*b=x y;"
    assert encode_nvlist([("a", "1")]) == "a=1;"
    with pytest.raises(NVListError):
        encode_nvlist([("a", "x=y")])


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("abc", "abc", True),
        ("abc", "abd", False),
        ("a*", "a", True),
        ("a*", "abc", True),
        ("*c", "abc", True),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("*", "", True),
        ("", "", True),
        ("", "a", False),
        ("a*b*c", "axxbyyc", True),
        ("a*b*c", "axxbyy", False),
        ("[ab]", "a", False),  # no bracket classes
        ("[ab]", "[ab]", True),
        ("FN3*", "FN31pr", True),
    ],
)
def test_glob_match(pattern: str, text: str, expected: bool) -> None:
    assert glob_match(pattern, text) is expected


_glob_alpha = st.text(alphabet="ab*?", max_size=8)


@given(_glob_alpha, st.text(alphabet="ab", max_size=8))
def test_glob_agrees_with_fnmatch(pattern: str, text: str) -> None:
    # fnmatchcase agrees with us when no '[' is present.
    assert glob_match(pattern, text) == fnmatch.fnmatchcase(text, pattern)


def test_glob_is_not_exponential() -> None:
    assert not glob_match("*a" * 30 + "b", "a" * 200)


@given(st.text(alphabet="ab*?", max_size=24), st.text(alphabet="ab?*", max_size=40))
def test_glob_agrees_with_fnmatch_on_longer_input(pattern: str, text: str) -> None:
    # The pieces between stars are searched left to right; `?` and `*` in the text are
    # plain characters there (dattr values hold none, but the matcher must not care).
    assert glob_match(pattern, text) == fnmatch.fnmatchcase(text, pattern)


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("*" + "a" * 2000 + "b", "a" * 4000, False),  # ~1.3 s with the backtracking matcher
        ("*" + "?" * 1999 + "b*", "a" * 4000, False),
        ("*" + "a?" * 1000 + "*", "a" * 4000, True),
        ("a*?*b", "ab", False),
        ("a*?*b", "axb", True),
        ("*.*", "a.b", True),  # regex characters in a piece are literal
        ("*.?", "ab", False),
    ],
)
def test_glob_long_and_literal_cases(pattern: str, text: str, expected: bool) -> None:
    assert glob_match(pattern, text) is expected


def _p(text: str, glob: bool = False) -> list[NVPair]:
    return parse_nvlist(text, allow_duplicates=glob, allow_glob=glob)


@pytest.mark.parametrize(
    ("xdescr", "dattr", "expected"),
    [
        ("", "hostid=h1;", True),  # empty xdescr matches
        ("hostid=h*;", "", True),  # empty dattr matches
        ("hostid=h*;", "hostid=h1;", True),
        ("hostid=x*;", "hostid=h1;", False),
        ("controller_addr=1.2.3.4;", "hostid=h1;", True),  # name absent from xdescr
        ("endpoint_country=USA;endpoint_country=CAN;", "endpoint_country=CAN;", True),  # OR
        ("endpoint_country=USA;endpoint_country=FRA;", "endpoint_country=CAN;", False),
        ("hostid=h?;endpoint_country=USA;", "hostid=h1;endpoint_country=USA;", True),
        ("hostid=h?;endpoint_country=USA;", "hostid=h1;endpoint_country=CAN;", False),  # AND
        ("hostid=h?;", "hostid=h12;", False),
    ],
)
def test_dattr_match(xdescr: str, dattr: str, expected: bool) -> None:
    assert dattr_match(_p(xdescr, glob=True), _p(dattr)) is expected


_name = st.text(alphabet=sorted(NAME_CHARS), min_size=1, max_size=10)
_value = st.text(alphabet=sorted(VALUE_CHARS), max_size=20)


@given(st.lists(st.tuples(_name, _value, st.booleans()), max_size=8))
def test_round_trip(items: list[tuple[str, str, bool]]) -> None:
    pairs = [NVPair(*i) for i in items]
    text = encode_nvlist(pairs)
    assert parse_nvlist(text, allow_optional=True, allow_duplicates=True) == pairs


@given(st.text(max_size=40))
def test_garbage_only_raises_nvlisterror(text: str) -> None:
    try:
        parse_nvlist(text, allow_optional=True)
    except NVListError:
        pass


@given(st.binary(max_size=40))
def test_garbage_bytes_only_raise_nvlisterror(data: bytes) -> None:
    try:
        parse_nvlist(data, allow_glob=True, allow_duplicates=True)
    except NVListError:
        pass
