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

__all__ = ["install_now", "install_sigterm"]

log = Logger()


def install_sigterm(reactor: Any) -> None:
    """Once `reactor` runs, SIGTERM stops it through `_stop` instead of Twisted's handler;
    SIGHUP too. Neither Twisted nor Python handles SIGHUP: its default action killed the
    daemon on the spot (a closed terminal, or an operator asking a "reload" as of other
    daemons), without a log line, a clean session end, or removing twistd's pid file."""

    reactor.callWhenRunning(install_now, reactor)


def install_now(reactor: Any) -> None:
    """`install_sigterm`'s handlers at once: under twistd, from the moment the service is
    made (`tapoptions.tap_service`). Until the reactor ran, SIGTERM had its default
    action, and one sent while twistd started (its pid file written, the ports being
    bound: a `systemctl restart` right after a start) killed the daemon outright,
    status -15, its pid file left behind. The stop it queues runs once the reactor runs
    (the reactor's own SIGTERM handler, installed as it starts, is replaced again then).
    Not outside twistd: a test process would no longer die of SIGTERM."""

    def handler(signum: int, frame: object) -> None:
        reactor.callFromThread(_stop, reactor, signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


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
