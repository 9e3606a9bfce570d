"""`pktlab run http --connect-to` as curl 7.88 reads it (HOST1:PORT1:HOST2:PORT2, url.c's
parse_connect_to_string) and ours before it (an IP address alone), over the scripted
endpoint: which address and port were connected, what Host the server saw."""

from __future__ import annotations

from typing import Any

import pytest
from test_http_redirects import response
from test_run_http_curl import run

from packetlab.cli.run import RunError
from packetlab.cli.run_http_opts import connect_to_entries
from packetlab.measure.http import _Route
from packetlab.measure.http_url import parse_url


def _host(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    return response(200, f"{headers.get('host')} {target}".encode())


def test_entries_as_curl_reads_them() -> None:
    assert connect_to_entries(
        ["a.test:80:b.test:8080", "::192.0.2.9:", "A.Test::[2001:db8::1]:", ":443:c.test",
         "[::1]:80:h:1"]
    ) == (
        ("a.test", 80, "b.test", 8080),
        ("", None, "192.0.2.9", None),
        ("a.test", None, "2001:db8::1", None),
        ("", 443, "c.test", None),
        ("::1", 80, "h", 1),
    )  # fmt: skip
    # ours: an IP address alone is curl's ::ADDR: (::1 an address, not curl's form)
    assert connect_to_entries(["10.0.0.1", "::1"]) == (
        ("", None, "10.0.0.1", None),
        ("", None, "::1", None),
    )
    for bad, why in (("host.test", "neither"), ("a:b", "neither"), ("a:80:b:x", "port number"),
                     ("a:80:b:70000", "port number"), ("a:x:b:1", "port number")):  # fmt: skip
        with pytest.raises(RunError, match=why):
            connect_to_entries([bad])


def _route(*items: str, resolve: Any = ()) -> _Route:
    return _Route(None, None, None, 1.0, 1.0, None, None, False, None, resolve,  # type: ignore[arg-type]
                  connect_to_entries(list(items)))  # fmt: skip


def test_the_first_entry_that_matches_and_names_a_host_or_port_wins() -> None:
    u = parse_url("http://A.test:8080/p")  # (its case kept since session 21, as curl)
    assert _route().target(u) == ("A.test", 8080, None)  # no entry: the URL's (DNS)
    assert _route("b.test:8080:192.0.2.1:").target(u) == ("A.test", 8080, None)  # no match
    assert _route("a.test:80:192.0.2.1:").target(u) == ("A.test", 8080, None)  # port differs
    # an entry naming neither host nor port does not stop the search (curl's loop)
    assert _route(":::", "a.test:8080::81", ":8080:192.0.2.2:").target(u) == ("A.test", 81, None)
    assert _route(":8080:192.0.2.2:", "a.test:8080::81").target(u) == (
        "192.0.2.2",
        8080,
        "192.0.2.2",
    )
    # HOST2 a name: looked up as the URL's host would be, --resolve first (its port is PORT2)
    r = _route("::b.test:9", resolve=(("b.test", 9, "192.0.2.3"),))
    assert r.target(u) == ("b.test", 9, "192.0.2.3")
    assert _route("::b.test:10", resolve=(("b.test", 9, "192.0.2.3"),)).target(u) == (
        "b.test",
        10,
        None,
    )
    v6 = parse_url("http://[2001:db8::5]/")
    assert _route("[2001:db8::5]:80:[::1]:").target(v6) == ("::1", 80, "::1")


def test_connect_to_host_and_port_host_field_stays_the_urls() -> None:
    # curl 7.88.1 against a capturing server: Host: a.test (the URL's), connected to the
    # address and port of HOST2:PORT2
    peers = {("192.0.2.80", 8080): _host}
    code, _, raw, _, records = run("--connect-to", "a.test:80:192.0.2.80:8080", "-o", "-",
                                   "http://a.test/p", handler=_host, peers=peers)  # fmt: skip
    assert (code, raw) == (0, b"a.test /p")
    assert records[0]["server"] == "192.0.2.80:8080"


def test_connect_to_a_name_uses_resolve_for_it_and_ours_still_works() -> None:
    peers = {("192.0.2.80", 8080): _host}
    code, _, raw, _, records = run("--connect-to", "::b.test:8080", "--resolve",
                                   "b.test:8080:192.0.2.80", "-o", "-", "http://a.test/q",
                                   handler=_host, peers=peers)  # fmt: skip
    assert (code, raw, records[0]["server"]) == (0, b"a.test /q", "192.0.2.80:8080")
    code, _, raw, _, records = run("--connect-to", "192.0.2.80", "-o", "-",
                                   "http://a.test/r", handler=_host)  # fmt: skip
    assert (code, raw, records[0]["server"]) == (0, b"a.test /r", "192.0.2.80:80")
