"""Raw IP sockets on the reactor: whole IP packets out, ncap capture in (PROTOCOL.md §3.3, §3.4).

One PacketLab raw socket is two kernel sockets on one interface:

* sending: ``AF_INET/SOCK_RAW/IPPROTO_RAW`` (IP_HDRINCL) or ``AF_INET6/SOCK_RAW/IPPROTO_RAW``
  bound to the exported address; the controller writes the whole IP header and the kernel
  rewrites what IP4HDRMOD/IP6HDRMOD say. Tagged sends ask for a kernel TX timestamp
  (`TxStampMatcher`). This socket is never given to the reactor: it receives nothing, and
  its error queue (the stamps) is read in `tx_time`, so no EPOLLERR reaches Twisted.
* capture: `packetlab.endpoint.bpf.CaptureSocket` (``AF_PACKET/SOCK_DGRAM`` bound to the
  interface, offset 0 = IP header), drop-all until the first ncap; packets of the socket's
  IP version that the filter accepts become ndata with the kernel receive time.
"""

from __future__ import annotations

import errno
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from packetlab.clockstep import mark_wall
from packetlab.endpoint.bpf import (
    CaptureSocket,
    FilterRejected,
    VerifierError,
    interface_for_address,
    load_ncap_filter,
)
from packetlab.endpoint.clock import realtime_ns, send_time
from packetlab.endpoint.closer import close_later
from packetlab.endpoint.sndbuf import send_while_writable
from packetlab.endpoint.sockets import CaptureRejected, OpenError, PendingSend, Skt, SocketEvents
from packetlab.endpoint.timestamps import TxStampMatcher
from packetlab.logbudget import LogBudget
from packetlab.wire.constants import SocketState, Status

__all__ = ["RawIO", "RawReactor", "open_raw"]

_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_ETHERTYPE = {4: 0x0800, 6: 0x86DD}
_READ_BATCH = 64  # packets per wake-up, so one busy interface cannot starve the rest
_CAPTURE_RCVBUF = 1 << 20
_MAX_TIMER_S = 86400.0
_RETRY_S = 0.001  # a full send buffer is tried again this often
_LOG_TAIL = 4000  # verifier log characters kept in our log (the end holds the verdict)

log = Logger(namespace="packetlab.endpoint.raw")
_PERMISSION_LOG = LogBudget(time.monotonic)


class RawReactor(Protocol):
    """What a raw socket needs of the reactor (structural: fakes fit)."""

    def addReader(self, reader: Any) -> None: ...

    def removeReader(self, reader: Any) -> None: ...

    def callLater(self, delay: float, f: Callable[..., object], *args: object) -> Any: ...


