"""A scripted endpoint whose TCP peers hold a conversation, for the DNS/HTTP/throughput
unit tests (imported by them).

`StreamFakeEndpoint` extends the controller tests' `FakeEndpoint`: a TCP connect to a key
in `peers` makes a `Peer` (from its factory) that sees every nsend as it is "sent"
(at its scheduled time) and answers with `write(data, delay)` / `close(delay)`. It also
keeps a notification mask per socket like the real endpoint (§2.4: masked ndata and ntag
are held, with their times, and released in order when the bit is cleared) and reports
RBUFUSED, so the bulk-transfer method can be checked without a network.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import FakeEndpoint, Rig
from testkit.reflexhost import NullHost

from packetlab.endpoint.config import parse_config
from packetlab.endpoint.memory import system_image
from packetlab.wire import (
    Message,
    Mwrite,
    Ndata,
    Nopen,
    NotifMask,
    Nsend,
    Nstat,
    NstatCode,
    Ntag,
    Proto,
    vmem,
)

T = TypeVar("T")
NDATA, NTAG, NSTAT = int(NotifMask.NDATA), int(NotifMask.NTAG), int(NotifMask.NSTAT)


class Peer:
    """One TCP connection's far end. Subclasses override `received`."""

    def __init__(self) -> None:
        self.link: Callable[[bytes | None, float], None] = lambda data, delay: None
        self.got = bytearray()

    def received(self, data: bytes) -> None:
        self.got += data

    def write(self, data: bytes, delay: float = 0.0) -> None:
        self.link(data, delay)

    def close(self, delay: float = 0.0) -> None:
        self.link(None, delay)


class StreamFakeEndpoint(FakeEndpoint):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.peers: dict[tuple[str, int], Callable[[], Peer]] = {}
        self.live: dict[int, Peer] = {}
        self.masks: dict[int, int] = {}
        self.held: dict[int, list[tuple[int, Message]]] = {}
        self.rbufused: dict[int, int] = {}
        self.chunk = 1 << 16  # bytes per ndata (one recv)
        self.overhead = 0  # RBUFUSED charged per ndata beyond its bytes (the real one: 116)
        self.rate: float | None = None  # TCP send rate (bytes/s); None: instant
        self.pending: list[tuple[int, int, Nsend]] = []  # (ready ns, order, nsend)
        self.seq = itertools.count()
        self.link_free = 0  # endpoint ns when the simulated link is idle again
        self.unsent = 0  # queued TCP payload not sent yet (in BUFUSED)
        self.memory = system_image(parse_config(["BufMax 268435456"]))

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Nopen) and msg.proto == Proto.TCP and msg.raddr is not None:
            key = (str(ipaddress.ip_address(msg.raddr)), msg.rport or 0)
            if key in self.peers:
                self.tcp_servers[key] = lambda data: []  # connects
                super().handle(msg)
                peer = self.peers[key]()
                peer.link = self._linker(msg)
                self.live[msg.sktid] = peer
                self.masks[msg.sktid] = 0
                self.held[msg.sktid] = []
                self.rbufused[msg.sktid] = 0
                return
        if isinstance(msg, Nsend) and msg.sktid in self.live:
            self.result()
            self._queue(msg)
            return
        if isinstance(msg, Mwrite) and msg.addr >= vmem.SKT_BASE:
            sktid, off = divmod(msg.addr - vmem.SKT_BASE, vmem.SKT_STRIDE)
            if off == vmem.SKT_NOTIFMASK.addr and sktid in self.masks:
                self.result()
                self._mask(sktid, struct.unpack(">H", msg.data)[0])
                return
        super().handle(msg)

    def _queue(self, msg: Nsend) -> None:
        """Send at its time, in time order (then queue order), one after the other over
        the simulated link, as the endpoint's scheduler and the kernel do: a send due now
        goes before one queued earlier for later."""
        self.unsent += len(msg.data)
        heapq.heappush(self.pending, (max(msg.time, self.now()), next(self.seq), msg))
        self._pump()

    def _pump(self) -> None:
        now = self.now()
        while self.pending and self.pending[0][0] <= now:  # due: onto the link in order
            ready, _, msg = heapq.heappop(self.pending)
            when = ready
            if self.rate is not None:
                when = max(ready, self.link_free) + int(len(msg.data) / self.rate * 1e9)
                self.link_free = when
            self.clock.callLater((when - now) / 1e9, self._sent, msg, when)
        if self.pending:
            self.clock.callLater((self.pending[0][0] - now) / 1e9, self._pump)

    def read(self, addr: int, n: int) -> bytes:
        if addr == vmem.BUFUSED.addr:
            return struct.pack(">I", self.unsent + sum(self.rbufused.values()))[:n]
        if addr >= vmem.SKT_BASE:
            sktid, off = divmod(addr - vmem.SKT_BASE, vmem.SKT_STRIDE)
            block = bytearray(super().read(vmem.SKT_BASE + sktid * vmem.SKT_STRIDE, 0x80))
            struct.pack_into(">I", block, vmem.SKT_RBUFUSED.addr, self.rbufused.get(sktid, 0))
            return bytes(block[off : off + n]).ljust(n, b"\0")
        return super().read(addr, n)

    def _linker(self, nopen: Nopen) -> Callable[[bytes | None, float], None]:
        def link(data: bytes | None, delay: float) -> None:
            owner = self.live.get(nopen.sktid)  # this connection's peer, while it is open
            self.clock.callLater(delay, arrive, owner, data)

        def arrive(owner: Peer | None, data: bytes | None) -> None:
            if owner is not None and self.live.get(nopen.sktid) is owner:  # not a later
                self._arrive(nopen, data)  # connection that has the socket id again

        return link

    def _arrive(self, nopen: Nopen, data: bytes | None) -> None:
        if nopen.sktid not in self.live:
            return
        if data is None:
            note: Message = Nstat(nopen.sktid, nopen.family, Proto.TCP, self.now(),
                                  NstatCode.PEERCLOSED)  # fmt: skip
            self._notify(nopen.sktid, NSTAT, note)  # held behind the data while masked
            return
        for i in range(0, len(data), self.chunk):
            piece = data[i : i + self.chunk]
            self.rbufused[nopen.sktid] += len(piece) + self.overhead  # held until it goes out
            self._notify(nopen.sktid, NDATA, Ndata(nopen.sktid, nopen.family, Proto.TCP,
                                                   self.now(), piece))  # fmt: skip

    def _sent(self, msg: Nsend, when: int) -> None:
        self.unsent -= len(msg.data)
        if msg.tag:
            self._notify(msg.sktid, NTAG, Ntag(msg.sktid, msg.tag, when))
        peer = self.live.get(msg.sktid)
        if peer is not None:
            peer.received(msg.data)

    def _notify(self, sktid: int, bit: int, note: Message) -> None:
        if self.masks.get(sktid, 0) & bit:
            self.held[sktid].append((bit, note))
        else:
            self._out(sktid, note)

    def _out(self, sktid: int, note: Message) -> None:
        if isinstance(note, Ndata):
            self.rbufused[sktid] = max(0, self.rbufused[sktid] - len(note.data) - self.overhead)
        self.send(note)

    def _mask(self, sktid: int, mask: int) -> None:
        cleared = self.masks[sktid] & ~mask
        self.masks[sktid] = mask
        keep = [h for h in self.held[sktid] if not h[0] & cleared]
        out = [h for h in self.held[sktid] if h[0] & cleared]
        self.held[sktid] = keep
        for _, note in out:
            self._out(sktid, note)


