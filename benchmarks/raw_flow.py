"""A measured flow as raw bytes: what lets the benchmark's controller time only I/O.

`bench_endpoint` seals a whole nsend request stream before its clock starts (one TLS
record per frame, in order: exactly the records a live controller would send), keeps the
endpoint's answers as they arrive without decrypting them, counting them by their
headers (TLS record headers, or frame headers on plain TCP) to keep its window, and
after the clock stops opens everything and checks every answer. The pieces here are pure
(bytes in, bytes out, over `ssl.MemoryBIO`s: no sockets), so they are unit-tested:

* `walk_units`: the whole units (records or frames) of a buffer, counted, with the
  plaintext they carry and how many match a size or type; `ends_with_unit`: whether a
  buffer ends with a download's last unit (`last_unit`), looked up without a walk;
* `seal_frames` / `RecordOpener`: one record per frame in; whole records out, record by
  record, with the raw offset each record ends at (so a frame's arrival time is known);
* `FrameSplitter`: frames out of plaintext pieces, each with the raw offset it completed at;
* `check_nsend_answers` / `DownloadCheck`: every answer verified; `FlowMismatch` if not.
"""

from __future__ import annotations

import bisect
import ssl
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

HDR = struct.Struct(">I")  # a frame header: type (8 bits), body length (24 bits)
TLS_HEADER = 5  # content type, version, length (16 bits)
TLS13_OVERHEAD = 17  # the inner content type and the 16-byte AEAD tag (no padding)
T_RESULT, T_NTAG, T_NSTAT, T_NDATA = 0x40, 0x60, 0x61, 0x62
NTAG_BODY, NSTAT_CODE_BODY, NDATA_TCP_HEAD = 11, 12, 11
PEERCLOSED = 3


class FlowMismatch(AssertionError):
    """An answer of a measured flow was not what the request asked for: the run is void."""


def record_size(plaintext: int) -> int:
    """Bytes on the wire of one TLS 1.3 application-data record carrying `plaintext`."""
    return TLS_HEADER + plaintext + TLS13_OVERHEAD


@dataclass
class Walk:
    """Whole units found from `pos` on: `count` of them, `matched` of the matching size or
    type, `plain` plaintext bytes they carry, `last` the size/type key of the last one."""

    pos: int
    count: int = 0
    matched: int = 0
    plain: int = 0
    last: int = -1


def walk_units(
    buf: bytes | bytearray, pos: int, end: int, tls: bool, match: int = -1, limit: int = -1
) -> Walk:
    """The whole units of `buf[pos:end]` (at most `limit` of them if not -1): TLS records
    when `tls` (matched by their total size, header included: `record_size` of the
    answer), else frames (matched by type)."""
    w = Walk(pos)
    count = matched = plain = 0
    last = -1
    if tls:
        while end - pos >= TLS_HEADER and count != limit:
            stop = pos + TLS_HEADER + (buf[pos + 3] << 8 | buf[pos + 4])
            if stop > end:
                break
            last = stop - pos
            count += 1
            matched += last == match
            plain += last - TLS_HEADER - TLS13_OVERHEAD
            pos = stop
    else:
        unpack = HDR.unpack_from
        while end - pos >= 4 and count != limit:
            (word,) = unpack(buf, pos)
            stop = pos + 4 + (word & 0xFFFFFF)
            if stop > end:
                break
            last = word >> 24
            count += 1
            matched += last == match
            plain += stop - pos
            pos = stop
    w.pos, w.count, w.matched, w.plain, w.last = pos, count, matched, plain, last
    return w


def last_unit(tls: bool) -> tuple[bytes, int]:
    """The header a download's last unit (its nstat PEERCLOSED) starts with, and the
    unit's size: a TLS record header, or the frame header on plain TCP."""
    if tls:
        size = record_size(4 + NSTAT_CODE_BODY)
        return b"\x17\x03\x03" + (size - TLS_HEADER).to_bytes(2, "big"), size
    return bytes([T_NSTAT, 0, 0, NSTAT_CODE_BODY]), 4 + NSTAT_CODE_BODY


