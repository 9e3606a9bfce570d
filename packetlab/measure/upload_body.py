"""A request body read at send time, in chunks (`Upload`): its pieces (bytes, a file read
in `CHUNK`-byte reads, stdin from a pipe read by a thread, a part through an encoder),
its length known beforehand or not (chunked), curl 7.88's Expect rules; `-T FILE`."""

from __future__ import annotations

import io
import os
import queue
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, TypeAlias

from packetlab.measure.upload_encode import LINE, Base64, QuotedPrintable

CHUNK = 64 << 10  # bytes read from a file at a time
# stdin (length unknown: chunked) is read as curl reads it, its 64 KiB upload buffer less
# the room it keeps for a chunk's framing: so the chunks, and size_upload (which counts
# their framing), are curl's
STDIN_CHUNK = CHUNK - 12
# curl 7.88 (http.c): a POST (-d, -F) larger than this asks `Expect: 100-continue` over
# HTTP/1.1 (EXPECT_100_THRESHOLD); a PUT (-T) asks it for any non-empty body. A body
# below MAX_INITIAL_POST_SIZE without Expect goes in the same write as the head (and
# counts in size_request).
EXPECT_THRESHOLD = 1 << 20
MAX_INITIAL_POST_SIZE = 64 << 10


class UploadError(Exception):
    """A body's file cannot be read (one line: which file, why)."""


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: str  # "-": stdin
    size: int | None  # None: stdin, unknown
    head: bytes = b""  # stdin already read (a -F part's first STDIN_BUFFER bytes), sent first
    spent: bool = False  # stdin another use read first: nothing (curl reads stdin once)
    offset: int = 0  # -C: where in the file `size` bytes start (an upload resumed)


Piece: TypeAlias = "bytes | SourceFile | Piped | Encoded"


@dataclass(slots=True)
class Upload:
    """A request body: `method` it goes with (curl: POST for -d/-F, PUT for -T),
    `content_type` (None: no Content-Type header), `length` (None: unknown, sent
    chunked). `inline` bodies (-d's) go in one write with the head when small."""

    pieces: list[Piece]
    method: str = "POST"
    content_type: str | None = None
    inline: bool = False
    length: int | None = field(init=False)
    used: bool = field(default=False, init=False)
    # -C with -T: (the first byte sent, the file's size), curl's Content-Range
    resumed: tuple[int, int] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.length = self._length()

    def _length(self) -> int | None:
        total: int | None = 0
        for p in self.pieces:
            size = len(p) if isinstance(p, bytes) else p.size
            total = None if total is None or size is None else total + size
        return total

    def fill(self, wake: Callable[[], None]) -> bool:
        """Read what curl reads before the request (its Content-Length): a -F part's
        stdin from a pipe, by a daemon thread (`Piped`), never the caller's; True when
        done (`length` then set), False when not yet: `wake` is called (from that
        thread) when more came, then call again. UploadError when stdin cannot be read."""
        done = True
        for p in self.pieces:
            piped = p.source if isinstance(p, Encoded) else p
            if isinstance(piped, Piped) and not piped.fill(wake):
                done = False
        if done:
            self.length = self._length()
        return done

    @classmethod
    def of(cls, data: bytes, content_type: str | None = None) -> Upload:
        """-d's bytes (form-encoded unless a Content-Type header is given)."""
        return cls([data], "POST", content_type, inline=True)

    def resumed_at(self, offset: int) -> Upload:
        """-C OFFSET with -T FILE as curl 7.88 sends it: the file from OFFSET on (-1, `-C
        -`: all of it, curl asks the server nothing), `resumed` for its Content-Range.
        UploadError for a body that is no regular file of a known size (not built);
        ValueError when nothing is left (curl: 18, "File already completely uploaded")."""
        f = self.pieces[0] if len(self.pieces) == 1 else None
        if self.method != "PUT" or not isinstance(f, SourceFile) or f.size is None or f.path == "-":
            raise UploadError("-C/--continue-at with -T of stdin or a pipe: an upload "
                              "resumed from a stream is not built")  # fmt: skip
        start = max(offset, 0)
        if f.size - start <= 0:
            raise ValueError("File already completely uploaded")
        out = Upload([replace(f, size=f.size - start, offset=start)], "PUT", self.content_type)
        out.resumed = (start, f.size)
        return out

    @property
    def rewindable(self) -> bool:
        """It can be sent again (a 307/308 redirect): stdin or a FIFO cannot (curl's
        exit 65)."""
        return not any(
            s is not None and (s.path == "-" or s.size is None) for s in map(_source, self.pieces)
        )

    def expects(self) -> bool:
        """curl 7.88 asks `Expect: 100-continue` for it over HTTP/1.1."""
        if self.method == "PUT":
            return self.length != 0
        return self.length is None or self.length > EXPECT_THRESHOLD

    def small(self) -> bytes | None:
        """The body when curl sends it in the head's write (-d below 64 KiB), else None."""
        if self.inline and self.length is not None and self.length < MAX_INITIAL_POST_SIZE:
            return b"".join(p for p in self.pieces if isinstance(p, bytes))
        return None

    def chunks(self, wake: Callable[[], None] | None = None) -> Iterator[bytes]:
        """The body, at most CHUNK bytes at a time, files read now; UploadError when one
        cannot be read, or it changed size since the length was taken. With `wake`, a
        source that is not a regular file (stdin or a FIFO from a pipe or a terminal,
        whose read() may wait for ever) is opened and read by a daemon thread, never by
        the caller: an empty chunk then means "nothing ready yet", and `wake` is called
        (from that thread) when something is; the thread stops reading while
        `PIPE_QUEUE` chunks wait to be taken (bounded memory)."""
        if not self.rewindable and self.used:
            one = next(s.path for s in map(_source, self.pieces)
                       if s is not None and (s.path == "-" or s.size is None))  # fmt: skip
            where = "stdin" if one == "-" else one
            raise UploadError(f"the upload from {where} cannot be sent again (curl: 65)")
        self.used = True
        for p in self.pieces:
            if isinstance(p, bytes):
                for i in range(0, len(p), CHUNK):
                    yield p[i : i + CHUNK]
            elif isinstance(p, Encoded):
                for data in p.chunks(wake):
                    if not data:  # nothing ready yet (a pipe)
                        yield data
                    for i in range(0, len(data), CHUNK):
                        yield data[i : i + CHUNK]
            elif isinstance(p, Piped):
                yield from p.chunks(wake)
            else:
                yield from read_file(p, wake)


