"""Response heads curl 7.88 reads and h11 refuses, rewritten into the form h11 takes
(sans-IO), so that a transfer curl completes is not ours to fail: a status line's
`http/1.1` in lower case, white space before a field's colon (`X-A : b`), a
Content-Length that is a list (`2, 3`: curl reads the number it starts with), a status
line's `HTTP/2` or `HTTP/3` without a minor version (curl's sscanf takes `HTTP/%1[23]`;
made `HTTP/2.0`, which h11 takes; `supported` then decides on the version, as curl),
blanks before the status code or none after it (`HTTP/1.1  200`, `HTTP/1.1 200OK`).

Only the heads change; the bytes the caller keeps for -i, -D and size_header are the
ones that came. A head is held until it is whole (h11 gives nothing before that
either); a 1xx head is rewritten and the next one waited for; after the final head,
bytes pass as they come.
"""

from __future__ import annotations

import re

__all__ = ["LenientHeads", "UnsupportedVersion", "rewrite_head", "supported"]

_END = re.compile(rb"\r?\n\r?\n")
_STATUS = re.compile(rb"^[Hh][Tt][Tt][Pp]/")
_SPACE_BEFORE_COLON = re.compile(rb"^([^:\s][^:\r\n]*?)[ \t]+:", re.M)
_LENGTH_LIST = re.compile(rb"^(content-length[ \t]*:[ \t]*)(\d+)[^\r\n]*", re.M | re.I)
# a 1xx but 101, after which the next head comes (after a 101: HTTP/2 frames, as they are)
_BARE_MAJOR = re.compile(rb"^HTTP/([23]) ")
# blanks before the code, a reason right after it: curl's sscanf reads `%c%3d` (one
# separator, then the code past any blanks), h11 wants `SP code [SP reason]`
_CODE = re.compile(rb"^(HTTP/\d\.\d) [ \t]*(\d{3})(?=[^ \t\r\n])")
_TE = re.compile(rb"(?i)transfer-encoding[ \t]*:[ \t]*([^\r]*)")
_NO_NAME = re.compile(rb"\r?\n:[^\r\n]*(?=\r?\n|$)")
_LENGTH = re.compile(rb"(?im)^content-length[ \t]*:[ \t]*(\d+)[ \t]*\r?$")
_LENGTH_LINE = re.compile(rb"(?im)\r?\ncontent-length[ \t]*:[ \t]*(\d+)[ \t]*(?=\r?\n|\r?$)")
_INTERIM = re.compile(rb"^HTTP/\d(?:\.\d)? +1(?!01)\d\d(?!\d)")
HOLD_MAX = 1 << 20  # a head past this passes as it is (h11's and curl's limits apply)


def rewrite_head(head: bytes) -> bytes:
    """One head (its status line and fields, without the blank line) as h11 takes it."""
    head = _STATUS.sub(b"HTTP/", head, count=1)
    head = _BARE_MAJOR.sub(rb"HTTP/\1.0 ", head, count=1)
    head = re.sub(rb"^(HTTP/\d\.\d) [ \t]+", rb"\1 ", head, count=1)
    head = _CODE.sub(rb"\1 \2 ", head, count=1)
    head = _SPACE_BEFORE_COLON.sub(rb"\1:", head)
    head = _LENGTH_LIST.sub(rb"\1\2", head)
    head = _NO_NAME.sub(b"", head)  # `: v`, curl takes it (a field without a name)
    return _last_length(_chunked_only(head))


def _last_length(head: bytes) -> bytes:
    """Content-Length fields that differ (h11 refuses them): the last one, as curl's,
    which sets the size at each."""
    found = _LENGTH.findall(head)
    if len(set(found)) < 2:
        return head
    last = found[-1]
    return _LENGTH_LINE.sub(lambda m: m[0] if m[1] == last else b"", head)


def _chunked_only(head: bytes) -> bytes:
    """A Transfer-Encoding other than `chunked` alone (`gzip, chunked`; `gzip`), which
    curl 7.88 decodes and h11 refuses: h11 is given `chunked` when it ends the list, no
    field else (the body then ends at the close); the codings are read from the bytes
    that came (http_decode.transfer_codings)."""
    eol = b"\r\n" if b"\r\n" in head else b"\n"
    lines = [line.rstrip(b"\r") for line in head.split(b"\n")]
    found = [_TE.match(line) for line in lines]
    codings = [c.strip().lower() for m in found if m for c in m[1].split(b",")]
    codings = [c for c in codings if c]
    if not codings or codings == [b"chunked"]:
        return head
    kept = [line for line, m in zip(lines, found, strict=True) if not m]
    if codings[-1] == b"chunked":
        kept.insert(1, b"Transfer-Encoding: chunked")
    return eol.join(kept)


def supported(version: bytes) -> str:
    """A response's HTTP version (h11's `event.http_version`) as curl 7.88.1 with
    nghttp2 and without HTTP/3 takes it: its %{http_version} ("1.0", "1.1", "2": an
    `HTTP/2 200` over an HTTP/1.1 connection is read); any other is refused with
    curl's words, its exit 1 (`HTTP/1.2`, `HTTP/3`)."""
    known = {b"1.0": "1.0", b"1.1": "1.1", b"2.0": "2"}.get(version)
    if known is None:
        raise UnsupportedVersion(
            f"Unsupported HTTP version ({version.decode('latin-1')}) in response"
        )
    return known


class UnsupportedVersion(Exception):
    """curl's (1) for a status line's version it does not speak."""

    exitcode = 1


class LenientHeads:
    def __init__(self) -> None:
        self._held = bytearray()
        self._done = False  # the final head went: the rest passes as it comes

    def take(self, data: bytes) -> bytes:
        """What to give h11 for `data` that came (b"" while a head is incomplete)."""
        if self._done:
            return data
        self._held += data
        out = bytearray()
        while not self._done:
            end = _END.search(self._held)
            if end is None:
                if len(self._held) > HOLD_MAX:
                    return bytes(out) + self.flush()
                break
            head = bytes(self._held[: end.start()])
            out += rewrite_head(head) + self._held[end.start() : end.end()]
            del self._held[: end.end()]
            self._done = _INTERIM.match(rewrite_head(head)) is None
        if self._done:
            out += self._held
            self._held.clear()
        return bytes(out)

    def flush(self) -> bytes:
        """What is held, as it came (the connection ended before the head did)."""
        self._done = True
        out = bytes(self._held)
        self._held.clear()
        return out
