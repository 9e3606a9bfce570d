"""Sans-IO framing: feed bytes, get messages (PROTOCOL.md §1.1).

Every complete frame yields one item: a `Message`, an `Unknown` (type code not defined:
answer ECTLNOTSUP and carry on) or a `Malformed` (known type, bad body: answer ECTLBADMSG
and disconnect). Incomplete frames wait for more bytes. Buffering is linear: bytes are
appended to one buffer and consumed frames are cut off once per feed, never re-copied
per frame.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from packetlab.wire.codec import _DECODERS, decoder
from packetlab.wire.constants import BODY_MAX, HEADER_LEN
from packetlab.wire.errors import FrameTooLarge, MalformedMessage
from packetlab.wire.messages import Message

_HDR = struct.Struct(">I").unpack_from


@dataclass(slots=True)
class Unknown:
    """A complete frame with an undefined type code."""

    msgtype: int
    body: bytes
    offset: int  # stream offset of the frame


@dataclass(slots=True)
class Malformed:
    """A complete frame of a known type whose body breaks its rules."""

    msgtype: int
    body: bytes
    offset: int  # stream offset of the frame
    error: MalformedMessage


Item = Message | Unknown | Malformed


class Framer:
    """Accumulates a byte stream and splits it into decoded frames.

    `max_body` caps the announced body length (the protocol allows 0xFFFFFF); a larger
    header raises FrameTooLarge, after which the stream cannot be resynchronised.
    """

    __slots__ = ("_base", "_buf", "_pos", "max_body")

    def __init__(self, max_body: int = BODY_MAX) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._base = 0  # stream offset of self._buf[0]
        self.max_body = max_body

    @property
    def offset(self) -> int:
        """Stream offset of the next frame not yet taken."""
        return self._base + self._pos

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buf) - self._pos

    @property
    def partial(self) -> tuple[int, int, int] | None:
        """The frame at the read position, for error messages: (type code, bytes held from
        it on, its whole length, -1 while its header is incomplete). Held bytes beyond the
        length are frames not yet taken (backpressure). None if nothing is held."""
        held = len(self._buf) - self._pos
        if held == 0:
            return None
        if held < HEADER_LEN:
            return self._buf[self._pos], held, -1
        (word,) = _HDR(self._buf, self._pos)
        return word >> 24, held, HEADER_LEN + (word & BODY_MAX)

    def feed(self, data: bytes = b"") -> Iterator[Item]:
        """Buffer `data` now; return an iterator over the frames now complete.

        The iterator may be abandoned part-way (backpressure): frames not taken stay
        buffered and come out of the next `feed()` (which may be given no data).
        """
        self._buf += data
        return self._frames()

    def _frames(self) -> Iterator[Item]:
        buf = self._buf
        try:
            while True:
                pos = self._pos
                if len(buf) - pos < HEADER_LEN:
                    return
                (word,) = _HDR(buf, pos)
                ln = word & BODY_MAX
                if ln > self.max_body:
                    raise FrameTooLarge(self._base + pos, ln, self.max_body)
                stop = pos + HEADER_LEN + ln
                if stop > len(buf):
                    return
                msgtype = word >> 24
                body = bytes(buf[pos + HEADER_LEN : stop])
                self._pos = stop
                dec = _DECODERS.get(msgtype)
                if dec is None:
                    dec = decoder(msgtype)  # derived on first use; None: not a message
                    if dec is None:
                        yield Unknown(msgtype, body, self._base + pos)
                        continue
                try:
                    msg = dec(body)
                except MalformedMessage as e:
                    yield Malformed(msgtype, body, self._base + pos, e)
                else:
                    yield msg
        finally:
            self._compact()

    def _compact(self) -> None:
        pos = self._pos
        if pos == len(self._buf):
            self._buf.clear()
        elif pos > 65536 or pos * 2 > len(self._buf):
            del self._buf[:pos]
        else:
            return
        self._base += pos
        self._pos = 0
