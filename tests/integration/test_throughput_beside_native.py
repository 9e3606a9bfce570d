"""Session 17 (iperf17b): `pktlab run throughput` beside native iperf3 3.12 against the same
real `iperf3 -s` on loopback, where the claim is native's behaviour: the fixed-size
transfer's whole blocks (upload and -R); the UDP block-size warning.

Bounded: transfers of 3 MB, one server per test on a free loopback port
(test_throughput_iperf3_options' fixture).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
from test_throughput_iperf3_options import native, pktlab, port  # noqa: F401 (a fixture)
from testkit.poll import wait_tcp_listening

pytestmark = pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 missing")

BLOCK = 128 * 1024
ODD = 3_000_000  # not a multiple of 128 KiB
WHOLE = 23 * BLOCK  # 3,014,656


def _result(records: list[dict[str, Any]]) -> dict[str, Any]:
    (result,) = [r for r in records if r["type"] == "throughput"]
    return result


def test_fixed_size_upload_sends_whole_blocks_as_native(port: int) -> None:  # noqa: F811
    """-n 3000000 alone (the paper's fixed-size transfer), upload: whole 128 KiB blocks
    until N went, 3,014,656 bytes, as native's sum_sent (was: exactly 3,000,000); the
    record's rate is the server's (flaky until session 18: it asked the server for > 0)."""
    rc, records, err = pktlab(port, "-n", str(ODD), "--direction", "upload")
    assert rc == 0, (err, records)
    ours = _result(records)
    assert "protocol" not in ours  # the fixed-size transfer, not iperf3's timed test
    theirs = native(port, "-n", str(ODD))
    assert theirs["start"]["test_start"]["bytes"] == ours["bytes_limit"] == ODD
    assert ours["bytes"] == theirs["end"]["sum_sent"]["bytes"] == WHOLE
    # The server's count is what it read before it handled TEST_END, and may be 0: both
    # clients send TEST_END once the last block is in the kernel (iperf3 3.12's client
    # right after its last write), and 3.12's server handles the control socket before
    # the data in a select() wake and reads nothing after TEST_END, so a server that had
    # no CPU during the transfer (loopback's buffers hold all 3 MB) counts nothing.
    # Under two CPU hogs: ours 0 in 8 of 24 runs, native's 0 in 6 of 16 (docs/usability.md,
    # session 18). So only its bounds, and that the record's figure is the server's.
    assert 0 <= ours["server_bytes"] <= WHOLE
    assert ours["measured_bytes"] == ours["server_bytes"]
    assert ours["mbit_s"] == ours["server_mbit_s"] and ours["method"] == "iperf3-server"


def test_fixed_size_download_counts_whole_blocks_as_native(port: int) -> None:  # noqa: F811
    """-R -n 3000000: the server sends whole blocks (3,014,656, both); the client counts
    its reads up to the one that brought N, on loopback the whole last block, as native's
    sum_received (was: 3,000,000)."""
    rc, records, err = pktlab(port, "-R", "-n", str(ODD))
    assert rc == 0, (err, records)
    ours = _result(records)
    assert "protocol" not in ours
    theirs = native(port, "-R", "-n", str(ODD))["end"]
    assert ours["server_bytes"] == theirs["sum_sent"]["bytes"] == WHOLE
    assert ODD <= theirs["sum_received"]["bytes"] <= WHOLE
    # a read ending exactly at N would need a recv() boundary at byte 3,000,000
    assert ODD < ours["bytes"] <= WHOLE and ours["bytes_limit"] == ODD


def _native_text(port: int, *args: str) -> subprocess.CompletedProcess[str]:  # noqa: F811
    """Native iperf3's text run: its exit code, stdout and stderr."""
    wait_tcp_listening(port, timeout=20)
    return subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


MSS_WARNING = (
    "warning: UDP block size 40000 exceeds TCP MSS 32768, may result in fragmentation / drops"
)


@pytest.mark.parametrize(
    "words",
    [["-u", "-l", "40000"], ["-u", "-l", "40000", "-R", "-J"], ["-u", "-l", "32768"]],
    ids=["upload", "reverse-J", "at-the-mss"],
)
def test_udp_block_over_the_mss_warns_as_native(port: int, words: list[str]) -> None:  # noqa: F811
    """-u -l 40000 on loopback (the control connection's MSS 32768): iperf3 3.12's one
    warning line on stderr, with -J too, and the test runs; -l 32768 none (was: never)."""
    args = [*words, "-t", "1", "-b", "10M"]
    rc, _out, err = pktlab(port, *args, json_out=False)
    theirs = _native_text(port, *args)
    assert rc == theirs.returncode == 0, (err, theirs.stderr)
    want = [MSS_WARNING] if "40000" in words else []
    assert theirs.stderr.splitlines() == want
    assert err.splitlines() == want


def _heads(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.startswith("[ ID]")]


@pytest.mark.parametrize(
    "words",
    [["-R", "-n", "1M"], ["-R", "-t", "1"], ["-R", "-t", "1", "-i", "0.5"]],
    ids=["n-1M", "t-1", "t-1-i-half"],
)
def test_reverse_headers_as_native(port: int, words: list[str]) -> None:  # noqa: F811
    """-R -n 1M and -R -t 1: the only interval line is printed after the results exchange,
    under `Retr  Cwnd` (the server has retransmits), as native 3.12 does every time;
    -R -t 1 -i 0.5 the receiver's header (was: the receiver's always)."""
    rc, ours, err = pktlab(port, *words, json_out=False)
    theirs = _native_text(port, *words)
    assert rc == theirs.returncode == 0, (err, theirs.stderr)
    assert _heads(ours) == _heads(theirs.stdout), (ours, theirs.stdout)


def test_interval_zero_shows_the_whole_test_as_native(port: int) -> None:  # noqa: F811
    """-i 0: native 3.12 prints one interval line, the whole test, and -J has it (was:
    none, and -J's intervals empty); -P 2 its [SUM] and one separator."""
    args = ["-t", "1", "-i", "0", "-P", "2", "-b", "10M"]
    rc, ours, err = pktlab(port, *args, "--direction", "upload", json_out=False)
    theirs = _native_text(port, *args).stdout
    assert rc == 0, err
    for text in (ours, theirs):
        lines = text.splitlines()
        # (native's timer may end at 1.01 on a loaded machine: 1.00 read for it)
        spans = [re.sub(r"-1\.0\d ", "-1.00 ", x.split("sec")[0]) for x in lines
                 if x.startswith(("[  5]", "[SUM]")) and "connected" not in x]  # fmt: skip
        # the interval, then sender and receiver: each 0.00-1.00
        assert sorted(spans) == ["[  5]   0.00-1.00   "] * 3 + ["[SUM]   0.00-1.00   "] * 3
        assert lines.count("- - - - - - - - - - - - - - - - - - - - - - - - -") == 1, text
    rc, records, err = pktlab(port, "-R", "-n", "1M", "-i", "0")
    assert rc == 0, err
    assert [(r["start"], r["type"]) for r in records if r["type"] == "interval"] == [
        (0.0, "interval")
    ]
    assert len(native(port, "-R", "-n", "1M", "-i", "0")["intervals"]) == 1


def test_udp_lines_as_native(port: int) -> None:  # noqa: F811
    """-R -u and --bidir -u: a receiving interval line ends in two spaces; --bidir's
    sending line has its count under Lost/Total (was: no spaces; 10 columns left)."""
    args = ["--bidir", "-u", "-b", "10M", "-t", "1"]
    rc, ours, err = pktlab(port, *args, json_out=False)
    theirs = _native_text(port, *args).stdout
    assert rc == 0, err
    for text in (ours, theirs):
        tx = [x for x in text.splitlines() if x.startswith("[  5][TX-C]   0.00-1.00")]
        rx = [x for x in text.splitlines() if x.startswith("[  7][RX-C]   0.00-1.00")]
        assert tx[0].endswith("bits/sec            " + tx[0].split()[-1] + "  "), text
        assert rx[0].endswith("%)  "), text
