"""Connections of `packetlab.measure.http`: one TCP (and TLS) connection, its sends and
reads, the pool that keeps them open between requests as curl does (`Connections`), the
name lookup, and the wait for an upload's next chunk."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL
from twisted.internet.defer import Deferred, DeferredList

from packetlab.clockstep import steady
from packetlab.controller import (
    AddressLike,
    EndpointSession,
    RequestFailed,
    deferred_api,
)
from packetlab.measure.http_rate import Pace, StreamPace
from packetlab.measure.http_speed import LowSpeed
from packetlab.measure.http_tls import TlsLink
from packetlab.measure.http_url import Url
from packetlab.measure.stream import (
    Chunk,
    StreamError,
    StreamTimeout,
    TcpStream,
)
from packetlab.measure.upload_body import Upload
from packetlab.wire import Ndata, Ntag

if TYPE_CHECKING:  # HTTP/2 (h2, hpack) is loaded when a connection speaks it
    from packetlab.measure.http2 import H2Framing


def _send(conn: _Conn, data: bytes, ntag: bool = False) -> Deferred[Ntag] | None:
    """`data` over the connection (encrypted on TLS); with `ntag`, the last nsend's."""
    if conn.pace is not None and conn.h2 is None:  # --limit-rate: the answer held from
        conn.pace.engage()  # now until granted (HTTP/2: by each stream's window)
    if conn.tls is None:
        return conn.stream.send(data, ntag=ntag)
    if ntag:
        return conn.tls.send(data)
    conn.tls.conn.sendall(data)
    conn.tls.flush()
    return None


@dataclass(slots=True)
class _Conn:
    """An open connection between requests: the stream, its TLS, where it goes."""

    stream: TcpStream
    tls: TlsLink | None
    server: str
    tls_version: str | None
    stirred: bool = False  # something came while idle: dead, or unasked for (not reused)
    unwatch: Callable[[], None] | None = None
    h2: H2Framing | None = None  # HTTP/2 (ALPN h2, h2c): its state between requests
    # HTTP/2 with several streams at once (--parallel): how many exchanges use it, one of
    # them reads for all (`reading`), the others wait to be woken (`waiters`); `failed`
    # the connection's end that every stream gets, `broken`: no new stream goes on it
    active: int = 0
    reading: bool = False
    waiters: list[Deferred[None]] = field(default_factory=list)
    failed: Exception | None = None
    h2_pumping: bool = False  # an _h2_upload runs (`h2_again`: something more to frame)
    h2_again: bool = False
    closed: bool = False
    broken: bool = False
    pace: Pace | None = None  # --limit-rate: the hop's reads and sends held to a rate
    # --limit-rate over HTTP/2: each stream's upload on its own (by stream id)
    uploads: dict[int, StreamPace] = field(default_factory=dict)
    h2_timer: Any = None  # (an IDelayedCall) the next paced chunk's pump
    number: int = 0  # curl's connection id (#N), counted over the run
    host: str = ""  # the URL's host (curl's "Re-using existing connection #N with host")
    # curl 7.88.1's name for it in "Connected to" and "to host ... left intact": the
    # URL's host, or "(nil)" when a --connect-to named a host (its conn_to_host.dispname,
    # never set in that version: printf's "(nil)" for NULL)
    shown: str = ""
    local: str | None = None  # the endpoint's address:port, when asked (Asked.local_address)

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for d in waiters:
            if not d.called:
                d.callback(None)

    def idle(self) -> None:
        """Watch the connection while it waits in the pool: what comes (bytes nobody asked
        for, the peer's close) marks it not reusable and is dropped, not queued. A
        server flooding an idle connection would fill the socket's queue, which pauses
        the session's reads: every other URL of the run would hang."""
        sock = self.stream.sock

        def stirred(note: object) -> None:
            if self.h2 is not None and not self.stirred and self._h2_idle(note):
                return
            self.stirred = True
            sock.buffering = False

        if self.h2 is not None:  # HTTP/2 frames while idle (SETTINGS, PING) are answered
            sock.buffering = False
        self.unwatch = sock.add_callback(stirred)

    def _h2_idle(self, note: object) -> bool:
        """An HTTP/2 connection's frames while idle: taken in (ACKs sent) when they are
        control frames within the limits; False when the connection cannot be reused."""
        assert self.h2 is not None
        if not isinstance(note, Ndata):
            return False
        if self.tls is None:
            plain, closed = note.data, False
        else:
            try:
                plain, closed = self.tls.feed(Chunk(note.data, note.time))
                while self.tls.more():  # (-v takes records one at a time: all of them now)
                    more, ended = self.tls.next()
                    plain, closed = plain + more, closed or ended
            except SSL.Error:
                return False
        try:
            if closed or self.h2.receive(plain):
                return False
        except StreamError:  # the framing's H2Error
            return False
        out = self.h2.data_to_send()
        if out:
            _send(self, out)
        return self.h2.reusable

    def taken(self) -> None:
        if self.unwatch is not None:
            self.unwatch()
            self.unwatch = None
        if self.h2 is not None and not self.stirred:
            self.stream.sock.buffering = True


