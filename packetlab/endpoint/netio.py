"""Experiment sockets on the reactor: our own non-blocking sockets registered as
IReadDescriptor/IWriteDescriptor, so we get exact errnos, kernel receive timestamps
(SO_TIMESTAMPNS) and sends that run exactly when the scheduler says (PROTOCOL.md §3).

`ReactorNetwork` implements the session's `Network`; `UdpIO` and `TcpIO` its `SocketIO`.
Every event goes to the session's `SocketEvents` methods. A doRead/doWrite never raises
and never returns a value, so the reactor never disconnects a descriptor behind our back.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from packetlab.endpoint.budget import RECV_BUF_OVERHEAD
from packetlab.endpoint.clock import realtime_ns, send_time
from packetlab.endpoint.memory import tcp_info_region
from packetlab.endpoint.sender import DENSE_NS
from packetlab.endpoint.sndbuf import send_while_writable
from packetlab.endpoint.sockets import (
    ConnectFailed,
    OpenError,
    PendingSend,
    Skt,
    SocketEvents,
)
from packetlab.endpoint.timestamps import (
    RX_ANCBUF_SIZE,
    SocketWatcher,
    TxStampMatcher,
    enable_rx_timestamps,
    rx_timestamp_from_ancdata,
)
from packetlab.wire.constants import NDATA_MAX, SocketState, Status

if TYPE_CHECKING:  # raw sockets are loaded on the first raw nopen (idle RSS, issue 14)
    from packetlab.endpoint.raw import RawIO

__all__ = ["ReactorNetwork", "TcpIO", "UdpIO", "rx_time"]

ANC_SIZE = RX_ANCBUF_SIZE
_SOL_SOCKET = socket.SOL_SOCKET
# The kernel's count of datagrams dropped at the socket's full queue, with each datagram
# read after the first drop (Linux, socket(7)): they are counted as drops too.
SO_RXQ_OVFL = 40
# The same count on demand (SK_MEMINFO_DROPS of SO_MEMINFO), read when a socket that had
# a queue drains: drops at the very end of a flood have no datagram after them to carry it.
SO_MEMINFO = 55
_SK_MEMINFO_DROPS = 8
_UDP_ANC_SIZE = ANC_SIZE + socket.CMSG_SPACE(4)
_U32 = struct.Struct("=I").unpack_from
_UDP_READ_BATCH = 64  # datagrams per wake-up, so one busy socket cannot starve the others
_UDP_RETRY_S = 0.001  # send-buffer retry of a TX-stamped socket (it cannot wait for writable)
# Sends closer than this to the socket's previous send are not stamped: a stamped send
# costs ~1-2 µs more, and at each scheduler yield the reactor drains the queued stamps
# (~3 µs each), so a dense train (7.3 µs gaps) with stamps falls behind and never catches up.
# The scheduler gives such sends no lead (it is learned from stamped sends).
_STAMP_MIN_GAP_NS = DENSE_NS
_MSG_PROBE = 0x10  # Linux: go through the send path, send nothing (not in `socket`)
_TCP_READ_BATCH = 4
_TCP_INFO_LEN = 256  # more than Linux 6.x's struct tcp_info: the kernel says how much it has
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}

_CONNECT_STATE = {
    errno.ECONNREFUSED: SocketState.REFUSED,
    errno.ETIMEDOUT: SocketState.TIMEDOUT,
    errno.ENETUNREACH: SocketState.UNREACH,
    errno.EHOSTUNREACH: SocketState.UNREACH,
    errno.ENETDOWN: SocketState.UNREACH,
    errno.EHOSTDOWN: SocketState.UNREACH,
    errno.ECONNRESET: SocketState.RESET,
    errno.EPIPE: SocketState.RESET,
}
_OPEN_STATUS = {
    errno.EADDRNOTAVAIL: Status.ESKTNOADDR,
    errno.EINVAL: Status.ESKTNOADDR,
    errno.EAFNOSUPPORT: Status.ESKTNOADDR,
    errno.EACCES: Status.ESYSNOPERM,
    errno.EPERM: Status.ESYSNOPERM,
    errno.EMFILE: Status.ENORES,
    errno.ENFILE: Status.ENORES,
    errno.ENOBUFS: Status.ENORES,
    errno.ENOMEM: Status.ENORES,
}


class FDReactor(Protocol):
    """The part of ``IReactorFDSet`` used here (structural, so fakes and the reactor fit)."""

    def addReader(self, reader: Any) -> None: ...

    def removeReader(self, reader: Any) -> None: ...

    def addWriter(self, writer: Any) -> None: ...

    def removeWriter(self, writer: Any) -> None: ...


def rx_time(anc: list[tuple[int, int, bytes]], clock: Callable[[], int] = realtime_ns) -> int:
    """The kernel receive time (SCM_TIMESTAMPNS, CLOCK_REALTIME ns), else `clock()`."""
    return rx_timestamp_from_ancdata(anc) or clock()


def _open_status(err: int, proto_in_use: Status) -> Status:
    if err == errno.EADDRINUSE:
        return proto_in_use
    return _OPEN_STATUS.get(err, Status.EUNKFAULT)


def _sockaddr_bytes(family: int, host: str) -> bytes:
    return socket.inet_pton(_AF[family], host)


class _SockIO:
    """Reactor registration and closing shared by UDP and TCP."""

    log = Logger()

    def __init__(
        self,
        reactor: FDReactor,
        sock: socket.socket,
        skt: Skt,
        events: SocketEvents,
        clock: Callable[[], int],
    ) -> None:
        self._reactor = reactor
        self._sock = sock
        self._fd = sock.fileno()
        self.skt = skt
        self._events = events
        self._clock = clock
        self._reading = False
        self._writing = False

    def fileno(self) -> int:
        return self._fd

    @property
    def reading(self) -> bool:
        """Open and reading (not paused for want of receive budget)."""
        return self._reading and self._fd >= 0

    def logPrefix(self) -> str:
        return f"pktendpoint-socket-{self.skt.sktid}"

    def _start_reading(self) -> None:
        if not self._reading and self._fd >= 0:
            self._reading = True
            self._reactor.addReader(self)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._reactor.removeReader(self)

    def _start_writing(self) -> None:
        if not self._writing and self._fd >= 0:
            self._writing = True
            self._reactor.addWriter(self)

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            self._reactor.removeWriter(self)

    def _shut(self) -> None:
        self._stop_reading()
        self._stop_writing()
        if self._fd >= 0:
            self._fd = -1
            self._sock.close()

    def connectionLost(self, reason: Failure) -> None:
        # The reactor dropped us (reactor shutdown, or a hang-up it saw first).
        self._reading = self._writing = False
        if self._fd >= 0:
            self._lost(reason)

    def _lost(self, reason: Failure) -> None:
        self._shut()

    def resume_reading(self) -> None:
        self._start_reading()


@implementer(IReadDescriptor, IWriteDescriptor)
class UdpIO(_SockIO):
    """A bound UDP socket: datagrams in as ndata, nsend datagrams out with sendto.

    After `stamp_tx`, tagged sends ask for a kernel TX timestamp (`tx_time`, for ntag). The
    stamps wait on the socket's error queue, which raises EPOLLERR, and Twisted's epoll
    reactor drops a descriptor on EPOLLERR without EPOLLIN; so such a socket is watched
    through a `SocketWatcher` and never registered with the reactor itself.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._backlog: deque[PendingSend] = deque()  # waiting for send-buffer space
        self._watcher: SocketWatcher | None = None
        self._matcher: TxStampMatcher | None = None
        self._ids: dict[PendingSend, int] = {}  # tagged sends -> TX stamp id
        self._retry: Any = None  # the pending callLater of a stamped socket's backlog
        self._overflows = 0  # the kernel's SO_RXQ_OVFL count already reported
        self._queued = False  # the last read stopped at a full batch
        self._last_send = 0  # clock at the previous send (stamped sockets)

    def stamp_tx(self, watcher: SocketWatcher) -> bool:
        """Stamp tagged sends from now on; move the socket from the reactor to `watcher`.
        False (and nothing changed) if the kernel refuses TX timestamps."""
        try:
            matcher = TxStampMatcher(self._sock)
        except OSError as e:
            self.log.info("socket {sktid}: no TX timestamps ({e})", sktid=self.skt.sktid, e=e)
            return False
        reading = self._reading
        self._stop_reading()
        self._matcher = matcher
        self._watcher = watcher
        watcher.watch(
            self._sock, on_readable=self.doRead, on_tx=matcher.feed, on_error=self._sock_error
        )
        self._reading = True  # watch() starts with reading on
        if not reading:
            self._stop_reading()
        return True

    def tx_time(self, pending: PendingSend, not_before: int) -> int | None:
        """The kernel TX timestamp of a sent tagged `pending`, or None (not stamped)."""
        ident = self._ids.pop(pending, None)
        if ident is None or self._matcher is None:
            return None
        return self._matcher.take(ident, not_before)

    def _sock_error(self, err: int) -> None:
        self.log.debug("socket {sktid}: {e}", sktid=self.skt.sktid, e=errno.errorcode.get(err))

    def _start_reading(self) -> None:
        if self._watcher is None:
            return super()._start_reading()
        if not self._reading and self._fd >= 0:
            self._reading = True
            self._watcher.set_reading(self._sock, True)

    def _stop_reading(self) -> None:
        if self._watcher is None:
            return super()._stop_reading()
        if self._reading:
            self._reading = False
            self._watcher.set_reading(self._sock, False)

    def _start_writing(self) -> None:
        if self._watcher is None:
            return super()._start_writing()
        if self._retry is None and self._fd >= 0:
            self._retry = cast(Any, self._reactor).callLater(_UDP_RETRY_S, self._retry_write)

    def _stop_writing(self) -> None:
        if self._watcher is None:
            return super()._stop_writing()
        if self._retry is not None:
            if self._retry.active():
                self._retry.cancel()
            self._retry = None

    def _retry_write(self) -> None:
        self._retry = None
        self.doWrite()
        if self._backlog:
            self._start_writing()  # still full: try again later

    def _shut(self) -> None:
        if self._watcher is not None and self._fd >= 0:
            self._watcher.unwatch(self._sock)
            self._reading = False
        self._ids.clear()
        super()._shut()

    def doRead(self) -> None:
        recvmsg = self._sock.recvmsg
        received = self._events.udp_received
        skt = self.skt
        family = _AF[skt.family]
        clock = self._clock
        for n in range(_UDP_READ_BATCH):
            try:
                data, anc, _flags, addr = recvmsg(NDATA_MAX, _UDP_ANC_SIZE)
            except BlockingIOError:
                if n > 1 or self._queued:  # a queue built up: it may have overflowed
                    self._queued = False
                    self._drain_drops()
                return
            except InterruptedError:
                continue
            except OSError as e:  # e.g. a queued ICMP error: nothing to deliver
                self.log.debug("socket {sktid}: recv: {e}", sktid=skt.sktid, e=e)
                return
            time = rx_time(anc, clock)
            if len(anc) > 1:  # the drop count rides with every datagram after a drop
                self._kernel_drops(anc, time)
            received(skt, data, time, socket.inet_pton(family, addr[0]), addr[1])
            if self._fd < 0:
                return
        self._queued = True  # a full batch: more wait

    def _kernel_drops(self, anc: list[tuple[int, int, bytes]], time: int) -> None:
        for level, kind, value in anc:
            if level == _SOL_SOCKET and kind == SO_RXQ_OVFL and len(value) >= 4:
                (total,) = _U32(value)
                self._count_drops(total, time)
                return

    def _count_drops(self, total: int, time: int) -> None:
        new = (total - self._overflows) & 0xFFFFFFFF
        if new and new < 0x80000000:  # else a count older than the one read at a drain
            self._overflows = total
            self._events.udp_dropped(self.skt, new, time)

    def _drain_drops(self) -> None:
        try:
            info = self._sock.getsockopt(_SOL_SOCKET, SO_MEMINFO, 64)
        except OSError:  # not Linux
            return
        if len(info) >= 4 * (_SK_MEMINFO_DROPS + 1):
            (total,) = _U32(info, 4 * _SK_MEMINFO_DROPS)
            self._count_drops(total, self._clock())

    def send(self, pending: PendingSend) -> bool:
        """Send now: True once the kernel took it; False if it waits for buffer space
        (reported later through send_done). Other errors raise OSError."""
        if not self._backlog:
            try:
                matcher = self._stamper() if pending.tag else None
                if matcher is not None:
                    self._ids[pending] = matcher.sendto(pending.data, pending.dest)
                else:
                    self._sock.sendto(pending.data, pending.dest)  # type: ignore[arg-type]
                return True
            except (BlockingIOError, InterruptedError):
                pass
        self._backlog.append(pending)
        self._start_writing()
        return False

    def rehearse(self, pending: PendingSend) -> None:
        """Take `pending`'s path through the kernel (socket, route, skb) without sending:
        MSG_PROBE makes UDP return before anything is queued (docs/sending.md)."""
        if not self._backlog and self._fd >= 0:
            self._sock.sendto(pending.data, _MSG_PROBE, pending.dest)  # type: ignore[arg-type]

    def _stamper(self) -> TxStampMatcher | None:
        """The matcher to send the next tagged send with, if it gets a TX stamp: the socket
        stamps, and its previous send was at least `_STAMP_MIN_GAP_NS` ago."""
        if self._matcher is None:
            return None
        now = self._clock()
        last, self._last_send = self._last_send, now
        return self._matcher if now - last >= _STAMP_MIN_GAP_NS else None

    def _sendto(self, pending: PendingSend) -> bool:
        """From the backlog: False when the kernel buffer is still full."""
        clock = self._clock
        matcher = self._stamper() if pending.tag else None
        before = clock()
        try:
            if matcher is not None:
                ident = matcher.sendto(pending.data, pending.dest)
            else:
                self._sock.sendto(pending.data, pending.dest)  # type: ignore[arg-type]
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            self._events.send_done(pending, clock(), e.errno or errno.EIO)
            return True
        after = clock()
        stamp = matcher.take(ident, before) if matcher is not None else None
        self._events.send_done(pending, stamp if stamp is not None else (before + after) // 2, 0)
        return True

    def doWrite(self) -> None:
        backlog = self._backlog
        while backlog:
            if not self._sendto(backlog[0]):
                return
            backlog.popleft()
            if self._fd < 0:
                return
        self._stop_writing()

    def shutdown_write(self) -> None:
        pass  # nctl is TCP only; the session never asks

    def close(self) -> list[PendingSend]:
        self._shut()
        unsent = list(self._backlog)
        self._backlog.clear()
        return unsent


@implementer(IReadDescriptor, IWriteDescriptor)
class TcpIO(_SockIO):
    """A TCP connection (or a listener waiting for one): a byte stream both ways."""

    def __init__(
        self,
        reactor: FDReactor,
        sock: socket.socket,
        skt: Skt,
        events: SocketEvents,
        clock: Callable[[], int],
        listening: bool,
        eof_watcher: Callable[[], SocketWatcher] | None = None,
    ) -> None:
        super().__init__(reactor, sock, skt, events, clock)
        self._eof_watcher = eof_watcher
        self._eof_watch: SocketWatcher | None = None  # watching for an error after EOF
        self._listening = listening
        self._connecting = not listening
        self._wbuf: deque[PendingSend] = deque()
        self._woff = 0
        self._fin = False  # nctl FIN requested: shut down once wbuf is written
        self._fin_done = False
        #: A send's error held while the kernel still has received bytes to read
        #: (`_write_failed`); reported when the read reaches their end.
        self._write_error = 0
        if listening:
            self._start_reading()
        else:
            self._start_writing()  # writable = the connect finished (or failed)

    # -- connection set-up -------------------------------------------------------------

    def _check_connect(self) -> None:
        sock = self._sock
        err = sock.getsockopt(_SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            try:
                peer = sock.getpeername()
            except OSError:
                return  # still in progress (spurious wake-up)
            self._connecting = False
            self._connected(peer)
            return
        self._connecting = False
        self._stop_reading()
        self._stop_writing()
        self._events.tcp_connect_failed(self.skt, _CONNECT_STATE.get(err, SocketState.UNKFAULT))

    def _connected(self, peer: tuple[object, ...]) -> None:
        skt = self.skt
        host, port = self._sock.getsockname()[:2]
        raddr = _sockaddr_bytes(skt.family, str(peer[0]))
        self._events.tcp_established(
            skt,
            _sockaddr_bytes(skt.family, host),
            port,
            raddr,
            int(peer[1]),  # type: ignore[call-overload]
        )
        if self._fd < 0:
            return
        self._start_reading()
        self._flush()

    def _accept(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:  # ECONNABORTED, EMFILE, ...: keep listening
            self.log.info("socket {sktid}: accept: {e}", sktid=self.skt.sktid, e=e)
            return
        self._stop_reading()  # the listener's fd leaves the reactor before we swap
        self._sock.close()
        conn.setblocking(False)
        _tune_tcp(conn)
        self._sock = conn
        self._fd = conn.fileno()
        self._listening = False
        self._connected(conn.getpeername())

    def tcp_info(self) -> bytes | None:
        """SKT_TCPINFO sampled now (the connection's TCP_INFO), or None while listening or
        once closed."""
        if self._fd < 0 or self._listening:
            return None
        try:
            raw = self._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        except OSError:
            return None
        return tcp_info_region(raw)

    # -- reading -----------------------------------------------------------------------

    def doRead(self) -> None:
        if self._listening:
            return self._accept()
        if self._connecting:
            return self._check_connect()
        events = self._events
        skt = self.skt
        recvmsg = self._sock.recvmsg
        for _ in range(_TCP_READ_BATCH):
            room = events.recv_room(skt)
            if room <= 0:
                self._stop_reading()
                events.tcp_blocked(skt)
                return
            want = room if room < NDATA_MAX else NDATA_MAX
            try:
                data, anc, _flags, _ = recvmsg(want, ANC_SIZE)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as e:
                return self._failed(e.errno or errno.EIO)
            if not data:
                if self._write_error:  # the data before a failed send is out: now its error
                    return self._failed(self._write_error)
                self._stop_reading()
                events.tcp_eof(skt)
                self._watch_after_eof()
                return
            events.tcp_received(skt, data, rx_time(anc, self._clock))
            if not self._reading:
                return
            # A short read emptied the queue, but a FIN that came with the data is only
            # seen by one more recv: read it now (EAGAIN otherwise, ~1 µs), so the ndata
            # and the PEERCLOSED leave in one write. Left to the next turn, the EOF
            # reached the controller 84-648 µs after the data, and a wrapped wget reused
            # the connection the server had already closed in between.

    def _watch_after_eof(self) -> None:
        """After the peer's FIN the socket is no longer read (a readable EOF would wake the
        reactor forever), but its peer can still reset it: natively the RST to our first
        send after the close makes the program's second send fail EPIPE. The socket joins
        the network's shared epoll registered for no events, where only EPOLLERR/EPOLLHUP
        are reported, so the RESET nstat leaves when the RST arrives instead of when the
        next send fails (session 28). Each event wakes it once (edge-triggered; the
        watcher also reads SO_ERROR and drops a hung-up socket). EPOLLRDHUP would not do:
        it is the FIN already read, as level-triggered as the readable EOF. Nothing is
        added per message: the socket joins at EOF and leaves at our FIN or the close."""
        if self._fd < 0 or self._fin_done or self._eof_watcher is None:
            return  # closed, both directions shut (nothing can fail), or no epoll to join
        if self._eof_watch is not None:
            return  # already watched
        watcher = self._eof_watcher()
        try:
            watcher.watch(self._sock, on_error=self._failed, edge=True)
        except (OSError, RuntimeError, ValueError) as e:  # no epoll, or the network closed
            # As before session 28: the reset is learnt when the next send fails.
            self.log.info("socket {sktid}: not watched after EOF: {e}", sktid=self.skt.sktid, e=e)
            return
        self._eof_watch = watcher

    def _unwatch_eof(self) -> None:
        watcher, self._eof_watch = self._eof_watch, None
        if watcher is not None:
            watcher.unwatch(self._sock)

    # -- writing -----------------------------------------------------------------------

    def tx_time(self, pending: PendingSend, not_before: int) -> int | None:
        return None  # a stream has no per-send stamp: its last byte in the kernel is the time

    def send(self, pending: PendingSend) -> bool:
        """Append to the stream. True if every byte is in the kernel now; otherwise the
        rest goes when the socket is writable and send_done reports it."""
        if self._fin_done:
            raise OSError(errno.EPIPE, "socket already shut down for writing")
        wbuf = self._wbuf
        if wbuf or self._connecting or self._listening:
            wbuf.append(pending)
            return False
        data = pending.data
        if data:
            try:
                n = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as e:
                wbuf.append(pending)
                self._write_failed(e.errno or errno.EIO)
                return False
            if n < len(data):
                wbuf.append(pending)
                self._woff = n
                self._start_writing()
                return False
        return True

    def doWrite(self) -> None:
        if self._connecting:
            return self._check_connect()
        self._flush()

    def _flush(self) -> None:
        wbuf = self._wbuf
        sock = self._sock
        events = self._events
        while wbuf:
            pending = wbuf[0]
            data = pending.data
            off = self._woff
            left = len(data) - off
            before = self._clock()
            if left:
                try:
                    n = sock.send(memoryview(data)[off:] if off else data)
                except (BlockingIOError, InterruptedError):
                    self._start_writing()
                    return
                except OSError as e:
                    return self._write_failed(e.errno or errno.EIO)
                if n < left:
                    self._woff = off + n
                    self._start_writing()
                    return
            wbuf.popleft()
            self._woff = 0
            # its last byte went to the kernel in that send (send_time: not after an answer)
            events.send_done(pending, send_time(before, self._clock()), 0)
            if self._fd < 0:
                return
        self._stop_writing()
        if self._fin and not self._fin_done:
            self._do_fin()

    def shutdown_write(self) -> None:
        self._fin = True
        if not self._wbuf and not self._connecting and not self._listening and self._fd >= 0:
            self._do_fin()

    def _do_fin(self) -> None:
        self._fin_done = True
        self._unwatch_eof()  # END: a shut socket is always EPOLLHUP, and nothing can fail
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            return self._failed(e.errno or errno.EIO)
        self._events.tcp_fin_sent(self.skt)

    # -- failure and close -------------------------------------------------------------

    def _write_failed(self, err: int) -> None:
        """A send failed (the peer's reset, a timeout). The kernel may still hold bytes the
        peer sent before it, unread because reading was stopped for want of budget (or not
        yet reached this turn): failing now closed the socket and lost them. They are
        read first, as ndata, and the failure (the queued sends' ntags and the nstat,
        §3.2) follows when the read reaches their end, as a read error after data does.
        Later sends wait behind the failed one and are dropped with it."""
        if self._write_error:
            return
        # Only for an error that ends the connection: the kernel then gives what it holds,
        # then the end (EOF), so the wait is bounded by that data.
        gone = err in _CONNECTION_GONE
        if gone and self.skt.rbufsz > RECV_BUF_OVERHEAD and self._unread():  # else none can go
            self._write_error = err
            self._stop_writing()
            return
        self._failed(err)

    def _unread(self) -> int:
        """Bytes received and not read yet (SIOCINQ); 0 if the kernel will not say."""
        import fcntl  # a failed send's path alone
        import termios

        try:
            raw = fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int(struct.unpack("i", raw)[0])

    def _failed(self, err: int) -> None:
        self._write_error = 0
        self._stop_reading()
        self._stop_writing()
        self._events.tcp_error(self.skt, _CONNECT_STATE.get(err, SocketState.UNKFAULT))

    def _lost(self, reason: Failure) -> None:
        err = 0
        if self._fd >= 0:
            try:
                err = self._sock.getsockopt(_SOL_SOCKET, socket.SO_ERROR)
            except OSError:
                pass
        if self._connecting:
            self._connecting = False
            self._events.tcp_connect_failed(self.skt, _CONNECT_STATE.get(err, SocketState.UNKFAULT))
        else:
            self._failed(err)

    def _shut(self) -> None:
        self._unwatch_eof()  # before the close: the fd number may be reused at once
        super()._shut()

    def close(self) -> list[PendingSend]:
        self._shut()
        unsent = list(self._wbuf)
        self._wbuf.clear()
        return unsent


#: Send errors after which the kernel has nothing more to receive (a write error's wait
#: for the data before it ends at their end: `TcpIO._write_failed`).
_CONNECTION_GONE = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT})

_RCVBUF_FLOOR = 1 << 20  # rbufsz above which the kernel buffer is sized, not autotuned
_RCVBUF_MAX = 4 << 20
_SO_RCVBUFFORCE = 33


def _size_rcvbuf(sock: socket.socket, rbufsz: int) -> None:
    # A socket asked to hold a lot (rbufsz > 1 MiB: a bulk transfer) gets a kernel buffer
    # of min(rbufsz, 4 MiB) before connecting. Autotuning keeps the window near 64 KiB at
    # namespace/LAN RTTs, under a millisecond at 1 Gbit/s, so a Python endpoint that is
    # not scheduled for a few ms would stall the sender (docs/congruence.md).
    if rbufsz <= _RCVBUF_FLOOR:
        return
    size = min(rbufsz, _RCVBUF_MAX)
    try:
        sock.setsockopt(_SOL_SOCKET, _SO_RCVBUFFORCE, size)  # CAP_NET_ADMIN
    except OSError:
        sock.setsockopt(_SOL_SOCKET, socket.SO_RCVBUF, size)  # capped at net.core.rmem_max


def _tune_tcp(sock: socket.socket) -> None:
    # Segments leave when the controller says so (no Nagle); receive times from the kernel.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    enable_rx_timestamps(sock)


class ReactorNetwork:
    """Makes real sockets for the session (the `Network` seam)."""

    def __init__(
        self, reactor: FDReactor, clock: Callable[[], int] = realtime_ns, tx_stamps: bool = True
    ) -> None:
        self._reactor = reactor
        self._clock = clock
        # UDP ntag times from kernel TX timestamps; the stamped sockets live in the watcher.
        self._watcher = SocketWatcher(reactor) if tx_stamps else None
        self._shutdown_trigger: object = None
        if self._watcher is not None:
            self._leave_at_shutdown()
        self._raw_in_use: set[tuple[str, int]] = set()  # (interface, family) with a raw socket
        # TCP sockets past the peer's FIN, watched for a reset (TcpIO._watch_after_eof):
        # the TX-stamp watcher's epoll, or one made at the first EOF without TX stamps.
        self._eof_watch: SocketWatcher | None = self._watcher

    def _eof_watcher(self) -> SocketWatcher:
        if self._eof_watch is None:
            self._eof_watch = SocketWatcher(self._reactor)
            self._leave_at_shutdown()
        return self._eof_watch

    def _leave_at_shutdown(self) -> None:
        # Leave before the reactor disconnects its readers (it would log a lost epoll).
        trigger = getattr(self._reactor, "addSystemEventTrigger", None)
        if self._shutdown_trigger is None and trigger is not None:
            self._shutdown_trigger = trigger("before", "shutdown", self._close_at_shutdown)

    def close(self) -> None:
        """Give back what the network holds in the reactor (the TX-stamp watcher, the EOF
        watcher): an endpoint stopped while its reactor runs on (in-process) leaves
        nothing behind."""
        self._close_watchers()
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)  # type: ignore[attr-defined]
            self._shutdown_trigger = None

    def _close_at_shutdown(self) -> None:
        # Fired, the trigger is gone from the reactor: close() after the shutdown (pktlab run
        # stopped by a Ctrl-C as its endpoint starts) must not remove it again (ValueError).
        self._shutdown_trigger = None
        self._close_watchers()

    def _close_watchers(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        if self._eof_watch is not None and self._eof_watch is not self._watcher:
            self._eof_watch.close()

    def _socket(self, family: int, kind: int, in_use: Status) -> socket.socket:
        try:
            sock = socket.socket(_AF[family], kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        except OSError as e:
            raise OpenError(_open_status(e.errno or 0, in_use), f"socket(): {e}") from None
        if family == 6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        return sock

    @staticmethod
    def _bind(sock: socket.socket, skt: Skt, laddr: bytes, lport: int, in_use: Status) -> None:
        host = socket.inet_ntop(_AF[skt.family], laddr)
        try:
            sock.bind((host, lport))
        except OSError as e:
            sock.close()
            raise OpenError(
                _open_status(e.errno or 0, in_use), f"bind {host} port {lport}: {e}"
            ) from None

    @staticmethod
    def _record_local(sock: socket.socket, skt: Skt) -> None:
        host, port = sock.getsockname()[:2]
        skt.laddr = _sockaddr_bytes(skt.family, host)
        skt.lport = port

    @staticmethod
    def tcp_info(skt: Skt) -> bytes | None:
        """The `VirtualMemory` hook: a TCP socket's SKT_TCPINFO, sampled now."""
        io = skt.io
        return io.tcp_info() if isinstance(io, TcpIO) else None

    def open_udp(self, skt: Skt, laddr: bytes, lport: int, events: SocketEvents) -> UdpIO:
        sock = self._socket(skt.family, socket.SOCK_DGRAM, Status.EUDPNOPORT)
        enable_rx_timestamps(sock)
        try:
            sock.setsockopt(_SOL_SOCKET, SO_RXQ_OVFL, 1)
        except OSError:  # not Linux: kernel drops go uncounted, as before
            pass
        send_while_writable(sock)
        self._bind(sock, skt, laddr, lport, Status.EUDPNOPORT)
        self._record_local(sock, skt)
        io = UdpIO(self._reactor, sock, skt, events, self._clock)
        if self._watcher is not None:
            io.stamp_tx(self._watcher)
        io.resume_reading()
        return io

    def open_tcp(
        self,
        skt: Skt,
        laddr: bytes,
        lport: int,
        raddr: bytes | None,
        rport: int | None,
        events: SocketEvents,
    ) -> TcpIO:
        sock = self._socket(skt.family, socket.SOCK_STREAM, Status.ETCPNOPORT)
        _tune_tcp(sock)
        _size_rcvbuf(sock, skt.rbufsz)
        if raddr is None:  # passive open: accept one connection (beyond the reference)
            sock.setsockopt(_SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._bind(sock, skt, laddr, lport, Status.ETCPNOPORT)
            try:
                sock.listen(1)
            except OSError as e:
                sock.close()
                raise OpenError(_open_status(e.errno or 0, Status.ETCPNOPORT), str(e)) from None
            self._record_local(sock, skt)
            return TcpIO(self._reactor, sock, skt, events, self._clock, True, self._eof_watcher)
        if lport or any(laddr):
            self._bind(sock, skt, laddr, lport, Status.ETCPNOPORT)
        host = socket.inet_ntop(_AF[skt.family], raddr)
        skt.raddr, skt.rport = raddr, rport or 0
        err = sock.connect_ex((host, rport or 0))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            state = _CONNECT_STATE.get(err, SocketState.UNKFAULT)
            raise ConnectFailed(state, f"connect {host} port {rport}: {errno.errorcode.get(err)}")
        self._record_local(sock, skt)
        return TcpIO(self._reactor, sock, skt, events, self._clock, False, self._eof_watcher)

    def open_raw(self, skt: Skt, laddr: bytes, events: SocketEvents) -> RawIO:
        from packetlab.endpoint.raw import open_raw

        # The reactor is the real one (it has callLater, for the ncap endtime).
        reactor: Any = self._reactor
        return open_raw(reactor, skt, laddr, events, self._raw_in_use, self._clock)
