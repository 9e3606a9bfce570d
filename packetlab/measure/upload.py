"""Request bodies read at send time, in chunks, as curl 7.88 builds them: `-T FILE` (a
PUT of the file, `-T -` stdin with chunked framing), `-F` (multipart/form-data), `-d`.

An `Upload` is a list of pieces, each bytes or a file read in `CHUNK`-byte reads when
the body goes out (never whole into memory), with its length known beforehand from the
files' sizes (curl stats them too) or unknown for stdin (chunked transfer coding). A
file that cannot be read or changes size while it is sent is an `UploadError`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import operator
import os
import queue
import re
import secrets
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, TypeAlias

__all__ = [
    "CHUNK",
    "ENCODERS",
    "EXPECT_THRESHOLD",
    "FormPart",
    "Forms",
    "Upload",
    "UploadError",
    "content_type_for",
    "file_upload",
    "multipart",
    "parse_form",
    "read_headers_file",
    "stdin_is_regular",
]

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
class _File:
    path: str  # "-": stdin
    size: int | None  # None: stdin, unknown
    head: bytes = b""  # stdin already read (a -F part's first STDIN_BUFFER bytes), sent first
    spent: bool = False  # stdin another use read first: nothing (curl reads stdin once)
    offset: int = 0  # -C: where in the file `size` bytes start (an upload resumed)


Piece: TypeAlias = "bytes | _File | _Piped | _Encoded"


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
        stdin from a pipe, by a daemon thread (`_Piped`), never the caller's; True when
        done (`length` then set), False when not yet: `wake` is called (from that
        thread) when more came, then call again. UploadError when stdin cannot be read."""
        done = True
        for p in self.pieces:
            piped = p.source if isinstance(p, _Encoded) else p
            if isinstance(piped, _Piped) and not piped.fill(wake):
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
        if self.method != "PUT" or not isinstance(f, _File) or f.size is None or f.path == "-":
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
            elif isinstance(p, _Encoded):
                for data in p.chunks(wake):
                    if not data:  # nothing ready yet (a pipe)
                        yield data
                    for i in range(0, len(data), CHUNK):
                        yield data[i : i + CHUNK]
            elif isinstance(p, _Piped):
                yield from p.chunks(wake)
            else:
                yield from _read_file(p, wake)


def _source(p: Any) -> _File | None:
    """The file a piece reads (None: bytes, or a pipe's bytes all read before)."""
    if isinstance(p, _Encoded):
        p = p.source
    if isinstance(p, _Piped):
        return None if p.ended else _File("-", None)
    return p if isinstance(p, _File) else None


def _stdin_fd() -> int | None:
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

    def __init__(self, f: _File, wake: Callable[[], None]) -> None:
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
class _Piped:
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
            self.reader = _PipeReader(_File("-", None), wake)
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


def _read_file(f: _File, wake: Callable[[], None] | None = None) -> Iterator[bytes]:
    if f.spent:
        return
    if f.head:
        yield f.head
    if f.size is None and wake is not None and (f.path != "-" or _stdin_fd() is not None):
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


def _file(path: str) -> _File:
    """A file to send, its size taken now (curl: "Can't open 'FILE'!", exit 26). One
    that is not a regular file (a FIFO, /dev/zero, /dev/stdin) is not opened now (a
    FIFO's open waits for a writer): as curl, its size is unknown and it is read to its
    end when sent, chunked."""
    if path == "-":
        return _File("-", None)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory")
        if not stat.S_ISREG(st.st_mode):
            if not os.access(path, os.R_OK):
                raise PermissionError(13, "Permission denied")
            return _File(path, None)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
    except OSError as e:  # an empty name (-F a=@, a=@x,, -T '{,}') shown as ''
        raise UploadError(f"{path or repr(path)}: {e.strerror or e}") from None
    return _File(path, size)


