"""`pktlab run throughput` against a stock `iperf3 -s` on the namespace testbed (a
100 Mbit/s tbf-shaped link), beside native iperf3 against the very same server: the
paper's C1 with a loose bound (a shared machine; benchmarks/bench_throughput.py measures
it properly), and the failures a user meets (no server).

The in-process endpoint runs with --insecure-plaintext: over TLS its certificate limits
apply, including the reference endpoint's built-in send cap (10 Mb/s over 10 s), which
refuses uploads of more than 12.5 MB per 10 s (tested in test_upload_over_the_send_cap).
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

from packetlab.measure.baselines import run_iperf3
from packetlab.testbed import Shape, Testbed, chain

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 missing (scripts/setup.sh)"),
]

REPO = Path(__file__).resolve().parents[2]
NBYTES = 8 << 20


def pktlab_in(tb: Testbed, node: str, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    got = subprocess.run(
        ["ip", "netns", "exec", tb.netns_name(node), sys.executable, "-m", "packetlab", "run",
         *args],
        capture_output=True, text=True, timeout=180, env=env, cwd=REPO,
    )  # fmt: skip
    return got.returncode, [json.loads(x) for x in got.stdout.splitlines()], got.stderr


@pytest.fixture
def tb(testbed_factory: Callable[..., Testbed]) -> Testbed:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces")
    t = testbed_factory(chain(1, shape={2: Shape.parse("100mbit")}))
    t.popen("tg", ["iperf3", "-s", "-p", "5201"], stdout=subprocess.DEVNULL)
    t.wait_listening("tg", 5201)
    return t


@pytest.mark.parametrize("direction", ["download", "upload"])
def test_throughput_matches_native_iperf3(tb: Testbed, direction: str, tmp_path: Path) -> None:
    tg = str(tb.addr("tg"))
    pcap = tmp_path / "tp.pcap"
    rc, records, err = pktlab_in(
        tb, "ep", "throughput", "--json", "--server", tg, "--direction", direction,
        "--bytes", str(NBYTES), "--runs", "2", "--insecure-plaintext", "--pcap", str(pcap),
    )  # fmt: skip
    assert rc == 0, f"{err}\n{records}"  # (a str: pytest cuts a repr short)
    runs, summary = records[:-1], records[-1]
    assert [r["type"] for r in runs] == ["throughput", "throughput"]
    assert summary["type"] == "summary" and summary["ok"] == 2
    for r in runs:
        assert (r["direction"], r["bytes"], r["server"], r["port"]) == (direction, NBYTES, tg, 5201)
        assert 0 < r["server_bytes"] <= NBYTES  # upload: what arrived before TEST_END, as native
        assert 60 < r["mbit_s"] < 110  # a 100 Mbit/s link
        if direction == "upload":  # plaintext allows any reflex: the data starts on TEST_START
            assert r["data_start"] == "test-start" and 0 < r["setup_us"] < 100_000
    native = []
    for _ in range(2):  # between two tests the server closes its listener, then listens
        tb.wait_listening("tg", 5201)  # anew; native iperf3 does not try a refused test again
        native.append(
            run_iperf3(tg, direction=direction, nbytes=NBYTES, netns=tb.netns_name("ep")).mbit_s
        )
    ours = sum(r["mbit_s"] for r in runs) / 2
    theirs = sum(native) / 2  # type: ignore[arg-type]
    assert abs(1 - ours / theirs) < 0.06  # the paper's C1 bound for throughput
    from packetlab.measure.pcap import read_pcap

    tcp = [p for _, p in read_pcap(pcap.read_bytes()) if p[9] == 6]
    assert sum(len(p) - 40 for p in tcp) >= 2 * NBYTES  # both runs' data connections


def test_no_server_and_table_output(tb: Testbed) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    got = subprocess.run(
        ["ip", "netns", "exec", tb.netns_name("ep"), sys.executable, "-m", "packetlab", "run",
         "throughput", "--server", f"{tb.addr('tg')}:5999", "--bytes", "4M",
         "--insecure-plaintext"],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )  # fmt: skip
    assert got.returncode == 1
    assert f"error: connect to {tb.addr('tg')}:5999: connection refused" in got.stdout
    assert got.stdout.splitlines()[-1] == "# 0 of 1 runs"


def test_upload_over_the_send_cap(tb: Testbed) -> None:
    """Over TLS the built-in 10 Mb/s-over-10 s cap refuses a 25 MiB upload: a clear error."""
    rc, records, err = pktlab_in(
        tb, "ep", "throughput", "--json", "--server", str(tb.addr("tg")),
        "--direction", "upload", "--bytes", "25M",
    )  # fmt: skip
    assert rc == 1, err
    assert "refused the sends (ESKTPKTDENY)" in str(records[0]["error"])
    assert "--max-burst-rate-byte" in str(records[0]["error"])  # the way out, named


@pytest.mark.parametrize("allow_reflex", [False, True])
def test_upload_over_tls_with_the_operators_send_window(
    tb: Testbed, tmp_path: Path, allow_reflex: bool
) -> None:
    """The operator's exppriv certificate grants 1 Gb/s over 10 s: the same 25 MiB upload
    runs over TLS, and the pcap holds the data connection. The upload's start reflex runs
    only if the chain lists it (`pktlab init --reflex`, docs/throughput.md); otherwise
    the data goes with the cookie."""
    from packetlab.measure.upload_start import head_reflex

    home = tmp_path / "home"
    wasm = tmp_path / "upload_start.wasm"
    wasm.write_bytes(head_reflex())
    init = subprocess.run(
        [sys.executable, "-m", "packetlab", "init", "--home", str(home),
         "--max-burst-rate-byte", "1250000000/10000000000",
         *(["--reflex", str(wasm)] if allow_reflex else [])],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    pcap = tmp_path / "up.pcap"
    rc, records, err = pktlab_in(
        tb, "ep", "throughput", "--json", "--server", str(tb.addr("tg")), "--home", str(home),
        "--direction", "upload", "--bytes", "25M", "--pcap", str(pcap),
    )  # fmt: skip
    assert rc == 0, (err, records)
    assert "error" not in records[0] and 60 < float(records[0]["mbit_s"]) < 110
    assert records[0]["data_start"] == ("test-start" if allow_reflex else "cookie")
    from packetlab.measure.pcap import read_pcap

    packets = read_pcap(pcap.read_bytes())
    tcp = [p for _, p in packets if p[9] == 6]
    payload = sum(len(p) - 40 for p in tcp)  # IPv4 + TCP headers of our synthetic segments
    assert payload >= 25 << 20  # every byte of the upload (and the control connection's)
