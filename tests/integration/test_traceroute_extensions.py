"""`pktlab run traceroute -e` and `--back` side by side with Butskoy's traceroute (root):
a router that extends its time exceeded with an MPLS label stack (RFC 4884/4950,
`packetlab.testbed.mpls_responder`, in r1 with forwarding off) and answers for the
target behind it with a reply whose TTL says it came back over 3 hops, not 2. Both
tools, in ep, must print the same lines once RTTs are masked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_pktlab_run import env, pktlab_run
from test_run_like_native import masked, native

from packetlab.testbed import Testbed

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

LABELS = "16:0:0:1,24000:5:1:255"
MPLS = "<MPLS:L=16,E=0,S=0,T=1/L=24000,E=5,S=1,T=255>"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: raw sockets, network namespaces")
    if shutil.which("traceroute") is None:
        pytest.skip("needs traceroute (Butskoy's)")
    monkeypatch.setenv("PKTLAB_TESTBED_DIR", str(tmp_path))
    monkeypatch.setenv("PKTLAB_TESTBED_PREFIX", f"plx{os.getpid() % 100000}-")
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "pktlab-home"))


@pytest.fixture
def mpls_path(testbed_factory: Callable[..., Testbed]) -> Iterator[tuple[str, str, str]]:
    """(ep's namespace, r1's address, the target's address) with the responder up."""
    tb: Testbed = testbed_factory(hops=1)
    tb.run("r1", ["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"])
    router = next(str(i.ipv4.ip) for i in tb.interfaces("r1") if i.peer == "ep")
    tg = str(tb.addr("tg"))
    argv = [sys.executable, "-m", "packetlab.testbed.mpls_responder", "--iface",
            tb.iface("r1", "ep"), "--router", router, "--target", tg, "--labels", LABELS,
            "--target-ttl", "62"]  # fmt: skip
    proc = tb.popen("r1", argv, stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield tb.netns_name("ep"), router, tg


def test_mpls_labels_and_hops_back_as_traceroute_prints_them(
    mpls_path: tuple[str, str, str],
) -> None:
    ns, router, tg = mpls_path
    for args in (
        ["-n", "-e", tg], ["-n", "-e", "-q", "1", tg], ["-n", tg],
        ["-n", "--back", tg], ["-n", "-e", "--back", "-q", "2", tg],
        ["-n", "-e", "-I", tg], ["-n", "-e", tg, "200"],  # a probe longer than 128 bytes
    ):  # fmt: skip
        # (-w 5,0,0: no shortened waits, which a responder slowed by a loaded machine
        # turns into `*` in either tool; see test_traceroute_more_like_native's DCCP tests)
        args = ["-w", "5,0,0", *args]
        ours = pktlab_run("traceroute", *args, netns=ns)
        theirs = native("traceroute", *args, netns=ns)
        assert ours.returncode == theirs.returncode == 0, (args, ours.stderr)
        assert masked(ours.stdout) == masked(theirs.stdout), args
    shown = pktlab_run("traceroute", "-n", "-e", "--back", "-q", "1", tg, netns=ns).stdout
    assert f" 1  {router} {MPLS}  " in shown and f" 2  {tg} '-3'  " in shown


def test_json_carries_the_labels_as_scamper(mpls_path: tuple[str, str, str]) -> None:
    ns, router, tg = mpls_path
    got = pktlab_run("traceroute", "--json", "-q", "1", tg, netns=ns)
    assert got.returncode == 0, got.stderr
    hops = [h for h in map(json.loads, got.stdout.splitlines()) if h["type"] == "hop"]
    assert [h["addr"] for h in hops] == [router, tg]
    assert hops[0]["icmpext"] == [
        {
            "ie_cn": 1,
            "ie_ct": 1,
            "ie_dl": 8,
            "mpls_labels": [
                {"mpls_label": 16, "mpls_exp": 0, "mpls_s": 0, "mpls_ttl": 1},
                {"mpls_label": 24000, "mpls_exp": 5, "mpls_s": 1, "mpls_ttl": 255},
            ],
        }
    ]
    assert "icmpext" not in hops[1] and hops[1]["reply_ttl"] == 62
