"""packetlab.tls.directwrite: the private Twisted attributes the direct send relies on
(pinned, so a Twisted upgrade that changes them fails here), the direct send itself over
a real `tcp.Connection` on a socketpair (no reactor runs: `MemoryReactor` records what
would be registered with epoll), and cork/uncork."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from zope.interface import implementer

from packetlab.tls.directwrite import (
    CORK_LIMIT,
    DirectWriter,
    PlainFrameWriter,
    frame_writer,
    socket_connection,
)


@pytest.fixture
def pair() -> Iterator[tuple[tcp.Connection, socket.socket, MemoryReactor]]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    reactor = MemoryReactor()
    conn = tcp.Connection(ours, Protocol(), reactor)
    conn.connected = True
    yield conn, peer, reactor
    ours.close()
    peer.close()


def drain(peer: socket.socket) -> bytes:
    peer.setblocking(False)
    out = b""
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_pinned_twisted_attributes(pair: Any) -> None:
    """What DirectWriter reads: if this fails after a Twisted upgrade, directwrite.py
    must be revisited before anything else (it would send out of order)."""
    conn, _peer, reactor = pair
    assert isinstance(conn, FileDescriptor)
    # The socket Twisted sends on, and its two-level write buffer.
    assert isinstance(conn.socket, socket.socket)  # type: ignore[attr-defined]
    assert conn.dataBuffer == b"" and conn.offset == 0 and conn._tempDataLen == 0
    assert conn._tempDataBuffer == []
    assert conn.connected and not conn.disconnecting
    conn.write(b"abc")  # buffered, not sent; registered for writability
    assert conn._tempDataLen == 3 and conn._tempDataBuffer == [b"abc"]
    assert conn in reactor.writers
    conn.doWrite()  # the reactor's turn: joins into dataBuffer, sends, unregisters
    assert conn._tempDataLen == 0 and len(conn.dataBuffer) == conn.offset
    assert conn not in reactor.writers
    # The buffer limit that pauses a producer (backpressure) is bufferSize.
    assert isinstance(conn.bufferSize, int)


def test_direct_send_when_idle_registers_nothing(pair: Any) -> None:
    conn, peer, reactor = pair
    w = DirectWriter(conn)
    assert w.idle()
    w.send(b"hello")
    assert drain(peer) == b"hello"
    assert conn not in reactor.writers and not conn._tempDataLen


def test_send_goes_behind_what_twisted_holds(pair: Any) -> None:
    conn, peer, _reactor = pair
    conn.write(b"first ")
    w = DirectWriter(conn)
    assert not w.idle()
    w.send(b"second")
    assert drain(peer) == b""  # nothing jumped the queue
    conn.doWrite()
    assert drain(peer) == b"first second"


@implementer(IPushProducer)
class Producer:
    def __init__(self) -> None:
        self.state = "running"

    def pauseProducing(self) -> None:
        self.state = "paused"

    def resumeProducing(self) -> None:
        self.state = "running"

    def stopProducing(self) -> None:
        self.state = "stopped"


def test_partial_send_leaves_the_rest_to_twisted_and_pauses_the_producer(pair: Any) -> None:
    conn, peer, reactor = pair
    conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    producer = Producer()
    conn.registerProducer(producer, True)
    conn.bufferSize = 64 * 1024
    data = bytes(range(256)) * 4096  # 1 MiB: more than the socket takes
    DirectWriter(conn).send(data)
    held = conn._tempDataLen
    assert 0 < held < len(data)  # some went directly, the rest is Twisted's
    assert conn in reactor.writers
    assert producer.state == "paused"  # backpressure as with Twisted's own write
    got = drain(peer)
    while conn._tempDataLen or len(conn.dataBuffer) > conn.offset:
        conn.doWrite()
        got += drain(peer)
    assert got == data
    assert producer.state == "running"


def test_closing_connection_is_not_written_directly(pair: Any) -> None:
    conn, _peer, _ = pair
    conn.disconnecting = True
    assert not DirectWriter(conn).idle()


def test_socket_connection_finds_tcp_below_wrappers(pair: Any) -> None:
    conn, _, _ = pair

    class Wrapper:
        transport = conn

    assert socket_connection(conn) is conn
    assert socket_connection(Wrapper()) is conn
    assert socket_connection(StringTransport()) is None


# ----------------------------------------------------------------------- cork / uncork


def test_corked_frames_leave_in_one_write() -> None:
    t = StringTransport()
    writes: list[bytes] = []
    t.write = writes.append  # type: ignore[method-assign]
    w = frame_writer(t)
    assert isinstance(w, PlainFrameWriter)
    w.write(b"a")  # not corked, no turn batching: at once
    assert writes == [b"a"]
    w.cork()
    w.write(b"b")
    w.write(b"c")
    w.cork()  # nested
    w.write(b"d")
    w.uncork()
    assert writes == [b"a"]
    w.uncork()
    assert writes == [b"a", b"bcd"]


def test_cork_limit_bounds_what_is_held() -> None:
    t = StringTransport()
    w = PlainFrameWriter(t)
    w.cork()
    frame = bytes(1000)
    for _ in range(CORK_LIMIT // 1000):
        w.write(frame)
    assert t.value() == b""
    w.write(frame)  # reaches the limit: emitted, still corked
    assert len(t.value()) == (CORK_LIMIT // 1000 + 1) * 1000
    w.write(b"x")
    assert t.value().endswith(frame)
    w.uncork()
    assert t.value().endswith(b"x")


def test_turn_batching_and_reads_do_not_wait_for_the_turn() -> None:
    clock = Clock()
    t = StringTransport()
    w = PlainFrameWriter(t)
    w.batch_turns(clock)
    w.write(b"1")
    w.write(b"2")
    assert t.value() == b"" and len(clock.getDelayedCalls()) == 1
    w.cork()  # a read in the same turn: its answers leave when it ends
    w.write(b"3")
    w.uncork()
    assert t.value() == b"123"
    w.write(b"4")  # later in the turn
    assert t.value() == b"123"
    clock.advance(0)
    assert t.value() == b"1234" and not clock.getDelayedCalls()


def test_discard_forgets_frames_and_the_pending_turn() -> None:
    clock = Clock()
    t = StringTransport()
    w = PlainFrameWriter(t)
    w.batch_turns(clock)
    w.write(b"lost")
    w.discard()
    assert not clock.getDelayedCalls()
    w.flush()
    assert t.value() == b""
