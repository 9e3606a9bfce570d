"""Fakes for the endpoint's unit tests: an in-memory `Network` and a `Rig` (the clock and
timer are testkit's, re-exported here).

The scheduler is the real `PreciseScheduler` driven by the fake clock and timer; only
the kernel sockets are replaced (the integration tests run the real ones).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from testkit.clock import T0, FakeClock, FakeTimer  # noqa: F401 (T0 re-exported)
from twisted.internet.testing import MemoryReactor

from packetlab import wire
from packetlab.endpoint.config import EndpointConfig
from packetlab.endpoint.sender import PreciseScheduler
from packetlab.endpoint.session import Session
from packetlab.endpoint.sockets import ConnectFailed, OpenError, PendingSend, Skt, SocketEvents
from packetlab.wire.constants import SocketState


class FakeIO:
    """A socket that records what the session asks of it."""

    def __init__(self, skt: Skt, events: SocketEvents) -> None:
        self.skt = skt
        self.events = events
        self.sent: list[PendingSend] = []
        self.complete = True  # send() returns this (False: "still writing")
        self.error: int | None = None  # send() raises OSError(error)
        # send() fails as netio's does on a reset stream: the send joins the unsent ones,
        # then the socket fails (tcp_error) inside the call
        self.fails_inside: SocketState | None = None
        self.fin = False
        self.closed = False
        self.resumed = 0
        self.unsent: list[PendingSend] = []

    def send(self, pending: PendingSend) -> bool:
        if self.error is not None:
            raise OSError(self.error, "fake send error")
        if self.fails_inside is not None:
            self.unsent.append(pending)
            self.events.tcp_error(self.skt, self.fails_inside)
            return False
        self.sent.append(pending)
        if not self.complete:
            self.unsent.append(pending)
        return self.complete

    def tx_time(self, pending: PendingSend, not_before: int) -> int | None:
        return None  # no kernel stamps: the scheduler's reading is the time

    def finish(self, time: int) -> None:
        """Report every still-unsent send as written at `time`."""
        pending, self.unsent = self.unsent, []
        for p in pending:
            self.events.send_done(p, time, 0)

    def shutdown_write(self) -> None:
        self.fin = True

    def resume_reading(self) -> None:
        self.resumed += 1

    def close(self) -> list[PendingSend]:
        self.closed = True
        unsent, self.unsent = self.unsent, []
        return unsent


class FakeNetwork:
    def __init__(self) -> None:
        self.ios: dict[int, FakeIO] = {}
        self.fail: OpenError | None = None
        self.connect_fails: SocketState | None = None
        self.next_port = 40000

    def _io(self, skt: Skt, laddr: bytes, lport: int, events: SocketEvents) -> FakeIO:
        if self.fail is not None:
            raise self.fail
        skt.laddr = laddr
        skt.lport = lport or self.next_port
        self.next_port += 1
        io = self.ios[skt.sktid] = FakeIO(skt, events)
        return io

    def open_udp(self, skt: Skt, laddr: bytes, lport: int, events: SocketEvents) -> FakeIO:
        return self._io(skt, laddr, lport, events)

    def open_tcp(
        self,
        skt: Skt,
        laddr: bytes,
        lport: int,
        raddr: bytes | None,
        rport: int | None,
        events: SocketEvents,
    ) -> FakeIO:
        io = self._io(skt, laddr, lport, events)
        if self.connect_fails is not None:
            del self.ios[skt.sktid]
            raise ConnectFailed(self.connect_fails, "fake connect failure")
        return io


class Rig:
    """A session over fakes; `out` collects every frame it writes, decoded."""

    def __init__(self, **cfg: Any) -> None:
        config = EndpointConfig()
        config.ipv6 = [ipaddress.IPv6Address("::1")]
        for k, v in cfg.items():
            setattr(config, k, v)
        self.config = config
        self.clock = FakeClock()
        self.timer = FakeTimer()
        self.reactor = MemoryReactor()
        self.scheduler = PreciseScheduler(self.reactor, clock=self.clock, timer=self.timer)
        self.scheduler.start()
        self.net = FakeNetwork()
        self.session = Session(config, self.net, self.scheduler, self.clock)  # type: ignore[arg-type]
        self.frames: list[bytes] = []
        self.session.outbox.attach(self.frames.append)
        self._seen = 0

    def new(self) -> list[Any]:  # decoded frames, checked by the tests
        """Frames written since the last call, decoded."""
        got = [wire.decode_frame(f) for f in self.frames[self._seen :]]
        self._seen = len(self.frames)
        return got

    def send(self, *items: wire.Item) -> list[Any]:
        for item in items:
            self.session.handle(item)
        return self.new()

    def started(self) -> Rig:
        assert self.send(wire.Start()) == [wire.Result(0)]
        return self

    def run_timer_to(self, when: int) -> None:
        """Move the clock to `when` and fire the scheduler's timer."""
        self.clock.now = max(self.clock.now, when)
        for reader in list(self.reactor.readers):
            reader.doRead()

    def io(self, sktid: int) -> FakeIO:
        return self.net.ios[sktid]

    def skt(self, sktid: int) -> Skt:
        skt = self.session.sockets[sktid]
        assert skt is not None
        return skt


def errids(msgs: Iterable[wire.Message]) -> list[int]:
    return [m.errid for m in msgs if isinstance(m, wire.Result)]


def names(msgs: Iterable[wire.Message]) -> list[str]:
    return [m.NAME for m in msgs]


LO4 = b"\x7f\x00\x00\x01"
ANY4 = bytes(4)


def udp_open(sktid: int = 1, rbufsz: int = 1 << 20, family: int = 4) -> wire.Nopen:
    return wire.Nopen(
        sktid=sktid,
        family=family,
        proto=17,
        rbufsz=rbufsz,
        laddr=bytes(4 if family == 4 else 16),
        lport=0,
    )


def tcp_open(sktid: int = 2, rbufsz: int = 1 << 20, rport: int = 80) -> wire.Nopen:
    return wire.Nopen(
        sktid=sktid, family=4, proto=6, rbufsz=rbufsz, laddr=ANY4, lport=0, raddr=LO4, rport=rport
    )


def udp_send(sktid: int = 1, tag: int = 7, data: bytes = b"x", time: int = 0) -> wire.Nsend:
    return wire.Nsend(
        sktid=sktid, family=4, proto=17, time=time, tag=tag, data=data, raddr=LO4, rport=53
    )


def tcp_send(sktid: int = 2, tag: int = 9, data: bytes = b"GET", time: int = 0) -> wire.Nsend:
    return wire.Nsend(sktid=sktid, family=4, proto=6, time=time, tag=tag, data=data)
