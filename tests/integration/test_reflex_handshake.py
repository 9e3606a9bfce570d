"""The TCP handshake reflex (examples/reflexes/tcp_handshake.c) over a raw socket on the
namespace testbed, run by `benchmarks/bench_reflex_handshake.py` with real processes: the
server accepts every connection the reflex opened, the SYN-ACK's options are read, and
the kernel stamps are in order (SYN TX < SYN-ACK RX < ACK TX)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from packetlab.monitor.build import find_clang

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces, raw sockets"),
    pytest.mark.skipif(find_clang() is None, reason="clang/lld not installed"),
]


def test_reflex_completes_tcp_handshakes(tmp_path: Path) -> None:
    out = tmp_path / "hs.json"
    port = 20000 + os.getpid() % 20000
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_reflex_handshake", "--count", "5",
         "--port", str(port), "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())["results"]
    assert r["ok"] == r["n"] == 5
    assert r["accepted"] == 5  # the server saw each handshake complete
    assert r["options"]["mss"] == 1460 and r["options"]["sack"] == 1
    assert r["synack_rtt_us"]["p10"] > 0 and r["ack_us"]["p10"] > 0
