"""curl -F's multipart/form-data body (`multipart`): curl 7.88's boundaries, part headers
and order, stdin read once by the first part of it, files read and encoded when sent."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from typing import TypeAlias

from packetlab.measure.upload_body import (
    Encoded,
    Piece,
    Piped,
    SourceFile,
    Upload,
    merge,
    source_file,
    stdin_part,
)
from packetlab.measure.upload_form import OCTET, FormPart, type_of


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


Stdin: TypeAlias = "Callable[[], bytes | SourceFile | Piped]"


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
            ctype = type_of(filename) or type_of(p.path)
            ctype = ctype or (OCTET if filename is not None else None)
        else:
            ctype = type_of(filename)
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
        source: bytes | SourceFile | Piped = p.text
    else:
        source = take() if p.path == "-" else source_file(p.path or "-")
    if p.encoder in (None, "binary", "8bit"):
        pieces.append(source)
    else:
        pieces.append(Encoded(source, p.encoder, p.name))
    return pieces


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

    def take() -> bytes | SourceFile | Piped:
        if given[0]:
            return b""
        given[0] = True
        return stdin_part()

    pieces = _mime(parts, b, "form-data", sub_boundary or _new_boundary, take)
    return Upload(merge(pieces), "POST", f"multipart/form-data; boundary={b}")
