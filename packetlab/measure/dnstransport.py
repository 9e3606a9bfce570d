"""A query's exchanges through the endpoint: over UDP (`_over_udp`: its tries, the ICMP
watch that tells a closed port at once, the inbox of datagrams) and over TCP
(`_over_tcp`), and the endpoint's own DNS server (`_default_server`)."""

from __future__ import annotations

import random
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol
from weakref import WeakKeyDictionary

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from twisted.internet.defer import Deferred

from packetlab.clockstep import steady
from packetlab.controller import (
    AddressLike,
    ControllerError,
    EndpointSession,
    RequestFailed,
    SystemInfo,
    read_system_info,
    read_time,
)
from packetlab.measure.dnsparse import _fill, _Malformed, _parse, _stream_reply, _verify
from packetlab.measure.dnsquery import _render
from packetlab.measure.dnsresult import DnsError, DnsResult
from packetlab.measure.flight import Waker
from packetlab.measure.pcap import PcapRecorder, local_udp_end
from packetlab.wire import Ndata, Ntag

if TYPE_CHECKING:
    from packetlab.measure.capture import RawCapture
    from packetlab.measure.stream import TcpStream


# session -> (its system block, the endpoint's time then (ns), our reactor time then):
# the ICMP watch opened right after the lookup of the DNS server needs the same reads.
_RECENT: WeakKeyDictionary[EndpointSession, tuple[SystemInfo, int, float]] = WeakKeyDictionary()
RECENT_FOR = 5.0  # s a system block read counts as current (an address can change)


def _recent(session: EndpointSession) -> tuple[SystemInfo, int] | None:
    """The system block and the endpoint's time now, from a read in the last RECENT_FOR
    s (the time carried forward on our clock: a capture's end needs no better)."""
    got = _RECENT.get(session)
    if got is None:
        return None
    info, then_ns, then = got
    age = steady(session.reactor) - then
    return (info, then_ns + int(age * 1e9)) if 0 <= age < RECENT_FOR else None


async def _default_server(session: EndpointSession, family: int | None) -> str:
    info_d = read_system_info(session)
    time_d = read_time(session)  # with the reads (one batch): for the ICMP watch
    try:
        info = await info_d
    except BaseException:
        time_d.addErrback(lambda _: None)  # (else "Unhandled error in Deferred")
        raise
    try:
        _RECENT[session] = (info, await time_d, steady(session.reactor))
    except ControllerError:
        pass
    servers = [str(a) for a in info.dns4 if family in (None, 4)]
    servers += [str(a) for a in info.dns6 if family in (None, 6)]
    if not servers:
        which = "" if family is None else f" IPv{family}"
        raise DnsError(
            f"the endpoint has no{which} DNS server configured (VMemLocalDNSAddrStrIPv4/IPv6); "
            "give one with server="
        )
    return servers[0]


def _icmp_filter(version: int, rport: int) -> str:
    """ICMP(v6) port unreachable quoting a UDP datagram to port `rport` (a 20-byte quoted
    IPv4 header, no IPv6 extension headers; the quote is checked again in Python)."""
    if version == 4:
        return f"icmp[0] == 3 and icmp[1] == 3 and icmp[30:2] == {rport}"
    return f"icmp6 and ip6[40] == 1 and ip6[41] == 4 and ip6[90:2] == {rport}"


WATCH_S = 20.0  # a watch serves the queries of this long (its ncap runs 30 s more)


class _IcmpWatch:
    """One raw capture per session, server and port, shared by the queries to it: the
    ICMP port unreachable quoting a datagram to the server goes to the query whose local
    port it quotes (`waiting`). Its ncap ends by itself (`open_capture`'s slack)."""

    def __init__(self, cap: RawCapture, server: Any, port: int, until: float) -> None:
        from packetlab.measure.capture import parse_ndata

        self.cap, self.server, self.port, self.until = cap, server, port, until
        self.waiting: dict[int, Callable[[Any], None]] = {}
        self._parse = parse_ndata
        cap.sock.buffering = False
        cap.sock.add_callback(self._note)

    def usable(self, now: float, needed: float) -> bool:
        return not self.cap.sock.ended and now + needed < self.until

    def _note(self, note: Any) -> None:
        parsed = self._parse(note)
        reply = parsed[0] if parsed else None
        if reply is None or not reply.from_destination:
            return
        key = reply.key
        if key.proto == 17 and key.dst == self.server and key.dport == self.port:
            feed = self.waiting.get(key.sport)
            if feed is not None:
                feed(reply)


