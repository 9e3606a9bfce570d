"""Session 28 (icmp28): `pktlab run traceroute` and `run ping` beside traceroute 2.1.2,
iputils tracepath and ping 20221126 on a 3-router chain whose r2-r3 link has an MTU of
1400 (IPv4 and IPv6). `-F` with a packetlen over the endpoint's own MTU: traceroute
shows its kernel's local EMSGSIZE as `*  0.183 ms !F-1500` for each probe and ends (exit
0), ours failed the run (`could not send a 2000 byte probe`, exit 2). `--mtu` finds the
MTU tracepath's `Resume: pmtu N` reports, at the hop traceroute's `F=N` names. `ping -M
do` over the endpoint's MTU: iputils' local errors (`+2 errors`, exit 1), ours failed the
run (exit 2); ping6's after a "packet too big": ours lost the request its kernel refused.

Every node's route cache is flushed before each tool: a path MTU one run taught a kernel
would be the next run's start.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from test_pktlab_run import pktlab_run
from test_run_like_native import beside_native, masked, native

from packetlab.testbed import Testbed

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = [pytest.mark.root]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside_native(tmp_path, monkeypatch, f"mtu28{os.getpid() % 10000}-", home=False)


def narrow(testbed_factory: Callable[..., Testbed]) -> Testbed:
    """A 3-router chain, the r2-r3 link 1400 bytes."""
    tb: Testbed = testbed_factory(hops=3)
    tb.run("r2", ["ip", "link", "set", "to-r3", "mtu", "1400"])
    tb.run("r3", ["ip", "link", "set", "to-r2", "mtu", "1400"])
    return tb


def flushed(tb: Testbed) -> None:
    """Every node's learnt path MTUs forgotten (tg's too: its replies cross the link)."""
    for node in ("ep", "r1", "r2", "r3", "tg"):
        for family in ("-4", "-6"):
            tb.run(node, ["ip", family, "route", "flush", "cache"])


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_df_probes_over_the_endpoints_mtu_as_traceroute_shows_them(
    testbed_factory: Callable[..., Testbed], family: int
) -> None:
    tb = narrow(testbed_factory)
    ns, tg = tb.netns_name("ep"), str(tb.addr("tg", family))
    argv = ["-n", f"-{family}", "-F", tg, "2000"]
    flushed(tb)
    theirs = native("traceroute", *argv, netns=ns)
    flushed(tb)
    ours = pktlab_run("traceroute", *argv, netns=ns)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert masked(ours.stdout) == masked(theirs.stdout)
    assert masked(ours.stdout)[1] == " 1  *  R ms !F-1500 *  R ms !F-1500 *  R ms !F-1500"
    assert ours.stderr == theirs.stderr == ""


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_mtu_discovery_finds_tracepaths_pmtu_where_traceroute_does(
    testbed_factory: Callable[..., Testbed], family: int
) -> None:
    """`--mtu`: `F=1500` at hop 1 and `F=1400` at hop 3 (the first past r2), as
    traceroute; tracepath's `pmtu 1400` line names r2 (the router that said so, on its
    TTL-3 line) and its `Resume: pmtu 1400 hops 4 back 4`."""
    if shutil.which("tracepath") is None:
        pytest.skip("needs tracepath (iputils-tracepath)")
    tb = narrow(testbed_factory)
    ns, tg = tb.netns_name("ep"), str(tb.addr("tg", family))
    argv = ["-n", f"-{family}", "--mtu", tg]
    flushed(tb)
    theirs = native("traceroute", *argv, netns=ns)
    flushed(tb)
    ours = pktlab_run("traceroute", *argv, netns=ns)
    flushed(tb)
    path = native("tracepath", "-n", f"-{family}", tg, netns=ns)
    assert ours.returncode == theirs.returncode == path.returncode == 0, ours.stderr
    assert masked(ours.stdout) == masked(theirs.stdout)
    ours_f = re.findall(r"^ ?(\d+) .* F=(\d+)", ours.stdout, re.M)
    assert ours_f == [("1", "1500"), ("3", "1400")]
    resume = re.search(r"Resume: pmtu (\d+) hops (\d+)", path.stdout)
    assert resume is not None, path.stdout
    assert resume.groups() == ("1400", "4")
    r2 = re.escape(str(tb.addr("r2", family)))
    assert re.search(rf"^ 3:  {r2} .*pmtu 1400", path.stdout, re.M), path.stdout


@pytest.mark.parametrize(
    ("family", "size", "count"),
    [(4, 1500, 2), (6, 1500, 2), (4, 1400, 3), (6, 1400, 3)],
    ids=["ipv4-1500", "ipv6-1500", "ipv4-1400", "ipv6-1400"],
)
def test_pmtudisc_do_local_errors_as_iputils(
    testbed_factory: Callable[..., Testbed], family: int, size: int, count: int
) -> None:
    """`-M do -s 1500`: every request over the interface's 1500, a local error each; `-s
    1400`: the first answered "too big" by r2, the others local errors at 1400."""
    tb = narrow(testbed_factory)
    ns, tg = tb.netns_name("ep"), str(tb.addr("tg", family))
    argv = ["-n", f"-{family}", "-M", "do", "-s", str(size), "-c", str(count), "-i", "0.2", tg]
    flushed(tb)
    theirs = native("ping", *argv, netns=ns)
    flushed(tb)
    ours = pktlab_run("ping", *argv, netns=ns)
    assert ours.returncode == theirs.returncode == 1, ours.stderr
    assert masked(ours.stdout) == masked(theirs.stdout)
    assert f"{count} packets transmitted, 0 received, +{count} errors" in ours.stdout
    mine = [x.removeprefix("pktlab run ") for x in ours.stderr.splitlines()]
    assert mine == theirs.stderr.splitlines()
    assert len(mine) == (count if size == 1500 else count - 1), mine
