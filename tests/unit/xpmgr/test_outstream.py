"""The manager's stdout read by a pipe whose reader went away (`pktlab xpmgr ... | head -1`):
the mlet's output raised BrokenPipeError inside `MletProcess.outReceived` and
`processEnded`, so the endpoint was never reported and the manager hung. Now the stream
is pointed at /dev/null, one warning is logged, and the mlet's end is reported."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import IO

import pytest
from twisted.internet.error import ProcessDone
from twisted.python.failure import Failure

from packetlab.controller import outstream
from packetlab.controller.mlet import MletProcess


@pytest.fixture
def broken() -> Iterator[IO[str]]:
    r, w = os.pipe()
    os.close(r)  # the reader went away (head exited)
    stream = open(w, "w")  # noqa: SIM115 (closed below)
    yield stream
    stream.close()


def test_a_write_to_a_pipe_without_reader_is_dropped_and_said_once(broken: IO[str]) -> None:
    from testkit.logs import captured_events
    from twisted.logger import LogLevel

    with captured_events(level=LogLevel.warn) as warned:
        outstream.write(broken, b"line 1\n")
        outstream.write(broken, b"line 2\n")
    said = warned.formats()
    assert len(said) == 1 and "is closed" in said[0]
    broken.write("after\n")  # the fd is /dev/null now: the interpreter's exit will not fail
    broken.flush()


def test_a_stream_without_a_buffer_gets_text() -> None:
    s = io.StringIO()
    outstream.write(s, "héllo\n".encode())
    assert s.getvalue() == "héllo\n"


def test_an_mlet_whose_output_cannot_be_passed_on_still_ends(
    broken: IO[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdout", broken)
    ended: list[MletProcess] = []
    proc = MletProcess("m", on_exit=ended.append)
    proc.outReceived(b"line 1\nline 2\npartial")
    proc.processEnded(Failure(ProcessDone(0)))
    assert ended == [proc] and proc.exit_code == 0
    assert bytes(proc.output) == b"line 1\nline 2\npartial"  # kept for the results


def test_stdout_without_newlines_is_passed_on_not_held_without_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An mlet writing MBs with no newline: the held partial line grew by every byte until
    the mlet ended (8 MB of output, 8 MB held). Past LINE_HOLD_MAX it is passed on."""
    from packetlab.controller.mlet import LINE_HOLD_MAX

    out = io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(out))
    proc = MletProcess("m", on_exit=lambda p: None)
    for _ in range(128):
        proc.outReceived(b"x" * 65536)
    assert len(proc._line) <= LINE_HOLD_MAX
    assert len(out.getvalue()) >= 128 * 65536 - LINE_HOLD_MAX
    assert len(proc.output) <= 65536
    proc.processEnded(Failure(ProcessDone(0)))
    assert out.getvalue() == b"x" * (128 * 65536) + b"\n"
