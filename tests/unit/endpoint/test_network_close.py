"""Stopping the endpoint service gives the network's reactor resources back (an endpoint
run in-process, as `pktlab run` does, must leave its reactor clean)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from testkit.clock import FakeClock
from twisted.internet.base import _ThreePhaseEvent

from packetlab.endpoint.netio import ReactorNetwork
from packetlab.endpoint.tap import _Lifecycle
from packetlab.endpoint.timestamps import SocketWatcher


def watchers(reactor: FakeClock) -> list[object]:
    return [r for r in reactor.getReaders() if isinstance(r, SocketWatcher)]


class ShutdownClock(FakeClock):
    """A FakeClock with the real reactor's system events (ReactorBase's own
    _ThreePhaseEvent): a trigger that has fired is gone, and removing it raises."""

    def __init__(self) -> None:
        super().__init__()
        self.events: dict[str, _ThreePhaseEvent] = {}

    def addSystemEventTrigger(  # type: ignore[override]
        self, phase: str, event: str, f: Callable[..., Any], *args: Any, **kw: Any
    ) -> tuple[str, Any]:
        return event, self.events.setdefault(event, _ThreePhaseEvent()).addTrigger(
            phase, f, *args, **kw
        )

    def removeSystemEventTrigger(self, trigger: tuple[str, Any]) -> None:
        event, handle = trigger
        self.events[event].removeTrigger(handle)

    def fireSystemEvent(self, event: str) -> None:
        self.events[event].fireEvent()


class Scheduler:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> object:
        self.calls.append("stop")
        return "stopped"


def test_close_removes_the_tx_stamp_watcher_and_is_idempotent() -> None:
    reactor = FakeClock()
    network = ReactorNetwork(reactor)
    assert len(watchers(reactor)) == 1
    network.close()
    assert watchers(reactor) == []
    network.close()


def test_the_service_lifecycle_stops_the_scheduler_then_closes_the_network() -> None:
    reactor = FakeClock()
    scheduler, network = Scheduler(), ReactorNetwork(reactor)
    life = _Lifecycle(scheduler, network)  # type: ignore[arg-type]
    life.start()
    assert scheduler.calls == ["start"] and len(watchers(reactor)) == 1
    stopped: list[int] = []
    life.on_stop = lambda: stopped.append(1)  # the start-up trim's cancel (tap.py sets it)
    assert life.stop() == "stopped"
    assert scheduler.calls == ["start", "stop"] and watchers(reactor) == [] and stopped == [1]


def test_close_before_and_after_the_reactor_shuts_down() -> None:
    reactor = ShutdownClock()
    ReactorNetwork(reactor).close()  # the trigger is removed: nothing fires at shutdown
    network = ReactorNetwork(reactor)
    reactor.fireSystemEvent("shutdown")  # a Ctrl-C while the in-process endpoint starts
    assert watchers(reactor) == []
    network.close()  # after its trigger fired: nothing left to remove (was a ValueError)
