"""A reflex's path while the endpoint busy-polls (docs/reflexes.md, "Why the path is
slow when not hot"): its socket read straight from the spin, and the path kept warm.

`SpinReader`: the attached reflexes' UDP sockets in an epoll set of their own, which the
busy-poll spin (`SpinningPoller.on_spin`) polls on every turn; a datagram is read at once
by the socket's own `doRead` (the same receive path, checks and all), without the
reactor's dispatch and the socket watcher's second epoll in between. The reactor still
watches the sockets (it reads them whenever it gets there first, and their TX stamps).

On the VMs we measure on, the CPU loses the endpoint's code from its caches and branch
predictors within a millisecond or so whether the vCPU sleeps or spins (other tenants
share the core): the same Python function runs 2x slower 0.3 ms after its last run and
3-6x slower after 8-16 ms. A reflex's reaction comes after milliseconds of spinning, so
every step of its path (receive, gate, wasm call, nsend checks, scheduler, send) runs
cold. Running the same code on other data every ~100 µs keeps most of it warm.

`Rehearsal`: a shadow session over a null network, with a UDP socket of the same id and a
new instance of the same compiled reflex (its own box and state, the attach's
parameters), that replays the real socket's latest packet through the same code as a
real one, down to the socket class (`_ShadowUdp`, a `netio.UdpIO` on loopback: the
datagram goes in through its doRead, the reply out through its stamped send) and up to
the reply's send (what follows the send is off the reaction's path and not rehearsed).
Nothing it does reaches the real session, the network or the controller: its sends go to
its own loopback sink whatever their address, its frames are discarded, its timers
never fire.
`ReflexService.spin` (the busy-poll spin's `on_spin`) polls the `SpinReader` and runs the
live rehearsals every ``ReflexWarmUs`` µs; none exist unless busy-poll is on and a
reflex is attached.
"""

from __future__ import annotations

import select
import socket
from typing import TYPE_CHECKING, Any, Protocol

from twisted.logger import Logger, LogPublisher

from packetlab.endpoint.checks import NDATA_DROP
from packetlab.endpoint.clock import realtime_ns
from packetlab.endpoint.config import EndpointConfig
from packetlab.endpoint.netio import UdpIO
from packetlab.endpoint.sender import PreciseScheduler
from packetlab.endpoint.sockets import OpenError, PendingSend, Skt, SocketEvents
from packetlab.endpoint.timestamps import (
    RX_ANCBUF_SIZE,
    TxStampMatcher,
    enable_rx_timestamps,
)
from packetlab.reflex import wire as rw
from packetlab.wire.constants import NDATA_MAX, Status
from packetlab.wire.messages import Nopen, Start

if TYPE_CHECKING:
    from packetlab.endpoint.session import Session
    from packetlab.reflex.runtime import ReflexCompiled

__all__ = ["Rehearsal", "SpinReader"]

_IN = select.EPOLLIN
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_ERRQ_ANC = 512
_log = Logger(namespace="pktendpoint.reflex")


class SpinReader:
    """The sockets the spin reads directly (see the module docstring). A socket is a
    reader with `fileno()`, `reading` and `doRead()` (`packetlab.endpoint.netio.UdpIO`)."""

    def __init__(self) -> None:
        self._epoll: select.epoll | None = None
        self._ios: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._ios)

    def add(self, io: Any) -> None:
        if io is None or not hasattr(io, "doRead") or not hasattr(io, "reading"):
            return
        fd = io.fileno()
        if fd < 0:
            return
        if self._epoll is None:
            self._epoll = select.epoll()
        self._forget(fd)  # a closed socket's number, reused
        self._epoll.register(fd, _IN)
        self._ios[fd] = io

    def remove(self, io: Any) -> None:
        for fd, known in list(self._ios.items()):
            if known is io:
                self._forget(fd)

    def _forget(self, fd: int) -> None:
        if self._ios.pop(fd, None) is not None and self._epoll is not None:
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass  # closed already: the kernel dropped it from the set

    def poll(self) -> bool:
        """Read every socket with a datagram waiting; True if one was read."""
        if not self._ios or self._epoll is None:
            return False
        read = False
        for fd, ev in self._epoll.poll(0):
            if not ev & _IN:  # EPOLLERR alone: TX stamps, the socket watcher's part
                continue
            io = self._ios.get(fd)
            if io is None or io.fileno() != fd:  # closed since it was added
                self._forget(fd)
                continue
            if not io.reading:  # paused for want of budget: the session resumes it
                continue
            read = True
            try:
                io.doRead()
            except Exception:  # what the reactor's dispatch would have logged
                _log.failure("reading reflex socket fd {fd}", fd=fd)
        return read

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        self._ios.clear()


