"""UDP for programs that do not speak SOCKS: relay ports for libpktwrap.so's UDP part.

The shim (csrc/pktwrap_udp.c) asks over a unix socket for the relay port of each UDP
destination D the program sends to (`MapServer`); we open a loopback UDP port for D
(`DestinationRelay`) and the shim swaps D for it in the program's sends, and back in the
peer addresses it reads. Each program socket (its loopback source address) that sends to
D gets its own endpoint UDP socket, so replies reach the right program socket; datagrams
the endpoint receives from D go back to it from the relay port. Each (program socket,
D) is one `ConnTiming` record ("udp").
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger

from packetlab.controller import ControllerError, EndpointSession, IPAddress, unpack_address
from packetlab.wire import Ndata, Ntag
from packetlab.wrap.resolve import Names, NoSuchName, ResolveError
from packetlab.wrap.timeline import ConnTiming, Notices, Timeline, TimingLog
from packetlab.wrap.vclock import SEND, VirtualClock

MAX_DESTINATIONS = 256
MAX_FLOWS = 128  # endpoint UDP sockets (the session has 256 socket ids)
MAX_PENDING = 64  # datagrams of one flow waiting for its socket
# Twisted reads 8192 bytes by default and silently cuts what is longer; a program may send
# (and be answered with) any datagram up to 65535 bytes.
MAX_DATAGRAM = 65535
# Answers to the shim's name lookups (csrc/pktwrap_udp.c).
LOOKUP_OK, LOOKUP_NONAME, LOOKUP_FAILED, LOOKUP_LOCAL = 0, 1, 2, 3


class _Flow:
    """One program socket ⇄ D, over one endpoint UDP socket."""

    def __init__(self, relay: DestinationRelay, src: tuple[str, int], rec: ConnTiming) -> None:
        self.relay = relay
        self.src = src
        self.rec = rec
        self.timeline = Timeline(relay.owner.clock, relay.owner.reactor, rec)
        self.sktid: int | None = None
        self.waiting: list[tuple[int, bytes]] = []
        self.failed = False

    async def open(self) -> None:
        session = self.relay.owner.session
        try:
            sktid = session.free_sktid()
            sock = await session.nopen_udp(sktid, family=self.relay.target.version, buffer=False)
        except ControllerError as e:
            self.failed = True
            self.rec.error = str(e)
            self.waiting.clear()
            return
        sock.add_callback(self._note)
        self.sktid = sktid
        waiting, self.waiting = self.waiting, []
        for v, data in waiting:
            self.send(v, data)

    def send(self, v: int, data: bytes) -> None:
        if self.failed:
            return
        if self.sktid is None:
            if len(self.waiting) < MAX_PENDING:
                self.waiting.append((v, data))
            return
        r = self.relay
        d = r.owner.session.nsend(self.sktid, data, to=(r.target, r.port), ntag=True)
        self.rec.datagrams_up += 1
        self.rec.bytes_up += len(data)

        def queued(q: Any) -> None:
            if q.ntag is not None:
                q.ntag.addCallbacks(lambda n: self._sent(v, n), lambda f: None)

        def failed(f: Any) -> None:  # refused by the endpoint (valid_dest, quota): dropped
            self.rec.error = self.rec.error or str(f.value)
            if getattr(f.value, "name", None) == "ESKTPKTDENY":
                r.owner.notices.say(
                    "udp-send",
                    f"the endpoint refused a datagram to {r.dst}:{r.port} (ESKTPKTDENY: a "
                    "destination its certificate does not allow, or over its send window; "
                    "--timings has the error); such datagrams are dropped, as a network "
                    "would",
                )

        d.addCallbacks(queued, failed)

    def _sent(self, v: int, note: Ntag) -> None:
        if self.rec.request_sent is None:
            self.rec.request_sent = note.time
        self.timeline.anchor(v, note.time)

    def _note(self, note: Any) -> None:
        if not isinstance(note, Ndata) or note.raddr is None:
            return
        r = self.relay
        if unpack_address(note.family, note.raddr) != r.target or note.rport != r.port:
            r.owner.stray += 1  # from elsewhere: the relay port can only speak for D
            return
        if self.rec.first_byte is None:
            self.rec.first_byte = note.time
        self.rec.last_byte = note.time
        self.rec.datagrams_down += 1
        self.rec.bytes_down += len(note.data)
        data = note.data
        self.timeline.at(note.time, lambda: r.to_program(data, self.src))

    def close(self) -> None:
        self.timeline.cancel()
        session = self.relay.owner.session
        if self.sktid is not None and session.find_socket(self.sktid) is not None:
            session.nclose(self.sktid).addErrback(lambda f: f.trap(ControllerError))
        self.relay.owner.timings.finished(self.rec)


class DestinationRelay(DatagramProtocol):
    """The loopback port that stands for destination D."""

    def __init__(self, owner: UdpMap, dst: IPAddress, port: int) -> None:
        self.owner = owner
        self.dst = dst
        # An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) is that
        # IPv4 peer: the endpoint talks to it over IPv4, as the program's kernel would.
        self.target: IPAddress = getattr(dst, "ipv4_mapped", None) or dst
        self.port = port
        self.flows: dict[tuple[str, int], _Flow] = {}

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        src = (addr[0], addr[1])
        flow = self.flows.get(src)
        if flow is None:
            if self.owner.flow_count >= MAX_FLOWS:
                self.owner.dropped += 1
                return
            rec = self.owner.timings.new("udp", str(self.dst), self.port)
            rec.addr = str(self.target)
            if self.owner.names is not None:
                self.owner.names.label(rec, self.target)
            flow = self.flows[src] = _Flow(self, src, rec)
            self.owner.flow_count += 1
            Deferred.fromCoroutine(flow.open())
        flow.send(self.owner.now(), datagram)

    def to_program(self, data: bytes, src: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.write(data, src)

    def close(self) -> None:
        for flow in self.flows.values():
            flow.close()
        self.flows.clear()
        if self.transport is not None:
            self.transport.stopListening()


class _MapRequest(Protocol):
    """family(1) port(2) address(4|16) → relay port(2); 0 = refused. Or a name lookup
    (the shim's getaddrinfo): "N" family(1: 0, 4, 6) length(1) name → status(1)
    count(1) then family(1) address(4|16) per address; status LOOKUP_*."""

    factory: MapServer
    transport: Any

    def __init__(self) -> None:
        self.buf = b""
        self.busy = False

    def dataReceived(self, data: bytes) -> None:
        if self.busy:
            return
        self.buf += data
        if self.buf[:1] == b"N":
            if len(self.buf) >= 3 and len(self.buf) >= 3 + self.buf[2]:
                self.busy = True
                name = self.buf[3 : 3 + self.buf[2]].decode("ascii", "replace")
                Deferred.fromCoroutine(self._lookup(name, self.buf[1]))
            return
        if self.buf[:1] == b"S":
            if len(self.buf) >= 3:
                self.busy = True
                port = struct.unpack_from(">H", self.buf, 1)[0]
                Deferred.fromCoroutine(self._local(port))
            return
        if len(self.buf) > 19:
            self.transport.loseConnection()
            return
        if not self.buf or len(self.buf) < {4: 7, 6: 19}.get(self.buf[0], 1):
            return
        port = self.factory.owner.relay_port(self.buf)
        self.transport.write(struct.pack(">H", port))
        self.transport.loseConnection()

    async def _local(self, port: int) -> None:
        """The endpoint-side address of the program's TCP connection from loopback port
        `port` (its getsockname): family(1: 4, 6; 0 unknown) port(2) address."""
        answer = b"\0"
        local_of = self.factory.owner.local_of
        try:
            found = await local_of(port) if local_of is not None else None
        except Exception:  # a bug: the program's getsockname must not wait forever
            self.factory.owner.log.failure("local address of {port}", port=port)
            found = None
        if found is not None:
            addr, lport = found
            answer = bytes([addr.version]) + struct.pack(">H", lport) + addr.packed
        self.transport.write(answer)
        self.transport.loseConnection()

    async def _lookup(self, name: str, family: int) -> None:
        try:
            answer = await self.factory.owner.lookup(name, family)
        except Exception:  # a bug: the program's getaddrinfo must not wait forever
            self.factory.owner.log.failure("lookup of {name}", name=name)
            answer = bytes([LOOKUP_FAILED, 0])
        self.transport.write(answer)
        self.transport.loseConnection()


class MapServer(Factory):
    def __init__(self, owner: UdpMap) -> None:
        self.owner = owner

    def buildProtocol(self, addr: Any) -> Any:
        p = _MapRequest()
        p.factory = self
        return p


class UdpMap:
    """All relay ports of one wrapped run."""

    log = Logger()

    def __init__(
        self,
        session: EndpointSession,
        reactor: Any,
        timings: TimingLog,
        clock: VirtualClock | None,
        names: Names | None = None,
        notices: Notices | None = None,
    ) -> None:
        self.session = session
        self.names = names
        self.notices = notices if notices is not None else Notices()
        self.reactor = reactor
        self.timings = timings
        self.clock = clock
        self.relays: dict[tuple[IPAddress, int], tuple[DestinationRelay, int]] = {}
        # The endpoint-side (address, port) of a wrapped TCP connection, by the program's
        # loopback port (WrapFactory.local_address).
        self.local_of: Callable[[int], Awaitable[tuple[IPAddress, int] | None]] | None = None
        self.flow_count = 0
        self.dropped = 0
        self.stray = 0
        self._listening: Any = None

    def now(self) -> int:
        """When the program sent what we are handling (the shim's mark; virtual ns)."""
        return self.clock.acted(SEND) if self.clock is not None else 0

    async def lookup(self, name: str, family: int) -> bytes:
        """The answer to a shim's name lookup: the endpoint's addresses for `name`. With
        timing fidelity it comes when the program's clock has advanced by the endpoint's
        DNS interval, as a native lookup's would."""
        if self.names is None or self.names.local(name):
            return bytes([LOOKUP_LOCAL, 0])
        start = self.clock.virtual() if self.clock is not None else 0
        try:
            answer = await self.names.lookup(name, family)
        except (ResolveError, ControllerError) as e:
            # No connection follows: the failed lookup is a timings line of its own.
            rec = self.timings.new("dns", name, 53)
            rec.error = str(e) or type(e).__name__
            self.timings.finished(rec)
            return bytes([LOOKUP_NONAME if isinstance(e, NoSuchName) else LOOKUP_FAILED, 0])
        addrs = answer.addresses[:32]
        out = bytes([LOOKUP_OK, len(addrs)])
        out += b"".join(bytes([a.version]) + a.packed for a in addrs)
        if self.clock is not None and answer.sent is not None and answer.answered is not None:
            wait = self.clock.due(start + answer.answered - answer.sent)
            if wait > 0:
                d: Deferred[None] = Deferred()
                self.reactor.callLater(wait / 1e9, d.callback, None)
                await d
                self.clock.due(start + answer.answered - answer.sent)
        return out

    def listen(self, path: str) -> None:
        self._listening = self.reactor.listenUNIX(path, MapServer(self), mode=0o600)

    def relay_port(self, request: bytes) -> int:
        """The relay port for the destination in a shim's request (0: cannot)."""
        size = {4: 4, 6: 16}.get(request[0] if request else 0)
        if size is None or len(request) != 3 + size:
            return 0
        fam, port = request[0], struct.unpack_from(">H", request, 1)[0]
        dst = ipaddress.ip_address(request[3:])
        key = (dst, port)
        if key in self.relays:
            return self.relays[key][1]
        if len(self.relays) >= MAX_DESTINATIONS:
            return 0
        relay = DestinationRelay(self, dst, port)
        try:
            p = self.reactor.listenUDP(
                0, relay, interface="::1" if fam == 6 else "127.0.0.1", maxPacketSize=MAX_DATAGRAM
            )
        except Exception as e:  # no ::1 here, out of ports
            self.log.warn("no relay port for {dst}: {e}", dst=dst, e=e)
            return 0
        number: int = p.getHost().port
        self.relays[key] = (relay, number)
        return number

    def close(self) -> Deferred[Any] | None:
        for relay, _ in self.relays.values():
            relay.close()
        self.relays.clear()
        if self._listening is not None:
            d: Deferred[Any] | None = self._listening.stopListening()
            self._listening = None
            return d
        return None