MAX_IDLE = 5  # connections kept open at most (curl's default CURLOPT_MAXCONNECTS)


class Connections:
    """Connections kept open for the next request (curl's connection cache): one idle
    connection per scheme, host and port, `MAX_IDLE` in all (the oldest closed first).
    Fetches running at once (curl --parallel) share an HTTP/2 connection as streams;
    with `pipewait` (curl's default) a fetch waits for a connection to its origin being
    made to learn whether it can (HTTP/1.1: until its first exchange ended, then one
    fetch reuses it). `close()` ends them all."""

    def __init__(self, pipewait: bool = True) -> None:
        self.pipewait = pipewait  # False: curl --parallel-immediate
        self.idle: dict[tuple[str, str, int], _Conn] = {}
        # HTTP/2 connections in use that take another stream (curl --parallel multiplexes)
        self.busy: dict[tuple[str, str, int], _Conn] = {}
        # connections being made whose protocol is not known yet: who waits for them
        # (curl's pipewait: a transfer waits to learn whether the first multiplexes)
        self.connecting: dict[tuple[str, str, int], list[Deferred[None]]] = {}
        self.made = 0  # connections begun (curl's next connection id)
        self.transfers = 0  # http_get calls made with this pool (curl's transfers)
        self.looked_up: set[tuple[str, int]] = set()  # curl's DNS cache: names it holds
        self.bundles: dict[tuple[str, int], object] = {}  # (curl's bundle, for -v)

    def bundle(self, u: Url) -> object:
        """A host and port's connections as one thing (curl's bundle: its %p in -v
        lines; by host and port, whatever the scheme, as curl's connection cache)."""
        return self.bundles.setdefault(self.key(u)[1:], object())

    def other_scheme(self, u: Url) -> _Conn | None:
        """A connection kept to `u`'s host and port by another scheme (http beside
        https): in curl's bundle, looked at and not reused."""
        for (scheme, *where), conn in [*self.idle.items(), *self.busy.items()]:
            if scheme != u.scheme and tuple(where) == self.key(u)[1:]:
                return conn
        return None

    def number(self) -> int:
        """The next connection's id (curl's #N: 0, 1, ... over the run)."""
        self.made += 1
        return self.made - 1

    @staticmethod
    def key(u: Url) -> tuple[str, str, int]:
        return (u.scheme, u.host.lower(), u.port)

    def shared(self, u: Url) -> _Conn | None:
        """An HTTP/2 connection in use to `u`'s origin with room for another stream."""
        conn = self.busy.get(self.key(u))
        if conn is None or conn.h2 is None or conn.broken or conn.failed or conn.closed:
            return None
        return conn if conn.h2.room and not conn.stream.eof else None

    def known(self, u: Url, conn: _Conn | None) -> None:
        """A new connection's protocol is known (or it failed: None): an HTTP/2 one is
        offered to the transfers waiting for it."""
        if conn is not None and conn.h2 is not None:
            self.busy[self.key(u)] = conn
        for d in self.connecting.pop(self.key(u), []):
            d.callback(None)

    async def wait_for(self, u: Url) -> None:
        """When a connection to `u`'s origin is being made: until its protocol is known."""
        waiting = self.connecting.get(self.key(u))
        if waiting is not None:
            d: Deferred[None] = Deferred()
            waiting.append(d)
            await d

    def done(self, u: Url, conn: _Conn) -> None:
        """An exchange on `conn` ended: an HTTP/2 connection no longer in use is no
        longer offered for streams (it goes back to `idle` through `put`, or closes)."""
        if self.busy.get(self.key(u)) is conn and conn.active == 0:
            del self.busy[self.key(u)]

    async def take(self, u: Url, dead: Callable[[_Conn], None] | None = None) -> _Conn | None:
        """An idle connection to `u`'s origin, or None; `dead(conn)` is told of one that
        closed meanwhile (it is closed, not reused)."""
        conn = self.shared(u)
        if conn is not None:  # curl: "Multiplexed connection found"
            return conn
        conn = self.idle.pop(self.key(u), None)
        if conn is None:
            return None
        sock = conn.stream.sock
        conn.taken()
        if conn.h2 is None:  # what came meanwhile read first: a close that came with the
            await _input_read(conn.stream.session.reactor)  # last answer (curl polls)
        if conn.stream.eof or sock.ended or sock.queued or conn.stirred:
            # curl: an idle connection with something to read (the server closed it, or
            # sent what nobody asked for) "seems to be dead": not reused
            if dead is not None:
                dead(conn)
            await conn.stream.close()
            return None
        if conn.h2 is not None:
            self.busy[self.key(u)] = conn
        return conn

    async def put(self, u: Url, conn: _Conn) -> None:
        old = self.idle.pop(self.key(u), None)
        conn.idle()
        self.idle[self.key(u)] = conn
        if old is not None:
            await old.stream.close()
        while len(self.idle) > MAX_IDLE:  # curl: the oldest goes (each is an endpoint socket)
            oldest = self.idle.pop(next(iter(self.idle)))
            await oldest.stream.close()

    @deferred_api
    async def close(self) -> None:
        self.busy.clear()
        idle, self.idle = list(self.idle.values()), {}
        for conn in idle:
            await conn.stream.close()


