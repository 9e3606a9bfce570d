"""`pktlab run traceroute` Paris methods through a real per-flow load balancer, and hop
names from the endpoint's resolver against native traceroute (root, namespaces).

The load balancer is Linux's own: r1 has an equal-cost route to the target's network via
ra and rb and hashes on the 5-tuple (net.ipv4.fib_multipath_hash_policy=1), as routers
with ECMP do::

    ep — r1 —— ra —— r2 — tg
          \\__ rb __/
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import readline
from test_pktlab_run import RUN, env

from packetlab.testbed import Testbed, Topology

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: raw sockets, eBPF, network namespaces")
    monkeypatch.setenv("PKTLAB_TESTBED_DIR", str(tmp_path))
    monkeypatch.setenv("PKTLAB_TESTBED_PREFIX", f"ppn{os.getpid() % 100000}-")
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "pktlab-home"))


def diamond() -> Topology:
    topo = Topology(kind="custom")
    for name in ("ep", "r1", "ra", "rb", "r2", "tg"):
        topo.add_node(name, router=name.startswith("r"))
    for a, b in (("ep", "r1"), ("r1", "ra"), ("r1", "rb"), ("ra", "r2"), ("rb", "r2")):
        topo.add_link(a, b)
    topo.add_link("r2", "tg")
    return topo


@pytest.fixture
def ecmp(testbed_factory: Callable[..., Testbed]) -> Testbed:
    return ecmp_diamond(testbed_factory)


def ecmp_diamond(testbed_factory: Callable[..., Testbed]) -> Testbed:
    """The diamond, r1 balancing per flow (5-tuple) over ra and rb."""
    tb = testbed_factory(diamond())
    net = tb.topology.link_interfaces(tb.topology.link_between("r2", "tg"))[0].ipv4.network
    ra, rb = tb.addr("ra"), tb.addr("rb")
    # hash L4 ports, with a fixed seed (the kernel's default is random at boot): a trace
    # with a fixed --sport takes the same branches every run
    tb.ns("r1").set_sysctls({
        "net.ipv4.fib_multipath_hash_policy": 1,
        "net.ipv4.fib_multipath_hash_seed": 7919,
    })  # fmt: skip
    tb.run(
        "r1",
        ["ip", "route", "replace", str(net), "nexthop", "via", str(ra), "nexthop", "via",
         str(rb)],
    )  # fmt: skip
    return tb


def trace(tb: Testbed, *args: str) -> list[dict[str, object]]:
    argv = ["ip", "netns", "exec", tb.netns_name("ep"), *RUN, "traceroute", "--json", "-n"]
    got = subprocess.run(
        [*argv, *args, str(tb.addr("tg"))], capture_output=True, text=True, timeout=90,
        env=env(), cwd=REPO, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    return [json.loads(line) for line in got.stdout.splitlines()]


def second_hops(lines: list[dict[str, object]]) -> set[object]:
    """The addresses that answered at TTL 2 (where r1 balances), None for a lost one."""
    return {x["addr"] for x in lines if x["type"] == "hop" and x["ttl"] == 2}


def test_classic_udp_probes_are_spread_over_both_paths(ecmp: Testbed) -> None:
    # 20 flows (destination port 33434 + n, 40000 + n): all on one path has a 2**-19 chance
    lines = trace(ecmp, "-q", "10", "-m", "4")
    again = trace(ecmp, "-q", "10", "-m", "4", "-p", "40000")
    answered = (second_hops(lines) | second_hops(again)) - {None}  # (None: a lost answer)
    assert answered == {str(ecmp.addr("ra")), str(ecmp.addr("rb"))}
    assert lines[-1]["method"] == "udp" and lines[-1]["reached"]


@pytest.mark.parametrize("how", [["--paris"], ["-P", "udp-paris"], ["--paris", "-I"]])
def test_paris_probes_keep_one_path(ecmp: Testbed, how: list[str]) -> None:
    paths = set()
    for sport in ("40001", "40002", "40003", "40004", "40005", "40006"):
        lines = trace(ecmp, *how, "-q", "8", "-m", "4", "--sport", sport)
        # (an answer may be lost on a loaded host, e.g. to the global ICMP rate limit that
        # other tests share: the path is what counts)
        hop2 = second_hops(lines) - {None}
        assert len(hop2) == 1, f"--sport {sport}: one flow, yet hop 2 was {hop2}"
        paths |= hop2
        summary = lines[-1]
        assert summary["probe_count"] == 32
        assert summary["method"] == ("icmp-paris" if "-I" in how else "udp-paris")
    assert paths <= {str(ecmp.addr("ra")), str(ecmp.addr("rb"))}


# -- hop names ------------------------------------------------------------------------------


@pytest.fixture
def named(testbed_factory: Callable[..., Testbed]) -> Iterator[Testbed]:
    """A chain whose ep resolves with a PTR server on tg (ep's /etc/netns resolv.conf, as
    `ip netns exec` mounts it for both tools)."""
    if shutil.which("traceroute") is None:
        pytest.skip("needs traceroute (apt-get install traceroute)")
    tb = testbed_factory(hops=2)
    server = str(tb.addr("tg"))
    table = {str(tb.addr("r1")): "r1.example.test.", server: "tg.example.test."}
    proc = tb.popen(
        "tg",
        [sys.executable, str(HERE / "ptr_server.py"), server, "53", json.dumps(table)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert readline(proc.stdout) == "ready\n"
    etc = Path("/etc/netns") / tb.netns_name("ep")
    etc.mkdir(parents=True)
    try:
        (etc / "resolv.conf").write_text(f"nameserver {server}\n")
        yield tb
    finally:
        shutil.rmtree(etc)
        proc.kill()
        proc.wait()


def test_hops_are_named_as_native_traceroute_names_them(named: Testbed) -> None:
    dst = str(named.addr("tg"))
    ns = named.netns_name("ep")
    ours = subprocess.run(
        ["ip", "netns", "exec", ns, *RUN, "traceroute", "-q", "3", dst], capture_output=True,
        text=True, timeout=60, env=env(), cwd=REPO, check=False,
    )  # fmt: skip
    assert ours.returncode == 0, ours.stderr
    native = subprocess.run(
        ["ip", "netns", "exec", ns, "traceroute", "-q", "3", dst], capture_output=True,
        text=True, timeout=60, check=True,
    )  # fmt: skip

    def names(text: str) -> list[list[str]]:
        return [line.split()[:3] for line in text.splitlines()[1:]]

    r2 = str(named.addr("r2"))
    want = [["1", "r1.example.test", f"({named.addr('r1')})"], ["2", r2, f"({r2})"]]
    want.append(["3", "tg.example.test", f"({dst})"])
    assert names(ours.stdout) == names(native.stdout) == want
    # -n: no lookups, addresses only; --json --names names each hop
    bare = subprocess.run(
        ["ip", "netns", "exec", ns, *RUN, "traceroute", "-n", "-q", "1", dst], capture_output=True,
        text=True, timeout=60, env=env(), cwd=REPO, check=True,
    )  # fmt: skip
    assert [line.split()[1] for line in bare.stdout.splitlines()[1:]] == [
        str(named.addr("r1")), r2, dst,
    ]  # fmt: skip
    js = subprocess.run(
        ["ip", "netns", "exec", ns, *RUN, "traceroute", "--json", "--names", "-q", "1", dst],
        capture_output=True, text=True, timeout=60, env=env(), cwd=REPO, check=True,
    )  # fmt: skip
    hops = [json.loads(x) for x in js.stdout.splitlines()][:-1]
    assert [h["name"] for h in hops] == ["r1.example.test", None, "tg.example.test"]
