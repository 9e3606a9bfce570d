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

from packetlab.cli.filterio import EXIT_STATUS_HELP, Input, run_filter
from packetlab.wire import BY_TYPE, HEADER_LEN, Framer, Malformed, Ntag, Result, Unknown
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
The input is read 64 KiB at a time and each frame printed as it completes: any length of
stream decodes in bounded memory (a frame's body is at most 16 MiB).

examples:
  pktlab decode --hex examples/http_get.frames.hex
  echo '2b000001 03  21000000' | pktlab decode --hex
    {"type": "nclose", "sktid": 3}
    {"type": "start"}
  pktlab decode capture.bin | pktlab encode > same.bin

"""
EPILOG += EXIT_STATUS_HELP


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


def read_raw(stream: Input) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def read_hex(stream: Input) -> Iterator[bytes]:
    """The bytes a hex text spells, those of each read at once (a file of one 1 GiB line
    is not held whole). Raises BadInput at the first character that is not a hex digit
    (after yielding the bytes before it)."""
    offset = 0  # stream offset of the next byte
    carry = b""  # a lone hex digit waiting for its partner later on
    lineno, column = 1, 0  # the line being read, and how many of its characters were
    comment = False  # in a '#' comment, which runs to the end of the line
    while chunk := stream.read(CHUNK):
        out = bytearray()
        for i, piece in enumerate(chunk.split(b"\n")):
            if i:
                lineno, column, comment = lineno + 1, 0, False
            if not comment:
                text = piece
                if (mark := piece.find(b"#")) >= 0:
                    text, comment = piece[:mark], True
                bad = _NOT_HEX.search(text)
                digits = carry + b"".join((text if bad is None else text[: bad.start()]).split())
                usable = len(digits) & ~1
                out += bytes.fromhex(digits[:usable].decode("ascii"))
                carry = digits[usable:]
                if bad is not None:
                    if out:
                        yield bytes(out)
                    ch = bad[0][0]
                    shown = chr(ch) if 0x20 < ch < 0x7F else f"\\x{ch:02x}"
                    first = offset + len(out) == 0 and not carry
                    raise BadInput(
                        f"bad hex digit '{shown}' at byte offset {offset + len(out)} "
                        f"(line {lineno}, column {column + bad.start() + 1})"
                        + (f"; {JSON_HINTS[ch]}" if first and ch in JSON_HINTS else "")
                    )
            column += len(piece)
        if out:
            yield bytes(out)
        offset += len(out)
    if carry:
        raise BadInput(f"odd number of hex digits: a lone digit at byte offset {offset}")


# --------------------------------------------------------------- text given as frames

HEAD = 4096  # of the stream, kept to tell text from frames when decoding fails
_HEX_TEXT = re.compile(rb"(?:[0-9a-fA-F \t\r\f\v]*(?:#[^\n]*)?\n)*[0-9a-fA-F \t\r\f\v]*")
JSON_HINTS = {
    ord("{"): "the input looks like JSON lines: pktlab encode turns them into frames",
    # the reference sessions (PROTOCOL.md's traces/*.session.json) are lists of frames
    ord("["): 'the input looks like a JSON list; of frames as {"hex": ...}: '
    "jq -r '.[].hex' FILE | pktlab decode --hex",
}


def text_hint(head: bytes) -> str:
    """What the start of a stream that failed to decode as frames looks like instead:
    `echo 21000000 | pktlab decode` said `the header (type 0x32 unknown) announces a
    3223600-byte body`, and a JSON file alike, with nothing about --hex or encode."""
    start = head.lstrip()
    if start and start[0] in JSON_HINTS:
        return f" ({JSON_HINTS[start[0]]})"
    if re.search(rb"[0-9a-fA-F]", head) and _HEX_TEXT.fullmatch(head):
        return " (the input looks like hex text: pktlab decode --hex)"
    return ""


# ------------------------------------------------------------------------- decoding


def decode_stream(chunks: Iterator[bytes], out: IO[str], raw: bool = True) -> None:
    """Print each frame of the stream as a JSON line. Raises BadInput, which says what
    the stream looks like instead when it is `raw` input that is text."""
    framer = Framer()
    total = 0
    pending = bytearray()  # our copy of the bytes the framer still holds (one frame at most)
    head = b""
    try:
        for chunk in chunks:
            if raw and len(head) < HEAD:
                head = (head + chunk)[:HEAD]
            total += len(chunk)
            pending += chunk
            try:
                _emit(framer, chunk, out)
            except BadInput as e:
                raise BadInput(f"{e}{text_hint(head)}") from None
            del pending[: len(pending) - framer.buffered]
            if len(chunk) < CHUNK:  # the input may wait now: what it gave is shown
                out.flush()
    finally:
        out.flush()
    if pending:
        start = total - len(pending)
        if len(pending) < HEADER_LEN:
            raise BadInput(
                f"truncated frame at byte offset {start}: only {len(pending)} of the "
                f"{HEADER_LEN} header bytes{text_hint(head)}"
            )
        code, length = pending[0], int.from_bytes(pending[1:4], "big")
        raise BadInput(
            f"truncated frame at byte offset {start}: the header (type 0x{code:02x} "
            f"{_name(code)}) announces a {length}-byte body, the stream ends after "
            f"{len(pending) - HEADER_LEN} of them{text_hint(head)}"
        )


def _name(code: int) -> str:
    cls = BY_TYPE.get(code)
    return cls.NAME if cls is not None else "unknown"


# A result or ntag whose body spells SUCCESS out (errid 0 on the wire: 2 and 13 bytes), which
# decoders take and the reference's encoder never writes: its canonical length, the one
# `encode` writes for errid 0.
_SHORT_SUCCESS = {Result: HEADER_LEN, Ntag: HEADER_LEN + 11}


def _emit(framer: Framer, chunk: bytes, out: IO[str]) -> None:
    start = framer.offset  # of the next frame, maybe begun in an earlier chunk
    for item in framer.feed(chunk):
        length, start = framer.offset - start, framer.offset  # (past this frame now)
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
            if obj.get("errid") == 0 and length > _SHORT_SUCCESS.get(type(item), length):
                obj["explicit"] = True  # so that `encode` writes these bytes again
        out.write(json.dumps(obj) + "\n")


def run(args: argparse.Namespace) -> int:
    def work(stream: Input) -> None:
        chunks = read_hex(stream) if args.hex else read_raw(stream)
        decode_stream(chunks, sys.stdout, raw=not args.hex)

    return run_filter("decode", args.file, work, BadInput)
