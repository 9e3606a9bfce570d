"""--pcap FILE: a file that cannot be written is a one-line error before the measurement
(it was Python's `[Errno 2] No such file or directory: '...'` after the whole test, the
pcap lost)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from packetlab.cli import pcapout
from packetlab.cli.run import RunError


@pytest.mark.parametrize(
    ("where", "reason"),
    [("nodir/x.pcap", "No such file or directory"), (".", "Is a directory")],
)
def test_a_pcap_file_that_cannot_be_written_is_refused_first(
    tmp_path: Path, where: str, reason: str
) -> None:
    path = str(tmp_path / where)
    with pytest.raises(RunError, match=f"^--pcap {path}: cannot write it: {reason}$"):
        pcapout.recorder_for(argparse.Namespace(pcap=path))


def test_a_writable_pcap_file_gets_a_recorder(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    assert pcapout.recorder_for(argparse.Namespace(pcap=str(path))) is not None
    assert path.exists()  # made at once, as tcpdump -w
    assert pcapout.recorder_for(argparse.Namespace(pcap=None)) is None
