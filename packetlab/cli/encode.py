"""`pktlab encode`: JSON lines (the form `pktlab decode` prints) to PacketLab frames.

Frames are written as each line is read; at the first bad line the error (with its line
number) goes to stderr and the exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Any

from packetlab.cli.filterio import EXIT_STATUS_HELP, Input, run_filter
from packetlab.wire import WireError
from packetlab.wire.jsonform import JsonFormError, frame_from_json, shorten

EPILOG = """\
input: one JSON object per line, as `pktlab decode` prints them: {"type": NAME, FIELD:
VALUE, ...} with numbers as integers, laddr/raddr as IP address text, other byte strings as
hex, chlist as a list of hex strings. Fields absent on the wire may be left out.
{"type": "unknown", "code": N, "body": HEX} writes that frame as is (any code, any body:
a way to craft malformed frames on purpose). Blank lines and lines starting with '#' are
skipped. A key given twice, a line over 64 MiB (three times the longest frame's form) and
JSON nested past Python's recursion limit are refused.

examples:
  echo '{"type": "nclose", "sktid": 3}' | pktlab encode --hex
    2b00000103
  echo '{"type": "mread", "addr": 268500992, "len": 8}' | pktlab encode > mread.bin
  pktlab decode --hex examples/every_message.hex | pktlab encode --hex

"""
EPILOG += EXIT_STATUS_HELP

# The longest line a frame needs: a 16 MiB body is 32 MiB of hex, a chlist 3 characters
# per byte (`"01", ` for a 1-byte channel); what is longer is refused before it is read
# whole (a stream without newlines was read into memory to its end).
MAX_LINE = 64 << 20


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


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:  # json.loads keeps the last: a typo'd line would encode silently
            raise BadLine(f"key {shorten(repr(key))} given twice")
        obj[key] = value
    return obj


def encode_line(line: bytes, lineno: int) -> bytes | None:
    """The frame one input line asks for (None for a blank or comment line)."""
    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise BadLine(f"line {lineno}: not UTF-8 text ({e.reason})") from None
    if not text or text.startswith("#"):
        return None
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise BadLine(f"line {lineno}: bad JSON: {e.msg} (column {e.colno})") from None
    except BadLine as e:
        raise BadLine(f"line {lineno}: {e}") from None
    except ValueError:  # int('9' * 5000): Python's limit on the digits of a number
        raise BadLine(
            f"line {lineno}: bad JSON: a number of more than {sys.get_int_max_str_digits()} digits"
        ) from None
    except RecursionError:
        raise BadLine(f"line {lineno}: bad JSON: nested too deeply") from None
    try:
        explicit = _explicit(obj)
        frame = frame_from_json(obj)
    except JsonFormError as e:
        raise BadLine(f"line {lineno}: {e}") from None
    except WireError as e:  # EncodeError: the fields break a rule of the message
        raise BadLine(f"line {lineno}: cannot encode: {e}") from None
    if explicit:  # SUCCESS spelled out: 2 bytes of 0 after the short form
        frame = (int.from_bytes(frame[:4], "big") + 2).to_bytes(4, "big") + frame[4:] + b"\0\0"
    return frame


def _explicit(obj: Any) -> bool:
    """Takes `"explicit": true` out of a result's or ntag's form (`pktlab decode` adds it
    when the frame spells SUCCESS out: errid 0 on the wire, which the short form leaves
    out), so that decode then encode gives the same bytes."""
    if (
        not isinstance(obj, dict)
        or "explicit" not in obj
        or obj.get("type")
        not in (
            "result",
            "ntag",
        )
    ):
        return False
    value = obj.pop("explicit")
    if value is not True and value is not False:
        raise JsonFormError("explicit", f"expected true or false, got {json.dumps(value)}")
    if value and obj.get("errid", 0) != 0:
        raise JsonFormError("explicit", "only errid 0 (SUCCESS) is left out of the short form")
    return value


def encode_stream(lines: Input, out: IO[bytes], as_hex: bool) -> None:
    """Write the frame of each input line to `out`. Raises BadLine."""
    try:
        lineno = 0
        while line := lines.readline(MAX_LINE + 1):
            lineno += 1
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                raise BadLine(f"line {lineno}: longer than {MAX_LINE} bytes")
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
