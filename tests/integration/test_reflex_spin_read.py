"""`SpinReader` (packetlab.endpoint.reflexwarm) on real loopback UDP sockets: the busy-poll
spin reads a reflex socket only when a datagram waits and reading is on; TX stamps alone
(EPOLLERR) are left to the socket watcher; a closed socket is forgotten."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from packetlab.endpoint.reflexwarm import SpinReader
from packetlab.endpoint.timestamps import TxStampMatcher


class IO:
    """The reader side of a UDP socket, as `netio.UdpIO` offers it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reading = True
        self.got: list[bytes] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        while True:
            try:
                self.got.append(self.sock.recv(2048))
            except BlockingIOError:
                return


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_reads_only_a_waiting_datagram_and_only_while_reading(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    io = IO(a)
    r = SpinReader()
    assert not r.poll()  # nothing added
    r.add(io)
    assert len(r) == 1
    assert not r.poll()  # nothing waiting
    io.reading = False
    b.sendto(b"one", a.getsockname())
    assert not r.poll() and io.got == []  # paused: left for the session to resume
    io.reading = True
    assert r.poll() and io.got == [b"one"]
    assert not r.poll()
    r.remove(io)
    b.sendto(b"two", a.getsockname())
    assert not r.poll() and io.got == [b"one"]
    r.close()


def test_tx_stamps_alone_are_not_a_read(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    matcher = TxStampMatcher(a)
    io = IO(a)
    r = SpinReader()
    r.add(io)
    matcher.sendto(b"stamped", b.getsockname())  # its TX stamp waits on a's error queue
    assert not r.poll() and io.got == []
    r.close()


def test_a_closed_socket_is_forgotten(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    io = IO(c)
    r = SpinReader()
    r.add(io)
    c.close()  # the kernel drops it from the epoll set; fileno() is -1 now
    assert not r.poll()
    r.remove(io)
    assert len(r) == 0
    r.add(IO(a))  # another socket, maybe the same number: works
    assert len(r) == 1
    r.close()
