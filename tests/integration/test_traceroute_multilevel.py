"""`pktlab run traceroute --mda-lite --multilevel` (Multilevel MDA-Lite's router-level view)
on the namespace testbed (root).

A router with two interfaces at one hop: on the chain ep - r1 - tg, the IP-ID responder on
tg plays a per-flow load balancer's next hops one TTL before FAR (`--ttl-exceeded
FAR=A1,A2,B`): each probe's flow picks one of A1, A2, B, which answers with a time
exceeded numbered from its group's counter; A1 and A2 share one (one router's two
interfaces), B has its own. None of them is on the wire as a neighbour but A1, an address
of tg answering echo requests from the shared counter too: A2 and B are read only through
the flows that reached them (indirect probing), A1 directly as well. The trace must find
the three at TTL 2 and group A1 and A2 into one router, B apart.

The ECMP diamond (r1 balancing per flow over two Linux routers ra and rb): two routers,
never grouped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from test_pktlab_run import REPO, RUN, env
from test_traceroute_paris_names import ecmp_diamond, isolate

from packetlab.testbed import Testbed, chain

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

A1, A2, B, FAR = "10.77.2.60", "10.77.2.61", "10.77.2.63", "10.77.2.62"
SPORT = "40000"  # the MDA's first flow (see `ours`)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)  # (skips without root, with the reason)


def ours(tb: Testbed, *args: str, json_lines: bool = True) -> Any:
    """Run ours with a fixed first flow (`--sport`, SPORT): the responder picks a flow's
    interface by a hash of its checksum or source port, the ECMP diamond by the kernel's
    hash with a fixed seed, so the trace finds the same interfaces every run. (With a
    random first flow the MDA at 99.9 % misses one of three next hops about 1 run in 1000,
    one of the diamond's two 1 in 1024.)"""
    argv = ["ip", "netns", "exec", tb.netns_name("ep"), *RUN, "traceroute", "-n"]
    argv += [*(["--json"] if json_lines else []), "--sport", SPORT, *args]
    got = subprocess.run(
        argv, capture_output=True, text=True, timeout=150, env=env(), cwd=REPO, check=False
    )
    assert got.returncode == 0, got.stderr
    if not json_lines:
        return got.stdout
    return [json.loads(line) for line in got.stdout.splitlines()]


def two_interface_router(tb: Testbed, mpls: Sequence[str] = ()) -> None:
    """`mpls`: ipid_responder's `--mpls ADDR=LABEL...` specs (label stacks in the time
    exceeded messages of those interfaces)."""
    for a in (A1, FAR):
        tb.run("tg", ["ip", "addr", "add", f"{a}/24", "dev", "to-r1"])
    argv = [sys.executable, "-m", "packetlab.testbed.ipid_responder", "--quiet-kernel",
            "--velocity", "200", "--udp-port", "33434", "--group", f"{A1},{A2}",
            "--group", B, "--group", f"{FAR}@icmp-echo,udp",
            "--ttl-exceeded", f"{FAR}={A1},{A2},{B}"]  # fmt: skip
    for spec in mpls:
        argv += ["--mpls", spec]
    proc = tb.popen("tg", argv, stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"


@pytest.mark.parametrize("method", ["udp-paris", "icmp-paris"])
def test_two_interfaces_of_one_router_grouped(
    testbed_factory: Callable[..., Testbed], method: str
) -> None:
    tb = testbed_factory(chain(1))
    two_interface_router(tb)
    lines = ours(tb, "--mda-lite", "--multilevel", "-P", method, "--confidence", "99.9", FAR)
    hops = {x["ttl"]: set(x["addrs"]) for x in lines if x["type"] == "mda-hop"}
    assert hops == {1: {str(tb.addr("r1"))}, 2: {A1, A2, B}, 3: {FAR}}, lines
    (routers,) = [x for x in lines if x["type"] == "mda-routers"]
    assert routers["ttl"] == 2
    assert sorted(map(sorted, routers["routers"])) == [[A1, A2], [B]], routers
    assert routers["unresolved"] == []
    assert routers["methods"][A2] == routers["methods"][B] == "indirect"
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["reached"]
    assert summary["router_count"] == 2 and 0 < summary["alias_probe_count"] <= 400


@pytest.mark.parametrize(
    ("mpls", "want", "by_label"),
    [
        # A2 and B quote one stack, the same: one router with A1 (A1-A2 by IP-IDs)
        ([f"{A2}=24001/16", f"{B}=24001/16"], [[A1, A2, B]], [[A2, B]]),
        # A1 and A2 share a counter but quote different labels: two routers
        ([f"{A1}=16", f"{A2}=17"], [[A1], [A2], [B]], []),
    ],
)
def test_mpls_label_stacks_join_or_separate_interfaces(
    testbed_factory: Callable[..., Testbed],
    mpls: list[str],
    want: list[list[str]],
    by_label: list[list[str]],
) -> None:
    """Multilevel MDA-Lite's MPLS fingerprint (session 13): the label stacks the trace's
    time exceeded messages quote (traceroute -e's extensions, seen here by `mpls` in
    the JSON) join two interfaces whatever their IP-IDs, or keep them apart."""
    tb = testbed_factory(chain(1))
    two_interface_router(tb, mpls)
    lines = ours(tb, "--mda-lite", "--multilevel", "--confidence", "99.9", FAR)
    (routers,) = [x for x in lines if x["type"] == "mda-routers"]
    assert sorted(map(sorted, routers["routers"])) == want, routers
    assert routers["mpls_pairs"] == by_label
    labelled = {spec.split("=")[0]: [[int(x) for x in spec.split("=")[1].split("/")]]
                for spec in mpls}  # fmt: skip
    assert routers["mpls"] == labelled
    assert lines[-1]["alias_sets_stable"] is True and 1 <= lines[-1]["alias_rounds"] <= 5


@pytest.mark.parametrize("method", ["udp-paris", "icmp-paris"])
def test_warts_holds_the_trace_and_the_alias_rounds(
    testbed_factory: Callable[..., Testbed], tmp_path: Path, method: str
) -> None:
    """`--multilevel --warts F` (session 13; was the tracelb alone, silently): scamper's
    tools read the tracelb, then one dealias (radargun) record per round, the indirect
    probes defined as the flows they went by (`udp`: the ports; `icmp-echo`: the
    checksum), their replies the interfaces' time exceeded messages with the IP-IDs the
    `--json` samples hold; a note on stderr says the routers are not in it."""
    if shutil.which("sc_warts2json") is None:
        pytest.skip("needs scamper's sc_warts2json (apt-get install scamper)")
    tb = testbed_factory(chain(1))
    two_interface_router(tb)
    warts = tmp_path / "ml.warts"
    argv = ["ip", "netns", "exec", tb.netns_name("ep"), *RUN, "traceroute", "-n",
            "--mda-lite", "--multilevel", "-P", method, "--confidence", "99.9",
            "--sport", SPORT, "--warts", str(warts), FAR]  # fmt: skip
    got = subprocess.run(argv, capture_output=True, text=True, timeout=150, env=env(), cwd=REPO,
                         check=False)  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert "not the routers they make" in got.stderr and "Traceback" not in got.stderr
    for reader in ("sc_wartsdump", "sc_warts2json"):  # (each without a complaint)
        read = subprocess.run([reader, str(warts)], capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        assert read.returncode == 0 and not read.stderr, (reader, read.stderr)
    objs = [json.loads(x) for x in read.stdout.splitlines()]
    kinds = [o["type"] for o in objs]
    assert kinds[:2] == ["cycle-start", "tracelb"] and kinds[-1] == "cycle-stop", kinds
    rounds = [o for o in objs if o["type"] == "dealias"]
    assert len(rounds) >= 2 and all(o["method"] == "radargun" for o in rounds)
    defs = [d for o in rounds for d in o["probedefs"] if d["dst"] == FAR]
    want = "udp" if method == "udp-paris" else "icmp-echo"
    assert defs and {d["method"] for d in defs} == {want} and {d["ttl"] for d in defs} == {2}
    if want == "udp":
        assert all(d["udp_dport"] == 33434 for d in defs)
    else:
        assert all("icmp_csum" in d for d in defs)
    seen = {r["src"] for o in rounds for p in o["probes"] for r in p["replies"]
            if o["probedefs"][p.get("probedef_id", 0)]["dst"] == FAR}  # fmt: skip
    assert seen == {A1, A2, B}  # each flow's probes came back from its interface


def test_text_output(testbed_factory: Callable[..., Testbed]) -> None:
    tb = testbed_factory(chain(1))
    two_interface_router(tb)
    out = ours(
        tb, "--mda-lite", "--multilevel", "--confidence", "99.9", FAR, json_lines=False
    ).splitlines()
    at = next(i for i, x in enumerate(out) if x.startswith("routers ("))
    a, b = sorted([A1, A2])
    assert out[at + 1] in (f" 2  {{{a} {b}}}  {B}", f" 2  {B}  {{{a} {b}}}"), out


def test_linux_routers_of_the_ecmp_diamond_kept_apart(
    testbed_factory: Callable[..., Testbed],
) -> None:
    tb = ecmp_diamond(testbed_factory)
    lines = ours(tb, "--mda-lite", "--multilevel", "--confidence", "99.9", str(tb.addr("tg")))
    ra, rb = str(tb.addr("ra")), str(tb.addr("rb"))
    (routers,) = [x for x in lines if x["type"] == "mda-routers"]
    assert routers["ttl"] == 2
    assert sorted(map(sorted, routers["routers"])) == [[ra], [rb]], routers
    assert routers["pairs"] == []
