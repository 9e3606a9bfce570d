"""Input and exit status of the byte-stream filters (`pktlab decode`, `pktlab encode`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import IO

EXIT_BAD_INPUT = 2


def run_filter(
    tool: str, path: str, work: Callable[[IO[bytes]], None], bad_input: type[Exception]
) -> int:
    """Run `work` on FILE (`-`: standard input), opened for binary reading and closed after.

    Exit status 2 with "pktlab TOOL: ..." on stderr when the file cannot be opened or
    `work` raises `bad_input`; 0 when done, also when the reader of our output went away.
    """
    try:
        stream: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as e:
        print(f"pktlab {tool}: cannot open {path}: {e.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        work(stream)
    except bad_input as e:
        print(f"pktlab {tool}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the reader went away (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return 0
