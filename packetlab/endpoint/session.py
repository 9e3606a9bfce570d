"""One controller session of the endpoint, sans-IO (PROTOCOL.md §1.4, §2, §3).

`Session.handle` takes each decoded item from the framer and answers it with exactly one
frame in the outbox, in request order; notifications share the same FIFO. Sockets are
made through a `Network` and report back through the `SocketEvents` methods below.
Timed sends and FINs run on a scheduler (`packetlab.endpoint.sender.PreciseScheduler`).

What the session does not do: read or write the controller connection (the protocol
does), keep timers other than the scheduler's (the protocol runs the setup timeout).
"""

from __future__ import annotations

import enum
import errno
import socket
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, cast

from twisted.logger import Logger

from packetlab.endpoint import frames
from packetlab.endpoint.budget import RECV_BUF_OVERHEAD, SEND_BUF_OVERHEAD, Budget
from packetlab.endpoint.checks import (
    NDATA_DELIVER,
    NDATA_DROP,
    NDATA_DROP_COUNTED,
    OpenGate,
    RequestGate,
)
from packetlab.endpoint.config import EndpointConfig
from packetlab.endpoint.memory import VirtualMemory, system_image
from packetlab.endpoint.outbox import Outbox
from packetlab.endpoint.rawpkt import RawPacketDenied, local_address_for, raw_destination
from packetlab.endpoint.sockets import (
    CaptureRejected,
    ConnectFailed,
    DropEpisode,
    Network,
    OpenError,
    PendingSend,
    RawSocketIO,
    Skt,
)
from packetlab.wire import codec
from packetlab.wire.constants import (
    CDATA_HINT_FILTER,
    CDATA_HINT_MONITOR,
    MAX_SKT_CNT,
    MREAD_MAX,
    NDATA_MAX,
    NctlCommand,
    NotifMask,
    NsendErr,
    NstatCode,
    Proto,
    SocketState,
    Status,
)
from packetlab.wire.framer import Item, Malformed, Unknown
from packetlab.wire.messages import (
    Cdata,
    End,
    Mread,
    Mwrite,
    Nblock,
    Ncap,
    Nclose,
    Nctl,
    Nopen,
    Nsend,
    Start,
    Yield,
)

__all__ = ["Phase", "Scheduler", "Session", "SessionEnd"]

TCP = int(Proto.TCP)
UDP = int(Proto.UDP)
RAW = int(Proto.RAW)
U32_MAX = 0xFFFFFFFF
_NTAG = int(NotifMask.NTAG)
_NSTAT = int(NotifMask.NSTAT)
_NDATA = int(NotifMask.NDATA)
_NDROP = int(NotifMask.NDROP)
_NBLOCK = int(NotifMask.NBLOCK)
_OK = frames.RESULT_SUCCESS
_R = {s: frames.result(int(s)) for s in Status}
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_HINTS = (CDATA_HINT_FILTER, CDATA_HINT_MONITOR)

# nstat code sent when a TCP socket enters a failed state (§3.2; REFUSED is the peer's RST).
_NSTAT_FOR_STATE = {
    SocketState.REFUSED: NstatCode.RESET,
    SocketState.RESET: NstatCode.RESET,
    SocketState.TIMEDOUT: NstatCode.TIMEOUT,
    SocketState.UNREACH: NstatCode.UNKNOWN,
    SocketState.UNKFAULT: NstatCode.UNKNOWN,
}
_NSENDERR_FOR_STATE = {
    SocketState.REFUSED: NsendErr.RESET,
    SocketState.RESET: NsendErr.RESET,
    SocketState.TIMEDOUT: NsendErr.TIMEDOUT,
    SocketState.UNREACH: NsendErr.UNREACH,
    SocketState.UNKFAULT: NsendErr.UNKFAULT,
}
_NSENDERR_FOR_ERRNO = {
    errno.ENETUNREACH: NsendErr.UNREACH,
    errno.EHOSTUNREACH: NsendErr.UNREACH,
    errno.EHOSTDOWN: NsendErr.UNREACH,
    errno.ENETDOWN: NsendErr.UNREACH,
    errno.ECONNREFUSED: NsendErr.UNREACH,
    errno.EMSGSIZE: NsendErr.BADPKT,
    errno.EINVAL: NsendErr.BADPKT,
    errno.EACCES: NsendErr.BADPKT,
    errno.EAFNOSUPPORT: NsendErr.BADPKT,
    errno.EDESTADDRREQ: NsendErr.BADPKT,
    errno.ENOBUFS: NsendErr.NORES,
    errno.ENOMEM: NsendErr.NORES,
    errno.ECONNRESET: NsendErr.RESET,
    errno.EPIPE: NsendErr.RESET,
    errno.ETIMEDOUT: NsendErr.TIMEDOUT,
}