def _input_read(reactor: Any) -> Deferred[None]:
    """Fires once the reactor has polled for the input waiting now (an in-process or
    near endpoint's notice of a close sent just after the answer: curl polls the socket
    before it reuses a connection and sees it "seems to be dead")."""
    from packetlab.afterinput import AfterInput

    d: Deferred[None] = Deferred()
    AfterInput(reactor, 0.0, d.callback, None)
    return d


#: addresses of a family kept from a reply (a hostile one may hold hundreds): each is a
#: connect tried in turn
ADDRESSES_MAX = 8


class _Unresolved(Exception):
    """The URL's host has no address: why, in one line (curl's exit 6; 28 when the
    connect timeout ran out during the lookup)."""

    def __init__(self, why: str, exitcode: int = 6) -> None:
        super().__init__(why)
        self.exitcode = exitcode


async def _resolve(
    session: EndpointSession, url: Url, family: int | None, until: float | None = None
) -> AddressLike:
    """The host's addresses through the endpoint's DNS server ("A1,A2,...": each tried
    in turn by the connect); `until` (the reactor's clock): curl's --connect-timeout,
    which bounds the lookup too (each query's wait cut to what is left). Without a
    family, every AAAA and A address, IPv6 first, as curl 7.88.1 tries them (its happy
    eyeballs; session 26, odds26: it was the first A, else the first AAAA)."""
    if url.host_is_address:
        return url.host
    if url.host.lower() == "localhost" or url.host.lower().endswith(".localhost"):
        # curl 7.85+: never asked (the endpoint's loopback): 127.0.0.1, then ::1 (odds26)
        return {6: "::1", 4: "127.0.0.1"}.get(family or 0, "127.0.0.1,::1")
    # Only here: a URL with an address needs neither the DNS client nor dnspython (~60 ms
    # of a `pktlab run http` start, docs/performance.md).
    from packetlab.measure.dns import DnsError, dns_query

    clock = session.reactor
    began = steady(clock)
    qtypes = ["AAAA"] if family == 6 else ["A"] if family == 4 else ["A", "AAAA"]
    why = []
    found: dict[str, list[str]] = {"AAAA": [], "A": []}
    wait = 2.0  # dns_query's, twice
    left = math.inf if until is None else until - steady(clock)
    if left > 0:
        wait = min(wait, left / 2)
        # A and AAAA asked at once, as curl's resolver (getaddrinfo) asks them: the lookup
        # takes the longer of the two, not their sum (time_namelookup)
        asked = [dns_query(session, url.host, t, timeout=wait) for t in qtypes]
        got = await DeferredList(asked, consumeErrors=True)
        for qtype, (ok, value) in zip(qtypes, got, strict=True):
            if not ok:
                failure: Any = value
                if failure.check(DnsError):  # no DNS server configured at the endpoint
                    raise _Unresolved(f"could not resolve host {url.host}: {failure.value}")
                failure.raiseException()
            r = value
            found[qtype] += [a.data for a in r.answers if a.type == qtype][:ADDRESSES_MAX]
            if found[qtype]:
                continue
            if r.rcode == "NXDOMAIN" and qtype == qtypes[0]:  # the first: the name's answer
                raise _Unresolved(
                    f"could not resolve host {url.host}: no such name (NXDOMAIN from {r.server})"
                )
            why.append(f"{qtype}: {r.error}" if r.error else f"{qtype}: {r.rcode}, no address")
    if found["AAAA"] or found["A"]:
        return ",".join(dict.fromkeys([*found["AAAA"], *found["A"]]))
    if until is not None and steady(clock) >= until - 1e-6:  # curl: (28) Resolving timed out
        raise _Unresolved(
            f"could not resolve host {url.host}: resolving timed out after "
            f"{(steady(clock) - began) * 1000:.0f} milliseconds (the connect timeout)",
            28,
        )
    raise _Unresolved(
        f"could not resolve host {url.host} through the endpoint's DNS server ({'; '.join(why)})"
    )


