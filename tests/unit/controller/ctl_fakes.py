"""Fakes for controller unit tests: a scripted endpoint that answers like the reference
(§1.4, §2, §3), loopback "servers" as Python callables, and helpers to drive Deferreds
over twisted.test.iosim with a task.Clock."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim

from packetlab import wire
from packetlab.controller import EndpointSession
from packetlab.wire import (
    Cdata,
    Mdata,
    Message,
    Mread,
    Mwrite,
    Nclose,
    Nctl,
    Ndata,
    Nopen,
    Nsend,
    Nstat,
    NstatCode,
    Ntag,
    Proto,
    Result,
    SocketState,
    Start,
    Status,
    vmem,
)

T = TypeVar("T")
BASE_NS = 1_700_000_000_000_000_000  # endpoint clock at Clock() time 0
Server = Callable[[bytes], list[bytes]]


# The local address an established TCP socket reports (its port: 50000 + sktid).
LOCAL4, LOCAL6 = ipaddress.ip_address("192.0.2.10"), ipaddress.ip_address("2001:db8::10")


class FakeEndpoint(Protocol):
    """Answers each request at once, in order. `tcp_servers[(ip, port)](request)` gives the
    reply chunks of a TCP peer (then it closes); unknown TCP targets are refused the
    reference way (STAT = REFUSED, no nstat). `udp_servers` likewise gives reply datagrams.
    `offset_ns` shifts the endpoint clock from the controller's."""

    def __init__(self, clock: Clock, offset_ns: int = 0) -> None:
        self.clock = clock
        self.offset_ns = offset_ns
        self.framer = wire.Framer()
        self.received: list[Any] = []
        self.memory = bytearray()  # the system block, from vmem.SYS_BASE
        self.tcp_servers: dict[tuple[str, int], Server] = {}
        self.udp_servers: dict[tuple[str, int], Server] = {}
        self.tcp_silent: set[tuple[str, int]] = set()  # connects that never complete
        self.tcp_reset: set[tuple[str, int]] = set()  # connects answered by nstat RESET
        self.connect_delay = 0.0  # seconds before the connect's nstat
        self.sockets: dict[int, dict[str, Any]] = {}
        self.start_status = 0
        self.time_reads = 0

    def now(self) -> int:
        return BASE_NS + self.offset_ns + int(self.clock.seconds() * 1e9)

    def send(self, msg: Message) -> None:
        self.transport.write(wire.encode(msg))  # type: ignore[union-attr]

    def result(self, errid: int = 0) -> None:
        self.send(Result(errid))

    def dataReceived(self, data: bytes) -> None:
        for item in self.framer.feed(data):
            self.received.append(item)
            self.handle(item)

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Start):
            self.result(self.start_status)
        elif isinstance(msg, Cdata):
            self.result()
        elif isinstance(msg, Mread):
            self.send(Mdata(msg.addr, self.read(msg.addr, msg.len)))
        elif isinstance(msg, Mwrite):
            self.result()
        elif isinstance(msg, Nopen):
            self.nopen(msg)
        elif isinstance(msg, Nsend):
            self.nsend(msg)
        elif isinstance(msg, Nclose):
            self.sockets.pop(msg.sktid, None)
            self.result()
        elif isinstance(msg, Nctl):
            self.result()
        else:
            self.result(Status.ECTLNOTSUP)

    def read(self, addr: int, n: int) -> bytes:
        if addr == vmem.TIME.addr:
            self.time_reads += 1
            return struct.pack(">Q", self.now())[:n]
        if addr >= vmem.SKT_BASE:
            sktid, off = divmod(addr - vmem.SKT_BASE, vmem.SKT_STRIDE)
            block = bytearray(0x80)
            skt = self.sockets.get(sktid)
            if skt is not None:
                struct.pack_into(">BBb", block, 0, skt["family"], skt["proto"], skt["state"])
                if "local" in skt:  # an established TCP socket's LADDR and LPORT
                    block[16 : 16 + len(skt["local"][0])] = skt["local"][0]
                    struct.pack_into(">H", block, 48, skt["local"][1])
            return bytes(block[off : off + n]).ljust(n, b"\0")
        off = addr - vmem.SYS_BASE
        return bytes(self.memory[off : off + n]).ljust(n, b"\0")

    def nopen(self, msg: Nopen) -> None:
        if msg.sktid in self.sockets:
            self.result(Status.ESKTINUSE)
            return
        skt = {"family": msg.family, "proto": msg.proto, "state": SocketState.OPEN, "msg": msg}
        self.sockets[msg.sktid] = skt
        self.result()
        if msg.proto == Proto.TCP and msg.raddr is not None:
            key = (str(ipaddress.ip_address(msg.raddr)), msg.rport)
            if key in self.tcp_silent:
                skt["state"] = SocketState.OPENING  # a SYN into the void
            elif key in self.tcp_servers:
                skt["state"] = SocketState.OPENING
                self.clock.callLater(self.connect_delay, self.established, msg)
            elif key in self.tcp_reset:
                nstat = Nstat(msg.sktid, msg.family, msg.proto, 0, NstatCode.RESET)
                self.clock.callLater(self.connect_delay, self.late_nstat, nstat)
            else:
                skt["state"] = SocketState.REFUSED  # the reference sends no nstat (§3.1)

    def established(self, msg: Nopen) -> None:
        self.sockets[msg.sktid]["state"] = SocketState.OPEN
        local = LOCAL4 if len(msg.raddr or b"") == 4 else LOCAL6
        self.sockets[msg.sktid]["local"] = (local.packed, 50000 + msg.sktid)
        self.send(Nstat(msg.sktid, msg.family, msg.proto, self.now(), 0, msg.raddr, msg.rport))

    def late_nstat(self, nstat: Nstat) -> None:
        nstat.time = self.now()
        self.send(nstat)

    def nsend(self, msg: Nsend) -> None:
        skt = self.sockets.get(msg.sktid)
        if skt is None:
            self.result(Status.ESKTNOTOPEN)
            return
        self.result()
        when = max(msg.time, self.now())
        if msg.tag:
            self.send(Ntag(msg.sktid, msg.tag, when))
        nopen: Nopen = skt["msg"]
        if msg.proto == Proto.TCP:
            assert nopen.raddr is not None
            server = self.tcp_servers[(str(ipaddress.ip_address(nopen.raddr)), nopen.rport or 0)]
            for chunk in server(msg.data):
                self.send(Ndata(msg.sktid, msg.family, msg.proto, self.now(), chunk))
            self.send(Nstat(msg.sktid, msg.family, msg.proto, self.now(), NstatCode.PEERCLOSED))
        elif msg.proto == Proto.UDP:
            assert msg.raddr is not None
            key = (str(ipaddress.ip_address(msg.raddr)), msg.rport or 0)
            for reply in self.udp_servers.get(key, lambda d: [])(msg.data):
                self.send(
                    Ndata(msg.sktid, msg.family, msg.proto, self.now(), reply, msg.raddr, msg.rport)
                )

    def requests(self) -> list[str]:
        return [m.NAME for m in self.received if isinstance(m, Message)]


