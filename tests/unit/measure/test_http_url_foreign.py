"""A Location naming a scheme other than http(s) (curl29): curl 7.88.1's
%{redirect_url} and %{url_effective} of it, and the schemes it knows."""

from __future__ import annotations

from packetlab.cli.run_http_opts import CURL_PROTOCOLS
from packetlab.measure.http_url import CURL_SCHEMES, foreign_target


def test_a_known_scheme_is_lower_cased_and_its_fragment_dropped_as_curls() -> None:
    assert foreign_target("FTP://h:1/a%20b?q#f") == ("ftp", "ftp://h:1/a%20b?q")
    assert foreign_target("file:///etc/hostname") == ("file", "file:///etc/hostname")


def test_an_unknown_scheme_is_kept_as_it_came() -> None:
    assert foreign_target("Foo://x/y#z") == ("foo", "Foo://x/y#z")


def test_http_and_relative_locations_are_not_foreign() -> None:
    for location in ("http://h/", "HTTPS://h/", "/ftp://x", "ftp:x", "//h/p"):
        assert foreign_target(location) is None, location


def test_the_schemes_are_the_command_lines() -> None:
    assert CURL_SCHEMES == CURL_PROTOCOLS
