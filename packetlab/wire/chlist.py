"""chlist (§5.2): entries `len:u8 (1..32), id[len]`, terminated by a 0 byte.

The encoder and decoder both the fast paths and construct's `nodes.ChannelList` call;
no construct here, so that the fast paths load without it.
"""

from __future__ import annotations

from packetlab.wire.constants import CHANNEL_MAX
from packetlab.wire.errors import RuleError


def decode(body: bytes, off: int) -> tuple[list[bytes], int]:
    """The channels from `off` and the offset after the terminator. Raises RuleError."""
    out: list[bytes] = []
    n = len(body)
    while True:
        if off >= n:
            raise RuleError(f"chlist: missing 0 terminator (offset {off})")
        ln = body[off]
        off += 1
        if ln == 0:
            return out, off
        if ln > CHANNEL_MAX:
            raise RuleError(f"chlist: channel length {ln} > {CHANNEL_MAX} (offset {off - 1})")
        if off + ln > n:
            raise RuleError(f"chlist: channel runs past the body (offset {off - 1})")
        out.append(bytes(body[off : off + ln]))
        off += ln


def encode(chans: list[bytes]) -> bytes:
    """The encoded list, terminator included. Raises RuleError."""
    parts = []
    for ch in chans:
        if not isinstance(ch, (bytes, bytearray, memoryview)):
            raise RuleError(f"chlist: a channel must be bytes, not {type(ch).__name__}")
        if not 1 <= len(ch) <= CHANNEL_MAX:
            raise RuleError(f"chlist: channel length {len(ch)} not in 1..{CHANNEL_MAX}")
        parts.append(bytes([len(ch)]) + bytes(ch))
    parts.append(b"\x00")
    return b"".join(parts)
