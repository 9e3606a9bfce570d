"""The shim's requests over its unix socket (csrc/pktwrap_*.c ⇄ `UdpMap`): UDP relay
ports, name and reverse-name lookups, the endpoint's end of a socket for getsockname,
and the non-blocking TCP connects the shim parks (session 31). One request per
connection, answered and closed; a malformed one gets an answer or a closed connection,
never an exception, and a failing handler still answers (the program's call must not
wait for ever)."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any
from typing import Protocol as Interface

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from packetlab.controller import IPAddress

# Answers to the shim's name lookups.
LOOKUP_OK, LOOKUP_NONAME, LOOKUP_FAILED, LOOKUP_LOCAL = 0, 1, 2, 3


Local = tuple[IPAddress | None, int] | None  # an address and port, or unknown


class ShimAnswers(Interface):
    """What answers the shim's requests (`udpmap.UdpMap`)."""

    log: Any

    def relay_port(self, request: bytes) -> int: ...

    async def lookup(self, name: str, family: int) -> bytes: ...

    async def reverse(self, addr: IPAddress) -> bytes: ...

    async def tcp_local(self, port: int) -> Local: ...

    async def udp_local(self, family: int, port: int, relay_port: int) -> Local: ...

    def connect_failure(self, addr: IPAddress, port: int) -> int: ...

    def tcp_peer(self, port: int) -> Local: ...

    def relay_destination(self, number: int) -> Local: ...

    def relay_ports(self) -> list[int]: ...

    def park(self, dport: int, addr: bytes, port: int, inode: int) -> Deferred[int] | bool: ...

    def parked_status(self, port: int, inode: int) -> int: ...


