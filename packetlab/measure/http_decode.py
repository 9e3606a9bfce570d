"""--compressed: a response body's Content-Encoding decoded as it comes, as curl 7.88.1
(built with zlib, brotli and zstd) decodes it: `deflate`, `gzip` (`x-gzip`), `br`,
`zstd`, stacked (`Content-Encoding: deflate, gzip`, or the field twice: undone last
first), at most 5 (curl's "Reject response due to more than 5 content encodings").

Every stage's output is bounded by `limit` bytes, checked as it grows: a small body that
inflates without bound is refused before it is held (zlib's max_length, brotli's
output_buffer_limit, zstd through a writer that sees each output block).
"""

from __future__ import annotations

import re
import zlib
from typing import Protocol

from packetlab.measure.stream import StreamError

__all__ = ["ACCEPT_ENCODING", "Decoder", "TooMuchDecoded", "Undecodable", "content_codings",
           "decoder", "transfer_codings"]  # fmt: skip

ACCEPT_ENCODING = "deflate, gzip, br, zstd"  # curl 7.88.1 with brotli and zstd sends this
MAX_CODINGS = 5  # curl's MAX_ENCODE_STACK
_GZIP, _ZLIB, _RAW = 32 + 15, 15, -15  # zlib wbits: gzip, zlib-wrapped deflate, raw
# RFC 9659: a zstd Content-Encoding's window is at most 8 MiB (a larger one would make a
# server's few bytes cost us up to libzstd's default 128 MiB)
ZSTD_WINDOW = 8 << 20
ZSTD_PIECE = 1024  # input bytes per zstd call (each call's output is bounded by the writer)


class Undecodable(Exception):
    """A Content-Encoding that cannot be decoded (curl's 61); `at_head`: refused on the
    head alone (curl reads none of the body); `curl`: curl 7.88.1's -v line for it
    (None: it tells none, a br or zstd stream it cannot read)."""

    def __init__(self, why: str, at_head: bool = False, curl: str | None = None) -> None:
        super().__init__(why)
        self.at_head, self.curl = at_head, curl


class TooMuchDecoded(StreamError):
    """A decoded body over the limit (curl's 56, as its "Too large")."""


class _Stage(Protocol):
    def feed(self, data: bytes, final: bool) -> bytes: ...


_HOLD_MAX = 65536  # deflate input held while no output came (see _Zlib.held)


class _Zlib:
    """gzip, or deflate (zlib-wrapped, or raw as some servers send it: curl takes both)."""

    def __init__(self, coding: str, limit: int, server: str | None) -> None:
        self.coding, self.limit, self.server, self.out = coding, limit, server, 0
        self.wbits = _GZIP if coding in ("gzip", "x-gzip") else _ZLIB
        self.z = zlib.decompressobj(self.wbits)
        # deflate: what was read while nothing came out yet, to be read again as raw
        # deflate if the zlib header turns out wrong (curl switches while no data started;
        # it reads again only the read at hand, so a first read of a byte lost it: the
        # body decoded whole and was refused cut, the fuzz target `http_body`, session 27)
        self.held: bytearray | None = bytearray() if self.wbits == _ZLIB else None

    def feed(self, data: bytes, final: bool) -> bytes:
        try:
            out = self.z.decompress(data, self.limit + 1 - self.out)
        except zlib.error as e:
            if self.held is None:
                told = f"Error while processing content unencoding: {str(e).split(': ', 1)[-1]}"
                raise Undecodable(f"Content-Encoding {self.coding}: bad data ({e})",
                                  curl=told) from None  # fmt: skip
            data = bytes(self.held) + data
            self.held = None
            self.wbits, self.z = _RAW, zlib.decompressobj(_RAW)  # deflate without its header
            return self.feed(data, final)
        if self.held is not None:
            if out or len(self.held) + len(data) > _HOLD_MAX:
                self.held = None  # data started (or too long without: no switch)
            else:
                self.held += data
        if final:
            out += self.z.flush()
        self.out += len(out)
        if self.out > self.limit or self.z.unconsumed_tail:
            raise TooMuchDecoded(f"decoded body from {self.server} larger than {self.limit} bytes")
        return out


