"""examples/_common.py: the options every example shares."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from _common import add_link_args


@pytest.mark.parametrize("bad", ["-1", "0", "nan", "inf", "soon"])
def test_a_bad_timeout_is_a_one_line_usage_error(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # --timeout -1 was "internal error: AssertionError: -1.0 is not greater than or equal
    # to 0 seconds" after the link had started; nan and inf were taken.
    p = argparse.ArgumentParser(prog="dns_query.py")
    add_link_args(p)
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--timeout", bad])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("dns_query.py: error: argument --timeout: ")
    assert p.parse_args(["--timeout", "2.5"]).timeout == 2.5


def test_http_gets_body_preview_is_one_line() -> None:
    # Under `pktlab xpmgr examples/http_get.py http://127.0.0.1:8000/` (python -m
    # http.server's listing) the "body" line ran over five lines of HTML.
    from http_get import body_preview

    page = b'<!DOCTYPE HTML>\n<html lang="en">\n<head>\n\t<meta charset="utf-8">\n' + b"x" * 100
    assert body_preview(page) == (
        '<!DOCTYPE HTML> <html lang="en"> <head> <meta charset="utf-8"> ' + "x" * 9 + "..."
    )
    assert body_preview(b"hello\n") == "hello"


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("192.0.2.9:9000", None, ("192.0.2.9", 9000)),
        ("[::1]:53", None, ("::1", 53)),
        ("::1", 53, ("::1", 53)),
        ("192.0.2.53", 53, ("192.0.2.53", 53)),
    ],
)
def test_address_port(text: str, default: int | None, expected: tuple[str, int]) -> None:
    from _common import address_port

    assert address_port(default)(text) == expected


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--target", "bogus"], "'bogus': not an IP address (names are not resolved here)"),
        (["--target", "127.0.0.1"], "'127.0.0.1': give the port, IP:PORT"),
        (["--target", "127.0.0.1:99999"], "'127.0.0.1:99999': the port must be 1..65535"),
        (["--target", "host.invalid:9"], "'host.invalid:9': not an IP address"),
    ],
)
def test_udp_train_target_is_checked_as_it_is_parsed(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Were "invalid literal for int() with base 10: 'bogus'", the same for an address
    # without a port, "not an IP address: '[::1]'" for [::1]:9 (after the link started),
    # and the port's range after the link started.
    from udp_train import parse_args

    with pytest.raises(SystemExit):
        parse_args(argv)
    assert error in capsys.readouterr().err
    assert parse_args(["--target", "[::1]:9"]).target == ("::1", 9)


def test_host_port_brackets_ipv6() -> None:
    from _common import host_port

    assert host_port("::1", 9) == "[::1]:9" and host_port("192.0.2.1", 53) == "192.0.2.1:53"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--count", "0"], "argument --count: must be 1..1000000, got 0"),
        (["--gap-us", "-1"], "argument --gap-us: must be 0..10000000, got -1"),
        (["--gap-us", "nan"], "argument --gap-us: must be 0..10000000, got nan"),
        (["--size", "70000"], "argument --size: must be 4..65507, got 70000"),
        (["--lead-ms", "-5"], "argument --lead-ms: must be 0..60000, got -5"),
    ],
)
def test_udp_train_names_the_option_out_of_range(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was "error: need --count >= 1, --gap-us >= 0 and --lead-ms >= 0" whichever was
    # wrong, once the reactor ran; nan and --size 70000 were taken.
    from udp_train import parse_args

    with pytest.raises(SystemExit):
        parse_args(argv)
    assert error in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x", "only http:// URLs are supported, got 'ftp://x'"),
        ("http://127.0.0.1:99999/", "'http://127.0.0.1:99999/': the port must be 1..65535"),
        ("http://nonexist.invalid/", "'http://nonexist.invalid/': cannot resolve nonexist.invalid"),
    ],
)
def test_http_get_url_is_checked_as_it_is_parsed(
    url: str, message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A port out of range and a name that does not resolve were `http_get.py: Port out of
    # range 0-65535` and `http_get.py: [Errno -2] Name or service not known` (naming
    # neither the URL nor the name), after the link had started; ftp:// was `error: ...`.
    import socket

    from http_get import http_target, mlet, parse_args

    def resolve(name: str) -> str:  # no resolver asked
        if name == "127.0.0.1":
            return name
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "gethostbyname", resolve)
    with pytest.raises(SystemExit) as e:
        parse_args(["--url", url])
    assert e.value.code == 2
    assert f": error: argument --url: {message}" in capsys.readouterr().err
    run = mlet(None, [url])  # as a `pktlab xpmgr` mlet: the usage-error status (session 31)
    with pytest.raises(SystemExit) as e:
        run.send(None)
    assert e.value.code == 2 and capsys.readouterr().err.startswith(message)
    assert http_target("http://127.0.0.1:8080/x") == ("127.0.0.1", 8080, "/x")
    assert parse_args(["--url", "http://127.0.0.1/"]).url == "http://127.0.0.1/"
