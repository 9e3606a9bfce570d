"""`benchmarks/probe_sockmap.py` runs here: the kernel loads its programs in both attach
modes and the bytes arrive whole; without privileges it refuses in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.root]


def probe(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    argv = [*prefix, sys.executable, "-m", "benchmarks.probe_sockmap", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("attach", ["verdict", "stream"])
def test_bulk_both_ways_through_the_kernel_keeps_every_byte(attach: str) -> None:
    r = probe("bulk", "--mib", "16", "--both", "--attach", attach, "--relay", "direct,sockmap")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("run ")]
    assert [ln.split()[2:4] for ln in lines] == [["direct", "OK"], ["sockmap", "OK"]], r.stdout


def test_without_privileges_a_one_line_refusal() -> None:
    # root without any capability (not `nobody`: a fresh clone under a 0700 mktemp
    # directory is not readable by another user, and the probe could not be imported)
    prefix = ("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all")
    r = probe("bulk", "--mib", "1", prefix=prefix)
    assert r.returncode == 1
    assert r.stderr == "probe_sockmap: no BPF sockmap here: Operation not permitted\n"
