"""Kernel drops on real sockets over loopback (session 20, ep20): a flood the endpoint
does not read overflows the socket's queue; every datagram sent is then delivered or
counted as a drop, with no datagram after the flood to carry the count.

* UDP: the drop count rides with datagrams read after a drop (SO_RXQ_OVFL); the last
  drops of a flood are read from SO_MEMINFO when the socket drains.
* Raw capture (AF_PACKET, needs root): PACKET_STATISTICS' tp_drops, read at each wake-up.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest
from testkit.clock import FakeClock

from packetlab.controller.filters import tcpdump_filter
from packetlab.endpoint import raw
from packetlab.endpoint.bpf import CaptureSocket
from packetlab.endpoint.netio import SO_RXQ_OVFL, UdpIO
from packetlab.endpoint.sockets import Skt
from packetlab.endpoint.timestamps import enable_rx_timestamps

SENT = 400
SIZE = 1000


class Events:
    def __init__(self) -> None:
        self.delivered = 0
        self.dropped = 0

    def udp_received(self, skt: Skt, data: bytes, time: int, raddr: bytes, rport: int) -> None:
        assert len(data) == SIZE
        self.delivered += 1

    def raw_received(self, skt: Skt, data: bytes, time: int) -> None:
        assert len(data) == 20 + 8 + SIZE
        self.delivered += 1

    def udp_dropped(self, skt: Skt, count: int, time: int) -> None:
        self.dropped += count

    raw_dropped = udp_dropped


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield s
    s.close()


def flood(sender: socket.socket, port: int) -> None:
    payload = b"x" * SIZE
    for _ in range(SENT):
        sender.sendto(payload, ("127.0.0.1", port))


def test_a_udp_flood_is_delivered_or_counted(sender: socket.socket) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # room for a few
    sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    enable_rx_timestamps(sock)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    events = Events()
    io = UdpIO(FakeClock(), sock, Skt(1, 4, 17, 1 << 20), events, time.time_ns)
    try:
        flood(sender, sock.getsockname()[1])
        for _ in range(SENT):  # each call reads a batch; the last finds the queue empty
            before = events.delivered
            io.doRead()
            if events.delivered == before:
                break
        assert events.dropped > 0  # the queue did overflow
        assert events.delivered + events.dropped == SENT
    finally:
        sock.close()


def test_a_capture_flood_is_delivered_or_counted(sender: socket.socket) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: AF_PACKET capture socket")
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # so no ICMP unreachable comes
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    cap = CaptureSocket("lo", rcvbuf=32768)
    reactor = FakeClock(step=0)
    events = Events()
    io = raw.RawIO(
        reactor,  # type: ignore[arg-type]
        Skt(1, 4, 0, 1 << 20),
        events,  # type: ignore[arg-type]
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
        cap,
        time.time_ns,
    )
    try:
        io.capture(tcpdump_filter(f"udp dst port {port}"), time.time_ns() + 60 * 10**9)
        flood(sender, port)
        for _ in range(SENT):
            before = events.delivered
            io.doRead()
            if events.delivered == before:
                break
        assert events.dropped > 0
        assert events.delivered + events.dropped == SENT
    finally:
        io.close()
        sink.close()
