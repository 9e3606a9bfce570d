"""curl 7.88.1's (Debian's, with the CVE-2023-38039 fix) limits on an HTTP/1.x
response's header lines as they come, and its words for a body cut short. Checked
line by line as curl's `Curl_bump_headersize` does, so that the outcome does not depend
on how the bytes were split into reads."""

from __future__ import annotations

import re

from packetlab.measure.stream import StreamError

MAX_LINE = 100 << 10  # curl's CURL_MAX_HTTP_HEADER: a line of this many bytes is refused
MAX_TOTAL = 300 << 10  # curl's MAX_HTTP_RESP_HEADER_SIZE: a request's header bytes, 1xx too


class HeadTooLarge(StreamError):
    """A header line or the header bytes over curl's limits; `exitcode` curl's (27 for
    a line, its "Out of memory"; 56 for the total), `size` the bytes counted so far
    (curl's %{size_header}), `status` the last status line's code read (curl's http_code)."""

    def __init__(self, text: str, exitcode: int, size: int, status: int | None) -> None:
        super().__init__(text)
        self.exitcode, self.size, self.status = exitcode, size, status


class HeadLimits:
    """The header bytes of one request's response(s) (1xx blocks and the final one),
    fed as they come with `feed(buffer)` (the whole buffer so far: lines are counted
    once). Raises HeadTooLarge where curl stops; `done` once the final block ended."""

    def __init__(self, server: str | None) -> None:
        self.server = server
        self.scanned = 0  # bytes of the buffer counted
        self.total = 0
        self.block_1xx: bool | None = None  # the current block's status line, when read
        self.status: int | None = None  # the last status line's code (curl's http_code)
        self.done = False

    def feed(self, buffer: bytes | bytearray) -> None:
        while not self.done:
            end = buffer.find(b"\n", self.scanned)
            if end < 0:
                if len(buffer) - self.scanned >= MAX_LINE:  # curl: its buffer would grow
                    self._line_too_long()
                return
            line = bytes(buffer[self.scanned : end + 1])
            self.scanned = end + 1
            if len(line) >= MAX_LINE:
                self._line_too_long()
            self.total += len(line)
            if self.total > MAX_TOTAL:
                raise HeadTooLarge(f"Too large response headers: {self.total} > {MAX_TOTAL}",
                                   56, self.total, self.status)  # fmt: skip
            if self.block_1xx is None:
                m = re.match(rb"HTTP/\S+ (\d{3})\b", line)
                self.status = int(m[1]) if m else None
                # (a 101's block is the last one: HTTP/2 frames follow it)
                self.block_1xx = self.status in range(100, 200) and self.status != 101
            elif line in (b"\r\n", b"\n"):
                self.done = not self.block_1xx
                self.block_1xx = None

    def _line_too_long(self) -> None:
        raise HeadTooLarge(f"Out of memory (a header line from {self.server} over curl's "
                           f"{MAX_LINE - 1} bytes)", 27, self.total, self.status)  # fmt: skip


_RECEIVED = re.compile(r"received (\d+) bytes, expected (\d+)")


def cut_short(why: str) -> str | None:
    """curl's words (its 18) for h11's "peer closed connection without sending complete
    message body: ..." (None: another error)."""
    if "without sending complete message body" not in why:
        return None
    m = _RECEIVED.search(why)
    if m is None:  # chunked, or a body of unknown length
        return "transfer closed with outstanding read data remaining"
    return f"transfer closed with {int(m[2]) - int(m[1])} bytes remaining to read"