# session -> (server, port) -> its watch, or why there is none (asked once per session)
_Watches = dict[tuple[str, int], "_IcmpWatch | str | Deferred[None]"]
_WATCHES: WeakKeyDictionary[EndpointSession, _Watches] = WeakKeyDictionary()


def _after(d: Deferred[None]) -> Deferred[None]:
    """Fires (None) when `d` has, leaving `d`'s own result alone."""
    done: Deferred[None] = Deferred()

    def fire(result: Any) -> Any:
        done.callback(None)
        return result

    d.addBoth(fire)
    return done


async def _watch_for(
    session: EndpointSession, server: Any, port: int, needed: float
) -> _IcmpWatch | str:
    """The session's ICMP watch for `server:port` (opened now if none is usable), or why
    there can be none (no raw sockets, no filter): then not asked again."""
    from packetlab.measure.capture import MeasureError, close_capture, open_capture

    mine = _WATCHES.get(session)
    if mine is None:  # a watch holds its session: the entry goes when the session ends
        mine = _WATCHES[session] = {}
        session.when_closed().addCallback(lambda _: _WATCHES.pop(session, None))
    key = (str(server), port)
    known = mine.get(key)
    while isinstance(known, Deferred):  # another query is opening it: that one, then
        await _after(known)
        known = mine.get(key)
    now = steady(session.reactor)
    if isinstance(known, str) or (known is not None and known.usable(now, needed)):
        return known
    if known is not None:  # expired: its successor first, then it goes
        Deferred.fromCoroutine(close_capture(known.cap)).addErrback(lambda f: None)
    opening: Deferred[None] = Deferred()
    mine[key] = opening  # concurrent queries wait for this one: one raw socket, not many
    got: _IcmpWatch | str
    try:
        # An endpoint has one raw socket per interface and family (ESKTINUSE for a
        # second): a watch of another server no query is using goes first (dig's next
        # server after a closed or silent one: each gets its watch in turn).
        for other_key, other in list(mine.items()):
            if (isinstance(other, _IcmpWatch) and not other.waiting
                    and other.server.version == server.version):  # fmt: skip
                del mine[other_key]
                try:
                    await close_capture(other.cap)
                except ControllerError:
                    pass
        cap = await open_capture(
            session, server, src=None, duration_s=WATCH_S + needed,
            expression=_icmp_filter(server.version, port), known=_recent(session),
        )  # fmt: skip
        got = _IcmpWatch(cap, server, port, now + WATCH_S + needed)
    except MeasureError as e:
        got = str(e)
    except (RequestFailed, ValueError, RuntimeError) as e:  # refused, or no libpcap filter
        got = str(e)
    except BaseException:
        del mine[key]
        opening.callback(None)
        raise
    mine[key] = got
    opening.callback(None)
    return got


INBOX_MAX = 4 << 20  # bytes of datagrams a query holds unread; past it they are dropped


class _Inbox:
    """The notes of the query's UDP socket and of the ICMP capture, in arrival order. A
    flood of datagrams faster than they are read is dropped past INBOX_MAX bytes (as a
    full socket buffer drops them): the socket has no queue of its own to pause on."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.items: deque[tuple[str, Any]] = deque()
        self.waker = Waker(reactor)  # (its deadline reads what is waiting first)
        self.held = 0  # bytes of the datagrams in `items`
        self.dropped = 0

    def feeder(self, kind: str) -> Callable[[Any], None]:
        def put(note: Any) -> None:
            size = len(note.data) if kind == "udp" and isinstance(note, Ndata) else 0
            if size and self.held + size > INBOX_MAX:
                self.dropped += 1
                return
            self.held += size
            self.items.append((kind, note))
            self.waker.poke()

        return put

    async def next(self, deadline: float) -> tuple[str, Any] | None:
        while not self.items:
            if deadline <= steady(self.reactor):
                return None
            await self.waker.sleep(deadline)
        kind, note = self.items.popleft()
        if kind == "udp" and isinstance(note, Ndata):
            self.held -= len(note.data)
        return kind, note


NO_WATCH = (
    "a closed port cannot be told from a silent server: the endpoint's UDP sockets report "
    "no ICMP port unreachable"
)


def _stamp(sent: dict[int, int], attempt: int) -> Callable[[Ntag], None]:
    def got(n: Ntag) -> None:
        sent[attempt] = n.time

    return got


async def _open_udp(session: EndpointSession, server: Any, chosen: bool) -> tuple[int, int, Any]:
    """A UDP socket for one try: (sktid, local port, socket); the port is one we choose
    (`chosen`), so a capture can name it, else the endpoint's."""
    sktid = session.free_sktid()
    for n in range(5):
        lport = random.randrange(49152, 65536) if chosen else 0
        try:
            sock = await session.nopen_udp(sktid, family=server.version, lport=lport, buffer=False)
            return sktid, lport, sock
        except RequestFailed:
            if not chosen or n == 4:
                raise
            sktid = session.free_sktid()  # that port is taken: another one
    raise AssertionError("unreachable")