class Scheduler(Protocol):
    """What the session needs of `packetlab.endpoint.sender.PreciseScheduler`."""

    def schedule(
        self,
        when_ns: int,
        action: Callable[[], object],
        on_done: Callable[[Any], object] | None = None,
        key: Hashable = None,
    ) -> Any: ...

    def cancel_key(self, key: Hashable) -> list[Any]: ...

    def observe_send_latency(self, ns: int) -> None: ...


class Phase(enum.Enum):
    SETUP = "setup"
    IDLE = "idle"
    ENDED = "ended"


@dataclass(frozen=True)
class SessionEnd:
    """Why the session is over. `rhint` is the yield resume hint (ns), if any."""

    reason: str
    rhint: int | None = None
    clean: bool = True  # False: a protocol error or timeout, not the controller's choice


class Session:
    log = Logger()

    def __init__(
        self,
        config: EndpointConfig,
        network: Network,
        scheduler: Scheduler,
        clock: Callable[[], int],
        gate: RequestGate | None = None,
        image: bytearray | None = None,
    ) -> None:
        self.config = config
        self.network = network
        self.scheduler = scheduler
        self.clock = clock
        self.gate: RequestGate = gate if gate is not None else OpenGate()
        self.budget = Budget(config.buf_max)
        self.sockets: list[Skt | None] = [None] * MAX_SKT_CNT
        self.outbox = Outbox(self._release)
        self.memory = VirtualMemory(
            image if image is not None else system_image(config),
            self.sockets,
            self.budget,
            clock,
            self._set_rbufsz,
            self._set_notifmask,
        )
        self.phase = Phase.SETUP
        self.ended: SessionEnd | None = None
        self._blocked: set[Skt] = set()
        self._families = {4: bool(config.ipv4), 6: bool(config.ipv6)}
        self._protos = {TCP: "tcp" in config.transproto_sup, UDP: "udp" in config.transproto_sup}
        self._protos[RAW] = "raw" in config.transproto_sup
        # Exported addresses (§2.2 IP4LS/IP6LS): raw nopen and raw nsend sources (§3.1, §3.3).
        self._exported = {
            4: [i.ip.packed for i in config.ipv4],
            6: [a.packed for a in config.ipv6],
        }
        self._setup: dict[type, Callable[[Any], None]] = {
            Cdata: self._cdata,
            Start: self._start,
            End: self._end_request,
        }
        self._idle: dict[type, Callable[[Any], None]] = {
            Mread: self._mread,
            Mwrite: self._mwrite,
            Nopen: self._nopen,
            Nclose: self._nclose,
            Nsend: self._nsend,
            Ncap: self._ncap,
            Nctl: self._nctl,
            Yield: self._yield,
            End: self._end_request,
        }
        self._handlers = self._setup
        self._on_fired = self._fired  # one bound method for every send, not one per send
        # reflex hook: private-use frames (0x90-0xFF) go here (packetlab.endpoint.reflexes)
        self.extension: Callable[[Unknown], None] | None = None

    # ------------------------------------------------------------------ requests

    def handle(self, item: Item) -> None:
        """Answer one request (or unknown/malformed frame) with exactly one frame."""
        if self.ended is not None:
            return
        handler = self._handlers.get(type(item))
        if handler is not None:
            handler(item)
        elif type(item) is Malformed:
            assert isinstance(item, Malformed)
            self.log.warn("malformed request, ending the session: {error}", error=item.error)
            self.outbox.put(_R[Status.ECTLBADMSG])
            self._finish(SessionEnd(f"malformed request: {item.error}", clean=False))
        elif self.extension is not None and type(item) is Unknown:  # reflex hook
            self.extension(item)
        else:
            # Unknown types, requests not allowed in this phase, and messages that only
            # flow from the endpoint (§1.1: answer ECTLNOTSUP and carry on).
            self.outbox.put(_R[Status.ECTLNOTSUP])

    def _cdata(self, msg: Cdata) -> None:
        if msg.hint not in _HINTS and (self.extension is None or msg.hint != b"reflex"):
            self.outbox.put(_R[Status.ECRTBADHINT])
        else:  # matched against the chain's digests and loaded by the gate (§1.4.3, §8.1)
            self.outbox.put(_R[self.gate.program(msg.hint, msg.data)])

    def _start(self, msg: Start) -> None:
        error, extra = self.gate.start()
        if error is not None:
            self.outbox.put(codec.encode(error))
            self._finish(SessionEnd(f"start refused (errid 0x{error.errid:x})", clean=False))
            return
        self.phase = Phase.IDLE
        self._handlers = self._idle
        self.outbox.put(_OK)
        for frame in extra:
            self.outbox.put(frame)

    def _end_request(self, msg: End) -> None:
        # The reference answers `end` with ECTLNOTSUP; we end the session cleanly.
        self.outbox.put(_OK)
        self._finish(SessionEnd("end requested"))

    def _yield(self, msg: Yield) -> None:
        self.outbox.put(_OK)
        self._finish(SessionEnd("yield", rhint=msg.rhint))

    def _mread(self, msg: Mread) -> None:
        addr, length = msg.addr, msg.len
        if not 0 < length <= MREAD_MAX or addr + length > 1 << 32:
            self.outbox.put(_R[Status.EMEMBADADR])
            return
        self.outbox.put(frames.mdata(addr, self.memory.read(addr, length)))

    def _mwrite(self, msg: Mwrite) -> None:
        if msg.addr + len(msg.data) > 1 << 32:
            self.outbox.put(_R[Status.EMEMBADADR])
            return
        self.memory.write(msg.addr, msg.data)  # may flush held notifications first
        self.outbox.put(_OK)

    def _gate(self, msg: Any) -> bool:
        verdict = self.gate.check(msg)
        if verdict is None:
            return True
        self.outbox.put(codec.encode(verdict))
        return False

    def _answer(self, msg: Any, status: Status) -> None:
        self.outbox.put(_R[status])
        self.gate.done(msg, int(status))

    def _nopen(self, msg: Nopen) -> None:
        if not self._gate(msg):
            return
        if self.sockets[msg.sktid] is not None:
            return self._answer(msg, Status.ESKTINUSE)
        if not self._families.get(msg.family):
            return self._answer(msg, Status.ESKTNOPRFAM)
        if not self._protos.get(msg.proto):
            return self._answer(msg, Status.ESKTNOPROTO)
        alen = 4 if msg.family == 4 else 16
        if len(msg.laddr) != alen or (msg.raddr is not None and len(msg.raddr) != alen):
            return self._answer(msg, Status.ESKTNOADDR)
        skt = Skt(msg.sktid, msg.family, msg.proto, msg.rbufsz)
        failed: SocketState | None = None
        try:
            if msg.proto == UDP:
                skt.io = self.network.open_udp(skt, msg.laddr, msg.lport or 0, self)
                skt.state = SocketState.OPEN
            elif msg.proto == RAW:
                laddr = local_address_for(msg.laddr, self._exported[msg.family])
                if laddr is None:
                    return self._answer(msg, Status.ESKTNOADDR)
                skt.io = self.network.open_raw(skt, laddr, self)
                skt.state = SocketState.OPEN
            else:
                skt.io = self.network.open_tcp(
                    skt, msg.laddr, msg.lport or 0, msg.raddr, msg.rport, self
                )
        except OpenError as e:
            self.log.info("nopen {sktid} refused: {why}", sktid=msg.sktid, why=str(e))
            return self._answer(msg, e.status)
        except ConnectFailed as e:
            failed = e.state
        self.sockets[msg.sktid] = skt
        self._answer(msg, Status.SUCCESS)
        if failed is not None:
            self._fail(skt, failed)

    def _nclose(self, msg: Nclose) -> None:
        if not self._gate(msg):
            return
        skt = self.sockets[msg.sktid]
        if skt is None:
            return self._answer(msg, Status.ESKTNOTOPEN)
        self._free(skt)
        self._answer(msg, Status.SUCCESS)

    def _target(self, msg: Nsend | Ncap) -> Skt | None:
        """Gate the request, then find its socket: ESKTNOTOPEN when the socket is free,
        ESKTNOMATCH when the request's family/proto differ from the socket's (§1.3).
        None means the request has been answered."""
        if not self._gate(msg):
            return None
        skt = self.sockets[msg.sktid]
        if skt is None:
            self._answer(msg, Status.ESKTNOTOPEN)
            return None
        if msg.family != skt.family or msg.proto != skt.proto:
            self._answer(msg, Status.ESKTNOMATCH)
            return None
        return skt

    def _nsend(self, msg: Nsend) -> None:
        skt = self._target(msg)
        if skt is None:
            return
        io = skt.io
        if io is None or not skt.sends:
            return self._answer(msg, Status.ESKTNOTOPEN)
        cost = len(msg.data) + SEND_BUF_OVERHEAD
        budget = self.budget
        if budget.used + cost > budget.max:
            return self._answer(msg, Status.ESYSNOBUFS)
        dest: tuple[Any, ...] | None = None
        if skt.proto == UDP:
            raddr = msg.raddr
            if raddr is None or len(raddr) != skt.alen:
                return self._answer(msg, Status.ESKTNOADDR)
            dest = (socket.inet_ntop(_AF[skt.family], raddr), msg.rport or 0)
        elif skt.proto == RAW:
            try:
                dest = raw_destination(skt.family, msg.data, self._exported[skt.family])
            except RawPacketDenied as e:
                self.log.info("raw nsend on {sktid} denied: {why}", sktid=skt.sktid, why=str(e))
                return self._answer(msg, Status.ESKTPKTDENY)
        budget.used += cost
        pending = PendingSend(skt, msg.tag, msg.data, dest, cost, io)
        self.outbox.put(_OK)
        self.gate.done(msg, 0)
        skt.queued.add(pending)
        # The timed action is the socket's send alone (docs/sending.md): the scheduler reads
        # the clock around it, and bookkeeping waits for `_fired`. Every path that closes
        # `io` cancels the socket's queued sends first, so the send never runs late.
        pending.handle = self.scheduler.schedule(msg.time, pending, self._on_fired, skt)

    def _ncap(self, msg: Ncap) -> None:
        skt = self._target(msg)
        if skt is None:
            return
        if skt.proto != RAW:
            # Capture is for raw sockets only (§3.4; the reference crashes): as nctl on UDP.
            return self._answer(msg, Status.ECTLNOTSUP)
        if skt.io is None or skt.state != SocketState.OPEN:
            return self._answer(msg, Status.ESKTNOTOPEN)
        try:
            cast(RawSocketIO, skt.io).capture(msg.filter, msg.endtime)
        except CaptureRejected as e:
            self.log.info("ncap on {sktid} refused: {why}", sktid=skt.sktid, why=str(e))
            return self._answer(msg, e.status)
        self._answer(msg, Status.SUCCESS)

    def _nctl(self, msg: Nctl) -> None:
        skt = self.sockets[msg.sktid]
        if skt is None:
            return self.outbox.put(_R[Status.ESKTNOTOPEN])
        if skt.proto != TCP:
            return self.outbox.put(_R[Status.ECTLNOTSUP])
        if msg.family != skt.family or msg.proto != skt.proto:
            return self.outbox.put(_R[Status.ESKTNOMATCH])
        if msg.command != NctlCommand.TCP_FIN:
            return self.outbox.put(_R[Status.ECTLBADMSG])
        if skt.state < SocketState.OPENING:
            return self.outbox.put(_R[Status.ESKTNOTOPEN])
        self.outbox.put(_OK)
        if skt.fin_time is None and skt.state in (
            SocketState.OPENING,
            SocketState.OPEN,
            SocketState.EOF,
        ):
            skt.fin_time = msg.time
            skt.fin_handle = self.scheduler.schedule(
                msg.time, partial(self._fire_fin, skt), None, skt
            )

    # --------------------------------------------------------------- sending

    def _fired(self, send: Any) -> None:
        """The scheduler's callback after the send, out of the timing-critical path (held
        back during dense trains; `cancel_key` delivers it before dropping the rest)."""
        pending: PendingSend = send.action  # the action that ran (see ScheduledSend)
        pending.skt.queued.discard(pending)
        if send.error is not None:
            if not isinstance(send.error, OSError):
                self.log.error(
                    "send on socket {sktid} failed: {e!r}", sktid=pending.skt.sktid, e=send.error
                )
            err = getattr(send.error, "errno", None) or errno.EIO
            self._drop_send(pending, _NSENDERR_FOR_ERRNO.get(err, NsendErr.UNKFAULT))
        elif send.result is True:
            time = send.sent_ns
            skt = pending.skt
            if pending.tag and skt.proto != TCP and skt.io is not None:
                # The kernel's TX timestamp is closer to the wire (docs/sending.md); it also
                # teaches the scheduler how long a send takes to reach the device (lead).
                tx_time = getattr(skt.io, "tx_time", None)  # UDP and raw sockets
                stamp = tx_time(pending, send.sent_before_ns) if tx_time is not None else None
                if stamp is not None:
                    time = stamp
                    self.scheduler.observe_send_latency(stamp - send.sent_before_ns)
            self.send_done(pending, time, 0)
        # False: queued in the socket, which reports through send_done later.

    def _fire_fin(self, skt: Skt) -> None:
        # Sends due before the FIN have run (the scheduler orders by time, then arrival);
        # everything still queued is dropped (§2.3).
        skt.fin_handle = None
        skt.fin_fired = True
        self._drop_queued(skt, NsendErr.WFIN)
        if skt.io is not None:
            skt.io.shutdown_write()

    def _drop_queued(self, skt: Skt, err: NsendErr | None) -> None:
        """Cancel every scheduled send of `skt` (waiting callbacks of sends that already
        ran are called first); answer each with ntag(EPKTNOTSENT), or silently if `err`
        is None (nclose)."""
        self.scheduler.cancel_key(skt)
        if skt.fin_handle is not None:
            skt.fin_handle = None
        if not skt.queued:
            return
        dropped = sorted(skt.queued, key=_send_order)
        skt.queued.clear()
        for p in dropped:
            if err is None:
                self.budget.used -= p.cost
            else:
                self._drop_send(p, err)

    def _drop_send(self, pending: PendingSend, err: NsendErr) -> None:
        """A send that will never go out: ntag(EPKTNOTSENT), NSENDERR (§3.2, §3.3)."""
        self._unspend(pending.cost)
        skt = pending.skt
        skt.nsenderr = int(err)
        skt.nsenderrtag = pending.tag
        if pending.tag:
            frame = frames.ntag(skt.sktid, pending.tag, self.clock(), Status.EPKTNOTSENT)
            self._notify(skt, _NTAG, frame)

    def _unspend(self, cost: int) -> None:
        self.budget.used -= cost
        if self._blocked:
            self._unblock()

    def send_done(self, pending: PendingSend, time: int, err: int) -> None:
        """The I/O edge sent `pending` (TCP: its last byte) at `time`, or failed with `err`."""
        if err:
            self._drop_send(pending, _NSENDERR_FOR_ERRNO.get(err, NsendErr.UNKFAULT))
            return
        self.budget.used -= pending.cost
        if self._blocked:
            self._unblock()
        if pending.tag:
            skt = pending.skt
            frame = frames.ntag(skt.sktid, pending.tag, time)
            if skt.notifmask & _NTAG:
                skt.held.append((_NTAG, frame, 0))
            else:
                self.outbox.put(frame)

    # ------------------------------------------------------------ notifications

    def _notify(self, skt: Skt, bit: int, frame: bytes, cost: int = 0) -> None:
        if skt.notifmask & bit:
            skt.held.append((bit, frame, cost))
        else:
            self.outbox.put(frame, skt, cost)

    def _set_notifmask(self, skt: Skt, mask: int) -> None:
        cleared = skt.notifmask & ~mask
        skt.notifmask = mask
        if cleared and skt.held:
            # Release the held notifications of every cleared type, in order (§2.4;
            # NBLOCK too, unlike the reference).
            keep = [h for h in skt.held if not h[0] & cleared]
            out = [h for h in skt.held if h[0] & cleared]
            skt.held.clear()
            skt.held.extend(keep)
            for _, frame, cost in out:
                self.outbox.put(frame, skt, cost)

    def _set_rbufsz(self, skt: Skt, rbufsz: int) -> None:
        skt.rbufsz = rbufsz
        if skt.read_blocked:
            self._unblock()

    # --------------------------------------------------------------- receiving

    def _release(self, skt: Skt, cost: int) -> None:
        skt.rbufused -= cost
        self.budget.used -= cost
        if self._blocked:
            self._unblock()

    def recv_room(self, skt: Skt) -> int:
        budget = self.budget
        return min(skt.rbufsz - skt.rbufused, budget.max - budget.used) - RECV_BUF_OVERHEAD

    def tcp_blocked(self, skt: Skt) -> None:
        skt.read_blocked = True
        self._blocked.add(skt)

    def _unblock(self) -> None:
        for skt in list(self._blocked):
            # Wait for a useful amount of room, not a few bytes (no trickle of tiny ndata).
            want = min(NDATA_MAX, max(1, skt.rbufsz // 4 - RECV_BUF_OVERHEAD))
            if self.recv_room(skt) >= want and skt.io is not None:
                self._blocked.discard(skt)
                skt.read_blocked = False
                skt.io.resume_reading()

    def tcp_received(self, skt: Skt, data: bytes, time: int) -> None:
        # The reader asked recv_room() first; TCP is never truncated (flow control instead).
        if self.gate.checks_ndata and not self._ndata_allowed(skt, data, time, None, None):
            return
        frame = frames.ndata_tcp(skt.sktid, skt.family, skt.proto, time, data)
        self._deliver(skt, frame, len(data) + RECV_BUF_OVERHEAD)

    def udp_received(self, skt: Skt, data: bytes, time: int, raddr: bytes, rport: int) -> None:
        self._datagram(skt, data, time, RECV_BUF_OVERHEAD + skt.alen + 2, raddr, rport)

    def raw_received(self, skt: Skt, data: bytes, time: int) -> None:
        """A captured packet: as a UDP datagram without the address (§3.4, §3.5)."""
        self._datagram(skt, data, time, RECV_BUF_OVERHEAD, None, None)

    def _datagram(
        self,
        skt: Skt,
        data: bytes,
        time: int,
        extra: int,
        raddr: bytes | None,
        rport: int | None,
    ) -> None:
        """One UDP datagram (raddr set) or captured packet (raddr None): truncate to the
        free budget or drop when there is none, counting the loss (§3.5), then deliver."""
        budget = self.budget
        room = min(skt.rbufsz - skt.rbufused, budget.max - budget.used) - extra
        n = len(data)
        if n > room:
            if room <= 0:
                self._count_drop(skt, time, n)
                return
            self._count_drop(skt, time, n - room)
            data = data[:room]
        if self.gate.checks_ndata and not self._ndata_allowed(skt, data, time, raddr, rport):
            return
        if skt.episode is not None:
            self._end_episode(skt)
        if raddr is None or rport is None:  # a captured packet: no address part
            frame = frames.ndata_tcp(skt.sktid, skt.family, skt.proto, time, data)
        else:
            frame = frames.ndata_udp(skt.sktid, skt.family, skt.proto, time, raddr, rport, data)
        self._deliver(skt, frame, len(data) + extra)

    def _deliver(self, skt: Skt, frame: bytes, cost: int) -> None:
        """Charge an ndata's budget and queue it, or hold it while NDATA is masked (§2.4)."""
        skt.rbufused += cost
        self.budget.used += cost
        if skt.notifmask & _NDATA:
            skt.held.append((_NDATA, frame, cost))
        else:
            self.outbox.put(frame, skt, cost)

    def _ndata_allowed(
        self, skt: Skt, data: bytes, time: int, raddr: bytes | None, rport: int | None
    ) -> bool:
        verdict = self.gate.check_ndata(skt, data, time, raddr, rport)
        if verdict == NDATA_DELIVER:
            return True
        if verdict == NDATA_DROP_COUNTED:  # a receive quota ran out (§4.5)
            self._count_drop(skt, time, len(data))
        elif verdict != NDATA_DROP:
            # The monitor's reason (§8.3).
            frame = codec.encode(_nblock(skt, verdict & 0xFFFF, time))
            self._notify(skt, _NBLOCK, frame)
        return False

    def _count_drop(self, skt: Skt, time: int, lost: int) -> None:
        skt.drop_pkts += 1
        skt.drop_bytes += lost
        ep = skt.episode
        if ep is None:
            ep = skt.episode = DropEpisode(time)
        ep.last = time
        ep.units += 1
        ep.bytes += lost

    def _end_episode(self, skt: Skt) -> None:
        """One ndrop per episode, sent when a datagram is accepted again (beyond 1.1.0)."""
        ep = skt.episode
        assert ep is not None
        skt.episode = None
        frame = frames.ndrop(
            skt.sktid,
            skt.family,
            skt.proto,
            ep.first,
            ep.last,
            min(ep.units, U32_MAX),
            min(ep.bytes, U32_MAX),
        )
        self._notify(skt, _NDROP, frame)

    # -------------------------------------------------------------- TCP events

    def tcp_established(self, skt: Skt, laddr: bytes, lport: int, raddr: bytes, rport: int) -> None:
        skt.state = SocketState.OPEN
        skt.laddr, skt.lport, skt.raddr, skt.rport = laddr, lport, raddr, rport
        frame = frames.nstat_established(
            skt.sktid, skt.family, skt.proto, self.clock(), raddr, rport
        )
        self._notify(skt, _NSTAT, frame)

    def tcp_connect_failed(self, skt: Skt, state: SocketState) -> None:
        # The reference only changes STAT; we also send the nstat (§3.1).
        self._fail(skt, state)

    def tcp_error(self, skt: Skt, state: SocketState) -> None:
        self._fail(skt, state)

    def _fail(self, skt: Skt, state: SocketState) -> None:
        skt.state = state
        err = _NSENDERR_FOR_STATE.get(state, NsendErr.UNKFAULT)
        unsent = skt.io.close() if skt.io is not None else []
        skt.io = None
        self._blocked.discard(skt)
        for p in unsent:
            self._drop_send(p, err)
        self._drop_queued(skt, err)
        code = _NSTAT_FOR_STATE.get(state, NstatCode.UNKNOWN)
        self._notify(
            skt, _NSTAT, frames.nstat_code(skt.sktid, skt.family, skt.proto, self.clock(), code)
        )

    def tcp_eof(self, skt: Skt) -> None:
        skt.state = SocketState.END if skt.state == SocketState.WFIN else SocketState.EOF
        frame = frames.nstat_code(
            skt.sktid, skt.family, skt.proto, self.clock(), NstatCode.PEERCLOSED
        )
        self._notify(skt, _NSTAT, frame)

    def tcp_fin_sent(self, skt: Skt) -> None:
        if skt.state == SocketState.EOF:
            skt.state = SocketState.END
        elif skt.state in (SocketState.OPEN, SocketState.OPENING):
            skt.state = SocketState.WFIN

    # ------------------------------------------------------------------ ending

    def _free(self, skt: Skt) -> None:
        """nclose or session end: queued sends and held notifications go silently (§3.1)."""
        # First the callbacks of sends that already went out (their ntags come before the
        # nclose result), then the rest is cancelled without a word.
        self._drop_queued(skt, None)
        if self.sockets[skt.sktid] is skt:
            self.sockets[skt.sktid] = None
        unsent = skt.io.close() if skt.io is not None else []
        skt.io = None
        held = sum(cost for _, _, cost in skt.held)
        skt.held.clear()
        skt.rbufused -= held
        self.budget.used -= sum(p.cost for p in unsent) + held
        self._blocked.discard(skt)
        skt.state = SocketState.FREE
        if self._blocked:
            self._unblock()

    def _finish(self, end: SessionEnd) -> None:
        """Stop taking requests and free every socket; the outbox still drains."""
        if self.ended is None:
            self.ended = end
            self.phase = Phase.ENDED
            self._handlers = {}
            self._free_all()

    def _free_all(self) -> None:
        for skt in self.sockets:
            if skt is not None:
                self._free(skt)

    def expire_setup(self) -> bool:
        """The setup window (10 s) passed; True if that ends the session."""
        if self.phase is Phase.SETUP:
            self._finish(SessionEnd("no start within the setup window", clean=False))
            return True
        return False

    def close(self) -> None:
        """The controller connection is gone: free everything, drop what was not sent."""
        self._finish(SessionEnd("controller closed the connection"))
        self._free_all()
        self.outbox.clear()
        self.gate.close()

    @property
    def open_sockets(self) -> int:
        return sum(1 for s in self.sockets if s is not None)


def _send_order(p: PendingSend) -> tuple[int, int]:
    h = p.handle
    return (h.when_ns, h.seq) if h is not None else (0, 0)


def _nblock(skt: Skt, monerrid: int, time: int) -> Nblock:
    return Nblock(sktid=skt.sktid, family=skt.family, proto=skt.proto, monerrid=monerrid, time=time)
