"""A TCP connection from the endpoint that the controller reads and writes piece by piece.

`tcp_exchange` (controller) sends one request and reads until the peer closes; DNS over
TCP, TLS and the iperf3 control channel need a conversation instead: send, read exactly
what the protocol says, send again. `TcpStream` is that, on the public controller API.
Every time it reports is the endpoint's (ns): the connect from TIME read just before the
nopen to the ESTABLISHED nstat, each chunk from its ndata stamp, each send from its ntag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred

from packetlab.clockstep import steady
from packetlab.controller import (
    DEFAULT_RBUFSZ,
    AddressLike,
    ConnectFailed,
    ControllerError,
    EndpointSession,
    IPAddress,
    QueuedSend,
    Socket,
    parse_address,
    read_socket_info,
    read_socket_state,
    read_time,
    wait_connected,
)
from packetlab.measure.pcap import PcapRecorder, TcpFlow
from packetlab.wire import Ndata, Nstat, NstatCode, Ntag, SocketState

__all__ = ["Chunk", "StreamError", "StreamTimeout", "TcpStream", "connect_failure"]

# What a failed connect's socket state means, in the words curl and dig use. Our endpoint
# reports a refused connect (RST in answer to the SYN) as the nstat RESET; the reference
# endpoint as the STAT REFUSED.
_CONNECT_MEANING = {
    "REFUSED": "connection refused (the host answered the SYN with a reset: "
    "nothing listens on that port)",
    "TIMEDOUT": "connection timed out (the SYN was never answered)",
    "UNREACH": "host or network unreachable from the endpoint (no route, "
    "no ARP/ND answer, or an ICMP unreachable in answer to the SYN)",
    "UNKNOWN": "failed, for a reason the endpoint did not give (nstat UNKNOWN)",
}
_CONNECT_MEANING["RESET"] = _CONNECT_MEANING["REFUSED"]
_CONNECT_MEANING["TIMEOUT"] = _CONNECT_MEANING["TIMEDOUT"]


class StreamError(ControllerError):
    """The connection ended in a way the protocol did not expect (reset, early close)."""


class StreamTimeout(StreamError):
    """Nothing arrived in time."""


def connect_failure(e: ControllerError, host: AddressLike, port: int) -> str:
    """A failed TCP connect from the endpoint as one line a person can act on:
    `connect to 127.0.0.1:9: connection refused (...)` rather than the socket state."""
    addr = parse_address(host)
    where = f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"
    if isinstance(e, ConnectFailed):
        meaning = _CONNECT_MEANING.get(e.state)
        if meaning is None and e.state.startswith("not established within"):
            meaning = f"no answer to the SYN: {e.state} (the host is down or a firewall drops it)"
        if meaning is not None:
            return f"connect to {where}: {meaning}"
    return f"connect to {where}: {e}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes the endpoint received with one recv(), and when (endpoint ns)."""

    data: bytes
    time: int


def _nstat_name(code: int) -> str:
    try:
        return NstatCode(code).name
    except ValueError:
        return f"nstat {code}"


