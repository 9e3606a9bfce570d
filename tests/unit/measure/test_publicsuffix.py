"""libpsl's cookie-domain rule over a small list (plain, wildcard, exception, private
rules) and the cookie jar dropping a public suffix's cookie as curl 7.88.1 did."""

from __future__ import annotations

import pytest

from packetlab.measure import publicsuffix
from packetlab.measure.cookies import CookieJar
from packetlab.measure.publicsuffix import Suffixes

LIST = """// ===BEGIN ICANN DOMAINS===
uk
co.uk
*.kawasaki.jp
!city.kawasaki.jp
公司.cn
// ===BEGIN PRIVATE DOMAINS===
github.io
"""


def test_suffixes_as_libpsl() -> None:
    s = Suffixes(LIST)
    assert [s.is_suffix(n) for n in ("test", "co.uk", "example.co.uk", "kawasaki.jp",
                                     "b.kawasaki.jp", "city.kawasaki.jp", "github.io",
                                     "xn--55qx5d.cn")] == [
        True, True, False, True, True, False, True, True,
    ]  # fmt: skip
    assert s.unregistrable("www.example.co.uk") == "co.uk"
    assert s.unregistrable("a.b.kawasaki.jp") == "b.kawasaki.jp"
    assert s.unregistrable("www.city.kawasaki.jp") == "kawasaki.jp"
    ok = s.acceptable
    assert ok("co.uk", "co.uk") and ok("www.example.co.uk", "example.co.uk")
    assert not ok("www.example.co.uk", "co.uk") and not ok("a.github.io", "github.io")
    assert ok("www.city.kawasaki.jp", "city.kawasaki.jp")
    assert not ok("a.b.kawasaki.jp", "b.kawasaki.jp")
    assert ok("www.example.test", "example.test") and not ok("a.test", "test")


def test_the_jar_drops_a_public_suffix_cookie(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publicsuffix, "suffixes", lambda: Suffixes(LIST))
    jar = CookieJar()
    for value in ("a=1; Domain=co.uk", "b=2; Domain=example.co.uk",
                  "c=3; Domain=co.uk; Domain=example.co.uk"):  # fmt: skip
        jar.set("http", "www.example.co.uk", "/", value)
    assert sorted((c.name, c.domain) for c in jar.cookies) == [
        ("b", "example.co.uk"), ("c", "example.co.uk"),
    ]  # fmt: skip
    # without the list: only the dot rule (curl without libpsl)
    monkeypatch.setattr(publicsuffix, "suffixes", lambda: None)
    jar.set("http", "www.example.co.uk", "/", "a=1; Domain=co.uk")
    assert ("a", "co.uk") in [(c.name, c.domain) for c in jar.cookies]
