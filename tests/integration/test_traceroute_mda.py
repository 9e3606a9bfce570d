"""`pktlab run traceroute --mda`, `-P tcp-ack`, `-N` and the default `-q 3` layout against
scamper and Butskoy traceroute on the testbed (root, namespaces).

MDA runs on the per-flow ECMP diamond of test_traceroute_paris_names (r1 balances the
5-tuple over ra and rb): ours must find both branches, as scamper's tracelb does.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_pktlab_run import REPO, RUN, env
from test_traceroute_paris_names import ecmp_diamond, isolate

from packetlab.measure import native
from packetlab.testbed import Testbed
from packetlab.testbed.topology import Topology

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

# The MDA's first flow (its UDP source port; the next flows count up from it). The
# diamonds' balancers hash with fixed seeds, so a fixed first flow takes the same branches
# every run. With a random one (the default) the MDA is probabilistic by design: at 99 %
# its 8 flows at TTL 2 all took one branch of the ECMP diamond in 5 of 300 runs (1 in 128
# expected), at 99.9 % 1 in 1024 per balancer.
SPORT = "40000"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


@pytest.fixture
def ecmp(testbed_factory: Callable[..., Testbed]) -> Testbed:
    return ecmp_diamond(testbed_factory)


def ours(tb: Testbed, *args: str) -> list[dict[str, Any]]:
    argv = ["ip", "netns", "exec", tb.netns_name("ep"), *RUN, "traceroute", "--json", *args]
    got = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, env=env(), cwd=REPO, check=False
    )
    assert got.returncode == 0, got.stderr
    return [json.loads(line) for line in got.stdout.splitlines()]


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"needs {tool} (apt-get install {tool})")


def test_mda_finds_every_interface_as_scamper_tracelb_does(ecmp: Testbed) -> None:
    need("scamper")
    tg = str(ecmp.addr("tg"))
    lines = ours(ecmp, "--mda", "--confidence", "99.9", "--sport", SPORT, tg)
    hops = {x["ttl"]: set(x["addrs"]) for x in lines if x["type"] == "mda-hop"}
    name = {str(ecmp.addr(n)): n for n in ("r1", "ra", "rb", "r2", "tg")}
    assert {t: {name[a] for a in s} for t, s in hops.items()} == {
        1: {"r1"}, 2: {"ra", "rb"}, 3: {"r2"}, 4: {"tg"},
    }  # fmt: skip
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["measurement"] == "tracelb"
    assert summary["reached"] and summary["stop_reason"] == "COMPLETED"
    # the links found: r2 behind both branches
    (three,) = [x for x in lines if x.get("ttl") == 3]
    assert {tuple(link) for link in three["links"] if link[0] is not None} == {
        (str(ecmp.addr("ra")), str(ecmp.addr("r2"))),
        (str(ecmp.addr("rb")), str(ecmp.addr("r2"))),
    }
    theirs = subprocess.run(
        ["ip", "netns", "exec", ecmp.netns_name("ep"), "scamper", "-O", "json", "-c",
         "tracelb -P udp-sport -c 99", "-i", tg], capture_output=True, text=True, timeout=120,
        check=True,
    ).stdout  # fmt: skip
    (trace,) = [json.loads(x) for x in theirs.splitlines() if '"type":"tracelb"' in x]
    found = set(re.findall(r'"addr":"([^"]+)"', json.dumps(trace, separators=(",", ":"))))
    # all scamper found, ours found (ours must find both branches, above; scamper may
    # miss one with its own 1 % chance)
    mine = set[str]().union(*hops.values())
    assert found <= mine and {str(ecmp.addr(n)) for n in ("r1", "r2", "tg")} <= found


def test_mda_text_output(ecmp: Testbed) -> None:
    tg = str(ecmp.addr("tg"))
    argv = ["ip", "netns", "exec", ecmp.netns_name("ep"), *RUN, "traceroute", "--mda", "-n"]
    argv += ["--confidence", "99", "--sport", SPORT]
    got = subprocess.run(
        [*argv, tg], capture_output=True, text=True, timeout=120, env=env(), cwd=REPO,
        check=True,
    )  # fmt: skip
    lines = got.stdout.splitlines()
    assert lines[0] == f"tracelb to {tg} ({tg}), 30 hops max, udp-paris, confidence 99%"
    ra, rb = sorted([str(ecmp.addr("ra")), str(ecmp.addr("rb"))])
    assert lines[2] == f" 2  {ra}  {rb}"
    assert lines[4] == f" 4  {tg}"


# -- scamper's tracelb limits, MDA-Lite ------------------------------------------------------


def summary_of(lines: list[dict[str, Any]]) -> dict[str, Any]:
    assert lines[-1]["type"] == "summary"
    return lines[-1]


def names(tb: Testbed, lines: list[dict[str, Any]], *nodes: str) -> dict[int, set[str]]:
    name = {str(tb.addr(n)): n for n in nodes}
    return {x["ttl"]: {name[a] for a in x["addrs"]} for x in lines if x["type"] == "mda-hop"}


def test_maxprobec_ends_the_trace_and_is_in_the_warts(ecmp: Testbed, tmp_path: Path) -> None:
    need("sc_warts2json")
    tg = str(ecmp.addr("tg"))
    out = tmp_path / "lb.warts"
    # (at 99 % the diamond takes some 60 probes)
    lines = ours(ecmp, "--mda", "--confidence", "99", "--sport", SPORT, "-Q", "50",
                 "--gaplimit", "2", "--attempts", "2", "-W", "15", "--warts", str(out),
                 tg)  # fmt: skip
    s = summary_of(lines)
    # (the last round, cut at the 50th probe, may have reached tg: not its TTL's end)
    assert s["stop_reason"] == "MAXPROBEC" and s["probe_count"] == 50
    assert (s["probec_max"], s["gaplimit"], s["attempts"], s["wait_probe"]) == (50, 2, 2, 15)
    theirs = subprocess.run(["sc_warts2json", str(out)], capture_output=True, text=True,
                            timeout=60, check=True).stdout  # fmt: skip
    (lb,) = [json.loads(x) for x in theirs.splitlines() if '"type":"tracelb"' in x]
    # scamper's tracelb has no stop reason: a run cut by -Q is probec == probec_max
    assert (lb["probec"], lb["probec_max"], lb["gaplimit"], lb["attempts"]) == (50, 50, 2, 2)
    assert lb["wait_probe"] == 150  # (sc_warts2json: in ms)


def test_mda_lite_on_the_diamond_finds_it_with_fewer_probes(ecmp: Testbed) -> None:
    tg = str(ecmp.addr("tg"))
    nodes = ("r1", "ra", "rb", "r2", "tg")
    full = ours(ecmp, "--mda", "--confidence", "99.9", "--sport", SPORT, tg)
    lite = ours(ecmp, "--mda-lite", "--confidence", "99.9", "--sport", SPORT, tg)
    want = {1: {"r1"}, 2: {"ra", "rb"}, 3: {"r2"}, 4: {"tg"}}
    assert names(ecmp, full, *nodes) == names(ecmp, lite, *nodes) == want

    def links(lines: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(a, b) for x in lines if x["type"] == "mda-hop" for a, b in x["links"] if a}

    assert links(full) == links(lite)
    s, f = summary_of(lite), summary_of(full)
    assert s["algorithm"] == "mda-lite" and s["meshed"] == [] and s["stop_reason"] == "COMPLETED"
    assert s["probe_count"] < f["probe_count"], (s["probe_count"], f["probe_count"])


def meshed_diamond(testbed_factory: Callable[..., Testbed]) -> Testbed:
    """ep — r1 — {ra, rb} — {rc, rd} — r2 — tg, every ra/rb -> rc/rd link: r1 balances
    per flow over ra and rb, and each of them over rc and rd (meshed). Each balancer its
    own hash seed: with one seed, ra would send all the flows r1 sent it one way."""
    topo = Topology(kind="custom")
    for name in ("ep", "r1", "ra", "rb", "rc", "rd", "r2", "tg"):
        topo.add_node(name, router=name.startswith("r"))
    for a, b in (("ep", "r1"), ("r1", "ra"), ("r1", "rb"), ("ra", "rc"), ("ra", "rd"),
                 ("rb", "rc"), ("rb", "rd"), ("rc", "r2"), ("rd", "r2"), ("r2", "tg")):  # fmt: skip
        topo.add_link(a, b)
    tb = testbed_factory(topo)
    net = tb.topology.link_interfaces(tb.topology.link_between("r2", "tg"))[0].ipv4.network

    def via(frm: str, to: str) -> str:
        link = tb.topology.link_between(frm, to)
        (far,) = [i for i in tb.topology.link_interfaces(link) if i.node == to]
        return str(far.ipv4.ip)

    for seed, (router, nexts) in enumerate(
        (("r1", ("ra", "rb")), ("ra", ("rc", "rd")), ("rb", ("rc", "rd"))), start=1
    ):
        tb.ns(router).set_sysctls({
            "net.ipv4.fib_multipath_hash_policy": 1,
            "net.ipv4.fib_multipath_hash_seed": seed * 7919,
        })  # fmt: skip
        hops = [w for n in nexts for w in ("nexthop", "via", via(router, n))]
        tb.run(router, ["ip", "route", "replace", str(net), *hops])
    return tb


def test_mda_lite_falls_back_to_the_mda_on_a_meshed_diamond(
    testbed_factory: Callable[..., Testbed],
) -> None:
    tb = meshed_diamond(testbed_factory)
    tg = str(tb.addr("tg"))
    nodes = ("r1", "ra", "rb", "rc", "rd", "r2", "tg")
    full = ours(tb, "--mda", "--confidence", "99.9", "--sport", SPORT, tg)
    lite = ours(tb, "--mda-lite", "--confidence", "99.9", "--sport", SPORT, tg)
    want = {1: {"r1"}, 2: {"ra", "rb"}, 3: {"rc", "rd"}, 4: {"r2"}, 5: {"tg"}}
    assert names(tb, full, *nodes) == names(tb, lite, *nodes) == want
    s = summary_of(lite)
    assert s["algorithm"] == "mda-lite" and s["meshed"] == [3], s
    (three,) = [x for x in lite if x.get("ttl") == 3]
    assert three["meshed"] is True
    # the mesh itself: both of ra and rb on to both of rc and rd
    name = {str(tb.addr(n)): n for n in nodes}
    assert {(name[a], name[b]) for a, b in three["links"] if a} == {
        ("ra", "rc"), ("ra", "rd"), ("rb", "rc"), ("rb", "rd"),
    }  # fmt: skip


def test_a_budget_ending_inside_a_clump_leaves_a_half_converged_link(
    testbed_factory: Callable[..., Testbed], tmp_path: Path
) -> None:
    """-Q 50 at 99 % on the meshed diamond: the run ends while r1's flows are still spread
    over ra/rb and rc/rd (TTLs 2 and 3; r2, where they meet, is TTL 4). scamper writes an
    unfinished clump as a link from its node without a far end; so does ours, and
    scamper's tools read it so (sc_wartsdump `r1 -> * hopc N`, sc_warts2json `"*"`)."""
    need("sc_warts2json")
    tb = meshed_diamond(testbed_factory)
    out = tmp_path / "half.warts"
    lines = ours(tb, "--mda", "--confidence", "99", "--sport", SPORT, "-Q", "50", "--warts",
                 str(out), str(tb.addr("tg")))  # fmt: skip
    s = summary_of(lines)
    assert s["stop_reason"] == "MAXPROBEC" and s["probe_count"] == 50
    assert max(x["ttl"] for x in lines if x["type"] == "mda-hop") <= 3
    r1 = str(tb.addr("r1"))
    dump = subprocess.run(["sc_wartsdump", str(out)], capture_output=True, text=True,
                          timeout=60, check=True).stdout  # fmt: skip
    assert re.search(rf"link {re.escape(r1)} -> \* hopc [23]\n", dump), dump
    theirs = subprocess.run(["sc_warts2json", str(out)], capture_output=True, text=True,
                            timeout=60, check=True).stdout  # fmt: skip
    (lb,) = [json.loads(x) for x in theirs.splitlines() if '"type":"tracelb"' in x]
    assert (lb["nodec"], lb["linkc"], lb["probec"], lb["probec_max"]) == (1, 1, 50, 50)
    (node,) = lb["nodes"]
    # (sc_warts2json lists a link's sets but the last by reply address, then its far end)
    assert node["addr"] == r1 and node["links"][-1] == [{"addr": "*"}]
    # its first probe set: TTL 2, answered by ra and rb
    assert {x["addr"] for x in node["links"][0]} == {str(tb.addr("ra")), str(tb.addr("rb"))}


