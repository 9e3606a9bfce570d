"""`pktlab run alias` beside scamper's dealias on routers whose truth is known (session 24,
docs/alias.md "Beside scamper"). The target node holds responder addresses
(`packetlab.testbed.ipid_responder`), each router kind a pair:

* SHARED: one counter for both (aliases); ONE, TWO: a counter each (not aliases);
* ZERO: every IP-ID 0, RANDOM: a random one each (aliases no IP-ID test can see);
* MERC: one counter, and the port unreachable for MERC[0] sent from MERC[1] (Mercator's
  common source address: aliases by both);
* SWAPPED: one counter written little-endian (aliases; before session 24 MIDAR's stages
  dropped them while scamper's ally, which undoes byte swapping, said aliases).

Ours must find exactly SHARED, MERC and SWAPPED, and leave ZERO and RANDOM without a
usable counter; scamper's ally agrees where its verdict is decidable.
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

from packetlab.testbed import Testbed, chain

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
SHARED = ("10.77.2.10", "10.77.2.11")
ONE, TWO = "10.77.2.12", "10.77.2.13"
ZERO = ("10.77.2.20", "10.77.2.21")
RANDOM = ("10.77.2.30", "10.77.2.31")
MERC = ("10.77.2.40", "10.77.2.41")
SWAPPED = ("10.77.2.60", "10.77.2.61")
ALL = [*SHARED, ONE, TWO, *ZERO, *RANDOM, *MERC, *SWAPPED]
R1 = ("10.77.1.2", "10.77.2.1")  # Linux: a hashed counter per destination


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def setup(tb: Testbed) -> None:
    for a in ALL:
        tb.run("tg", ["ip", "addr", "add", f"{a}/24", "dev", "to-r1"])
    echo_udp = "@icmp-echo,udp"
    argv = [sys.executable, "-m", "packetlab.testbed.ipid_responder", "--quiet-kernel",
            "--velocity", "300", "--group", ",".join(SHARED) + echo_udp,
            "--group", ONE + echo_udp, "--group", TWO + echo_udp,
            "--group", ",".join(ZERO) + echo_udp + ":zero",
            "--group", ",".join(RANDOM) + echo_udp + ":random",
            "--group", ",".join(MERC) + echo_udp, "--errors-from", f"{MERC[0]}={MERC[1]}",
            "--group", ",".join(SWAPPED) + echo_udp + ":swapped"]  # fmt: skip
    proc = tb.popen("tg", argv, stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"


def ours(tb: Testbed, *args: str) -> list[dict[str, Any]]:
    got = subprocess.run(
        ["ip", "netns", "exec", tb.netns_name("ep"), sys.executable, "-m", "packetlab", "run",
         "alias", "--json", *args],
        capture_output=True, text=True, timeout=120, env=env(), cwd=REPO,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    return [json.loads(x) for x in got.stdout.splitlines()]


def scamper(tb: Testbed, command: str) -> dict[str, Any]:
    got = subprocess.run(
        ["ip", "netns", "exec", tb.netns_name("ep"), "scamper", "-O", "json", "-I", command],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    (dealias,) = [r for r in map(json.loads, got.stdout.splitlines()) if r["type"] == "dealias"]
    return dealias


def test_verdicts_beside_scamper_on_known_routers(
    testbed_factory: Callable[..., Testbed], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if shutil.which("scamper") is None:
        pytest.skip("no scamper")
    tb = testbed_factory(chain(1))
    setup(tb)
    listed = tmp_path / "candidates.txt"  # (-f, scamper's listfile; a pair twice)
    listed.write_text("# candidates\n" + "\n".join(ALL) + f"\n{SHARED[0]} {SHARED[1]}\n")

    for how in ([], ["--single-stage"]):
        records = ours(tb, "-f", str(listed), *R1, *how)
        explain = [r for r in records if r["type"] != "ipid"]
        series = {r["addr"]: r for r in records if r["type"] == "ipid-series"}
        pairs = {(r["a"], r["b"]): r["by"] for r in records if r["type"] == "alias"}
        assert pairs == {SHARED: ["ip-id"], MERC: ["ip-id", "mercator"],
                         SWAPPED: ["ip-id"]}, explain  # fmt: skip
        assert not any(series[a]["usable"] for a in (*ZERO, *RANDOM)), explain
        assert series[SWAPPED[0]].get("byte_swapped"), series[SWAPPED[0]]
        assert series[SWAPPED[0]]["ids_per_s"] < 2000
        assert all(series[a]["usable"] for a in (ONE, TWO, *R1))  # usable, not aliases

    def ally(method: str, a: str, b: str) -> str:
        got = scamper(tb, f"dealias -m ally -W 20 -q 5 -p '-P {method}' {a} {b}")
        return str(got["result"])

    assert ally("icmp-echo", *SHARED) == "aliases"
    assert ally("icmp-echo", ONE, TWO) == "not-aliases"
    assert ally("icmp-echo", *SWAPPED) == "aliases"  # (scamper undoes byte swapping too)
    assert ally("udp", *MERC) == "aliases"  # (it counts the port unreachable from MERC[1])
    assert ally("icmp-echo", *ZERO) == "not-aliases"  # ours: no usable counter
    assert ally("icmp-echo", *R1) == "not-aliases"  # Linux: both say so (a false negative)
    assert scamper(tb, f"dealias -m mercator {MERC[0]}")["result"] == "aliases"
    assert scamper(tb, f"dealias -m mercator {SHARED[0]}")["result"] == "none"
