"""`-t 0` beside native iperf3 3.12 against the same real `iperf3 -s` on loopback: both
run until Ctrl-C (it was refused here), `-V` says `0 second test`, and the Ctrl-C gives
the totals on stdout and the interrupt line last on stderr (exit 130 here, native 1, as
every Ctrl-C: test_throughput_iperf3_errors). Bounded: each side stopped at its first
interval line (the helpers' 20 s deadline, then a kill 30 s on)."""

from __future__ import annotations

import shutil

import pytest
from test_throughput_iperf3_errors import PKTLAB, interrupted, same_line
from test_throughput_iperf3_options import port  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 missing")


@pytest.mark.parametrize("words", [["-i", "0.5"], ["-u", "-b", "5M", "-i", "0.5", "-R"]],
                         ids=["tcp-upload", "udp-download"])  # fmt: skip
def test_t_0_runs_until_ctrl_c_as_native(port: int, words: list[str]) -> None:  # noqa: F811
    words = ["-t", "0", "-V", "--forceflush", *words]
    ours = interrupted(port, [*PKTLAB, "--direction", "upload", *words])
    theirs = interrupted(port, ["iperf3", *words])
    assert (ours.returncode, theirs.returncode) == (130, 1), ours.stderr
    for got in (ours, theirs):
        assert ", 0 second test, tos 0" in got.stdout, got.stdout
        assert [x for x in got.stdout.splitlines() if x.endswith("sender")], got.stdout
    same_line(ours.stderr.splitlines()[-1], theirs.stderr.splitlines()[-1])
