"""curl 7.88's --etag-compare FILE, --etag-save FILE and -R/--remote-time for `pktlab
run http`: the If-None-Match a transfer sends, the ETag lines it saves, the time its -o
file gets. Each is done where curl's tool does it (tool_operate.c's single_transfer and
post_per_transfer, tool_cb_hdr.c), so that the requests and the files compare with
curl's byte for byte."""

from __future__ import annotations

import os
import re
from typing import IO

from packetlab.cli.run import RunError
from packetlab.cli.run_http_files import _check_output

_LINE = re.compile(rb"[^\n]*\n|[^\n]+")  # curl's header callback: one line at a time
_FGETS = re.compile(rb"[^\n]{0,255}\n?")  # C's fgets(buffer, 256, file): 255 bytes at most
MAX_COMPARE = 1 << 20  # bytes of an --etag-compare file read (curl's MAX_FILE2STRING is
# 256 KiB of the string; a larger file is curl's out-of-memory error, ours one line)


def check(compare: str | None, save: str | None) -> None:
    """Before anything is sent: an --etag-compare FILE that cannot be opened (and no
    --etag-save that may make it) is curl's `Failed to open FILE` (26, no transfer);
    an --etag-save FILE that cannot be made is curl's `Failed creating file for saving
    etags` (each transfer skipped: `no transfer performed`, 26). One line here."""
    if compare is not None and save is None:
        try:
            open(compare, "rb").close()
        except OSError as e:
            raise RunError(f"--etag-compare {compare}: Failed to open {compare} "
                           f"({e.strerror or e}; curl: 26, no transfer)") from None  # fmt: skip
    if save is not None and save != "-":
        try:
            _check_output(save, "--etag-save")
        except RunError as e:
            raise RunError(f"{e}: Failed creating file for saving etags (curl skips each "
                           "transfer: no transfer performed, 26)") from None  # fmt: skip


def compare_field(path: str) -> str:
    """The field an --etag-compare FILE makes, as curl 7.88's file2string reads FILE:
    each fgets() piece cut at its first NUL, CR, then LF, the pieces joined (two lines
    are one value, `"a""b"`); a FILE that cannot be opened (--etag-save makes it later)
    or is empty: `If-None-Match: ""`. A value that is blanks only (a FILE of one empty
    line) makes curl's `If-None-Match: ` line, which removes the field: none is sent."""
    try:
        with open(path, "rb") as f:
            data: bytes | None = f.read(MAX_COMPARE + 1)
    except OSError:
        data = None
    if data is not None and len(data) > MAX_COMPARE:
        raise RunError(f"--etag-compare {path}: over {MAX_COMPARE} bytes (not an ETag)")
    if not data:  # curl: no string at all (not even an empty one): two quotes
        return 'If-None-Match: ""'
    # (C strings: a piece ends at a NUL too, as curl's strchr and strlen see it)
    value = b"".join(piece.split(b"\0", 1)[0].split(b"\r", 1)[0].split(b"\n", 1)[0]
                     for piece in _FGETS.findall(data))  # fmt: skip
    return "If-None-Match: " + value.decode("utf-8", "surrogateescape")


class EtagSave:
    """--etag-save FILE for one transfer: FILE made empty when the transfer starts (each
    URL's replaces the one before, as curl's), then the value of every `ETag:` line of
    every response head (a redirect's too; none: FILE stays empty) as curl's header
    callback writes it: blanks before it and white space after it dropped, a newline
    after it; an empty one not written. "-": stdout."""

    def __init__(self, path: str, stdout: IO[bytes]) -> None:
        self.path = path
        self.out: IO[bytes] = stdout
        self.file: IO[bytes] | None = None
        if path != "-":  # (checked by `check` before the run)
            self.file = self.out = open(path, "wb")  # noqa: SIM115 (closed by close())

    def headers(self, raw: bytes) -> None:
        for m in _LINE.finditer(raw):
            line = m.group()
            if line[:5].lower() != b"etag:" or not line.endswith(b"\n"):
                continue
            value = line[5:].lstrip(b" \t").rstrip(b" \t\r\n\v\f")
            if value:
                self.out.write(value + b"\n")
                self.out.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class RemoteTime:
    """-R/--remote-time: the last `Last-Modified:` of the transfer's response heads (a
    redirect's too, as libcurl keeps one filetime a transfer), read as curl_getdate."""

    def __init__(self) -> None:
        self.when: int | None = None

    def headers(self, raw: bytes) -> None:
        from packetlab.measure.curldate import getdate

        for m in _LINE.finditer(raw):
            line = m.group()
            if line[:14].lower() == b"last-modified:":
                self.when = getdate(line[14:].decode("latin-1").rstrip("\r\n"))

    def apply(self, path: str | None) -> str | None:
        """After a transfer that succeeded: the -o file's access and change times set to
        the server's (curl's setfiletime); a warning's text when they cannot be. Only a
        regular file (curl sets /dev/null's too, which only root may and nobody wants)."""
        if self.when is None or self.when < 0 or not path or not os.path.isfile(path):
            return None
        try:
            os.utime(path, (self.when, self.when))
        except (OSError, OverflowError) as e:
            why = getattr(e, "strerror", None) or e
            return f"Failed to set filetime {self.when} on outfile {path}: {why}"
        return None
