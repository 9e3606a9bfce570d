"""UDP for programs that do not speak SOCKS: relay ports for libpktwrap.so's UDP part.

The shim (csrc/pktwrap_udp.c) asks over a unix socket for the relay port of each UDP
destination D the program sends to (`shimctl.MapServer`); we open a loopback UDP port for D
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
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab.controller import (
    ControllerError,
    EndpointSession,
    IPAddress,
    SocketInfo,
    read_socket_info,
    unpack_address,
)
from packetlab.wire import Ndata, Ntag
from packetlab.wrap.parked import ParkedConnects
from packetlab.wrap.resolve import Names, NoSuchName, ResolveError, source_for
from packetlab.wrap.shimctl import (
    LOOKUP_FAILED,
    LOOKUP_LOCAL,
    LOOKUP_NONAME,
    LOOKUP_OK,
    MapServer,
)
from packetlab.wrap.timeline import ConnTiming, Notices, Timeline, TimingLog
from packetlab.wrap.vclock import SEND, VirtualClock

MAX_DESTINATIONS = 256
MAX_FLOWS = 128  # endpoint UDP sockets (the session has 256 socket ids)
# Datagrams waiting for their endpoint socket to open (one controller round trip): a
# burst from a new socket is held as a kernel's socket buffer would hold it. 64 before
# session 25: a burst of 200 datagrams lost 136 (natively none).
MAX_PENDING = 1024
MAX_PENDING_BYTES = 1 << 20
SOCK_WAIT = 2.0  # seconds a getsockname waits for the datagram it sent to reach its relay
# Twisted reads 8192 bytes by default and silently cuts what is longer; a program may send
# (and be answered with) any datagram up to 65535 bytes.
MAX_DATAGRAM = 65535


class _Sock:
    """The endpoint UDP socket of one program socket (its loopback source address; one
    per address family it talks to): every destination the program socket sends to
    shares it, so its datagrams leave from one endpoint port, as they leave natively
    from one port (getsockname shows it)."""

    def __init__(self, owner: UdpMap, src: tuple[str, int], version: int) -> None:
        self.owner = owner
        self.src = src
        self.version = version
        self.sktid: int | None = None
        self.failed: str | None = None
        self.flows: dict[tuple[IPAddress, int], _Flow] = {}  # by destination
        self.waiting: list[tuple[_Flow, int, bytes]] = []
        self.waiting_bytes = 0
        self.opened: Deferred[None] = Deferred()
        self._info: Deferred[SocketInfo | None] | None = None
        self.used = owner.tick()  # when it last sent or received (for reuse, sock_for)

    async def open(self) -> None:
        session = self.owner.session
        try:
            sktid = session.free_sktid()
            sock = await session.nopen_udp(sktid, family=self.version, buffer=False)
        except ControllerError as e:
            self.failed = str(e)
            for flow, _, _ in self.waiting:
                flow.rec.error = flow.rec.error or self.failed
            self.waiting.clear()
            self.waiting_bytes = 0
            self.opened.callback(None)
            return
        sock.add_callback(self._note)
        self.sktid = sktid
        waiting, self.waiting, self.waiting_bytes = self.waiting, [], 0
        for flow, v, data in waiting:
            flow.send(v, data)
        self.opened.callback(None)

    async def local(self) -> tuple[IPAddress | None, int] | None:
        """The endpoint socket's (LADDR or None when it is unspecified, LPORT)."""
        await _chained(self.opened)
        if self.sktid is None:
            return None
        if self._info is None:
            d: Deferred[Any] = read_socket_info(self.owner.session, self.sktid)
            self._info = d.addErrback(lambda f: f.trap(ControllerError) and None)
        info: SocketInfo | None = await _chained(self._info)
        if info is None or not info.lport:
            return None
        laddr = info.laddr if info.laddr is not None and not info.laddr.is_unspecified else None
        return laddr, info.lport

    def _note(self, note: Any) -> None:
        if not isinstance(note, Ndata) or note.raddr is None:
            return
        flow = self.flows.get((unpack_address(note.family, note.raddr), note.rport or 0))
        if flow is None:
            self.owner.stray += 1  # from elsewhere: no relay port speaks for it
            return
        self.used = self.owner.tick()
        flow.received(note)

    def close(self) -> None:
        session = self.owner.session
        if self.sktid is not None and session.find_socket(self.sktid) is not None:
            session.nclose(self.sktid).addErrback(lambda f: f.trap(ControllerError))
            self.sktid = None


def _chained(d: Deferred[Any]) -> Deferred[Any]:
    """A Deferred firing with `d`'s result, leaving `d`'s own result in place (awaiting
    `d` itself would consume it for its later waiters)."""
    out: Deferred[Any] = Deferred()

    def both(result: Any) -> Any:
        if isinstance(result, Failure):
            out.errback(result)
            return None  # handled by `out`'s waiter
        out.callback(result)
        return result

    d.addBoth(both)
    return out


