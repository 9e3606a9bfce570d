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
from packetlab.endpoint.netio import SO_RXQ_OVFL, UdpIO
from packetlab.endpoint.timestamps import SCM_TIMESTAMPNS
from packetlab.wire import vmem


class FakeSock:
    """recvmsg answers from a list, then EAGAIN."""

    def __init__(self, reads: list[tuple[bytes, list[tuple[int, int, bytes]]]]) -> None:
        self.reads = reads

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
        (b"d", anc(4_000, 0xFFFFFFFF)),  # the u32 counter goes on ...
        (b"e", anc(5_000, 1)),  # ... and wraps: 2 more
    ]
    io = UdpIO(FakeClock(), FakeSock(reads), skt, rig.session, lambda: 0)
    io.doRead()
    got = rig.new()
    assert [m.NAME for m in got] == [
        "ndata", "ndrop", "ndata", "ndata", "ndrop", "ndata", "ndrop", "ndata",
    ]  # fmt: skip
    drops = [m for m in got if isinstance(m, wire.Ndrop)]
    assert [(d.tfirst, d.unitcnt, d.bytecnt) for d in drops] == [
        (2_000, 3, 0),
        (4_000, 0xFFFFFFFF - 3, 0),
        (5_000, 2, 0),
    ]
    # DROPSTAT saturates (§3.5)
    assert rig.session.memory.read(vmem.skt_addr(1, vmem.SKT_DROPPKTS), 4) == b"\xff" * 4
    assert skt.drop_pkts == 3 + (0xFFFFFFFF - 3) + 2 and skt.drop_bytes == 0
    assert [m.data for m in got if isinstance(m, wire.Ndata)] == [b"a", b"b", b"c", b"d", b"e"]
    assert all(m.raddr == LO4 for m in got if isinstance(m, wire.Ndata))
