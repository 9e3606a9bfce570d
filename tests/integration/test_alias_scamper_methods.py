"""scamper dealias's port-changing probe methods (session 27) beside scamper 20211212 in a
namespace testbed (`ep — r1 — tg`), docs/alias.md "Probe methods". The target node holds
responder addresses (`packetlab.testbed.ipid_responder`), each router a group:

* FW: one counter, behind a stateful firewall: answers SYNs (a RST-ACK), never a stray
  ACK (`@tcp-syn`): only tcp-syn-sport reads it;
* ACKS: one counter, answers bare ACKs (RST) only;
* DPORT: one counter, answers UDP to 64 ports from 33435 (udp-dport's ports); ONE: the
  same, its own counter (not DPORT's alias).

The kernel's own RSTs (IP-ID 0) are dropped on tg's way out (a tc filter), as in
test_measure_alias_methods.py. Ours (`--method udp-dport|tcp-ack-sport|tcp-syn-sport`)
and scamper's `dealias -m ally -p '-P M'` must agree on every pair; ours' warts of the
three methods must read in sc_warts2json and sc_wartsdump as scamper's own radargun of
the same probe definitions (r1, Linux, answers all three).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_alias_beside_scamper import ours
from test_measure_alias_methods import drop_zero_id_rsts

from packetlab.testbed import Testbed, chain

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
FW = ("10.77.2.10", "10.77.2.11")
ACKS = ("10.77.2.12", "10.77.2.13")
DPORT = ("10.77.2.20", "10.77.2.21")
ONE = "10.77.2.22"
ALL = [*FW, *ACKS, *DPORT, ONE]
# indirect: HIDDEN answers nothing itself; probes to BEYOND (tg) with TTL 2 expire "at" it
# (the responder's --ttl-exceeded), its time exceeded from the counter ECHO_F's echo
# replies share
HIDDEN, ECHO_F, BEYOND = "10.77.2.50", "10.77.2.51", "10.77.2.52"
# prefixscan: PS_A and PS_B one counter (echo), in 10.77.2.56/30 (.56 "the neighbour")
PS_A, PS_B = "10.77.2.57", "10.77.2.58"
# Mercator's: MERC[0]'s port unreachable from MERC[1] (one router's common source)
MERC = ("10.77.2.44", "10.77.2.45")
R1 = "10.77.1.2"
METHODS = "udp-dport,tcp-ack-sport,tcp-syn-sport"


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


@pytest.fixture
def tb(testbed_factory: Callable[..., Testbed]) -> Testbed:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if any(shutil.which(t) is None for t in ("scamper", "sc_warts2json", "sc_wartsdump")):
        pytest.skip("no scamper")
    bed: Testbed = testbed_factory(chain(1))
    for a in [*ALL, ECHO_F, BEYOND, PS_A, PS_B, *MERC]:
        bed.run("tg", ["ip", "addr", "add", f"{a}/24", "dev", "to-r1"])
    dev = ["dev", "to-r1"]  # (the kernel's RSTs, ID 0, off the wire: the responder's count)
    for cmd in (
        *drop_zero_id_rsts("to-r1"),
        # (and BEYOND's own port unreachables: the kernel takes a datagram addressed to
        # it whatever its TTL, where a router would have dropped it at HIDDEN)
        ["filter", "add", *dev, "parent", "1:", "protocol", "ip", "prio", "2", "u32",
         "match", "ip", "protocol", "1", "0xff", "match", "ip", "src", f"{BEYOND}/32",
         "match", "u8", "3", "0xff", "at", "20", "flowid", "1:2"],
    ):  # fmt: skip
        bed.run("tg", ["tc", *cmd])
    argv = [sys.executable, "-m", "packetlab.testbed.ipid_responder", "--quiet-kernel",
            "--velocity", "300", "--udp-ports", "64", "--group", ",".join(FW) + "@tcp-syn",
            "--group", ",".join(ACKS) + "@tcp-ack", "--group", ",".join(DPORT) + "@udp",
            "--group", ONE + "@udp", "--group", f"{HIDDEN},{ECHO_F}",
            "--ttl-exceeded", f"{BEYOND}={HIDDEN}", "--group", f"{PS_A},{PS_B}",
            "--group", ",".join(MERC) + "@udp",
            "--errors-from", f"{MERC[0]}={MERC[1]}"]  # fmt: skip
    proc = bed.popen("tg", argv, stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return bed


def tool(tb: Testbed, *argv: str) -> str:
    got = subprocess.run(["ip", "netns", "exec", tb.netns_name("ep"), *argv],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert got.returncode == 0, got.stderr
    return got.stdout


def ally(tb: Testbed, method: str, a: str, b: str) -> str:
    out = tool(tb, "scamper", "-O", "json", "-I",
               f"dealias -m ally -W 20 -q 5 -p '-P {method}' {a} {b}")  # fmt: skip
    (d,) = [r for r in map(json.loads, out.splitlines()) if r["type"] == "dealias"]
    return str(d["result"])


def verdict(tb: Testbed, method: str, a: str, b: str) -> str:
    records = ours(tb, "--single-stage", "--rounds", "5", "--method", method, a, b)
    (summary,) = [r for r in records if r["type"] == "summary"]
    return str(summary["verdict"])


def test_pairs_beside_scampers_ally(tb: Testbed) -> None:
    cases = [  # (method, pair, ours, scamper's ally)
        ("tcp-syn-sport", FW, "aliases", "aliases"),
        ("tcp-ack", FW, "unknown", "none"),  # (the firewall drops stray ACKs)
        ("tcp-ack-sport", ACKS, "aliases", "aliases"),
        ("udp-dport", DPORT, "aliases", "aliases"),
        ("udp-dport", (DPORT[0], ONE), "not aliases", "not-aliases"),
    ]
    got = [(m, p, verdict(tb, m, *p), ally(tb, m, *p)) for m, p, _, _ in cases]
    assert got == cases
    # MIDAR's four stages over all of them with the three variants: FW and DPORT by
    # their method (ACKS by tcp-ack-sport too; the node's Linux port unreachables count
    # per destination, the tie goes to TCP); auto (MIDAR's three) cannot read FW's
    records = ours(tb, "--method", METHODS, *ALL)
    pairs = [(r["a"], r["b"]) for r in records if r["type"] == "alias"]
    assert pairs == [FW, ACKS, DPORT], records
    series = {r["addr"]: r for r in records if r["type"] == "ipid-series"}
    assert series[FW[0]]["method"] == "tcp-syn-sport" and series[ONE]["method"] == "udp-dport"
    records = ours(tb, *ALL)
    assert [(r["a"], r["b"]) for r in records if r["type"] == "alias"] == [ACKS, DPORT]
    fw = {r["addr"]: r for r in records if r["type"] == "ipid-series"}[FW[0]]
    assert fw["method"] == "udp" and "tcp-syn-sport" not in fw["methods"]  # (tg's Linux)


def _dealias(tb: Testbed, path: Path) -> dict[str, Any]:
    objs = [json.loads(x) for x in tool(tb, "sc_warts2json", str(path)).splitlines()]
    (d,) = [o for o in objs if o["type"] == "dealias"]
    return d


def _dump(tb: Testbed, path: Path) -> list[str]:
    """sc_wartsdump's probe definitions and replies, without ports, times and IDs."""
    keep = ("probedef", "  src:", "  udp-dport", "  tcp-", "  icmp-type", "   tcp flags")
    out = [x for x in tool(tb, "sc_wartsdump", str(path)).splitlines() if x.startswith(keep)]
    return [re.sub(r"ttl: \d+|\d+:\d+", "N", x) for x in out]


