"""The server's FIN reaches a wrapped program after all its data, also when the program
read slowly (NDATA held back at the endpoint, the program transport's producer paused).
Session 27 (wrap27): `ftp` got a 300 kB file and then waited for good for the data
connection's end; a client reading to EOF timed out on 7 of 10 connections of 64 kB."""

from __future__ import annotations

import ipaddress
import struct
import sys
from pathlib import Path
from typing import Any

from twisted.internet import abstract
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))
from ctl_fakes import FakeEndpoint, Rig

from packetlab.wire import Mwrite, Ndata, NotifMask, Nsend, Nstat, NstatCode, Proto, vmem
from packetlab.wrap.server import WrapFactory
from packetlab.wrap.socks5 import Rep, encode_address, reply
from packetlab.wrap.timeline import TimingLog

SERVER = ("192.0.2.80", 80)


class HoldingEndpoint(FakeEndpoint):
    """As ours (and §2.4): while a socket's NDATA is masked its ndata are held and
    released in order when it is cleared, before the mwrite's result; an nstat is not
    held. The server sends `chunks` after the request, then `tail` and its FIN once
    `finish()` is called."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.masked = False
        self.held: list[Ndata] = []
        self.chunks: list[bytes] = []
        self.tail: list[bytes] = []
        self.sktid = -1

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Mwrite) and msg.addr == vmem.skt_addr(self.sktid, vmem.SKT_NOTIFMASK):
            (mask,) = struct.unpack(">H", msg.data)
            self.masked = bool(mask & NotifMask.NDATA)
            if not self.masked:
                held, self.held = self.held, []
                for nd in held:
                    self.send(nd)
            self.result()
        else:
            super().handle(msg)

    def ndata(self, data: bytes) -> None:
        nd = Ndata(self.sktid, 4, Proto.TCP, self.now(), data)
        if self.masked:
            self.held.append(nd)
        else:
            self.send(nd)

    def nsend(self, msg: Nsend) -> None:
        self.sktid = msg.sktid
        self.result()
        for chunk in self.chunks:
            self.ndata(chunk)

    def finish(self) -> None:
        for chunk in self.tail:
            self.ndata(chunk)
        self.send(Nstat(self.sktid, 4, Proto.TCP, self.now(), NstatCode.PEERCLOSED))


class Program(abstract.FileDescriptor):
    """The program's socket as Twisted's TCP transport buffers for it (its producer and
    half-close logic are what is tested): the program reads `room` bytes at a time."""

    def __init__(self) -> None:
        super().__init__(MemoryReactorClock())
        self.connected = 1
        self.room = 0
        self.got = bytearray()
        self.fin = False

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 40000)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 1080)

    def writeSomeData(self, data: bytes) -> int:
        n = min(len(data), self.room)
        self.got += bytes(data[:n])
        self.room -= n
        return n

    def _closeWriteConnection(self) -> None:
        self.fin = True

    def read(self, n: int) -> None:
        """The program reads up to n bytes: the socket is writable again."""
        self.room = n
        if self.writing:
            self.doWrite()

    @property
    def writing(self) -> bool:
        return self in self.reactor.getWriters()


def settle(rig: Rig, rounds: int = 50) -> None:
    for _ in range(rounds):
        rig.pump.flush()
        rig.clock.advance(0.001)


def connect(
    tmp_path: Path, chunks: list[bytes], tail: list[bytes]
) -> tuple[Rig, HoldingEndpoint, Program]:
    rig = Rig(endpoint=HoldingEndpoint)
    ep = rig.endpoint
    assert isinstance(ep, HoldingEndpoint)
    ep.tcp_servers[SERVER] = lambda request: []
    ep.chunks, ep.tail = chunks, tail
    rig.run(rig.session.ready)
    factory = WrapFactory(
        rig.session, rig.clock, dns_servers=[], timings=TimingLog(str(tmp_path / "t"))
    )
    proto = factory.buildProtocol(None)
    t = Program()
    proto.makeConnection(t)
    proto.dataReceived(b"\x05\x01\x00")
    proto.dataReceived(b"\x05\x01\x00" + encode_address(ipaddress.ip_address(SERVER[0]), 80))
    settle(rig)
    t.read(1 << 20)
    assert bytes(t.got) == b"\x05\x00" + reply(Rep.SUCCEEDED)
    t.got.clear()
    t.room = 0  # from now on the program reads only when the test says
    proto.dataReceived(b"RETR blob\r\n")
    settle(rig)
    return rig, ep, t


def drain(rig: Rig, t: Program) -> None:
    for _ in range(200):
        t.read(1 << 16)
        settle(rig, 5)


def test_the_fin_follows_data_the_program_read_slowly(tmp_path: Path) -> None:
    """The program's buffer filled (producer paused, NDATA masked), then the server's
    last data and FIN came: the FIN must still be sent once the buffer drains. Before:
    Twisted, on draining with the producer paused, resumed it instead of half-closing,
    and no more data came to drain again: no FIN, ever."""
    # Over Twisted's 64 KiB: the producer is paused, NDATA masked.
    rig, ep, t = connect(tmp_path, [b"a" * 65536, b"b" * 65536], [])
    assert ep.masked
    ep.finish()
    settle(rig)
    drain(rig, t)
    assert bytes(t.got) == b"a" * 65536 + b"b" * 65536
    assert t.fin


def test_the_fin_waits_for_data_the_endpoint_held(tmp_path: Path) -> None:
    """A FIN read while the socket's NDATA was masked overtakes the held ndata (an nstat
    is not held). The program must get the held bytes, then the FIN; before, with the
    FIN half-closing at once, they were never asked for (the producer was gone)."""
    rig, ep, t = connect(tmp_path, [b"a" * 65536, b"b" * 65536], [b"tail" * 100])
    assert ep.masked
    ep.finish()  # the tail is held at the endpoint, its PEERCLOSED is not
    assert ep.held
    settle(rig)
    drain(rig, t)
    assert bytes(t.got) == b"a" * 65536 + b"b" * 65536 + b"tail" * 100
    assert t.fin and not ep.held
