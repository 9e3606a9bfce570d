"""Where `pktlab run http` writes a transfer's body, as curl 7.88.1's tool does
(tool_cb_wrt.c, tool_cb_hdr.c): stdout, or a file opened at the body's first byte (or,
with -J, when a Content-Disposition header names it); curl's clobber modes (an existing
file overwritten; -J's server-named file never; --no-clobber: NAME.1 ... NAME.99
instead); -J's file name parsed from the header byte for byte as curl 7.88 parses it."""

from __future__ import annotations

import errno
import os
import re
from typing import IO

from packetlab.measure.writeerror import WriteError

NUMBERED = 100  # curl 7.88 --no-clobber: NAME.1 .. NAME.99 (its manual says .100)
_CD = b"content-disposition:"
_LINE = re.compile(rb"[^\n]*\n|[^\n]+")  # curl's header callback gets one line at a time


class RemoteName(str):
    """An -O (or --remote-name-all) file name, DIR/NAME with --output-dir: the transfers
    whose name -J may take from a Content-Disposition header. "-" is a file's name here
    (curl 7.88: only -o - is stdout)."""


def is_stdout(path: str | None) -> bool:
    """Whether an output is stdout: none given, or -o - (not -O's or -J's "-": a file)."""
    return path is None or (path == "-" and not isinstance(path, RemoteName))


def cd_filename(line: bytes) -> bytes | None:
    """The file name of a `Content-Disposition:` header line (its CRLF included) as curl
    7.88's tool_header_cb and parse_filename take it, or None (no `filename=` parameter:
    the URL's name is used). Each parameter is looked for after the characters that are
    no letter; `filename=` exactly (no `filename*=`, no spaces around the =, lower
    case); a value in " or ' up to the same quote (or the line's end), else up to a ;;
    what follows the last / and then the last \\ kept (None when that is nothing, in
    quotes); cut at a CR or LF. Not decoded: bytes as sent ("" is a name too, refused
    later as curl does: "Remote filename has no length!")."""
    end = len(line)
    p = 20  # after "Content-disposition:"
    while True:
        while p < end and line[p] and not _alpha(line[p]):  # curl's ISALPHA: ASCII
            p += 1
        if p > end - 9:
            return None
        if line[p : p + 9] != b"filename=":
            while p < end and line[p] and line[p] != 0x3B:  # to the next ;
                p += 1
            if p < end and line[p]:
                continue
            return None
        return _parse_filename(line[p + 9 :])


def _alpha(c: int) -> bool:
    return 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def _parse_filename(value: bytes) -> bytes | None:
    value = value.split(b"\0", 1)[0]  # curl's copy is a C string
    stop = b";"
    if value[:1] in (b"'", b'"'):
        stop, value = value[:1], value[1:]
    value = value.split(stop, 1)[0]
    for sep in (b"/", b"\\"):  # a path: only its last part, nothing left is no name
        if sep in value:
            value = value.rsplit(sep, 1)[1]
            if not value:
                return None
    return value.split(b"\r", 1)[0].split(b"\n", 1)[0]


