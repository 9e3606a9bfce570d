"""`pktlab monitor test ... | head -1`: the reader going away ends the command quietly with
141, as the run commands (it said `error: [Errno 32] Broken pipe`, status 1)."""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import pytest

from packetlab.cli import interrupt, monitor

REPO = Path(__file__).resolve().parents[3]


def test_a_closed_stdout_is_141_and_no_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    monitor.add_arguments(parser)
    examples = REPO / "examples/monitors"
    args = parser.parse_args(
        ["test", str(examples / "pass_all.wat"), "--messages", str(examples / "messages.jsonl")]
    )
    r, w = os.pipe()
    os.close(r)  # the reader is gone
    closed = io.TextIOWrapper(io.FileIO(w, "w"), line_buffering=True)
    monkeypatch.setattr(interrupt, "_stdout_closed", [False])
    monkeypatch.setattr("sys.stdout", closed)
    rc = monitor.run(args)
    monkeypatch.undo()
    assert rc == 141
    assert "Broken pipe" not in capsys.readouterr().err
    try:
        closed.close()
    except BrokenPipeError:
        pass