def ends_with_unit(buf: bytes | bytearray, pos: int, end: int, unit: tuple[bytes, int]) -> bool:
    """Whether `buf[pos:end]` ends with a unit of `unit`'s header and size (`last_unit`):
    the end of a download seen without walking every header of every read. Never false
    when it does (the caller then walks, which is the proof); rarely true when it does
    not (ciphertext that happens to look like the header: it costs one walk)."""
    header, size = unit
    start = end - size
    return start >= pos and buf[start : start + len(header)] == header


def seal_frames(obj: ssl.SSLObject, outgoing: ssl.MemoryBIO, frames: Iterable[bytes]) -> bytes:
    """Every frame sealed into its own record (a frame over 16 KiB into several), in order:
    the ciphertext a live sender would have sent, frame by frame."""
    write = obj.write
    for frame in frames:
        write(frame)
    return outgoing.read()


class RecordOpener:
    """Opens whole TLS records one by one through `obj` (its incoming BIO is `incoming`),
    keeping OpenSSL at a record boundary: a partial record stays in `tail` until its
    rest is fed. `open` yields (plaintext, raw offset just past the record)."""

    def __init__(self, obj: ssl.SSLObject, incoming: ssl.MemoryBIO) -> None:
        self.obj = obj
        self.incoming = incoming
        self.tail = b""
        self._buf = memoryview(bytearray(1 << 15))

    def open(
        self, raw: bytes | bytearray | memoryview, base: int = 0
    ) -> Iterator[tuple[bytes, int]]:
        """The records of `tail + raw`, `base` being the raw offset where `raw` starts."""
        data = self.tail + bytes(raw) if self.tail else raw
        start = base - len(self.tail)
        pos, end = 0, len(data)
        read, write, buf = self.obj.read, self.incoming.write, self._buf
        while end - pos >= TLS_HEADER:
            stop = pos + TLS_HEADER + (data[pos + 3] << 8 | data[pos + 4])
            if stop > end:
                break
            write(data[pos:stop])
            n = 0
            try:
                n = cast(int, read(len(buf), buf))  # typeshed says bytes: with a buffer, int
            except ssl.SSLWantReadError:  # a non-application record (none expected)
                pass
            yield bytes(buf[:n]), start + stop
            pos = stop
        self.tail = bytes(data[pos:])


@dataclass
class FrameSplitter:
    """Plaintext in, whole frames out as (type, body, `raw_end` of the piece that completed
    the frame); `rest` keeps a frame split across pieces."""

    rest: bytes = b""

    def feed_all(self, pieces: Iterable[tuple[bytes, int]]) -> Iterator[tuple[int, bytes, int]]:
        for data, raw_end in pieces:
            yield from self.feed(data, raw_end)

    def feed(
        self, data: bytes, raw_end: int, own_ends: bool = False
    ) -> Iterator[tuple[int, bytes, int]]:
        """With `own_ends` (plain TCP: the pieces are the raw stream), `raw_end` is where
        `data` starts and each frame is given its own end."""
        buf = self.rest + data if self.rest else data
        pos, end = 0, len(buf)
        base = raw_end - len(self.rest)
        while end - pos >= 4:
            (word,) = HDR.unpack_from(buf, pos)
            stop = pos + 4 + (word & 0xFFFFFF)
            if stop > end:
                break
            yield word >> 24, buf[pos + 4 : stop], base + stop if own_ends else raw_end
            pos = stop
        self.rest = buf[pos:]


def nsend_tags(count: int) -> list[int]:
    """The tags of a flow of `count` nsends: 1, 2, ... 65535, 1, ... (never 0)."""
    return [1 + i % 65535 for i in range(count)]