async def _read(
    session: EndpointSession, conn: _Conn, deadline: float, slow: LowSpeed | None = None
) -> tuple[Chunk | None, bytes, bool]:
    """The next chunk, its plaintext and whether the server ended the connection (TCP
    EOF, or TLS close_notify); `slow`: the hop's -Y/-y check, at once and each second
    nothing comes (raises TooSlow)."""
    if conn.tls is not None and conn.tls.more():  # (-v: a record at a time, as curl's)
        plain, closed = conn.tls.next()
        return conn.tls.last, plain, closed
    if conn.pace is not None and conn.h2 is not None:
        conn.pace.release()  # HTTP/2 (an h2c Upgrade's 101): each stream's window paces
    clock = session.reactor
    while True:
        until = deadline
        if slow is not None:  # -Y/-y: raises TooSlow
            slow.check(steady(clock))
            until = min(deadline, slow.next_check(steady(clock)))
        try:
            if conn.pace is not None and conn.h2 is None:
                chunk = await conn.pace.recv(until)
            else:
                chunk = await conn.stream.recv(max(until - steady(clock), 0.0))
            break
        except StreamTimeout:
            if until >= deadline:
                raise
    if conn.tls is not None:
        plain, closed = conn.tls.feed(chunk)
        return chunk, plain, closed
    if chunk is None:
        return None, b"", True
    return chunk, chunk.data, False


