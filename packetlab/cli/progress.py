"""A progress line on stderr for runs longer than a second, on a terminal only.

The line is redrawn in place a few times a second (`\\r`, erase to the end of line) from
a function that describes the state; `write(text)` prints a result line on stdout after
clearing it, so results and progress never mix on the screen. Off a terminal (a pipe, a
file) nothing is drawn and `write` is a plain print. A tick whose text is what the screen
already shows writes nothing, and an empty text draws nothing (a run that prints for
hours does not write 4 lines a second to the terminal for nothing).
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["Progress", "erase_lines", "write_text"]

CLEAR = "\r\x1b[K"

# The lines that may be on the screen: a log line (`-v`) erases them first.
_DRAWING: weakref.WeakSet[Progress] = weakref.WeakSet()


def erase_lines() -> None:
    """Erase every progress line on the screen before something else writes to the
    terminal (the `-v` log: `interrupt.run` calls it before each event); each is drawn
    again at its next tick."""
    for line in list(_DRAWING):
        line.clear()


class Progress:
    def __init__(
        self,
        reactor: Any,
        describe: Callable[[], str],
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        enabled: bool | None = None,
        delay: float = 1.0,
        every: float = 0.25,
        on_closed: Callable[[], object] | None = None,
    ) -> None:
        self.reactor = reactor
        self.describe = describe
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.enabled = self.err.isatty() if enabled is None else enabled
        self.every = every
        self.shown = False
        self.drawn = ""  # the text on the screen while `shown`
        self.closed = False
        if on_closed is None:
            from packetlab.cli.interrupt import stdout_gone

            on_closed = stdout_gone
        self.on_closed = on_closed
        self._call: Any = reactor.callLater(delay, self._tick) if self.enabled else None
        if self.enabled:
            _DRAWING.add(self)

    def write(self, line: str, end: str = "\n") -> None:
        """A result line on stdout, at once (flushed): the moment it is known (`end=""`:
        part of a line, as ping -f's dots). When the
        reader has gone (`| head`), `on_closed` (default: `interrupt.stdout_gone`, which
        stops the run) and nothing more is written."""
        if self.closed:
            return
        self._clear()
        try:
            write_text(self.out, line + end)
            self.out.flush()
        except BrokenPipeError:
            self.closed = True
            self.on_closed()

    def note(self, text: str) -> None:
        """A line on stderr that stays (a long wait ahead), the progress line cleared
        first and redrawn at its next tick."""
        self._clear()
        self.err.write(text + "\n")
        self.err.flush()

    def clear(self) -> None:
        """Erase the line before someone else writes to the terminal (a log line); it
        is drawn again at the next tick."""
        self._clear()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._clear()

    def _clear(self) -> None:
        if self.shown:
            self.shown = False
            self._put(CLEAR)

    def _tick(self) -> None:
        self._call = self.reactor.callLater(self.every, self._tick)
        text = self.describe()
        if self.shown and text == self.drawn:
            return
        if not text:
            self._clear()
            return
        self.drawn, self.shown = text, True
        self._put(CLEAR + text)

    def _put(self, text: str) -> None:
        try:
            self.err.write(text)
            self.err.flush()
        except (OSError, ValueError):  # the terminal is gone: nothing more is drawn
            self.enabled = False
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._call = None


def write_text(out: TextIO, text: str) -> None:
    """`text` on `out`; bytes that are no UTF-8 (held as lone surrogates: a word of the
    command line, a dig banner's character cut in two) written as they came, as the
    native tools write their bytes, where the stream's encoding is strict."""
    try:
        out.write(text)
    except UnicodeEncodeError:
        raw = getattr(out, "buffer", None)
        if raw is None:
            raise
        out.flush()
        raw.write(text.encode(out.encoding or "utf-8", "surrogateescape"))
