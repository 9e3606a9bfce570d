"""Response heads curl 7.88 reads and h11 refuses, rewritten into the form h11 takes
(sans-IO), so that a transfer curl completes is not ours to fail: a status line's
`http/1.1` in lower case, white space before a field's colon (`X-A : b`), a
Content-Length that is a list (`2, 3`: curl reads the number it starts with).

Only the heads change; the bytes the caller keeps for -i, -D and size_header are the
ones that came. A head is held until it is whole (h11 gives nothing before that
either); a 1xx head is rewritten and the next one waited for; after the final head,
bytes pass as they come.
"""

from __future__ import annotations

import re

__all__ = ["LenientHeads", "rewrite_head"]

_END = re.compile(rb"\r?\n\r?\n")
_STATUS = re.compile(rb"^[Hh][Tt][Tt][Pp]/")
_SPACE_BEFORE_COLON = re.compile(rb"^([^:\s][^:\r\n]*?)[ \t]+:", re.M)
_LENGTH_LIST = re.compile(rb"^(content-length[ \t]*:[ \t]*)(\d+)[^\r\n]*", re.M | re.I)
# a 1xx but 101, after which the next head comes (after a 101: HTTP/2 frames, as they are)
_INTERIM = re.compile(rb"^HTTP/\d(?:\.\d)? +1(?!01)\d\d(?!\d)")
HOLD_MAX = 1 << 20  # a head past this passes as it is (h11's and curl's limits apply)


def rewrite_head(head: bytes) -> bytes:
    """One head (its status line and fields, without the blank line) as h11 takes it."""
    head = _STATUS.sub(b"HTTP/", head, count=1)
    head = _SPACE_BEFORE_COLON.sub(rb"\1:", head)
    return _LENGTH_LIST.sub(rb"\1\2", head)


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
