"""`benchmarks/bench_endpoint.py` end to end, briefly, so it cannot silently rot: our real
endpoint and the do-nothing one (`benchmarks/null_endpoint.py`), over TLS 1.3 and plain
TCP, every measure once with small counts. The raw-flow controller checks every answer
after its clock stops (an error raises FlowMismatch and the run leaves no JSON); here we
also check what the JSON reports. Rates are not asserted (a shared machine)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks.bench_endpoint import FrameReader, bench_udp
from benchmarks.raw_flow import FlowMismatch, FrameSplitter
from packetlab import wire
from packetlab.endpoint import frames

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_endpoint_runs_every_measure_against_ours_and_the_null_endpoint(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "benchmarks.bench_endpoint", "--rounds", "1",
            "--udp-count", "700", "--tcp-bytes", "3000000", "--mread-count", "50",
            "--only", "udp", "--only", "tcp", "--only", "mread", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1), proc.stderr  # 1: a TLS goal missed on this machine
    assert "controller ceiling" in proc.stdout and "x ours: ≥ 3x" in proc.stdout
    runs = json.loads(out.read_text())["runs"]
    assert set(runs) == {"ours-tls", "ours-tcp", "null-tls", "null-tcp", "loopback"}
    floor = runs.pop("loopback")["tcp"]  # the kernel's floor: plain bytes, no endpoint
    assert floor["bytes"] == floor["expected"] == 3_000_000
    assert "kernel loopback floor" in proc.stdout
    for name, run in runs.items():
        assert run["udp"]["nsends"] == 700 and run["udp"]["errors"] == 0, name
        assert run["tcp"]["bytes"] == run["tcp"]["expected"] == 3_000_000, name
        assert run["tcp"]["ndata_frames"] >= 3_000_000 // 65535, name
        assert run["udp"]["per_second"] > 0 and run["tcp"]["mb_per_s"] > 0, name
        assert run["mread"]["count"] == 50, name
    ceiling = json.loads(out.read_text())["ceiling"]
    assert set(ceiling["tls"]) == set(ceiling["tcp"]) == {"udp", "tcp"}
    for link in ("tls", "tcp"):  # the controller's own cost, beside the measured ratio
        assert ceiling[link]["tcp"]["one_cpu_rate"] > 0 < ceiling[link]["tcp"]["ratio"], link


class WrongPeer:
    """An in-process endpoint over a socket pair that answers nsend number `bad` with the
    wrong tag (or an error result): the controller must notice after its clock stops."""

    def __init__(self, bad: int, error: bool) -> None:
        self.ctl, self.peer = socket.socketpair()
        self.reader = FrameReader(self.ctl)
        self.proc = SimpleNamespace(pid=os.getpid())
        self.thread = threading.Thread(target=self._serve, args=(bad, error), daemon=True)
        self.thread.start()

    def _serve(self, bad: int, error: bool) -> None:
        splitter, nsends = FrameSplitter(), 0
        while data := self.peer.recv(1 << 16):
            out = []
            for kind, body, _ in splitter.feed(data, 0):
                if kind == 0x2C:  # nsend: sktid ... tag at body[11:13]
                    wrong = nsends == bad
                    tag = int.from_bytes(body[11:13], "big") + (wrong and not error)
                    out += [
                        frames.result(5 if wrong and error else 0),
                        frames.ntag(body[0], tag, 1),
                    ]
                    nsends += 1
                else:
                    out.append(frames.result(0))
            self.peer.sendall(b"".join(out))

    def request(self, msg: wire.Message) -> tuple[int, bytes]:
        self.ctl.sendall(wire.encode(msg))
        return self.reader.next()

    def close(self) -> None:
        self.ctl.close()
        self.thread.join(5)
        self.peer.close()


@pytest.mark.parametrize(("error", "message"), [(False, "tag 301"), (True, "error result")])
def test_bench_udp_voids_a_run_with_a_wrong_answer(error: bool, message: str) -> None:
    peer = WrongPeer(300, error)
    try:
        with pytest.raises(FlowMismatch, match=message):
            bench_udp(peer, 1000)  # type: ignore[arg-type]
    finally:
        peer.close()


def test_bench_udp_accepts_right_answers() -> None:
    peer = WrongPeer(-1, False)
    try:
        r = bench_udp(peer, 1000)  # type: ignore[arg-type]
        assert r["nsends"] == 1000 and r["errors"] == 0
    finally:
        peer.close()


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="split needs two CPUs")
def test_bench_endpoint_places_the_udp_measure_and_reports_preemptions(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "benchmarks.bench_endpoint", "--rounds", "1",
            "--udp-count", "700", "--only", "udp", "--link", "tcp", "--no-null",
            "--place", "split", "--place", "shared", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "udp-split rounds, ours-tls" not in proc.stdout  # TLS not asked for
    assert "(split)" in proc.stdout and "(shared)" in proc.stdout
    data = json.loads(out.read_text())
    assert len(data["vcpu_ns"]) == 1 and data["vcpu_ns"][0] > 0  # one calibration per round
    assert "vCPU speed per round" in proc.stdout
    run = data["runs"]["ours-tcp"]
    for place in ("split", "shared"):
        udp = run[f"udp-{place}"]
        assert udp["place"] == place and udp["nsends"] == 700 and udp["errors"] == 0
        assert udp["controller_reads_per_nsend"] > 0
        assert udp["endpoint_preempted_per_nsend"] >= 0 <= udp["endpoint_sleeps_per_nsend"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="split needs two CPUs")
@pytest.mark.parametrize("place", ["split", "shared"])
def test_bench_udp_gives_the_cpus_back_after_a_placed_run(place: str) -> None:
    mine = os.sched_getaffinity(0)
    for bad in (-1, 300):  # a good run, then one voided by a wrong answer
        peer = WrongPeer(bad, False)
        try:
            if bad < 0:
                assert bench_udp(peer, 1000, place=place)["place"] == place  # type: ignore[arg-type]
            else:
                with pytest.raises(FlowMismatch):
                    bench_udp(peer, 1000, place=place)  # type: ignore[arg-type]
        finally:
            peer.close()
        assert os.sched_getaffinity(0) == mine
