"""`pktlab decode`: a PacketLab frame dissector, one JSON object per frame.

Streaming: frames are printed as they complete, so valid frames before a fault are always
printed; then the fault (its byte offset in the stream and the rule broken) goes to stderr
and the exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from typing import IO, Any

from packetlab.cli.filterio import run_filter
from packetlab.wire import BY_TYPE, HEADER_LEN, Framer, Malformed, Unknown
from packetlab.wire.jsonform import message_to_json, unknown_to_json

CHUNK = 1 << 16
_NOT_HEX = re.compile(rb"[^0-9a-fA-F \t\n\r\f\v]")

EPILOG = """\
output: one JSON object per frame. "type" is the message name of PROTOCOL.md §1.2, the
other keys are its fields: numbers as integers, laddr/raddr as IP address text, every other
byte string as lowercase hex, chlist as a list of hex strings. A frame whose type code is
not a message prints {"type": "unknown", "code": N, "body": HEX} and decoding carries on.

A malformed body, a truncated last frame or bad hex stops decoding: the frames before it
are printed, the error (with its byte offset in the stream) goes to stderr, exit status 2.

examples:
  pktlab decode --hex examples/http_get.frames.hex
  echo '2b000001 03  21000000' | pktlab decode --hex
    {"type": "nclose", "sktid": 3}
    {"type": "start"}
  pktlab decode capture.bin | pktlab encode > same.bin
"""


class BadInput(Exception):
    """Input that cannot be decoded; the message names the byte offset and the rule."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "file",
        nargs="?",
        default="-",
        metavar="FILE",
        help="the byte stream to decode (default: standard input)",
    )
    parser.add_argument(
        "--hex",
        action="store_true",
        help="the input is hex text: whitespace is ignored anywhere, '#' starts a comment "
        "that runs to the end of the line",
    )


# -------------------------------------------------------------------------- reading


def read_raw(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def read_hex(stream: IO[bytes]) -> Iterator[bytes]:
    """The bytes a hex text spells, line by line. Raises BadInput at the first character
    that is not a hex digit (after yielding the bytes before it)."""
    offset = 0  # stream offset of the next byte
    carry = b""  # a lone hex digit waiting for its partner later on
    for lineno, line in enumerate(stream, 1):
        text = line.split(b"#", 1)[0]
        bad = _NOT_HEX.search(text)
        digits = carry + b"".join((text if bad is None else text[: bad.start()]).split())
        usable = len(digits) & ~1
        data = bytes.fromhex(digits[:usable].decode("ascii"))
        carry = digits[usable:]
        if data:
            yield data
        offset += len(data)
        if bad is not None:
            ch = bad[0][0]
            shown = chr(ch) if 0x20 < ch < 0x7F else f"\\x{ch:02x}"
            raise BadInput(
                f"bad hex digit '{shown}' at byte offset {offset} "
                f"(line {lineno}, column {bad.start() + 1})"
            )
    if carry:
        raise BadInput(f"odd number of hex digits: a lone digit at byte offset {offset}")


# ------------------------------------------------------------------------- decoding


def decode_stream(chunks: Iterator[bytes], out: IO[str]) -> None:
    """Print each frame of the stream as a JSON line. Raises BadInput."""
    framer = Framer()
    total = 0
    pending = bytearray()  # our copy of the bytes the framer still holds (one frame at most)
    try:
        for chunk in chunks:
            total += len(chunk)
            pending += chunk
            _emit(framer, chunk, out)
            del pending[: len(pending) - framer.buffered]
    finally:
        out.flush()
    if pending:
        start = total - len(pending)
        if len(pending) < HEADER_LEN:
            raise BadInput(
                f"truncated frame at byte offset {start}: only {len(pending)} of the "
                f"{HEADER_LEN} header bytes"
            )
        code, length = pending[0], int.from_bytes(pending[1:4], "big")
        raise BadInput(
            f"truncated frame at byte offset {start}: the header (type 0x{code:02x} "
            f"{_name(code)}) announces a {length}-byte body, the stream ends after "
            f"{len(pending) - HEADER_LEN} of them"
        )


def _name(code: int) -> str:
    cls = BY_TYPE.get(code)
    return cls.NAME if cls is not None else "unknown"


def _emit(framer: Framer, chunk: bytes, out: IO[str]) -> None:
    for item in framer.feed(chunk):
        obj: dict[str, Any]
        if isinstance(item, Malformed):
            e = item.error
            raise BadInput(
                f"malformed frame at byte offset {item.offset} (type 0x{item.msgtype:02x} "
                f"{_name(item.msgtype)}, body offset {e.offset}): {e.rule}"
            )
        if isinstance(item, Unknown):
            obj = unknown_to_json(item.msgtype, item.body)
        else:
            obj = message_to_json(item)
        out.write(json.dumps(obj) + "\n")


def run(args: argparse.Namespace) -> int:
    def work(stream: IO[bytes]) -> None:
        decode_stream(read_hex(stream) if args.hex else read_raw(stream), sys.stdout)

    return run_filter("decode", args.file, work, BadInput)
