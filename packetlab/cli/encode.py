"""`pktlab encode`: JSON lines (the form `pktlab decode` prints) to PacketLab frames.

Frames are written as each line is read; at the first bad line the error (with its line
number) goes to stderr and the exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO

from packetlab.cli.filterio import run_filter
from packetlab.wire import WireError
from packetlab.wire.jsonform import JsonFormError, frame_from_json

EPILOG = """\
input: one JSON object per line, as `pktlab decode` prints them: {"type": NAME, FIELD:
VALUE, ...} with numbers as integers, laddr/raddr as IP address text, other byte strings as
hex, chlist as a list of hex strings. Fields absent on the wire may be left out.
{"type": "unknown", "code": N, "body": HEX} writes that frame as is (any code, any body:
a way to craft malformed frames on purpose). Blank lines and lines starting with '#' are
skipped.

examples:
  echo '{"type": "nclose", "sktid": 3}' | pktlab encode --hex
    2b00000103
  echo '{"type": "mread", "addr": 268500992, "len": 8}' | pktlab encode > mread.bin
  pktlab decode --hex examples/every_message.hex | pktlab encode --hex
"""


class BadLine(Exception):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "file",
        nargs="?",
        default="-",
        metavar="FILE",
        help="JSON lines to encode (default: standard input)",
    )
    parser.add_argument(
        "--hex",
        action="store_true",
        help="write each frame as a line of lowercase hex instead of raw bytes",
    )


def encode_line(line: bytes, lineno: int) -> bytes | None:
    """The frame one input line asks for (None for a blank or comment line)."""
    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise BadLine(f"line {lineno}: not UTF-8 text ({e.reason})") from None
    if not text or text.startswith("#"):
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadLine(f"line {lineno}: bad JSON: {e.msg} (column {e.colno})") from None
    try:
        return frame_from_json(obj)
    except JsonFormError as e:
        raise BadLine(f"line {lineno}: {e}") from None
    except WireError as e:  # EncodeError: the fields break a rule of the message
        raise BadLine(f"line {lineno}: cannot encode: {e}") from None


def encode_stream(lines: IO[bytes], out: IO[bytes], as_hex: bool) -> None:
    """Write the frame of each input line to `out`. Raises BadLine."""
    try:
        for lineno, line in enumerate(lines, 1):
            frame = encode_line(line, lineno)
            if frame is not None:
                out.write(frame.hex().encode("ascii") + b"\n" if as_hex else frame)
    finally:
        out.flush()


def run(args: argparse.Namespace) -> int:
    sys.stdout.flush()  # text already written goes before our bytes
    return run_filter(
        "encode",
        args.file,
        lambda lines: encode_stream(lines, sys.stdout.buffer, args.hex),
        BadLine,
    )
