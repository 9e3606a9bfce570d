"""`pktlab run throughput` against a hostile iperf3 server on loopback
(hostile_iperf3_server.py, through the in-process endpoint): each misbehaviour is one line
in the run's error naming the server, exit 1, never a traceback. The unit tests
(tests/unit/measure/test_hostile_iperf3.py) cover the rest of the cases over fakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("state99", "unknown iperf3 state 99"),
        ("bigjson", "iperf3 JSON of 2147483648 bytes announced (at most 1048576)"),
        ("deepjson", "bad iperf3 JSON: nested too deep"),
        ("infinity", "unexpected iperf3 results: bytes inf out of range"),
    ],
)
def test_hostile_iperf3_server(mode: str, says: str) -> None:
    server = subprocess.Popen(
        [sys.executable, str(HERE / "hostile_iperf3_server.py"), mode],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        env = dict(os.environ, PYTHONPATH=str(REPO))
        got = subprocess.run(
            [sys.executable, "-m", "packetlab", "run", "throughput", "--json", "--server",
             f"127.0.0.1:{port}", "--direction", "upload", "--bytes", "2M",
             "--insecure-plaintext"],
            capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
        )  # fmt: skip
    finally:
        server.kill()
        server.wait(10)
    assert "Traceback" not in got.stderr, got.stderr
    assert got.returncode == 1, (got.stdout, got.stderr)
    (record,) = [r for r in map(json.loads, got.stdout.splitlines()) if r["type"] == "throughput"]
    assert record["error"] == f"the iperf3 server 127.0.0.1:{port}: {says}"
