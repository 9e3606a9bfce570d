"""Non-blocking TCP connects the shim parks instead of handing to proxychains (session 31).

proxychains-ng connects inside the program's connect() call, so a non-blocking connect
returned only after the endpoint's connect had ended, and a program's own connect timeout
(curl --connect-timeout, nc -w, ssh ConnectTimeout) fired only with ours. Instead the
shim connects the program's own socket to the `ParkingLot`: a loopback listener whose
accept queue is full (listen(0) and one connection never accepted) drops every SYN, so
the kernel keeps the socket connecting (EINPROGRESS, no POLLOUT, SO_ERROR 0) as towards a
distant server. It then asks us ("A") to connect from the endpoint. When the endpoint's
connect is made, a socket bound to the parking port (SO_REUSEPORT) connects to the
program's port: a TCP simultaneous open, after which the program's socket is writable and
is one end of an ordinary `TcpRelay`. When it fails, that socket resets at once (the
program's socket gets POLLERR; the shim asks "F" for the errno the endpoint's failure
stands for). The answer to "A" waits (at most `AT_ONCE_WAIT`) until the endpoint has
answered the nopen (session 32): a failure of the endpoint's connect() call itself (no
route, its rules) fails the program's connect() call, as natively, and any other early
failure (a loopback port's refusal) is on the program's socket before connect() returns.
A program that closes its socket first (its own timeout) leaves no trace on
the wire (SYNs are dropped): its socket's inode is looked for in /proc/net/tcp* while
connects are parked, and the endpoint's connect is cancelled when it is gone.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from packetlab.controller import ControllerError, IPAddress
from packetlab.wrap.resolve import ResolveError
from packetlab.wrap.socks5 import Rep
from packetlab.wrap.tcp import TcpRelay
from packetlab.wrap.timeline import ConnTiming, Timeline
from packetlab.wrap.vclock import CONNECT

# How often the sockets of parked connects are looked for (their program may close them)
WATCH_INTERVAL = 0.2
SO_ATTACH_FILTER = 26  # Linux (asm-generic/socket.h)
# A classic BPF program of one instruction, "ret #0": every packet dropped
_DROP_ALL = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))
_DROP_PROG = struct.pack("@HP", 1, ctypes.addressof(_DROP_ALL))
# "F" answers besides a SOCKS reply code (a failure)
PENDING, CONNECTED, UNKNOWN = 0xFF, 0x00, 0xFE
# How long "A" waits for the endpoint's first answer (the nopen and the STAT after it)
# before the shim returns EINPROGRESS: an endpoint round trip (0.3-1 ms in-process, ~RTT
# for a remote one) is spent inside a non-blocking connect() so that a connect the
# endpoint's kernel refuses at once fails in the call, as natively (session 32).
AT_ONCE_WAIT = 0.2
# "A" answers: parked (EINPROGRESS), or AT_ONCE | the SOCKS reply of a failure the
# program's connect() call returns (the shim undoes its parking)
TAKEN, AT_ONCE = 0x01, 0x80
# Failures natively inside the connect() call: no route (ENETUNREACH), a local rule (EPERM)
_IN_THE_CALL = (Rep.NETWORK_UNREACHABLE, Rep.NOT_ALLOWED)
MAX_FAILED = 1024  # failures kept for "F" (the oldest forgotten first)
# The timings' error of a connect whose program closed its socket first
GONE = "abandoned: the program closed its socket before the endpoint's connect ended"


class ParkingLot:
    """The loopback port the shim parks program sockets on (`port`)."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port: int = self._listener.getsockname()[1]
        # One connection in the queue fills it (backlog 0): later SYNs are dropped.
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def connect_back(self, program_port: int) -> socket.socket | None:
        """A socket from the parking port to the program's (the simultaneous open); None if
        the program's socket is gone (its port answers with a reset)."""
        s = self._bound()
        try:
            s.settimeout(1.0)  # loopback: made within the call
            s.connect(("127.0.0.1", program_port))
        except OSError:
            s.close()
            return None
        s.setblocking(False)
        return s

    def reset(self, program_port: int) -> None:
        """Fail the program's connecting socket without its ever being writable alone
        (a reset after a simultaneous open left a moment in which a C program polled
        POLLOUT, read EAGAIN and wrote). A SYN from the parking port puts it in SYN_RECV
        (simultaneous open) while its SYN-ACK is dropped by our socket's filter; a second
        SYN on the same addresses gets a challenge ACK (RFC 5961), which our second socket
        answers with a reset whose sequence number is the one the program's socket
        expects: it fails (POLLERR, ECONNRESET) within these calls. Should the challenge
        ACK be rate-limited away, its SYN-ACK's retransmission reaches the listener, whose
        reset fails it a second later; the shim asks "F" for the errno either way."""
        first = self._bound()
        try:
            first.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, _DROP_PROG)
            first.setblocking(False)
            first.connect_ex(("127.0.0.1", program_port))
        finally:
            first.close()  # connecting: closed without a packet
        second = self._bound()
        try:
            second.setblocking(False)
            second.connect_ex(("127.0.0.1", program_port))
        finally:
            second.close()

    def _bound(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", self.port))
        except OSError:
            s.close()
            raise
        return s

    def close(self) -> None:
        self._filler.close()
        self._listener.close()


def live_inodes() -> set[int]:
    """The inodes of this network namespace's TCP sockets."""
    found: set[int] = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, encoding="ascii") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 9:
                        found.add(int(fields[9]))
        except OSError:
            continue
    return found


