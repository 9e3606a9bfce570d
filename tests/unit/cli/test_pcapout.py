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


def test_the_file_made_at_once_is_a_pcap_with_no_packets(tmp_path: Path) -> None:
    """A run stopped before its end without writing (killed, Ctrl-C twice: os._exit) left
    an empty file: `tcpdump -r` said "truncated dump file; tried to read 4 file header
    bytes, only got 0". Now it is the header tcpdump -w writes first."""
    from packetlab.measure.pcap import pcap_records

    path = tmp_path / "t.pcap"
    pcapout.recorder_for(argparse.Namespace(pcap=str(path)))
    data = path.read_bytes()
    assert len(data) == 24
    linktype, records = pcap_records(data)
    assert (linktype, list(records)) == (101, [])


def test_no_header_down_a_fifo(tmp_path: Path) -> None:
    """A FIFO (or /dev/stdout) is not made at once: the header would come twice, once now
    and once with the packets."""
    import os
    import threading

    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    pcapout.recorder_for(argparse.Namespace(pcap=str(fifo)))
    reader.join(10)
    assert got == [b""]


def test_a_dash_is_refused_not_a_file_named_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--pcap -` (tcpdump -w -'s standard output) made a file named `-`."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunError, match=r"^--pcap -: standard output carries the command.s output"):
        pcapout.recorder_for(argparse.Namespace(pcap="-"))
    assert list(tmp_path.iterdir()) == []
