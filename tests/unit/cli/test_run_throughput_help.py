"""`pktlab run throughput --help`'s examples run as written with the in-process
endpoint: what an upload example sends fits the endpoint's built-in send window (10 Mb/s
over 10 s, without a max_burst_rate_byte grant). Three did not: `--bytes 8M --runs 5`
(runs 2-5 refused), `--bidir -b 50M -t 5 -O 1` and `-k 100` (128 KiB blocks: 13.1 MB);
docs/throughput.md's `-t 1 -P 2 --direction upload` (unpaced) neither."""

from __future__ import annotations

import math
import shlex
from pathlib import Path

from packetlab.cli import run_throughput
from packetlab.cli.run import build_parser
from packetlab.ppks.limits import DEFAULT_SEND_BURST


def upload_bytes(line: str) -> float:
    """What the example sends from the endpoint (inf: an unpaced timed upload)."""
    argv = shlex.split(line.split("#")[0])[2:]
    args = build_parser().parse_args(argv)
    if args.direction != "upload" and not args.bidir:
        return 0
    if args.insecure_plaintext or args.home:  # no window, or a home with a grant
        return 0
    if args.time is None and args.blocks is None:
        return args.bytes * args.runs
    if args.blocks is not None:
        return args.blocks * (args.length or 128 * 1024) * args.runs
    if args.bitrate is not None:
        return args.bitrate / 8 * (args.time + args.omit) * args.parallel * args.runs
    return math.inf


def test_help_examples_fit_the_default_send_window() -> None:
    examples = [
        line.strip()
        for line in run_throughput.EPILOG.splitlines()
        if line.strip().startswith("pktlab run throughput")
    ]
    assert len(examples) >= 9
    for line in examples:
        assert upload_bytes(line) <= DEFAULT_SEND_BURST.amount, line


def test_docs_examples_fit_the_default_send_window() -> None:
    page = Path(__file__).resolve().parents[3] / "docs" / "throughput.md"
    examples = [
        line.strip().removeprefix("$ ")
        for line in page.read_text(encoding="utf-8").splitlines()
        if line.strip().removeprefix("$ ").startswith("pktlab run throughput")
    ]
    assert len(examples) >= 8
    for line in examples:
        assert upload_bytes(line) <= DEFAULT_SEND_BURST.amount, line
