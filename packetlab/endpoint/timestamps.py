"""Kernel packet timestamps: receive (SO_TIMESTAMPNS) and transmit (SO_TIMESTAMPING).

Receive: after `enable_rx_timestamps`, every ``recvmsg`` carries an ``SCM_TIMESTAMPNS``
control message with the ``CLOCK_REALTIME`` time the kernel took the packet in (UDP, raw and
TCP; for TCP it is the time of the newest segment the read returned).

Transmit: after `enable_tx_timestamps` the kernel queues, per sent datagram, a software
timestamp taken when the packet was handed to the device driver, on the socket's *error
queue* (``MSG_ERRQUEUE``). A non-empty error queue makes the socket report ``EPOLLERR``, and
Twisted's reactor treats ``EPOLLERR`` without ``EPOLLIN`` as "connection lost" and drops the
descriptor. So a TX-timestamped socket must not be handed to the reactor itself: watch it with
`SocketWatcher`, which keeps such sockets in a private epoll and gives the reactor only that
epoll's descriptor (which is merely readable).

The constants are Linux's generic values (x86, ARM, RISC-V...); Alpha, MIPS, PA-RISC and
SPARC number these options differently and are not supported.
"""

from __future__ import annotations

import errno
import platform
import select
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from packetlab.endpoint.clock import ReaderReactor

__all__ = [
    "SCM_TSTAMP_ACK",
    "SCM_TSTAMP_SCHED",
    "SCM_TSTAMP_SND",
    "Received",
    "SocketWatcher",
    "TxStampMatcher",
    "TxTimestamp",
    "enable_rx_timestamps",
    "enable_tx_timestamps",
    "read_tx_timestamps",
    "recv_with_timestamp",
    "rx_timestamp_from_ancdata",
    "tx_timestamp_from_ancdata",
]

SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD: the native timespec, 64-bit on 64-bit hosts
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
SO_TIMESTAMPING = 37  # SO_TIMESTAMPING_OLD, same remark
SCM_TIMESTAMPING = SO_TIMESTAMPING

SOF_TIMESTAMPING_TX_SOFTWARE = 1 << 1
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
SOF_TIMESTAMPING_OPT_ID = 1 << 7
SOF_TIMESTAMPING_TX_SCHED = 1 << 8
SOF_TIMESTAMPING_TX_ACK = 1 << 9
SOF_TIMESTAMPING_OPT_TSONLY = 1 << 11
SOF_TIMESTAMPING_OPT_ID_TCP = 1 << 16  # Linux >= 6.2: TCP ids count bytes from the first send

SCM_TS_OPT_ID = 81  # Linux >= 6.13: the id of a timestamp, chosen per sendmsg

SO_RCVBUFFORCE = 33
SOL_IPV6 = 41
IP_RECVERR = 11
IPV6_RECVERR = 25
SO_EE_ORIGIN_TIMESTAMPING = 4

#: Kinds of TX timestamp (``sock_extended_err.ee_info``).
SCM_TSTAMP_SND = 0  # handed to the driver
SCM_TSTAMP_SCHED = 1  # entered the queueing discipline
SCM_TSTAMP_ACK = 2  # TCP: all bytes up to this one acknowledged