def check_nsend_answers(
    frames: Iterable[tuple[int, bytes, int]], sktid: int, tags: Sequence[int]
) -> None:
    """Every nsend of the flow answered once, in order: a SUCCESS result (empty body) and an
    ntag of this socket with the request's tag and no error (an 11-byte body); nothing
    else. Raises FlowMismatch naming the first answer that is not."""
    results = ntags = 0
    for kind, body, _ in frames:
        if kind == T_RESULT:
            if body:
                raise FlowMismatch(f"nsend {results}: error result {body.hex()}")
            results += 1
        elif kind == T_NTAG:
            if len(body) != NTAG_BODY:
                raise FlowMismatch(f"ntag {ntags}: {len(body)}-byte body (an error?) {body.hex()}")
            if ntags >= len(tags):
                raise FlowMismatch(f"ntag {ntags}: more ntags than the {len(tags)} nsends")
            want = tags[ntags]
            if body[0] != sktid or (body[1] << 8 | body[2]) != want:
                raise FlowMismatch(
                    f"ntag {ntags}: socket {body[0]} tag {body[1] << 8 | body[2]}, "
                    f"expected socket {sktid} tag {want}"
                )
            ntags += 1
        else:
            raise FlowMismatch(f"unexpected frame type {kind:#x} in the nsend flow")
    if results != len(tags) or ntags != len(tags):
        raise FlowMismatch(f"{results} results and {ntags} ntags for {len(tags)} nsends")


@dataclass
class DownloadCheck:
    """A TCP download's answers, frame by frame: the nopen's SUCCESS, optionally nstat
    ESTABLISHED, ndata of socket `sktid` whose payloads add up to exactly `size`, then
    nstat PEERCLOSED, nothing else. `first_at` / `done_at` are the raw offsets at which
    the first ndata and the PEERCLOSED completed (mapped to arrival times by `arrival`)."""

    sktid: int
    size: int
    got: int = 0
    frames: int = 0
    result: bool = False
    first_at: int | None = None
    done_at: int | None = None

    def feed(self, frames: Iterable[tuple[int, bytes, int]]) -> None:
        for kind, body, at in frames:
            if self.done_at is not None:
                raise FlowMismatch(f"frame type {kind:#x} after the download's PEERCLOSED")
            if not self.result:
                if kind != T_RESULT or body:
                    raise FlowMismatch(f"nopen answered with type {kind:#x} {body[:16].hex()}")
                self.result = True
            elif kind == T_NDATA:
                if len(body) < NDATA_TCP_HEAD or body[0] != self.sktid:
                    raise FlowMismatch(f"ndata {self.frames}: bad header {body[:11].hex()}")
                if self.first_at is None:
                    self.first_at = at
                self.got += len(body) - NDATA_TCP_HEAD
                self.frames += 1
            elif kind == T_NSTAT and len(body) == NSTAT_CODE_BODY:
                if body[0] != self.sktid or body[11] != PEERCLOSED:
                    raise FlowMismatch(f"nstat {body.hex()}: not this socket's PEERCLOSED")
                if self.got != self.size:
                    raise FlowMismatch(f"PEERCLOSED after {self.got} of {self.size} bytes")
                self.done_at = at
            elif kind == T_NSTAT:  # ESTABLISHED (it carries the address)
                if body[0] != self.sktid:
                    raise FlowMismatch(f"nstat {body.hex()}: not this socket's")
            else:
                raise FlowMismatch(f"unexpected frame type {kind:#x} in the download")


@dataclass
class Arrivals:
    """When each raw byte arrived: (raw offset reached, time) per read, in order."""

    ends: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def add(self, end: int, t: float) -> None:
        self.ends.append(end)
        self.times.append(t)

    def at(self, offset: int, before: bool = False) -> float:
        """The time of the read that brought raw byte `offset - 1` (a unit ending there);
        with `before`, of the read before it (the first entry: the flow's start)."""
        i = bisect.bisect_left(self.ends, offset)
        if i == len(self.ends):
            raise ValueError(f"offset {offset} past the last read ({self.ends[-1:]})")
        return self.times[max(i - before, 0)]

    def span(self, first: int, last: int) -> float:
        """Seconds from the arrival of raw offset `first` to that of `last`; from the read
        before when one read brought both (a whole flow in one read: timed from the read
        before it, never zero)."""
        t0, t1 = self.at(first), self.at(last)
        return t1 - t0 if t1 > t0 else t1 - self.at(first, before=True)