def file_upload(path: str, spent: bool = False) -> Upload:
    """curl -T FILE: a PUT of the file as is, no Content-Type (`-` stdin, chunked;
    `spent`: stdin that another use read first, an empty chunked body as curl's)."""
    return Upload([_File("-", None, spent=True) if spent else _file(path)], "PUT")


def stdin_is_regular() -> bool:
    """stdin is a regular file (`< FILE`): curl reads a -F part of it when it sends it
    (else, a pipe or a terminal, when it parses the -F)."""
    try:
        return stat.S_ISREG(os.fstat(sys.stdin.fileno()).st_mode)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


# curl 7.88's Curl_mime_contenttype (lib/mime.c): the first extension the name ends with
_TYPES = (
    (".gif", "image/gif"), (".jpg", "image/jpeg"), (".jpeg", "image/jpeg"),
    (".png", "image/png"), (".svg", "image/svg+xml"), (".txt", "text/plain"),
    (".htm", "text/html"), (".html", "text/html"), (".pdf", "application/pdf"),
    (".xml", "application/xml"),
)  # fmt: skip
OCTET = "application/octet-stream"


def _type_of(name: str | None) -> str | None:
    if name is None:
        return None
    low = name.lower()
    return next((t for ext, t in _TYPES if low.endswith(ext)), None)


def content_type_for(filename: str) -> str:
    """The Content-Type curl gives a file part by its name's extension (case ignored)."""
    return _type_of(filename) or OCTET


#: curl 7.88's encoders (-F ;encoder=), by their Content-Transfer-Encoding names
ENCODERS = ("binary", "8bit", "7bit", "base64", "quoted-printable")
LINE = 76  # curl's MAX_ENCODED_LINE_LENGTH (base64 and quoted-printable)
HEADER_LINE = 998  # curl's longest header line from a ;headers=@FILE (longer: truncated)
HEADERS_FILE_MAX = 1 << 20  # a ;headers=@FILE larger than this is refused (ours)


@dataclass(frozen=True, slots=True)
class FormPart:
    """One -F (or --form-string): `name` (None: `-F =VALUE`, no name, as curl), its value
    (`text`) or a file (`path`: `@FILE` sent as a file part with a filename, `<FILE` its
    content as the value), `type` and `filename` given, `headers` (;headers=, as
    written), `encoder` (;encoder=, curl's name), `files` the parts of `NAME=@a,b` (a
    multipart/mixed part of one file part each) or of a `NAME=(` ... `=)` sub-multipart
    (`sub`: such a part, its parts the -F between, maybe none)."""

    name: str | None
    text: bytes | None = None
    path: str | None = None
    as_file: bool = False  # @FILE (filename and Content-Type), not <FILE
    type: str | None = None
    filename: str | None = None
    headers: tuple[str, ...] = ()
    encoder: str | None = None
    files: tuple[FormPart, ...] = ()
    sub: bool = False

    @property
    def multi(self) -> bool:
        """A multipart part (curl's MIMEKIND_MULTIPART): `@a,b` or `NAME=(`."""
        return self.sub or bool(self.files)

    def walk(self) -> Iterator[FormPart]:
        """This part, then those inside it, depth first."""
        yield self
        for f in self.files:
            yield from f.walk()


_SPACE = " \t\n\v\f\r"  # C's isspace()


