"""curl 7.88's -v, --trace FILE, --trace-ascii FILE and --trace-time for `pktlab run
http`: the debug callback of curl's tool (tool_cb_dbg.c) over the events a transfer
tells (`packetlab.measure.http_trace`), byte for byte in curl's layouts."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import IO, Any

from packetlab.cli.run import RunError
from packetlab.measure.http_trace import (
    DATA_IN,
    DATA_OUT,
    HEADER_IN,
    HEADER_OUT,
    SSL_DATA_IN,
    SSL_DATA_OUT,
    TEXT,
)

PLAIN, BIN, ASCII, NONE = "plain", "bin", "ascii", "none"  # -v, --trace, --trace-ascii
_OPTION = {PLAIN: "-v, --verbose", BIN: "--trace", ASCII: "--trace-ascii"}
_MARK = {TEXT: b"*", HEADER_IN: b"<", HEADER_OUT: b">", DATA_IN: b"{", DATA_OUT: b"}",
         SSL_DATA_IN: b"{", SSL_DATA_OUT: b"}"}  # fmt: skip
_TITLE = {HEADER_OUT: "=> Send header", DATA_OUT: "=> Send data", HEADER_IN: "<= Recv header",
          DATA_IN: "<= Recv data", SSL_DATA_IN: "<= Recv SSL data",
          SSL_DATA_OUT: "=> Send SSL data"}  # fmt: skip


class TraceAction(argparse.Action):
    """-v, --no-verbose, --trace FILE, --trace-ascii FILE: each in order (the last
    wins, with curl's warning when it overrides another kind)."""

    def __init__(self, *args: Any, kind: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.kind = kind

    def __call__(self, parser: Any, ns: argparse.Namespace, value: Any, opt: Any = None) -> None:
        target = "%" if self.kind == PLAIN else value  # curl's "%": stderr
        setattr(ns, self.dest, [*(getattr(ns, self.dest, None) or []), (self.kind, target)])


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-v", "--verbose", dest="trace_opts", action=TraceAction, kind=PLAIN, nargs=0,
        default=[],
        help="curl's verbose lines on stderr: * what it does, > the request sent, < the "
        "response's header lines, { } the data (the link's log: --link-log)",
    )  # fmt: skip
    p.add_argument("--no-verbose", dest="trace_opts", action=TraceAction, kind=NONE, nargs=0,
                   help=argparse.SUPPRESS)  # fmt: skip
    p.add_argument(
        "--trace", dest="trace_opts", action=TraceAction, kind=BIN, metavar="FILE",
        help="curl's full trace to FILE (- stdout): == Info lines, each header and data "
        "event with its bytes in hex and ASCII",
    )  # fmt: skip
    p.add_argument(
        "--trace-ascii", dest="trace_opts", action=TraceAction, kind=ASCII, metavar="FILE",
        help="as --trace, the bytes as ASCII only (a line for each CRLF line)",
    )  # fmt: skip
    p.add_argument(
        "--trace-time", action="store_true",
        help="each -v or --trace line begins with the local time (HH:MM:SS.uuuuuu)",
    )  # fmt: skip


def chosen(opts: list[tuple[str, str | None]]) -> tuple[str, str | None, list[str]]:
    """(kind, target, curl's warnings) from the options in order, as curl's getparam:
    each one overrides an earlier of another kind, with a warning."""
    kind, target, warnings = NONE, None, []
    for k, t in opts:
        if k != NONE and kind not in (NONE, k):
            warnings.append(f"{_OPTION[k]} overrides an earlier trace/verbose option")
        kind, target = k, t if k != NONE else target
    return kind, target, warnings


class CurlTrace:
    """curl's tool_debug_cb: `kind` PLAIN (-v), BIN (--trace) or ASCII (--trace-ascii),
    written to `out` (bytes). `hide_data`: curl's -v on a terminal that gets the body
    draws no `{ [N bytes data]` lines. `now`: --trace-time's clock (s since the epoch),
    the run's: the endpoint's, curl's host (`RunClock.now`)."""

    def __init__(self, kind: str, out: IO[bytes], stamp: bool = False, hide_data: bool = False,
                 now: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.kind, self.out, self.stamp, self.hide_data = kind, out, stamp, hide_data
        self.now = now
        self.newl = False  # the last text did not end its line (curl's statics)
        self.traced_data = False  # a data line was drawn since the last text

    def _time(self) -> bytes:
        if not self.stamp:
            return b""
        now = self.now()
        t = time.localtime(now)
        return b"%02d:%02d:%02d.%06d " % (t.tm_hour, t.tm_min, t.tm_sec,
                                          int(now * 1_000_000) % 1_000_000)  # fmt: skip

    def __call__(self, kind: str, data: bytes) -> None:
        if self.kind == PLAIN:
            self._plain(kind, data)
        else:
            self._dump(kind, data)
        self.out.flush()

    def _plain(self, kind: str, data: bytes) -> None:
        w, stamp = self.out.write, self._time()
        if kind == HEADER_OUT:
            start = 0
            for i in range(len(data) - 1):
                if data[i : i + 1] == b"\n":
                    if not self.newl:
                        w(stamp + _MARK[kind] + b" ")
                    w(data[start : i + 1])
                    start, self.newl = i + 1, False
            if not self.newl:
                w(stamp + _MARK[kind] + b" ")
            w(data[start:])
            self.newl = bool(data) and not data.endswith(b"\n")
            self.traced_data = False
        elif kind in (TEXT, HEADER_IN):
            if not self.newl:
                w(stamp + _MARK[kind] + b" ")
            w(data)
            self.newl = bool(data) and not data.endswith(b"\n")
            self.traced_data = False
        elif not self.traced_data and not self.hide_data:  # data: once in a row
            if not self.newl:
                w(stamp + _MARK[kind] + b" ")
            w(b"[%d bytes data]\n" % len(data))
            self.newl, self.traced_data = False, True

    def _dump(self, kind: str, data: bytes) -> None:
        w, stamp = self.out.write, self._time()
        if kind == TEXT:
            w(stamp + b"== Info: " + data)
            return
        w(stamp + b"%s, %d bytes (0x%x)\n" % (_TITLE[kind].encode(), len(data), len(data)))
        w(dump(data, self.kind == ASCII))


def dump(data: bytes, ascii_only: bool) -> bytes:
    """tool_cb_dbg.c's dump(): 16 bytes a line in hex and ASCII (--trace), or 64 ASCII
    bytes a line starting a new line after each CRLF (--trace-ascii)."""
    width = 0x40 if ascii_only else 0x10
    out = bytearray()
    size, i = len(data), 0
    while i < size:
        out += b"%04x: " % i
        if not ascii_only:
            for c in range(width):
                out += b"%02x " % data[i + c] if i + c < size else b"   "
        c = 0
        while c < width and i + c < size:
            if ascii_only and data[i + c : i + c + 2] == b"\r\n":  # a new line after it
                i += c + 2 - width
                break
            b = data[i + c]
            out.append(b if 0x20 <= b < 0x80 else 0x2E)
            if ascii_only and data[i + c + 1 : i + c + 3] == b"\r\n":  # (no empty line)
                i += c + 3 - width
                break
            c += 1
        out += b"\n"
        i += width
    return bytes(out)


def tracer(args: argparse.Namespace, stdout: IO[bytes], stderr: Any, warn: Any,
           body_on_terminal: bool, now: Callable[[], float] = time.time,
           ) -> CurlTrace | None:  # fmt: skip
    """The run's CurlTrace from its options (None: no -v nor --trace), its times from
    `now`; curl's override warnings through `warn`. A FILE that cannot be made is
    refused before anything is sent (curl: a warning at each event, the trace lost)."""
    kind, target, warnings = chosen(getattr(args, "trace_opts", []))
    for text in warnings:
        warn(text)
    if kind == NONE or target is None:
        return None
    out: Any
    if target == "-":
        out = stdout
    elif target == "%":
        out = getattr(stderr, "buffer", None) or _Text(stderr)
    else:
        try:
            out = open(target, "wb")  # noqa: SIM115 (the run's, closed at exit)
        except OSError as e:
            raise RunError(f"{_OPTION[kind]} {target}: {e.strerror or e}") from None
    hide = kind == PLAIN and body_on_terminal and target in ("-", "%")
    return CurlTrace(kind, out, getattr(args, "trace_time", False), hide, now)


def prints_times(args: argparse.Namespace) -> bool:
    """--trace-time with -v or --trace: times of curl's host's clock, the endpoint's
    (`Command.clock_first`)."""
    return bool(getattr(args, "trace_time", False)) and chosen(args.trace_opts)[0] != NONE


class _Text:
    """A text stream (a test's StringIO) written with bytes."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, data: bytes) -> int:
        return int(self.stream.write(data.decode("utf-8", "surrogateescape")))

    def flush(self) -> None:
        self.stream.flush()
