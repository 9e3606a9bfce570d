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
an embedding program's is left alone).

A Ctrl-C during twistd's plugin scan, just before the tap's import, is caught by Twisted
(`getPlugins` logs whatever a plugin's import raises): `arm` finds it in the log buffer
and ends the daemon then (`swallowed_interrupt`; session 25). Arming in our plugin
module (twisted/plugins/packetlab_plugins.py) instead would gain ~1 ms: twistd imports
the tap right after its scan, which loads ours last, after Twisted's own plugins."""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

__all__ = ["arm", "armed", "disarm", "swallowed_interrupt"]

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
    if not force and swallowed_interrupt():
        _interrupted(signal.SIGINT, None)


def swallowed_interrupt() -> bool:
    """Whether a Ctrl-C came while twistd loaded its plugins, before this tap: Twisted's
    `getPlugins` catches whatever a plugin's import raises (`except BaseException:
    log.err()`), so that KeyboardInterrupt only went into the log buffer kept until
    logging begins, and the daemon went on to run with the Ctrl-C lost (1 in 40 starts
    interrupted at 0.12 s, session 25). Looked for in that buffer, while it is the only
    observer (logging not begun): the only trace left of it. Nothing is imported."""
    logger = sys.modules.get("twisted.logger")
    beginner = getattr(logger, "globalLogBeginner", None)
    if getattr(beginner, "_temporaryObserver", None) is None:  # logging began: not twistd's start
        return False
    events = getattr(getattr(beginner, "_initialBuffer", None), "_buffer", ())
    for event in list(events):  # (`log.err`'s legacy event: `failure`, else `log_failure`)
        if not isinstance(event, dict):
            continue
        failure = event.get("failure", event.get("log_failure"))
        kind = getattr(failure, "type", None)
        if isinstance(kind, type) and issubclass(kind, KeyboardInterrupt):
            return True
    return False


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
