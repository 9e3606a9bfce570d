"""Request/response exchanges through an endpoint: TCP (connect, send, read until close)
and UDP (send datagrams, collect replies). Times in the results are the endpoint's
(ns since the epoch): nstat/ntag/ndata timestamps, so no controller RTT is in them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from packetlab.clockstep import steady
from packetlab.controller._deferred import deferred_api
from packetlab.controller.addresses import AddressLike, IPAddress, parse_address, unpack_address
from packetlab.controller.errors import ConnectFailed, ControllerError
from packetlab.controller.info import read_socket_state
from packetlab.controller.requests import DEFAULT_RBUFSZ, as_bytes
from packetlab.controller.sockets import _nstat_name
from packetlab.wire import Ndata, Nstat, NstatCode, Ntag, Proto, SocketState, vmem

if TYPE_CHECKING:
    from packetlab.controller.session import EndpointSession

T = TypeVar("T")
_U64 = struct.Struct(">Q")


class _Watch:
    """Owns `d`'s outcome: `wait(seconds)` fires True once `d` has fired (its result or
    Failure is then in `value`), False after `seconds`. Waiters are woken from inside `d`'s
    callback chain, so they must not touch `d` itself; they read `value`."""

    def __init__(self, d: Deferred[Any], reactor: Any) -> None:
        self.done = False
        self.value: Any = None
        self._reactor = reactor
        self._wake: list[Deferred[bool]] = []
        d.addBoth(self._fired)

    def _fired(self, value: Any) -> None:
        self.done, self.value = True, value
        wake, self._wake = self._wake, []
        for w in wake:
            if not w.called:
                w.callback(True)

    def wait(self, seconds: float) -> Deferred[bool]:
        if self.done:
            return succeed(True)
        w: Deferred[bool] = Deferred()

        def timeout() -> None:
            if not w.called:
                w.callback(False)

        call = self._reactor.callLater(max(seconds, 0.0), timeout)

        def settled(r: Any) -> Any:
            if call.active():
                call.cancel()
            return r

        # Both: a cancelled wait (wait_connected cancelled, or under addTimeout) left its
        # timer behind (up to session 31), a DelayedCall trial calls a dirty reactor.
        w.addBoth(settled)
        self._wake.append(w)
        return w

    def result(self) -> Any:
        """The value, or raise the failure."""
        if isinstance(self.value, Failure):
            self.value.raiseException()
        return self.value


def _fired_within(d: Deferred[T], seconds: float, reactor: Any) -> Deferred[bool]:
    """True as soon as `d` fires, False after `seconds`. `d` must already consume its own
    result (its last callbacks return None): this takes it over."""
    return _Watch(d, reactor).wait(seconds)


@deferred_api
async def wait_connected(
    session: EndpointSession, sktid: int, *, timeout: float = 5.0, poll: float = 0.05
) -> Nstat:
    """Wait for the ESTABLISHED nstat of a TCP connect on `sktid`.

    The reference endpoint reports a failed connect only by changing STAT (§3.1), so STAT
    is polled every `poll` seconds meanwhile. Raises ConnectFailed with the state name
    (REFUSED, TIMEDOUT, UNREACH, ...), or "not established within N s" after `timeout`.
    """
    sock = session.find_socket(sktid)
    if sock is None:
        raise ValueError(f"socket {sktid} is not open")
    if sock.proto is not None and sock.proto != Proto.TCP:
        kind = "UDP" if sock.proto == Proto.UDP else "raw"
        raise ValueError(f"wait_connected is for TCP connects; socket {sktid} is {kind}")
    to = sock.remote
    est = sock.wait_established()
    watch = _Watch(est, session.reactor)
    clock = session.reactor
    deadline = steady(clock) + timeout
    try:
        while not watch.done:
            left = deadline - steady(clock)
            if left <= 0:
                raise ConnectFailed(sktid, f"not established within {timeout:g} s", to)
            if await watch.wait(min(poll, left)):
                break
            state = await read_socket_state(session, sktid)
            if isinstance(state, int) and state < 0 and not watch.done:
                raise ConnectFailed(sktid, _state_name(state), to)
    finally:
        if not watch.done:
            est.cancel()  # the watch takes the CancelledError
    try:
        nstat: Nstat = watch.result()
    except ConnectFailed as e:
        raise await _named_by_stat(session, e, to) from None
    return nstat


async def _named_by_stat(
    session: EndpointSession, e: ConnectFailed, to: str | None
) -> ConnectFailed:
    """A connect failure told by an nstat code (our endpoint sends RESET for a refusal and
    UNKNOWN for an unreachable host) named by the socket's STAT when that says more
    (REFUSED, TIMEDOUT, UNREACH); else `e`, with the peer."""
    state = e.state
    if state in ("UNKNOWN", "TIMEOUT", "RESET") and session.find_socket(e.sktid) is not None:
        try:
            stat = await read_socket_state(session, e.sktid)
        except ControllerError:
            stat = 0
        if isinstance(stat, int) and stat < 0 and stat != SocketState.UNKFAULT:
            state = _state_name(stat)
    return ConnectFailed(e.sktid, state, to)


def _state_name(state: int) -> str:
    try:
        return SocketState(state).name
    except ValueError:
        return f"state {state}"


async def _endpoint_time(d: Deferred[bytes]) -> int:
    return int(_U64.unpack((await d).ljust(8, b"\0")[:8])[0])


def _ended(session: EndpointSession, sock_ended: bool) -> str:
    """Why reading a socket gave nothing: the session's end, the socket's, or the time."""
    if session.ended:
        return "session closed"
    return "socket closed" if sock_ended else "timeout"


async def _close_quietly(session: EndpointSession, sktid: int) -> None:
    if session.find_socket(sktid) is None:
        return
    try:
        await session.nclose(sktid)
    except ControllerError:
        pass


# ------------------------------------------------------------------------------ TCP


@dataclass(slots=True)
class TcpExchange:
    """What a TCP exchange through the endpoint saw. Times are endpoint ns.

    `end` says why reading stopped: "peer closed", "limit", "timeout", "session closed"
    (the session ended first), "socket closed" (an nclose from elsewhere), or the nstat
    code name (RESET, TIMEOUT, UNKNOWN) of a failed read.
    """

    raddr: IPAddress
    rport: int
    data: bytes
    end: str
    started_at: int  # endpoint time when the nopen was handled
    established_at: int
    sent_at: int | None  # ntag of the request (None: nothing sent, or not reported)
    first_data_at: int | None
    last_data_at: int | None
    chunks: int  # ndata messages

    @property
    def connect_ns(self) -> int:
        return self.established_at - self.started_at

    @property
    def first_byte_ns(self) -> int | None:
        """From the request's send (ntag) to the first byte of the answer."""
        if self.first_data_at is None or self.sent_at is None:
            return None
        return self.first_data_at - self.sent_at


