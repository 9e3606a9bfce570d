"""The TCP handshake reflex (examples/reflexes/tcp_handshake.c) over a raw socket on the
namespace testbed, run by `benchmarks/bench_reflex_handshake.py` with real processes: the
server accepts every connection the reflex opened, the SYN-ACK's options are read, and
the kernel stamps are in order (SYN TX < SYN-ACK RX < ACK TX)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.reflex_world import run_benchmark
from packetlab.monitor.build import find_clang

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces, raw sockets"),
    pytest.mark.skipif(find_clang() is None, reason="clang/lld not installed"),
]


def test_reflex_completes_tcp_handshakes(tmp_path: Path) -> None:
    port = 20000 + os.getpid() % 20000
    args = ["--count", "5", "--port", str(port)]
    r = run_benchmark("bench_reflex_handshake", args, tmp_path / "hs.json", 300)
    assert r["ok"] == r["n"] == 5
    assert r["accepted"] == 5  # the server saw each handshake complete
    assert r["options"]["mss"] == 1460 and r["options"]["sack"] == 1
    assert r["synack_rtt_us"]["p10"] > 0 and r["ack_us"]["p10"] > 0
