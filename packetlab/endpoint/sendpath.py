"""The send path of a session, sans-IO (PROTOCOL.md §2.3, §3.2, §3.3): scheduling, ntag and
send failures.

An accepted nsend is charged to BufMax and scheduled as a `PendingSend` (the socket's send
alone is the timed action, docs/sending.md). Every send ends in `send_done`, the one
route to the ntag: the scheduler's callback reports sends the socket took at once
(with the kernel's TX timestamp when the socket has one), the socket itself reports
those it finished later (TCP's last byte, the UDP backlog) and those that failed.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any, Protocol

from twisted.logger import Logger

from packetlab.endpoint import frames
from packetlab.endpoint.budget import HELD_NTAG_COST
from packetlab.endpoint.recvpath import ReceivePath
from packetlab.endpoint.sockets import PendingSend, Skt
from packetlab.wire.constants import NotifMask, NsendErr, Proto, SocketState, Status

__all__ = ["NSENDERR_FOR_STATE", "Scheduler", "SendPath"]

TCP = int(Proto.TCP)
_NTAG = int(NotifMask.NTAG)
_EPKTNOTSENT = int(Status.EPKTNOTSENT)

# NSENDERR recorded when a TCP socket fails with sends queued (§3.2).
NSENDERR_FOR_STATE = {
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


class SendPath:
    """nsend to ntag; one per session."""

    log = Logger()

    def __init__(
        self, scheduler: Scheduler, clock: Callable[[], int], receive: ReceivePath
    ) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.receive = receive
        self.budget = receive.budget
        self._outbox = receive.outbox
        self._on_fired = self._fired  # one bound method for every send, not one per send

    def submit(self, pending: PendingSend, when: int) -> None:
        """Schedule an accepted nsend (its result is answered, its cost charged)."""
        skt = pending.skt
        skt.queued.add(pending)
        # The timed action is the socket's send alone (docs/sending.md): the scheduler reads
        # the clock around it, and bookkeeping waits for `_fired`. Every path that closes
        # `io` cancels the socket's queued sends first, so the send never runs late.
        pending.handle = self.scheduler.schedule(when, pending, self._on_fired, skt)

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
            self.send_done(pending, self.clock(), getattr(send.error, "errno", None) or errno.EIO)
        elif send.result is True:
            skt = pending.skt
            io = skt.io
            if pending.tag and skt.proto != TCP and io is not None:
                # The kernel's TX timestamp is closer to the wire (docs/sending.md); it also
                # teaches the scheduler how long a send takes to reach the device (lead).
                before = send.sent_before_ns
                stamp = io.tx_time(pending, before)
                if stamp is not None:
                    self.scheduler.observe_send_latency(stamp - before)
                    self.send_done(pending, stamp, 0)
                    return
            self.send_done(pending, send.sent_ns, 0)
        # False: queued in the socket, which reports through send_done later.

    def send_done(self, pending: PendingSend, time: int, err: int) -> None:
        """`pending` went out (TCP: its last byte reached the kernel) at `time`, or failed
        with errno `err`: the one route to its ntag."""
        if err:
            self.drop(pending, _NSENDERR_FOR_ERRNO.get(err, NsendErr.UNKFAULT))
            return
        if pending.tag:
            skt = pending.skt
            frame = frames.ntag(skt.sktid, pending.tag, time)
            if skt.notifmask & _NTAG:
                self._hold_ntag(pending, frame)
                return
            self._outbox.put(frame)
        self.receive.unspend(pending.cost)

    def _hold_ntag(self, pending: PendingSend, frame: bytes) -> None:
        """NTAG is masked: hold the ntag, and keep `HELD_NTAG_COST` of the send's charge
        for it until it is released (§2.4: held notifications keep buffer space). So a
        controller that masks ntags and keeps sending meets ESYSNOBUFS once they fill
        BufMax, instead of growing the endpoint's memory without bound. (The send's
        charge is payload + SEND_BUF_OVERHEAD, never less than what the ntag keeps.)"""
        keep = min(HELD_NTAG_COST, pending.cost)
        self.receive.unspend(pending.cost - keep)
        pending.skt.held.append((_NTAG, frame, keep))

    def drop(self, pending: PendingSend, err: NsendErr) -> None:
        """A send that will never go out: ntag(EPKTNOTSENT), NSENDERR (§3.2, §3.3)."""
        skt = pending.skt
        skt.nsenderr = int(err)
        skt.nsenderrtag = pending.tag
        if pending.tag:
            frame = frames.ntag_error(skt.sktid, pending.tag, self.clock(), _EPKTNOTSENT)
            if skt.notifmask & _NTAG:
                self._hold_ntag(pending, frame)
                return
            self._outbox.put(frame)
        self.receive.unspend(pending.cost)

    def drop_queued(self, skt: Skt, err: NsendErr | None) -> None:
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
                self.drop(p, err)

    def fail(self, skt: Skt, state: SocketState, unsent: list[PendingSend]) -> None:
        """The socket failed in `state`: every send it had or that waits is dropped."""
        err = NSENDERR_FOR_STATE.get(state, NsendErr.UNKFAULT)
        queued = skt.queued
        for p in unsent:
            # A send that failed inside its own kernel call is the stream's unsent one and
            # still the session's queued one (its callback comes after): dropped once.
            queued.discard(p)
            self.drop(p, err)
        self.drop_queued(skt, err)

    # -- TCP FIN (nctl, §2.3) ---------------------------------------------------------------

    def schedule_fin(self, skt: Skt, when: int) -> None:
        skt.fin_time = when
        skt.fin_handle = self.scheduler.schedule(when, partial(self._fire_fin, skt), None, skt)

    def _fire_fin(self, skt: Skt) -> None:
        # Sends due before the FIN have run (the scheduler orders by time, then arrival);
        # everything still queued is dropped (§2.3).
        skt.fin_handle = None
        skt.fin_fired = True
        self.drop_queued(skt, NsendErr.WFIN)
        if skt.io is not None:
            skt.io.shutdown_write()


def _send_order(p: PendingSend) -> tuple[int, int]:
    h = p.handle
    return (h.when_ns, h.seq) if h is not None else (0, 0)
