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


def test_a_fifo_gets_the_header_at_once_and_the_records_after_the_run(
    tmp_path: Path,
) -> None:
    """A FIFO (`mkfifo f; tcpdump -r f & pktlab run ... --pcap f`) was opened and closed
    with nothing written at the start: the reader took the end of the file (`tcpdump:
    truncated dump file; tried to read 4 file header bytes, only got 0`, exit 1) and the
    run hung at its end opening the FIFO again with no reader. Now it is opened once and
    kept, as tcpdump -w keeps it: the header at once, the records after the run."""
    import os
    import threading

    from packetlab.measure.pcap import pcap_header, pcap_records

    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    head, got, started = bytearray(), bytearray(), threading.Event()

    def read() -> None:  # as tcpdump -r: the file header first, then the records
        with open(fifo, "rb") as f:
            while len(head) < 24 and (more := f.read(24 - len(head))):
                head.extend(more)
            started.set()
            got.extend(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    args = argparse.Namespace(pcap=str(fifo))
    recorder = pcapout.recorder_for(args)
    assert recorder is not None
    assert started.wait(10) and head == pcap_header()  # (was b"": the end of the file)

    async def run(session: object) -> None:
        recorder.udp(7_000_000_000, "::1", 5000, "::1", 53, b"q")

    with pytest.raises(StopIteration):
        pcapout.recording(args, recorder, run)(None).send(None)
    reader.join(10)
    assert [t for t, _ in pcap_records(bytes(head + got))[1]] == [7_000_000_000]
    assert pcap_header() not in got


def test_a_dash_is_standard_output_as_tcpdump_w_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--pcap -` was refused ("standard output carries the command's output"), where
    `tcpdump -w - | tcpdump -r -` works: now the pcap goes to standard output (taken by
    `_stdout_for_pcap`, its header written there at once), the records after the run, no
    second header, and no file named `-`."""
    import io

    from packetlab.measure.pcap import pcap_header, pcap_records

    monkeypatch.chdir(tmp_path)
    out = io.BytesIO()
    out.close = lambda: None  # type: ignore[method-assign]  # (read after the run)
    monkeypatch.setattr(
        pcapout, "_stdout_for_pcap", lambda: out.write(pcap_header()) and out, raising=False
    )
    args = argparse.Namespace(pcap="-")
    recorder = pcapout.recorder_for(args)
    assert recorder is not None and out.getvalue() == pcap_header()

    async def run(session: object) -> None:
        recorder.udp(5_000_000_123, "127.0.0.1", 5000, "127.0.0.1", 53, b"q")

    done = pcapout.recording(args, recorder, run)(None)
    with pytest.raises(StopIteration):
        done.send(None)
    linktype, records = pcap_records(out.getvalue())
    assert linktype == 101 and [t for t, _ in records] == [5_000_000_123]
    assert out.getvalue().count(pcap_header()) == 1
    assert list(tmp_path.iterdir()) == []


def test_dev_null_is_not_taken_for_standard_output_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--pcap /dev/null` with standard output on /dev/null too (a cron line, `>/dev/null`)
    is the same device, not our standard output: taken as `--pcap -` (review32B), the
    command's text went to standard error (measured: `pktlab run sendgap --count 10
    --trains 1 --pcap /dev/null >/dev/null` printed its train lines on stderr)."""
    import os
    import sys

    with open(os.devnull, "w") as null:
        monkeypatch.setattr(sys, "stdout", null)
        assert not pcapout._is_stdout(os.devnull)
    r, w = os.pipe()  # a pipe still is (`--pcap /dev/stdout | tcpdump -r -`)
    with os.fdopen(r, "rb"), os.fdopen(w, "w") as pipe:
        monkeypatch.setattr(sys, "stdout", pipe)
        assert pcapout._is_stdout(f"/dev/fd/{w}")
