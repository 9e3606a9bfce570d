"""The exit statuses of the `pktlab` commands, as native tools use them (docs/usability.md).

0: done; 1: done, but nothing answered (ping); 2: an error; 130: interrupted; 141: the
reader of stdout went away (`| head`), as a tool killed by SIGPIPE.
"""

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_NO_REPLY", "EXIT_OK"]

EXIT_OK, EXIT_NO_REPLY, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE
