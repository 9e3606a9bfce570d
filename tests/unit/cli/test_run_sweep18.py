"""Session 18's sweep of everyday `ping` and `traceroute` command lines (trace18): what
differed from iputils ping 20221126 and Butskoy traceroute 2.1, over fakes (a scripted
getaddrinfo, a task.Clock report); side by side in
tests/integration/test_sweep18_like_native.py."""

from __future__ import annotations

import argparse
import ipaddress
import socket
from typing import Any

import pytest
from twisted.internet.task import Clock

from packetlab.cli import run_host, run_ping_echo
from packetlab.cli.report_ping import PingReport
from packetlab.cli.run import RunError, build_parser, resolve_target

V4, V6 = "10.77.3.2", "fd00:77:3::2"


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["ping", *argv])


@pytest.mark.parametrize(
    ("argv", "count"),
    [
        (["-w", "2"], 2),  # ping -w 2: requests at 0 and 1 s; the alarm at 2 s comes first
        (["-w", "2", "-i", "0.5"], 4),
        (["-w", "1", "-i", "0.1"], 10),
        (["-w", "1", "-i", "0.3"], 4),  # 0, 0.3, 0.6, 0.9
        (["-w", "0.9", "-i", "0.3"], 3),  # (0.9 / 0.3 is 3.0000000000000004)
        (["-w", "0.1", "-i", "1"], 1),
    ],
)
def test_w_sends_the_requests_due_before_the_deadline(argv: list[str], count: int) -> None:
    """Was one more (`int(w / i) + 1`): `ping -w 2` sent 3, iputils 2."""
    assert run_ping_echo.ping_count(parse(*argv, "x")) == count


def _getaddrinfo(table: dict[str, list[str]]) -> Any:
    def fake(host: str, port: Any, family: int = 0, *rest: Any) -> list[Any]:
        if host.startswith("idna"):
            raise UnicodeError("label empty or too long")
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for a in table[host]:
            af = socket.AF_INET6 if ":" in a else socket.AF_INET
            if family in (socket.AF_UNSPEC, af):
                out.append((af, socket.SOCK_DGRAM, 17, "", (a, 0)))
        if not out:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return out

    return fake


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {"both": [V6, V4], "six": [V6], "four": [V4]}  # (glibc's order: IPv6 first)
    monkeypatch.setattr(socket, "getaddrinfo", _getaddrinfo(table))


@pytest.mark.usefixtures("names")
def test_traceroute_takes_ipv4_first_without_a_family() -> None:
    """Butskoy traceroute's DEFAULT_AF: `traceroute both` goes to the IPv4 address
    (was the first one, IPv6 here); ping keeps getaddrinfo's first."""
    assert resolve_target("both", None, like="traceroute") == ipaddress.ip_address(V4)
    assert resolve_target("both", 6, like="traceroute") == ipaddress.ip_address(V6)
    assert resolve_target("six", None, like="traceroute") == ipaddress.ip_address(V6)
    assert resolve_target("both", None, like="ping") == ipaddress.ip_address(V6)
    assert resolve_target("both", 4, like="ping") == ipaddress.ip_address(V4)


@pytest.mark.usefixtures("names")
@pytest.mark.parametrize(
    ("target", "family", "like", "said"),
    [
        ("nosuch", None, "ping", "nosuch: Name or service not known"),
        ("nosuch", None, "traceroute", "nosuch: Name or service not known"),
        ("idna..x", None, "traceroute", "idna..x: Name or service not known"),
        ("four", 6, "ping", "four: Address family for hostname not supported"),
        ("four", 6, "traceroute", "four: Name or service not known"),
        ("127.0.0.1", 6, "ping", "127.0.0.1: Address family for hostname not supported"),
        ("::1", 4, "traceroute", "::1: Address family for hostname not supported"),
        # the other measurements keep their words
        ("nosuch", None, None, "cannot resolve 'nosuch': Name or service not known"),
        ("::1", 4, None, "::1 is an IPv6 address, but -4 was given"),
    ],
)
def test_a_target_that_does_not_resolve_in_the_tools_words(
    target: str, family: int | None, like: str | None, said: str
) -> None:
    """iputils: `ping: NAME: REASON`; traceroute: `NAME: REASON` (then a `Cannot handle`
    line, left out: one line); was `cannot resolve 'NAME': REASON`."""
    with pytest.raises(RunError) as e:
        resolve_target(target, family, like=like)
    assert str(e.value) == said


def test_traceroute_i_errors_name_i() -> None:
    """`traceroute -i nosuch` said `-I nosuch: ...` (ping's option)."""
    with pytest.raises(RunError, match=r"^-i nosuch0x: no such interface"):
        run_host.interface_address("nosuch0x", 4, option="-i")
    with pytest.raises(RunError, match=r"^-I nosuch0x: no such interface"):
        run_host.interface_address("nosuch0x", 4)


def test_ping6_header_names_the_target(capsys: pytest.CaptureFixture[str]) -> None:
    """iputils' ping6 header: `PING NAME(NAME (ADDR)) 56 data bytes` when the address has
    a name (was `PING NAME(ADDR)`); the address alone without one, or with -n."""
    r = PingReport(Clock(), False, V6, name="tg6", count=1, size=56)
    r.names = {V6: "tg6"}
    r.start("fd00:77:1::1")
    assert capsys.readouterr().out == f"PING tg6(tg6 ({V6})) 56 data bytes\n"
    r = PingReport(Clock(), False, V6, name="tg6", count=1, size=56)
    r.names = {V6: None}
    r.start("fd00:77:1::1")
    assert capsys.readouterr().out == f"PING tg6({V6}) 56 data bytes\n"
    r = PingReport(Clock(), False, V6, name=None, count=1, size=56)
    r.start("fd00:77:1::1")
    assert capsys.readouterr().out == f"PING {V6}({V6}) 56 data bytes\n"
