"""A Ctrl-C while a daemon starts (``twistd pktendpoint|pktbroker|pktproxy``) ends it with
one line on stderr and status 130, as a Ctrl-C at `pktlab`'s start does, rather than a
KeyboardInterrupt traceback of whatever it was importing or reading at that moment
(14-41 lines, session 23's docs tour).

Armed by each tap as it is imported (twistd imports it only for the daemon asked for),
disarmed just before the reactor installs its own SIGINT handler: Twisted installs one
only when SIGINT still has Python's default handler, so that default is put back by a
"before startup" trigger (before Twisted's "during startup" install). twistd's own
imports, before any of ours (~0.1 s), keep Python's default. Only under twistd, in the
main thread, and only over Python's default handler (a debugger's, a test runner's or
an embedding program's is left alone)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

__all__ = ["arm", "armed", "disarm"]

_tapname = ""


def armed() -> bool:
    return signal.getsignal(signal.SIGINT) is _interrupted


def arm(tapname: str, *, force: bool = False) -> None:
    """Under twistd (or with `force`, for tests): a Ctrl-C from now on ends the process
    with ``twistd TAPNAME: interrupted while starting`` and status 130."""
    global _tapname
    if not force and "twisted.scripts.twistd" not in sys.modules:
        return
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return
    _tapname = tapname
    signal.signal(signal.SIGINT, _interrupted)


def disarm() -> None:
    """Python's default SIGINT handler back (for the reactor to replace with its own)."""
    if armed():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def disarm_before_reactor(reactor: object) -> None:
    """When armed: disarm in a "before startup" trigger of `reactor`, so that the
    services' start (a port bound, certificates read) stays covered and Twisted's own
    SIGINT handler is installed as always."""
    if armed():
        reactor.addSystemEventTrigger("before", "startup", disarm)  # type: ignore[attr-defined]


def _interrupted(signum: int, frame: FrameType | None) -> None:
    disarm()
    try:
        sys.stderr.write(f"\ntwistd {_tapname}: interrupted while starting\n")
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        # Not SystemExit: raised inside an import or a `try` of Twisted's it could be
        # caught and logged as a failure. Nothing is running yet that needs shutting down.
        os._exit(130)
