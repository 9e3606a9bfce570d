"""packetlab.sigterm: SIGTERM stops the reactor from its own loop, not in the handler."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from twisted.internet.error import ReactorNotRunning

from packetlab.sigterm import install_sigterm


class FakeReactor:
    def __init__(self) -> None:
        self.from_thread: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.stops = 0
        self.running = True

    def callWhenRunning(self, f: Callable[..., Any], *args: Any) -> None:
        f(*args)

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        self.from_thread.append((f, args))

    def stop(self) -> None:
        if not self.running:
            raise ReactorNotRunning()
        self.running = False
        self.stops += 1


def test_sigterm_only_queues_the_stop_then_the_loop_stops_once() -> None:
    before = signal.getsignal(signal.SIGTERM)
    before_hup = signal.getsignal(signal.SIGHUP)
    reactor = FakeReactor()
    try:
        install_sigterm(reactor)
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGHUP, before_hup)
    assert reactor.stops == 0  # nothing ran inside the handler but the queueing
    assert len(reactor.from_thread) == 2
    for f, args in reactor.from_thread:
        f(*args)  # the second finds the reactor stopping: no error
    assert reactor.stops == 1 and not reactor.running


def test_sighup_stops_cleanly_with_a_line_saying_why() -> None:
    """SIGHUP killed a daemon outright (the default action): no log line, no clean end,
    twistd's pid file left behind. Now it stops the reactor as SIGTERM does, saying that
    the daemons do not reload."""
    from testkit.logs import captured_events
    from twisted.logger import LogLevel

    before = signal.getsignal(signal.SIGTERM)
    before_hup = signal.getsignal(signal.SIGHUP)
    reactor = FakeReactor()
    try:
        install_sigterm(reactor)
        signal.raise_signal(signal.SIGHUP)  # the test process lives on: handled
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGHUP, before_hup)
    with captured_events() as seen:
        for f, args in reactor.from_thread:
            f(*args)
    assert reactor.stops == 1
    (line,) = seen.where(level=LogLevel.info).formats()
    assert line.startswith("Received SIGHUP, shutting down") and "do not reload" in line