class Output:
    """One transfer's output, curl 7.88's OutStruct: stdout (`path` None or "-"), or
    the file `path` opened when the first body byte comes (an empty body: at the end,
    see close()). `clobber` is curl's mode: None its default (an existing file
    overwritten, but not a file a Content-Disposition named), True --clobber, False
    --no-clobber (NAME.1 ... NAME.99 instead). With `honor_cd` (-J with -O) the
    response headers (every response's, a followed redirect's too, as curl 7.88) are
    looked at: the first Content-Disposition with a file name opens that file (in
    `output_dir`); one without opens `path`.

    `effective` is curl's %{filename_effective} (for a header's name without the
    directory, as curl 7.88 prints it); `written` the file opened, or None."""

    def __init__(self, path: str | None, stdout: IO[bytes], clobber: bool | None = None,
                 honor_cd: bool = False, output_dir: str | None = None) -> None:  # fmt: skip
        self.path, self.stdout = path, stdout
        self.to_stdout = is_stdout(path)
        self.effective: str | None = None if self.to_stdout else path  # curl: null
        self.clobber, self.honor, self.output_dir = clobber, honor_cd, output_dir
        self.from_header = False
        self.written: str | None = None
        self.file: IO[bytes] | None = None
        self.append = 0  # -C: the offset resumed from; the file opened to append (open())

    def headers(self, raw: bytes) -> None:
        """A header block (curl's header callback, line by line): with -J, the file
        named by its Content-Disposition opened now."""
        if not self.honor:
            return
        for m in _LINE.finditer(raw):
            line = m.group()
            if not self.honor or len(line) <= 20 or line[:20].lower() != _CD:
                continue
            try:
                self._disposition(line)
            except WriteError as e:  # curl's size_header: the lines before this one
                raise WriteError(str(e), m.start()) from None

    def _disposition(self, line: bytes) -> None:
        name = cd_filename(line)
        if name is not None:
            if self.file is not None:  # curl: (23) Failed writing header
                raise WriteError(f"a Content-Disposition file name ({os.fsdecode(name)!r}) "
                                 f"after {self.written} was opened (-J)")  # fmt: skip
            self.path = self.effective = os.fsdecode(name)
            self.from_header, self.honor, self.to_stdout = True, False, False
        if self.file is None:
            self._open()

    def write(self, data: bytes) -> None:
        if self.to_stdout:
            self.stdout.write(data)
            return
        if self.file is None:
            self._open()
        assert self.file is not None
        self.file.write(data)

    def close(self, create: bool) -> str | None:
        """Close the file (with `create`, made empty when nothing came: curl does so for
        a complete response); why it could not be made or written, or None."""
        try:
            if create and not self.to_stdout and self.file is None:
                self._open()
            if self.file is not None:
                self.file.close()
            else:
                self.stdout.flush()
        except WriteError as e:
            return str(e)
        except OSError as e:
            return f"writing {self.written or self.path}: {e.strerror or e}"
        return None

    def resume(self, offset: int) -> None:
        """curl -C with a file: opened now to append (made if missing), as curl's."""
        name = self.path or ""
        if self.to_stdout or not offset or not name:
            return
        try:
            self.file = open(name, "ab")  # noqa: SIM115 (closed by close())
        except OSError as e:  # curl: "Can't open 'NAME'!" (23)
            raise WriteError(f"Can't open '{name}'!: {e.strerror or e}") from None
        self.written, self.append = name, offset

    def _open(self) -> None:
        """curl 7.88's tool_create_output_file."""
        name = self.path or ""
        if not name:  # curl: "Remote filename has no length!" (23)
            raise WriteError("Remote filename has no length! (no file name in the URL"
                             + (" nor in a Content-Disposition header)" if self.honor
                                or self.from_header else ")"))  # fmt: skip
        if self.output_dir and self.from_header:
            name = f"{self.output_dir}/{name}"
        if self.clobber or (self.clobber is None and not self.from_header):
            # --clobber: a name the server gave is never a symbolic link followed out of
            # the output directory (curl 7.88 follows it); the user's names are, as curl
            flags = (
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_NOFOLLOW if self.from_header else 0)
            )
            try:
                made = os.open(name, flags, 0o666)
            except OSError as e:
                why = e.strerror or str(e)
                if self.from_header and e.errno == errno.ELOOP:
                    why = "a symbolic link (-J does not write through a link the server named)"
                raise WriteError(f"Failed to open the file {name}: {why}") from None
            self.file, self.written = os.fdopen(made, "wb"), name
            return
        fd, err = _create(name)
        opened = name
        if fd is None and self.clobber is False:
            n = 1
            while fd is None and err in (errno.EEXIST, errno.EISDIR) and n < NUMBERED:
                opened = f"{name}.{n}"
                n += 1
                fd, err = _create(opened)
            self.effective = opened  # curl's: the last one tried, also when none was free
        if fd is None:
            why = os.strerror(err)
            if err == errno.EEXIST and self.clobber is False:
                why += f" (so do {name}.1 to {name}.{NUMBERED - 1}: --no-clobber)"
            elif err == errno.EEXIST:
                why += " (-J does not overwrite a file the server named: --clobber does)"
            raise WriteError(f"Failed to open the file {name}: {why}")
        self.file, self.written = os.fdopen(fd, "wb"), opened


def _create(name: str) -> tuple[int | None, int]:
    """A new file (O_EXCL, mode 0666 less the umask, as curl's OPENMODE): (fd, 0), or
    (None, errno)."""
    try:
        return os.open(name, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o666), 0
    except OSError as e:
        return None, e.errno or errno.EIO