async def _fill(clock: Any, body: Upload) -> None:
    """What curl reads of the body before the request (a -F part's stdin from a pipe:
    whole, for its Content-Length), read by a thread while this awaits (the reactor runs
    on: Ctrl-C and SIGTERM act). As curl's (read while it parses its options) the time
    limit (-m) starts after it."""
    ready = _Ready(clock)
    while not body.fill(ready.notify):
        await ready.wait(None)


class _Ready:
    """Wakes an upload waiting for a pipe's next chunk: `notify` is called by the
    pipe's reader thread (callFromThread), `wait` awaited on the reactor (until
    `deadline`: then StreamTimeout). A notify before the wait is not lost."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.fired = False
        self.waiter: Deferred[None] | None = None
        self.on_ready: Callable[[], None] | None = None  # also run on the reactor

    def notify(self) -> None:  # the reader thread
        self.clock.callFromThread(self._fire)

    def _fire(self) -> None:
        self.fired = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            waiter.callback(None)
        if self.on_ready is not None:
            self.on_ready()

    async def wait(self, deadline: float | None) -> None:
        if self.fired:
            self.fired = False
            return
        self.waiter = waiter = Deferred[None]()
        if deadline is None:  # until notified (or cancelled)
            await waiter
            self.fired = False
            return
        left = deadline - steady(self.clock)
        if left <= 0:
            self.waiter = None
            raise StreamTimeout("nothing to upload within the time (the pipe gave nothing)")
        timer = self.clock.callLater(left, lambda: None if waiter.called else waiter.callback(None))
        try:
            await waiter
        finally:
            if timer.active():
                timer.cancel()
        self.fired = False


async def _sent(clock: Any, sent: Deferred[Ntag], deadline: float,
                slow: LowSpeed | None = None) -> None:  # fmt: skip
    """An upload chunk's ntag (the endpoint's send done: the server's window took it),
    within -m's `deadline` (then StreamTimeout) and with the hop's -Y/-y check each second
    it does not come (TooSlow), as curl checks while its socket takes nothing. The ntag's
    failure is raised; left behind, it is handled."""
    while not sent.called:
        until = deadline if slow is None else min(deadline, slow.next_check(steady(clock)))
        woken: Deferred[None] = Deferred()

        def wake(result: Any, woken: Deferred[None] = woken) -> Any:
            if not woken.called:
                woken.callback(None)
            return result

        sent.addBoth(wake)
        timer = clock.callLater(max(until - steady(clock), 0.0), wake, None)
        await woken
        if timer.active():
            timer.cancel()
        if sent.called:
            break
        try:
            if steady(clock) >= deadline:
                raise StreamTimeout("upload: the server took nothing more within the time")
            if slow is not None:
                slow.check(steady(clock))
        except Exception:
            sent.addErrback(lambda _: None)
            raise
    await sent
    if slow is not None:
        slow.check(steady(clock))


class _SendRefused(StreamError):
    """The endpoint refused an nsend of the body (curl's 55: failed sending data)."""

    exitcode = 55


def _refused(e: RequestFailed, sent: int, length: int | None) -> _SendRefused:
    of = "" if length is None else f" of {length}"
    why = f"upload: the endpoint refused a send ({e.name}; {sent}{of} body bytes queued)"
    if e.name == "ESKTPKTDENY":
        why += (": over its send window (without a max_burst_rate_byte grant in the "
                "operator's exppriv certificate 12,500,000 bytes per 10 s, 10 Mb/s; "
                "pktlab init --max-burst-rate-byte 1250000000/10000000000 grants the "
                "in-process endpoint more; docs/http.md)")  # fmt: skip
    return _SendRefused(why)