class _NullIO:
    """A socket whose sends go nowhere."""

    __slots__ = ()

    def send(self, pending: PendingSend) -> bool:
        return True

    def tx_time(self, pending: PendingSend, not_before: int) -> int | None:
        return None

    def shutdown_write(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> list[PendingSend]:
        return []


class _ShadowUdp(UdpIO):
    """The real sockets' class (`netio.UdpIO`: its doRead, RX-stamp parsing, send and TX
    stamping are the code objects a reaction runs, so the rehearsal keeps exactly those
    warm) on a loopback socket. The replayed datagram comes in from a second loopback
    socket, the sink, and every send goes to the sink whatever its destination: nothing
    the shadow sends leaves the host, and it never reads its own replies. The reactor
    never watches it; stamps are taken by `tx_time` as for the real socket."""

    def __init__(self, skt: Skt, events: SocketEvents) -> None:
        family = _AF[skt.family]
        host = "127.0.0.1" if family == socket.AF_INET else "::1"
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sink = socket.socket(family, socket.SOCK_DGRAM)
        try:
            for s in (sock, sink):
                s.setblocking(False)
                s.bind((host, 0))
            enable_rx_timestamps(sock)
            enable_rx_timestamps(sink)
            matcher = TxStampMatcher(sock)
        except OSError:
            sock.close()
            sink.close()
            raise
        super().__init__(_NullReactor(), sock, skt, events, realtime_ns)
        self._matcher = matcher
        self.sink = sink
        self.addr = sock.getsockname()
        self.to = sink.getsockname()

    def send(self, pending: PendingSend) -> bool:
        pending.dest = self.to  # the sink, whatever the reflex asked for
        UdpIO.send(self, pending)
        self._backlog.clear()  # never retried (nothing watches the shadow): dropped
        return True

    def tx_time(self, pending: PendingSend, not_before: int) -> int | None:
        # After the send, off the reaction's path: the stamp is read away unparsed (one
        # read per send, as the real socket's, so a rehearsal never takes a long batch).
        self._ids.pop(pending, None)
        try:
            self._sock.recvmsg(0, _ERRQ_ANC, socket.MSG_ERRQUEUE)
        except OSError:
            pass
        return None

    def replay(self, data: bytes) -> None:
        """Read back what the last replay sent (with its RX stamp, as the real client's
        kernel would), then one datagram in through the socket's own doRead."""
        sink = self.sink
        try:  # one: a reflex that sends more leaves the rest to later runs (or drops)
            sink.recvmsg(NDATA_MAX, RX_ANCBUF_SIZE)
        except OSError:
            pass
        try:
            sink.sendto(data, self.addr)
        except OSError:
            return
        self.doRead()

    def close(self) -> list[PendingSend]:
        unsent = super().close()
        self.sink.close()
        return unsent


class _NullNetwork:
    """UDP sockets whose sends never leave the host; nothing else."""

    def __init__(self, loopback: bool) -> None:
        self.loopback = loopback
        self.loop: _ShadowUdp | None = None

    def open_udp(self, skt: Skt, laddr: bytes, lport: int, events: SocketEvents) -> Any:
        skt.laddr, skt.lport = laddr, lport or 9
        if not self.loopback:
            return _NullIO()
        try:
            self.loop = _ShadowUdp(skt, events)
        except OSError:  # no loopback (a bare namespace): no kernel part in the rehearsal
            return _NullIO()
        return self.loop

    def open_tcp(self, *args: Any) -> Any:
        raise OpenError(Status.ECTLNOTSUP, "rehearsal: UDP only")

    def open_raw(self, *args: Any) -> Any:
        raise OpenError(Status.ECTLNOTSUP, "rehearsal: UDP only")


class _NullReactor:
    """The shadow's reactor: its scheduler's timer and its socket are never watched
    (timers never fire; the socket is read by `_ShadowUdp.replay` alone)."""

    def addReader(self, reader: Any) -> None:
        pass

    def removeReader(self, reader: Any) -> None:
        pass

    def addWriter(self, writer: Any) -> None:
        pass

    def removeWriter(self, writer: Any) -> None:
        pass


class _NullTimer:
    def fileno(self) -> int:
        return -1

    def arm_at(self, when_ns: int) -> None:
        pass

    def disarm(self) -> None:
        pass

    def acknowledge(self) -> None:
        pass

    def close(self) -> None:
        pass


class ShadowService(Protocol):
    """A fresh `reflexes.ReflexService` of the real one's settings (passed in: reflexes.py
    imports this module, not the other way round)."""

    def install(self, session: Session) -> Any: ...


class Rehearsal:
    """The shadow of one attached UDP reflex (see the module docstring). `feed` keeps the
    real socket's latest packet; `run` replays it. `ok` turns False for good once the
    shadow cannot run (its reflex trapped or refused to start)."""

    def __init__(
        self,
        shadow_service: ShadowService,
        compiled: ReflexCompiled,
        skt: Skt,
        params: bytes,
        loopback: bool = True,
    ) -> None:
        from packetlab.endpoint.session import Session

        self.scheduler = PreciseScheduler(_NullReactor(), timer=_NullTimer())
        self.scheduler.start()
        self.net = _NullNetwork(loopback)
        self.session = Session(EndpointConfig(), self.net, self.scheduler, realtime_ns)
        self.session.outbox.attach(_discard)
        self.gate = shadow_service.install(self.session)
        self.gate.log = Logger(observer=LogPublisher())  # no observers: the shadow is silent
        # A packet the reflex passes on is not delivered: that comes after the reaction's
        # send, so rehearsing it only makes the rehearsal longer (counted all the same).
        self.gate.pass_verdict = NDATA_DROP
        self.gate.preloaded[compiled.digest] = compiled
        self.sktid = skt.sktid
        self.real = skt
        self.packet: tuple[bytes, int, bytes, int] | None = None
        self.runs = 0
        s = self.session
        s.handle(Start())
        s.handle(
            Nopen(
                sktid=skt.sktid, family=skt.family, proto=skt.proto, rbufsz=1 << 20,
                laddr=bytes(skt.alen), lport=0,
            )
        )  # fmt: skip
        self.skt = s.sockets[skt.sktid]
        self.gate._attach(rw.Attach(skt.sktid, compiled.digest, params, b""))
        self.ok = self.skt is not None and self.skt in self.gate.attached

    def feed(self, data: bytes, time: int, raddr: bytes | None, rport: int | None) -> None:
        if raddr is not None and rport is not None:
            self.packet = (data, time, raddr, rport)

    def write_params(self, offset: int, data: bytes) -> None:
        self.gate.write_params(self.sktid, offset, data)

    def run(self) -> None:
        """Replay the latest packet through the shadow (nothing before the first)."""
        pkt = self.packet
        skt = self.skt
        if pkt is None or skt is None or not self.ok or self.real.io is None:
            return  # nothing yet, failed, or the real socket was closed (detach is lazy)
        loop = self.net.loop
        if loop is not None and skt.io is loop:
            loop.replay(pkt[0])
        else:
            self.session.udp_received(skt, pkt[0], pkt[1], pkt[2], pkt[3])
        self.runs += 1
        if skt not in self.gate.attached:  # the shadow reflex trapped: stop rehearsing
            self.ok = False

    def close(self) -> None:
        self.ok = False
        self.gate.close()
        self.scheduler.stop()
        if self.net.loop is not None:
            self.net.loop.close()  # the session closed it already, unless it failed early


def _discard(item: object) -> None:
    pass
