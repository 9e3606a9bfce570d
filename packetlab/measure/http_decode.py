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
from collections.abc import Callable

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
    (None: it tells none, a br or zstd stream it cannot read); `out`: what the body
    decoded to before the fault, to be written out all the same (as curl writes it);
    `truncated`: the coding whose stream the body ended within (a body cut short)."""

    def __init__(self, why: str, at_head: bool = False, curl: str | None = None,
                 truncated: str | None = None) -> None:  # fmt: skip
        super().__init__(why)
        self.at_head, self.curl, self.truncated = at_head, curl, truncated
        self.out = b""


class TooMuchDecoded(StreamError):
    """A decoded body over the limit (curl's 56, as its "Too large")."""


class _Stage:
    """One coding undone. `feed` returns what it decoded; a fault in the stream (bad
    data, data past its end, at the body's end a stream not ended) is kept in `fault`
    with what came out before it returned, so that the bytes decoded are written."""

    coding = ""
    field = "Content-Encoding"  # (or Transfer-Encoding: the words of its errors)
    fault: Undecodable | None = None
    fed = False  # any byte came: a body of none is empty whatever its coding says

    def feed(self, data: bytes, final: bool) -> bytes:
        self.fed = self.fed or bool(data)
        out = self.decode(data, final)
        if final and self.fault is None and self.fed and not self.ended():
            self.fault = self.bad("the body ends within its compressed stream (cut short)")
            self.fault.truncated = self.coding
        return out

    def bad(self, why: str, curl: str | None = None) -> Undecodable:
        return Undecodable(f"{self.field} {self.coding}: {why}", curl=curl)

    def after_end(self) -> Undecodable:
        return self.bad("data after the end of its compressed stream")

    def decode(self, data: bytes, final: bool) -> bytes:
        raise NotImplementedError

    def ended(self) -> bool:
        """The stream came to its end (and nothing is left of a next one)."""
        raise NotImplementedError


_HOLD_MAX = 65536  # deflate input held while no output came (see _Zlib.held)
_GZIP_MAGIC = b"\x1f\x8b"


class _Zlib(_Stage):
    """gzip, or deflate (zlib-wrapped, or raw as some servers send it: curl takes both).
    gzip members one after another are one body (RFC 1952 2.2, as gunzip; curl 7.88.1
    decodes the first and fails 23); anything else after a stream's end is refused."""

    def __init__(self, coding: str, limit: int, server: str | None) -> None:
        self.coding, self.limit, self.server, self.out = coding, limit, server, 0
        self.wbits = _GZIP if coding in ("gzip", "x-gzip") else _ZLIB
        self.z = zlib.decompressobj(self.wbits)
        self.rest = bytearray()  # what came after a stream's end (a member's first bytes)
        # deflate: what was read while nothing came out yet, to be read again as raw
        # deflate if the zlib header turns out wrong (curl switches while no data started;
        # it reads again only the read at hand, so a first read of a byte lost it: the
        # body decoded whole and was refused cut, the fuzz target `http_body`, session 27)
        self.held: bytearray | None = bytearray() if self.wbits == _ZLIB else None

    def decode(self, data: bytes, final: bool) -> bytes:
        parts = []
        while data and self.fault is None:
            if self.z.eof:  # a next gzip member, or data past the end
                self.rest += data
                if self.wbits != _GZIP or not _GZIP_MAGIC.startswith(self.rest[:2]):
                    self.fault = self.after_end()
                    break
                if len(self.rest) < 2:  # (a member's first byte: its second to come)
                    break
                data, self.rest, self.z = bytes(self.rest), bytearray(), zlib.decompressobj(31)
            parts.append(self._inflate(data))
            data = self.z.unused_data if self.z.eof else b""
        if final and self.fault is None and not self.z.eof:
            parts.append(self.z.flush())
            self.out += len(parts[-1])
        return b"".join(parts)

    def ended(self) -> bool:
        return self.z.eof and not self.rest

    def _inflate(self, data: bytes) -> bytes:
        try:
            out = self.z.decompress(data, self.limit + 1 - self.out)
        except zlib.error as e:
            if self.held is None:
                told = f"Error while processing content unencoding: {str(e).split(': ', 1)[-1]}"
                self.fault = self.bad(f"bad data ({e})", told)
                return b""
            data = bytes(self.held) + data
            self.held = None
            self.wbits, self.z = _RAW, zlib.decompressobj(_RAW)  # deflate without its header
            return self._inflate(data)
        if self.held is not None:
            if out or len(self.held) + len(data) > _HOLD_MAX:
                self.held = None  # data started (or too long without: no switch)
            else:
                self.held += data
        self.out += len(out)
        if self.out > self.limit or self.z.unconsumed_tail:
            raise TooMuchDecoded(f"decoded body from {self.server} larger than {self.limit} bytes")
        return out


#: a br body's compressed bytes kept to find where its stream ended in a read the binding
#: refused whole (`_Brotli.refused`); past it, such a read is told as bad data
BR_HISTORY_MAX = 8 << 20


class _Brotli(_Stage):
    """br. brotli's Python binding refuses a read with data after the stream's end whole
    (`decoder failed`, its output lost) and cannot be copied or asked where the stream
    ended: the compressed bytes are kept (up to BR_HISTORY_MAX) so that such a read is
    decoded again on a new decoder, a byte at a time, to the stream's end (as curl's
    libbrotli tells it: the text written, the rest data after the end)."""

    coding = "br"

    def __init__(self, limit: int, server: str | None) -> None:
        import brotli  # (only a br body pays for the import)

        self.brotli = brotli
        self.error = brotli.error
        self.d = brotli.Decompressor()
        self.limit, self.server, self.out = limit, server, 0
        self.history: list[bytes] | None = []  # the reads decoded so far (None: too many)
        self.kept = 0

    def decode(self, data: bytes, final: bool) -> bytes:
        if data and self.d.is_finished():  # (brotli refuses it: "decoder failed")
            self.fault = self.after_end()
            return b""
        room = self.limit + 1 - self.out
        try:
            out = self.d.process(data, output_buffer_limit=room)
            more = not self.d.can_accept_more_data()
        except self.error as e:
            out, more = self.refused(data, e), False
        else:
            self.keep(data)
        self.out += len(out)
        if self.out > self.limit or (more and len(out) >= room):
            raise TooMuchDecoded(f"decoded body from {self.server} larger than {self.limit} bytes")
        return out

    def keep(self, data: bytes) -> None:
        if self.history is None or not data:
            return
        self.kept += len(data)
        if self.kept > BR_HISTORY_MAX:
            self.history = None
        else:
            self.history.append(bytes(data))

    def refused(self, data: bytes, e: Exception) -> bytes:
        """A read the binding refused whole (`e`): what it decodes to up to the stream's
        end or the fault, on a new decoder brought to the state before it (the reads
        kept, their output dropped: it was handed out); the fault kept."""
        if self.history is None:
            self.fault = self.bad(f"bad data ({e})")
            return b""
        d = self.brotli.Decompressor()
        for piece in self.history:
            d.process(piece)
        self.d, self.history, parts, made = d, None, [], self.out
        for at in range(len(data)):
            if d.is_finished():
                self.fault = self.after_end()
                break
            try:
                parts.append(d.process(data[at : at + 1]))
            except self.error as bad:
                self.fault = self.bad(f"bad data ({bad})")
                break
            made += len(parts[-1])
            if made > self.limit:
                break  # (decode: too much)
        else:
            if not d.is_finished():  # (not refused a byte at a time: as it said)
                self.fault = self.bad(f"bad data ({e})")
        return b"".join(parts)

    def ended(self) -> bool:
        return bool(self.d.is_finished())


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


_ZSTD_MAGIC = 0xFD2FB528
_FCS_SIZE = (0, 2, 4, 8)  # by Frame_Content_Size_flag (0: 1 byte in a single segment)
_DICT_ID_SIZE = (0, 1, 2, 4)


class _ZstdFrames:
    """Where a zstd body's frames end (RFC 8878 §3.1: magic, header, blocks, checksum;
    skippable frames), read as the bytes come. libzstd does not tell it through a writer,
    and streamed it checks a frame's content size only at a last block with data: a last
    empty block read on its own ended the frame whatever its header said (session 33)."""

    def __init__(self) -> None:
        self.held = bytearray()  # a field being read
        self.need = 4  # bytes of it still to come (`skip`: of a block's data, skipped)
        self.skip = 0
        self.step: Callable[[int], None] = self._magic
        self.size: int | None = None  # the frame's content size, if its header says
        self.fcs = 0  # the header's bytes that say it
        self.checksum = False
        self.ends: list[tuple[int, int | None]] = []
        self.frames = 0  # frames that ended

    @property
    def between(self) -> bool:
        """At a frame's end (or before any byte)."""
        return self.step == self._magic and not self.held and not self.skip

    @property
    def after(self) -> bool:
        """Past a frame's end, at what should be the next one's magic number."""
        return self.frames > 0 and self.step == self._magic

    def feed(self, data: bytes) -> list[tuple[int, int | None]]:
        """The offsets in `data` just past each frame that ends in it, with that frame's
        content size (None: not said, or a skippable frame)."""
        self.ends, at = [], 0
        while at < len(data):
            if self.skip:
                n = min(self.skip, len(data) - at)
                self.skip -= n
                at += n
                if self.skip == 0:
                    self.step(at)
                continue
            n = min(self.need - len(self.held), len(data) - at)
            self.held += data[at : at + n]
            at += n
            if len(self.held) == self.need:
                self.step(at)
        return self.ends

    def _read(self, need: int, step: Callable[[int], None], at: int) -> None:
        self.held.clear()
        if need == 0:
            step(at)
        else:
            self.need, self.step = need, step

    def _skip(self, n: int, step: Callable[[int], None], at: int) -> None:
        self.held.clear()
        self.step = step
        if n == 0:
            step(at)
        else:
            self.skip = n

    def _magic(self, at: int) -> None:
        magic = int.from_bytes(self.held, "little")
        if magic == _ZSTD_MAGIC:
            self._read(1, self._descriptor, at)
        elif magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable: its length, then that much
            self._read(4, self._skippable, at)
        else:  # not a frame (libzstd refuses it): no end comes
            self._skip(1 << 62, self._magic, at)

    def _descriptor(self, at: int) -> None:
        fhd = self.held[0]
        single, self.checksum = fhd >> 5 & 1, bool(fhd >> 2 & 1)
        self.fcs = _FCS_SIZE[fhd >> 6] or single
        self._read((not single) + _DICT_ID_SIZE[fhd & 3] + self.fcs, self._header, at)

    def _header(self, at: int) -> None:
        fcs = int.from_bytes(self.held[len(self.held) - self.fcs :], "little") if self.fcs else None
        self.size = fcs + 256 if fcs is not None and self.fcs == 2 else fcs
        self._read(3, self._block, at)

    def _block(self, at: int) -> None:
        head = int.from_bytes(self.held, "little")
        last, kind, size = head & 1, head >> 1 & 3, head >> 3
        after = self._next_block if not last else self._checksum if self.checksum else self._ended
        self._skip(1 if kind == 1 else size, after, at)  # (an RLE block: one byte)

    def _next_block(self, at: int) -> None:
        self._read(3, self._block, at)

    def _checksum(self, at: int) -> None:
        self._skip(4, self._ended, at)

    def _ended(self, at: int) -> None:
        self.frames += 1
        self.ends.append((at, self.size))
        self._read(4, self._magic, at)

    def _skippable(self, at: int) -> None:
        self._skip(int.from_bytes(self.held, "little"), self._ended_skippable, at)

    def _ended_skippable(self, at: int) -> None:
        self.frames += 1
        self.ends.append((at, None))
        self._read(4, self._magic, at)


class _Zstd(_Stage):
    coding = "zstd"

    def __init__(self, limit: int, server: str | None) -> None:
        import zstandard

        self.error = zstandard.ZstdError
        self.sink = _Bounded(limit, server)
        d = zstandard.ZstdDecompressor(max_window_size=ZSTD_WINDOW)
        self.w = d.stream_writer(self.sink, write_size=64 << 10, closefd=False)  # type: ignore[arg-type]  # (a writer: write() is all it calls)
        self.frames = _ZstdFrames()
        self.frame_start = 0  # the decoded bytes before the frame at hand

    def decode(self, data: bytes, final: bool) -> bytes:
        try:
            at = 0
            for end, size in self.frames.feed(data):  # each frame's end written alone
                self._write(data[at:end])
                at, made = end, self.sink.total - self.frame_start
                if size is not None and made != size:
                    raise self.bad(f"a frame of {made} bytes whose header says {size}")
                self.frame_start = self.sink.total
            self._write(data[at:])
            if final:
                self.w.flush()
        except self.error as e:
            bad = self.bad(f"bad data ({e})")
            self.fault = self.after_end() if self.frames.after else bad  # (libzstd: "Unknown
            # frame descriptor", as soon as a byte cannot start a frame)
        except Undecodable as e:
            self.fault = e
        return self.sink.take()

    def ended(self) -> bool:
        return self.frames.between

    def _write(self, data: bytes) -> None:
        for at in range(0, len(data), ZSTD_PIECE):
            self.w.write(data[at : at + ZSTD_PIECE])


class Decoder:
    """A body's codings undone in turn, the last applied first."""

    def __init__(self, codings: list[str], limit: int, server: str | None,
                 transfer: int = 0) -> None:  # fmt: skip
        self.stages: list[_Stage] = []
        self.fault: Undecodable | None = None
        for coding in reversed(codings):
            if coding in ("gzip", "x-gzip", "deflate"):
                self.stages.append(_Zlib(coding, limit, server))
            elif coding == "br":
                self.stages.append(_Brotli(limit, server))
            else:
                self.stages.append(_Zstd(limit, server))
        for stage in self.stages[:transfer]:  # (the last codings, undone first)
            stage.field = "Transfer-Encoding"

    def feed(self, data: bytes, final: bool = False) -> bytes:
        """What `data` decodes to (`final`: the body's end). A fault in any stage is
        raised once what came before it went through the stages after it (its `out`):
        the outermost first, a body cut short in an outer coding told as such."""
        if self.fault is not None:  # (fed again after it: nothing more comes out)
            self.fault.out = b""
            raise self.fault
        for stage in self.stages:
            data = stage.feed(data, final and self.fault is None)
            self.fault = self.fault or stage.fault
        if self.fault is not None:
            self.fault.out = data
            raise self.fault
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


def decoder(codings: list[str], limit: int, server: str | None,
            transfer: int = 0) -> Decoder | None:  # fmt: skip
    """The decoder for a body's codings, transfer and content ones in the order applied
    (None: nothing to undo); the last `transfer` are Transfer-Encoding's (so its errors
    say)."""
    transfer = sum(c != "identity" for c in codings[len(codings) - transfer :]) if transfer else 0
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
    return Decoder(codings, limit, server, transfer)