class _Flow:
    """One program socket → D over its `_Sock`: one timings record."""

    def __init__(self, relay: DestinationRelay, sock: _Sock, rec: ConnTiming) -> None:
        self.relay = relay
        self.sock = sock
        self.src = sock.src
        self.rec = rec
        self.timeline = Timeline(relay.owner.clock, relay.owner.reactor, rec)

    def send(self, v: int, data: bytes) -> None:
        sock = self.sock
        sock.used = sock.owner.tick()
        if sock.failed is not None:
            self.rec.error = self.rec.error or sock.failed
            return
        if sock.sktid is None:
            if (
                len(sock.waiting) < MAX_PENDING
                and sock.waiting_bytes + len(data) <= MAX_PENDING_BYTES
            ):
                sock.waiting.append((self, v, data))
                sock.waiting_bytes += len(data)
            return
        r = self.relay
        d = r.owner.session.nsend(sock.sktid, data, to=(r.target, r.port), ntag=True)
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

    def received(self, note: Ndata) -> None:
        if self.rec.first_byte is None:
            self.rec.first_byte = note.time
        self.rec.last_byte = note.time
        self.rec.datagrams_down += 1
        self.rec.bytes_down += len(note.data)
        data, r = note.data, self.relay
        self.timeline.at(note.time, lambda: r.to_program(data, self.src))

    def close(self) -> None:
        self.timeline.cancel()
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
            sock = self.owner.sock_for(src, self.target.version)
            if sock is None:
                self.owner.dropped += 1
                return
            rec = self.owner.timings.new("udp", str(self.dst), self.port)
            rec.addr = str(self.target)
            if self.owner.names is not None:
                self.owner.names.label(rec, self.target)
            flow = self.flows[src] = sock.flows[(self.target, self.port)] = _Flow(self, sock, rec)
            if sock.failed is not None:
                rec.error = sock.failed
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
        self.by_port: dict[int, DestinationRelay] = {}  # by relay port number
        self.socks: dict[tuple[str, int, int], _Sock] = {}  # by program (host, port), version
        # The endpoint-side (address, port) of a wrapped TCP connection, by the program's
        # loopback port (WrapFactory.local_address).
        self.local_of: Callable[[int], Awaitable[tuple[IPAddress, int] | None]] | None = None
        # Why the latest wrapped TCP connect to a destination failed (a SOCKS reply code)
        self.failure_of: Callable[[IPAddress, int], int | None] | None = None
        self.peer_of: Callable[[int], tuple[IPAddress, int] | None] | None = None
        self.parked: ParkedConnects | None = None  # the shim's parked TCP connects
        self.dropped = 0
        self.stray = 0
        self.reused = 0  # endpoint sockets closed for newer program sockets
        self._listening: Any = None
        self._ticks = 0

    def tick(self) -> int:
        self._ticks += 1
        return self._ticks

    @property
    def flow_count(self) -> int:
        """Endpoint UDP sockets open for program sockets."""
        return len(self.socks)

    def sock_for(self, src: tuple[str, int], version: int) -> _Sock | None:
        """The endpoint socket of program socket `src` for IP `version` (opened now if
        new). With MAX_FLOWS open, the one used longest ago is closed for it: a program
        socket's close() is not seen here, and a script that ran `dig` 200 times had every
        datagram after the 128th socket dropped (before session 25). None when all are
        still opening."""
        key = (src[0], src[1], version)
        sock = self.socks.get(key)
        if sock is None:
            if len(self.socks) >= MAX_FLOWS and not self._reuse_one():
                return None
            sock = self.socks[key] = _Sock(self, src, version)
            Deferred.fromCoroutine(sock.open())
        return sock

    def _reuse_one(self) -> bool:
        """Close the endpoint socket used longest ago (its flows' timings are written;
        should its program socket send again, it gets a new one, from another port)."""
        done = [s for s in self.socks.values() if s.sktid is not None or s.failed is not None]
        if not done:
            return False
        old = min(done, key=lambda s: s.used)
        for flow in old.flows.values():
            if flow.relay.flows.get(flow.src) is flow:
                del flow.relay.flows[flow.src]
            flow.close()
        old.flows.clear()
        old.close()
        del self.socks[(old.src[0], old.src[1], old.version)]
        self.reused += 1
        return True

    def connect_failure(self, addr: IPAddress, port: int) -> int:
        """The SOCKS reply code of the latest failed TCP connect to `addr`:`port` ("E"),
        0 if none."""
        code = self.failure_of(addr, port) if self.failure_of is not None else None
        return int(code or 0)

    def tcp_peer(self, port: int) -> tuple[IPAddress | None, int] | None:
        """The destination of the program's TCP connection from loopback port `port`
        ("P"), None if unknown."""
        return self.peer_of(port) if self.peer_of is not None else None

    def park(self, dport: int, addr: bytes, port: int, inode: int) -> Deferred[int] | bool:
        """A non-blocking TCP connect the shim parked ("A"): its answer (parked.TAKEN, or
        AT_ONCE | the reply of a failure in the call); False: not taken."""
        if self.parked is None:
            return False
        return self.parked.park(dport, addr, port, inode)

    def parked_status(self, port: int, inode: int = 0) -> int:
        """The state of the connect parked from loopback port `port` ("F")."""
        return self.parked.status(port, inode) if self.parked is not None else 0xFE

    async def tcp_local(self, port: int) -> tuple[IPAddress | None, int] | None:
        return await self.local_of(port) if self.local_of is not None else None

    async def udp_local(
        self, family: int, port: int, relay_port: int
    ) -> tuple[IPAddress | None, int] | None:
        """What a wrapped UDP socket's getsockname shows natively: the port its datagrams
        leave the endpoint from and, connected (to the relay port standing for D), the
        endpoint's address towards D. A socket connected but silent gets its endpoint
        socket now (natively connect() binds it); one that sent waits for its datagram
        to reach the relay."""
        host = "127.0.0.1" if family == 4 else "::1"
        relay = self.by_port.get(relay_port) if relay_port else None
        version = relay.target.version if relay is not None else family
        sock, waited = None, 0.0
        while sock is None:
            sock = self.socks.get((host, port, version)) or next(
                (s for k, s in self.socks.items() if k[1] == port and k[0] == host), None
            )
            if sock is None and relay is not None:
                sock = self.sock_for((host, port), version)
            if sock is None:
                if waited >= SOCK_WAIT:
                    return None
                d: Deferred[None] = Deferred()
                self.reactor.callLater(0.01, d.callback, None)
                await d
                waited += 0.01
        found = await sock.local()
        if found is None or relay is None or found[0] is not None:
            return found
        sources = self.names.sources if self.names is not None else ()
        return source_for(relay.target, sources), found[1]

    async def reverse(self, addr: IPAddress) -> bytes:
        """The answer to a shim's reverse lookup: the endpoint's PTR name for `addr`."""
        if self.names is None or self.names.local_address(addr):
            return bytes([LOOKUP_LOCAL, 0])
        start = self.clock.virtual() if self.clock is not None else 0
        try:
            name, sent, answered = await self.names.reverse(addr)
        except (ResolveError, ControllerError) as e:
            rec = self.timings.new("dns", str(addr), 53)
            rec.error = str(e) or type(e).__name__
            self.timings.finished(rec)
            return bytes([LOOKUP_NONAME if isinstance(e, NoSuchName) else LOOKUP_FAILED, 0])
        raw = name.encode("ascii", "replace")[:255]
        await self._hold(start, sent, answered)
        return bytes([LOOKUP_OK, len(raw)]) + raw

    async def _hold(self, start: int, sent: int | None, answered: int | None) -> None:
        """With timing fidelity, a lookup's answer comes when the program's clock has
        advanced by the endpoint's DNS interval, as a native lookup's would."""
        if self.clock is None or sent is None or answered is None:
            return
        wait = self.clock.due(start + answered - sent)
        if wait > 0:
            d: Deferred[None] = Deferred()
            self.reactor.callLater(wait / 1e9, d.callback, None)
            await d
            self.clock.due(start + answered - sent)

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
        # Then the CNAME chain, canonical name last (count, then length + name each)
        chain = [n.encode("ascii", "replace")[:255] for n in answer.names[:8]]
        if chain:
            out += bytes([len(chain)]) + b"".join(bytes([len(n)]) + n for n in chain)
        await self._hold(start, answer.sent, answer.answered)
        return out

    def listen(self, path: str) -> None:
        self._listening = self.reactor.listenUNIX(path, MapServer(self), mode=0o600)

    def relay_destination(self, number: int) -> tuple[IPAddress | None, int] | None:
        """The destination relay port `number` stands for ("D"), as the program asked it;
        None if it is no relay port of this run. For a UDP socket inherited over exec():
        the new program's shim has no table of relay ports yet."""
        relay = self.by_port.get(number)
        return (relay.dst, relay.port) if relay is not None else None

    def relay_ports(self) -> list[int]:
        """Every relay port of this run ("L"), for the shim of a process whose UDP socket
        came over exec(): it asks "D" only about these."""
        return sorted(self.by_port)

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
            # The program's sendto fails ENETUNREACH ("Network is unreachable"): say why
            self.notices.say(
                "udp-destinations",
                f"a run sends UDP to at most {MAX_DESTINATIONS} destinations (address and "
                f"port): datagrams to {dst}:{port} and other new ones are refused "
                "(ENETUNREACH in the program)",
            )
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
        self.by_port[number] = relay
        return number

    def close(self) -> Deferred[Any] | None:
        for relay, _ in self.relays.values():
            relay.close()
        self.relays.clear()
        self.by_port.clear()
        for sock in self.socks.values():
            sock.close()
        self.socks.clear()
        if self._listening is not None:
            d: Deferred[Any] | None = self._listening.stopListening()
            self._listening = None
            return d
        return None
