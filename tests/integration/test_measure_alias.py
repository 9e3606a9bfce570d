"""Alias resolution on the namespace testbed. The target node holds five extra addresses
answered by `packetlab.testbed.ipid_responder`: three from one shared IP-ID counter (a
router numbering all its packets from one counter), two from counters of their own; the
Linux router r1's two addresses answer from Linux's hashed per-destination counters,
which MIDAR cannot tie together. Every true pair must be found and no false one:
* one endpoint through `pktlab run alias` (in-process endpoint inside ep);
* two endpoints (twistd pktendpoint over TLS in ep1 and ep2) whose probes are interleaved
  on one time axis after clock synchronisation, through the library API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from testkit.net import port_of

from packetlab.testbed import Testbed, Topology, chain

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
SHARED = ["10", "11", "12"]
ALONE = ["13", "14"]


def responder(tb: Testbed, node: str, prefix: str, iface: str) -> list[str]:
    for i in SHARED + ALONE:
        tb.run(node, ["ip", "addr", "add", f"{prefix}.{i}/24", "dev", iface])
    groups = [",".join(f"{prefix}.{i}" for i in SHARED)] + [f"{prefix}.{i}" for i in ALONE]
    argv = [sys.executable, "-m", "packetlab.testbed.ipid_responder", "--quiet-kernel",
            "--velocity", "300"]  # fmt: skip
    for g in groups:
        argv += ["--group", g]
    proc = tb.popen(node, argv, stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return [f"{prefix}.{i}" for i in SHARED + ALONE]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def true_pairs(prefix: str) -> set[tuple[str, str]]:
    a = [f"{prefix}.{i}" for i in SHARED]
    return {(a[0], a[1]), (a[0], a[2]), (a[1], a[2])}


def explain(records: list[dict[str, Any]], stderr: str = "") -> str:
    """The per-stage MIDAR records (stages, series, pairs) and the raw samples, for the
    message of a failed assertion: which stage lost a pair, and on what evidence."""
    lines = [json.dumps(r) for r in records if r["type"] != "ipid"]
    samples = [r for r in records if r["type"] == "ipid"]
    t0 = min((r["time_ns"] for r in samples), default=0)
    for r in sorted(samples, key=lambda r: (r.get("stage", ""), r["addr"], r["time_ns"])):
        lines.append(f"  {r.get('stage', '')[:5]} {r['addr']:<12} "
                     f"t={(r['time_ns'] - t0) / 1e6:9.3f} ms "
                     f"+-{r['error_ns'] / 1e3:8.1f} us  id={r['ip_id']}")  # fmt: skip
    return "\n".join(["MIDAR records:", *lines, "stderr:", stderr[-2000:]])


def test_one_endpoint_cli(testbed_factory: Callable[..., Testbed], tmp_path: Path) -> None:
    """MIDAR's four stages (the default) through the CLI, with the probes in a pcap."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tb = testbed_factory(chain(1))
    cands = [*responder(tb, "tg", "10.77.2", "to-r1"), "10.77.1.2", "10.77.2.1"]  # + r1
    pcap = tmp_path / "alias.pcap"
    got = subprocess.run(
        ["ip", "netns", "exec", tb.netns_name("ep"), sys.executable, "-m", "packetlab", "run",
         "alias", "--json", "--samples", "--rounds", "12", "--pcap", str(pcap), *cands],
        capture_output=True, text=True, timeout=120, env=env(), cwd=REPO,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    records = [json.loads(x) for x in got.stdout.splitlines()]
    pairs = {(r["a"], r["b"]) for r in records if r["type"] == "alias"}
    assert pairs == true_pairs("10.77.2"), explain(records, got.stderr)
    series = {r["addr"]: r for r in records if r["type"] == "ipid-series"}
    assert all(series[a]["samples"] == 12 for a in cands[:5])
    (sets,) = [r["sets"] for r in records if r["type"] == "alias-sets"]
    assert sets == [[f"10.77.2.{i}" for i in SHARED]]
    summary = records[-1]
    assert summary["start_time"] <= summary["stop_time"]
    assert {k: v for k, v in summary.items() if k not in ("start_time", "stop_time")} == {
        "type": "summary", "measurement": "alias", "tool": "packetlab",
        "stop_reason": "COMPLETED", "pairs": 3, "errors": 0,
        # its probe times are mapped onto our clock: so is its summary (session 34)
        "clock": "controller", "clock_offset_us": None, "clock_error_us": None,
    }  # fmt: skip
    stages = {r["stage"]: r for r in records if r["type"] == "alias-stage"}
    assert list(stages) == ["estimation", "discovery", "elimination", "corroboration"]
    assert stages["estimation"]["addresses"] == 7
    usable = sum(1 for r in series.values() if r["usable"])
    assert stages["discovery"]["addresses"] == usable >= 5
    assert stages["discovery"]["pairs"] >= 3  # candidates, false ones possible
    assert stages["elimination"]["pairs"] >= 3
    assert stages["corroboration"] == {**stages["corroboration"], "addresses": 3, "pairs": 3}
    # The pcap: every probe (ICMP echo request, TCP ACK, UDP: estimation tries all three)
    # and every reply, with endpoint times.
    from packetlab.measure.pcap import read_pcap

    packets = read_pcap(pcap.read_bytes())
    ep = bytes([10, 77, 1, 1])
    sent = [(p[9], p[20]) for _, p in packets if p[0] >> 4 == 4 and p[12:16] == ep]
    back = [(p[9], p[20]) for _, p in packets if p[0] >> 4 == 4 and p[16:20] == ep]
    probes = sum(s["samples"] for s in stages.values())
    assert len(sent) >= probes and len(back) >= probes
    assert {proto for proto, _ in sent} == {1, 6, 17}  # ICMP, TCP, UDP
    later = sum(s["samples"] for s in stages.values() if s["stage"] != "estimation")
    assert sent.count((1, 8)) >= later and back.count((1, 0)) >= later  # kept: echo
    assert f"wrote {len(packets)} packets to {pcap}" in got.stderr


@pytest_twisted.ensureDeferred
async def test_two_endpoints_interleaved(
    testbed_factory: Callable[..., Testbed], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from twisted.internet import reactor

    from packetlab.controller import Controller
    from packetlab.controller.local import LocalEndpoint, demo_home, tls_server
    from packetlab.measure.alias import alias_pairs, collect_ip_ids
    from packetlab.measure.pool import SessionPool
    from packetlab.tls import gen_snikey

    topo = Topology()
    for name in ("ep1", "ep2", "tg"):
        topo.add_node(name)
    topo.add_node("r", router=True)
    for name in ("ep1", "ep2", "tg"):
        topo.add_link(name, "r")
    tb = testbed_factory(topo)
    tg_addr = tb.addr("tg")
    prefix = str(tg_addr).rsplit(".", 1)[0]
    iface = tb.iface("tg")
    cands = responder(tb, "tg", prefix, iface)
    home = demo_home(tmp_path / "home")
    snikey = gen_snikey()
    ep1 = tb.addr("ep1")
    pool = SessionPool(2, reactor)
    ctl: Controller[None] = Controller(pool.experiment, reactor=reactor, limit=2)
    with tb.enter("ep1"):
        port = await ctl.listen(tls_server(reactor, f"tcp:0:interface={ep1}", home, snikey))
    where = f"{ep1}:{port_of(port)}"
    eps: list[Any] = []
    try:
        for node in ("ep1", "ep2"):
            args = ["-c", str(home.root / "endpt.conf"), "--snikey", snikey, "--transproto",
                    "raw,tcp,udp", "--ipv4", str(tb.addr(node)), "--host-id", node]  # fmt: skip
            with tb.enter(node):
                eps.append(LocalEndpoint.spawn(reactor, where, args=args, plaintext=False))
        sessions = await pool.wait(60)
        samples = await collect_ip_ids(sessions, cands, rounds=10, spacing=0.002)
    finally:
        pool.release()
        await ctl.stop()
        for ep in eps:
            await ep.stop(reactor)
    assert {s.endpoint for s in samples} == {"ep1", "ep2"}
    for a in cands:  # every address answered both endpoints, in turn
        mine = sorted((s.time_ns, s.endpoint) for s in samples if s.addr == a)
        assert len(mine) == 20 and {e for _, e in mine} == {"ep1", "ep2"}
    assert set(alias_pairs(samples)) == true_pairs(prefix)