def test_warts_of_the_three_methods_read_as_scampers(tb: Testbed, tmp_path: Path) -> None:
    # r1 (Linux) answers all three: port unreachables, RSTs (IP-ID 0) to ACKs, RST-ACKs
    # to SYNs; ours and scamper's radargun with the same probe definitions
    src = str(tb.addr("ep"))
    mine, theirs = tmp_path / "ours.warts", tmp_path / "scamper.warts"
    records = ours(tb, "--single-stage", "--rounds", "3", "--samples", "--method", METHODS,
                   "--warts", str(mine), R1, ONE)  # fmt: skip
    defs = " ".join(f"-p '-P {m} -i {a}'" for a in (R1, ONE) for m in METHODS.split(","))
    tool(tb, "scamper", "-O", "warts", "-o", str(theirs), "-I",
         f"dealias -m radargun -q 3 -W 50 -w 1 {defs}")  # fmt: skip
    a, b = _dealias(tb, mine), _dealias(tb, theirs)

    def shape(d: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(p["src"], p["dst"], p["method"], p.get("tcp_flags"),
                 p.get("tcp_dport", p.get("udp_dport"))) for p in d["probedefs"]]  # fmt: skip

    assert shape(a) == shape(b)
    assert shape(a)[:3] == [(src, R1, "udp-dport", None, 33435), (src, R1, "tcp-ack-sport", 16,
                            33435), (src, R1, "tcp-syn-sport", 2, 33435)]  # fmt: skip
    assert (a["attempts"], len(a["probes"])) == (b["attempts"], len(b["probes"])) == (3, 18)

    def replies(d: dict[str, Any]) -> list[tuple[Any, ...]]:
        defs = {p["id"]: p for p in d["probedefs"]}
        return sorted((defs[p["probedef_id"]]["dst"], defs[p["probedef_id"]]["method"],
                       r["src"], r.get("icmp_type"), r.get("tcp_flags"))
                      for p in d["probes"] for r in p["replies"])  # fmt: skip

    # ONE answers UDP only; r1 everything: the same replies, one for each answered probe
    assert replies(a) == replies(b) and len(replies(a)) == 12
    assert _dump(tb, mine) == _dump(tb, theirs)
    # every sample of ours is a reply in the file (its IP-ID, its method)
    samples = sorted((r["addr"], r["method"], r["ip_id"]) for r in records if r["type"] == "ipid")
    by_id = {p["id"]: p for p in a["probedefs"]}
    got = sorted((by_id[p["probedef_id"]]["dst"], by_id[p["probedef_id"]]["method"],
                  r.get("ipid", 0)) for p in a["probes"] for r in p["replies"])  # fmt: skip
    assert got == samples


