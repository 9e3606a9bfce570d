"""`pktlab run throughput --bidir -P N` against a real `iperf3 -s` on loopback, through
the in-process endpoint: a download faster than the controller no longer holds the
endpoint's request reading (the receive budgets under MAX_MSGQ_LEN ndata), so --bidir
-P 2 -t 1 ends in about a second, with the ESKTPKTDENY line over TLS (the upload half
over the endpoint's default send quota) or with its figures in plaintext (no quota); the
server then runs the next test. Was: ~40 s, then "closed after 0 of 1 bytes", the
server sending on until it failed.

Bounded: 1-3 s tests, each run under a 60 s subprocess limit; one server per test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from test_throughput_iperf3_options import REPO, port  # noqa: F401 (a fixture)
from testkit.poll import wait_tcp_listening

pytestmark = pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 missing")

#: on stderr, as iperf3 writes its errors (session 19; a row on stdout before)
DENIED = "pktlab run throughput: error - the endpoint refused the sends (ESKTPKTDENY)"
#: A 1 s test ends well within this on a loaded 2-core machine (measured: 0.3-1.4 s;
#: the old code took 41 s).
PROMPT_S = 10.0


def pktlab(port: int, *args: str) -> tuple[int, str, str, float]:  # noqa: F811
    """One run (TLS unless `--insecure-plaintext` is among `args`): status, output, errors
    and how long it took."""
    wait_tcp_listening(port, timeout=20)  # the server listens anew after each test
    env = dict(os.environ, PYTHONPATH=str(REPO))
    began = time.monotonic()
    got = subprocess.run(
        [sys.executable, "-m", "packetlab", "run", "throughput", "-c", "127.0.0.1", "-p",
         str(port), *args],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )  # fmt: skip
    return got.returncode, got.stdout, got.stderr, time.monotonic() - began


@pytest.mark.parametrize(
    "words",
    [["--bidir", "-P", "2"], ["--bidir", "-P", "4"], ["--bidir"],
     ["--direction", "upload", "-P", "2"]],
    ids=["bidir-P2", "bidir-P4", "bidir-P1", "upload-P2"],
)  # fmt: skip
def test_a_refused_upload_ends_at_once_and_the_server_runs_on(port: int, words: list[str]) -> None:  # noqa: F811
    """Unpaced over TLS: refused by the endpoint's send quota, one clear line, status 1,
    within seconds, for any -P, with or without --bidir; the same server then runs a
    -R -P 2 test and a paced --bidir -P 4 -b 5M one (20 Mbit/s, under the quota)."""
    # -t 3: refused once 12.5 MB went (the quota's burst), within 3 s from 33 Mbit/s up;
    # with -t 1 a loaded run's 90.8 Mbit/s stayed under it and the test ended with 0
    rc, out, err, took = pktlab(port, *words, "-t", "3")
    assert rc == 1, (out, err)
    assert DENIED in err and "use -b below it" in err, err
    assert "Traceback" not in err and "closed after" not in err, (out, err)
    assert took < PROMPT_S, (took, out)
    rc, out, err, took = pktlab(port, "-R", "-P", "2", "-t", "1", "--insecure-plaintext",
                                "--json")  # fmt: skip
    assert rc == 0, (out, err)
    (result,) = [r for r in map(json.loads, out.splitlines()) if r["type"] == "throughput"]
    assert result["sum"]["receiver"]["bytes"] > 1 << 20 and took < PROMPT_S
    rc, out, err, took = pktlab(port, "-P", "4", "--bidir", "-t", "1", "-b", "5M", "--json")
    assert rc == 0, (out, err)
    (result,) = [r for r in map(json.loads, out.splitlines()) if r["type"] == "throughput"]
    assert result["sum"]["sender"]["mbit_s"] == pytest.approx(20, rel=0.25)
    assert result["sum_reverse"]["receiver"]["bytes"] > 0 and took < PROMPT_S


def test_bidir_parallel_unpaced_runs_both_ways(port: int) -> None:  # noqa: F811
    """--bidir -P 2 -t 1 in plaintext (no send quota): both halves move data at loopback
    speed and the test ends on time (was: the endpoint's requests unread behind 128
    queued ndata, 40 s, "closed after 0 of 1 bytes")."""
    rc, out, err, took = pktlab(port, "--bidir", "-P", "2", "-t", "1", "--insecure-plaintext",
                                "--json")  # fmt: skip
    assert rc == 0, (out, err)
    (result,) = [r for r in map(json.loads, out.splitlines()) if r["type"] == "throughput"]
    assert result["sum"]["sender"]["bytes"] > 10 << 20, result["sum"]
    assert result["sum_reverse"]["receiver"]["bytes"] > 10 << 20, result["sum_reverse"]
    assert result["seconds"] == pytest.approx(1.0, abs=0.05)
    assert took < PROMPT_S


def test_ctrl_c_in_a_parallel_download_prints_the_totals(port: int) -> None:  # noqa: F811
    """SIGINT in -R -P 4 -t 10 once the test runs: the totals of what ran, exit 130. With
    4 MiB a stream the stop's TEST_END (behind its clock read) went unread while the
    server sent on, and the run ended after the grace with `# 0 of 0 runs`."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    wait_tcp_listening(port, timeout=20)
    proc = subprocess.Popen(
        [sys.executable, "-m", "packetlab", "run", "throughput", "-c", "127.0.0.1", "-p",
         str(port), "--insecure-plaintext", "-R", "-P", "4", "-t", "10", "-i", "0.5",
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["type"] == "connected"
        first = proc.stdout.readline()  # the first interval: the test runs
        assert json.loads(first)["type"] == "interval"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 130, err
    (result,) = [r for r in map(json.loads, out.splitlines()) if r["type"] == "throughput"]
    assert result["stopped"] is True and result["seconds"] < 5, result
    assert result["sum"]["receiver"]["bytes"] > 10 << 20 and "Traceback" not in err
