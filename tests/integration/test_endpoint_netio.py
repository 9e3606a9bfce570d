"""The socket layer (packetlab.endpoint.netio) on real loopback sockets, driven by hand
through a MemoryReactor: partial TCP writes, FIN after the last byte, connect outcomes,
UDP send backlog, budget stops, and error mapping."""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactor

from packetlab.endpoint.netio import ReactorNetwork, TcpIO, UdpIO
from packetlab.endpoint.sockets import OpenError, PendingSend, Skt
from packetlab.endpoint.timestamps import SocketWatcher
from packetlab.wire.constants import SocketState, Status

LO4 = socket.inet_aton("127.0.0.1")


class Events:
    """Records every SocketEvents call; `room` is what recv_room answers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.room = 1 << 20

    def names(self) -> list[str]:
        return [n for n, _ in self.calls]

    def args(self, name: str) -> tuple[Any, ...]:
        """The arguments (after the socket/send) of the first call of `name`."""
        return next(a for n, a in self.calls if n == name)[1:]

    def recv_room(self, skt: Skt) -> int:
        return self.room

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any) -> None:
            self.calls.append((name, args))

        return record


def pump(reactor: MemoryReactor, rounds: int = 50) -> None:
    """Call doRead/doWrite of registered descriptors, like one reactor turn each."""
    for _ in range(rounds):
        for r in list(reactor.readers):
            r.doRead()
        for w in list(reactor.writers):
            w.doWrite()


@pytest.fixture
def net() -> Iterator[tuple[ReactorNetwork, MemoryReactor, Events]]:
    reactor = MemoryReactor()
    yield ReactorNetwork(reactor), reactor, Events()


def until(cond: Any, reactor: MemoryReactor, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        pump(reactor, 1)
        time.sleep(0.001)


def connected(
    network: ReactorNetwork, reactor: MemoryReactor, events: Events
) -> tuple[TcpIO, socket.socket, socket.socket]:
    """A TCP socket of the endpoint (id 2) connected to a loopback server: the endpoint's
    io, the server's end, the listener."""
    server = socket.create_server(("127.0.0.1", 0))
    skt = Skt(2, 4, 6, 1 << 20)
    io = network.open_tcp(skt, bytes(4), 0, LO4, server.getsockname()[1], events)
    peer, _ = server.accept()
    until(lambda: "tcp_established" in events.names(), reactor)
    assert isinstance(io, TcpIO)
    return io, peer, server


def test_tcp_partial_writes_then_ntag_then_fin(net: Any) -> None:
    network, reactor, events = net
    io, peer, server = connected(network, reactor, events)
    io._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    blob = bytes(range(256)) * 16384  # 4 MiB: far more than the socket buffers hold
    p = PendingSend(io.skt, 5, blob, None, 0)
    assert io.send(p) is False  # not all written yet
    io.shutdown_write()  # FIN only after the last byte
    got = bytearray()
    peer.setblocking(False)
    deadline = time.monotonic() + 10
    while True:
        assert time.monotonic() < deadline
        pump(reactor, 1)
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            continue
        if not chunk:
            break
        got += chunk
    assert bytes(got) == blob
    names = events.names()
    assert names.index("send_done") < names.index("tcp_fin_sent")
    t, err = events.args("send_done")
    assert err == 0 and t > 0
    assert io.close() == []
    server.close()
    peer.close()


def test_tcp_connect_refused(net: Any) -> None:
    network, reactor, events = net
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    skt = Skt(3, 4, 6, 4096)
    network.open_tcp(skt, bytes(4), 0, LO4, holder.getsockname()[1], events)
    until(lambda: "tcp_connect_failed" in events.names(), reactor)
    assert events.args("tcp_connect_failed") == (SocketState.REFUSED,)
    holder.close()


def test_tcp_budget_stop_eof_and_reset(net: Any) -> None:
    network, reactor, events = net
    io, peer, server = connected(network, reactor, events)
    events.room = 0
    peer.sendall(b"data")
    until(lambda: "tcp_blocked" in events.names(), reactor)
    assert io not in reactor.readers
    events.room = 100
    io.resume_reading()
    until(lambda: "tcp_received" in events.names(), reactor)
    data, when = events.args("tcp_received")
    assert data == b"data" and abs(when - time.time_ns()) < 5 * 10**9
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST
    until(lambda: "tcp_error" in events.names(), reactor)
    assert events.args("tcp_error") == (SocketState.RESET,)
    io.close()
    server.close()