@deferred_api
async def tcp_exchange(
    session: EndpointSession,
    host: AddressLike,
    port: int,
    request: bytes = b"",
    *,
    limit: int | None = None,
    timeout: float = 10.0,
    connect_timeout: float = 5.0,
    half_close: bool = False,
    sktid: int | None = None,
    rbufsz: int = DEFAULT_RBUFSZ,
) -> TcpExchange:
    """Connect from the endpoint to `host:port`, send `request`, and read until the peer
    closes, `limit` bytes arrived, or `timeout` seconds (local) passed since the connect.
    `half_close` sends a FIN after the request. The socket is closed at the end."""
    ra = parse_address(host)
    # Checked before the connect: a str failed only once connected (its nsend), a
    # connection opened for nothing.
    request = as_bytes(request, "tcp_exchange request")
    if sktid is None:
        sktid = session.free_sktid()
    # Pipelined: TIME is sampled by the endpoint just before it handles the nopen.
    t0 = session.mread(vmem.TIME.addr, vmem.TIME.size)
    opened = session.nopen_tcp_connect(sktid, ra, port, rbufsz=rbufsz)
    try:
        started = await _endpoint_time(t0)
    except BaseException:
        # Cancelled, or the session ended: the nopen goes too (a cancelled nopen closes
        # what it opened), or its failure was an "Unhandled error in Deferred".
        opened.addErrback(lambda _: None)
        opened.cancel()
        raise
    sock = await opened
    sent_at: list[int] = []
    chunks: list[bytes] = []
    first = last = None
    end = "timeout"
    try:
        est = await wait_connected(session, sktid, timeout=connect_timeout)
        clock = session.reactor
        deadline = steady(clock) + timeout
        if request:
            q = await session.nsend(sktid, request, ntag=True)
            assert q.ntag is not None
            q.ntag.addCallbacks(lambda n: sent_at.append(n.time), lambda _: None)
        if half_close:
            await session.nctl_fin(sktid)
        total = 0
        while True:
            note = await sock.get(timeout=max(deadline - steady(clock), 0.0))
            if note is None:
                end = _ended(session, sock.ended)
                break
            if isinstance(note, Ndata):
                first = note.time if first is None else first
                last = note.time
                chunks.append(note.data)
                total += len(note.data)
                if limit is not None and total >= limit:
                    end = "limit"
                    break
            elif isinstance(note, Nstat) and note.code != NstatCode.ESTABLISHED:
                end = "peer closed" if note.code == NstatCode.PEERCLOSED else _nstat_name(note.code)
                break
    finally:
        await _close_quietly(session, sktid)
    data = b"".join(chunks)
    if limit is not None:
        data = data[:limit]
    return TcpExchange(
        ra, port, data, end, started, est.time, sent_at[0] if sent_at else None, first, last,
        len(chunks),
    )  # fmt: skip


