"""Child environment, exit statuses and the CLI's helpers of pktlab wrap."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.python.failure import Failure

from packetlab.cli.wrap import (
    WrapError,
    build_parser,
    check_timings_path,
    dns_server,
    resolv_conf_servers,
)
from packetlab.wrap.launch import (
    LaunchError,
    child_env,
    exit_status,
    find_program,
    inherited_fds,
    preload_ignored,
    proxychains_conf,
    terminal_sent,
)


def test_proxychains_env_drops_proxy_variables_and_keeps_preloads() -> None:
    env = child_env(
        {"ALL_PROXY": "x", "https_proxy": "y", "LD_PRELOAD": "/old.so", "PATH": "/bin"},
        host="127.0.0.1", port=1080, conf_path="/tmp/pc.conf",
        preload=["/pc.so", "/clock.so"], clock_path="/tmp/clock",
    )  # fmt: skip
    assert "ALL_PROXY" not in env and "https_proxy" not in env
    assert env["LD_PRELOAD"] == "/pc.so /clock.so /old.so"
    assert env["PROXYCHAINS_CONF_FILE"] == "/tmp/pc.conf"
    assert env["PKTLAB_WRAP_CLOCK"] == "/tmp/clock" and env["PATH"] == "/bin"


def test_socks_env_mode_sets_all_proxy_only() -> None:
    env = child_env(
        {"NO_PROXY": "localhost"}, host="127.0.0.1", port=1080, conf_path=None,
        preload=[], clock_path=None,
    )  # fmt: skip
    assert env["ALL_PROXY"] == env["all_proxy"] == "socks5h://127.0.0.1:1080"
    assert "NO_PROXY" not in env and "LD_PRELOAD" not in env


def test_proxychains_conf_names_our_server() -> None:
    conf = proxychains_conf("127.0.0.1", 4321, 35)
    assert "socks5 127.0.0.1 4321" in conf and "proxy_dns" in conf
    assert "tcp_read_time_out 35000" in conf and "localnet" not in conf


def test_exit_status_like_a_shell() -> None:
    assert exit_status(Failure(ProcessDone(0))) == 0
    assert exit_status(Failure(ProcessTerminated(exitCode=3))) == 3
    assert exit_status(Failure(ProcessTerminated(signal=9))) == 137


def test_find_program(tmp_path: Path) -> None:
    assert find_program("sh").endswith("/sh")
    with pytest.raises(LaunchError) as e:
        find_program("no-such-program-pktlab")
    assert e.value.status == 127
    f = tmp_path / "data"
    f.write_text("x")
    with pytest.raises(LaunchError) as e:
        find_program(str(f))
    assert e.value.status == 126


def test_resolv_conf(tmp_path: Path) -> None:
    p = tmp_path / "resolv.conf"
    p.write_text("# c\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\nsearch x\n")
    assert resolv_conf_servers(str(p)) == ["10.0.0.53", "fe80::1"]
    assert resolv_conf_servers(str(tmp_path / "missing")) == []


def test_dns_server_option() -> None:
    import argparse
    import ipaddress

    assert dns_server("10.0.0.53") == (ipaddress.ip_address("10.0.0.53"), 53)
    assert dns_server("10.0.0.53:5353") == (ipaddress.ip_address("10.0.0.53"), 5353)
    assert dns_server("[2001:db8::1]:54") == (ipaddress.ip_address("2001:db8::1"), 54)
    assert dns_server("2001:db8::1") == (ipaddress.ip_address("2001:db8::1"), 53)
    for bad in ("example.net", "10.0.0.1:0", "10.0.0.1:x"):
        with pytest.raises(argparse.ArgumentTypeError):
            dns_server(bad)


def test_parser_keeps_the_command_and_its_options() -> None:
    args = build_parser().parse_args(["--timings", "t", "--", "curl", "-s", "--max-time", "3"])
    assert args.command == ["--", "curl", "-s", "--max-time", "3"] and args.timings == "t"
    args = build_parser().parse_args(["--listen", "20556", "--insecure-plaintext", "--", "id"])
    assert args.listen == "20556" and args.insecure_plaintext and args.command == ["--", "id"]


def test_a_terminal_signal_to_the_programs_group_is_not_sent_twice() -> None:
    import signal

    # Ctrl-C / hang-up of the terminal whose foreground group is the program's: it has it
    assert terminal_sent(signal.SIGINT, 100, 100)
    assert terminal_sent(signal.SIGHUP, 100, 100)
    # a kill of our pid (SIGTERM), no terminal, or the program in another group: pass on
    assert not terminal_sent(signal.SIGTERM, 100, 100)
    assert not terminal_sent(signal.SIGINT, 100, None)
    assert not terminal_sent(signal.SIGINT, 100, 200)
    assert not terminal_sent(signal.SIGINT, None, 100)


def test_set_user_id_and_capability_programs_are_not_reached_by_ld_preload(
    tmp_path: Path,
) -> None:
    import os

    prog = tmp_path / "prog"
    prog.write_bytes(b"#!/bin/sh\n")
    prog.chmod(0o755)
    assert not preload_ignored(str(prog), euid=1000)
    prog.chmod(0o4755)
    assert preload_ignored(str(prog), euid=1000)
    assert not preload_ignored(str(prog), euid=0)  # root gains nothing: preloaded
    ping = "/usr/bin/ping"
    try:
        caps = os.path.exists(ping) and bool(os.getxattr(ping, "security.capability"))
    except OSError:
        caps = False
    if caps:
        assert preload_ignored(ping, euid=1000)


def test_a_time_option_out_of_range_says_the_range_it_takes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--connect-timeout 0 was refused as "must be 0..86400 seconds", a range that has 0
    in it (session 25)."""
    for bad in ("0", "-1", "86401", "nan"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--connect-timeout", bad, "--", "true"])
        err = capsys.readouterr().err
        assert f"must be more than 0 and at most 86400 seconds, got {bad}" in err
    assert build_parser().parse_args(["--wait", "0.5", "--", "true"]).wait == 0.5


def test_a_timings_file_that_cannot_be_written_is_one_line_with_the_option(
    tmp_path: Path,
) -> None:
    """Session 25: `--timings /nonexistent/x` said `[Errno 2] No such file or directory:
    '/nonexistent/x'`, after the endpoint had started."""
    for bad, why in ((tmp_path / "no" / "t.jsonl", "No such file or directory"),
                     (tmp_path, "Is a directory")):  # fmt: skip
        with pytest.raises(WrapError, match=f"^--timings {bad}: {why}$"):
            check_timings_path(str(bad))
    check_timings_path(str(tmp_path / "t.jsonl"))
    check_timings_path(None)


def test_inherited_fds_are_the_given_ones_not_ours(tmp_path: Path) -> None:
    """Session 25 (wrapb25): what `spawn` passes on past 0-2. A descriptor opened by
    Python is close-on-exec (ours); one marked inheritable (as a shell's `3<file`
    arrives) is passed on."""
    import os

    with open(tmp_path / "a", "wb") as ours, open(tmp_path / "b", "wb") as given:
        os.set_inheritable(given.fileno(), True)
        fds = inherited_fds()
        assert given.fileno() in fds and ours.fileno() not in fds
        assert all(fd > 2 for fd in fds)