def test_a_failed_send_comes_after_the_data_the_kernel_still_holds(net: Any) -> None:
    """Session 29: reading stopped for want of budget, the peer sends N bytes then
    resets, and a send fails. The failure closed the socket at once and the N bytes
    in the kernel were never delivered. Now they are read once there is room, and the
    failure (tcp_error RESET, the failed send still unsent for its ntag) follows them,
    as a read error after data does."""
    network, reactor, events = net
    io, peer, server = connected(network, reactor, events)
    events.room = 0
    blob = bytes(range(256)) * 200  # 51,200 bytes: within the kernel's receive buffer
    peer.sendall(blob)
    until(lambda: "tcp_blocked" in events.names(), reactor)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST after the data
    p = PendingSend(io.skt, 9, b"late", None, 0)
    assert io.send(p) is False  # ECONNRESET: held while the data waits
    q = PendingSend(io.skt, 10, b"later", None, 0)
    assert io.send(q) is False  # waits behind it
    pump(reactor, 5)
    assert "tcp_error" not in events.names()
    events.room = 1 << 20
    io.resume_reading()
    until(lambda: "tcp_error" in events.names(), reactor)
    names = events.names()
    got = b"".join(a[1] for n, a in events.calls if n == "tcp_received")
    assert got == blob
    assert names.index("tcp_error") > max(i for i, n in enumerate(names) if n == "tcp_received")
    assert "tcp_eof" not in names
    assert events.args("tcp_error") == (SocketState.RESET,)
    assert io.close() == [p, q]  # dropped by the session: ntag(EPKTNOTSENT) each
    server.close()


def test_a_failed_send_with_nothing_unread_fails_at_once(net: Any) -> None:
    network, reactor, events = net
    io, peer, server = connected(network, reactor, events)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    io._stop_reading()  # not read: the reset is learnt by the send
    peer.close()
    p = PendingSend(io.skt, 9, b"late", None, 0)
    assert io.send(p) is False
    assert events.args("tcp_error") == (SocketState.RESET,)
    assert io.close() == [p]
    server.close()


def test_bind_errors_map_to_status(net: Any) -> None:
    network, _, events = net
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    with pytest.raises(OpenError) as e:
        network.open_udp(Skt(1, 4, 17, 0), LO4, port, events)
    assert e.value.status == Status.EUDPNOPORT
    with pytest.raises(OpenError) as e:
        network.open_udp(Skt(1, 4, 17, 0), bytes([192, 0, 2, 77]), 0, events)
    assert e.value.status == Status.ESKTNOADDR
    listening = socket.create_server(("127.0.0.1", 0))
    with pytest.raises(OpenError) as e:
        network.open_tcp(Skt(2, 4, 6, 0), LO4, listening.getsockname()[1], None, None, events)
    assert e.value.status == Status.ETCPNOPORT
    taken.close()
    listening.close()


class FullSocket:
    """A UDP socket whose send buffer is full for the first `full` sends."""

    def __init__(self, full: int) -> None:
        self.full = full
        self.sent: list[bytes] = []
        self.closed = False

    def fileno(self) -> int:
        return 1000

    def sendto(self, data: bytes, dest: Any) -> int:
        if self.full:
            self.full -= 1
            raise BlockingIOError(errno.EAGAIN, "full")
        if dest[1] == 0:
            raise OSError(errno.EINVAL, "port 0")
        self.sent.append(data)
        return len(data)

    def close(self) -> None:
        self.closed = True


def test_udp_backlog_keeps_order_until_writable() -> None:
    reactor = MemoryReactor()
    events = Events()
    sock = FullSocket(full=2)
    skt = Skt(1, 4, 17, 0)
    io = UdpIO(reactor, sock, skt, events, time.time_ns)
    sends = [PendingSend(skt, i, b"%d" % i, ("127.0.0.1", 9 if i != 2 else 0), 0) for i in range(4)]
    assert io.send(sends[0]) is False  # EAGAIN: queued, wait for writable
    assert io.send(sends[1]) is False  # behind it, even though the buffer may have room
    assert io in reactor.writers
    io.doWrite()  # still full once
    assert sock.sent == []
    io.doWrite()
    assert sock.sent == [b"0", b"1"] and io not in reactor.writers
    assert [a[0] for _, a in events.calls] == sends[:2]
    assert all(a[2] == 0 for _, a in events.calls)
    assert io.send(sends[3]) is True
    sock.full = 1
    assert io.send(sends[2]) is False
    io.doWrite()  # port 0 fails: reported as an error, not retried
    assert events.calls[-1][1][2] == errno.EINVAL
    assert io.close() == [] and sock.closed


