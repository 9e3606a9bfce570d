"""The reflex protocol extension on the wire (docs/reflexes.md): private-use message
types (PROTOCOL.md §1.2: 0x90-0xFF) and a private vmem region.

Negotiation never shows a reference peer anything it does not understand:

* the controller first reads `CAPS` with an ordinary ``mread``; a reference endpoint
  answers zeros (unmapped vmem reads as 0, §2.1), and the controller then sends nothing
  else of the extension;
* the endpoint sends the extension's notifications (`RREPORT`, `RDETACHED`) only for a
  reflex the controller attached, so a reference controller never receives one.

All integers are big-endian, as in the rest of the protocol.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

# The region's layout, re-exported: the extension's users know it from here.
from packetlab.reflex.region import (
    B_COUNTERS,
    B_DIGEST,
    B_PARAMS,
    B_REFUSED,
    B_STAT,
    B_STATE,
    BLOCK_BASE,
    BLOCK_HEAD,
    BLOCK_SPAN,
    BLOCK_STRIDE,
    CAPS,
    CAPS_ALLOWED,
    CAPS_LEN,
    CAPS_MAGIC,
    CAPS_RECORD,
    CAPS_VERSION,
    REGION_END,
    STAT_CRASHED,
    STAT_DETACHED,
    STAT_NONE,
    STAT_RUNNING,
    STAT_SLOW,
    block_addr,
)
from packetlab.wire.constants import HEADER_LEN

__all__ = [
    "BLOCK_BASE",
    "BLOCK_HEAD",
    "BLOCK_SPAN",
    "BLOCK_STRIDE",
    "B_COUNTERS",
    "B_DIGEST",
    "B_PARAMS",
    "B_REFUSED",
    "B_STAT",
    "B_STATE",
    "CAPS",
    "CAPS_ALLOWED",
    "CAPS_LEN",
    "CAPS_MAGIC",
    "CAPS_RECORD",
    "CAPS_VERSION",
    "CDATA_HINT_REFLEX",
    "RATTACH",
    "RDETACH",
    "RDETACHED",
    "REGION_END",
    "RREPORT",
    "STAT_CRASHED",
    "STAT_DETACHED",
    "STAT_NONE",
    "STAT_RUNNING",
    "STAT_SLOW",
    "Attach",
    "Caps",
    "Detached",
    "Report",
    "block_addr",
    "decode_attach",
    "decode_detach",
    "frame",
]

CDATA_HINT_REFLEX: Final = b"reflex"

# Message types (private use, §1.2).
RATTACH: Final = 0x90  # C→E request: attach a reflex to a socket; answered by `result`
RDETACH: Final = 0x91  # C→E request: detach it; answered by `result`
RREPORT: Final = 0xC0  # E→C notification: a record the reflex reported
RDETACHED: Final = 0xC1  # E→C notification: the endpoint detached a failing reflex

_HDR = struct.Struct(">I")
_ATTACH = struct.Struct(">BB32sH")
_NOTE = struct.Struct(">BQ")
_DETACHED = struct.Struct(">BQB")


def frame(msgtype: int, body: bytes) -> bytes:
    return _HDR.pack(msgtype << 24 | len(body)) + body


@dataclass(frozen=True)
class Caps:
    """The CAPS record: `magic` PKRX, version, flags, ctx sizes, sends per call."""

    version: int = CAPS_VERSION
    flags: int = 0
    params_len: int = 0
    state_len: int = 0
    max_emits: int = 0
    magic: bytes = CAPS_MAGIC

    def encode(self) -> bytes:
        return CAPS_RECORD.pack(
            self.magic, self.version, self.flags, self.params_len, self.state_len,
            self.max_emits, 0,
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> Caps | None:
        """None when `data` is not a CAPS record (a reference endpoint's zeros)."""
        if len(data) < CAPS_LEN or data[:4] != CAPS_MAGIC:
            return None
        magic, version, flags, plen, slen, emits, _ = CAPS_RECORD.unpack_from(data)
        return cls(version, flags, plen, slen, emits, magic)

    @property
    def allowed(self) -> bool:
        return bool(self.flags & CAPS_ALLOWED)


@dataclass(frozen=True)
class Attach:
    """rattach: `sktid:u8 flags:u8 digest[32] paramlen:u16 params[paramlen] program[rest]`;
    `program` is the encoded program (0x01 || wasm), or empty when it came by cdata."""

    sktid: int
    digest: bytes
    params: bytes = b""
    program: bytes = b""
    flags: int = 0

    def frame(self) -> bytes:
        body = _ATTACH.pack(self.sktid, self.flags, self.digest, len(self.params))
        return frame(RATTACH, body + self.params + self.program)


class BadMessage(ValueError):
    """A private message whose body does not fit its layout."""


def decode_attach(body: bytes) -> Attach:
    if len(body) < _ATTACH.size:
        raise BadMessage(f"rattach body of {len(body)} bytes (at least {_ATTACH.size})")
    sktid, flags, digest, plen = _ATTACH.unpack_from(body)
    end = _ATTACH.size + plen
    if end > len(body):
        raise BadMessage(f"rattach paramlen {plen} runs past the body")
    return Attach(sktid, digest, body[_ATTACH.size : end], body[end:], flags)


def detach_frame(sktid: int) -> bytes:
    """rdetach: `sktid:u8`."""
    return frame(RDETACH, bytes([sktid]))


def decode_detach(body: bytes) -> int:
    if len(body) != 1:
        raise BadMessage(f"rdetach body of {len(body)} bytes (must be 1)")
    return body[0]


@dataclass(frozen=True)
class Report:
    """rreport: `sktid:u8 time:u64 data[rest]` (time: the endpoint clock, ns)."""

    sktid: int
    time: int
    data: bytes

    def frame(self) -> bytes:
        return frame(RREPORT, _NOTE.pack(self.sktid, self.time) + self.data)

    @classmethod
    def decode(cls, body: bytes) -> Report:
        if len(body) < _NOTE.size:
            raise BadMessage(f"rreport body of {len(body)} bytes (at least {_NOTE.size})")
        sktid, time = _NOTE.unpack_from(body)
        return cls(sktid, time, body[_NOTE.size :])


@dataclass(frozen=True)
class Detached:
    """rdetached: `sktid:u8 time:u64 reason:u8 text[rest]` (reason: STAT_CRASHED or
    STAT_SLOW; text: UTF-8, why)."""

    sktid: int
    time: int
    reason: int
    text: str

    def frame(self) -> bytes:
        body = _DETACHED.pack(self.sktid, self.time, self.reason)
        return frame(RDETACHED, body + self.text.encode("utf-8")[:512])

    @classmethod
    def decode(cls, body: bytes) -> Detached:
        if len(body) < _DETACHED.size:
            raise BadMessage(f"rdetached body of {len(body)} bytes (at least {_DETACHED.size})")
        sktid, time, reason = _DETACHED.unpack_from(body)
        return cls(sktid, time, reason, body[_DETACHED.size :].decode("utf-8", "replace"))


assert HEADER_LEN == _HDR.size
