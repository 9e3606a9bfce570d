"""The SOCKS5 server of `pktlab wrap`, bound to one endpoint session.

Listens on loopback for the wrapped program (no authentication: only local processes
reach it). CONNECT opens a TCP connection from the endpoint (`TcpRelay`), resolving a
domain name through the endpoint's DNS server first; UDP ASSOCIATE opens a relay port
whose datagrams leave from endpoint UDP sockets (`UdpRelay`); BIND is refused with
"command not supported". Every connection gets a `ConnTiming` (written to the
`TimingLog` when it ends) and a `Timeline` (timing fidelity when a `VirtualClock` is given).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from packetlab.controller import (
    ConnectFailed,
    ControllerError,
    EndpointSession,
    IPAddress,
    RequestFailed,
)
from packetlab.wrap import socks5
from packetlab.wrap.resolve import Names, ResolveError, resolve
from packetlab.wrap.socks5 import Cmd, Rep, Socks5Handshake
from packetlab.wrap.tcp import TcpRelay
from packetlab.wrap.timeline import ConnTiming, Notices, Timeline, TimingLog, send_now
from packetlab.wrap.udp import UdpRelay, bind_host
from packetlab.wrap.udpmap import MAX_DATAGRAM
from packetlab.wrap.vclock import CONNECT, VirtualClock

if TYPE_CHECKING:
    from packetlab.wrap.parked import Parked, ParkedConnects

HANDSHAKE_TIMEOUT = 30.0
MAX_FAILURES = 256  # destinations whose latest connect failure is kept (for "E")
# The timings' error of a connect the program gave up on before the endpoint's ended
ABANDONED = "abandoned: the program ended before the endpoint's connect did"

_STATE_REPLY = {
    "REFUSED": Rep.CONNECTION_REFUSED,
    "RESET": Rep.CONNECTION_REFUSED,
    "TIMEDOUT": Rep.TTL_EXPIRED,
    "UNREACH": Rep.HOST_UNREACHABLE,
}


def reply_for(error: BaseException, at_once: bool = False) -> Rep:
    """The SOCKS reply for a failed connect. `at_once`: the endpoint's connect() call
    itself failed (TcpRelay.failed_at_once); UNREACH then is a network without a route,
    the kernel's ENETUNREACH (before session 26 EHOSTUNREACH, as for a host that does not
    answer)."""
    if isinstance(error, ResolveError):
        return Rep.HOST_UNREACHABLE
    if isinstance(error, ConnectFailed):
        if error.state.startswith("not established"):
            return Rep.TTL_EXPIRED
        if at_once and error.state == "UNREACH":
            return Rep.NETWORK_UNREACHABLE
        return _STATE_REPLY.get(error.state, Rep.GENERAL_FAILURE)
    if isinstance(error, RequestFailed):
        # The endpoint (its certificate limits, a monitor, its transport support) said no.
        return Rep.NOT_ALLOWED
    return Rep.GENERAL_FAILURE


class WrapFactory(Factory):
    """Shared state of one wrapped run: the session, DNS servers, timings, clock."""

    log = Logger()

    def __init__(
        self,
        session: EndpointSession,
        reactor: Any,
        *,
        dns_servers: list[tuple[IPAddress, int]],
        timings: TimingLog,
        clock: VirtualClock | None = None,
        connect_timeout: float = 20.0,
        names: Names | None = None,
        notices: Notices | None = None,
        early_reply: bool = False,
        stamps: bool = True,
    ) -> None:
        self.session = session
        # Answer "no authentication" as a connection is accepted, before the greeting
        # (session 29, wrap29): proxychains-ng always offers it, and waited a round trip
        # through our event loop for the answer before it sent the CONNECT (one of two
        # per wrapped connect). Only where proxychains alone talks to us (not with
        # --socks-env, whose clients may offer other methods: RFC 1928 answers them).
        self.early_reply = early_reply
        # The endpoint's TIME around each nopen (TcpRelay.connect): needed for timing
        # fidelity and the timings' connect_start/connect_issued only.
        self.stamps = stamps or clock is not None
        self.names = names
        self.reactor = reactor
        self.dns_servers = dns_servers
        self.timings = timings
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.live: set[SocksProtocol] = set()
        self.by_port: dict[int, SocksProtocol] = {}  # the program's loopback port
        # Non-blocking connects the shim parked ("A", session 31), when it may
        self.parked: ParkedConnects | None = None
        self.refused = 0
        self.notices = notices if notices is not None else Notices()
        # Why the latest connect to each destination failed (the SOCKS reply), for the
        # shim's errno ("E"): proxychains makes every failure ECONNREFUSED.
        self.failures: dict[tuple[str, int], Rep] = {}

    def buildProtocol(self, addr: Any) -> Any:
        p = SocksProtocol()
        p.factory = self
        return p

    def _conn(self, port: int) -> SocksProtocol | Parked | None:
        p = self.by_port.get(port)
        if p is None and self.parked is not None:
            return self.parked.parked.get(port)
        return p

    async def local_address(self, port: int) -> tuple[IPAddress, int] | None:
        """The endpoint-side address and port of the wrapped TCP connection the program
        made from loopback port `port` (what its getsockname would show natively); None
        if there is none or the endpoint does not say."""
        p = self._conn(port)
        if p is None or p.relay is None:
            return None
        info = await p.relay.local_info()
        if info is None or info.laddr is None or info.laddr.is_unspecified or not info.lport:
            return None
        return info.laddr, info.lport

    def peer_address(self, port: int) -> tuple[IPAddress, int] | None:
        """The destination of the wrapped TCP connection the program made from loopback
        port `port` (what its getpeername shows natively); None if there is none or it is
        not connected yet. For a socket inherited over exec(): the new program's shim did
        not see its connect."""
        p = self._conn(port)
        if p is None or p.relay is None or p.rec is None or p.rec.addr is None:
            return None
        return ipaddress.ip_address(p.rec.addr), p.rec.port

    def connect_ended(self, host: object, port: int, rep: Rep) -> None:
        key = (str(host), port)
        self.failures.pop(key, None)
        if rep != Rep.SUCCEEDED:
            self.failures[key] = rep
            while len(self.failures) > MAX_FAILURES:  # the oldest first (insertion order)
                del self.failures[next(iter(self.failures))]

    def connect_failed(self, host: object, port: int, error: BaseException, at_once: bool) -> Rep:
        """A wrapped connect to host:port failed with `error`: its SOCKS reply, kept for
        "E" (before the reply: the shim asks after it), and a line when the endpoint's
        rules refused it."""
        rep = reply_for(error, at_once)
        self.connect_ended(host, port, rep)
        if rep == Rep.NOT_ALLOWED:
            # The program only sees EPERM ("Operation not permitted"): say whose rule.
            name = f"[{host}]" if ":" in str(host) else str(host)
            self.notices.say(
                "tcp-open",
                f"the endpoint refused a connection to {name}:{port} "
                f"({getattr(error, 'name', 'refused')}: a destination its certificate or a "
                "monitor does not allow; --timings has the error); the program sees "
                "EPERM (Operation not permitted), as from a local firewall",
            )
        return rep

    def connect_failure(self, addr: IPAddress, port: int) -> Rep | None:
        """Why the latest wrapped connect to `addr`:`port` failed (None: it did not, or
        not lately)."""
        return self.failures.get((str(addr), port))

    def settling(self) -> int:
        """Connections the program may still be closing, which the end of a run waits for
        (their timings complete). Not those still waiting for the endpoint's connect: once
        the program is gone nobody takes them (a program that gave up on a connect, as
        wget's -T alarm does, and exited kept `pktlab wrap` for the whole drain, 2 s, before
        session 30: reading their socket is paused until the connect is answered, so its
        close is not seen)."""
        parked = self.parked.parked.values() if self.parked is not None else ()
        return sum(1 for p in (*self.live, *parked) if not p.awaiting_connect)

    def abandon_pending(self) -> None:
        """The run ends: a connect still waiting for the endpoint (the program gave up on
        it, and exited) is a timings line now, with why; it would end only with the
        session, after the file is closed (no line before session 30)."""
        for p in list(self.live):
            if p.awaiting_connect and p.rec is not None:
                p.rec.error = p.rec.error or ABANDONED
                self.timings.finished(p.rec)
        for q in list(self.parked.parked.values()) if self.parked is not None else ():
            q.abandon(ABANDONED)

    def abort_all(self) -> None:
        """The session is gone: reset every wrapped connection."""
        for p in list(self.live):
            p.transport.abortConnection()
        for q in list(self.parked.parked.values()) if self.parked is not None else ():
            q.abort()


@implementer(IHalfCloseableProtocol)
class SocksProtocol(Protocol):
    factory: WrapFactory
    transport: Any  # ITCPTransport (typed Any: no mypy-zope here)
    log = Logger()

    def __init__(self) -> None:
        self.hs = Socks5Handshake()
        self.relay: TcpRelay | None = None
        self.udp: UdpRelay | None = None
        self.udp_port: Any = None
        self.rec: ConnTiming | None = None
        self.timeline: Timeline | None = None
        self._accepted_v = 0
        self._timer: Any = None
        self._gone = False
        self._port = 0

    def connectionMade(self) -> None:
        f = self.factory
        f.live.add(self)
        self._port = int(getattr(self.transport.getPeer(), "port", 0))
        f.by_port[self._port] = self
        self._accepted_v = f.clock.acted(CONNECT) if f.clock is not None else 0
        self._timer = f.reactor.callLater(HANDSHAKE_TIMEOUT, self._handshake_timeout)
        if f.early_reply:
            self.hs = Socks5Handshake(answered=True)
            self.transport.write(socks5.METHOD_NO_AUTH)

    @property
    def awaiting_connect(self) -> bool:
        """A CONNECT asked for and not yet answered by the endpoint."""
        return self.rec is not None and self.relay is None and self.udp is None and not self._gone

    def _handshake_timeout(self) -> None:
        self._timer = None
        self.log.info("SOCKS handshake timed out")
        self.transport.abortConnection()

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def dataReceived(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.from_client(data)
            return
        if self.udp is not None:
            return  # nothing flows on an association's control connection
        for event in self.hs.feed(data):
            if isinstance(event, socks5.Send):
                self.transport.write(event.data)
            elif isinstance(event, socks5.Refuse):
                self._refuse(event.data, event.why)
            else:
                self._stop_timer()
                # Hold the program's early data until the endpoint connection is up.
                self.transport.pauseProducing()
                Deferred.fromCoroutine(self._request(event))

    def _refuse(self, data: bytes, why: str) -> None:
        self.factory.refused += 1
        self.log.info("SOCKS request refused: {why}", why=why)
        if data:
            self.transport.write(data)
        self.transport.loseConnection()

    async def _request(self, req: socks5.Request) -> None:
        f = self.factory
        rec = f.timings.new(
            "udp" if req.cmd == Cmd.UDP_ASSOCIATE else "tcp", str(req.host), req.port
        )
        self.rec = rec
        if f.names is not None:
            f.names.label(rec, req.host)
        self.timeline = Timeline(f.clock, f.reactor, rec)
        if req.cmd == Cmd.CONNECT:
            await self._connect(req, rec, self.timeline)
        elif req.cmd == Cmd.UDP_ASSOCIATE:
            self._associate(rec, self.timeline)
        else:
            rec.error = f"{req.cmd.name} is not supported"
            self._refuse(socks5.reply(Rep.COMMAND_NOT_SUPPORTED), rec.error)
            f.timings.finished(rec)

    async def _resolve(self, name: str, rec: ConnTiming) -> IPAddress:
        f = self.factory
        answer = await resolve(f.session, name, f.dns_servers)
        if answer.sent is not None and rec.dns_sent is None:
            rec.dns_sent, rec.dns_answered = answer.sent, answer.answered
        return answer.addresses[0]

    async def _connect(self, req: socks5.Request, rec: ConnTiming, timeline: Timeline) -> None:
        f = self.factory
        relay = TcpRelay(f.session, self.transport, rec, timeline, self._relay_done, f.notices)
        try:
            if isinstance(req.host, str):
                addr = await self._resolve(req.host, rec)
            else:
                addr = req.host
            rec.addr = str(addr)
            await relay.connect(addr, req.port, f.connect_timeout, f.stamps)
        except (ControllerError, ResolveError, ValueError) as e:
            if rec.error == ABANDONED:
                return  # the run is over, its line written (abandon_pending)
            rec.error = str(e) or type(e).__name__
            self.log.info(
                "connect to {host}:{port} failed: {e}", host=req.host, port=req.port, e=rec.error
            )
            rep = f.connect_failed(req.host, req.port, e, relay.failed_at_once)
            if not self._gone:
                self.transport.write(socks5.reply(rep))
                self.transport.loseConnection()
            f.timings.finished(rec)
            return
        f.connect_ended(req.host, req.port, Rep.SUCCEEDED)
        if self._gone:
            relay.client_gone()
            return
        self.relay = relay
        self.transport.registerProducer(relay, True)
        # The program's connect() returns when it reads this reply: with timing fidelity,
        # at its accept time + the endpoint's DNS and connect intervals.
        # The program's connect() maps to the endpoint's connect() (just after the nopen:
        # the endpoint's own handling of the request is not part of the handshake).
        # (No stamps without a clock: the timeline then delivers at once.)
        if rec.connect_issued is not None:
            timeline.anchor(self._accepted_v, rec.connect_issued)
        if rec.dns_sent is not None and rec.dns_answered is not None:
            timeline.shift(rec.dns_answered - rec.dns_sent)
        timeline.at(rec.connected, self._connected)

    def _connected(self) -> None:
        if self._gone or self.relay is None:
            return
        answer = socks5.reply(Rep.SUCCEEDED)
        if self.factory.clock is not None:
            send_now(self.transport, answer)  # the program's connect() returns now
        else:
            self.transport.write(answer)
        self.relay.start()
        self.transport.resumeProducing()
        rest, self.hs.rest = self.hs.rest, b""
        if rest:
            self.relay.from_client(rest)

    def _associate(self, rec: ConnTiming, timeline: Timeline) -> None:
        f = self.factory
        peer = self.transport.getPeer()
        relay = UdpRelay(f.session, peer.host, rec, timeline, lambda name: self._resolve(name, rec))
        try:
            port = f.reactor.listenUDP(
                0, relay, interface=bind_host(peer.host), maxPacketSize=MAX_DATAGRAM
            )
        except OSError as e:
            rec.error = str(e)
            self._refuse(socks5.reply(Rep.GENERAL_FAILURE), f"UDP relay: {e}")
            f.timings.finished(rec)
            return
        self.udp, self.udp_port = relay, port
        h = port.getHost()
        self.transport.write(socks5.reply(Rep.SUCCEEDED, ipaddress.ip_address(h.host), h.port))
        self.transport.resumeProducing()

    def _relay_done(self, rec: ConnTiming) -> None:
        self.factory.timings.finished(rec)

    # IHalfCloseableProtocol
    def readConnectionLost(self) -> None:
        if self.relay is not None:
            self.relay.client_fin()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._gone = True
        self._stop_timer()
        self.factory.live.discard(self)
        if self.factory.by_port.get(self._port) is self:
            del self.factory.by_port[self._port]
        if self.relay is not None:
            self.relay.client_gone()
        if self.udp is not None:
            self.udp.close()
            if self.rec is not None:
                self.factory.timings.finished(self.rec)