@pytest.fixture
def tb(testbed_factory: Callable[..., Testbed]) -> Testbed:
    return testbed_factory(hops=2)


@pytest.mark.parametrize("family", [4, 6])
def test_tcp_ack_probes_trace_the_path_scamper_traces(tb: Testbed, family: int) -> None:
    need("scamper")
    dst = str(tb.addr("tg", family))
    lines = ours(tb, "-P", "tcp-ack", "-p", "443", "-q", "1", dst)
    hops = [x for x in lines if x["type"] == "hop"]
    ref = native.run_scamper(dst, netns=tb.netns_name("ep"), method="tcp-ack", dport=443)
    assert [(h["ttl"], h["addr"]) for h in hops] == ref.path()
    assert hops[-1]["reply_type"] == ref.hops[-1].reply_type == "tcp-rst"
    assert lines[-1]["method"] == "tcp-ack" and lines[-1]["reached"]


@pytest.mark.parametrize(("flag", "method"), [("-T", "tcp"), ("-I", "icmp")])
def test_tcp_syn_and_icmp_probes_trace_the_path_scamper_traces(
    tb: Testbed, flag: str, method: str
) -> None:
    need("scamper")
    dst = str(tb.addr("tg"))
    lines = ours(tb, flag, "-q", "1", dst)
    hops = [x for x in lines if x["type"] == "hop"]
    ref = native.run_scamper(dst, netns=tb.netns_name("ep"), method=method, dport=80)
    assert [(h["ttl"], h["addr"]) for h in hops] == ref.path()
    assert hops[-1]["reply_type"] == ref.hops[-1].reply_type


