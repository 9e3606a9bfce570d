"""`pktlab xpmgr`'s progress line on a terminal: one line on stderr, redrawn in place.

The manager's counts (`Manager.summary()`) are drawn by `packetlab.cli.progress` (after a
second, at most 4 times a second, only when they changed), as `pktlab run` and `campaign`
draw theirs. The line is erased before anything else reaches the terminal: a log line
(`observer`), an mlet's output passed through or a line of ours (`outstream`'s hook); it is
drawn again at the next tick. While an mlet's stderr has left a line unfinished it is not
drawn (it would erase that text). Before, each change was a line of its own: 100 lines for
50 endpoints. Off a terminal none of this runs and the manager prints those lines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any, TextIO

from twisted.logger import ILogObserver, LogEvent
from zope.interface import implementer

from packetlab.cli.progress import Progress
from packetlab.controller import outstream

__all__ = ["Screen"]


class Screen:
    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.line: Progress | None = None
        self._describe: Callable[[], str] = lambda: ""
        self._open_line: set[int] = set()  # ids of the streams left mid-line
        self._old: outstream.Hook | None = None

    def start(self, reactor: Any, describe: Callable[[], str], delay: float = 1.0) -> None:
        """Draw `describe()` from now on, and erase it before each write of `outstream`."""
        self._describe = describe
        self.line = Progress(reactor, self._text, out=self.out, err=self.err, enabled=True,
                             delay=delay, on_closed=lambda: None)  # fmt: skip
        self._old = outstream.before_writes(self._before_write)

    def stop(self) -> None:
        """Erase the line and draw no more (before the final counts are printed)."""
        if self.line is not None:
            self.line.stop()
            self.line = None
            outstream.before_writes(self._old)

    def clear(self) -> None:
        if self.line is not None:
            self.line.clear()

    def observer(self, inner: ILogObserver) -> ILogObserver:
        """`inner` (the log to stderr), the line erased before each event it writes."""

        @implementer(ILogObserver)
        def observe(event: LogEvent) -> None:
            self.clear()
            inner(event)

        return observe

    def _before_write(self, stream: IO[str], data: bytes) -> None:
        if stream is not self.out and stream is not self.err:
            return  # the results file
        self.clear()
        if data:
            if data.endswith(b"\n"):
                self._open_line.discard(id(stream))
            else:
                self._open_line.add(id(stream))

    def _text(self) -> str:
        return "" if self._open_line else self._describe()
