"""BusyPollUs on a real (private, not the global) EPollReactor: pins the private Twisted
details `packetlab.endpoint.busypoll` relies on, so a Twisted upgrade that changes them
fails here rather than silently turning busy-polling off."""

from __future__ import annotations

import inspect
import resource
import select
import socket
from collections.abc import Iterator

import pytest
from twisted.internet.abstract import FileDescriptor
from twisted.internet.epollreactor import EPollReactor

from packetlab.endpoint.busypoll import SpinningPoller, install


class Reader(FileDescriptor):
    def __init__(self, sock: socket.socket, reactor: EPollReactor) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.got = b""

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        self.got += self.sock.recv(4096)


@pytest.fixture
def world() -> Iterator[tuple[EPollReactor, Reader, socket.socket]]:
    reactor = EPollReactor()
    a, b = socket.socketpair()
    reader = Reader(a, reactor)
    reactor.addReader(reader)
    try:
        yield reactor, reader, b
    finally:
        reactor.removeAll()
        reactor.waker.connectionLost(None)
        reactor._poller.close()
        a.close()
        b.close()


def test_pinned_twisted_attributes() -> None:
    """doPoll polls `self._poller` (an epoll object) with (timeout s, maxevents)."""
    reactor = EPollReactor()
    try:
        assert isinstance(reactor._poller, select.epoll)
        assert "self._poller.poll(timeout, len(self._selectables))" in inspect.getsource(
            EPollReactor.doPoll
        )
    finally:
        reactor.waker.connectionLost(None)
        reactor._poller.close()


def test_the_reactor_spins_after_io_and_blocks_when_idle(world: tuple) -> None:
    reactor, reader, peer = world
    poller = install(reactor, 200_000)  # 200 ms: long enough to be sure on a loaded host
    assert isinstance(poller, SpinningPoller) and reactor._poller is poller
    peer.send(b"one")
    reactor.doIteration(1.0)
    assert reader.got == b"one"
    peer.send(b"two")  # arrives before the next turn: found while spinning
    reactor.doIteration(1.0)
    assert reader.got == b"onetwo"
    assert poller.spins == 1
    # No I/O for the whole window: it spins 200 ms, then blocks for the rest.
    reactor.doIteration(0.3)
    assert poller.spins == 1
    # Idle now: the next turn blocks at once and burns (almost) no CPU.
    before = resource.getrusage(resource.RUSAGE_SELF)
    reactor.doIteration(0.2)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 0.05, f"an idle turn used {cpu:.3f} s of CPU"


def test_install_zero_leaves_the_reactor_alone(world: tuple) -> None:
    reactor, _, _ = world
    epoll = reactor._poller
    assert install(reactor, 0) is None
    assert reactor._poller is epoll