def test_n_probes_in_flight_like_traceroute_n(tb: Testbed) -> None:
    need("traceroute")
    dst = str(tb.addr("tg"))
    for n in ("1", "2"):
        lines = ours(tb, "-N", n, "-q", "3", dst)
        hops = [x for x in lines if x["type"] == "hop"]
        ref = native.run_traceroute(dst, netns=tb.netns_name("ep"), queries=3, sim_queries=int(n))
        assert [(h["ttl"], h["addr"]) for h in hops] == ref.path()


def test_default_output_has_traceroutes_layout(tb: Testbed) -> None:
    """Without options both print 3 probes per hop in the same layout (RTTs masked)."""
    need("traceroute")
    dst = str(tb.addr("tg"))
    ns = ["ip", "netns", "exec", tb.netns_name("ep")]
    mine = subprocess.run(
        [*ns, *RUN, "traceroute", "-n", dst], capture_output=True, text=True, timeout=120,
        env=env(), cwd=REPO, check=True,
    ).stdout  # fmt: skip
    theirs = subprocess.run(
        [*ns, "traceroute", "-n", dst], capture_output=True, text=True, timeout=120, check=True
    ).stdout

    def masked(text: str) -> list[str]:
        return [re.sub(r"\d+\.\d+ ms", "X ms", line) for line in text.splitlines()]

    assert masked(mine) == masked(theirs)
    assert masked(mine)[1] == f" 1  {tb.addr('r1')}  X ms  X ms  X ms"
