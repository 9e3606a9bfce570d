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

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root


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
    # MDA is probabilistic by design: at 99 % a branch is missed with probability 1/128
    lines = ours(ecmp, "--mda", "--confidence", "99", tg)
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
    argv += ["--confidence", "99"]
    got = subprocess.run(
        [*argv, tg], capture_output=True, text=True, timeout=120, env=env(), cwd=REPO,
        check=True,
    )  # fmt: skip
    lines = got.stdout.splitlines()
    assert lines[0] == f"tracelb to {tg} ({tg}), 30 hops max, udp-paris, confidence 99%"
    ra, rb = sorted([str(ecmp.addr("ra")), str(ecmp.addr("rb"))])
    assert lines[2] == f" 2  {ra}  {rb}"
    assert lines[4] == f" 4  {tg}"


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