def _closed(f: Any) -> None:
    f.trap(ControllerError)  # the socket is gone all the same


def _close_later(session: EndpointSession, sktid: int) -> None:
    """nclose a socket whose opening outlived the query that asked for it."""
    session.nclose(sktid).addErrback(_closed)


async def _over_udp(
    session: EndpointSession,
    query: dns.message.Message,
    result: DnsResult,
    server: Any,
    timeout: float,
    attempts: int,
    recorder: PcapRecorder | None = None,
    icmp: bool = True,
) -> dns.message.Message | None:
    wire = _render(query)
    reactor = session.reactor
    inbox = _Inbox(reactor)
    watch: _IcmpWatch | None = None
    why: str | None = "not asked"
    laddr: str | None = None  # the endpoint's address a pcap shows
    chosen = recorder is not None or icmp  # a port we choose, so a capture can name it
    sktid: int | None = None
    lport = 0
    try:
        # The socket's nopen goes with the watch's requests (one round trip, not two).
        opened = Deferred.fromCoroutine(_open_udp(session, server, chosen))
        try:
            if icmp:
                found = await _watch_for(session, server, result.port, timeout * attempts)
                watch, why = (None, found) if isinstance(found, str) else (found, None)
        except BaseException:
            opened.addCallbacks(lambda got: _close_later(session, got[0]), lambda _: None)
            raise
        sktid, lport, sock = await opened
        sock.add_callback(inbox.feeder("udp"))
        if watch is not None:
            laddr = str(watch.cap.src)
        elif recorder is not None:
            laddr = (await local_udp_end(session, server))[0]
        sent: dict[int, int] = {}  # try -> endpoint send time (ns)
        ports: dict[int, int] = {}  # try -> the local port it went from
        recorded: set[int] = set()
        said: list[str] = []  # dig's lines so far: a message not taken, a try timed out
        unsaid = 0  # warnings past SAID_MAX
        lost = f"communications error to {result.server}#{result.port}: timed out"

        def record_sends() -> None:  # each query once in the pcap, when its ntag came
            if recorder is None or laddr is None:
                return
            for a in sorted(set(sent) - recorded):
                recorded.add(a)
                recorder.udp(sent[a], laddr, ports[a], str(server), result.port, wire)

        for attempt in range(attempts):
            if attempt:
                # dig 9.18 sends each try from a new socket (a new source port, the same
                # query id), the last one closed: an answer to it that comes late is not
                # taken. The close goes with the open (answered in order): one round trip.
                if watch is not None:
                    watch.waiting.pop(lport, None)
                session.nclose(sktid).addErrback(_closed)
                sktid = None
                inbox = _Inbox(reactor)  # what the last socket had unread goes with it
                sktid, lport, sock = await _open_udp(session, server, chosen)
                sock.add_callback(inbox.feeder("udp"))
            if watch is not None:
                watch.waiting[lport] = inbox.feeder("icmp")
            ports[attempt] = lport
            result.tries = attempt + 1
            queued = await session.nsend(sktid, wire, to=(server, result.port), ntag=True)
            if queued.ntag is not None:
                queued.ntag.addCallbacks(_stamp(sent, attempt), lambda f: None)
            deadline = steady(reactor) + timeout
            while (got := await inbox.next(deadline)) is not None:
                kind, note = got
                if kind == "udp" and not _from_server(note, server, result.port):
                    continue  # dig 9.18's socket is connected: the kernel drops it, unsaid
                if kind == "icmp":  # the watch checked the quote: our port, the server's
                    result.error = (
                        f"connection refused: {result.server}#{result.port} answered with "
                        f"ICMP port unreachable (from {note.src}); nothing listens there"
                    )
                    result.error_kind = "refused"
                    result.notes[:0], result.tries_said = _with_unsaid(said, unsaid), attempt
                    return None
                t_sent = sent.get(attempt)
                if recorder is not None and laddr is not None:
                    record_sends()
                    recorder.udp(note.time, str(server), result.port, laddr, lport, note.data)
                before = len(said)
                try:
                    msg = _parse(query, note.data, said)
                    if before >= SAID_MAX:  # a flood: counted, not kept
                        unsaid += len(said) - before
                        del said[before:]
                except _Malformed as e:
                    result.notes[:0] = said
                    result.error = f"malformed reply from {result.server}#{result.port}: {e}"
                    result.error_kind = "malformed"
                    result.packet, result.reason = e.wire, e.reason
                    return None
                if msg is None:
                    continue
                if t_sent is not None:
                    result.rtt_us = (note.time - t_sent) / 1000
                _fill(result, msg, note.data)
                result.notes[:0] = _with_unsaid(said, unsaid)
                _verify(result, query, note.data)
                return msg
            record_sends()
            if attempt + 1 < attempts:  # dig says each try that timed out, as it goes
                said.append(lost)
    finally:
        if watch is not None:
            watch.waiting.pop(lport, None)
        if sktid is not None:
            try:
                await session.nclose(sktid)
            except ControllerError:
                pass
    error = f"no answer from {result.server} over UDP ({attempts} x {timeout:g} s)"
    if watch is None and why not in ("not asked", None):
        error += f"; {NO_WATCH}, and none could be captured: {why}"
    result.error = error
    result.error_kind = "timeout"
    result.notes[:0], result.tries_said = _with_unsaid(said, unsaid), attempts - 1
    return None


