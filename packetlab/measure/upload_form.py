"""curl -F's parameters as curl 7.88 parses them (`parse_form`, `Forms` with `NAME=(`
nesting): ;type=, ;filename=, ;headers= (and `@FILE` of them), ;encoder=; the
Content-Type a file part gets by its name."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from packetlab.measure.upload_body import UploadError, check_7bit, source_file

# curl 7.88's Curl_mime_contenttype (lib/mime.c): the first extension the name ends with
_TYPES = (
    (".gif", "image/gif"), (".jpg", "image/jpeg"), (".jpeg", "image/jpeg"),
    (".png", "image/png"), (".svg", "image/svg+xml"), (".txt", "text/plain"),
    (".htm", "text/html"), (".html", "text/html"), (".pdf", "application/pdf"),
    (".xml", "application/xml"),
)  # fmt: skip
OCTET = "application/octet-stream"


def type_of(name: str | None) -> str | None:
    if name is None:
        return None
    low = name.lower()
    return next((t for ext, t in _TYPES if low.endswith(ext)), None)


def content_type_for(filename: str) -> str:
    """The Content-Type curl gives a file part by its name's extension (case ignored)."""
    return type_of(filename) or OCTET


#: curl 7.88's encoders (-F ;encoder=), by their Content-Transfer-Encoding names
ENCODERS = ("binary", "8bit", "7bit", "base64", "quoted-printable")
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
            f = source_file(path)  # unreadable: one line before anything is sent
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
        f = source_file(path)
        return FormPart(key, path=f.path, type=got["type"], headers=tuple(got["headers"]),
                        encoder=got["encoder"])  # fmt: skip
    _, value, got = scan.part("")
    part = FormPart(key, text=value.encode("utf-8", "surrogateescape"), type=got["type"],
                    filename=got["filename"], headers=tuple(got["headers"]),
                    encoder=got["encoder"])  # fmt: skip
    if part.encoder == "7bit":
        check_7bit(part.text or b"", f"-F/--form {arg!r}")
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
