"""Input, output and exit status of the byte-stream filters (`pktlab decode`, `encode`).

Every way they can end is one line on stderr at most, never a traceback:

* 0: done;
* 2: bad input (the filter's own message, with its byte offset or line number), a FILE
  that cannot be opened or read, or an output that cannot be written (a full disk);
* 130: Ctrl-C (`packetlab.cli.interrupt.quit_on_interrupt`);
* 141: the reader of our output went away (`| head -1`): quietly, as the other pktlab
  commands and a native tool killed by SIGPIPE (`packetlab.cli.exits`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from packetlab.cli.exits import EXIT_BROKEN_PIPE, EXIT_ERROR

EXIT_BAD_INPUT = EXIT_ERROR

EXIT_STATUS_HELP = """\
exit status: 0 done; 2 bad input (one line naming where and what), a FILE that cannot be
read or an output that cannot be written; 130 Ctrl-C; 141 the reader of the output went
away (`| head`), quietly."""


class InputFailed(Exception):
    """Reading FILE failed (an I/O error, not bad bytes)."""


class Input:
    """FILE opened for binary reading, whose read errors are `InputFailed` (so that an
    OSError left over is the output's)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._raw = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        self._read1 = getattr(self._raw, "read1", self._raw.read)  # (BinaryIO: no read1)

    def _failed(self, e: OSError) -> InputFailed:
        name = "standard input" if self.path == "-" else self.path
        return InputFailed(f"cannot read {name}: {e.strerror or e}")

    def read(self, size: int) -> bytes:
        """At most `size` bytes, what one read gives (`read1`): from a pipe still being
        written (`socat ... | pktlab decode`) the frames that came are decoded now, not
        once 64 KiB have come. b"" only at the end."""
        try:
            data: bytes = self._read1(size)
            return data
        except OSError as e:
            raise self._failed(e) from None

    def readline(self, limit: int) -> bytes:
        try:
            return self._raw.readline(limit)
        except OSError as e:
            raise self._failed(e) from None

    def close(self) -> None:
        if self._raw is not sys.stdin.buffer:
            self._raw.close()


def run_filter(
    tool: str, path: str, work: Callable[[Input], None], bad_input: type[Exception]
) -> int:
    """Run `work` on FILE (`-`: standard input) and return the exit status above."""
    try:
        stream = Input(path)
    except OSError as e:
        print(f"pktlab {tool}: cannot open {path}: {e.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        work(stream)
    except (bad_input, InputFailed) as e:
        _flush_quietly()
        print(f"pktlab {tool}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the reader went away (`| head`): not worth a word
        _stdout_to_devnull()
        return EXIT_BROKEN_PIPE
    except OSError as e:  # the output (reads raise InputFailed): a full disk, EIO
        _stdout_to_devnull()
        print(f"pktlab {tool}: cannot write the output: {e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        stream.close()
    return 0


def _flush_quietly() -> None:
    """What was written before the error goes out first (the frames before a bad one);
    a failure to do so is not a second message."""
    try:
        sys.stdout.flush()
    except OSError:
        _stdout_to_devnull()


def _stdout_to_devnull() -> None:
    """stdout cannot be written: what is still buffered goes to /dev/null at exit, not
    into a second error (Python's advice for SIGPIPE)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no descriptor (a test's captured stdout)
        pass