class _Brotli:
    def __init__(self, limit: int, server: str | None) -> None:
        import brotli  # (only a br body pays for the import)

        self.error = brotli.error
        self.d = brotli.Decompressor()
        self.limit, self.server, self.out = limit, server, 0

    def feed(self, data: bytes, final: bool) -> bytes:
        room = self.limit + 1 - self.out
        try:
            out = self.d.process(data, output_buffer_limit=room)
            more = not self.d.can_accept_more_data()
        except self.error as e:
            raise Undecodable(f"Content-Encoding br: bad data ({e})") from None
        self.out += len(out)
        if self.out > self.limit or (more and len(out) >= room):
            raise TooMuchDecoded(f"decoded body from {self.server} larger than {self.limit} bytes")
        return out


class _Bounded:
    """zstd's writer: keeps each output block, refuses past the limit as it grows."""

    def __init__(self, limit: int, server: str | None) -> None:
        self.limit, self.server, self.total = limit, server, 0
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.total += len(data)
        if self.total > self.limit:
            raise TooMuchDecoded(f"decoded body from {self.server} larger than {self.limit} bytes")
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


class _Zstd:
    def __init__(self, limit: int, server: str | None) -> None:
        import zstandard

        self.error = zstandard.ZstdError
        self.sink = _Bounded(limit, server)
        d = zstandard.ZstdDecompressor(max_window_size=ZSTD_WINDOW)
        self.w = d.stream_writer(self.sink, write_size=64 << 10, closefd=False)  # type: ignore[arg-type]  # (a writer: write() is all it calls)

    def feed(self, data: bytes, final: bool) -> bytes:
        try:
            for at in range(0, len(data), ZSTD_PIECE):
                self.w.write(data[at : at + ZSTD_PIECE])
            if final:
                self.w.flush()
        except self.error as e:
            raise Undecodable(f"Content-Encoding zstd: bad data ({e})") from None
        return self.sink.take()


class Decoder:
    """A body's codings undone in turn, the last applied first."""

    def __init__(self, codings: list[str], limit: int, server: str | None) -> None:
        self.stages: list[_Stage] = []
        for coding in reversed(codings):
            if coding in ("gzip", "x-gzip", "deflate"):
                self.stages.append(_Zlib(coding, limit, server))
            elif coding == "br":
                self.stages.append(_Brotli(limit, server))
            else:
                self.stages.append(_Zstd(limit, server))

    def feed(self, data: bytes, final: bool = False) -> bytes:
        for stage in self.stages:
            data = stage.feed(data, final)
        return data


def content_codings(headers: list[tuple[str, str]]) -> list[str]:
    """A response's Content-Encoding codings, in the order applied."""
    return [c.strip().lower() for k, v in headers if k.lower() == "content-encoding"
            for c in v.split(",") if c.strip()]  # fmt: skip


def transfer_codings(raw: bytes) -> list[str]:
    """The Transfer-Encoding codings of a head as it came (`raw`; h11 was given only its
    `chunked`, http_lenient) but chunked: curl 7.88 decodes them, --tr-encoding or not."""
    found = re.findall(rb"(?im)^transfer-encoding[ \t]*:([^\r\n]*)", raw)
    codings = [c.strip().lower().decode("latin-1") for v in found for c in v.split(b",")]
    return [c for c in codings if c and c != "chunked"]


def decoder(codings: list[str], limit: int, server: str | None) -> Decoder | None:
    """The decoder for a body's codings, transfer and content ones in the order applied
    (None: nothing to undo)."""
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if len(codings) > MAX_CODINGS:
        why = "Reject response due to more than 5 content encodings"
        raise Undecodable(why, True, why)
    unknown = [c for c in codings if c not in ("gzip", "x-gzip", "deflate", "br", "zstd")]
    if unknown:
        raise Undecodable(
            f"Unrecognized content encoding type {unknown[0]}: curl understands deflate, "
            "gzip, br, zstd content encodings",
            curl="Unrecognized content encoding type. libcurl understands deflate, gzip, br, "
            "zstd content encodings.",
        )
    return Decoder(codings, limit, server)