@implementer(IReadDescriptor)
class RawIO:
    """One open raw socket (the session's `RawSocketIO`)."""

    def __init__(
        self,
        reactor: RawReactor,
        skt: Skt,
        events: SocketEvents,
        sender: socket.socket,
        capture: CaptureSocket,
        clock: Callable[[], int] = realtime_ns,
        on_close: Callable[[], None] | None = None,
        closer: Callable[[CaptureSocket], None] = close_later,
    ) -> None:
        self._reactor = reactor
        self.skt = skt
        self._events = events
        self._sender = sender
        self._cap = capture
        self._fd = capture.fileno()
        self._clock = clock
        self._on_close = on_close
        self._closer = closer
        self._ethertype = _ETHERTYPE[skt.family]
        self._scope = capture.ifindex if skt.family == 6 else 0
        # On loopback every packet is seen twice, going out and coming in: keep the second.
        self._loopback = capture.ifname == "lo"
        self._endtime: int | None = None  # capture stops at this time; None: not capturing
        self._stop_call: Any = None
        self._ids: dict[PendingSend, int] = {}
        self._backlog: deque[PendingSend] = deque()  # waiting for send-buffer space
        self._retry: Any = None  # the pending callLater of the backlog
        try:
            self._matcher: TxStampMatcher | None = TxStampMatcher(sender)
        except OSError as e:  # no TX stamps here: ntag falls back to the send's clock reading
            log.info("raw socket {sktid}: no TX timestamps ({e})", sktid=skt.sktid, e=e)
            self._matcher = None
        reactor.addReader(self)

    # -- sending ---------------------------------------------------------------------------

    def send(self, pending: PendingSend) -> bool:
        """Send the IP packet now: True once the kernel took it; False if it waits for
        buffer space (reported later through send_done), as a blocking sender waits.
        Other errors raise OSError. A full buffer was ENOBUFS at once: `ping -l 200 -s
        1400` through a 20 Mbit/s tbf lost 35 % where ping, told ENOBUFS, sends again."""
        if not self._backlog:
            try:
                self._sendto(pending)
                return True
            except (BlockingIOError, InterruptedError):
                pass
        self._backlog.append(pending)
        self._retry_later()
        return False

    def _sendto(self, pending: PendingSend) -> None:
        dest = pending.dest
        assert dest is not None
        if self._scope and dest[0][:4].lower() == "fe80":
            dest = (dest[0], 0, 0, self._scope)  # link-local: this interface
        if pending.tag and self._matcher is not None:
            self._ids[pending] = self._matcher.sendto(pending.data, dest)
        else:
            self._sender.sendto(pending.data, dest)

    def _retry_later(self) -> None:
        # The sending socket is not the reactor's (its error queue holds the TX stamps):
        # no writable event, so a timer, as a TX-stamped UDP socket's backlog
        if self._retry is None and self._fd >= 0:
            self._retry = self._reactor.callLater(_RETRY_S, self._send_backlog)

    def _send_backlog(self) -> None:
        self._retry = None
        backlog, clock, events = self._backlog, self._clock, self._events
        while backlog and self._fd >= 0:
            pending = backlog[0]
            before = clock()
            try:
                self._sendto(pending)
            except (BlockingIOError, InterruptedError):
                self._retry_later()  # still full
                return
            except OSError as e:
                backlog.popleft()
                events.send_done(pending, clock(), e.errno or errno.EIO)
                continue
            backlog.popleft()
            stamp = self.tx_time(pending, before) if pending.tag else None
            events.send_done(pending, stamp if stamp is not None else send_time(before, clock()), 0)

    def tx_time(self, pending: PendingSend, not_before: int) -> int | None:
        ident = self._ids.pop(pending, None)
        if ident is None or self._matcher is None:
            return None
        return self._matcher.take(ident, not_before)

    def shutdown_write(self) -> None:
        pass  # nctl is TCP only

    def resume_reading(self) -> None:
        pass  # datagrams that do not fit are dropped and counted, never left queued

    # -- capture ---------------------------------------------------------------------------

    def capture(self, program: bytes, endtime: int) -> None:
        """Install `program` (encoded eBPF) until `endtime`; an endtime that is not in the
        future (0 included) loads and checks the program but captures nothing."""
        try:
            loaded = load_ncap_filter(program)
        except FilterRejected as e:
            # Logged by the session, at most so many lines a minute (a controller can send
            # bad filters by the thousand).
            detail = ""
            if isinstance(e, VerifierError):
                detail = f"\nkernel verifier: {e.reason}\n{e.log[-_LOG_TAIL:]}"
            raise CaptureRejected(Status.ESKTBADFILT, str(e), detail) from None
        self._cancel_stop()
        now = self._clock()
        with loaded:
            if endtime <= now:
                self._stop()
                return
            self._cap.set_filter(loaded)
        self._endtime = endtime
        self._arm_stop()

    def _arm_stop(self) -> None:
        # At most a day per timer: epoll cannot wait for a far-future endtime like 2**63 ns.
        assert self._endtime is not None
        delay = (self._endtime - self._clock()) / 1e9
        if delay > _MAX_TIMER_S:
            self._stop_call = mark_wall(self._reactor.callLater(_MAX_TIMER_S, self._arm_stop))
        else:
            self._stop_call = mark_wall(self._reactor.callLater(max(delay, 0.0), self._stop))

    def _cancel_stop(self) -> None:
        if self._stop_call is not None:
            if self._stop_call.active():
                self._stop_call.cancel()
            self._stop_call = None

    def _stop(self) -> None:
        """endtime reached: the kernel queues nothing more; what came before is delivered."""
        self._stop_call = None
        if self._fd < 0:
            return
        self._cap.drop_all()
        self.doRead()
        self._cap.drain()  # whatever is left came after endtime
        self._endtime = None

    # -- IReadDescriptor -------------------------------------------------------------------

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return f"pktendpoint-raw-{self.skt.sktid}"

    def doRead(self) -> None:
        self._read()
        # One getsockopt a wake-up: the packets the kernel dropped at the full queue.
        dropped = self._cap.drops() if self._fd >= 0 else 0
        if dropped and self._endtime is not None:
            self._events.raw_dropped(self.skt, dropped, self._clock())

    def _read(self) -> None:
        cap = self._cap
        loopback = self._loopback
        skt = self.skt
        received = self._events.raw_received
        for _ in range(_READ_BATCH):
            try:
                pkt = cap.recv_raw() if loopback else cap.recv()
            except InterruptedError:
                continue
            except OSError as e:
                log.debug("raw socket {sktid}: recv: {e}", sktid=skt.sktid, e=e)
                return
            if pkt is None:
                return
            if loopback and pkt.outgoing:
                continue
            endtime = self._endtime
            if pkt.protocol != self._ethertype or endtime is None or pkt.time_ns >= endtime:
                continue  # another IP version, or queued before a stop took effect
            received(skt, pkt.data, pkt.time_ns)
            if self._fd < 0:
                return

    def connectionLost(self, reason: Failure) -> None:
        if self._fd >= 0:
            log.warn("raw socket {sktid}: capture socket lost: {r}", sktid=self.skt.sktid, r=reason)
            self._shut()

    # -- closing ---------------------------------------------------------------------------

    def _shut(self) -> None:
        self._cancel_stop()
        if self._retry is not None:
            if self._retry.active():
                self._retry.cancel()
            self._retry = None
        if self._fd >= 0:
            self._reactor.removeReader(self)
            self._fd = -1
            # Off the reactor's thread: the capture's release waits for an RCU grace period.
            self._closer(self._cap)
            self._sender.close()
            self._ids.clear()
            if self._on_close is not None:
                self._on_close()

    def close(self) -> list[PendingSend]:
        self._shut()
        unsent = list(self._backlog)
        self._backlog.clear()
        return unsent


