"""`pktlab xpmgr`'s command line (PROTOCOL.md §7.1): ADDR[:PORT] forms, bad values."""

from __future__ import annotations

import argparse

import pytest

from packetlab.cli.xpmgr import add_arguments, run
from packetlab.controller.xpmgr import HostPort, parse_host_port


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("127.0.0.1", HostPort("127.0.0.1", 20556)),
        ("127.0.0.1:0", HostPort("127.0.0.1", 0)),
        ("localhost:2000", HostPort("localhost", 2000)),
        ("::1", HostPort("::1", 20556)),  # a bare IPv6 address: the default port
        ("fe80::1%lo", HostPort("fe80::1%lo", 20556)),
        ("[::1]", HostPort("::1", 20556)),
        ("[::1]:20600", HostPort("::1", 20600)),
        ("[2001:db8::7]:65535", HostPort("2001:db8::7", 65535)),
    ],
)
def test_addresses(text: str, want: HostPort) -> None:
    assert parse_host_port(text, 20556) == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[::1]:99999", "PORT 0..65535"),
        ("127.0.0.1:-1", "PORT 0..65535"),
        ("127.0.0.1:\u0663", "PORT 0..65535"),  # an Arabic-Indic 3: not an ASCII port
        ("127.0.0.1:", "PORT 0..65535"),
        (":20556", "PORT 0..65535"),
        ("[::1", "expected [IPv6]:PORT"),
        ("[::1]x", "expected [IPv6]:PORT"),
        ("[localhost]:1", "is not an IPv6 address"),
        ("::1:20556x", "is written [ADDR]:PORT"),
        ("1:2:3", "is written [ADDR]:PORT"),
        # session 32: `Couldn't listen on fe80::1:0: [Errno 22] Invalid argument.`
        ("[fe80::1]:0", "the link-local address fe80::1 needs its interface"),
    ],
)
def test_bad_addresses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=None) as e:
        parse_host_port(text, 20556)
    assert message in str(e.value)


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_mlet_args_may_look_like_options() -> None:
    a = args("-s", "-n", "3", "./mlet", "-n", "9", "--x")
    assert a.singleton and a.attempts == 3
    assert (a.mlet, a.mlet_args) == ("./mlet", ["-n", "9", "--x"])


@pytest.mark.parametrize("count", ["\u0663", " 3", "3_0", "+3", "-1", "1e3", ""])
def test_attempt_counts_are_ascii_decimals(count: str, capsys: pytest.CaptureFixture[str]) -> None:
    """int() took an Arabic-Indic 3, " 3", "3_0" and "+3"."""
    with pytest.raises(SystemExit) as e:
        args("-n", count, "m")
    assert e.value.code == 2
    assert f"argument -n: expected a whole number of endpoints, got {count!r}" in (
        capsys.readouterr().err
    )


def test_a_huge_attempt_count_is_taken() -> None:
    assert args("-n", "9" * 30, "m").attempts == int("9" * 30)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("-n", "0", "m"), "-n must be at least 1"),
        (("-p", "1.2.3.4;sni_key=x", "m"), "-p '1.2.3.4;sni_key=x': characters"),
        (("-p", "1.2.3.4:99999", "m"), "PORT 0..65535"),
        (("-p", "127.0.0.1:0", "m"), "-p '127.0.0.1:0': port 0 cannot be published"),
        (("-p", "::1:0", "m"), "port 0 cannot be published"),
        (("-p", "", "m"), "-p '': empty"),
        (("-p", "h" * 256, "m"), "256 characters (at most 255)"),
        (("-i", "host!", "m"), "-i 'host!': characters"),
    ],
)
def test_bad_values_stop_before_anything_runs(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(args(*argv)) == 2
    assert message in capsys.readouterr().err


def test_a_glob_hostid_is_fine() -> None:
    from packetlab.cli.xpmgr import _xdescr_value_problem

    assert _xdescr_value_problem("myhost*", glob=True) is None
    assert _xdescr_value_problem("[::1]:20556", glob=False) is None


@pytest.fixture(scope="module")
def conf(tmp_path_factory: pytest.TempPathFactory) -> str:
    from packetlab.cli.init import init_home
    from packetlab.ppks import PktlabHome

    home = PktlabHome.at(tmp_path_factory.mktemp("cli") / "home")
    init_home(home)
    return str(home.root / "xpmgr.conf")


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (("--results", "/nonexistent/r.jsonl"), 1, "--results: cannot write /nonexistent/r.jsonl"),
        (("-a", "[::1]:x"), 2, "-a: bad address"),
    ],
)
def test_unusable_results_file_or_address_is_a_clear_error(
    conf: str, argv: tuple[str, ...], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(args("-c", conf, *argv, "/bin/true")) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_publication_options_without_a_publication_are_warned_about(
    conf: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-i lab1 -p HOST:PORT` with `EnableExpPublication 0` (pktlab init's xpmgr.conf)
    published nothing, without a word."""
    assert run(args("-c", conf, "-i", "lab1", "-p", "192.0.2.7:20556", "-a", "[::1]:x", "x")) == 2
    err = capsys.readouterr().err
    assert (
        f"pktlab xpmgr: warning: -p and -i only shape a publication, and {conf} has "
        "EnableExpPublication 0: nothing is published" in err
    )
    assert run(args("-c", conf, "-a", "[::1]:x", "x")) == 2
    assert "warning" not in capsys.readouterr().err
