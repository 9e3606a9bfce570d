"""`SpliceRelay` in both socket modes (copy, splice) over real socketpairs and a fake
reactor that only records which descriptors are watched: the test plays the reactor
(calls doRead/doWrite itself), so every step is synchronous. Checks the buffered
ClientHello first, bytes in order both ways, backpressure (a full destination stops
the source being read instead of buffering), per-direction half-close, and a clean end."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from packetlab.proxy import splice
from packetlab.proxy.splice import RELAY_MODES, SpliceRelay

MODES = [m for m in RELAY_MODES if m != "splice" or splice.available()]


class WatchReactor:
    def __init__(self) -> None:
        self.readers: set[Any] = set()
        self.writers: set[Any] = set()

    def addReader(self, r: Any) -> None:
        self.readers.add(r)

    def removeReader(self, r: Any) -> None:
        self.readers.discard(r)

    def addWriter(self, w: Any) -> None:
        self.writers.add(w)

    def removeWriter(self, w: Any) -> None:
        self.writers.discard(w)

    def turn(self) -> None:
        """One reactor turn: every watched end that is ready gets its event."""
        for end in list(self.readers):
            end.doRead()
        for end in list(self.writers):
            end.doWrite()


class SockTransport:
    """What SpliceRelay uses of a Twisted TCP transport."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = ""

    def fileno(self) -> int:
        return self.sock.fileno()

    def stopReading(self) -> None:
        pass

    def stopWriting(self) -> None:
        pass

    def loseConnection(self) -> None:
        self.closed = "clean"
        self.sock.close()

    def abortConnection(self) -> None:
        self.closed = "abort"
        self.sock.close()


@pytest.fixture
def pairs() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    # endpoint <-> (a | relay | b) <-> manager
    ep, a = socket.socketpair()
    b, mgr = socket.socketpair()
    for s in (ep, mgr):
        s.setblocking(False)
    yield ep, a, b, mgr
    for s in (ep, a, b, mgr):
        s.close()


def recv_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = s.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def make(mode: str, pairs: Any, hello: bytes = b"HELLO") -> tuple[SpliceRelay, WatchReactor,
                                                                  list[str | None]]:  # fmt: skip
    _ep, a, b, _mgr = pairs
    reactor = WatchReactor()
    ends: list[str | None] = []
    counted = {"ab": 0, "ba": 0}
    relay = SpliceRelay(
        reactor,
        SockTransport(a),
        SockTransport(b),
        a_to_b=hello,
        count_ab=lambda n: counted.__setitem__("ab", counted["ab"] + n),
        count_ba=lambda n: counted.__setitem__("ba", counted["ba"] + n),
        done=ends.append,
        mode=mode,
    )
    relay.counted = counted  # type: ignore[attr-defined]
    return relay, reactor, ends


@pytest.mark.parametrize("mode", MODES)
def test_relays_both_ways_with_the_hello_first_and_half_close(mode: str, pairs: Any) -> None:
    ep, _a, _b, mgr = pairs
    relay, reactor, ends = make(mode, pairs)
    assert recv_all(mgr) == b"HELLO"  # sent at once, before anything read from the endpoint
    ep.sendall(b"up1")
    mgr.sendall(b"down1")
    reactor.turn()
    assert recv_all(mgr) == b"up1"
    assert recv_all(ep) == b"down1"
    ep.shutdown(socket.SHUT_WR)  # the endpoint's FIN reaches the manager ...
    reactor.turn()
    assert mgr.recv(10) == b""
    mgr.sendall(b"down2")  # ... who can still send
    reactor.turn()
    assert recv_all(ep) == b"down2"
    assert not ends and not relay.finished
    mgr.shutdown(socket.SHUT_WR)
    reactor.turn()
    assert ep.recv(10) == b""
    assert ends == [None] and relay.finished
    assert relay.a.transport.closed == relay.b.transport.closed == "clean"
    assert relay.counted == {"ab": len(b"HELLOup1"), "ba": len(b"down1down2")}
    assert not reactor.readers and not reactor.writers


