"""UDP sockets with kernel TX timestamps (packetlab.endpoint.netio.UdpIO.stamp_tx) on real
loopback sockets, driven by hand through a MemoryReactorClock: tagged sends get a stamp,
the socket lives in the SocketWatcher (never in the reactor, which would drop it on the
EPOLLERR the stamps raise), receiving still works, dense sends are not stamped, a full
send buffer is retried by timer, and closing unwatches."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from testkit.clock import FakeClock
from twisted.internet.testing import MemoryReactorClock

from packetlab.endpoint.netio import ReactorNetwork, UdpIO
from packetlab.endpoint.sockets import PendingSend, Skt
from packetlab.endpoint.timestamps import SocketWatcher

LO4 = socket.inet_aton("127.0.0.1")


class Events:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def recv_room(self, skt: Skt) -> int:
        return 1 << 20

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any) -> None:
            self.calls.append((name, args))

        return record


@pytest.fixture
def rig() -> Iterator[tuple[ReactorNetwork, MemoryReactorClock, Events, socket.socket]]:
    reactor = MemoryReactorClock()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2)
    yield ReactorNetwork(reactor), reactor, Events(), sink
    sink.close()


def _watcher(reactor: MemoryReactorClock) -> SocketWatcher:
    (watcher,) = [r for r in reactor.readers if isinstance(r, SocketWatcher)]
    return watcher


def _pump(reactor: MemoryReactorClock) -> None:
    for r in list(reactor.readers):
        r.doRead()


def test_tagged_send_gets_a_tx_stamp_and_the_socket_survives_it(rig: Any) -> None:
    network, reactor, events, sink = rig
    skt = Skt(1, 4, 17, 1 << 16)
    io = network.open_udp(skt, LO4, 0, events)
    assert isinstance(io, UdpIO)
    assert io not in reactor.readers and _watcher(reactor) in reactor.readers
    p = PendingSend(skt, 7, b"tagged", sink.getsockname(), 0)
    before = time.time_ns()
    assert io.send(p) is True
    after = time.time_ns()
    assert sink.recv(100) == b"tagged"
    for _ in range(3):
        _pump(reactor)  # the watcher drains the stamp (EPOLLERR): the socket stays open
    stamp = io.tx_time(p, before)
    assert stamp is not None and before <= stamp <= after + 1_000_000
    assert io.tx_time(p, before) is None  # taken once
    # Receiving goes through the watcher and still works.
    sink.sendto(b"back", ("127.0.0.1", skt.lport))
    deadline = time.monotonic() + 2
    while not any(n == "udp_received" for n, _ in events.calls):
        assert time.monotonic() < deadline, "datagram not delivered"
        _pump(reactor)
    (args,) = [a for n, a in events.calls if n == "udp_received"]
    assert args[1] == b"back" and args[4] == sink.getsockname()[1]
    io.close()
    _pump(reactor)  # nothing left watched, nothing raised


def test_untagged_and_dense_sends_are_not_stamped(rig: Any) -> None:
    _, reactor, events, sink = rig
    clock = FakeClock(time.time_ns(), step=0)  # moves only when told (no VM stall)
    network = ReactorNetwork(reactor, clock=clock)
    skt = Skt(2, 4, 17, 1 << 16)
    io = network.open_udp(skt, LO4, 0, events)
    dest = sink.getsockname()
    plain = PendingSend(skt, 0, b"a", dest, 0)
    first = PendingSend(skt, 1, b"b", dest, 0)
    dense = PendingSend(skt, 2, b"c", dest, 0)
    sparse = PendingSend(skt, 3, b"d", dest, 0)
    start = time.time_ns()
    assert io.send(plain) and io.send(first) and io.send(dense)  # no time apart: dense
    clock.now += 1_000_000  # the next send is 1 ms after the previous one
    assert io.send(sparse)
    assert [sink.recv(10) for _ in range(4)] == [b"a", b"b", b"c", b"d"]
    assert io.tx_time(plain, start) is None
    assert io.tx_time(first, start) is not None
    assert io.tx_time(dense, start) is None
    assert io.tx_time(sparse, start) is not None
    io.close()


def test_full_send_buffer_is_retried_by_timer(rig: Any) -> None:
    network, reactor, events, sink = rig
    skt = Skt(3, 4, 17, 1 << 16)
    io = network.open_udp(skt, LO4, 0, events)
    dest = sink.getsockname()
    first = PendingSend(skt, 1, b"first", dest, 0)
    second = PendingSend(skt, 2, b"second", dest, 0)
    io._backlog.append(first)  # as if the kernel had answered EAGAIN for it
    assert io.send(second) is False  # queued behind it, in order
    assert io not in reactor.writers  # a stamped socket never goes to the reactor
    assert len(reactor.getDelayedCalls()) == 1
    reactor.advance(0.01)
    assert sink.recv(10) == b"first" and sink.recv(10) == b"second"
    done = [a[0] for n, a in events.calls if n == "send_done"]
    assert done == [first, second]
    assert reactor.getDelayedCalls() == []
    io.close()


def test_close_unwatches_and_cancels_the_retry(rig: Any) -> None:
    network, reactor, events, sink = rig
    skt = Skt(4, 4, 17, 1 << 16)
    io = network.open_udp(skt, LO4, 0, events)
    p = PendingSend(skt, 1, b"x", sink.getsockname(), 0)
    io._backlog.append(p)
    assert io.send(PendingSend(skt, 2, b"y", sink.getsockname(), 0)) is False
    assert len(io.close()) == 2
    assert reactor.getDelayedCalls() == []
    assert io.fileno() == -1
    assert _watcher(reactor)._watched == {}


def test_without_tx_stamps_the_socket_is_a_plain_reactor_reader(rig: Any) -> None:
    _, reactor, events, sink = rig
    network = ReactorNetwork(reactor, tx_stamps=False)
    skt = Skt(5, 4, 17, 1 << 16)
    io = network.open_udp(skt, LO4, 0, events)
    assert io in reactor.readers
    p = PendingSend(skt, 1, b"x", sink.getsockname(), 0)
    assert io.send(p) is True
    assert io.tx_time(p, 0) is None
    io.close()
    assert io not in reactor.readers
