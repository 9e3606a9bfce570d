"""Session 18's sweep (trace18): everyday `ping` and `traceroute` command lines that
differed from iputils ping 20221126 and Butskoy traceroute 2.1, side by side (root): the
same stdout once RTTs and times are masked, the same status, the same error words.
Names come from a hosts file of the testbed's `ep` namespace (`ip netns exec` reads
/etc/netns/NS/hosts), removed afterwards."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_pktlab_run import pktlab_run
from test_run_like_native import QUICK_DNS, beside_native, masked, native

from packetlab.testbed import Testbed

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside_native(tmp_path, monkeypatch, f"trace18{os.getpid() % 10000}-")


def said(stderr: str) -> str:
    """The first stderr line without the program's name (`ping: `, `pktlab run ping: `);
    traceroute's second line (`Cannot handle "host" cmdline arg ...`) is compared apart."""
    first = stderr.splitlines()[0] if stderr else ""
    return re.sub(r"^(pktlab run )?(ping|traceroute): ", "", first)


@pytest.mark.parametrize(
    "args", [["-w", "1", "-i", "0.25", "127.0.0.1"], ["-w", "1", "-i", "0.2", "-q", "::1"]]
)
def test_ping_w_sends_what_iputils_sends(args: list[str]) -> None:
    """`ping -w 1 -i 0.25`: 4 requests (0 to 0.75 s); ours sent a fifth at 1 s."""
    ours, theirs = pktlab_run("ping", *args), native("ping", *args)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert masked(ours.stdout) == masked(theirs.stdout), args


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("ping", ["-c", "1", "-6", "127.0.0.1"]),
        ("ping", ["-c", "1", "-4", "::1"]),
        ("ping", ["-c", "1", "-6", "localhost"]),  # a name of one family only
        ("ping", ["-c", "1", "a..b"]),
        ("traceroute", ["-6", "127.0.0.1"]),
        ("traceroute", ["-n", "a..b"]),
    ],
)
def test_a_target_that_does_not_resolve_in_the_tools_words(tool: str, args: list[str]) -> None:
    """Was `cannot resolve 'a..b': ...` / `127.0.0.1 is an IPv4 address, but -6 was given`."""
    ours, theirs = pktlab_run(tool, *args), native(tool, *args)
    assert ours.returncode == theirs.returncode == 2, ours.stderr
    assert ours.stdout == theirs.stdout == ""
    assert said(ours.stderr) == said(theirs.stderr), (ours.stderr, theirs.stderr)
    if tool == "ping":
        assert len(ours.stderr.splitlines()) == 1
    else:  # traceroute's second line too since session 25 (trace25; was left out)
        assert ours.stderr.splitlines()[1:] == theirs.stderr.splitlines()[1:] != []


@pytest.fixture
def named(testbed_factory: Callable[..., Testbed]) -> Iterator[tuple[Testbed, str]]:
    """A 2-router testbed whose `ep` has names for the target: tg4 (IPv4), tg6 (IPv6) and
    tgboth (both, IPv6 first as glibc orders them)."""
    tb: Testbed = testbed_factory(hops=2)
    ns = tb.netns_name("ep")
    tg, tg6 = str(tb.addr("tg")), str(tb.addr("tg", 6))
    where = Path("/etc/netns") / ns
    where.mkdir(parents=True)
    try:
        (where / "hosts").write_text(
            f"127.0.0.1 localhost\n{tg} tg4\n{tg6} tg6\n{tg6} tgboth\n{tg} tgboth\n"
        )
        yield tb, ns
    finally:
        shutil.rmtree(where, ignore_errors=True)


def test_names_as_ping_and_traceroute_take_them(named: tuple[Testbed, str]) -> None:
    """ping6's header names the target (`PING tg6(tg6 (ADDR))`, was `PING tg6(ADDR)`);
    traceroute goes to a name's IPv4 address when no family is given (it went to the
    first, IPv6); `-6` with an IPv4-only name in each tool's words."""
    _, ns = named
    for tool, args in (
        ("ping", ["-c", "1", "tg6"]),
        ("ping", ["-c", "1", "-6", "tgboth"]),
        ("ping", ["-c", "1", "-n", "tg6"]),
        ("traceroute", ["-q", "1", "tgboth"]),
        ("traceroute", ["-q", "1", "-6", "tgboth"]),
    ):
        # The hops' reverse lookups find no nameserver from the namespace: each tool
        # waited the resolver's 5 s for each; 1 s for both (the names come from hosts).
        ours = pktlab_run(tool, *args, netns=ns, wrap=QUICK_DNS)
        theirs = native(*QUICK_DNS, tool, *args, netns=ns)
        assert ours.returncode == theirs.returncode == 0, (args, ours.stderr)
        assert masked(ours.stdout) == masked(theirs.stdout), args
    ours = pktlab_run("ping", "-c", "1", "-6", "tg4", netns=ns)
    theirs = native("ping", "-c", "1", "-6", "tg4", netns=ns)
    assert ours.returncode == theirs.returncode == 2
    assert said(ours.stderr) == said(theirs.stderr)
    assert said(ours.stderr) == "tg4: Address family for hostname not supported"


def test_traceroute_i_names_its_own_option() -> None:
    """`traceroute -i nosuch0`: the error names -i (it said -I, ping's option)."""
    ours = pktlab_run("traceroute", "-n", "-i", "nosuch0", "127.0.0.1")
    assert ours.returncode == 2 and ours.stdout == ""
    assert ours.stderr.startswith("pktlab run traceroute: -i nosuch0: no such interface")
    assert "Traceback" not in ours.stderr