@pytest.mark.parametrize("mode", MODES)
def test_a_small_read_ends_the_turn_and_a_bulk_read_reads_on(mode: str, pairs: Any) -> None:
    ep, _a, _b, mgr = pairs
    relay, reactor, _ends = make(mode, pairs, hello=b"")
    ep.sendall(b"msg")
    ep.shutdown(socket.SHUT_WR)
    reactor.turn()
    assert recv_all(mgr) == b"msg"  # relayed at once ...
    assert not relay.ab.eof  # ... without a second read in that turn
    reactor.turn()
    assert mgr.recv(10) == b""  # the FIN behind it, on the next turn

    bulk = os.urandom(4 * splice.SMALL_READ)
    mgr.sendall(bulk)
    mgr.shutdown(socket.SHUT_WR)
    reactor.turn()  # one turn: the bulk read reads on and finds the FIN
    assert relay.ba.eof and relay.ba.shut
    got = b""
    while len(got) <= len(bulk) and (chunk := ep.recv(1 << 20)):
        got += chunk
    assert got == bulk


@pytest.mark.parametrize("mode", MODES)
def test_full_destination_stops_reading_the_source(mode: str, pairs: Any) -> None:
    ep, _a, b, mgr = pairs
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    mgr.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    relay, reactor, _ends = make(mode, pairs, b"")
    data = os.urandom(4 << 20)
    sent = 0
    for _ in range(200):  # the manager reads nothing: the relay must stop taking bytes
        try:
            sent += ep.send(data[sent : sent + 65536])
        except BlockingIOError:
            pass
        reactor.turn()
    assert sent < len(data), "the endpoint could send everything to a manager that never reads"
    assert relay.a not in reactor.readers and relay.b in reactor.writers
    held = relay.ab.pending if mode == "copy" else b""
    assert len(held) <= splice.COPY_CHUNK  # at most one read's worth outside the kernel
    got = b""  # and nothing is lost once the manager reads
    for _ in range(10000):
        got += recv_all(mgr)
        try:
            sent += ep.send(data[sent : sent + 65536])
        except BlockingIOError:
            pass
        reactor.turn()
        if len(got) == len(data):
            break
    assert got == data


@pytest.mark.parametrize("mode", MODES)
def test_reset_on_one_side_ends_the_relay_with_an_error(mode: str, pairs: Any) -> None:
    ep, _a, _b, mgr = pairs
    relay, reactor, ends = make(mode, pairs)
    recv_all(mgr)
    mgr.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    mgr.close()  # unix socketpair: the relay sees EOF or an error on b, either ends it
    ep.sendall(b"x" * 1000)
    for _ in range(5):
        reactor.turn()
    ep.close()
    for _ in range(5):
        reactor.turn()
    assert relay.finished and len(ends) == 1
    assert not reactor.readers and not reactor.writers


def test_unknown_mode_refused(pairs: Any) -> None:
    with pytest.raises(ValueError, match="relay mode 'zero'"):
        make("zero", pairs)


@pytest.mark.parametrize("mode", MODES)
def test_relayed_tcp_sockets_get_nodelay_and_a_near_peer_a_fixed_rcvbuf(mode: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        left = socket.create_connection(("127.0.0.1", port))
        a, _ = server.accept()
        right = socket.create_connection(("127.0.0.1", port))
        b, _ = server.accept()
    try:
        relay = SpliceRelay(WatchReactor(), SockTransport(a), SockTransport(b), mode=mode)
        for s, end in ((a, relay.a), (b, relay.b)):
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            # loopback: a near peer (the handshake's round trip takes ~10-50 us), so a fixed
            # buffer instead of autotuning (Linux books twice the size asked for)
            info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 72)
            near = struct.unpack_from("I", info, 68)[0] <= splice.NEAR_RTT_US
            assert end.near == near
            if near:
                assert s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * splice.NEAR_RCVBUF
        assert relay.a.near or relay.b.near  # a loaded machine may slow one handshake
        relay.fail("test over")
    finally:
        for s in (left, right, a, b):
            s.close()
