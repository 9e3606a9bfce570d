"""One controller session of the endpoint, sans-IO (PROTOCOL.md §1.4, §2, §3): dispatch,
answers and the sockets' lives.

`Session.handle` takes each decoded item from the framer and answers it with exactly one
frame in the outbox, in request order; notifications share the same FIFO. Which requests
are answered depends on the phase, SETUP -> IDLE -> ENDED, declared once in `_REQUESTS`
and `_TRANSITIONS` below.

The session is made of three parts: this dispatcher (requests, answers, socket open,
close and TCP state events), the send path (`packetlab.endpoint.sendpath`: scheduling,
ntag, send failures) and the receive path (`packetlab.endpoint.recvpath`: ndata, budgets,
drop episodes, masks). Sockets are made through a `Network` and report back through the
`SocketEvents` methods, which the session forwards to the path they belong to.

What the session does not do: read or write the controller connection (the protocol
does), keep timers other than the scheduler's (the protocol runs the setup timeout).
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab.endpoint import frames
from packetlab.endpoint.budget import SEND_BUF_OVERHEAD, Budget
from packetlab.endpoint.checks import NOPEN_LIMITS, OpenGate, RequestGate, socket_error
from packetlab.endpoint.config import EndpointConfig
from packetlab.endpoint.memory import SystemImage, VirtualMemory, system_image
from packetlab.endpoint.rawpkt import RawPacketDenied, local_address_for, raw_destination
from packetlab.endpoint.recvpath import ReceivePath
from packetlab.endpoint.sendpath import Scheduler, SendPath
from packetlab.endpoint.sockets import (
    CaptureRejected,
    ConnectFailed,
    Network,
    OpenError,
    PendingSend,
    RawSocketIO,
    Skt,
)
from packetlab.logbudget import LogBudget
from packetlab.wire import codec
from packetlab.wire.constants import (
    CDATA_HINT_FILTER,
    CDATA_HINT_MONITOR,
    MAX_SKT_CNT,
    MREAD_MAX,
    MsgType,
    NctlCommand,
    NotifMask,
    NstatCode,
    Proto,
    SocketState,
    Status,
    status_name,
)
from packetlab.wire.errors import MalformedMessage
from packetlab.wire.framer import Item, Malformed, Unknown
from packetlab.wire.messages import (
    Cdata,
    Mread,
    Mwrite,
    Ncap,
    Nclose,
    Nctl,
    Nopen,
    Nsend,
    Start,
    Yield,
)

__all__ = ["Phase", "Scheduler", "Session", "SessionEnd", "is_odd_nopen", "long_nctl"]

TCP = int(Proto.TCP)
UDP = int(Proto.UDP)
RAW = int(Proto.RAW)
_NSTAT = int(NotifMask.NSTAT)
_PKTDENY = int(Status.ESKTPKTDENY)
_NOPEN_TYPE = int(MsgType.NOPEN)
_NCTL_TYPE = int(MsgType.NCTL)
_NCTL_LEN = 12  # sktid family proto time:u64 command
_UNCHECKED = object()  # `_target`: the gate has not been asked yet
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


def is_odd_nopen(item: Malformed) -> bool:
    """A malformed nopen the reference's decoder takes: 7 or more bytes, family 4 or 6,
    protocol raw, TCP or UDP; only its length fits none of the forms (§1.2, §9.3)."""
    body = item.body
    return (
        item.msgtype == _NOPEN_TYPE
        and len(body) >= 7
        and body[1] in (4, 6)
        and body[2] in (RAW, TCP, UDP)
    )


def long_nctl(item: Malformed) -> Nctl | None:
    """An nctl of more than 12 bytes as the reference's decoder reads it: it checks
    len >= 11 and reads the command at byte 11 (§1.2 [QUIRK]), so the bytes after the
    command are ignored. None if the first 12 bytes are not a good nctl either (a proto
    other than TCP stays malformed). The wire decoder keeps calling it malformed (one
    message, one encoding: docs/wire.md)."""
    body = item.body
    if item.msgtype != _NCTL_TYPE or len(body) <= _NCTL_LEN:
        return None
    try:
        msg = codec.decode_body(_NCTL_TYPE, body[:_NCTL_LEN])
    except MalformedMessage:
        return None
    return msg if isinstance(msg, Nctl) else None


class Phase(enum.Enum):
    SETUP = "setup"
    IDLE = "idle"
    ENDED = "ended"


# The session's phases (§1.4), in one place: the requests each phase answers (by handler
# name; anything else is ECTLNOTSUP, `end` included: the reference does not handle it,
# §1.2) and the events that move it on.
_REQUESTS: dict[Phase, dict[type, str]] = {
    Phase.SETUP: {Cdata: "_cdata", Start: "_start"},
    Phase.IDLE: {
        Mread: "_mread",
        Mwrite: "_mwrite",
        Nopen: "_nopen",
        Nclose: "_nclose",
        Nsend: "_nsend",
        Ncap: "_ncap",
        Nctl: "_nctl",
        Yield: "_yield",
    },
    Phase.ENDED: {},
}
_TRANSITIONS: dict[tuple[Phase, str], Phase] = {
    (Phase.SETUP, "started"): Phase.IDLE,
    (Phase.SETUP, "ended"): Phase.ENDED,
    (Phase.IDLE, "ended"): Phase.ENDED,
}


@dataclass(frozen=True)
class SessionEnd:
    """Why the session is over. `rhint` is the yield resume hint (ns), if any."""

    reason: str
    rhint: int | None = None
    clean: bool = True  # False: a protocol error or timeout, not the controller's choice
    #: The status the session answered before it ended (ECTLBADMSG), for the log line.
    answered: str | None = None
    #: The type of the request that ended it (a malformed one's), for the log's fields.
    msgtype: int | None = None


class Session:
    log = Logger()

    def __init__(
        self,
        config: EndpointConfig,
        network: Network,
        scheduler: Scheduler,
        clock: Callable[[], int],
        gate: RequestGate | None = None,
        image: SystemImage | None = None,
    ) -> None:
        self.config = config
        self.network = network
        self.scheduler = scheduler
        self.clock = clock
        self.gate: RequestGate = gate if gate is not None else OpenGate()
        self.budget = Budget(config.buf_max)
        # The last UDP destination: (raw address, port) and its sendto form. A train
        # sends to one address; inet_ntop per nsend cost ~0.35 µs.
        self._dest_key: tuple[bytes, int] | None = None
        self._dest: tuple[str, int] = ("", 0)
        self.sockets: list[Skt | None] = [None] * MAX_SKT_CNT
        self.receiving = receive = ReceivePath(self.budget, self.gate)
        self.sending = send = SendPath(scheduler, clock, receive)
        self.outbox = receive.outbox
        self.memory = VirtualMemory(
            image if image is not None else system_image(config),
            self.sockets,
            self.budget,
            clock,
            receive.set_rbufsz,
            receive.set_notifmask,
            getattr(network, "tcp_info", None),  # SKT_TCPINFO, if the network samples it
        )
        # SocketEvents: what sockets report goes straight to the path it belongs to.
        self.recv_room = receive.recv_room
        self.tcp_blocked = receive.tcp_blocked
        self.tcp_received = receive.tcp_received
        self.udp_received = receive.udp_received
        self.udp_dropped = receive.kernel_dropped
        self.raw_received = receive.raw_received
        self.raw_dropped = receive.kernel_dropped
        self.send_done = send.send_done
        self.phase = Phase.SETUP
        self.ended: SessionEnd | None = None
        #: Called once when the session is closed (after everything it held is freed).
        self.close_hooks: list[Callable[[], None]] = []
        self._families = {4: bool(config.ipv4), 6: bool(config.ipv6)}
        self._protos = {TCP: "tcp" in config.transproto_sup, UDP: "udp" in config.transproto_sup}
        self._protos[RAW] = "raw" in config.transproto_sup
        # Exported addresses (§2.2 IP4LS/IP6LS): raw nopen and raw nsend sources (§3.1, §3.3).
        self._exported = {
            4: [i.ip.packed for i in config.ipv4],
            6: [a.packed for a in config.ipv6],
        }
        self._tables = {
            phase: {kind: getattr(self, name) for kind, name in table.items()}
            for phase, table in _REQUESTS.items()
        }
        self._handlers = self._tables[Phase.SETUP]
        # reflex hook: private-use frames (0x90-0xFF) go here (packetlab.endpoint.reflexes)
        self.extension: Callable[[Unknown], None] | None = None
        #: A cdata's program compiling in a worker thread: its driver (the protocol) hands
        #: no request to `handle` until it fires, and `on_ready` is called then.
        self.waiting: Deferred[Any] | None = None  # or a rattach's module (`wait_for`)
        self.on_ready: Callable[[], None] | None = None
        self._held: list[Item] = []
        # Refused requests a controller can send by the million, one log line each (an
        # ncap filter rejected, an nopen that cannot bind, a raw send denied): at most 20
        # lines a minute, then a count (~190 bytes of log per 17-byte request, and twistd
        # keeps every rotated log file).
        self.refusal_log = LogBudget(lambda: clock() / 1e9)

    def _refused(self, text: str, **kw: object) -> None:
        note = self.refusal_log.allow()
        if note is not None:
            self.log.info(text + "{note}", note=note, **kw)

    def _move(self, event: str) -> None:
        """Take the phase transition `event` (a KeyError is a bug: see _TRANSITIONS)."""
        self.phase = _TRANSITIONS[(self.phase, event)]
        self._handlers = self._tables[self.phase]

    # ------------------------------------------------------------------ requests

    def handle(self, item: Item) -> None:
        """Answer one request (or unknown/malformed frame) with exactly one frame."""
        if self.ended is not None:
            return
        if self.waiting is not None:  # after the cdata's answer (drivers wait for on_ready)
            self._held.append(item)
            return
        handler = self._handlers.get(type(item))
        if handler is not None:
            handler(item)
        elif type(item) is Malformed:
            assert isinstance(item, Malformed)
            if is_odd_nopen(item):
                self._odd_nopen(item)
                return
            nctl = long_nctl(item)
            if nctl is not None:  # answered as the nctl of its first 12 bytes
                self.handle(nctl)
                return
            # Logged once, by the protocol's `session over` line (with the controller and
            # the answer): a line here and `session ending` said the reason 3 times in 5
            # lines (fuzz32: 1,005 such sessions, 6,862 lines, 985 KB).
            self.outbox.put(_R[Status.ECTLBADMSG])
            end = SessionEnd(f"malformed request: {item.error}", clean=False,
                             answered="ECTLBADMSG", msgtype=item.msgtype)  # fmt: skip
            self._finish(end)
        elif self.extension is not None and type(item) is Unknown:  # reflex hook
            self.extension(item)
        else:
            # Unknown types, requests not allowed in this phase, and messages that only
            # flow from the endpoint (§1.1: answer ECTLNOTSUP and carry on).
            self.outbox.put(_R[Status.ECTLNOTSUP])

    def _odd_nopen(self, item: Malformed) -> None:
        """An nopen of 7 or more bytes, good family and protocol, whose length fits none
        of its forms: the reference decodes it (§1.2: len >= 7; §9.3: "the TCP nopen
        decoder accepts lengths it does not parse") and answers a bad address or port
        length ESKTNOADDR (§1.3), after the socket checks; the session goes on. Outside
        IDLE it is an nopen: ECTLNOTSUP. No monitor sees it (it has no fields to pass)."""
        body = item.body
        if Nopen not in self._tables[self.phase]:
            self.outbox.put(_R[Status.ECTLNOTSUP])
            return
        sktid, family, proto = body[0], body[1], body[2]
        status = Status.ESKTNOADDR
        if self.sockets[sktid] is not None:
            status = Status.ESKTINUSE
        elif not self._families.get(family):
            status = Status.ESKTNOPRFAM
        elif not self._protos.get(proto):
            status = Status.ESKTNOPROTO
        self._refused(
            "nopen {sktid} refused ({status}): {error}",
            sktid=sktid,
            status=status.name,
            error=item.error,
        )
        self.outbox.put(_R[status])

    def _cdata(self, msg: Cdata) -> None:
        if msg.hint not in _HINTS and (self.extension is None or msg.hint != b"reflex"):
            self.outbox.put(_R[Status.ECRTBADHINT])
            return
        # Matched against the chain's digests and loaded by the gate (§1.4.3, §8.1); a
        # module compiling in a worker thread is answered when it is done, and no later
        # request is handled before (the driver waits for `on_ready`).
        status = self.gate.program(msg.hint, msg.data)
        if not isinstance(status, Deferred):
            self.outbox.put(_R[status])
            return
        self.wait_for(status)

    def wait_for(self, pending: Deferred[Any]) -> None:
        """Handle no request until `pending` fires (a module compiling in a worker
        thread): then answer its `Status` (None: the request was answered already) and
        handle the requests held meanwhile. Cancelled if the session closes first."""
        self.waiting = pending
        pending.addCallbacks(self._programmed, self._program_failed)

    def _programmed(self, status: Status | None) -> None:
        self.waiting = None
        if self.ended is None and status is not None:
            self.outbox.put(_R[status])
        held, self._held = self._held, []
        for i, item in enumerate(held):
            self.handle(item)
            if self.waiting is not None:  # another cdata compiling: the rest wait again
                self._held[:0] = held[i + 1 :]
                return
        if self.on_ready is not None:
            self.on_ready()

    def _program_failed(self, failure: Failure) -> None:
        self.waiting = None
        if failure.check(CancelledError):  # the session ended first
            self._held = []
            return
        self.log.failure("loading a cdata program failed", failure)
        self._programmed(Status.ECRTBADHDAT)

    def _start(self, msg: Start) -> None:
        error, extra = self.gate.start()
        if error is not None:
            self.outbox.put(codec.encode(error))
            end = SessionEnd(f"start refused (errid 0x{error.errid:x})", clean=False,
                             answered=status_name(error.errid), msgtype=Start.TYPE)  # fmt: skip
            self._finish(end)
            return
        self._move("started")
        self.outbox.put(_OK)
        for frame in extra:
            self.outbox.put(frame)

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

    def nopen_error(self, msg: Nopen) -> Status | None:
        """The socket checks of an nopen (§1.3), in order: the sktid in use, then family,
        protocol and address lengths. They come before a limit's ENORES/ESKTOPNDENY, as
        an nsend's socket errors come before ESKTPKTDENY (the monitors' result callbacks
        see the same order)."""
        if self.sockets[msg.sktid] is not None:
            return Status.ESKTINUSE
        if not self._families.get(msg.family):
            return Status.ESKTNOPRFAM
        if not self._protos.get(msg.proto):
            return Status.ESKTNOPROTO
        alen = 4 if msg.family == 4 else 16
        if len(msg.laddr) != alen or (msg.raddr is not None and len(msg.raddr) != alen):
            return Status.ESKTNOADDR
        return None

    def _nopen(self, msg: Nopen) -> None:
        verdict = self.gate.check(msg)
        if verdict is not None:
            # A monitor's rejection comes first (§8.5); a limit's only after the socket
            # checks (a refused nopen is charged to no limit: nothing to give back).
            err = self.nopen_error(msg) if verdict.errid in NOPEN_LIMITS else None
            self.outbox.put(codec.encode(verdict) if err is None else _R[err])
            return
        err = self.nopen_error(msg)
        if err is not None:
            return self._answer(msg, err)
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
            self._refused("nopen {sktid} refused: {why}", sktid=msg.sktid, why=str(e))
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

    def _target(self, msg: Nsend | Ncap, verdict: Any = _UNCHECKED) -> Skt | None:
        """Gate the request, then find its socket: ESKTNOTOPEN when the socket is free,
        ESKTNOMATCH when the request's family/proto differ from the socket's (§1.3).
        None means the request has been answered. `verdict`: the gate's, if already
        asked (`_nsend` asks it first)."""
        if verdict is _UNCHECKED:
            verdict = self.gate.check(msg)
        skt = self.sockets[msg.sktid]
        if verdict is not None:
            # A monitor's rejection comes first (§8.5); a limit's ESKTPKTDENY only after
            # the socket checks, which decide what a send is checked for (§3.3). (The
            # refused send was charged to no limit: nothing to give back.)
            err = socket_error(msg, skt) if verdict.errid == _PKTDENY else None
            self.outbox.put(codec.encode(verdict) if err is None else _R[err])
            return None
        if skt is None:
            self._answer(msg, Status.ESKTNOTOPEN)
            return None
        if msg.family != skt.family or msg.proto != skt.proto:
            self._answer(msg, Status.ESKTNOMATCH)
            return None
        return skt

    def _nsend(self, msg: Nsend) -> None:
        # `_target` inlined (the hot path of a link): the same checks in the same order.
        verdict = self.gate.check(msg)
        skt = self.sockets[msg.sktid]
        if verdict is not None or skt is None or msg.family != skt.family or msg.proto != skt.proto:
            self._target(msg, verdict)  # answers it
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
            key = (raddr, msg.rport or 0)
            if key != self._dest_key:  # the length check above fixes the family
                self._dest_key = key
                self._dest = (socket.inet_ntop(_AF[skt.family], raddr), key[1])
            dest = self._dest
        elif skt.proto == RAW:
            try:
                dest = raw_destination(skt.family, msg.data, self._exported[skt.family])
            except RawPacketDenied as e:
                self._refused("raw nsend on {sktid} denied: {why}", sktid=skt.sktid, why=str(e))
                return self._answer(msg, Status.ESKTPKTDENY)
        budget.used += cost
        self.outbox.put(_OK)
        self.gate.done(msg, 0)
        self.sending.submit(PendingSend(skt, msg.tag, msg.data, dest, cost, io), msg.time)

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
            self._refused(
                "ncap on {sktid} refused: {why}{detail}",
                sktid=skt.sktid,
                why=str(e),
                detail=e.detail,
            )
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
            self.sending.schedule_fin(skt, msg.time)

    # -------------------------------------------------------------- TCP events

    def tcp_established(self, skt: Skt, laddr: bytes, lport: int, raddr: bytes, rport: int) -> None:
        skt.state = SocketState.OPEN
        skt.laddr, skt.lport, skt.raddr, skt.rport = laddr, lport, raddr, rport
        frame = frames.nstat_established(
            skt.sktid, skt.family, skt.proto, self.clock(), raddr, rport
        )
        self.receiving.notify(skt, _NSTAT, frame)

    def tcp_connect_failed(self, skt: Skt, state: SocketState) -> None:
        # The reference only changes STAT; we also send the nstat (§3.1).
        self._fail(skt, state)

    def tcp_error(self, skt: Skt, state: SocketState) -> None:
        self._fail(skt, state)

    def _fail(self, skt: Skt, state: SocketState) -> None:
        skt.state = state
        unsent = skt.io.close() if skt.io is not None else []
        skt.io = None
        self.receiving.blocked.discard(skt)
        self.sending.fail(skt, state, unsent)
        code = _NSTAT_FOR_STATE.get(state, NstatCode.UNKNOWN)
        self.receiving.notify(
            skt, _NSTAT, frames.nstat_code(skt.sktid, skt.family, skt.proto, self.clock(), code)
        )

    def tcp_eof(self, skt: Skt) -> None:
        skt.state = SocketState.END if skt.state == SocketState.WFIN else SocketState.EOF
        frame = frames.nstat_code(
            skt.sktid, skt.family, skt.proto, self.clock(), NstatCode.PEERCLOSED
        )
        self.receiving.notify(skt, _NSTAT, frame)

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
        self.sending.drop_queued(skt, None)
        if self.sockets[skt.sktid] is skt:
            self.sockets[skt.sktid] = None
        unsent = skt.io.close() if skt.io is not None else []
        skt.io = None
        held = self.receiving.forget(skt)
        skt.state = SocketState.FREE
        self.receiving.unspend(sum(p.cost for p in unsent) + held)

    def _finish(self, end: SessionEnd) -> None:
        """Stop taking requests and free every socket; the outbox still drains."""
        if self.ended is None:
            self.ended = end
            self._move("ended")
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

    def input_ended(self, reason: str = "controller closed the connection") -> None:
        """The controller closed its sending side (EOF, §1.4 step 7), or the endpoint ends
        the session (`reason`: the experiment's end time): the session ends as at a close
        (sockets freed, queued sends dropped), but what is already in the outbox still
        goes out: a controller that half-closes reads its answers."""
        if self.waiting is not None:  # a cdata's program compiling: nobody asks any more
            self.waiting.cancel()
        self._finish(SessionEnd(reason))

    def close(self) -> None:
        """The controller connection is gone: free everything, drop what was not sent."""
        if self.waiting is not None:  # a cdata's program compiling: nobody needs it now
            self.waiting.cancel()
        self._finish(SessionEnd("controller closed the connection"))
        self._free_all()
        self.outbox.clear()
        self.gate.close()
        hooks, self.close_hooks = self.close_hooks, []
        for hook in hooks:
            hook()

    @property
    def open_sockets(self) -> int:
        return sum(1 for s in self.sockets if s is not None)