class _MapRequest(Protocol):
    """One request of the shim over the unix socket, answered and closed:

    * family(1: 4, 6) port(2) address(4|16) → relay port(2) standing for that UDP
      destination; 0 = refused;
    * "N" family(1: 0, 4, 6) length(1) name → status(1) count(1) then family(1)
      address(4|16) per address (getaddrinfo, gethostbyname*; status LOOKUP_*), then,
      when the name is a CNAME, count(1) and length(1) name each: the chain from the
      name asked to the canonical name (last);
    * "R" family(1: 4, 6) address(4|16) → status(1) length(1) name (getnameinfo,
      gethostbyaddr*: the endpoint's PTR answer);
    * "S" port(2) → family(1: 4, 6; 0 unknown) port(2) address: the endpoint's end of the
      program's TCP connection from that loopback port (getsockname);
    * "U" family(1) port(2) relay port(2; 0 unconnected) → the same for a UDP socket (an
      unspecified address: the program's own address stays);
    * "E" family(1: 4, 6) port(2) address(4|16) → the SOCKS reply code (1) of the latest
      failed TCP connect to that destination, 0 if none (connect()'s errno: proxychains
      makes every failure ECONNREFUSED);
    * "P" port(2) → family(1: 4, 6; 0 unknown) port(2) address: the destination of the
      program's TCP connection from that loopback port (getpeername of a socket
      inherited over exec(), whose connect the new program's shim did not see);
    * "D" port(2) → the same for the destination a relay port stands for (0: not one
      of this run's; a UDP socket inherited over exec() gets datagrams from relay ports
      the new program's shim never asked for);
    * "L" → count(2) then port(2) each: every relay port of this run (at most
      udpmap.MAX_DESTINATIONS), so that the shim of a process with a UDP socket inherited
      over exec() asks "D" only about those: asking about every new loopback source cost
      such a socket serving local clients 2/3 of a burst of 1000;
    * "A" family(1: 4, 6) port(2) address(4|16) loopback port(2) inode(8) → 1 (0: not
      taken): the program's non-blocking TCP socket from that loopback port is parked
      (`parked.ParkedConnects`) and waits for the endpoint's connect to that destination;
      answered once the endpoint is connecting (at most `parked.AT_ONCE_WAIT`), or 0x80 |
      the SOCKS reply code when its connect() call failed at once (session 32: the
      program's connect() fails with that errno, as natively);
    * "F" loopback port(2) inode(8; 0 not known) → the parked connect's state
      (`parked.PENDING`, `CONNECTED`, `UNKNOWN`, or the SOCKS reply code of its failure:
      the socket's errno; a failure is said only to the socket that was parked, by its
      inode: session 33)."""

    factory: MapServer
    transport: Any

    def __init__(self) -> None:
        self.buf = b""
        self.busy = False

    def dataReceived(self, data: bytes) -> None:
        if self.busy:
            return
        self.buf += data
        kind, size = self.buf[:1], _REQUEST_SIZE.get(self.buf[:1])
        if kind == b"N":
            size = 3 + self.buf[2] if len(self.buf) >= 3 else None
        elif kind == b"R":
            size = {4: 6, 6: 18}.get(self.buf[1]) if len(self.buf) >= 2 else None
            if size is None and len(self.buf) >= 2:
                self.transport.write(bytes([LOOKUP_FAILED, 0]))
                self.transport.loseConnection()
                return
        elif kind == b"E":
            size = {4: 8, 6: 20}.get(self.buf[1]) if len(self.buf) >= 2 else None
            if size is None and len(self.buf) >= 2:
                self.transport.write(b"\0")
                self.transport.loseConnection()
                return
            if size is not None and len(self.buf) >= size:
                port, addr = struct.unpack_from(">H", self.buf, 2)[0], self.buf[4:size]
                try:
                    code = self.factory.owner.connect_failure(ipaddress.ip_address(addr), port)
                except Exception:  # a bug: the program's connect() must still return
                    self.factory.owner.log.failure("shim request {req!r}", req=self.buf)
                    code = 0
                self.transport.write(bytes([code & 0xFF]))
                self.transport.loseConnection()
            return
        if kind == b"A":
            size = {4: 18, 6: 30}.get(self.buf[1]) if len(self.buf) >= 2 else None
            if size is None and len(self.buf) >= 2:
                self.busy = True  # answered: what follows is not read
                self.transport.write(b"\0")
                self.transport.loseConnection()
                return
            if size is not None and len(self.buf) >= size:
                self.busy = True
                dport, addr = struct.unpack_from(">H", self.buf, 2)[0], self.buf[4 : size - 10]
                port, inode = struct.unpack_from(">HQ", self.buf, size - 10)
                owner, req = self.factory.owner, self.buf
                try:
                    took = owner.park(dport, addr, port, inode)
                except Exception:  # a bug: the program's connect() must still return
                    owner.log.failure("shim request {req!r}", req=req)
                    took = False
                d = took if isinstance(took, Deferred) else succeed(int(took))

                def failed(f: Failure) -> int:  # a bug: the program's connect() must return
                    owner.log.failure("shim request {req!r}", f, req=req)
                    return 0

                d.addErrback(failed).addCallback(self._reply)
            return
        if kind == b"F":
            if len(self.buf) >= 11:
                self.busy = True
                try:
                    port, inode = struct.unpack_from(">HQ", self.buf, 1)
                    state = self.factory.owner.parked_status(port, inode)
                except Exception:  # a bug: the program's call must still return
                    self.factory.owner.log.failure("shim request {req!r}", req=self.buf)
                    state = 0xFE
                self.transport.write(bytes([state & 0xFF]))
                self.transport.loseConnection()
            return
        if kind == b"L":
            try:
                ports = self.factory.owner.relay_ports()
            except Exception:  # a bug: the program's recvfrom must still return
                self.factory.owner.log.failure("shim request {req!r}", req=self.buf)
                ports = []
            self.transport.write(struct.pack(f">H{len(ports)}H", len(ports), *ports))
            self.transport.loseConnection()
            return
        if kind in (b"P", b"D"):
            if len(self.buf) >= 3:
                owner = self.factory.owner
                ask = owner.tcp_peer if kind == b"P" else owner.relay_destination
                try:
                    found = ask(struct.unpack_from(">H", self.buf, 1)[0])
                except Exception:  # a bug: the program's getpeername must still return
                    self.factory.owner.log.failure("shim request {req!r}", req=self.buf)
                    found = None
                self.transport.write(_local_answer(found))
                self.transport.loseConnection()
            return
        if size is not None or kind in (b"N", b"R"):
            if size is None or len(self.buf) < size:
                return
            self.busy = True
            Deferred.fromCoroutine(self._answer(kind, self.buf[:size]))
            return
        if len(self.buf) > 19:
            self.transport.loseConnection()
            return
        if not self.buf or len(self.buf) < {4: 7, 6: 19}.get(self.buf[0], 1):
            return
        port = self.factory.owner.relay_port(self.buf)
        self.transport.write(struct.pack(">H", port))
        self.transport.loseConnection()

    def _reply(self, code: int) -> None:
        self.transport.write(bytes([code & 0xFF]))
        self.transport.loseConnection()

    async def _answer(self, kind: bytes, req: bytes) -> None:
        owner = self.factory.owner
        try:
            if kind == b"N":
                name = req[3:].decode("ascii", "replace")
                answer = await owner.lookup(name, req[1])
            elif kind == b"R":
                answer = await owner.reverse(ipaddress.ip_address(req[2:]))
            elif kind == b"S":
                answer = _local_answer(await owner.tcp_local(struct.unpack_from(">H", req, 1)[0]))
            else:
                fam, port, relay = struct.unpack_from(">BHH", req, 1)
                answer = _local_answer(await owner.udp_local(fam, port, relay))
        except Exception:  # a bug: the program's call must not wait forever
            owner.log.failure("shim request {req!r}", req=req)
            answer = b"\0" if kind in (b"S", b"U") else bytes([LOOKUP_FAILED, 0])
        self.transport.write(answer)
        self.transport.loseConnection()


_REQUEST_SIZE = {b"S": 3, b"U": 6}


def _local_answer(found: tuple[IPAddress | None, int] | None) -> bytes:
    """family(1) port(2) address; b"\0" when unknown; family 4 with 0.0.0.0 when only the
    port is known."""
    if found is None:
        return b"\0"
    addr, port = found
    if addr is None:
        return b"\4" + struct.pack(">H", port) + bytes(4)
    return bytes([addr.version]) + struct.pack(">H", port) + addr.packed


class MapServer(Factory):
    def __init__(self, owner: ShimAnswers) -> None:
        self.owner = owner

    def buildProtocol(self, addr: Any) -> Any:
        p = _MapRequest()
        p.factory = self
        return p
