"""The start and stop lines pass the level filter up to `error` (acct34): what says a
daemon is up, where, and that it stops is not lost at ``--log-level warn``."""

from __future__ import annotations

from typing import Any, cast

import pytest
from testkit.logs import events_while
from twisted.logger import ILogObserver, Logger, LogLevel

from packetlab.loglevel import START_STOP, filtered, start_stop


def written(level: str, emit: Any) -> list[str]:
    got: list[dict[str, Any]] = []
    log = Logger(namespace="pktproxy", observer=filtered(cast(ILogObserver, got.append), level))
    emit(log)
    return [e["log_format"] for e in got]


def test_tagged_start_and_stop_lines_pass_at_warn_and_error() -> None:
    def emit(log: Logger) -> None:
        log.info("setup port listening on {where}", where="127.0.0.1:1", **START_STOP)
        log.info("counters: {c}", c=0)  # a periodic line: filtered
        log.warn("refused {who}", who="x")
        log.info("stopping: {stats}", stats="", **START_STOP)

    everything = ["setup port listening on {where}", "counters: {c}", "refused {who}"]
    everything.append("stopping: {stats}")
    assert written("info", emit) == everything
    start_stop_and_warning = [everything[0], everything[2], everything[3]]
    assert written("warn", emit) == start_stop_and_warning
    assert written("error", emit) == [everything[0], everything[3]]
    assert written("critical", emit) == []


@pytest.mark.parametrize(
    ("namespace", "fmt", "kept"),
    [
        ("twisted.scripts._twistd_unix.UnixAppLogger",
         "twistd {version} ({exe} {pyVersion}) starting up.", True),
        ("twisted.scripts._twistd_unix.UnixAppLogger", "Server Shut Down.", True),
        ("twisted.internet.base", "Received SIGINT, shutting down.", True),
        ("twisted.scripts._twistd_unix.UnixAppLogger", "reactor class: {reactor}.", False),
        ("twisted.internet.base", "Main loop terminated.", False),
        ("pktproxy", "Server Shut Down.", False),  # Twisted's words, not Twisted's line
    ],
)  # fmt: skip
def test_twisteds_own_start_and_stop_lines(namespace: str, fmt: str, kept: bool) -> None:
    event = {"log_namespace": namespace, "log_format": fmt, "log_level": LogLevel.info}
    assert start_stop(event) is kept
    got: list[dict[str, Any]] = []
    filtered(cast(ILogObserver, got.append), "warn")(event)
    assert bool(got) is kept


def start_lines(start: Any) -> list[str]:
    """The START_STOP events `start()` logs, formatted."""
    from twisted.logger import formatEvent

    return [formatEvent(e) for e in events_while(start) if start_stop(e)]


def test_the_endpoint_says_where_it_connects_when_it_starts() -> None:
    import types

    from twisted.internet import defer
    from twisted.internet.testing import MemoryReactorClock

    from packetlab.endpoint.service import ControllerAddress, NoSubService, PlaintextLink
    from packetlab.endpoint.subscriber import BrokerSubscriber

    reactor = MemoryReactorClock()
    address = ControllerAddress("127.0.0.1", 20556)
    nosub = NoSubService(reactor, address, PlaintextLink(), lambda: None)  # type: ignore[arg-type,return-value]
    assert start_lines(nosub.startService) == [
        "pktendpoint: NoSub mode, connecting to controller 127.0.0.1:20556 over plain TCP"
    ]
    nosub.stopService()
    plan: Any = types.SimpleNamespace(chlist=[b"c"], dattr=b"")
    pending = types.SimpleNamespace(connect=lambda factory: defer.Deferred())  # never answers
    sub = BrokerSubscriber(reactor, "127.0.0.1:20557", lambda: pending, plan, print)
    assert start_lines(sub.startService) == [
        "pktendpoint: broker mode, subscribing to broker 127.0.0.1:20557"
    ]
    sub.stopService()