@pytest.mark.parametrize("probe", ["udp", "tcp-ack"])
def test_indirect_udp_and_tcp_beside_scamper(tb: Testbed, tmp_path: Path, probe: str) -> None:
    # ours `--method icmp-echo,indirect --indirect-method P HIDDEN@BEYOND:2 ECHO_F` and
    # scamper's ally of `-P P -i BEYOND -t 2` and `-P icmp-echo -i ECHO_F`: aliases; the
    # warts of ours and of scamper's radargun of the same definition alike
    records = ours(tb, "--single-stage", "--rounds", "5", "--method", "icmp-echo,indirect",
                   "--indirect-method", probe, f"{HIDDEN}@{BEYOND}:2", ECHO_F)  # fmt: skip
    (summary,) = [r for r in records if r["type"] == "summary"]
    series = {r["addr"]: r for r in records if r["type"] == "ipid-series"}
    assert summary["verdict"] == "aliases", records
    assert series[HIDDEN]["method"] == "indirect" and series[HIDDEN]["via"]["probe"] == probe
    got = tool(tb, "scamper", "-O", "json", "-I", f"dealias -m ally -W 20 -q 5 -p '-P {probe} "
               f"-i {BEYOND} -t 2' -p '-P icmp-echo -i {ECHO_F}'")  # fmt: skip
    (d,) = [r for r in map(json.loads, got.splitlines()) if r["type"] == "dealias"]
    assert d["result"] == "aliases"

    mine, theirs = tmp_path / "ours.warts", tmp_path / "scamper.warts"
    ours(tb, "--single-stage", "--rounds", "3", "--method", "indirect", "--indirect-method",
         probe, "--warts", str(mine), f"{HIDDEN}@{BEYOND}:2", f"{ECHO_F}@{BEYOND}:2")  # fmt: skip
    # (scamper's radargun needs two definitions: the same one twice, as ours' two are)
    pdef = f"-p '-P {probe} -i {BEYOND} -t 2'"
    tool(tb, "scamper", "-O", "warts", "-o", str(theirs), "-I",
         f"dealias -m radargun -q 3 -W 50 -w 1 {pdef} {pdef}")  # fmt: skip
    a, b = _dealias(tb, mine), _dealias(tb, theirs)

    def shape(d: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(p["src"], p["dst"], p["ttl"], p["method"], p.get("tcp_flags"),
                 p.get("tcp_dport", p.get("udp_dport"))) for p in d["probedefs"]]  # fmt: skip

    assert shape(a) == shape(b) and shape(b)[0][2:4] == (2, probe)
    assert (a["attempts"], len(a["probes"])) == (b["attempts"], len(b["probes"])) == (3, 6)

    def answered(d: dict[str, Any], which: int) -> list[tuple[Any, ...]]:
        return [(r["src"], r["icmp_type"], r["icmp_q_ttl"]) for p in d["probes"]
                for r in p["replies"] if p["probedef_id"] == which]  # fmt: skip

    # every probe of the first definition answered by HIDDEN's time exceeded, in both;
    # scamper counts HIDDEN's for the second as well, ours not: ECHO_F's probes get a
    # time exceeded from another address (no router of ECHO_F on that path, no sample)
    assert answered(a, 0) == answered(b, 0) == answered(b, 1) == [(HIDDEN, 11, 1)] * 3
    assert answered(a, 1) == []