def _source(p: Any) -> SourceFile | None:
    """The file a piece reads (None: bytes, or a pipe's bytes all read before)."""
    if isinstance(p, Encoded):
        p = p.source
    if isinstance(p, Piped):
        return None if p.ended else SourceFile("-", None)
    return p if isinstance(p, SourceFile) else None


def stdin_fd() -> int | None:
    """stdin's file descriptor, None when it has none (replaced by a stream in tests)."""
    try:
        return sys.stdin.fileno()
    except (OSError, ValueError, AttributeError):
        return None


PIPE_QUEUE = 4  # chunks a pipe's reader thread reads ahead of the sender at most


class _PipeReader:
    """A daemon thread that opens a non-regular source (stdin: its fd) and reads it,
    each read() a chunk (curl's), into a bounded queue; `wake` called after each put
    and at the end. Daemon: a reader still waiting on a silent pipe does not keep the
    process alive."""

    def __init__(self, f: SourceFile, wake: Callable[[], None]) -> None:
        self.path, self.wake = f.path, wake
        self.queue: queue.Queue[bytes | UploadError | None] = queue.Queue(PIPE_QUEUE)
        self.stop = False
        self.thread = threading.Thread(target=self._run, name=f"upload {f.path}", daemon=True)
        self.thread.start()

    def _put(self, item: bytes | UploadError | None) -> bool:
        while not self.stop:
            try:
                self.queue.put(item, timeout=0.5)
            except queue.Full:
                continue
            self.wake()
            return True
        return False

    def _run(self) -> None:
        fd = -1
        try:
            fd = sys.stdin.fileno() if self.path == "-" else os.open(self.path, os.O_RDONLY)
            while not self.stop:
                data = os.read(fd, STDIN_CHUNK)
                if not data or not self._put(data):
                    break
            self._put(None)
        except (OSError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            self._put(UploadError(f"{self.path}: {why}"))
        finally:
            if fd >= 0 and self.path != "-":
                os.close(fd)

    def chunks(self) -> Iterator[bytes]:
        """What was read, b"" when nothing is yet; the end when the source ends."""
        try:
            while True:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    yield b""
                    continue
                if item is None:
                    return
                if isinstance(item, UploadError):
                    raise item
                yield item
        finally:
            self.stop = True


@dataclass(eq=False, slots=True)
class Piped:
    """A -F part's stdin (@- or <-) from a pipe or a terminal. curl 7.88 reads it whole
    before the request (its Content-Length); ours is read by a `_PipeReader` thread,
    never on the reactor (a silent pipe leaves Ctrl-C, SIGTERM and the time limits
    acting), while the request waits (`Upload.fill`): whole up to STDIN_BUFFER bytes,
    past which (curl: all in memory) those bytes then the rest as it comes, the body
    sent chunked. `size` is known once it `ended` (before: None)."""

    got: bytearray = field(default_factory=bytearray)
    ended: bool = False  # the pipe's end came within STDIN_BUFFER bytes
    full: bool = False  # read as far as it is before the request
    reader: _PipeReader | None = None
    path: str = "-"

    @property
    def size(self) -> int | None:
        return len(self.got) if self.ended else None

    def fill(self, wake: Callable[[], None]) -> bool:
        """What the reader thread read so far taken in; whether it is full (the end,
        or STDIN_BUFFER bytes)."""
        if self.full:
            return True
        if self.reader is None:
            self.reader = _PipeReader(SourceFile("-", None), wake)
        self.reader.wake = wake
        while len(self.got) < STDIN_BUFFER:
            try:
                item = self.reader.queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                self.ended = True
                break
            if isinstance(item, UploadError):
                self.reader.stop = True
                raise UploadError(f"stdin: {str(item).removeprefix('-: ')}")
            self.got += item
        self.full = True
        return True

    def chunks(self, wake: Callable[[], None] | None) -> Iterator[bytes]:
        """What was read before the request, then (past STDIN_BUFFER) the rest from the
        same reader thread; b"": nothing ready yet."""
        if not self.full:
            raise UploadError("stdin: not read before the request (Upload.fill)")
        for i in range(0, len(self.got), CHUNK):
            yield bytes(self.got[i : i + CHUNK])
        if self.ended or self.reader is None:
            return
        if wake is not None:
            self.reader.wake = wake
        yield from self.reader.chunks()


def read_file(f: SourceFile, wake: Callable[[], None] | None = None) -> Iterator[bytes]:
    if f.spent:
        return
    if f.head:
        yield f.head
    if f.size is None and wake is not None and (f.path != "-" or stdin_fd() is not None):
        yield from _PipeReader(f, wake).chunks()
        return
    try:
        stream: BinaryIO = sys.stdin.buffer if f.path == "-" else open(f.path, "rb")  # noqa: SIM115
        if f.offset:
            stream.seek(f.offset)
    except OSError as e:
        raise UploadError(f"{f.path}: {e.strerror or e}") from None
    sent = 0
    read = getattr(stream, "read1", stream.read) if f.size is None else stream.read
    try:
        while True:
            try:
                # size unknown (stdin, a FIFO): what one read() gives, as curl (its chunks
                # and size_upload; a slow pipe's bytes sent as they come)
                data = read(STDIN_CHUNK if f.size is None else CHUNK)
            except OSError as e:
                raise UploadError(f"{f.path}: {e.strerror or e}") from None
            if not data:
                break
            sent += len(data)
            if f.size is not None and sent > f.size:
                break
            yield data
    finally:
        if f.path != "-":
            stream.close()
    if f.size is not None and sent != f.size:
        raise UploadError(f"{f.path}: changed size while sent ({f.size} bytes before, "
                          f"{'more' if sent > f.size else sent} now)")  # fmt: skip


def source_file(path: str) -> SourceFile:
    """A file to send, its size taken now (curl: "Can't open 'FILE'!", exit 26). One
    that is not a regular file (a FIFO, /dev/zero, /dev/stdin) is not opened now (a
    FIFO's open waits for a writer): as curl, its size is unknown and it is read to its
    end when sent, chunked."""
    if path == "-":
        return SourceFile("-", None)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory")
        if not stat.S_ISREG(st.st_mode):
            if not os.access(path, os.R_OK):
                raise PermissionError(13, "Permission denied")
            return SourceFile(path, None)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
    except OSError as e:  # an empty name (-F a=@, a=@x,, -T '{,}') shown as ''
        raise UploadError(f"{path or repr(path)}: {e.strerror or e}") from None
    return SourceFile(path, size)


def file_upload(path: str, spent: bool = False) -> Upload:
    """curl -T FILE: a PUT of the file as is, no Content-Type (`-` stdin, chunked;
    `spent`: stdin that another use read first, an empty chunked body as curl's)."""
    return Upload([SourceFile("-", None, spent=True) if spent else source_file(path)], "PUT")


def stdin_is_regular() -> bool:
    """stdin is a regular file (`< FILE`): curl reads a -F part of it when it sends it
    (else, a pipe or a terminal, when it parses the -F)."""
    try:
        return stat.S_ISREG(os.fstat(sys.stdin.fileno()).st_mode)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


STDIN_BUFFER = 16 << 20  # a -F NAME=@- from a pipe read whole up to this (curl: all of it)


def stdin_part() -> bytes | SourceFile | Piped:
    """A -F part's stdin (@- or <-) as curl 7.88 takes it: a regular file read when sent,
    its size known; else (a pipe, a terminal) read whole before the request so that its
    size is known (curl's Content-Length) when it is at most STDIN_BUFFER bytes; past
    that (curl: all in memory) those bytes then the rest as it comes, the body sent
    chunked. Not read here: by a thread while the request waits (`Piped`); a stdin
    with no file descriptor (a stream put there) is read now."""
    try:
        fd = sys.stdin.fileno()
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            return SourceFile("-", max(st.st_size - os.lseek(fd, 0, os.SEEK_CUR), 0))
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
    if stdin_fd() is not None:
        return Piped()
    try:
        data = sys.stdin.buffer.read(STDIN_BUFFER)
    except OSError as e:
        raise UploadError(f"stdin: {e.strerror or e}") from None
    return data if len(data) < STDIN_BUFFER else SourceFile("-", None, data)


def check_7bit(data: bytes, what: str, offset: int = 0) -> None:
    for i, b in enumerate(data):
        if b & 0x80:
            raise UploadError(f"{what}: byte 0x{b:02X} at offset {offset + i} is not 7-bit "
                              "(;encoder=7bit; curl: 26)")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Encoded:
    """A part's content through curl's ;encoder= (7bit: checked; base64,
    quoted-printable), read at send time; `size` None when curl cannot tell it
    beforehand (quoted-printable, stdin), and then the body goes chunked, as curl's."""

    source: bytes | SourceFile | Piped
    encoder: str
    name: str | None

    @property
    def size(self) -> int | None:
        n = len(self.source) if isinstance(self.source, bytes) else self.source.size
        if n is None or n == 0:
            return n
        if self.encoder == "base64":
            n = 4 * (1 + (n - 1) // 3)
            return n + 2 * ((n - 1) // LINE)
        if self.encoder == "quoted-printable":
            return None
        return n

    def chunks(self, wake: Callable[[], None] | None = None) -> Iterator[bytes]:
        if isinstance(self.source, bytes):
            raw: Iterator[bytes] = iter([self.source] if self.source else [])
        elif isinstance(self.source, Piped):
            raw = self.source.chunks(wake)
        else:
            raw = read_file(self.source, wake)
        enc = Base64() if self.encoder == "base64" else QuotedPrintable()
        offset = 0
        for data in raw:
            if not data:  # nothing ready yet (a pipe): said on
                yield data
                continue
            if self.encoder == "7bit":
                what = (
                    self.source.path
                    if isinstance(self.source, (SourceFile, Piped))
                    else "the value"
                )
                check_7bit(data, f"-F part {self.name or ''!r}: {what}", offset)
                offset += len(data)
                yield data
                continue
            out = enc.feed(data, False)
            if out:
                yield out
        if self.encoder != "7bit":
            out = enc.feed(b"", True)
            if out:
                yield out


def merge(pieces: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for p in pieces:
        if isinstance(p, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += p
        else:
            out.append(p)
    return out
