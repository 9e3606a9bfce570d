"""The exit statuses of the `pktlab` commands, as native tools use them (docs/cli.md).

0: done; 1: done, but nothing answered (ping, traceroute); 2: an error; 130: interrupted.
"""

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_NO_REPLY", "EXIT_OK"]

EXIT_OK, EXIT_NO_REPLY, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
