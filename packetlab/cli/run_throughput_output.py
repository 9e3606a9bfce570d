"""iperf3's output options for `pktlab run throughput`: -J (its JSON document), -f
(units), -T (a title before every line), --timestamps, --forceflush, --logfile,
--get-server-output's report, -V; the text itself is run_throughput's (iperf3's lines).

`renderer(args)` is the command's `row_for`: one `Output` per command line, which keeps
what -J needs across a test's records (the connected streams, the intervals) and prints
the document with the test's result.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import IO, Any, NamedTuple

from packetlab.cli.runclock import now_of
from packetlab.measure.iperf3 import INTERRUPTED

Record = dict[str, Any]

#: --timestamps without a format: iperf3's "%c " (its default, a space before the line)
TIMESTAMP_FORMAT = "%c "
#: the name before an error line, where iperf3 writes "iperf3: "
PROG = "pktlab run throughput"


def unit_format(text: str) -> str:
    """-f's letter: one of kmgtKMGT, as iperf3 3.12 takes (its IEBADFORMAT otherwise)."""
    if len(text) != 1 or text not in "kmgtKMGT":
        raise argparse.ArgumentTypeError(
            f"bad format specifier {text!r} (valid formats are in the set [kmgtKMGT]), as iperf3"
        )
    return text


def printable(text: str) -> str:
    """The server's text with its control characters (but newlines and tabs) shown as
    \\xNN: a hostile server's escape sequences do not reach the terminal (iperf3 prints
    them raw)."""
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\x{ord(c):02x}" for c in text)


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-J", dest="json_doc", action="store_true",
                   help="iperf3's JSON document (start, intervals, end; its keys, our "
                   "figures), printed once the test ends, as iperf3 -J (--json is ours: "
                   "JSON lines)")  # fmt: skip
    p.add_argument("-f", "--format", dest="unit", type=unit_format, default=None,
                   metavar="[kmgtKMGT]",
                   help="the bitrate column's unit, as iperf3 -f: k/m/g/t bits (10^3 "
                   "steps), K/M/G/T bytes (2^10) [adaptive bits]")  # fmt: skip
    p.add_argument("-T", "--title", default=None, metavar="STR",
                   help="prefix every output line with 'STR:  ', as iperf3 -T")  # fmt: skip
    p.add_argument("--timestamps", nargs="?", const=TIMESTAMP_FORMAT, default=None,
                   metavar="FORMAT",
                   help="prefix every output line with the local time, as iperf3 "
                   "--timestamps[=FORMAT] (strftime(3); default '%%c ')")  # fmt: skip
    p.add_argument("--forceflush", action="store_true",
                   help="flush the output after every line, as iperf3 (ours always "
                   "does)")  # fmt: skip
    p.add_argument("--logfile", default=None, metavar="FILE",
                   help="append the output (text or -J) to FILE instead of stdout, as "
                   "iperf3 --logfile; errors of the command line stay on stderr")  # fmt: skip
    p.add_argument("--get-server-output", dest="server_output", action="store_true",
                   help="the iperf3 server's own report, after ours (its text, or in -J "
                   "server_output_text), as iperf3")  # fmt: skip
    p.add_argument("--extra-data", dest="extra_data", default=None, metavar="STR",
                   help="a string told to the server and put in -J's extra_data, as "
                   "iperf3")  # fmt: skip
    p.add_argument("-V", dest="iperf_verbose", action="store_true",
                   help="iperf3 -V's extra lines: Control connection MSS, Time, Cookie, TCP "
                   "MSS, Target Bitrate, Starting Test, Test Complete, the server's "
                   "congestion control (-v is pktlab's log)")  # fmt: skip


def selected(args: argparse.Namespace) -> bool:
    """Any of iperf3's output options: they select iperf3's test (its lines)."""
    return bool(
        args.json_doc or args.unit is not None or args.title is not None
        or args.timestamps is not None or args.forceflush or args.logfile is not None
        or args.server_output or args.extra_data is not None or args.iperf_verbose
    )  # fmt: skip


def check(args: argparse.Namespace) -> str | None:
    """The one-line error for options that do not go together, or None."""
    if args.json_doc and getattr(args, "json", False):
        return "-J and --json: choose one (-J: iperf3's document; --json: JSON lines)"
    if args.logfile is not None and getattr(args, "json", False):
        return "--logfile goes with the text or -J (redirect --json's lines instead)"
    return None


def failed_test(r: Record) -> bool:
    """`r` is the result of one of iperf3's tests (not the paper's transfer) that failed."""
    return r["type"] == "throughput" and "protocol" in r and "error" in r


class Rows(NamedTuple):
    """run_throughput's iperf3 lines, handed in (this module sits below that one)."""

    connected: Callable[..., str]
    interval: Callable[..., str]
    timed: Callable[..., str]
    row: Callable[[Record], str | None]


