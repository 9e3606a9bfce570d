"""Datagrams the kernel drops at a UDP socket's full queue are counted (session 20,
hard20). The endpoint read too slowly for a flood and the kernel dropped what did not
fit in the socket's queue; no counter the controller sees had them (15,075 of a 30,000
datagram flood). The kernel's drop count (SO_RXQ_OVFL) rides with each datagram read
after a drop: its increase goes to DROPSTAT and the episode's ndrop as drops of unknown
size (0 bytes)."""

from __future__ import annotations

import socket
import struct
from typing import Any

from ep_fakes import LO4, Rig, udp_open
from testkit.clock import FakeClock

from packetlab import wire
from packetlab.endpoint.netio import SO_MEMINFO, SO_RXQ_OVFL, UdpIO
from packetlab.endpoint.timestamps import SCM_TIMESTAMPNS
from packetlab.wire import vmem


class FakeSock:
    """recvmsg answers from a list, then EAGAIN."""

    def __init__(
        self, reads: list[tuple[bytes, list[tuple[int, int, bytes]]]], drops: int = 0
    ) -> None:
        self.reads = reads
        self.drops = drops  # SO_MEMINFO's SK_MEMINFO_DROPS
        self.asked = 0

    def getsockopt(self, level: int, name: int, size: int) -> bytes:
        assert (level, name) == (socket.SOL_SOCKET, SO_MEMINFO)
        self.asked += 1
        return struct.pack("=9I", 0, 0, 0, 0, 0, 0, 0, 0, self.drops)

    def fileno(self) -> int:
        return 99

    def recvmsg(self, size: int, ancsize: int) -> tuple[bytes, Any, int, tuple[str, int]]:
        if not self.reads:
            raise BlockingIOError
        data, anc = self.reads.pop(0)
        return data, anc, 0, ("127.0.0.1", 5353)


def anc(t_ns: int, drops: int | None) -> list[tuple[int, int, bytes]]:
    out = [(socket.SOL_SOCKET, SCM_TIMESTAMPNS, struct.pack("=qq", *divmod(t_ns, 10**9)))]
    if drops is not None:
        out.append((socket.SOL_SOCKET, SO_RXQ_OVFL, struct.pack("=I", drops)))
    return out


def test_the_kernels_drop_count_is_counted_and_reported() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    skt = rig.skt(1)
    reads = [
        (b"a", anc(1_000, None)),
        (b"b", anc(2_000, 3)),  # 3 dropped before b
        (b"c", anc(3_000, 3)),  # none since
        (b"d", anc(4_000, 0x80000002)),  # the u32 counter goes on ...
        (b"d", anc(4_500, 0xFFFFFFFF)),
        (b"e", anc(5_000, 1)),  # ... and wraps: 2 more
    ]
    io = UdpIO(FakeClock(), FakeSock(reads), skt, rig.session, lambda: 0)
    io.doRead()
    got = rig.new()
    assert [m.NAME for m in got] == [
        "ndata", "ndrop", "ndata", "ndata", "ndrop", "ndata", "ndrop", "ndata", "ndrop",
        "ndata",
    ]  # fmt: skip
    drops = [m for m in got if isinstance(m, wire.Ndrop)]
    assert [(d.tfirst, d.unitcnt, d.bytecnt) for d in drops] == [
        (2_000, 3, 0),
        (4_000, 0x80000002 - 3, 0),
        (4_500, 0x7FFFFFFD, 0),
        (5_000, 2, 0),
    ]
    # DROPSTAT saturates (§3.5)
    assert rig.session.memory.read(vmem.skt_addr(1, vmem.SKT_DROPPKTS), 4) == b"\xff" * 4
    assert skt.drop_pkts == 3 + (0xFFFFFFFF - 3) + 2 and skt.drop_bytes == 0
    assert [m.data for m in got if isinstance(m, wire.Ndata)] == [bytes([c]) for c in b"abcdde"]
    assert all(m.raddr == LO4 for m in got if isinstance(m, wire.Ndata))


def test_drops_at_the_end_of_a_flood_are_reported_when_the_socket_drains() -> None:
    """The kernel dropped the flood's last datagrams: no datagram came after them to carry
    the count (session 20, ep20). When a socket that had a queue drains, the endpoint asks
    the kernel (SO_MEMINFO) and the drops get their ndrop at once."""
    rig = Rig().started()
    rig.send(udp_open(1))
    skt = rig.skt(1)
    sock = FakeSock([(b"a", anc(1_000, None)), (b"b", anc(2_000, None))], drops=7)
    clock = [9_000]
    io = UdpIO(FakeClock(), sock, skt, rig.session, lambda: clock[0])
    io.doRead()
    got = rig.new()
    assert [m.NAME for m in got] == ["ndata", "ndata", "ndrop"]
    assert (got[2].tfirst, got[2].unitcnt, got[2].bytecnt) == (9_000, 7, 0)
    assert skt.drop_pkts == 7
    # A later datagram carrying the count already reported adds nothing.
    sock.reads = [(b"c", anc(10_000, 7))]
    io.doRead()
    assert [m.NAME for m in rig.new()] == ["ndata"]
    assert skt.drop_pkts == 7


def test_a_lone_datagram_does_not_ask_the_kernel() -> None:
    """One datagram per wake-up (no queue built up, nothing to overflow): no getsockopt."""
    rig = Rig().started()
    rig.send(udp_open(1))
    sock = FakeSock([(b"a", anc(1_000, None))], drops=3)
    io = UdpIO(FakeClock(), sock, rig.skt(1), rig.session, lambda: 0)
    io.doRead()
    assert sock.asked == 0 and [m.NAME for m in rig.new()] == ["ndata"]
