"""The reflex extension's private vmem region (docs/reflexes.md): where the CAPS record
and the sockets' reflex blocks are, and the CAPS record's layout. Apart from
`packetlab.reflex.wire` so that an endpoint can show CAPS in every session without
importing the extension's messages (idle RSS, docs/performance.md, Memory)."""

from __future__ import annotations

import struct
from typing import Final

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
    "REGION_END",
    "STAT_CRASHED",
    "STAT_DETACHED",
    "STAT_NONE",
    "STAT_RUNNING",
    "STAT_SLOW",
    "block_addr",
]

# vmem (§2.2 leaves 0x60000000 and up unmapped in the reference).
CAPS: Final = 0x60000000
CAPS_LEN: Final = 16
CAPS_MAGIC: Final = b"PKRX"
CAPS_VERSION: Final = 1
CAPS_ALLOWED: Final = 0x0001  # flags: this endpoint runs reflexes in this session
BLOCK_BASE: Final = 0x60100000
BLOCK_STRIDE: Final = 0x1000
BLOCK_SPAN: Final = 256 * BLOCK_STRIDE
REGION_END: Final = BLOCK_BASE + BLOCK_SPAN
# Offsets in a socket's reflex block.
B_STAT: Final = 0x000  # u8: DetachReason (0 none attached, 1 running, ...)
B_COUNTERS: Final = 0x004  # u32 runs, sends, denied, passed, reports; u16 last denial errid
# u32: sends and reports the reflex was answered -1 for (past MAX_EMITS sends or 16
# reports in one call, bad arguments); zeros from an endpoint before session 32.
B_REFUSED: Final = 0x01C
B_DIGEST: Final = 0x020  # 32 bytes
B_PARAMS: Final = 0x400  # 1024 bytes, RW
B_STATE: Final = 0x800  # 1024 bytes, R

STAT_NONE: Final = 0
STAT_RUNNING: Final = 1
STAT_CRASHED: Final = 2  # detached: trap or ABI violation
STAT_SLOW: Final = 3  # detached: deadline exceeded
STAT_DETACHED: Final = 4  # detached by the controller (or its socket closed)

#: A block's head: stat, runs, sent, denied, passed, reports, lasterr, refused, digest.
BLOCK_HEAD: Final = struct.Struct(">B3xIIIIIH2xI32s")
#: CAPS: magic, version, flags, params_len, state_len, max_emits, reserved.
CAPS_RECORD: Final = struct.Struct(">4sHHHHHH")


def block_addr(sktid: int, offset: int = 0) -> int:
    return BLOCK_BASE + sktid * BLOCK_STRIDE + offset