def _permission_error(skt: Skt, what: str, e: OSError) -> OpenError:
    note = _PERMISSION_LOG.allow()  # each raw nopen of a controller would log it
    if note is None:
        return OpenError(Status.EUNKFAULT, f"{what}: {e} (needs CAP_NET_RAW)")
    log.error(
        "raw socket {sktid}: {what}: {e}; raw sockets need CAP_NET_RAW (run pktendpoint as "
        "root or grant it: setcap cap_net_raw,cap_bpf+ep), or drop raw from TransprotoSup{note}",
        note=note,
        sktid=skt.sktid,
        what=what,
        e=e,
    )
    return OpenError(Status.EUNKFAULT, f"{what}: {e} (needs CAP_NET_RAW)")


def open_raw(
    reactor: RawReactor,
    skt: Skt,
    laddr: bytes,
    events: SocketEvents,
    in_use: set[tuple[str, int]],
    clock: Callable[[], int] = realtime_ns,
) -> RawIO:
    """Open the raw socket on the interface of `laddr` (an exported address, checked by the
    session). One raw socket per interface and family (`in_use`): else ESKTINUSE."""
    family = skt.family
    host = socket.inet_ntop(_AF[family], laddr)
    try:
        ifname = interface_for_address(host)
    except (ValueError, OSError) as e:
        raise OpenError(Status.ESKTNOADDR, f"raw: {e}") from None
    key = (ifname, family)
    if key in in_use:
        raise OpenError(
            Status.ESKTINUSE, f"interface {ifname} already has a raw IPv{family} socket"
        )
    kind = socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    try:
        sender = socket.socket(_AF[family], kind, socket.IPPROTO_RAW)
    except PermissionError as e:
        raise _permission_error(skt, "socket(SOCK_RAW)", e) from None
    except OSError as e:
        status = Status.ENORES if e.errno in (errno.EMFILE, errno.ENFILE) else Status.EUNKFAULT
        raise OpenError(status, f"socket(SOCK_RAW): {e}") from None
    send_while_writable(sender)
    try:
        if family == 6:
            scope = socket.if_nametoindex(ifname) if host.lower().startswith("fe80") else 0
            sender.bind((host, 0, 0, scope))
        else:
            sender.bind((host, 0))
        capture = CaptureSocket(ifname, rcvbuf=_CAPTURE_RCVBUF)
    except PermissionError as e:
        sender.close()
        raise _permission_error(skt, "capture socket", e) from None
    except OSError as e:
        sender.close()
        raise OpenError(Status.EUNKFAULT, f"raw socket on {ifname}: {e}") from None
    in_use.add(key)
    skt.laddr = laddr
    skt.lport = 0
    skt.state = SocketState.OPEN
    return RawIO(reactor, skt, events, sender, capture, clock, lambda: in_use.discard(key))
