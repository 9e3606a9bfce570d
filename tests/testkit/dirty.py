"""A test must leave the global reactor as it found it (what trial's janitor checks).

After each integration test, delayed calls and selectables (connections, listening ports,
processes) that the test added and did not remove fail it, naming each; they are then
cancelled or closed so the next test starts clean. Things being shut down get a short grace
(`GRACE`, polled): a `loseConnection()` needs a few reactor turns to finish.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProcessTransport
from twisted.python.failure import Failure

GRACE = 2.0  # seconds for closing connections and fired calls to settle
# The reactor's own machinery: its wakers (one more appears with the first child process).
INTERNAL = ("_UnixWaker", "_SocketWaker", "_FDWaker", "_SIGCHLDWaker", "_ContinuousPolling")


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _selectables(reactor: Any) -> set[Any]:
    found = set(reactor.getReaders()) | set(reactor.getWriters())
    return {s for s in found if type(s).__name__ not in INTERNAL}


def _calls(reactor: Any) -> set[Any]:
    return {c for c in reactor.getDelayedCalls() if c.active()}


def leftovers(reactor: Any, before: tuple[set[Any], set[Any]]) -> tuple[list[Any], list[Any]]:
    """Delayed calls and selectables present now that were not in `before`."""
    calls, sels = before
    return sorted(_calls(reactor) - calls, key=str), sorted(_selectables(reactor) - sels, key=repr)


def describe(calls: list[Any], sels: list[Any]) -> str:
    lines = [f"pending call: {c}" for c in calls]
    lines += [f"open: {s!r}" for s in sels]
    return "the test left the reactor dirty:\n  " + "\n  ".join(lines)


def clean_up(reactor: Any, calls: list[Any], sels: list[Any]) -> None:
    for c in calls:
        if c.active():
            c.cancel()
    for s in sels:
        reactor.removeReader(s)
        reactor.removeWriter(s)
        if IProcessTransport.providedBy(s):
            s.signalProcess("KILL")
        elif hasattr(s, "connectionLost"):
            s.connectionLost(Failure(ConnectionDone("closed by the dirty-reactor check")))


def _turn(reactor: Any, seconds: float) -> None:
    """Let the reactor run for `seconds` (it runs in pytest-twisted's greenlet)."""
    pytest_twisted.blockon(task.deferLater(reactor, seconds, lambda: None))


@pytest.fixture(autouse=True)
def clean_reactor() -> Iterator[None]:
    """Fail a test that leaves delayed calls or open sockets on the global reactor."""
    reactor = _reactor()
    before = (_calls(reactor), _selectables(reactor))
    yield
    if not reactor.running:
        return  # the reactor was never started: nothing the test could leave on it
    deadline = time.monotonic() + GRACE
    calls, sels = leftovers(reactor, before)
    while (calls or sels) and time.monotonic() < deadline:
        _turn(reactor, 0.01)
        calls, sels = leftovers(reactor, before)
    if calls or sels:
        message = describe(calls, sels)
        clean_up(reactor, calls, sels)
        pytest.fail(message, pytrace=False)
