"""A TCP socket past the peer's FIN is watched for a reset (session 28, epclose28).

Natively a program writing to a server that closed gets EPIPE on its 2nd send (the
server's RST answers the 1st); under `pktlab wrap` it was the 3rd: the endpoint stopped
reading at EOF and learnt of the RST only when its next send failed. Now the socket joins
the network's shared epoll (`SocketWatcher`, no events asked: EPOLLERR/EPOLLHUP only) at
EOF, and the reset reaches the session (nstat RESET) when it arrives. Over fakes here;
tests/integration/test_endpoint_netio.py and test_wrap_eof28.py run the real sockets.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

import pytest
from testkit.clock import FakeClock

from packetlab.endpoint.netio import ReactorNetwork, TcpIO
from packetlab.endpoint.sockets import Skt
from packetlab.endpoint.timestamps import SocketWatcher
from packetlab.wire.constants import SocketState


class Events:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def names(self) -> list[str]:
        return [n for n, _ in self.calls]

    def recv_room(self, skt: Skt) -> int:
        return 1 << 20

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any) -> None:
            self.calls.append((name, args[1:]))

        return record


class FakeSock:
    """A connected stream whose next recv is the peer's FIN."""

    def __init__(self) -> None:
        self.closed = False
        self.shut: list[int] = []

    def fileno(self) -> int:
        return -1 if self.closed else 7

    def recvmsg(self, n: int, anc: int) -> tuple[bytes, list[Any], int, Any]:
        return b"", [], 0, None

    def shutdown(self, how: int) -> None:
        self.shut.append(how)

    def close(self) -> None:
        self.closed = True


class FakeWatcher:
    def __init__(self, fail: Exception | None = None) -> None:
        self.watched: dict[object, Callable[[int], object]] = {}
        self.fail = fail

    def watch(self, sock: object, *, on_error: Callable[[int], object], edge: bool) -> None:
        if self.fail is not None:
            raise self.fail
        assert sock not in self.watched and edge
        self.watched[sock] = on_error

    def unwatch(self, sock: object) -> None:
        self.watched.pop(sock, None)


class Reactor:
    def __init__(self) -> None:
        self.readers: set[object] = set()
        self.writers: set[object] = set()

    def addReader(self, r: object) -> None:
        self.readers.add(r)

    def removeReader(self, r: object) -> None:
        self.readers.discard(r)

    def addWriter(self, w: object) -> None:
        self.writers.add(w)

    def removeWriter(self, w: object) -> None:
        self.writers.discard(w)


def tcp_io(reactor: Reactor, sock: FakeSock, events: Events, watcher: FakeWatcher) -> TcpIO:
    """An established-to-be TcpIO (id 2) over the fakes (duck-typed, hence Any)."""
    fakes: Any = (reactor, sock, Skt(2, 4, 6, 4096), events, lambda: 1, False, lambda: watcher)
    return TcpIO(*fakes)


def at_eof(watcher: FakeWatcher) -> tuple[TcpIO, FakeSock, Events, Reactor]:
    """An established TcpIO (id 2) that has just read the peer's FIN."""
    reactor, sock, events = Reactor(), FakeSock(), Events()
    io = tcp_io(reactor, sock, events, watcher)
    io._connecting = False
    io._start_reading()
    io._stop_writing()
    io.doRead()
    return io, sock, events, reactor


def test_a_reset_after_eof_is_reported_when_it_arrives() -> None:
    watcher = FakeWatcher()
    io, sock, events, reactor = at_eof(watcher)
    assert events.names() == ["tcp_eof"]
    assert io not in reactor.readers  # a readable EOF is not polled (it would spin)
    assert list(watcher.watched) == [sock]  # but its errors are
    watcher.watched[sock](errno.EPIPE)  # the RST to a send after the close (CLOSE_WAIT)
    assert events.calls[1:] == [("tcp_error", (SocketState.RESET,))]


@pytest.mark.parametrize(
    ("err", "state"),
    [(errno.ECONNRESET, SocketState.RESET), (errno.ETIMEDOUT, SocketState.TIMEDOUT)],
    ids=["reset", "timedout"],
)
def test_other_errors_after_eof_map_as_a_read_error(err: int, state: SocketState) -> None:
    watcher = FakeWatcher()
    _, sock, events, _ = at_eof(watcher)
    watcher.watched[sock](err)
    assert events.calls[-1] == ("tcp_error", (state,))


def test_closing_unwatches_before_the_fd_goes() -> None:
    watcher = FakeWatcher()
    io, sock, _, _ = at_eof(watcher)
    assert io.close() == []
    assert watcher.watched == {} and sock.closed


def test_our_fin_after_eof_unwatches() -> None:
    """EOF then our FIN is END: a shut socket is EPOLLHUP for good and nothing can fail."""
    watcher = FakeWatcher()
    io, sock, events, _ = at_eof(watcher)
    io.shutdown_write()
    assert sock.shut == [socket.SHUT_WR] and watcher.watched == {}
    assert events.names() == ["tcp_eof", "tcp_fin_sent"]


def test_no_watch_when_our_side_was_already_shut() -> None:
    watcher = FakeWatcher()
    reactor, sock, events = Reactor(), FakeSock(), Events()
    io = tcp_io(reactor, sock, events, watcher)
    io._connecting = False
    io._stop_writing()
    io.shutdown_write()  # WFIN
    io._start_reading()
    io.doRead()  # then the peer's FIN: END
    assert events.names() == ["tcp_fin_sent", "tcp_eof"] and watcher.watched == {}


def test_a_watcher_that_refuses_leaves_the_old_behaviour() -> None:
    watcher = FakeWatcher(fail=RuntimeError("SocketWatcher is closed"))
    io, sock, events, _ = at_eof(watcher)
    assert events.names() == ["tcp_eof"]  # no crash; the next send's failure reports it
    assert io.close() == [] and sock.closed


def watchers(reactor: FakeClock) -> list[SocketWatcher]:
    return [r for r in reactor.getReaders() if isinstance(r, SocketWatcher)]


def test_without_tx_stamps_the_eof_watcher_is_made_at_first_use_and_closed() -> None:
    reactor = FakeClock()
    network = ReactorNetwork(reactor, tx_stamps=False)
    assert watchers(reactor) == []  # nothing until a TCP socket reaches EOF
    first = network._eof_watcher()
    assert network._eof_watcher() is first and watchers(reactor) == [first]
    network.close()
    assert watchers(reactor) == []


def test_with_tx_stamps_the_eof_watcher_is_the_tx_stamp_watcher() -> None:
    reactor = FakeClock()
    network = ReactorNetwork(reactor)
    assert watchers(reactor) == [network._eof_watcher()]
    network.close()
    assert watchers(reactor) == []
