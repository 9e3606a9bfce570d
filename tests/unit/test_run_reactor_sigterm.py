"""cli.interrupt.run_reactor and SIGTERM: the run ends as interrupted (130, one line),
not with the error of the connection that the reactor's stop tore down."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost

from packetlab.cli.interrupt import EXIT_INTERRUPTED, run_reactor
from packetlab.controller.errors import SessionClosed


class LoopReactor:
    """Runs its start-up calls, then the calls queued from signal handlers; installs a
    SIGTERM handler that stops it, as Twisted's reactor does when it runs. Its stop
    fails what is waiting, as the in-process endpoint's connection closing under a run."""

    def __init__(self) -> None:
        self.running = False
        self.starting: list[Callable[[], object]] = []
        self.queue: list[Callable[[], object]] = []
        self.waiting: list[Deferred[None]] = []

    def callWhenRunning(self, f: Callable[[], object]) -> None:
        self.starting.append(f)

    def callFromThread(self, f: Callable[..., object], *args: Any) -> None:
        self.queue.append(lambda: f(*args))

    def stop(self) -> None:
        self.running = False
        for d in self.waiting:
            d.errback(SessionClosed("connection lost", ConnectionLost()))

    def run(self) -> None:
        self.running = True
        signal.signal(signal.SIGTERM, lambda n, f: self.callFromThread(self.stop))
        for f in self.starting:
            f()
        while self.running and self.queue:
            self.queue.pop(0)()


def test_sigterm_ends_a_run_as_interrupted(capsys: pytest.CaptureFixture[str]) -> None:
    reactor = LoopReactor()

    async def main(r: Any, stop: Any) -> int:
        d: Deferred[None] = Deferred()
        reactor.waiting.append(d)
        signal.raise_signal(signal.SIGTERM)  # `timeout` sending it mid-run
        await d
        return 0

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = run_reactor(main, prog="pktlab run http", reactor=reactor)
    finally:
        for s, h in before.items():
            signal.signal(s, h)
    # was: 'pktlab run http: connection lost: ...', 2
    assert (code, capsys.readouterr().err) == (EXIT_INTERRUPTED, "pktlab run http: interrupted\n")
