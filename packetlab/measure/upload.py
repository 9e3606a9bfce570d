"""Request bodies read at send time, in chunks, as curl 7.88 builds them: `-T FILE` (a
PUT of the file, `-T -` stdin with chunked framing), `-F` (multipart/form-data), `-d`.

An `Upload` is a list of pieces, each bytes or a file read in `CHUNK`-byte reads when
the body goes out (never whole into memory), with its length known beforehand from the
files' sizes (curl stats them too) or unknown for stdin (chunked transfer coding). A
file that cannot be read or changes size while it is sent is an `UploadError`.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

__all__ = [
    "CHUNK",
    "EXPECT_THRESHOLD",
    "FormPart",
    "Upload",
    "UploadError",
    "content_type_for",
    "file_upload",
    "multipart",
    "parse_form",
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


Piece = bytes | _File


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

    def __post_init__(self) -> None:
        total: int | None = 0
        for p in self.pieces:
            size = len(p) if isinstance(p, bytes) else p.size
            total = None if total is None or size is None else total + size
        self.length = total

    @classmethod
    def of(cls, data: bytes, content_type: str | None = None) -> Upload:
        """-d's bytes (form-encoded unless a Content-Type header is given)."""
        return cls([data], "POST", content_type, inline=True)

    @property
    def rewindable(self) -> bool:
        """It can be sent again (a 307/308 redirect): stdin cannot (curl's exit 65)."""
        return all(isinstance(p, bytes) or p.path != "-" for p in self.pieces)

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

    def chunks(self) -> Iterator[bytes]:
        """The body, at most CHUNK bytes at a time, files read now; UploadError when one
        cannot be read, or it changed size since the length was taken."""
        if not self.rewindable and self.used:
            raise UploadError("the upload from stdin cannot be sent again (curl: 65)")
        self.used = True
        for p in self.pieces:
            if isinstance(p, bytes):
                for i in range(0, len(p), CHUNK):
                    yield p[i : i + CHUNK]
            else:
                yield from _read_file(p)


def _read_file(f: _File) -> Iterator[bytes]:
    try:
        stream: BinaryIO = sys.stdin.buffer if f.path == "-" else open(f.path, "rb")  # noqa: SIM115
    except OSError as e:
        raise UploadError(f"{f.path}: {e.strerror or e}") from None
    sent = 0
    try:
        while True:
            try:
                data = stream.read(STDIN_CHUNK if f.size is None else CHUNK)
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
    """A file to send, its size taken now (curl: "Can't open 'FILE'!", exit 26)."""
    if path == "-":
        return _File("-", None)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if os.path.isdir(path):
                raise IsADirectoryError(21, "Is a directory")
    except OSError as e:
        raise UploadError(f"{path}: {e.strerror or e}") from None
    return _File(path, size)


def file_upload(path: str) -> Upload:
    """curl -T FILE: a PUT of the file as is, no Content-Type (`-` stdin, chunked)."""
    return Upload([_file(path)], "PUT")


# curl 7.88's ContentTypeForFilename (tool_formparse.c / mime.c)
_TYPES = {
    ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
    ".svg": "image/svg+xml", ".txt": "text/plain", ".htm": "text/html",
    ".html": "text/html", ".pdf": "application/pdf", ".xml": "application/xml",
}  # fmt: skip


def content_type_for(filename: str) -> str:
    """The Content-Type curl gives a file part by its name's extension (case ignored)."""
    return _TYPES.get(os.path.splitext(filename)[1].lower(), "application/octet-stream")


@dataclass(frozen=True, slots=True)
class FormPart:
    """One -F: `name`, its value (`text`) or a file (`path`: `@FILE` sent as a file part
    with a filename, `<FILE` its content as the value), `type` and `filename` given."""

    name: str
    text: bytes | None = None
    path: str | None = None
    as_file: bool = False  # @FILE (filename and Content-Type), not <FILE
    type: str | None = None
    filename: str | None = None


def _value(s: str) -> tuple[str, str]:
    """A -F value up to the next ';' (a "quoted" one with \\ escapes, as curl)."""
    if s.startswith('"'):
        out, i = [], 1
        while i < len(s) and s[i] != '"':
            if s[i] == "\\" and i + 1 < len(s):
                i += 1
            out.append(s[i])
            i += 1
        rest = s[i + 1 :]
        return "".join(out), rest[rest.find(";") :] if ";" in rest else ""
    head, sep, rest = s.partition(";")
    return head, sep + rest


def parse_form(arg: str) -> FormPart:
    """curl -F NAME=VALUE, NAME=@FILE, NAME=<FILE, each with ;type=T and ;filename=F
    (the ones curl 7.88's users write; ;headers= and ;encoder= are refused)."""
    name, sep, rest = arg.partition("=")
    if not sep or not name:
        raise UploadError(f"-F/--form {arg!r}: expected NAME=VALUE, NAME=@FILE or NAME=<FILE")
    kind = rest[:1] if rest[:1] in ("@", "<") else ""
    value, params = _value(rest[len(kind) :])
    ptype = filename = None
    while params.startswith(";"):
        item, params = _value_param(params[1:])
        key, eq, val = item.partition("=")
        key = key.strip().lower()
        if key == "type" and eq:
            ptype = val
        elif key == "filename" and eq:
            filename = val
        elif kind or eq:
            raise UploadError(f"-F/--form {arg!r}: ;{key}= is not supported (type= and "
                              "filename= are)")  # fmt: skip
        else:  # curl: a ';' in a plain value without a known parameter stays in it
            value += ";" + item
    if kind:
        f = _file(value)  # unreadable: one line before anything is sent
        return FormPart(name, path=f.path, as_file=kind == "@", type=ptype, filename=filename)
    return FormPart(name, text=value.encode(), type=ptype, filename=filename)


def _value_param(s: str) -> tuple[str, str]:
    key, eq, rest = s.partition("=")
    if not eq:
        head, sep, tail = s.partition(";")
        return head, sep + tail
    val, more = _value(rest)
    return f"{key}={val}", more


def _escape(text: str) -> str:
    """curl 7.88's form escaping of a name or filename in Content-Disposition."""
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


_BOUNDARY = re.compile(r"-{24}[0-9a-f]{16}")


def multipart(parts: list[FormPart], boundary: str | None = None) -> Upload:
    """curl -F's multipart/form-data body: curl 7.88's boundary (24 dashes and 16 hex
    digits), part headers and order; files read at send time."""
    b = boundary or "-" * 24 + secrets.token_hex(8)
    pieces: list[Piece] = []
    for p in parts:
        head = f'--{b}\r\nContent-Disposition: form-data; name="{_escape(p.name)}"'
        filename = p.filename
        if p.as_file and filename is None and p.path is not None:
            filename = "" if p.path == "-" else os.path.basename(p.path)
        if filename is not None:
            head += f'; filename="{_escape(filename)}"'
        ctype = p.type
        if ctype is None and p.as_file:
            ctype = content_type_for(filename or "")
        if ctype is not None:
            head += f"\r\nContent-Type: {ctype}"
        pieces.append((head + "\r\n\r\n").encode("utf-8", "surrogateescape"))
        pieces.append(p.text if p.text is not None else _file(p.path or "-"))
        pieces.append(b"\r\n")
    pieces.append(f"--{b}--\r\n".encode())
    return Upload(_merge(pieces), "POST", f"multipart/form-data; boundary={b}")


def _merge(pieces: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for p in pieces:
        if isinstance(p, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += p
        else:
            out.append(p)
    return out