def test_prefixscan_beside_scampers(tb: Testbed) -> None:
    # scamper's `dealias -m prefixscan -p '-P icmp-echo' A B/LEN` and ours `--prefixscan
    # B/LEN A`: the alias of PS_A in .56/30 is PS_B (.59 does not answer; .56 is never
    # probed); in .58/31 the partner of .58 is .59: none
    def scamper(prefix: str, x: str = "") -> dict[str, Any]:
        command = f"dealias -m prefixscan -W 100 {x}-p '-P icmp-echo' {PS_A} {prefix}"
        out = tool(tb, "scamper", "-O", "json", "-I", command)
        (d,) = [r for r in map(json.loads, out.splitlines()) if r["type"] == "dealias"]
        return d

    def mine(prefix: str, *how: str) -> dict[str, Any]:
        records = ours(tb, "--method", "icmp-echo", *how, "--prefixscan", prefix, PS_A)
        (scan,) = [r for r in records if r["type"] == "prefixscan"]
        (summary,) = [r for r in records if r["type"] == "summary"]
        return {"aliases": scan["aliases"], "verdict": summary["verdict"]}

    theirs = scamper("10.77.2.56/30")
    assert theirs["result"] == "aliases" and theirs["ab"].split("/")[0] == PS_B
    for how in ([], ["--single-stage"]):
        assert mine("10.77.2.56/30", *how) == {"aliases": [PS_B], "verdict": "aliases"}
    assert scamper("10.77.2.58/31")["result"] == "none"
    assert mine("10.77.2.58/31", "--single-stage") == {"aliases": [], "verdict": "none"}
    # -x (session 30): PS_B excluded, only .59 (silent) is left: none by both
    theirs = scamper("10.77.2.56/30", f"-x {PS_B} ")
    assert theirs["result"] == "none" and theirs["xs"] == [PS_B]
    assert mine("10.77.2.56/30", "--single-stage", "-x", PS_B) == {"aliases": [], "verdict": "none"}
    # scamper's own words (session 30): -m prefixscan A B/LEN, -W, -x
    records = ours(tb, "--method", "icmp-echo", "-m", "prefixscan", "-W", "10", "-x", "10.77.2.59",
                   PS_A, "10.77.2.56/30")  # fmt: skip
    assert [r["aliases"] for r in records if r["type"] == "prefixscan"] == [[PS_B]]


def test_prefixscan_warts_as_scampers(tb: Testbed, tmp_path: Path) -> None:
    # `--prefixscan B/LEN A --warts FILE` wrote a radargun record per MIDAR stage (session
    # 30's leftover); scamper writes one prefixscan record: a, b, ab, the result, its
    # probe definitions (A's first) and probes. Both read by sc_warts2json alike (session
    # 31, odds31); ours defines every address it probed (scamper stops at the alias)
    theirs, mine = tmp_path / "scamper.warts", tmp_path / "ours.warts"
    tool(tb, "scamper", "-O", "warts", "-o", str(theirs), "-I",
         f"dealias -m prefixscan -W 100 -p '-P icmp-echo' {PS_A} 10.77.2.56/30")  # fmt: skip
    for how in ([], ["--single-stage"]):
        ours(tb, "--method", "icmp-echo", *how, "--warts", str(mine), "--prefixscan",
             "10.77.2.56/30", PS_A)  # fmt: skip
        a, b = _dealias(tb, mine), _dealias(tb, theirs)
        for d in (a, b):
            assert (d["method"], d["result"], d["a"], d["b"]) == (
                "prefixscan", "aliases", PS_A, "10.77.2.56/30",
            )  # fmt: skip
            assert d["ab"].split("/")[0] == PS_B
            assert [p["dst"] for p in d["probedefs"]][:2] == [PS_A, PS_B]
        assert set(a) == set(b)
        assert [p["dst"] for p in a["probedefs"]] == [PS_A, PS_B, "10.77.2.59"]
        dump = tool(tb, "sc_wartsdump", str(mine)).splitlines()
        assert f" method: prefixscan, {PS_A}:10.77.2.56/30, alias: {PS_B}/28" in dump
    # none: in .58/31 (.59, silent) no alias; -x listed (scamper 20211212's own warts of
    # a prefixscan with -x holds no record at all: not compared)
    ours(tb, "--method", "icmp-echo", "--single-stage", "-x", "10.77.2.59", "--warts", str(mine),
         "--prefixscan", "10.77.2.56/30", PS_A)  # fmt: skip
    assert _dealias(tb, mine)["xs"] == ["10.77.2.59"]
    ours(tb, "--method", "icmp-echo", "--single-stage", "--warts", str(mine), "--prefixscan",
         "10.77.2.58/31", PS_A)  # fmt: skip
    d = _dealias(tb, mine)
    assert d["result"] == "none" and "ab" not in d


