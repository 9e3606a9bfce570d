"""The cookie engine as curl 7.88's (`packetlab.measure.cookies`): Set-Cookie attributes,
which cookies a request gets and in which order, curl's Netscape cookie file written and
read back; and `http_get` keeping cookies over a redirect chain (the scripted endpoint)."""

from __future__ import annotations

import json

from test_http_redirects import response, serving

from packetlab.measure.cookies import JAR_HEADER, CookieJar
from packetlab.measure.http import http_get

NOW = 1_800_000_000


def jar() -> CookieJar:
    return CookieJar(clock=lambda: NOW)


def test_attributes_and_what_each_request_gets() -> None:
    j = jar()
    for c in ["a=1", "b=2; Path=/sh", "h=3; HttpOnly", "s=5; Secure", "x=6; path=/other",
              "d=7; Domain=.www.test", "t=8; Domain=test", "o=9; Domain=other.test",
              "gone=1; Max-Age=0", "old=1; Expires=Thu, 01 Jan 2026 00:00:00 GMT",
              "m=10; Max-Age=60", "novalue", "=x"]:  # fmt: skip
        j.set("http", "a.www.test", "/page", c)
    # t (a top-level Domain), o (another domain), s (Secure over http), the expired and
    # the nameless are refused
    assert sorted(c.name for c in j.cookies) == ["a", "b", "d", "h", "m", "x"]
    j2 = jar()
    j2.set("http", "a.www.test", "/dir/page?x=/y", "p=1")  # the default path: the directory
    assert j2.cookies[0].path == "/dir" and j2.header("http", "a.www.test", "/") is None
    # curl's order: longest path, then longest domain, then longest name, then newest
    assert j.header("http", "a.www.test", "/dir/x") == "m=10; h=3; a=1; d=7"
    assert j.header("http", "a.www.test", "/sh/x?q") == "b=2; m=10; h=3; a=1; d=7"
    assert j.header("http", "a.www.test", "/show") == "m=10; h=3; a=1; d=7"  # /sh: no
    assert j.header("http", "b.www.test", "/") == "d=7"  # the Domain cookie only
    assert j.header("http", "www.test.evil", "/") is None
    # a secure context (https, or localhost as curl) may set and gets Secure cookies
    j.set("https", "a.www.test", "/", "s=5; Secure")
    assert j.header("https", "a.www.test", "/") == "s=5; m=10; h=3; a=1; d=7"
    assert "s=5" not in (j.header("http", "a.www.test", "/") or "")
    loc = jar()
    loc.set("http", "127.0.0.1", "/", "s=5; Secure; Domain=127.0.0.1")
    assert loc.header("http", "127.0.0.1", "/") == "s=5"
    # the same name, domain and path replaces; Max-Age=0 deletes
    j.set("http", "a.www.test", "/x", "a=new")
    j.set("http", "a.www.test", "/x", "h=3; Max-Age=0")
    assert j.header("http", "a.www.test", "/x") == "m=10; a=new; d=7"  # a: as old as a=1


def test_the_jar_file_as_curl_writes_and_reads_it() -> None:
    j = jar()
    for c in ["a=1", "h=3; HttpOnly", "d=7; Domain=www.test; Secure",
              "e=4; Expires=Wed, 01 Jan 2031 00:00:00 GMT"]:  # fmt: skip
        j.set("https", "a.www.test", "/", c)
    text = j.dump()
    assert text == JAR_HEADER + (
        "a.www.test\tFALSE\t/\tFALSE\t1924992000\te\t4\n"
        ".www.test\tTRUE\t/\tTRUE\t0\td\t7\n"
        "#HttpOnly_a.www.test\tFALSE\t/\tFALSE\t0\th\t3\n"
        "a.www.test\tFALSE\t/\tFALSE\t0\ta\t1\n"
    )  # the newest first, as curl 7.88
    again = jar()
    again.load(text + "bad line\n\nx.test\tFALSE\t/\tFALSE\t12\told\t1\n")  # skipped
    assert again.dump() == JAR_HEADER + "".join(
        reversed(text[len(JAR_HEADER) :].splitlines(keepends=True))
    )  # read in file order: the last line is the newest
    assert again.header("https", "a.www.test", "/") == "a=1; h=3; e=4; d=7"
    assert jar().dump() == JAR_HEADER  # no cookies: the header alone, as curl


def test_junk_session_cookies_skips_those_of_the_file_without_expiry() -> None:
    # curl 7.88.1 -j -b FILE: `keep=2` sent, not `sess=1`; a session cookie set later kept
    text = "x.test\tFALSE\t/\tFALSE\t0\tsess\t1\nx.test\tFALSE\t/\tFALSE\t4102444800\tkeep\t2\n"
    j = jar()
    j.load(text, sessions=False)
    j.set("http", "x.test", "/", "new=3")
    assert j.header("http", "x.test", "/") == "keep=2; new=3"
    both = jar()
    both.load(text)
    assert both.header("http", "x.test", "/") == "keep=2; sess=1"


def test_http_get_keeps_cookies_over_redirects() -> None:
    def handler(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        if target == "/login":
            return response(302, Location="/home", Set_Cookie="sid=42; Path=/")
        return response(200, json.dumps({"cookie": headers.get("cookie")}).encode())

    rig, made = serving(handler)
    j = CookieJar()
    r = rig.run(http_get(rig.session, "http://192.0.2.80/login", follow=True, cookies=j,
                         cookie="z=0", keep_body=True))  # fmt: skip
    assert json.loads(r.body or b"{}")["cookie"] == "sid=42; z=0"  # the engine's, then -b's
    assert [c.name for c in j.cookies] == ["sid"]
    # the next URL of the run gets it; without the engine a Set-Cookie is not kept
    r = rig.run(http_get(rig.session, "http://192.0.2.80/x", cookies=j, keep_body=True))
    assert json.loads(r.body or b"{}")["cookie"] == "sid=42"
    r = rig.run(http_get(rig.session, "http://192.0.2.80/login", follow=True, keep_body=True))
    assert json.loads(r.body or b"{}")["cookie"] is None
    # a -H Cookie: sent, and the engine's in their own header; the -b string is not
    rig.run(http_get(rig.session, "http://192.0.2.80/x", cookies=j, cookie="z=0",
                     headers=[("Cookie", "c=2")]))  # fmt: skip
    sent = bytes(made[-1].got).lower()
    assert b"\r\ncookie: c=2\r\n" in sent and b"\r\ncookie: sid=42\r\n" in sent
    assert b"z=0" not in sent
