"""scamper's warts format: what every record shares (`packetlab.measure.warts` describes the
layout): the object header, integers, times, strings, the flag bytes and length of a set
of optional fields, an object's address table, and the list and cycle records that frame
a file's measurements. Sans-IO."""

from __future__ import annotations

import ipaddress
import math
import struct
from collections.abc import Iterable

WARTS_MAGIC = 0x1205
OBJ_LIST, OBJ_CYCLE_START, OBJ_CYCLE_STOP, OBJ_TRACE, OBJ_PING, OBJ_DEALIAS = 1, 2, 4, 6, 7, 9
OBJ_TRACELB = 8


class WartsError(ValueError):
    """Bytes that are not a warts file this module can read, or a record it cannot write."""


def u8(v: int) -> bytes:
    return struct.pack("!B", v & 0xFF)


def u16(v: int) -> bytes:
    return struct.pack("!H", v & 0xFFFF)


def u32(v: int) -> bytes:
    return struct.pack("!I", v & 0xFFFFFFFF)


def timeval(ns: int) -> bytes:
    sec, rest = divmod(ns, 1_000_000_000)
    return struct.pack("!II", sec, rest // 1000)


def whole_seconds(s: float) -> int:
    """A wait in the whole seconds of a warts byte: rounded up, so a wait under a second is
    1 and never 0, which scamper's tools read as "no wait"."""
    return min(255, max(0, math.ceil(s)))


def flag_bytes(ids: Iterable[int]) -> bytes:
    """The flag bytes of a set of field ids (1-based; 7 a byte, high bit: more follow)."""
    ids = sorted(set(ids))
    if not ids:
        return b"\x00"
    out = bytearray((ids[-1] + 6) // 7)
    for i in ids:
        out[(i - 1) // 7] |= 1 << ((i - 1) % 7)
    for k in range(len(out) - 1):
        out[k] |= 0x80
    return bytes(out)


def params(fields: dict[int, bytes]) -> bytes:
    """Optional fields: their flags, the uint16 length of their bytes, the bytes in id order."""
    if not fields:
        return b"\x00"
    body = b"".join(fields[i] for i in sorted(fields))
    if len(body) > 0xFFFF:
        raise WartsError("warts fields longer than 65535 bytes")
    return flag_bytes(fields) + u16(len(body)) + body


def cstring(text: str) -> bytes:
    raw = text.encode()
    if b"\x00" in raw:
        raise WartsError("a warts string cannot hold a NUL")
    return raw + b"\x00"


def record(kind: int, body: bytes) -> bytes:
    return struct.pack("!HHI", WARTS_MAGIC, kind, len(body)) + body


class AddressTable:
    """An object's address table: the first use of an address writes it, later ones its index."""

    def __init__(self) -> None:
        self.ids: dict[bytes, int] = {}

    def encode(self, text: str) -> bytes:
        addr = ipaddress.ip_address(text)
        key = u8(1 if addr.version == 4 else 2) + addr.packed
        known = self.ids.get(key)
        if known is not None:
            return b"\x00" + u32(known)
        self.ids[key] = len(self.ids)
        return u8(len(addr.packed)) + key


def list_object(list_id: int = 1, *, name: str = "default", human_id: int = 0) -> bytes:
    """A list record (file-local id `list_id`), described by its name as scamper does."""
    return record(
        OBJ_LIST, u32(list_id) + u32(human_id) + cstring(name) + params({1: cstring(name)})
    )


def cycle_start_object(
    start_s: int, *, cycle_id: int = 1, list_id: int = 1, human_id: int = 0, hostname: str = ""
) -> bytes:
    fields = {2: cstring(hostname)} if hostname else {}
    body = u32(cycle_id) + u32(list_id) + u32(human_id) + u32(start_s) + params(fields)
    return record(OBJ_CYCLE_START, body)


def cycle_stop_object(stop_s: int, *, cycle_id: int = 1) -> bytes:
    return record(OBJ_CYCLE_STOP, u32(cycle_id) + u32(stop_s) + params({}))