class _Scan:
    """curl 7.88's tool_formparse.c get_param_word/get_param_part over one -F argument:
    the same words, parameters, quoting, spaces and warnings."""

    def __init__(self, s: str, warnings: list[str]) -> None:
        self.s, self.p, self.warnings = s, 0, warnings

    def at(self, i: int) -> str:
        return self.s[i] if i < len(self.s) else ""

    def skip_space(self) -> None:
        while self.at(self.p) and self.at(self.p) in _SPACE:
            self.p += 1

    def _stop(self, c: str, end: str) -> bool:
        return not c or c == ";" or (bool(end) and c == end)

    def word(self, end: str) -> tuple[str, bool]:
        """A word up to ';' or `end` ("quoted": \\" and \\\\ escapes); (word, quoted)."""
        s, p = self.s, self.p
        if self.at(p) == '"':
            q, out = p + 1, []
            while q < len(s):
                if s[q] == "\\" and self.at(q + 1) in ("\\", '"') and self.at(q + 1):
                    out.append(s[q + 1])
                    q += 2
                    continue
                if s[q] == '"':
                    q += 1
                    trailing = False
                    while not self._stop(self.at(q), end):
                        trailing = trailing or self.at(q) not in _SPACE
                        q += 1
                    if trailing:
                        self.warnings.append("Trailing data after quoted form parameter")
                    self.p = q
                    return "".join(out), True
                out.append(s[q])
                q += 1
        q = p  # no closing quote: as if not quoted
        while not self._stop(self.at(q), end):
            q += 1
        self.p = q
        return s[p:q], False

    def stripped(self, end: str) -> str:
        """get_param_word with get_param_part's strip of an unquoted word's spaces."""
        self.skip_space()
        text, quoted = self.word(end)
        return text if quoted else text.rstrip(_SPACE)

    def part(self, end: str, filename_ok: bool = True,
             encoder_ok: bool = True) -> tuple[str, str, dict[str, Any]]:  # fmt: skip
        """(separator, value, {type, filename, encoder, headers}) as get_param_part."""
        data = self.stripped(end)
        sep = self.at(self.p)
        got: dict[str, Any] = {"type": None, "filename": None, "encoder": None, "headers": []}
        ct_start = ct_end = None

        def close_type() -> None:
            nonlocal ct_end
            if ct_end is not None:
                got["type"] = self.s[ct_start:ct_end]
                ct_end = None

        while sep == ";":
            self.p += 1
            self.skip_space()
            rest = self.s[self.p :].lower()
            if ct_end is None and rest.startswith("type="):
                self.p += 5
                self.skip_space()
                ct_start = self.p
                m = _CT.match(self.s, self.p)
                if m is None:
                    raise UploadError(f"Illegally formatted content-type field: "
                                      f"{self.s[ct_start:]!r} (a TYPE/SUBTYPE)")  # fmt: skip
                self.p = ct_end = m.end()
                while not self._stop(self.at(self.p), end):
                    if self.at(self.p) not in _SPACE:
                        ct_end = self.p + 1
                    self.p += 1
            elif rest.startswith("filename="):
                close_type()
                self.p += 9
                got["filename"] = self.stripped(end)
            elif rest.startswith("headers="):
                close_type()
                self.p += 8
                if self.at(self.p) in ("@", "<") and self.at(self.p):
                    self.p += 1
                    got["headers"] += read_headers_file(self.stripped(end), self.warnings)
                else:
                    got["headers"].append(self.stripped(end))
            elif rest.startswith("encoder="):
                close_type()
                self.p += 8
                got["encoder"] = self.stripped(end)
            elif ct_end is not None:  # ;charset=... after ;type=: part of the type
                ct_end = self.p
                while not self._stop(self.at(self.p), end):
                    if self.at(self.p) not in _SPACE:
                        ct_end = self.p + 1
                    self.p += 1
            else:
                unknown, _ = self.word(end)
                if unknown:
                    self.warnings.append(f"skip unknown form field: {unknown}")
            sep = self.at(self.p)
        close_type()
        if got["filename"] is not None and not filename_ok:
            self.warnings.append(f"Field file name not allowed here: {got['filename']}")
            got["filename"] = None
        if got["encoder"] is not None and not encoder_ok:
            self.warnings.append(f"Field encoder not allowed here: {got['encoder']}")
            got["encoder"] = None
        if got["encoder"] is not None:
            name = got["encoder"].lower()
            if name not in ENCODERS:
                raise UploadError(f";encoder={got['encoder']}: not one of curl's encoders "
                                  f"({', '.join(ENCODERS)})")  # fmt: skip
            got["encoder"] = name
        return sep, data, got


_CT = re.compile(r"[^/ ]{1,127}/[^;, \n]{1,127}")  # curl's sscanf("%127[^/ ]/%127[^;, \n]")