# ------------------------------------------------------------------------------ UDP


@dataclass(frozen=True, slots=True)
class Datagram:
    """A datagram the endpoint received: payload, source, endpoint receive time (ns)."""

    data: bytes
    addr: IPAddress
    port: int
    time: int


@dataclass(slots=True)
class SentDatagram:
    size: int
    tag: int
    time: int | None = None  # endpoint send time (ntag)
    error: str | None = None


@dataclass(slots=True)
class UdpExchange:
    raddr: IPAddress
    rport: int
    sent: list[SentDatagram] = field(default_factory=list)
    replies: list[Datagram] = field(default_factory=list)
    end: str = "timeout"  # or "expected replies", "session closed", "socket closed"

    def rtts(self) -> list[int]:
        """Reply time minus the first send time, per reply (ns)."""
        t0 = next((s.time for s in self.sent if s.time is not None), None)
        return [] if t0 is None else [r.time - t0 for r in self.replies]


@deferred_api
async def udp_exchange(
    session: EndpointSession,
    host: AddressLike,
    port: int,
    payloads: bytes | Sequence[bytes],
    *,
    timeout: float = 2.0,
    expect: int | None = None,
    lport: int = 0,
    sktid: int | None = None,
    rbufsz: int = DEFAULT_RBUFSZ,
) -> UdpExchange:
    """Send one or more datagrams from the endpoint to `host:port` and collect replies
    until `expect` replies came (default: one per datagram) or `timeout` seconds (local)
    after the sends were queued. Every datagram's send time comes from its ntag."""
    ra = parse_address(host)
    # Checked before anything is sent: a str was iterated as one datagram per character,
    # and each nsend past the first failed unawaited ("Unhandled error in Deferred").
    if isinstance(payloads, bytes | bytearray | memoryview):
        items = [bytes(payloads)]
    elif isinstance(payloads, str):
        items = [as_bytes(payloads, "udp_exchange payloads")]  # TypeError: encode it
    else:
        items = [as_bytes(p, f"udp_exchange payloads[{i}]") for i, p in enumerate(payloads)]
    want = len(items) if expect is None else expect
    if sktid is None:
        sktid = session.free_sktid()
    sock = await session.nopen_udp(sktid, family=ra.version, lport=lport, rbufsz=rbufsz)
    out = UdpExchange(ra, port)
    ntags: list[Deferred[Ntag]] = []
    try:
        queued = [session.nsend(sktid, p, to=(ra, port), ntag=True) for p in items]
        for p, qd in zip(items, queued, strict=True):
            q = await qd
            rec = SentDatagram(len(p), q.tag)
            out.sent.append(rec)
            assert q.ntag is not None
            ntags.append(q.ntag)
            q.ntag.addCallbacks(_set_time(rec), _set_error(rec))
        clock = session.reactor
        deadline = steady(clock) + timeout
        while len(out.replies) < want:
            note = await sock.get(timeout=max(deadline - steady(clock), 0.0))
            if note is None:
                out.end = _ended(session, sock.ended)
                break
            if isinstance(note, Ndata) and note.raddr is not None and note.rport is not None:
                addr = unpack_address(note.family, note.raddr)
                out.replies.append(Datagram(note.data, addr, note.rport, note.time))
        else:
            out.end = "expected replies"
        for d in ntags:  # normally long done: a reply follows its request
            if not d.called:
                await _fired_within(d, 1.0, clock)
    finally:
        await _close_quietly(session, sktid)
    return out


def _set_time(rec: SentDatagram) -> Callable[[Ntag], None]:
    def cb(n: Ntag) -> None:
        rec.time = n.time

    return cb


def _set_error(rec: SentDatagram) -> Callable[[Failure], None]:
    def eb(f: Failure) -> None:
        rec.error = str(f.value)

    return eb