class Rig:
    """A session and a FakeEndpoint (or what `endpoint` makes from the clock) joined by
    iosim, on a task.Clock that starts at `start` seconds."""

    def __init__(
        self,
        offset_ns: int = 0,
        *,
        endpoint: Callable[[Clock], FakeEndpoint] | None = None,
        start: float = 0.0,
        **session_options: Any,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(start)
        self.session = EndpointSession(
            reactor=self.clock,
            clock_ns=lambda: BASE_NS + int(self.clock.seconds() * 1e9),
            **session_options,
        )
        self.endpoint = endpoint(self.clock) if endpoint else FakeEndpoint(self.clock, offset_ns)
        self.pump = iosim.connect(
            self.session,
            iosim.makeFakeServer(self.session),
            self.endpoint,
            iosim.makeFakeClient(self.endpoint),
            clock=self.clock,
        )

    def run(self, d: Deferred[T], step: float = 0.001, limit: float = 60.0) -> T:
        """Pump bytes and advance the clock until `d` fires or the clock reads `limit` s;
        its result (or raise)."""
        return self.drive(d, step, until=limit)

    def drive(self, d: Deferred[T], step: float, until: float) -> T:
        while not d.called and self.clock.seconds() < until:
            self.pump.flush()
            if not d.called:
                self.clock.advance(step)
        return result_of(d)


def result_of(d: Deferred[T]) -> T:
    assert d.called, "Deferred has not fired"
    box: list[Any] = []

    def take(r: Any) -> Any:
        box.append(r)
        return None if isinstance(r, Failure) else r  # a failure is consumed here

    d.addBoth(take)
    (r,) = box
    if isinstance(r, Failure):
        r.raiseException()
    return r


class WriteLog(StringTransport):
    """A StringTransport that keeps each write separately and has setTcpNoDelay."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.nodelay = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.nodelay = enabled


def frames(*msgs: Message) -> bytes:
    return b"".join(wire.encode(m) for m in msgs)


class AbortLog(WriteLog):
    """A WriteLog that notes abortConnection."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


def on_string_transport(
    transport: WriteLog | None = None, **options: Any
) -> tuple[EndpointSession, WriteLog, Clock]:
    """A session on a WriteLog transport (`transport`, else a new one), setup answered
    (ready has fired)."""
    clock = Clock()
    s = EndpointSession(reactor=clock, **options)
    t = WriteLog() if transport is None else transport
    s.makeConnection(t)
    s.dataReceived(frames(Result()))
    assert s.ready.called
    t.writes.clear()
    t.clear()
    return s, t, clock


def gone_before_hostid(reactor: MemoryReactorClock, ep: Protocol,
                       peer: IPv4Address) -> iosim.IOPump:  # fmt: skip
    """Endpoint `ep` connects from `peer` to the controller listening last on `reactor`,
    then closes before it answers anything (its HOSTID never read). The pump holds both
    sides for a caller that checks what their collection logs."""
    factory = reactor.tcpServers[-1][1]
    s = factory.buildProtocol(peer)
    pump = iosim.connect(s, iosim.FakeTransport(s, isServer=True, peerAddress=peer), ep,
                         iosim.makeFakeClient(ep), clock=reactor)  # fmt: skip
    pump.flush()
    assert ep.transport is not None
    ep.transport.loseConnection()
    pump.flush()
    return pump


class SchedulingEndpoint(FakeEndpoint):
    """Sends each datagram at its time, with its ntag then, as a real endpoint does; an
    nclose drops the sends still queued on the socket without a word (§3.1)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.queued: dict[int, list[Any]] = {}
        self.sent: list[int] = []  # the first 4 bytes of each datagram sent

    def nsend(self, msg: Nsend) -> None:
        if msg.sktid not in self.sockets:
            self.result(0x20)
            return
        self.result()
        when = max(msg.time, self.now())
        call = self.clock.callLater((when - self.now()) / 1e9, self._send, msg, when)
        self.queued.setdefault(msg.sktid, []).append(call)

    def _send(self, msg: Nsend, when: int) -> None:
        self.sent.append(struct.unpack(">I", msg.data[:4])[0])
        self.send(Ntag(msg.sktid, msg.tag, when))

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Nclose):
            for call in self.queued.pop(msg.sktid, []):
                if call.active():
                    call.cancel()
        super().handle(msg)
