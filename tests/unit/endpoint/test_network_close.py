"""Stopping the endpoint service gives the network's reactor resources back (an endpoint
run in-process, as `pktlab run` does, must leave its reactor clean)."""

from __future__ import annotations

from testkit.clock import FakeClock

from packetlab.endpoint.netio import ReactorNetwork
from packetlab.endpoint.tap import _Lifecycle
from packetlab.endpoint.timestamps import SocketWatcher


def watchers(reactor: FakeClock) -> list[object]:
    return [r for r in reactor.getReaders() if isinstance(r, SocketWatcher)]


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
    assert life.stop() == "stopped"
    assert scheduler.calls == ["start", "stop"] and watchers(reactor) == []