def read_headers_file(path: str, warnings: list[str]) -> list[str]:
    """-F ...;headers=@FILE as curl 7.88 reads it: one header a line, a line starting
    with a space or tab continues the one before, # starts a comment line, CRs dropped,
    trailing spaces stripped, a line over 998 bytes truncated (warned), a line cut at a
    NUL byte (curl's C strings: one that starts with NUL is an empty line). Unreadable: an
    UploadError (curl only warns and sends the part without them)."""
    try:
        with open(path, "rb") as f:
            data = f.read(HEADERS_FILE_MAX + 1)
    except OSError as e:
        raise UploadError(f";headers=@{path}: {e.strerror or e}") from None
    if len(data) > HEADERS_FILE_MAX:
        raise UploadError(f";headers=@{path}: over {HEADERS_FILE_MAX} bytes")
    out: list[str] = []
    hdr = bytearray()
    pos, comment, lineno = 0, False, 1
    for c in [*data, None]:
        if c is None or (not pos and chr(c) not in _SPACE):
            text = bytes(hdr).rstrip(_SPACE.encode())
            if text:  # a C string in curl: it ends at a NUL (spaces before it kept)
                out.append(text.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
            hdr.clear()
        if c is None:
            break
        if c == 13:
            continue
        if c == 10:
            pos, comment, lineno = 0, False, lineno + 1
            continue
        if c == 35 and not pos:  # '#'
            comment = True
        pos += 1
        if not comment:
            if len(hdr) == HEADER_LINE:
                warnings.append(f"File {path} line {lineno}: header too long (truncated)")
                c = 32
            if len(hdr) <= HEADER_LINE:
                hdr.append(c)
    return out


def parse_form(arg: str, literal: bool = False, warnings: list[str] | None = None) -> FormPart:
    """curl 7.88's -F NAME=VALUE, NAME=@FILE (NAME=@a,b: several files), NAME=<FILE, each
    with ;type=, ;filename=, ;headers= (@FILE too) and ;encoder=, parsed as curl's
    tool_formparse.c does (spaces, "quotes", unknown parameters skipped with a warning
    appended to `warnings`); `literal`: --form-string NAME=VALUE, the value as is."""
    warnings = [] if warnings is None else warnings
    name, sep, rest = arg.partition("=")
    if not sep:
        raise UploadError(f"{'--form-string' if literal else '-F/--form'} {arg!r}: expected "
                          "NAME=VALUE, NAME=@FILE or NAME=<FILE")  # fmt: skip
    key = name or None  # curl: `-F =v` is a part without a name
    if literal:
        return FormPart(key, text=rest.encode("utf-8", "surrogateescape"))
    if key is None and rest == ")":  # closes a NAME=(: Forms.add's
        raise UploadError(f"-F/--form {arg!r}: no multipart to terminate (curl: 2)")
    scan = _Scan(rest, warnings)
    if rest.startswith("("):  # NAME=(;type=...;headers=...: a sub-multipart opens
        _, _, got = scan.part("", filename_ok=False, encoder_ok=False)
        return FormPart(key, type=got["type"], headers=tuple(got["headers"]), sub=True)
    if rest.startswith("@"):
        files = []
        while True:
            scan.p += 1  # the @, then each ','
            more, path, got = scan.part(",")
            f = _file(path)  # unreadable: one line before anything is sent
            files.append(FormPart(None, path=f.path, as_file=True, type=got["type"],
                                  filename=got["filename"], headers=tuple(got["headers"]),
                                  encoder=got["encoder"]))  # fmt: skip
            if more != ",":
                break
        if len(files) == 1:
            return dataclasses.replace(files[0], name=key)
        return FormPart(key, files=tuple(files))
    if rest.startswith("<"):
        scan.p = 1
        _, path, got = scan.part("", filename_ok=False)
        f = _file(path)
        return FormPart(key, path=f.path, type=got["type"], headers=tuple(got["headers"]),
                        encoder=got["encoder"])  # fmt: skip
    _, value, got = scan.part("")
    part = FormPart(key, text=value.encode("utf-8", "surrogateescape"), type=got["type"],
                    filename=got["filename"], headers=tuple(got["headers"]),
                    encoder=got["encoder"])  # fmt: skip
    if part.encoder == "7bit":
        _check_7bit(part.text or b"", f"-F/--form {arg!r}")
    return part


MAX_DEPTH = 100  # NAME=( opened within each other at most (ours; curl: no limit)


class Forms:
    """curl 7.88's -F/--form-string arguments in order (tool_formparse.c's mimeroot and
    mimecurrent): `NAME=(` (;type=, ;headers=) opens a sub-multipart that the parts
    after it go in, `=)` closes the innermost (none open: curl's "no multipart to
    terminate", exit 2); those still open at the end are closed there, as curl's.
    `parts` is the form to give `multipart`; `first_stdin` the number (from 0) of the
    first argument with a part of stdin (@- or <-), None if none."""

    def __init__(self) -> None:
        self._open: list[tuple[FormPart, list[FormPart]]] = []
        self._root: list[FormPart] = []
        self.added = 0
        self.first_stdin: int | None = None

    def add(self, arg: str, literal: bool = False, warnings: list[str] | None = None) -> None:
        """One -F (`literal`: --form-string) argument; UploadError as `parse_form`."""
        name, sep, rest = arg.partition("=")
        if not literal and sep and not name and rest == ")":
            self.added += 1
            if not self._open:
                raise UploadError(f"-F/--form {arg!r}: no multipart to terminate (curl: 2)")
            self._close()
            return
        part = parse_form(arg, literal, warnings)
        if self.first_stdin is None and any(q.path == "-" for q in part.walk()):
            self.first_stdin = self.added
        self.added += 1
        if part.sub:
            if len(self._open) >= MAX_DEPTH:
                raise UploadError(f"-F/--form {arg!r}: over {MAX_DEPTH} NAME=( open at once")
            self._open.append((part, []))
        else:
            (self._open[-1][1] if self._open else self._root).append(part)

    def _close(self) -> None:
        part, inside = self._open.pop()
        done = dataclasses.replace(part, files=tuple(inside))
        (self._open[-1][1] if self._open else self._root).append(done)

    @property
    def parts(self) -> list[FormPart]:
        while self._open:
            self._close()
        return list(self._root)


def _check_7bit(data: bytes, what: str, offset: int = 0) -> None:
    for i, b in enumerate(data):
        if b & 0x80:
            raise UploadError(f"{what}: byte 0x{b:02X} at offset {offset + i} is not 7-bit "
                              "(;encoder=7bit; curl: 26)")  # fmt: skip


def _escape(text: str) -> str:
    """curl 7.88's form escaping of a name or filename in Content-Disposition."""
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _header(headers: tuple[str, ...], label: str) -> str | None:
    """curl's search_header: the value of the first `label:` header (case ignored)."""
    for h in headers:
        if h[: len(label)].lower() == label.lower() and h[len(label) : len(label) + 1] == ":":
            return h[len(label) + 1 :].lstrip(" ")
    return None


_BOUNDARY = re.compile(r"-{24}[0-9a-f]{16}")


def _new_boundary() -> str:
    return "-" * 24 + secrets.token_hex(8)


Stdin: TypeAlias = "Callable[[], bytes | _File | _Piped]"


def _mime(parts: list[FormPart] | tuple[FormPart, ...], b: str, disposition: str | None,
          boundary: Callable[[], str], take: Stdin) -> list[Piece]:  # fmt: skip
    """A multipart body (its parts between the boundary lines), as curl's mime reader."""
    pieces: list[Piece] = []
    for i, p in enumerate(parts):
        pieces.append(f"{'--' if i == 0 else chr(13) + chr(10) + '--'}{b}\r\n".encode())
        pieces += _part(p, disposition, boundary, take)
    pieces.append(f"{chr(13) + chr(10) if parts else ''}--{b}--\r\n".encode())
    return pieces


def _part(p: FormPart, disposition: str | None, boundary: Callable[[], str],
          take: Stdin) -> list[Piece]:  # fmt: skip
    """One part, curl 7.88's Curl_mime_prepare_headers: Content-Disposition (unless a
    ;headers= gives one), Content-Type (;type=, a ;headers= one, else by the names),
    Content-Transfer-Encoding (;encoder=, unless a ;headers= gives one), the ;headers=
    but Content-Type, then the content (encoded; stdin's from `take`)."""
    stdin = p.path == "-"
    filename = p.filename
    if filename is None and p.as_file and p.path is not None:
        filename = "-" if stdin else _basename(p.path)
    custom = p.type or _header(p.headers, "Content-Type")
    ctype = custom
    sub = None
    if ctype is None:
        if p.multi:
            ctype = "multipart/mixed"
        elif p.path is not None and not stdin:
            ctype = _type_of(filename) or _type_of(p.path)
            ctype = ctype or (OCTET if filename is not None else None)
        else:
            ctype = _type_of(filename)
    if p.multi:
        sub = boundary()
    elif ctype and not custom and _ct_match(ctype, "text/plain") and filename is None:
        ctype = None
    lines = []
    if _header(p.headers, "Content-Disposition") is None:
        d = disposition
        if not d and (filename is not None or p.name is not None
                      or (ctype and not ctype.lower().startswith("multipart/"))):  # fmt: skip
            d = "attachment"
        if d and d.lower() == "attachment" and p.name is None and filename is None:
            d = None
        if d:
            line = f"Content-Disposition: {d}"
            if p.name is not None:
                line += f'; name="{_escape(p.name)}"'
            if filename is not None:
                line += f'; filename="{_escape(filename)}"'
            lines.append(line)
    if ctype:
        lines.append(f"Content-Type: {ctype}" + (f"; boundary={sub}" if sub else ""))
    if p.encoder and _header(p.headers, "Content-Transfer-Encoding") is None:
        lines.append(f"Content-Transfer-Encoding: {p.encoder}")
    lines += [h for h in p.headers if _header((h,), "Content-Type") is None]
    head = "".join(line + "\r\n" for line in lines) + "\r\n"
    pieces: list[Piece] = [head.encode("utf-8", "surrogateescape")]
    if sub is not None:
        inner = "form-data" if _ct_match(ctype or "", "multipart/form-data") else None
        return pieces + _mime(p.files, sub, inner, boundary, take)
    if p.text is not None:
        source: bytes | _File | _Piped = p.text
    else:
        source = take() if p.path == "-" else _file(p.path or "-")
    if p.encoder in (None, "binary", "8bit"):
        pieces.append(source)
    else:
        pieces.append(_Encoded(source, p.encoder, p.name))
    return pieces


STDIN_BUFFER = 16 << 20  # a -F NAME=@- from a pipe read whole up to this (curl: all of it)


def _stdin_part() -> bytes | _File | _Piped:
    """A -F part's stdin (@- or <-) as curl 7.88 takes it: a regular file read when sent,
    its size known; else (a pipe, a terminal) read whole before the request so that its
    size is known (curl's Content-Length) when it is at most STDIN_BUFFER bytes; past
    that (curl: all in memory) those bytes then the rest as it comes, the body sent
    chunked. Not read here: by a thread while the request waits (`_Piped`); a stdin
    with no file descriptor (a stream put there) is read now."""
    try:
        fd = sys.stdin.fileno()
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            return _File("-", max(st.st_size - os.lseek(fd, 0, os.SEEK_CUR), 0))
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
    if _stdin_fd() is not None:
        return _Piped()
    try:
        data = sys.stdin.buffer.read(STDIN_BUFFER)
    except OSError as e:
        raise UploadError(f"stdin: {e.strerror or e}") from None
    return data if len(data) < STDIN_BUFFER else _File("-", None, data)


def _basename(path: str) -> str:
    """libgen basename(), as curl's strippath: the last component, trailing / ignored."""
    stripped = path.rstrip("/")
    return os.path.basename(stripped) if stripped else ("/" if path else ".")


def _ct_match(ctype: str, target: str) -> bool:
    """curl's content_type_match: `target` then the end, a space or a ';'."""
    return ctype[: len(target)].lower() == target and ctype[len(target) : len(target) + 1] in (
        "", "\t", "\r", "\n", " ", ";")  # fmt: skip


def multipart(parts: list[FormPart], boundary: str | None = None,
              sub_boundary: Callable[[], str] | None = None,
              stdin: bool = True) -> Upload:  # fmt: skip
    """curl -F's multipart/form-data body: curl 7.88's boundary (24 dashes and 16 hex
    digits; each `@a,b` part its own), part headers and order; files read (and encoded)
    at send time. Stdin is read once, as curl's: by the first part of it (@- or <-) when
    `stdin`, the others (all without `stdin`: another use read it) empty."""
    b = boundary or _new_boundary()
    given = [not stdin]

    def take() -> bytes | _File | _Piped:
        if given[0]:
            return b""
        given[0] = True
        return _stdin_part()

    pieces = _mime(parts, b, "form-data", sub_boundary or _new_boundary, take)
    return Upload(_merge(pieces), "POST", f"multipart/form-data; boundary={b}")


@dataclass(frozen=True, slots=True)
class _Encoded:
    """A part's content through curl's ;encoder= (7bit: checked; base64,
    quoted-printable), read at send time; `size` None when curl cannot tell it
    beforehand (quoted-printable, stdin), and then the body goes chunked, as curl's."""

    source: bytes | _File | _Piped
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
        elif isinstance(self.source, _Piped):
            raw = self.source.chunks(wake)
        else:
            raw = _read_file(self.source, wake)
        enc = _Base64() if self.encoder == "base64" else _QuotedPrintable()
        offset = 0
        for data in raw:
            if not data:  # nothing ready yet (a pipe): said on
                yield data
                continue
            if self.encoder == "7bit":
                what = self.source.path if isinstance(self.source, (_File, _Piped)) else "the value"
                _check_7bit(data, f"-F part {self.name or ''!r}: {what}", offset)
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


class _Base64:
    """curl's base64 encoder: lines of 76 characters ended by CRLF, none after the last."""

    def __init__(self) -> None:
        self.rest, self.pos = b"", 0

    def feed(self, data: bytes, eof: bool) -> bytes:
        buf = self.rest + data
        n = len(buf) if eof else len(buf) - len(buf) % 3
        enc, self.rest = base64.b64encode(buf[:n]), buf[n:]
        out, i = bytearray(), 0
        while i < len(enc):
            if self.pos >= LINE:
                out += b"\r\n"
                self.pos = 0
            take = min(LINE - self.pos, len(enc) - i)
            out += enc[i : i + take]
            self.pos += take
            i += take
        return bytes(out)


# bytes curl's quoted-printable encoder sends as they are (space and tab but before a line
# end): printable ASCII but '='; the others are escaped (=XX) wherever they are
_QP_SAFE = bytes(c for c in range(256) if c in (0x09, 0x20) or (0x21 <= c <= 0x7E and c != 0x3D))
_QP_MARK = bytes(c if c in _QP_SAFE else 0x3D for c in range(256))  # each escaped one: '='
_QP_TRAILING = {0x20: b"=20", 0x09: b"=09"}
_CRLF = b"\r\n"


_QP_HI = bytes(0 if c in _QP_SAFE else b"0123456789ABCDEF"[c >> 4] for c in range(256))
_QP_LO = bytes(0 if c in _QP_SAFE else b"0123456789ABCDEF"[c & 15] for c in range(256))


def _qp_escape(line: bytes) -> bytes:
    """`line` with every byte but printable ASCII, space and tab as =XX (upper case hex),
    in C loops only. Few of them (text): the runs of plain bytes between them (each
    escaped one made '=', split there) joined to their hex pairs; many: three columns
    (the byte or '=', then the two hex digits or NUL for a plain byte) interleaved, the
    NULs deleted."""
    escaped = line.translate(None, _QP_SAFE)
    if not escaped:
        return line
    if 30 * len(escaped) < len(line):
        runs = line.translate(_QP_MARK).split(b"=")
        pairs = binascii.hexlify(escaped, b" ").upper().split(b" ")
        return runs[0] + b"=" + b"=".join(map(operator.add, pairs, runs[1:]))
    out = bytearray(3 * len(line))
    out[0::3] = line.translate(_QP_MARK)
    out[1::3] = line.translate(_QP_HI)
    out[2::3] = line.translate(_QP_LO)
    return bytes(out.translate(None, b"\0"))


_QP_CRLF = b"=0D=0A"  # a CRLF pair escaped: where the input's lines end


class _QuotedPrintable:
    """curl 7.88's quoted-printable encoder (lib/mime.c encoder_qp_read): CRLF pairs
    kept as line breaks, a lone CR or LF encoded (=0D, =0A), space or tab before a line
    break or the end encoded, soft line breaks (=CRLF) to keep lines within 76.

    Not curl's byte at a time but the same output (the unit tests check it against a
    byte-at-a-time transcription of curl's, and the integration tests against curl):
    what is fed escaped in one go (`_qp_escape`, C loops), CR and LF too, then cut at
    the escaped CRLF pairs (=0D=0A: tokens never hold an '=' but first, so these are
    the input's CRLFs) into its lines, each cut into output lines of at most 75
    characters and a soft break (76 when that ends the line: curl's look-ahead), never
    inside an =XX; a space or tab that ends a line escaped. The bytes after the last
    CRLF are encoded but their last two (a CR whose LF may come next, a space or tab
    that may end the line), the output column kept for the next feed."""

    def __init__(self) -> None:
        self.rest, self.pos = b"", 0

    def _wrap(self, enc: bytes, ends: bool) -> bytes:
        """An escaped line from column self.pos; `ends`: nothing follows it but a CRLF
        or the end of the input (a trailing space or tab is escaped, and its last
        output line may be 76 characters)."""
        if ends and enc[-1:] in (b" ", b"\t"):
            enc = enc[:-1] + (b"=20" if enc[-1] == 0x20 else b"=09")
        n = len(enc)
        if n + self.pos <= (76 if ends else 75):
            self.pos += n
            return enc
        parts = []
        s, c = 0, 75 - self.pos  # the first soft break: after column 75
        stop = n - (76 if ends else 75)  # the rest fits on one line from here
        while True:
            if c > s and enc[c - 1] == 0x3D:  # not inside an =XX
                c -= 1
            elif c > s + 1 and enc[c - 2] == 0x3D:
                c -= 2
            parts.append(enc[s:c])
            s = c
            if s >= stop:
                break
            c = s + 75
        parts.append(enc[s:])
        self.pos = n - s
        return b"=\r\n".join(parts)

    def feed(self, data: bytes, eof: bool) -> bytes:
        buf = self.rest + data if self.rest else data
        end = buf.rfind(_CRLF)  # the bytes after the last CRLF: all but their last two
        hold = 0 if eof else min(2, len(buf) - end - 2 if end >= 0 else len(buf))
        self.rest = buf[len(buf) - hold :] if hold else b""
        lines = _qp_escape(buf[: len(buf) - hold] if hold else buf).split(_QP_CRLF)
        last = lines.pop()  # no CRLF after it (yet)
        done = []
        for line in lines:  # each ended by a CRLF
            if self.pos + len(line) <= 75 and line[-1:] not in (b" ", b"\t"):
                done.append(line)  # as it is (most lines of a text)
            else:
                done.append(self._wrap(line, True))
            self.pos = 0
        done.append(self._wrap(last, eof))
        return b"\r\n".join(done)


def _merge(pieces: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for p in pieces:
        if isinstance(p, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += p
        else:
            out.append(p)
    return out