@dataclass(eq=False)
class TcpStream:
    """An open TCP connection (make one with `TcpStream.connect`)."""

    session: EndpointSession
    sktid: int
    sock: Socket
    raddr: IPAddress
    rport: int
    started_at: int  # endpoint TIME just before the nopen was handled
    established_at: int  # the ESTABLISHED nstat
    eof: bool = False  # the peer closed its side
    eof_time: int | None = None  # when (endpoint ns: the PEERCLOSED nstat's)
    received: int = 0  # payload bytes read so far
    flow: TcpFlow | None = None  # set when recording to a pcap
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _buffer_time: int | None = field(default=None, repr=False)
    _last_time: int = field(default=0, repr=False)

    @classmethod
    async def connect(
        cls,
        session: EndpointSession,
        host: AddressLike,
        port: int,
        *,
        timeout: float = 5.0,
        rbufsz: int = DEFAULT_RBUFSZ,
        sktid: int | None = None,
        recorder: PcapRecorder | None = None,
        laddr: AddressLike | None = None,
    ) -> TcpStream:
        """Connect from the endpoint; raises ConnectFailed (REFUSED, not established
        within `timeout` s, ...) after closing the socket. With `recorder`, the
        connection's packets are recorded (its local address and port are read once)."""
        ra = parse_address(host)
        if sktid is None:
            sktid = session.free_sktid()
        t0 = read_time(session)  # pipelined: sampled just before the nopen is handled
        opened = session.nopen_tcp_connect(sktid, ra, port, laddr=laddr, rbufsz=rbufsz)
        started = await t0
        sock = await opened
        try:
            est = await wait_connected(session, sktid, timeout=timeout)
        except ConnectFailed as e:
            failed = await _stat_says(session, e)
            await _close(session, sktid)
            raise failed from None
        except BaseException:
            await _close(session, sktid)
            raise
        stream = cls(session, sktid, sock, ra, port, started, est.time)
        stream._last_time = est.time
        if recorder is not None:
            info = await read_socket_info(session, sktid)
            local = info.laddr if info.laddr is not None else ra
            stream.flow = recorder.tcp(local, info.lport, ra, port)
            stream.flow.connected(started, est.time)
        return stream

    def send(self, data: bytes, *, time: int = 0, ntag: bool = False) -> Deferred[Ntag] | None:
        """Queue `data` (at endpoint time `time`); with `ntag` the Deferred of its send
        time. The nsend's own answer is not awaited: a refusal ends the session's
        requests in order, and the next `recv` sees the socket end."""
        wanted, flow = ntag, self.flow
        d = self.session.nsend(self.sktid, data, time=time, ntag=ntag or flow is not None)
        if flow is not None:  # recorded now (stream order), timed by its ntag
            indexes = flow.sent(self._last_time, data)
            recorder = flow.recorder

            def track(q: QueuedSend) -> QueuedSend:
                if q.ntag is not None:
                    q.ntag.addCallback(self._sent, recorder, indexes)
                    if not wanted:
                        q.ntag.addErrback(lambda _: None)
                return q

            d.addCallback(track)
        if not wanted:
            d.addErrback(lambda _: None)
            return None
        out: Deferred[Ntag] = Deferred()

        def queued(q: QueuedSend) -> None:
            assert q.ntag is not None
            q.ntag.chainDeferred(out)

        d.addCallbacks(queued, out.errback)
        return out

    def _sent(self, tag: Ntag, recorder: PcapRecorder, indexes: list[int]) -> Ntag:
        recorder.retime(indexes, tag.time)
        self._last_time = max(self._last_time, tag.time)
        return tag

    async def recv(self, timeout: float) -> Chunk | None:
        """The next chunk the endpoint received; None once the peer closed (EOF).
        Raises StreamTimeout after `timeout` s, StreamError on a reset or a closed socket."""
        if self._buffer:
            chunk = Chunk(bytes(self._buffer), self._buffer_time or 0)
            self._buffer.clear()
            return chunk
        clock = self.session.reactor
        deadline = steady(clock) + timeout
        while not self.eof:
            left = deadline - steady(clock)
            if left <= 0:
                break
            note = await self.sock.get(timeout=left)
            if note is None:
                if self.sock.ended:
                    raise StreamError(f"socket {self.sktid} was closed")
                break
            if isinstance(note, Ndata):
                self.received += len(note.data)
                self._last_time = max(self._last_time, note.time)
                if self.flow is not None:
                    self.flow.received(note.time, note.data)
                return Chunk(note.data, note.time)
            if isinstance(note, Nstat) and note.code != NstatCode.ESTABLISHED:
                if note.code == NstatCode.PEERCLOSED:
                    self.eof, self.eof_time = True, note.time
                    if self.flow is not None:
                        self.flow.closed(note.time, by_peer=True)
                        self.flow = None
                    return None
                raise StreamError(f"connection to {self.raddr}:{self.rport}: "
                                  f"{_nstat_name(note.code)}")  # fmt: skip
        if self.eof:
            return None
        raise StreamTimeout(f"nothing from {self.raddr}:{self.rport} within {timeout:g} s")

    async def read_exactly(self, n: int, timeout: float) -> Chunk:
        """Exactly `n` bytes (what is left over stays for the next read); the time is the
        stamp of the chunk that completed them. Raises StreamError on an early EOF,
        StreamTimeout naming the whole `timeout` (and what came) when they are late."""
        clock = self.session.reactor
        deadline = steady(clock) + timeout
        out = bytearray()
        last = 0
        while len(out) < n:
            try:
                chunk = await self.recv(max(deadline - steady(clock), 0.0))
            except StreamTimeout:
                if out:  # kept: what came stays for the next read, as when complete
                    self.unread(bytes(out), last)
                    raise StreamTimeout(f"{len(out)} of {n} bytes from {self.raddr}:"
                                        f"{self.rport} within {timeout:g} s") from None  # fmt: skip
                raise StreamTimeout(
                    f"nothing from {self.raddr}:{self.rport} within {timeout:g} s"
                ) from None
            if chunk is None:
                raise StreamError(f"{self.raddr}:{self.rport} closed after {len(out)} of {n} bytes")
            out += chunk.data
            last = chunk.time
        if len(out) > n:
            self._buffer[:0] = out[n:]
            self._buffer_time = last
        return Chunk(bytes(out[:n]), last)

    def unread(self, data: bytes, time: int) -> None:
        """Put bytes back: the next `recv` returns them first."""
        if data:
            self._buffer[:0] = data
            self._buffer_time = time

    async def close(self) -> None:
        """nclose, ignoring a session that already ended. What the peer sends from now
        on is dropped, and what was queued unread: a peer that keeps sending would fill
        the socket's queue, which pauses the session's reads, the nclose answer with them
        (the close, and every request of the session after it, would hang)."""
        self.sock.buffering = False
        queued = self.sock.drain()
        if self.flow is not None:
            self._record_close(queued)
        await _close(self.session, self.sktid)

    def _record_close(self, queued: Sequence[object]) -> None:
        """The pcap's end of the flow: what the peer sent that was not read (it came, so a
        capture shows it), then its FIN first if it closed first (its PEERCLOSED was
        queued: a DNS server closing after its answer; tcpdump showed its FIN first, the
        file ours), else ours at the last endpoint time (the nclose has none of its own)."""
        flow, self.flow = self.flow, None
        assert flow is not None
        for note in queued:
            if isinstance(note, Ndata):
                flow.received(note.time, note.data)
            elif isinstance(note, Nstat) and note.code == NstatCode.PEERCLOSED:
                flow.closed(note.time, by_peer=True)
                return
        flow.closed(self._last_time, by_peer=False)


async def _stat_says(session: EndpointSession, e: ConnectFailed) -> ConnectFailed:
    """A connect failure named by its nstat code (our endpoint sends UNKNOWN for a host
    or network unreachable, RESET for a refusal) named by the socket's STAT instead,
    which tells them apart (REFUSED, TIMEDOUT, UNREACH); `e` itself when STAT says no
    more (or cannot be read)."""
    if e.state not in ("UNKNOWN", "TIMEOUT", "RESET"):
        return e
    try:
        state = await read_socket_state(session, e.sktid)
    except ControllerError:
        return e
    if isinstance(state, SocketState) and state < 0 and state is not SocketState.UNKFAULT:
        return ConnectFailed(e.sktid, state.name)
    return e


async def _close(session: EndpointSession, sktid: int) -> None:
    if session.find_socket(sktid) is None:
        return
    try:
        await session.nclose(sktid)
    except ControllerError:
        pass
