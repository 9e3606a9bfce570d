"""SIGTERM (and SIGHUP) for the daemons, without the deadlock of Twisted's own handler.

Twisted's SIGTERM handler logs from inside the signal handler, and its file log observer
takes `twisted.python.threadable`'s lock, a pure-Python RLock: a signal that lands while
the main thread is inside that lock's `acquire` (between taking the lock and recording
its owner) blocks the handler for ever. Seen: a `twistd pktbroker` hung on SIGTERM that
came during a connectionLost log line. Ours only asks the reactor, from its own loop, to
log and stop (`callFromThread` is an append and a write to the waker: signal-safe).
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger

from packetlab.loglevel import START_STOP

__all__ = ["install_sigterm"]

log = Logger()


def install_sigterm(reactor: Any) -> None:
    """Once `reactor` runs, SIGTERM stops it through `_stop` instead of Twisted's handler;
    SIGHUP too. Neither Twisted nor Python handles SIGHUP: its default action killed the
    daemon on the spot (a closed terminal, or an operator asking a "reload" as of other
    daemons), without a log line, a clean session end, or removing twistd's pid file."""

    def handler(signum: int, frame: object) -> None:
        reactor.callFromThread(_stop, reactor, signum)

    def install() -> None:
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGHUP, handler)

    reactor.callWhenRunning(install)


def _stop(reactor: Any, signum: int = signal.SIGTERM) -> None:
    if signum == signal.SIGHUP:
        log.info(
            "Received SIGHUP, shutting down (packetlab's daemons do not reload their "
            "configuration: start it again to read a changed one).",
            **START_STOP,
        )
    else:
        log.info("Received SIGTERM, shutting down.", **START_STOP)
    try:
        reactor.stop()
    except ReactorNotRunning:  # a second SIGTERM while stopping
        pass
