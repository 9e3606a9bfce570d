"""Two reflexes written from docs/reflexes.md alone beside the native responder, run by
`benchmarks/bench_reflex_native.py` with real processes on loopback (session 32): the
rate-limited echo (`rate_echo.c`, its timer refilling the bucket) answers as many
datagrams as the same bucket in a plain echo server, byte for byte; the RST responder
(`tcp_rst.c`) sends the very RST the kernel sends for a closed port."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.reflex_world import run_benchmark
from packetlab.monitor.build import find_clang

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: packet capture, raw sockets"),
    pytest.mark.skipif(find_clang() is None, reason="clang/lld not installed"),
]


def test_reflexes_from_the_docs_answer_as_the_native_responders(tmp_path: Path) -> None:
    # a 20 ms refill: a burst of 5 is sent well within one interval, even under load
    args = ["--rounds", "3", "--burst", "3", "--interval-us", "20000", "--syns", "5"]
    r = run_benchmark("bench_reflex_native", args, tmp_path / "native.json", 300)
    reflex, native = r["echo"]["reflex"], r["echo"]["native"]
    for side in (reflex, native):
        assert side["probes"] == 3 * 5
        assert 3 * 3 <= side["replies"] < side["probes"]  # the bucket held some back
        assert side["replies_equal_to_probe"] == side["replies"]
    st = r["echo"]["reflex_status"]
    assert (st["runs"], st["sent"], st["denied"], st["refused"]) == (15, reflex["replies"], 0, 0)
    rst = r["rst"]
    assert rst["syns"] == 5 and rst["rsts_per_syn"] == [2] * 5  # the kernel's and the reflex's
    assert rst["differing_bytes"] == []  # byte for byte the kernel's RST
    assert rst["reflex_status"]["sent"] == 5
