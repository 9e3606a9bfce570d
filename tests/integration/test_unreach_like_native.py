"""Session 20 (trace20): unreachable and silent targets, side by side with iputils ping
20221126 and Butskoy traceroute 2.1 (root): routers that answer "no route", "prohibited"
or, after their neighbour discovery fails, "address unreachable", and a blackhole. IPv6
only where the routers answer: Linux rate-limits an IPv4 router's unreachables
(`ip_error`, 5 then 1 a second, not per namespace), so IPv4 `!N`/`!X` need 6 s between
the tools (docs/usability.md, session 18)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from test_pktlab_run import pktlab_run
from test_run_like_native import beside_native, masked, native, rendered

from packetlab.testbed import Testbed

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

NO_ROUTE, PROHIBITED, BLACKHOLE = "fd00:88:1::5", "fd00:88:2::5", "10.88.3.5"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside_native(tmp_path, monkeypatch, f"trace20{os.getpid() % 10000}-", home=False)


@pytest.fixture
def ns(testbed_factory: Callable[..., Testbed]) -> str:
    """A 2-router chain whose r2 has no route to fd00:88:1::/64, a prohibit route to
    fd00:88:2::/64 and a blackhole for 10.88.3.0/24 (r1 sends them all to r2)."""
    tb: Testbed = testbed_factory(hops=2)
    tb.run("r1", ["ip", "-6", "route", "add", "fd00:88::/32", "via", "fd00:77:2::2"])
    tb.run("r1", ["ip", "route", "add", "10.88.0.0/16", "via", "10.77.2.2"])
    tb.run("r2", ["ip", "-6", "route", "add", "prohibit", "fd00:88:2::/64"])
    tb.run("r2", ["ip", "route", "add", "blackhole", "10.88.3.0/24"])
    return tb.netns_name("ep")


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("traceroute", ["-n", "-q", "2", NO_ROUTE]),  # !N
        ("traceroute", ["-n", "-I", "-q", "2", PROHIBITED]),  # !X
        ("traceroute", ["-n", "-q", "1", "-w", "1", "-m", "4", BLACKHOLE]),  # * after hop 1
        ("ping", ["-c", "2", "-i", "0.2", NO_ROUTE]),  # Destination unreachable: No route
        ("ping", ["-c", "2", "-i", "0.2", PROHIBITED]),  # ... Administratively prohibited
        ("ping", ["-w", "1", "-i", "0.3", BLACKHOLE]),  # the deadline, nothing back
    ],
)
def test_unreachable_and_silent_targets_as_the_tools_show_them(
    ns: str, tool: str, args: list[str]
) -> None:
    ours, theirs = pktlab_run(tool, *args, netns=ns), native(tool, *args, netns=ns)
    assert ours.returncode == theirs.returncode, (ours.stderr, theirs.stdout)
    assert masked(ours.stdout) == masked(theirs.stdout), args


def test_ping6_address_unreachable_has_no_pipe_as_ping6(ns: str) -> None:
    """fd00:77:3::99 is on r2's link to tg but nobody's: r2's neighbour discovery gives
    up after ~3 s and answers both requests "Address unreachable". ping6 reads those
    errors from its error queue, which acknowledges nothing: no `pipe 2` (ours printed it)."""
    args = ["-c", "2", "-i", "0.2", "fd00:77:3::99"]
    ours, theirs = pktlab_run("ping", *args, netns=ns), native("ping", *args, netns=ns)
    assert ours.returncode == theirs.returncode == 1, ours.stderr
    assert masked(ours.stdout) == masked(theirs.stdout)
    assert "Destination unreachable: Address unreachable" in ours.stdout
    assert "pipe" not in theirs.stdout and "pipe" not in ours.stdout


def test_ping_flood_errors_leave_the_line_ping_leaves(ns: str) -> None:
    """-f to a prohibited prefix: ping sends one request at a time (`.\\bE` each), ours
    several before their errors; the line must read the same (`EEE`; ours read `..E`)."""
    args = ["-f", "-c", "3", PROHIBITED]
    ours, theirs = pktlab_run("ping", *args, netns=ns), native("ping", *args, netns=ns)
    assert ours.returncode == theirs.returncode == 1, ours.stderr
    screen = [x.rstrip() for x in masked(rendered(ours.stdout))]
    assert screen == [x.rstrip() for x in masked(rendered(theirs.stdout))]
    assert "EEE" in screen
