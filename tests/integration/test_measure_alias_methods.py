"""Alias resolution's probe methods on the namespace testbed, against what Linux and a
responder really send. The target node holds addresses answered by
`packetlab.testbed.ipid_responder`: two answering only TCP ACKs (RST) from one shared
counter, two answering only UDP (port unreachable) from another, one only echo; the node's
own address answers no echo (the responder's --quiet-kernel), only UDP, from Linux's
counter; the Linux router r1's two addresses answer everything.

What the kernel does (checked here, and by scamper's radargun on the same addresses):
* a RST to a stray ACK carries IP-ID 0 (DF set, sent from a socket with no destination),
  so TCP ACK probing never gives a Linux host a usable counter;
* echo replies and ICMP errors (port unreachable) draw their IDs from one hashed counter
  per (source, destination, protocol): for one address the echo and UDP methods read the
  same counter; r1's two addresses have counters of their own, never aliases.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from packetlab.testbed import Testbed, chain

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
TCP = ["10.77.2.10", "10.77.2.11"]
UDP = ["10.77.2.20", "10.77.2.21"]
ECHO = "10.77.2.30"
TG, R1 = "10.77.2.2", ["10.77.1.2", "10.77.2.1"]
CANDS = [*TCP, *UDP, ECHO, TG, *R1]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def drop_zero_id_rsts(dev: str) -> list[list[str]]:
    """`tc` commands that keep the kernel's own RSTs (IP-ID 0; the responder never sends
    0) off the wire: an htb class 1:2 that drops everything, TCP RSTs with ID 0 filtered
    into it (prio 1; a caller may send more there)."""
    d = ["dev", dev]
    return [
        ["qdisc", "add", *d, "root", "handle", "1:", "htb", "default", "1"],
        ["class", "add", *d, "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit"],
        ["class", "add", *d, "parent", "1:", "classid", "1:2", "htb", "rate", "10gbit"],
        ["qdisc", "add", *d, "parent", "1:2", "handle", "20:", "pfifo", "limit", "0"],
        ["filter", "add", *d, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
         "match", "ip", "protocol", "6", "0xff", "match", "u8", "0x04", "0x04", "at", "33",
         "match", "u16", "0", "0xffff", "at", "4", "flowid", "1:2"],
    ]  # fmt: skip


def setup(tb: Testbed) -> None:
    for a in [*TCP, *UDP, ECHO]:
        tb.run("tg", ["ip", "addr", "add", f"{a}/24", "dev", "to-r1"])
    for cmd in drop_zero_id_rsts("to-r1"):
        tb.run("tg", ["tc", *cmd])
    argv = [sys.executable, "-m", "packetlab.testbed.ipid_responder", "--quiet-kernel",
            "--velocity", "300", "--group", ",".join(TCP) + "@tcp-ack",
            "--group", ",".join(UDP) + "@udp", "--group", ECHO]  # fmt: skip
    proc = tb.popen("tg", argv, stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"


def alias(tb: Testbed, *args: str) -> list[dict[str, Any]]:
    got = subprocess.run(
        ["ip", "netns", "exec", tb.netns_name("ep"), sys.executable, "-m", "packetlab", "run",
         "alias", "--json", "--samples", "--rounds", "10", *args, *CANDS],
        capture_output=True, text=True, timeout=120, env=env(), cwd=REPO,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    return [json.loads(x) for x in got.stdout.splitlines()]


def test_methods_against_linux_and_the_responder(
    testbed_factory: Callable[..., Testbed],
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tb = testbed_factory(chain(1))
    setup(tb)

    # The default: every method in estimation, the usable one kept per address.
    records = alias(tb)
    series = {r["addr"]: r for r in records if r["type"] == "ipid-series"}
    kept = {a: r["method"] for a, r in series.items()}
    assert all(r["usable"] for r in series.values()), series
    assert kept == {**kept, TCP[0]: "tcp-ack", TCP[1]: "tcp-ack", UDP[0]: "udp",
                    UDP[1]: "udp", ECHO: "icmp-echo", TG: "udp"}  # fmt: skip
    pairs = {(r["a"], r["b"]) for r in records if r["type"] == "alias"}
    assert pairs == {tuple(TCP), tuple(UDP)}, [r for r in records if r["type"] != "ipid"]
    ids: dict[tuple[str, str], list[int]] = defaultdict(list)
    for r in records:
        if r["type"] == "ipid" and r["stage"] == "estimation":
            ids[(r["addr"], r["method"])].append(r["ip_id"])
    for a in R1:  # Linux: RSTs numbered 0; echo and port unreachable from one counter
        assert ids[(a, "tcp-ack")] and set(ids[(a, "tcp-ack")]) == {0}
        assert series[a]["methods"]["tcp-ack"] is None
        assert series[a]["methods"]["icmp-echo"] and series[a]["methods"]["udp"]
    # only the later stages' probes of the kept method (discovery on: every address usable)
    later = [r for r in records if r["type"] == "ipid" and r["stage"] != "estimation"]
    assert later and all(r["method"] == kept[r["addr"]] for r in later)

    # ICMP echo alone (what `pktlab run alias` did before): the TCP-only, UDP-only and
    # echo-ignoring addresses have no usable counter, and their pairs are lost.
    records = alias(tb, "--method", "icmp-echo", "--single-stage")
    usable = {r["addr"] for r in records if r["type"] == "ipid-series" and r["usable"]}
    assert usable == {ECHO, *R1}
    assert not [r for r in records if r["type"] == "alias"]


def test_scamper_radargun_reads_the_same_counters(
    testbed_factory: Callable[..., Testbed], tmp_path: Path
) -> None:
    """scamper's radargun, side by side on the same addresses and methods: Linux's RSTs
    carry ID 0, and the two UDP-only responder addresses interleave on one counter."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if shutil.which("scamper") is None:
        pytest.skip("no scamper")
    tb = testbed_factory(chain(1))
    setup(tb)
    probedefs = [(a, m) for a in [R1[0], *UDP] for m in ("udp", "tcp-ack")]
    # (-w 2: the wait after the last probe, 5 s by default; 2 s is 100 times an answer
    # here)
    cmd = "dealias -m radargun -q 5 -w 2 " + " ".join(
        "-p " + shlex.quote(f"-P {m} -i {a}") for a, m in probedefs
    )
    got = subprocess.run(
        ["ip", "netns", "exec", tb.netns_name("ep"), "scamper", "-O", "json", "-I", cmd],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    (dealias,) = [r for r in map(json.loads, got.stdout.splitlines()) if r["type"] == "dealias"]
    defs = {d["id"]: (d["dst"], d["method"]) for d in dealias["probedefs"]}
    ids: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for p in dealias["probes"]:
        for reply in p.get("replies", []):
            t = reply["rx"]["sec"] * 10**6 + reply["rx"]["usec"]
            ids[defs[p["probedef_id"]]].append((t, reply["ipid"]))
    assert ids[(R1[0], "tcp-ack")] and {i for _, i in ids[(R1[0], "tcp-ack")]} == {0}
    assert len(ids[(R1[0], "udp")]) >= 3 and all(i for _, i in ids[(R1[0], "udp")])
    assert not ids[(UDP[0], "tcp-ack")]  # the responder answers UDP only there
    merged = [i for _, i in sorted(ids[(UDP[0], "udp")] + ids[(UDP[1], "udp")])]
    assert len(merged) >= 6
    assert all(0 < (b - a) % 65536 < 32768 for a, b in itertools.pairwise(merged))


def test_indirect_probing_finds_a_router_that_answers_nothing_itself(
    testbed_factory: Callable[..., Testbed],
) -> None:
    """MIDAR's indirect probing against Linux and the responder: HIDDEN is no node's
    address (nothing answers a probe to it), but the responder plays it as the router
    where echo requests to FAR with TTL 2 expire, numbering its time exceeded from the
    counter it shares with SHARED (which answers echo): only indirect probing reads
    HIDDEN's counter, and finds the alias. r1 answers the TTL 1 probes itself (Linux: its
    time exceeded and echo replies from one counter per destination, as scamper sees)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    hidden, shared, far = "10.77.2.50", "10.77.2.51", "10.77.2.52"
    tb = testbed_factory(chain(1))
    for a in (shared, far):
        tb.run("tg", ["ip", "addr", "add", f"{a}/24", "dev", "to-r1"])
    argv = [sys.executable, "-m", "packetlab.testbed.ipid_responder", "--quiet-kernel",
            "--velocity", "300", "--group", f"{hidden},{shared}", "--group", ECHO,
            "--ttl-exceeded", f"{far}={hidden}"]  # fmt: skip
    tb.run("tg", ["ip", "addr", "add", f"{ECHO}/24", "dev", "to-r1"])
    proc = tb.popen("tg", argv, stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def run(*args: str) -> list[dict[str, Any]]:
        got = subprocess.run(
            ["ip", "netns", "exec", tb.netns_name("ep"), sys.executable, "-m", "packetlab",
             "run", "alias", "--json", "--rounds", "10", *args],
            capture_output=True, text=True, timeout=120, env=env(), cwd=REPO,
        )  # fmt: skip
        assert got.returncode == 0, got.stderr
        return [json.loads(x) for x in got.stdout.splitlines()]

    records = run("--method", "icmp-echo,indirect", f"{hidden}@{far}:2", shared, ECHO,
                  f"{R1[0]}@{far}:1")  # fmt: skip
    series = {r["addr"]: r for r in records if r["type"] == "ipid-series"}
    assert series[hidden]["method"] == "indirect" and series[hidden]["usable"]
    assert series[hidden]["methods"]["icmp-echo"] is None
    assert series[hidden]["via"] == {"dst": far, "ttl": 2}
    assert series[R1[0]]["methods"]["indirect"] is not None  # r1's own time exceeded
    assert "indirect" not in series[shared]["methods"]  # (no DST:TTL: not probed so)
    pairs = {(r["a"], r["b"]) for r in records if r["type"] == "alias"}
    assert pairs == {(hidden, shared)}, [r for r in records if r["type"] != "ipid"]
    # the direct methods alone: no counter for HIDDEN, the alias lost
    records = run("--method", "icmp-echo", hidden, shared, ECHO)
    series = {r["addr"]: r for r in records if r["type"] == "ipid-series"}
    assert not series[hidden]["usable"] and not [r for r in records if r["type"] == "alias"]