SAID_MAX = 200  # dig's warnings kept for one query (a flood of wrong replies: counted)


def _with_unsaid(said: list[str], unsaid: int) -> list[str]:
    if not unsaid:
        return said
    return [*said, f"Warning: {unsaid} more messages not taken (warnings kept: {SAID_MAX})"]


def _from_server(note: object, server: Any, port: int) -> bool:
    """Whether a UDP notification is a datagram from the server asked (an endpoint that
    does not say where a datagram came from: taken)."""
    if not isinstance(note, Ndata):
        return False
    return note.raddr is None or (note.raddr == server.packed and note.rport == port)


TCP_MAX = 2 + 65535  # a length prefix and the longest DNS message


class _TcpCap:
    """Drops what a TCP server sends past TCP_MAX bytes: it is not read, and a flood of it
    would fill the socket's queue, which pauses the session's reads (the query's ntag
    and nclose answers too: the query would hang)."""

    def __init__(self, stream: TcpStream) -> None:
        self.stream, self.seen = stream, 0

    def __call__(self, note: object) -> None:
        if isinstance(note, Ndata):
            if self.seen >= TCP_MAX:
                self.stream.sock.buffering = False  # this note and the next are dropped
            self.seen += len(note.data)


class TlsWrap(Protocol):
    """What `_over_tcp` asks of dig +tls's client (measure.dnstls.DotClient): the TLS
    connection over a stream, its handshake done (StreamError, or _TlsVerify in dig's
    words, when it fails); the object has `send(bytes)` (its ntag's Deferred) and
    `feed(chunk)` (plaintext, closed)."""

    async def wrap(self, stream: TcpStream, server: str, timeout: float) -> Any: ...


class DohExchange(Protocol):
    """What `dns_query` asks of dig +https's client (measure.dnstls.DohClient): the query
    over DNS over HTTPS, into the result."""

    async def ask(
        self,
        session: EndpointSession,
        query: dns.message.Message,
        result: DnsResult,
        server: AddressLike,
        timeout: float,
        recorder: PcapRecorder | None = None,
    ) -> None: ...


class _TlsVerify(Exception):
    """dig's TLS certificate failure (its line alone; exit 0 in dig 9.18.49)."""


