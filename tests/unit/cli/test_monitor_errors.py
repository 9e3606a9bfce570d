"""`pktlab monitor` and `pktlab reflex` errors name the command, as argparse's own do
(they said a bare `error: [Errno 2] No such file or directory: 'x'`; cli20's leftover)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from packetlab.cli import monitor, reflex


def _run(module: object, words: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return int(module.run(parser.parse_args(words)))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("module", "words", "status", "line"),
    [
        (monitor, ["digest", "{missing}"], 1,
         "pktlab monitor digest: error: {missing}: No such file or directory"),
        (monitor, ["test", "{missing}"], 1,
         "pktlab monitor test: error: {missing}: No such file or directory"),
        (monitor, ["build"], 2, "pktlab monitor build: error: build needs SRC and -o OUT.wasm"),
        (reflex, ["test", "{missing}"], 1,
         "pktlab reflex test: error: {missing}: No such file or directory"),
    ],
)  # fmt: skip
def test_an_error_is_one_line_naming_the_command(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    module: object,
    words: list[str],
    status: int,
    line: str,
) -> None:
    missing = str(tmp_path / "nope.wasm")
    assert _run(module, [w.format(missing=missing) for w in words]) == status
    assert capsys.readouterr().err == line.format(missing=missing) + "\n"
