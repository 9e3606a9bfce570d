"""`pktlab run alias` beside scamper 20211212's dealias on odd responders (session 30,
docs/alias.md "Odd responders"): a router that answers every other probe only (HALF),
one that rate-limits its answers to 20 a second (RATE) or to one (SLOW), one whose every
reply comes twice (DUP: a duplicating link), each a pair of addresses on one counter
(`packetlab.testbed.ipid_responder`, on tg of a `chain(1)` testbed), and SHARED as it
should be; ELSE's first address answers echo from its second. MIDAR's stages find the
four pairs the replies allow; SLOW has no usable counter, nor has ELSE's first (an echo
reply from another address is matched by neither tool). scamper's ally stops at DUP's
first probe (two replies: `none`), where ours takes the first reply of each probe and
says aliases; ours' warts hold both (scamper's too).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_alias_beside_scamper import ours

from packetlab.testbed import Testbed, chain

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
SHARED = ("10.77.2.10", "10.77.2.11")
HALF = ("10.77.2.12", "10.77.2.13")
RATE = ("10.77.2.14", "10.77.2.15")
DUP = ("10.77.2.16", "10.77.2.17")
SLOW = ("10.77.2.18", "10.77.2.19")
ELSE = ("10.77.2.20", "10.77.2.21")  # ELSE[0]'s echo replies come from ELSE[1]


@pytest.fixture
def tb(testbed_factory: Callable[..., Testbed]) -> Testbed:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if any(shutil.which(t) is None for t in ("scamper", "sc_warts2json")):
        pytest.skip("no scamper")
    bed: Testbed = testbed_factory(chain(1))
    argv = [sys.executable, "-m", "packetlab.testbed.ipid_responder", "--quiet-kernel",
            "--velocity", "300"]  # fmt: skip
    for pair in (SHARED, HALF, RATE, DUP, SLOW, ELSE):
        for a in pair:
            bed.run("tg", ["ip", "addr", "add", f"{a}/24", "dev", "to-r1"])
        argv += ["--group", ",".join(pair) + "@icmp-echo,udp"]
    for a in HALF:
        argv += ["--answer-every", f"{a}=2"]
    for a in RATE:
        argv += ["--rate-limit", f"{a}=20"]
    for a in SLOW:
        argv += ["--rate-limit", f"{a}=1"]
    for a in DUP:
        argv += ["--duplicate", a]
    argv += ["--echo-from", f"{ELSE[0]}={ELSE[1]}"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = bed.popen("tg", argv, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return bed


def ally(tb: Testbed, a: str, b: str) -> dict[str, Any]:
    got = subprocess.run(
        ["ip", "netns", "exec", tb.netns_name("ep"), "scamper", "-O", "json", "-I",
         f"dealias -m ally -W 20 -q 5 -p '-P icmp-echo' {a} {b}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    (d,) = [r for r in map(json.loads, got.stdout.splitlines()) if r["type"] == "dealias"]
    return d


def test_odd_responders_beside_scampers_ally(tb: Testbed, tmp_path: Path) -> None:
    every = [*SHARED, *HALF, *RATE, *DUP, *SLOW, *ELSE]
    records = ours(tb, "--method", "icmp-echo", *every)
    explain = [r for r in records if r["type"] != "ipid"]
    pairs = {(r["a"], r["b"]) for r in records if r["type"] == "alias"}
    assert pairs == {SHARED, HALF, RATE, DUP}, explain
    series = {r["addr"]: r for r in records if r["type"] == "ipid-series"}
    assert not any(series[a]["usable"] for a in (*SLOW, ELSE[0])), explain
    # an echo reply from another address is no sample (nor Mercator's); ally: none too
    assert series[ELSE[0]]["samples"] == 0 and series[ELSE[1]]["usable"], explain
    assert ally(tb, *ELSE)["result"] == "none"
    assert all(series[a]["samples"] <= 6 for a in HALF), explain  # (half of 10 rounds)

    # DUP: scamper's ally ends at its first probe's two replies; ours keeps the first
    theirs = ally(tb, *DUP)
    assert theirs["result"] == "none" and len(theirs["probes"][0]["replies"]) == 2
    warts = tmp_path / "dup.warts"
    records = ours(tb, "--single-stage", "--rounds", "5", "--method", "icmp-echo",
                   "-U", "7", "--warts", str(warts), *DUP)  # fmt: skip
    (summary,) = [r for r in records if r["type"] == "summary"]
    assert summary["verdict"] == "aliases"
    read = subprocess.run(["sc_warts2json", str(warts)], capture_output=True, text=True,
                          timeout=30, check=True)  # fmt: skip
    (d,) = [r for r in map(json.loads, read.stdout.splitlines()) if r["type"] == "dealias"]
    assert d["userid"] == 7  # (scamper's -U)
    # every reply as scamper keeps them: two a probe (the last probe's copy may come after
    # the run stopped waiting, every probe answered), the copy the same IP-ID
    replies = [p.get("replies", []) for p in d["probes"]]
    assert len(replies) == 10 and all(len(r) == 2 for r in replies[:-1]), replies
    assert all(r[0]["ipid"] == r[-1]["ipid"] for r in replies)