def test_shuffle_as_scampers_radargun(tb: Testbed, tmp_path: Path) -> None:
    # `-O shuffle` (scamper's radargun) and ours `--shuffle`: each round a new order of
    # the definitions (ours: of the addresses), sc_wartsdump's "flags: shuffle" for both,
    # and the pair found as without it
    addrs = [PS_A, PS_B, ECHO_F, ONE]
    mine, theirs = tmp_path / "ours.warts", tmp_path / "scamper.warts"
    records = ours(tb, "--single-stage", "--shuffle", "--rounds", "8", "--method", "icmp-echo",
                   "--warts", str(mine), *addrs)  # fmt: skip
    assert [(r["a"], r["b"]) for r in records if r["type"] == "alias"] == [(PS_A, PS_B)]
    defs = " ".join(f"-p '-P icmp-echo -i {a}'" for a in addrs)
    tool(tb, "scamper", "-O", "warts", "-o", str(theirs), "-I",
         f"dealias -m radargun -q 8 -W 10 -w 1 -O shuffle {defs}")  # fmt: skip
    for path in (mine, theirs):
        assert "  flags: shuffle" in tool(tb, "sc_wartsdump", str(path)).splitlines()
        d = _dealias(tb, path)
        dst = {p["id"]: p["dst"] for p in d["probedefs"]}
        sent = [dst[p["probedef_id"]] for p in d["probes"]]
        rounds = {tuple(sent[i : i + 4]) for i in range(0, 32, 4)}
        assert len(sent) == 32 and all(sorted(r) == sorted(addrs) for r in rounds)
        assert len(rounds) > 1  # (eight rounds of 4! orders all alike: 1 in 24^7)


def test_one_address_beside_scampers_mercator(tb: Testbed) -> None:
    # `dealias -m mercator A` and ours with one address (a UDP method: Mercator's test)
    for addr, verdict in ((MERC[0], "aliases"), (DPORT[0], "none")):
        out = tool(tb, "scamper", "-O", "json", "-I", f"dealias -m mercator {addr}")
        (d,) = [r for r in map(json.loads, out.splitlines()) if r["type"] == "dealias"]
        records = ours(tb, "--single-stage", "--method", "udp", "--rounds", "3", addr)
        (summary,) = [r for r in records if r["type"] == "summary"]
        assert (d["result"], summary["verdict"]) == (verdict, verdict)
    records = ours(tb, "--method", "udp", "--rounds", "3", MERC[0])  # (MIDAR's stages)
    assert [(r["a"], r["b"], r["by"]) for r in records if r["type"] == "alias"] == [
        (*MERC, ["mercator"])
    ]


def test_round_wait_as_scampers_radargun(tb: Testbed, tmp_path: Path) -> None:
    # scamper's radargun `-W 10 -r 200` and ours `-W 10 -r 200`: rounds start 200 ms
    # apart on the wire (the probes' tx in both warts), wait-round 200 in both records
    mine, theirs = tmp_path / "ours.warts", tmp_path / "scamper.warts"
    records = ours(tb, "--single-stage", "--rounds", "3", "-W", "10", "-r", "200", "--method",
                   "icmp-echo", "--warts", str(mine), PS_A, PS_B)  # fmt: skip
    assert [(r["a"], r["b"]) for r in records if r["type"] == "alias"] == [(PS_A, PS_B)]
    tool(tb, "scamper", "-O", "warts", "-o", str(theirs), "-I",
         f"dealias -m radargun -q 3 -W 10 -r 200 -w 1 -p '-P icmp-echo -i {PS_A}' "
         f"-p '-P icmp-echo -i {PS_B}'")  # fmt: skip
    for path in (mine, theirs):
        d = _dealias(tb, path)
        assert (d["wait_probe"], d["wait_round"]) == (10, 200)
        tx = [p["tx"]["sec"] + p["tx"]["usec"] / 1e6 for p in d["probes"]]
        starts = [tx[i] - tx[0] for i in (0, 2, 4)]  # each round's first probe
        assert len(tx) == 6 and all(abs(s - 0.2 * r) < 0.05 for r, s in enumerate(starts))
