"""curl 7.88's -F encoders (;encoder=): base64 and quoted-printable, fed a part's chunks
as they are read (`feed(data, eof)`), each in C loops (no Python step per byte)."""

from __future__ import annotations

import base64
import binascii
import operator

LINE = 76  # curl's MAX_ENCODED_LINE_LENGTH (base64 and quoted-printable)


class Base64:
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


class QuotedPrintable:
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
