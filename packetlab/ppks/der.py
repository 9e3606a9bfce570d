"""A minimal strict DER reader: just enough to take PPKS certificates apart.

We read the certificate ourselves (rather than only through `cryptography`) so that every
rule of PROTOCOL.md §4.3 can be checked on the exact bytes and refused with its own reason
(unique IDs, extension criticality, the OCTET STRING inside cert_info, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

# Universal tags used by X.509.
BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
UTF8_STRING = 0x0C
SEQUENCE = 0x30
SET = 0x31
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18


class DERError(ValueError):
    """The bytes are not valid DER for the structure expected."""


@dataclass(frozen=True)
class TLV:
    tag: int
    value: bytes
    raw: bytes  # the whole element, header included


def read_tlv(data: bytes, pos: int = 0) -> tuple[TLV, int]:
    """Read one element at `pos`; return it and the offset just past it."""
    if pos >= len(data):
        raise DERError("truncated: missing tag")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DERError("multi-byte tags are not used in certificates")
    if pos + 1 >= len(data):
        raise DERError("truncated: missing length")
    first = data[pos + 1]
    hdr = 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise DERError("indefinite length is not DER")
    else:
        n = first & 0x7F
        if n > 4:
            raise DERError("length field too long")
        if pos + 2 + n > len(data):
            raise DERError("truncated: length bytes")
        lb = data[pos + 2 : pos + 2 + n]
        length = int.from_bytes(lb, "big")
        if lb[0] == 0 or length < 0x80:
            raise DERError("non-minimal length encoding")
        hdr += n
    end = pos + hdr + length
    if end > len(data):
        raise DERError("truncated: value shorter than its length")
    return TLV(tag, data[pos + hdr : end], data[pos:end]), end


def read_single(data: bytes, tag: int | None = None) -> TLV:
    """Read exactly one element filling all of `data`."""
    tlv, end = read_tlv(data)
    if end != len(data):
        raise DERError("trailing bytes after element")
    if tag is not None and tlv.tag != tag:
        raise DERError(f"expected tag 0x{tag:02x}, got 0x{tlv.tag:02x}")
    return tlv


def iter_children(value: bytes) -> Iterator[TLV]:
    """The elements of a constructed element's contents, read one at a time (a caller
    that bounds how many it takes reads no more)."""
    pos = 0
    while pos < len(value):
        tlv, pos = read_tlv(value, pos)
        yield tlv


def children(value: bytes, most: int | None = None) -> list[TLV]:
    """Split the contents of a constructed element into its elements. With `most`, stop
    after `most + 1` of them: a caller that refuses more than `most` sees that there are
    more without reading them all (45,000 empty elements in an AKI were 0.1 s)."""
    out = []
    for tlv in iter_children(value):
        out.append(tlv)
        if most is not None and len(out) > most:
            break
    return out


# Longest arc taken, in bytes of base 128: 140 bits, past the 128 of a UUID arc
# (2.25.N), the largest any registry hands out. An arc of a certificate's ~100 KB
# (OpenSSL's TLS stack takes it) built a 700,000-bit integer seven bits at a time
# (quadratic: 0.7 s of the reactor per handshake) and then failed to print.
MAX_OID_ARC_BYTES = 20
# Longest OID taken: 64 bytes (2.25.UUID is 21, the longest in common use ~30). One of
# 90,000 one-byte arcs cost 22 ms a handshake, and its text (180 KB) went into the
# refusal's log line.
MAX_OID_BYTES = 64


def decode_oid(value: bytes) -> str:
    if not value:
        raise DERError("empty OBJECT IDENTIFIER")
    if len(value) > MAX_OID_BYTES:
        raise DERError(f"OBJECT IDENTIFIER of over {MAX_OID_BYTES} bytes")
    arcs: list[int] = []
    acc = 0
    start = 0
    for i, b in enumerate(value):
        if acc == 0 and b == 0x80:
            raise DERError("non-minimal OBJECT IDENTIFIER arc")
        if i - start >= MAX_OID_ARC_BYTES:
            raise DERError(f"OBJECT IDENTIFIER arc of over {MAX_OID_ARC_BYTES} bytes")
        acc = (acc << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(acc)
            acc = 0
            start = i + 1
        elif i == len(value) - 1:
            raise DERError("truncated OBJECT IDENTIFIER")
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def decode_integer(value: bytes) -> int:
    if not value:
        raise DERError("empty INTEGER")
    if len(value) > 1 and (
        (value[0] == 0 and not value[1] & 0x80) or (value[0] == 0xFF and value[1] & 0x80)
    ):
        raise DERError("non-minimal INTEGER")
    return int.from_bytes(value, "big", signed=True)


def decode_boolean(value: bytes) -> bool:
    if len(value) != 1 or value[0] not in (0x00, 0xFF):
        raise DERError("bad BOOLEAN")
    return value[0] == 0xFF


def decode_bit_string(value: bytes) -> tuple[bytes, int]:
    """Return (bytes, number of unused bits in the last byte)."""
    if not value:
        raise DERError("empty BIT STRING")
    unused = value[0]
    if unused > 7 or (unused and len(value) == 1):
        raise DERError("bad BIT STRING padding")
    if unused and value[-1] & ((1 << unused) - 1):
        raise DERError("BIT STRING padding bits are not zero")
    return value[1:], unused


def decode_time(tlv: TLV) -> int:
    """UTCTime or GeneralizedTime (Z form, whole seconds) -> Unix seconds."""
    try:
        text = tlv.value.decode("ascii")
    except UnicodeDecodeError as e:
        raise DERError("time is not ASCII") from e
    if tlv.tag == UTC_TIME:
        if len(text) != 13 or not text[:12].isdigit() or text[12] != "Z":
            raise DERError("bad UTCTime")
        yy = int(text[:2])
        year = 2000 + yy if yy < 50 else 1900 + yy
        rest = text[2:12]
    elif tlv.tag == GENERALIZED_TIME:
        if len(text) != 15 or not text[:14].isdigit() or text[14] != "Z":
            raise DERError("bad GeneralizedTime")
        year = int(text[:4])
        rest = text[4:14]
    else:
        raise DERError("expected a time")
    mon, day, hh, mm, ss = (int(rest[i : i + 2]) for i in range(0, 10, 2))
    if not (1 <= mon <= 12 and hh < 24 and mm < 60 and ss < 60):
        raise DERError("time field out of range")
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[mon - 1]
    if not 1 <= day <= days:  # as OpenSSL: no 31 February (calendar has no year 0)
        raise DERError(f"no day {day} in {year}-{mon:02d}")
    return _days_from_civil(year, mon, day) * 86400 + hh * 3600 + mm * 60 + ss


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date, any year (H. Hinnant's
    algorithm): calendar.timegm raises ValueError for year 0, which a GeneralizedTime
    can hold, and that escaped parse_certificate."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
