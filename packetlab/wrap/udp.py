"""SOCKS5 UDP ASSOCIATE: a local UDP relay port ⇄ endpoint UDP sockets.

The program sends SOCKS5-framed datagrams to the relay port; each becomes an nsend (with
an ntag) from an endpoint UDP socket of the destination's family, opened on first use.
Datagrams the endpoint receives (ndata, with their source) go back to the program framed
the same way. Only the address that sent the first datagram is served; datagrams from
elsewhere, and malformed ones, are dropped and counted. The association ends with its
SOCKS control connection (RFC 1928 §7).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from packetlab.controller import (
    ControllerError,
    EndpointSession,
    IPAddress,
    parse_address,
    unpack_address,
)
from packetlab.wire import Ndata, Ntag
from packetlab.wrap.socks5 import BadDatagram, Host, encode_udp, parse_udp
from packetlab.wrap.timeline import ConnTiming, Timeline

MAX_PENDING = 64  # datagrams waiting for a name lookup or a socket


class UdpRelay(DatagramProtocol):
    log = Logger()

    def __init__(
        self,
        session: EndpointSession,
        client_host: str,
        rec: ConnTiming,
        timeline: Timeline,
        resolve: Callable[[str], Awaitable[IPAddress]],
    ) -> None:
        self.session = session
        self.client_host = client_host
        self.rec = rec
        self.timeline = timeline
        self._resolve = resolve
        self._client: tuple[str, int] | None = None
        self._sockets: dict[int, int] = {}  # family -> sktid
        self._opening: dict[int, list[Deferred[int]]] = {}  # family -> waiters
        self._pending = 0
        self.dropped = 0
        self._closed = False

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        host, port = addr[0], addr[1]
        if self._closed:
            return
        if self._client is None:
            if host != self.client_host:
                self.dropped += 1
                return
            self._client = (host, port)
        elif (host, port) != self._client:
            self.dropped += 1
            return
        try:
            pkt = parse_udp(datagram)
        except BadDatagram as e:
            self.dropped += 1
            self.log.debug("dropped a datagram: {why}", why=e)
            return
        if self._pending >= MAX_PENDING:
            self.dropped += 1
            return
        self._pending += 1
        Deferred.fromCoroutine(self._forward(pkt.host, pkt.port, pkt.data))

    async def _forward(self, host: Host, port: int, data: bytes) -> None:
        v = self.timeline.now()
        try:
            if isinstance(host, str):
                addr = await self._resolve(host)
            else:
                addr = host
            if self.rec.addr is None:
                self.rec.addr = str(addr)
            sktid = await self._socket(addr.version)
            q = await self.session.nsend(sktid, data, to=(addr, port), ntag=True)
        except (ControllerError, ValueError, OSError) as e:
            self.dropped += 1
            self.rec.error = self.rec.error or str(e)
            return
        except Exception as e:  # a name that does not resolve, and the like
            self.dropped += 1
            self.rec.error = self.rec.error or str(e)
            return
        finally:
            self._pending -= 1
        self.rec.datagrams_up += 1
        self.rec.bytes_up += len(data)
        if q.ntag is not None:
            q.ntag.addCallbacks(lambda n: self._sent(v, n), lambda f: None)

    def _sent(self, v: int, note: Ntag) -> None:
        if self.rec.request_sent is None:
            self.rec.request_sent = note.time
        self.timeline.anchor(v, note.time)

    async def _socket(self, family: int) -> int:
        """The endpoint UDP socket of `family`, opened on first use (once)."""
        if family in self._sockets:
            return self._sockets[family]
        waiters = self._opening.get(family)
        if waiters is not None:
            d: Deferred[int] = Deferred()
            waiters.append(d)
            return await d
        self._opening[family] = []
        try:
            sktid = self.session.free_sktid()
            sock = await self.session.nopen_udp(sktid, family=family, buffer=False)
            sock.add_callback(self._note)
        except BaseException as e:
            for w in self._opening.pop(family):
                w.errback(e)
            raise
        self._sockets[family] = sktid
        for w in self._opening.pop(family):
            w.callback(sktid)
        if self._closed:
            self._nclose(sktid)
        return sktid

    def _note(self, note: Any) -> None:
        if not isinstance(note, Ndata) or note.raddr is None or note.rport is None:
            return
        src = unpack_address(note.family, note.raddr)
        if self.rec.first_byte is None:
            self.rec.first_byte = note.time
        self.rec.last_byte = note.time
        self.rec.datagrams_down += 1
        self.rec.bytes_down += len(note.data)
        framed = encode_udp(src, note.rport, note.data)
        self.timeline.at(note.time, lambda: self._to_client(framed))

    def _to_client(self, framed: bytes) -> None:
        if self._client is not None and not self._closed and self.transport is not None:
            self.transport.write(framed, self._client)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.timeline.cancel()
        for sktid in self._sockets.values():
            self._nclose(sktid)
        if self.transport is not None:
            self.transport.stopListening()

    def _nclose(self, sktid: int) -> None:
        if self.session.find_socket(sktid) is not None:
            self.session.nclose(sktid).addErrback(lambda f: f.trap(ControllerError))


def bind_host(client_host: str) -> str:
    """Loopback of the client's family for the relay port."""
    try:
        return "::1" if ipaddress.ip_address(client_host).version == 6 else "127.0.0.1"
    except ValueError:
        return "127.0.0.1"


__all__ = ["UdpRelay", "bind_host", "parse_address"]