class StreamRig(Rig):
    """An EndpointSession and a StreamFakeEndpoint joined by iosim on a task.Clock."""

    endpoint: StreamFakeEndpoint

    def __init__(self, endpoint: type[StreamFakeEndpoint] | None = None) -> None:
        super().__init__(endpoint=endpoint or StreamFakeEndpoint, start=1000)

    def run(self, d: Deferred[T], step: float = 0.001, limit: float = 600.0) -> T:
        """As Rig.run, with `limit` counted from now."""
        return self.drive(d, step, until=self.clock.seconds() + limit)


class _ReflexHost(NullHost):
    """The endpoint's clock; the timer is kept on the instance."""

    def __init__(self, endpoint: ReflexFakeEndpoint) -> None:
        super().__init__()
        self.endpoint = endpoint

    def now(self) -> int:
        return self.endpoint.now()

    def timer_at(self, instance: Any, when_ns: int) -> None:
        instance.timer_request = when_ns


class ReflexFakeEndpoint(StreamFakeEndpoint):
    """A StreamFakeEndpoint that runs reflexes as ours does: CAPS allows them, `rattach`
    compiles the real wasm, each packet of the socket goes through `reflex_packet` before
    its ndata, and its sends (and its timer's) are nsends of that moment."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.reflexes: dict[int, Any] = {}  # sktid -> ReflexInstance
        self.sent_by: dict[int, list[int]] = {}  # sktid -> [sent, denied]

    def handle(self, msg: Any) -> None:
        from packetlab.monitor.runtime import Box, Settings
        from packetlab.reflex import wire as rw
        from packetlab.reflex.runtime import ReflexInstance, compile_reflex
        from packetlab.wire.framer import Unknown

        if isinstance(msg, Unknown) and msg.msgtype == rw.RATTACH:
            att = rw.decode_attach(msg.body)
            inst = ReflexInstance(Box(Settings()), compile_reflex(att.program[1:]),
                                  _ReflexHost(self))  # fmt: skip
            inst.setup(b"")
            inst.set_params(0, att.params)
            self.reflexes[att.sktid] = inst
            self.sent_by[att.sktid] = [0, 0]
            self.result()
            return
        super().handle(msg)

    def read(self, addr: int, n: int) -> bytes:
        from packetlab.reflex import wire as rw

        if addr == rw.CAPS:
            caps = rw.Caps(flags=rw.CAPS_ALLOWED, params_len=1024, state_len=1024, max_emits=64)
            return caps.encode()[:n]
        if rw.BLOCK_BASE <= addr < rw.BLOCK_BASE + rw.BLOCK_SPAN:
            sktid = (addr - rw.BLOCK_BASE) // rw.BLOCK_STRIDE
            sent, denied = self.sent_by.get(sktid, [0, 0])
            stat = rw.STAT_RUNNING if sktid in self.reflexes else rw.STAT_NONE
            head = struct.pack(">B3xIIIIIH6x32s", stat, 0, sent, denied, 0, 0, 0, bytes(32))
            return head[:n].ljust(n, b"\0")
        return super().read(addr, n)

    def _arrive(self, nopen: Nopen, data: bytes | None) -> None:
        inst = self.reflexes.get(nopen.sktid)
        if inst is not None and data:
            inst.packet(nopen.sktid, nopen.family, Proto.TCP, self.now(), None, None, data)
            self._emit(nopen.sktid, inst)
        super()._arrive(nopen, data)

    def _emit(self, sktid: int, inst: Any) -> None:
        for e in inst.emits:
            self._queue(Nsend(e.sktid, 4, Proto.TCP, e.time, e.tag, e.data))
            self.sent_by[sktid][0] += 1
        inst.emits = []
        when = inst.timer_request
        if when is not None:
            inst.timer_request = None

            def fire() -> None:
                inst.call("reflex_timer", (self.now(), inst.ctx))
                self._emit(sktid, inst)

            self.clock.callLater(max(0, when - self.now()) / 1e9, fire)