@implementer(IHalfCloseableProtocol)
class _ProgramSide(Protocol):
    """The wrapper's end of the simultaneous open: the program's bytes to the relay."""

    transport: Any
    relay: TcpRelay

    def connectionMade(self) -> None:
        self.relay.client = self.transport
        self.transport.registerProducer(self.relay, True)
        self.relay.start()

    def dataReceived(self, data: bytes) -> None:
        self.relay.from_client(data)

    def readConnectionLost(self) -> None:
        self.relay.client_fin()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.relay.client_gone()


class _SideFactory(Factory):
    def __init__(self, side: _ProgramSide) -> None:
        self.side = side

    def buildProtocol(self, addr: Any) -> Any:
        return self.side


class Parked:
    """One parked connect: the endpoint's connect, then the relay (`by_port`'s value for
    the program's loopback port, as a `SocksProtocol` is for a proxychains one)."""

    log = Logger()

    def __init__(
        self, lot: ParkedConnects, port: int, inode: int, host: IPAddress, dport: int
    ) -> None:
        f = lot.factory
        self.lot, self.port, self.inode = lot, port, inode
        self.host, self.dport = host, dport
        self.rec = rec = f.timings.new("tcp", str(host), dport)
        rec.addr = str(host)
        if f.names is not None:
            f.names.label(rec, host)
        self.timeline = Timeline(f.clock, f.reactor, rec)
        self._accepted_v = f.clock.acted(CONNECT) if f.clock is not None else 0
        self.relay: TcpRelay | None = None  # once connected
        self._relay = TcpRelay(f.session, None, rec, self.timeline, self._relay_done, f.notices)
        self.state = PENDING
        self._finished = False
        self._later: Any = None  # gone() again, once the nopen is answered
        self._relay.on_open = self._opened
        # The shim's "A", waiting for the endpoint's first answer (`answer`)
        self._asked: Deferred[int] | None = None
        self._ask_timer: Any = None
        self._connecting: Deferred[None] = Deferred.fromCoroutine(self._connect())

    def answer(self) -> Deferred[int]:
        """What "A" answers: TAKEN once the endpoint is connecting (or after
        `AT_ONCE_WAIT`), AT_ONCE | reply if its connect() call failed."""
        d: Deferred[int] = Deferred()
        if self._finished or self.state != PENDING:  # decided already
            d.callback(TAKEN)
            return d
        self._asked = d
        self._ask_timer = self.lot.factory.reactor.callLater(AT_ONCE_WAIT, self._answer, TAKEN)
        return d

    def _answer(self, code: int) -> None:
        d, self._asked = self._asked, None
        if self._ask_timer is not None and self._ask_timer.active():
            self._ask_timer.cancel()
        self._ask_timer = None
        if d is not None:
            d.callback(code)

    def _opened(self) -> None:
        # A loopback destination answers the endpoint at once (natively its refusal or
        # connection is there as connect() returns): "A" waits for the end instead
        if not self.host.is_loopback:
            self._answer(TAKEN)

    @property
    def awaiting_connect(self) -> bool:
        return self.state == PENDING

    async def _connect(self) -> None:
        f, rec = self.lot.factory, self.rec
        try:
            await self._relay.connect(self.host, self.dport, f.connect_timeout, f.stamps)
        except CancelledError:
            rec.error = rec.error or GONE
            self._finish()
            return
        except (ControllerError, ResolveError, ValueError) as e:
            if self.state != PENDING:  # abandoned: the run ended, its line written
                return
            rec.error = str(e) or type(e).__name__
            self.log.info("connect to {host}:{port} failed: {e}", host=self.host,
                          port=self.dport, e=rec.error)  # fmt: skip
            rep = f.connect_failed(self.host, self.dport, e, self._relay.failed_at_once)
            self.state = int(rep)
            if self._asked is not None and rep in _IN_THE_CALL:
                # The program's connect() fails with it (the shim undoes the parking): no
                # reset, nothing for "F"
                self._answer(AT_ONCE | int(rep))
                self._finish()
                return
            self.lot.failed_as(self.port, self.state, self.inode)
            self._refuse()  # on the program's socket before its connect() returns
            return
        if self.state != PENDING:
            self._relay.client_gone()  # nobody takes it now: closes the endpoint's socket
            return
        f.connect_ended(self.host, self.dport, Rep.SUCCEEDED)
        if rec.connect_issued is not None:
            self.timeline.anchor(self._accepted_v, rec.connect_issued)
        if rec.dns_sent is not None and rec.dns_answered is not None:
            self.timeline.shift(rec.dns_answered - rec.dns_sent)
        self.timeline.at(rec.connected, self._connected)

    def _connected(self) -> None:
        if self.state != PENDING:
            self._relay.client_gone()
            return
        self.state = CONNECTED
        s = self.lot.lot.connect_back(self.port)
        if s is None:  # closed by the program meanwhile
            self.rec.error = self.rec.error or GONE
            self._relay.client_gone()
            return
        self.relay = self._relay
        side = _ProgramSide()
        side.relay = self._relay
        try:
            self.lot.factory.reactor.adoptStreamConnection(
                s.fileno(), socket.AF_INET, _SideFactory(side)
            )
        finally:
            s.close()  # adopted as a duplicate
        self._answer(TAKEN)  # the program's socket is connected

    def _refuse(self) -> None:
        """Reset the program's socket: POLLERR, and "F" says why."""
        try:
            self.lot.lot.reset(self.port)
        except OSError as e:  # the shim still says why ("F"), at the program's timeout
            self.log.info("could not reset a parked socket: {e}", e=e)
        self._finish()

    def gone(self) -> None:
        """The program closed its socket while the endpoint connects: cancel that. Not
        while the nopen is unanswered (the endpoint's socket, opened after, would be left
        to the session's end): a moment later, once it is."""
        if self.state != PENDING:
            return
        if self._relay.sktid is None and not self._connecting.called:
            if self._later is None or not self._later.active():
                self._later = self.lot.factory.reactor.callLater(WATCH_INTERVAL, self.gone)
            return
        self._cancel()

    def _cancel(self) -> None:
        if self.state == PENDING:
            self.state = UNKNOWN
            self._connecting.cancel()

    def abandon(self, why: str) -> None:
        """The run ends with this connect waiting: its timings line now."""
        if self.state == PENDING:
            self.rec.error = self.rec.error or why
            self._finish()

    def abort(self) -> None:
        """The session is gone: reset the program's connection, or its socket waiting
        for a connect that will not come (a general failure: ECONNREFUSED, as a refused
        SOCKS connect of proxychains')."""
        if self.relay is not None:
            self.relay.abort()
        elif self.state == PENDING:
            self.lot.failed_as(self.port, int(Rep.GENERAL_FAILURE), self.inode)
            self._cancel()  # the session is gone: nothing is left at the endpoint
            try:
                self.lot.lot.reset(self.port)
            except OSError:
                pass

    def _relay_done(self, rec: ConnTiming) -> None:
        self._finish()

    def _finish(self) -> None:
        lot = self.lot
        if lot.parked.get(self.port) is self and self.state != PENDING:
            del lot.parked[self.port]
        if not self._finished:
            self._finished = True
            lot.factory.timings.finished(self.rec)
        self._answer(TAKEN)