class Output:
    """The text form of the records of one command line, with iperf3's output options;
    with --logfile it writes there and returns None."""

    def __init__(self, args: argparse.Namespace, version: str, rows: Rows) -> None:
        self.args = args
        self.version = version
        self.rows = rows
        self.connected: Record | None = None
        self.intervals: list[Record] = []
        self.started = now_of(args)
        self.file: IO[str] | None = None
        self.interrupted = False  # a test stopped by Ctrl-C: its line after the summary

    def __call__(self, record: Record) -> str | None:
        if not self.args.json_doc and failed_test(record):  # iperf3: not on stdout
            self.error_line(f"error - {record.get('iperf3_error') or record['error']}")
            return None
        if record["type"] == "throughput" and record.get("stopped") and "protocol" in record:
            self.interrupted = True
        elif record["type"] == "summary" and self.interrupted and not self.args.json_doc:
            self.interrupted = False  # Ctrl-C: after the totals, as iperf3 3.12
            self.error_line(INTERRUPTED)
        text = self.text(record)
        if text is None:
            return None
        if self.args.logfile is None:
            return text
        self.logged().write(text + "\n")
        self.file_flush()
        return None

    def logged(self) -> IO[str]:
        """--logfile's file, opened (appending) at its first line."""
        if self.file is None:
            self.file = open(self.args.logfile, "a")  # noqa: SIM115 (kept for the run)
        return self.file

    def file_flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def error_line(self, text: str) -> None:
        """One of iperf3's error lines (iperf_err): on stderr, or in --logfile's file,
        after --timestamps' time (not -T's title); `PROG: ` where iperf3 has `iperf3: `.
        The time in iperf3's default format, whatever --timestamps=FORMAT says, as 3.12
        stamps them (`--timestamps='%Y '`: `Sat Dec  5 18:00:50 2026 iperf3: error - `)."""
        head = ""
        if self.args.timestamps is not None:
            head = time.strftime(TIMESTAMP_FORMAT, time.localtime(now_of(self.args)))
        line = f"{head}{PROG}: {text}\n"
        if self.args.logfile is not None:
            self.logged().write(line)
            self.file_flush()
            return
        sys.stderr.write(line)
        sys.stderr.flush()

    def text(self, r: Record) -> str | None:
        """A record's text, with -T's title and --timestamps' time (iperf3 -J: -T is the
        document's "title", no prefix)."""
        rt = self.rows
        a = self.args
        kind = r["type"]
        if a.json_doc:
            return self._document(r)
        if kind == "connected":
            return self.prefixed(rt.connected(r, verbose=a.iperf_verbose))
        if kind == "interval":
            return self.prefixed(rt.interval(r, a.unit or "a"))
        if kind == "throughput" and "protocol" in r and "error" not in r:
            out = rt.timed(r, a.unit or "a", verbose=a.iperf_verbose)
            # the server's report right after the totals, as iperf3's; our `# ` notes
            # (whose figures are whose, late sends) after it
            lines = out.split("\n")
            notes = len(lines)
            while notes and lines[notes - 1].startswith("# "):
                notes -= 1
            out, ours = self.prefixed("\n".join(lines[:notes])), lines[notes:]
            # iperf3 prints the server's report with one printf ("\nServer output:\n%s\n"),
            # and prefixes -T and --timestamps once per printf: on the empty line before
            # it only, not on the server's lines
            if "server_output_text" in r:
                out += "\n" + self.prefixed("") + "\nServer output:\n"
                out += printable(r["server_output_text"])
            elif "server_output_json" in r:
                from packetlab.measure.throughput_cjson import dumps

                out += "\n" + self.prefixed("") + "\nServer JSON output:\n"
                out += dumps(r["server_output_json"]) + "\n"
            return "\n".join([out, *(self.prefixed(x) for x in ours)])
        text = rt.row(r)
        return None if text is None else self.prefixed(text)

    def _document(self, r: Record) -> str | None:
        """-J: nothing until the test's result, then its whole document (one per run)."""
        from packetlab.measure.throughput_json import document, printed

        if r["type"] == "connected":
            self.connected, self.intervals = r, []
            self.started = now_of(self.args)  # (iperf3's host's)
            return None
        if r["type"] == "interval":
            self.intervals.append(r)
            return None
        if r["type"] != "throughput":
            return None
        doc = document(self.connected, self.intervals, r, self.started, self.version,
                       self.args.title)  # fmt: skip
        self.connected, self.intervals = None, []
        return printed(doc)

    def prefixed(self, text: str) -> str:
        """iperf3's -T and --timestamps on every line (the time first, then 'TITLE:  ')."""
        a = self.args
        head = ""
        if a.timestamps is not None:
            head = time.strftime(a.timestamps, time.localtime(now_of(a)))
        if a.title is not None:
            head += f"{a.title}:  "
        if not head:
            return text
        return "\n".join(head + line for line in text.split("\n"))


def prints_times(args: argparse.Namespace) -> bool:
    """-J (`start.timestamp`) or --timestamps: times of iperf3's host's clock, the
    endpoint's (`Command.clock_first`)."""
    return bool(args.json_doc) or args.timestamps is not None


def renderer(args: argparse.Namespace, rows: Rows) -> Any:
    """The command's `row_for`: the same `Output` for every record of `args`."""
    out = getattr(args, "_output", None)
    if out is None:
        from packetlab import __version__

        out = Output(args, f"packetlab {__version__} (iperf 3.12 protocol)", rows)
        args._output = out
    return out


__all__ = [
    "Output",
    "Rows",
    "add_options",
    "check",
    "failed_test",
    "printable",
    "prints_times",
    "renderer",
    "selected",
    "unit_format",
]