_TIMESPEC = struct.Struct("@ll")
_U32 = struct.Struct("@I")
_EXTENDED_ERR = struct.Struct("@IBBBBII")  # errno, origin, type, code, pad, info, data
_ERR_LEVELS = {(socket.SOL_IP, IP_RECVERR), (SOL_IPV6, IPV6_RECVERR)}
# Bound once: the parse runs per stamped send.
_SOL_SOCKET = int(socket.SOL_SOCKET)
_timespec = _TIMESPEC.unpack_from
_TIMESPEC_SIZE = _TIMESPEC.size
_extended_err = _EXTENDED_ERR.unpack_from
_EXTENDED_ERR_SIZE = _EXTENDED_ERR.size
# Room for SCM_TIMESTAMPNS plus SCM_TIMESTAMPING (3 timespecs) if both are enabled.
RX_ANCBUF_SIZE = socket.CMSG_SPACE(_TIMESPEC.size) + socket.CMSG_SPACE(3 * _TIMESPEC.size)
_ERRQ_ANCBUF_SIZE = socket.CMSG_SPACE(3 * _TIMESPEC.size) + socket.CMSG_SPACE(64)
# A plain int: OR-ing the socket module's flag enums costs two enum calls per read.
_ERRQ_FLAGS = int(socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
_UNSUPPORTED_MACHINES = ("alpha", "mips", "parisc", "sparc")


class Received(NamedTuple):
    data: bytes
    addr: Any  # the sender's address for datagram sockets, None for connected streams
    ts_ns: int | None  # kernel receive time (CLOCK_REALTIME ns); None if not enabled


class TxTimestamp(NamedTuple):
    id: int  # UDP/raw: index of the datagram since enabling; TCP: byte offset of its last byte
    kind: int  # SCM_TSTAMP_SND / _SCHED / _ACK
    ts_ns: int  # CLOCK_REALTIME ns


def _check_socket(sock: object) -> socket.socket:
    if not isinstance(sock, socket.socket):
        raise TypeError(f"expected a socket.socket, got {type(sock).__name__}")
    if sock.fileno() < 0:
        raise ValueError("socket is closed")
    if not sys.platform.startswith("linux"):
        raise OSError("kernel packet timestamps need Linux")
    if platform.machine().lower().startswith(_UNSUPPORTED_MACHINES):
        raise OSError(f"timestamp option numbers differ on {platform.machine()}; unsupported")
    return sock


def enable_rx_timestamps(sock: socket.socket) -> None:
    """Make every recvmsg on ``sock`` carry the kernel receive time (SO_TIMESTAMPNS)."""
    _check_socket(sock).setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def rx_timestamp_from_ancdata(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    """The SCM_TIMESTAMPNS time (ns) in a recvmsg ancillary list, or None."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return sec * 1_000_000_000 + nsec
    return None


def recv_with_timestamp(sock: socket.socket, bufsize: int, flags: int = 0) -> Received:
    """``recvmsg`` returning the data, source address and kernel receive time.

    Raises what ``recvmsg`` raises (``BlockingIOError`` on an empty non-blocking socket).
    ``ts_ns`` is None when timestamps are not enabled, or for a TCP read of zero bytes (EOF).
    """
    if type(bufsize) is not int or bufsize <= 0:
        raise ValueError(f"bufsize must be a positive int, got {bufsize!r}")
    data, ancdata, _flags, addr = sock.recvmsg(bufsize, RX_ANCBUF_SIZE, flags)
    return Received(data, addr, rx_timestamp_from_ancdata(ancdata))


def enable_tx_timestamps(sock: socket.socket, *, sched: bool = False, ack: bool = False) -> int:
    """Queue a software TX timestamp on the error queue for every send on ``sock``.

    Each timestamp carries an id (OPT_ID) and no copy of the packet (OPT_TSONLY). ``sched``
    adds a timestamp when the packet enters the qdisc, ``ack`` (TCP) one when it is acked.
    Do not give ``sock`` to the reactor afterwards; see `SocketWatcher`. Returns the flags set.
    """
    _check_socket(sock)
    flags = (
        SOF_TIMESTAMPING_TX_SOFTWARE
        | SOF_TIMESTAMPING_SOFTWARE
        | SOF_TIMESTAMPING_OPT_ID
        | SOF_TIMESTAMPING_OPT_TSONLY
    )
    if sched:
        flags |= SOF_TIMESTAMPING_TX_SCHED
    if ack:
        flags |= SOF_TIMESTAMPING_TX_ACK
    if sock.type == socket.SOCK_STREAM:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, flags | SOF_TIMESTAMPING_OPT_ID_TCP)
            return flags | SOF_TIMESTAMPING_OPT_ID_TCP
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            # EINVAL: a kernel before 6.2 (no OPT_ID_TCP), or a socket not connected yet.
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, flags)
    except OSError as e:
        if e.errno == errno.EINVAL and sock.type == socket.SOCK_STREAM:
            raise OSError(
                errno.EINVAL, "TCP TX timestamps can only be enabled once connected"
            ) from e
        raise
    return flags


def tx_timestamp_from_ancdata(ancdata: list[tuple[int, int, bytes]]) -> TxTimestamp | None:
    """The TX timestamp in one error-queue message's ancillary list, or None.

    Needs both the SCM_TIMESTAMPING time and the ``sock_extended_err`` saying it is a
    timestamp (origin SO_EE_ORIGIN_TIMESTAMPING), which carries the id and kind.
    """
    fields = _stamp_fields(ancdata)
    return None if fields is None else TxTimestamp(*fields)


def _stamp_fields(ancdata: list[tuple[int, int, bytes]]) -> tuple[int, int, int] | None:
    """`tx_timestamp_from_ancdata`'s (id, kind, ts_ns) as a plain tuple: `take` runs it
    once per stamped send, and the named tuple would cost ~0.3 µs more."""
    ts_ns: int | None = None
    ee: tuple[int, ...] | None = None
    for level, kind, data in ancdata:
        if kind == SCM_TIMESTAMPING and level == _SOL_SOCKET:
            if len(data) >= _TIMESPEC_SIZE:
                sec, nsec = _timespec(data)
                ts_ns = sec * 1_000_000_000 + nsec
        elif (level, kind) in _ERR_LEVELS and len(data) >= _EXTENDED_ERR_SIZE:
            ee = _extended_err(data)
    if ts_ns is None or ee is None or ee[1] != SO_EE_ORIGIN_TIMESTAMPING:
        return None
    return ee[6], ee[5], ts_ns


def read_tx_timestamps(sock: socket.socket, limit: int = 256) -> list[TxTimestamp]:
    """Drain up to ``limit`` TX timestamps from the error queue, without blocking.

    On loopback and veth the SND timestamp of a datagram is already queued when ``sendto``
    returns; behind a busy qdisc it arrives later (watch the socket with `SocketWatcher`).
    Error-queue entries that are not timestamps (ICMP errors under IP_RECVERR) are skipped.
    """
    out: list[TxTimestamp] = []
    for _ in range(limit):
        try:
            _data, ancdata, _flags, _addr = sock.recvmsg(0, _ERRQ_ANCBUF_SIZE, _ERRQ_FLAGS)
        except BlockingIOError:
            break
        stamp = tx_timestamp_from_ancdata(ancdata)
        if stamp is not None:
            out.append(stamp)
    return out


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = platform.release().split(".")
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (major, minor)
    except (IndexError, ValueError):
        return False


class TxStampMatcher:
    """Sends chosen datagrams with a kernel TX timestamp and pairs each stamp with its send.

    Only sends made through `sendto` are stamped (the request rides in a control message),
    so plain ``sock.sendto`` calls on the same socket, e.g. nsends with tag 0, pay nothing:
    stamping costs ~1.5 µs of kernel time per packet here. On Linux >= 6.13 each send
    names its own id (``SCM_TS_OPT_ID``), so a failed send cannot shift the pairing; older
    kernels number stamped sends, and `take` rejects a stamp older than the send as a
    mismatch. Keeps at most ``keep`` unclaimed stamps. UDP and raw sockets only.

    Queued stamps count against the socket's receive buffer (~830 bytes each here; the
    default 208 KiB holds ~250), and the kernel drops stamps that do not fit. So the
    buffer is raised to ``rcvbuf`` bytes (SO_RCVBUFFORCE when allowed, else up to
    ``net.core.rmem_max``), enough for the callbacks `PreciseScheduler` holds back during
    a dense train; `take` returns None for a dropped stamp.
    """

    def __init__(self, sock: socket.socket, *, keep: int = 4096, rcvbuf: int = 4 << 20) -> None:
        _check_socket(sock)
        if sock.type == socket.SOCK_STREAM:
            raise ValueError("TxStampMatcher pairs datagrams; TCP ids count bytes")
        # Report-only flags on the socket; each stamped send asks for its own stamp.
        sock.setsockopt(
            socket.SOL_SOCKET,
            SO_TIMESTAMPING,
            SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_OPT_ID | SOF_TIMESTAMPING_OPT_TSONLY,
        )
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < rcvbuf:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._sock = sock
        self._keep = keep
        self._stamps: dict[int, int] = {}
        self._next = 0
        self._request = (
            socket.SOL_SOCKET,
            SO_TIMESTAMPING,
            _U32.pack(SOF_TIMESTAMPING_TX_SOFTWARE),
        )
        self.explicit_ids = _kernel_at_least(6, 13)

    def sendto(self, data: bytes, addr: Any) -> int:
        """Send like ``sock.sendto`` with a TX timestamp; return the stamp's id."""
        ident = self._next
        if self.explicit_ids:
            ancillary = [self._request, (socket.SOL_SOCKET, SCM_TS_OPT_ID, _U32.pack(ident))]
            self._sock.sendmsg([data], ancillary, 0, addr)
        else:
            self._sock.sendmsg([data], [self._request], 0, addr)
        self._next = (ident + 1) & 0xFFFFFFFF
        return ident

    def feed(self, stamps: list[TxTimestamp]) -> None:
        """Store drained stamps (use as `SocketWatcher` ``on_tx``)."""
        for stamp in stamps:
            if stamp.kind == SCM_TSTAMP_SND:
                self._stamps[stamp.id] = stamp.ts_ns
        while len(self._stamps) > self._keep:
            del self._stamps[next(iter(self._stamps))]

    def take(self, ident: int, not_before_ns: int = 0) -> int | None:
        """The TX time (ns) of send ``ident``, or None if the kernel has not queued it (yet).

        Pass the send's ``sent_before_ns`` as ``not_before_ns``: a stamp older than the send
        cannot be its own.
        """
        stamps = self._stamps
        if ident not in stamps:
            # One at a time: the wanted stamp is usually first, and the failing read that
            # ends a drain costs a Python exception (~1 µs). Inline: this runs per send.
            recvmsg = self._sock.recvmsg
            while True:
                try:
                    ancdata = recvmsg(0, _ERRQ_ANCBUF_SIZE, _ERRQ_FLAGS)[1]
                except BlockingIOError:
                    break
                fields = _stamp_fields(ancdata)
                if fields is None:
                    continue
                got, kind, stamp_ns = fields
                if kind != SCM_TSTAMP_SND:
                    continue
                if got == ident:
                    return None if stamp_ns < not_before_ns else stamp_ns
                stamps[got] = stamp_ns
                if len(stamps) > self._keep:
                    del stamps[next(iter(stamps))]
        ts = stamps.pop(ident, None)
        if ts is None or ts < not_before_ns:
            return None
        return ts


class _Watched:
    __slots__ = ("events", "on_error", "on_readable", "on_tx", "reading", "sock")

    def __init__(
        self,
        sock: socket.socket,
        on_readable: Callable[[], object] | None,
        on_tx: Callable[[list[TxTimestamp]], object] | None,
        on_error: Callable[[int], object] | None,
    ) -> None:
        self.sock = sock
        self.on_readable = on_readable
        self.on_tx = on_tx
        self.on_error = on_error
        self.reading = on_readable is not None
        self.events = 0


@implementer(IReadDescriptor)
class SocketWatcher:
    """Watches sockets through a private epoll registered with the reactor as one reader.

    The reactor only ever sees the private epoll's descriptor, which is readable when any
    watched socket has an event; so a socket's ``EPOLLERR`` (TX timestamps waiting on its
    error queue) reaches `read_tx_timestamps` instead of Twisted's disconnect logic.
    Meant for datagram and raw sockets: a hang-up unwatches the socket after ``on_readable``.
    TCP sockets past the peer's FIN are watched with ``on_error`` alone (no events asked,
    netio.TcpIO): their reset arrives as EPOLLERR|EPOLLHUP, reported once (session 28).

    Per event: ``on_readable()`` when data is waiting (and reading is not paused);
    ``on_tx(stamps)`` with the drained TX timestamps; ``on_error(errno)`` for a pending
    socket error (SO_ERROR, e.g. ICMP port unreachable on a connected UDP socket).
    """

    log = Logger()

    def __init__(self, reactor: ReaderReactor) -> None:
        self._reactor = reactor
        self._epoll: select.epoll | None = select.epoll()
        self._watched: dict[int, _Watched] = {}
        reactor.addReader(self)

    def watch(
        self,
        sock: socket.socket,
        *,
        on_readable: Callable[[], object] | None = None,
        on_tx: Callable[[list[TxTimestamp]], object] | None = None,
        on_error: Callable[[int], object] | None = None,
        edge: bool = False,
    ) -> None:
        """``edge``: EPOLLET, each error or hang-up reported once even if it stays (a TCP
        socket past EOF: a kernel whose SO_ERROR read did not clear EPOLLERR must not make
        the reactor spin)."""
        _check_socket(sock)
        epoll = self._live_epoll()
        fd = sock.fileno()
        old = self._watched.get(fd)
        if old is not None:
            if old.sock.fileno() == fd:
                raise ValueError(f"socket fd {fd} is already watched")
            # The old socket was closed without unwatch (epoll forgot it); reuse the slot.
            del self._watched[fd]
        entry = _Watched(sock, on_readable, on_tx, on_error)
        entry.events = select.EPOLLIN if entry.reading else 0  # EPOLLERR/HUP: always
        if edge:
            entry.events |= select.EPOLLET
        epoll.register(fd, entry.events)
        self._watched[fd] = entry

    def set_reading(self, sock: socket.socket, reading: bool) -> None:
        """Pause or resume ``on_readable`` (receive budget exhausted); TX stamps still flow."""
        entry = self._entry(sock)
        if entry.on_readable is None and reading:
            raise ValueError("socket was watched without on_readable")
        entry.reading = reading
        events = (select.EPOLLIN if reading else 0) | (entry.events & select.EPOLLET)
        if events != entry.events:
            self._live_epoll().modify(sock.fileno(), events)
            entry.events = events

    def unwatch(self, sock: socket.socket) -> None:
        """Stop watching (call before closing the socket). Unknown sockets are ignored."""
        fd = sock.fileno()
        if fd >= 0 and self._watched.pop(fd, None) is not None and self._epoll is not None:
            self._epoll.unregister(fd)

    def close(self) -> None:
        if self._epoll is not None:
            self._reactor.removeReader(self)
            self._epoll.close()
            self._epoll = None
            self._watched.clear()

    def _entry(self, sock: socket.socket) -> _Watched:
        entry = self._watched.get(sock.fileno())
        if entry is None or entry.sock is not sock:
            raise KeyError(f"socket {sock!r} is not watched")
        return entry

    def _live_epoll(self) -> select.epoll:
        if self._epoll is None:
            raise RuntimeError("SocketWatcher is closed")
        return self._epoll

    # IReadDescriptor

    def fileno(self) -> int:
        return -1 if self._epoll is None else self._epoll.fileno()

    def doRead(self) -> None:
        if self._epoll is None:
            return
        for fd, events in self._epoll.poll(0):
            entry = self._watched.get(fd)
            if entry is not None:
                try:
                    self._dispatch(entry, events)
                except Exception:
                    self.log.failure("socket watcher callback failed for fd {fd}", fd=fd)

    def _dispatch(self, entry: _Watched, events: int) -> None:
        if events & select.EPOLLERR:
            stamps = read_tx_timestamps(entry.sock)
            if stamps:
                if entry.on_tx is not None:
                    entry.on_tx(stamps)
            else:
                # Not the error queue, so a pending socket error; reading SO_ERROR clears it
                # (otherwise level-triggered epoll would report it forever).
                err = entry.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err and entry.on_error is not None:
                    entry.on_error(err)
        if events & (select.EPOLLIN | select.EPOLLHUP) and entry.reading:
            assert entry.on_readable is not None
            entry.on_readable()
        if events & select.EPOLLHUP:
            self.unwatch(entry.sock)

    def connectionLost(self, reason: Failure) -> None:
        if self._epoll is not None:
            self.log.failure("socket watcher lost its epoll", reason)

    def logPrefix(self) -> str:
        return "SocketWatcher"