def test_tcp_listen_accepts_one(net: Any) -> None:
    network, reactor, events = net
    skt = Skt(8, 4, 6, 1 << 16)
    io = network.open_tcp(skt, LO4, 0, None, None, events)
    assert isinstance(io, TcpIO) and skt.lport != 0
    c = socket.create_connection(("127.0.0.1", skt.lport))
    until(lambda: "tcp_established" in events.names(), reactor)
    laddr, lport, raddr, rport = events.args("tcp_established")
    assert (laddr, lport, raddr, rport) == (LO4, skt.lport, LO4, c.getsockname()[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", skt.lport))
    c.close()
    io.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_udp_rehearsal_sends_nothing(net: Any, host: str) -> None:
    """The scheduler's rehearsal of a send (MSG_PROBE) takes the kernel path and sends
    nothing; the real send after it arrives alone."""
    network, _reactor, events = net
    family = socket.AF_INET if host == "127.0.0.1" else socket.AF_INET6
    sink = socket.socket(family, socket.SOCK_DGRAM)
    sink.bind((host, 0))
    sink.settimeout(0.2)
    skt = Skt(3, 4 if family == socket.AF_INET else 6, 17, 1 << 16)
    io = network.open_udp(skt, socket.inet_pton(family, host), 0, events)
    try:
        pending = PendingSend(skt, 1, b"probe me", sink.getsockname()[:2], 0, io)
        pending.rehearse()
        with pytest.raises(TimeoutError):
            sink.recv(64)
        assert pending() is True
        assert sink.recv(64) == b"probe me"
    finally:
        io.close()
        sink.close()


def test_tcp_data_and_fin_together_are_read_in_one_turn(net: Any) -> None:
    """A peer that sends its reply and closes: the data and the EOF come out of one
    doRead, so the ndata and the PEERCLOSED leave together (not a reactor turn apart)."""
    network, reactor, events = net
    io, peer, server = connected(network, reactor, events)
    peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    peer.shutdown(socket.SHUT_WR)  # the FIN follows the reply at once
    assert select.select([io.fileno()], [], [], 5)[0], "the reply never came"
    time.sleep(0.05)  # the FIN is in too (loopback delivers in order, at once)
    events.calls.clear()
    io.doRead()  # one reactor turn
    assert events.names() == ["tcp_received", "tcp_eof"]
    assert events.args("tcp_received")[0].endswith(b"hi")
    assert io not in reactor.readers
    io.close()
    peer.close()
    server.close()


@pytest.mark.parametrize("tx_stamps", [True, False], ids=["tx-stamp-watcher", "own-watcher"])
def test_tcp_reset_after_eof_is_reported_when_it_arrives(tx_stamps: bool) -> None:
    """Session 28 (epclose28): the server closes, our send after its close draws its RST.
    The endpoint no longer reads the socket (a readable EOF would wake it forever), but
    the RST now gives tcp_error(RESET) in the next reactor turn, not at our next send."""
    reactor = MemoryReactor()
    network, events = ReactorNetwork(reactor, tx_stamps=tx_stamps), Events()
    io, peer, server = connected(network, reactor, events)
    peer.close()  # FIN
    until(lambda: "tcp_eof" in events.names(), reactor)
    assert io not in reactor.readers
    pump(reactor)  # a watched EOF socket wakes nobody: no event, no spin
    assert events.names()[-1] == "tcp_eof"
    assert io.send(PendingSend(io.skt, 1, b"x", None, 0)) is True  # goes out; RST back
    until(lambda: "tcp_error" in events.names(), reactor)
    assert events.args("tcp_error") == (SocketState.RESET,)
    io.close()
    pump(reactor)
    assert events.names().count("tcp_error") == 1
    network.close()
    server.close()


def test_tcp_eof_then_our_fin_is_not_watched(net: Any) -> None:
    """END (both directions shut) is EPOLLHUP for good: the socket leaves the watcher
    at our FIN, and no reactor turn sees it again."""
    network, reactor, events = net
    io, peer, server = connected(network, reactor, events)
    peer.shutdown(socket.SHUT_WR)
    until(lambda: "tcp_eof" in events.names(), reactor)
    watcher = network._eof_watcher()
    assert io.fileno() in watcher._watched
    io.shutdown_write()
    assert io.fileno() not in watcher._watched and "tcp_fin_sent" in events.names()
    assert peer.recv(10) == b""
    peer.close()
    time.sleep(0.02)
    pump(reactor)
    assert "tcp_error" not in events.names()
    io.close()
    server.close()


def test_tcp_reset_already_pending_at_eof_is_reported(net: Any) -> None:
    """Data, FIN and RST all in before the endpoint reads: recv gives the data, then
    EOF (never the error), and the RST waits in SO_ERROR; joining the epoll reports it
    at once (level-triggered), after the data and the PEERCLOSED, in their order."""
    network, reactor, events = net
    io, peer, server = connected(network, reactor, events)
    peer.sendall(b"bye")
    peer.shutdown(socket.SHUT_WR)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST after the FIN
    time.sleep(0.02)
    until(lambda: "tcp_error" in events.names(), reactor)
    names = [n for n in events.names() if n != "tcp_established"]
    assert names == ["tcp_received", "tcp_eof", "tcp_error"], names
    assert events.args("tcp_received")[0] == b"bye"
    assert events.args("tcp_error") == (SocketState.RESET,)
    io.close()
    server.close()


def test_an_edge_watch_keeps_epollet_when_reading_is_paused() -> None:
    """The after-EOF watch is edge-triggered (an error that stays set must not wake the
    reactor on every turn); pausing a socket's reading keeps the flag."""
    watcher = SocketWatcher(MemoryReactor())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        watcher.watch(sock, on_readable=lambda: None, edge=True)
        entry = watcher._watched[sock.fileno()]
        assert entry.events == select.EPOLLIN | select.EPOLLET
        watcher.set_reading(sock, False)
        assert entry.events == select.EPOLLET
        watcher.set_reading(sock, True)
        assert entry.events == select.EPOLLIN | select.EPOLLET
        watcher.unwatch(sock)
    watcher.close()