class ParkedConnects:
    """The parked connects of one run, by the program's loopback port."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory  # server.WrapFactory
        self.lot = ParkingLot()
        self.parked: dict[int, Parked] = {}
        # program port → the SOCKS reply of its failure, and the parked socket's inode
        self.failed: dict[int, tuple[int, int]] = {}
        self._watch: Any = None

    def park(self, dport: int, addr: bytes, port: int, inode: int) -> Deferred[int]:
        """ "A": the program's socket from loopback `port` (its inode `inode`) waits for
        a connect to addr:dport; fires with the answer (`Parked.answer`)."""
        host = ipaddress.ip_address(addr)
        old = self.parked.pop(port, None)
        if old is not None:  # its socket closed unseen, the port taken again
            old.gone()
        self.failed.pop(port, None)
        p = self.parked[port] = Parked(self, port, inode, host, dport)
        if self._watch is None:
            self._watch = self.factory.reactor.callLater(WATCH_INTERVAL, self._look)
        return p.answer()

    def failed_as(self, port: int, rep: int, inode: int = 0) -> None:
        self.failed[port] = (rep, inode)
        while len(self.failed) > MAX_FAILED:
            del self.failed[next(iter(self.failed))]

    def status(self, port: int, inode: int = 0) -> int:
        """ "F": PENDING, CONNECTED, the SOCKS reply of its failure, or UNKNOWN. A
        failure is said once, as a socket's error is read once: the shim asks on the fd it
        parked, or on a dup() of it whose SO_ERROR or read said the parking port's reset
        (session 32), whichever first; the other then finds the kernel's error read.
        Said only to the socket that was parked, by its inode (`inode`, 0: not known;
        session 33): a failure nobody read (the program closed its socket at POLLERR) is
        not another socket's that was reset later from the same ephemeral port (its own
        ECONNRESET stays); kept for the parked one, which may still live beside it (two
        connections may share a local port), until the port is parked again."""
        p = self.parked.get(port)
        if p is not None:
            return p.state
        rep, parked_inode = self.failed.get(port, (UNKNOWN, 0))
        if inode and parked_inode and inode != parked_inode:
            return UNKNOWN  # not the socket that failed
        self.failed.pop(port, None)
        return rep

    def _look(self) -> None:
        self._watch = None
        waiting = [p for p in self.parked.values() if p.state == PENDING]
        if not waiting:
            return
        live = live_inodes()
        for p in waiting:
            if p.inode and p.inode not in live:
                p.gone()
        if any(p.state == PENDING for p in self.parked.values()):
            self._watch = self.factory.reactor.callLater(WATCH_INTERVAL, self._look)

    def close(self) -> None:
        if self._watch is not None and self._watch.active():
            self._watch.cancel()
        self._watch = None
        self.lot.close()