class KeptStreams:
    """dig +keepopen: a TCP connection a server, kept open for the queries of a run
    (`_over_tcp` uses and keeps them; `close` at the run's end)."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, int], TcpStream] = {}
        self.tls: dict[tuple[str, int], Any] = {}  # +tls: a kept stream's TLS connection

    async def close(self) -> None:
        streams, self.streams, self.tls = list(self.streams.values()), {}, {}
        for stream in streams:
            await stream.close()


async def _over_tcp(
    session: EndpointSession,
    query: dns.message.Message,
    result: DnsResult,
    server: AddressLike,
    timeout: float,
    recorder: PcapRecorder | None = None,
    kept: KeptStreams | None = None,
    tls: TlsWrap | None = None,
) -> None:
    # Only here: a query over UDP (most) does not load the TCP stream (docs/performance.md).
    from packetlab.measure.stream import StreamError, StreamTimeout, TcpStream, connect_failure

    wire = _render(query)
    result.proto = "tcp"
    result.tries = 1
    key = (str(server), result.port)
    while True:
        stream = kept.streams.pop(key, None) if kept is not None else None
        dot = kept.tls.pop(key, None) if kept is not None else None
        reused = stream is not None
        if stream is None:
            try:
                stream = await TcpStream.connect(
                    session, server, result.port, timeout=timeout, recorder=recorder
                )
            except ControllerError as e:
                result.error = "TCP " + connect_failure(e, server, result.port)
                result.error_kind = "refused" if "refused" in result.error else "tcp"
                return
            stream.sock.add_callback(_TcpCap(stream))
        before = stream.received
        try:
            if tls is None:
                await _tcp_exchange(stream, query, wire, result, timeout)
            else:
                result.proto = "tls"
                if dot is None:  # (a kept stream has its TLS connection already)
                    dot = await tls.wrap(stream, str(server), timeout)
                await _tls_exchange(stream, dot, query, wire, result, timeout)
        except _TlsVerify as e:
            result.error, result.error_kind = str(e), "tls"
        except StreamError as e:
            if reused and not isinstance(e, StreamTimeout) and stream.received == before:
                await stream.close()  # the server closed the kept one: the query anew
                continue
            result.error = str(e)
            result.error_kind = "tcp"
        except BaseException:  # cancelled (Ctrl-C): the connection closed all the same
            await stream.close()
            raise
        if kept is not None and result.error is None and not stream.eof:
            kept.streams[key] = stream  # for the next query to this server (+keepopen)
            if dot is not None:
                kept.tls[key] = dot
        else:
            await stream.close()
        return


async def _tcp_exchange(
    stream: TcpStream,
    query: dns.message.Message,
    wire: bytes,
    result: DnsResult,
    timeout: float,
) -> None:
    """One query and its reply over `stream` into `result` (StreamError: none came)."""
    ntag = stream.send(struct.pack(">H", len(wire)) + wire, ntag=True)
    head = await stream.read_exactly(2, timeout)
    (length,) = struct.unpack(">H", head.data)
    body = await stream.read_exactly(length, timeout)
    msg = _stream_reply(query, body.data, result, "TCP")
    if msg is None:
        return
    assert ntag is not None
    sent = await ntag
    # A TCP ntag is stamped once send() returned; on a loaded endpoint that can be after
    # the answer's kernel receive stamp: then the round trip is not known (None).
    if head.time >= sent.time:
        result.rtt_us = (head.time - sent.time) / 1000
    else:  # dig's query time all the same: from the connection's establishment
        result.query_time_us = max(head.time - stream.established_at, 0) / 1000
    _fill(result, msg, body.data)
    _verify(result, query, body.data)


async def _tls_exchange(
    stream: TcpStream,
    tls: Any,
    query: dns.message.Message,
    wire: bytes,
    result: DnsResult,
    timeout: float,
) -> None:
    """`_tcp_exchange` over TLS: the framed query encrypted, the reply decrypted from the
    endpoint's chunks until its length is whole."""
    from OpenSSL import SSL

    from packetlab.measure.stream import StreamError

    ntag = tls.send(struct.pack(">H", len(wire)) + wire)
    got, first = b"", None
    while len(got) < 2 or len(got) < 2 + struct.unpack(">H", got[:2])[0]:
        chunk = await stream.recv(timeout)
        try:
            plain, closed = tls.feed(chunk)
        except SSL.Error as e:  # an alert after the handshake (a client certificate wanted)
            reason = next((x[2] for x in reversed(e.args[0]) if len(x) > 2), str(e)) \
                if e.args and isinstance(e.args[0], list) else str(e)  # fmt: skip
            raise StreamError(f"{result.server}:{result.port} closed after {len(got)} bytes: "
                              f"TLS alert: {reason}") from None  # fmt: skip
        if plain and first is None:
            first = chunk.time if chunk is not None else None
        got += plain
        if closed and (len(got) < 2 or len(got) < 2 + struct.unpack(">H", got[:2])[0]):
            raise StreamError(f"{result.server}:{result.port} closed after {len(got)} bytes")
        if len(got) > TCP_MAX:
            raise StreamError(f"{result.server}:{result.port}: more than a message")
    body = got[2 : 2 + struct.unpack(">H", got[:2])[0]]
    msg = _stream_reply(query, body, result, "TLS")
    if msg is None:
        return
    sent = await ntag if ntag is not None else None
    if sent is not None and first is not None and first >= sent.time:
        result.rtt_us = (first - sent.time) / 1000
    elif first is not None:
        result.query_time_us = max(first - stream.established_at, 0) / 1000
    _fill(result, msg, body)
    _verify(result, query, body)
