"""The receive path of a session, sans-IO (PROTOCOL.md §2.4, §3.5): ndata, budgets, drop
episodes and notification masks.

Sockets report what they read through `tcp_received`, `udp_received` and `raw_received`
(the entry points of everything that arrives; `datagram` is where UDP and captured packets
meet). Each ndata is charged to the socket's rbufsz and to BufMax until the outbox hands
it to the transport (`release`); a TCP socket stops reading while it has no room and
resumes (`unblock`) once a useful amount is free again.

Notifications of every kind pass `notify`, which holds them while the socket's notifmask
masks their type and releases them in order when the mask is cleared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from packetlab.endpoint import frames
from packetlab.endpoint.budget import RECV_BUF_OVERHEAD, Budget
from packetlab.endpoint.checks import NDATA_DELIVER, NDATA_DROP, NDATA_DROP_COUNTED, RequestGate
from packetlab.endpoint.outbox import Outbox
from packetlab.endpoint.sockets import DropEpisode, Skt
from packetlab.wire import codec
from packetlab.wire.constants import NDATA_MAX, NotifMask, Proto
from packetlab.wire.messages import Nblock

__all__ = ["ReceivePath"]

U32_MAX = 0xFFFFFFFF
_NDATA = int(NotifMask.NDATA)
_NDROP = int(NotifMask.NDROP)
_NBLOCK = int(NotifMask.NBLOCK)
_NTAG = int(NotifMask.NTAG)
_TCP = int(Proto.TCP)


class ReceivePath:
    """ndata in, budgets back out; one per session."""

    def __init__(self, budget: Budget, gate: RequestGate) -> None:
        self.budget = budget
        self.gate = gate
        self.outbox = Outbox(self.release)
        self.blocked: set[Skt] = set()  # TCP sockets that stopped reading for want of room
        # Sockets in a drop episode: it ends (one ndrop) when a datagram is accepted again
        # or, should none come, once the socket has room again (`_room_back`).
        self.dropping: set[Skt] = set()
        # Set while requests wait behind a full outbox (protocol.MAX_QUEUED): TCP sockets
        # read nothing more until it drains, or their ndata, paid for by their budgets,
        # kept it full for good and the controller's requests were never read again.
        self.held_back = False
        # What a gate's check of an ndata deferred until that ndata is queued: a reflex's
        # sends and reports for the packet it passes on (their ntag after its cause).
        self.after_ndata: list[Callable[[], None]] = []
        # `pace_tcp`: while the gate's ndata checks wait (a session's monitor time spent),
        # TCP sockets read nothing (§3.5: flow control), and a timer wakes them after.
        self.ndata_wait: Callable[[bool], float] | None = None
        self._call_later: Callable[[float, Callable[[], None]], Any] | None = None
        self._wake: Any = None  # the timer's delayed call, while one is set

    # -- notifications and masks (§2.4) ---------------------------------------------------

    def notify(self, skt: Skt, bit: int, frame: bytes, cost: int = 0) -> None:
        """Queue a notification, or hold it while `bit` is masked on the socket."""
        if skt.notifmask & bit:
            skt.held.append((bit, frame, cost))
        else:
            self.outbox.put(frame, skt, cost)

    def set_notifmask(self, skt: Skt, mask: int) -> None:
        cleared = skt.notifmask & ~mask
        skt.notifmask = mask
        if cleared and skt.held:
            # Release the held notifications of every cleared type, in order (§2.4;
            # NBLOCK too, unlike the reference).
            keep = [h for h in skt.held if not h[0] & cleared]
            out = [h for h in skt.held if h[0] & cleared]
            skt.held.clear()
            skt.held.extend(keep)
            for bit, frame, cost in out:
                # A held ntag's charge is BufMax's alone, not the socket's RBUFUSED.
                self.outbox.put(frame, skt if bit != _NTAG else None, cost)
        if cleared & _NDROP and skt.episode is not None:
            # The drops that added up while NDROP was masked (see `datagram`): one ndrop.
            self._end_episode(skt)

    def set_rbufsz(self, skt: Skt, rbufsz: int) -> None:
        skt.rbufsz = rbufsz
        if skt.read_blocked:
            self.unblock()

    # -- budgets (§3.5) -------------------------------------------------------------------

    def release(self, skt: Skt | None, cost: int) -> None:
        """An ndata (or a held ntag: `skt` None) left for the transport: its charge comes
        back."""
        if skt is not None:
            skt.rbufused -= cost
        self.budget.used -= cost
        if self.blocked:
            self.unblock()
        if self.dropping:
            self._room_back()

    def unspend(self, cost: int) -> None:
        """A send's charge comes back (sent or dropped)."""
        self.budget.used -= cost
        if self.blocked:
            self.unblock()
        if self.dropping:
            self._room_back()

    def _room_back(self) -> None:
        """End the drop episodes of sockets that have room again: a flood that stopped
        while the controller read nothing left its drops in DROPSTAT alone, with no
        datagram after it to carry their ndrop (§3.5; beyond 1.1.0)."""
        budget = self.budget
        free = budget.max - budget.used
        for skt in list(self.dropping):
            room = min(skt.rbufsz - skt.rbufused, free) - RECV_BUF_OVERHEAD
            if room > 0 and not skt.notifmask & _NDROP:
                self._end_episode(skt)

    def pace_tcp(
        self, wait: Callable[[bool], float], call_later: Callable[[float, Callable[[], None]], Any]
    ) -> None:
        """TCP sockets read nothing while `wait(stopped)` > 0 s (the gate cannot check what
        they read: dropped, it would be a hole in the stream; `stopped`: one stopped for
        it); `call_later(s, f)` wakes them."""
        self.ndata_wait = wait
        self._call_later = call_later

    def stop_pacing(self) -> None:
        """At the session's end: no timer left behind."""
        wake, self._wake = self._wake, None
        if wake is not None and wake.active():
            wake.cancel()

    def recv_room(self, skt: Skt) -> int:
        if self.held_back:
            return 0
        if skt.proto == _TCP and self.ndata_wait is not None and self.ndata_wait(False) > 0.0:
            return 0
        budget = self.budget
        return min(skt.rbufsz - skt.rbufused, budget.max - budget.used) - RECV_BUF_OVERHEAD

    def tcp_blocked(self, skt: Skt) -> None:
        skt.read_blocked = True
        self.blocked.add(skt)
        self._wake_later(True)

    def _wake_later(self, stopped: bool = False) -> None:
        """If the gate's checks are what stopped the reading, a timer for their return
        (nothing else may come to call `unblock`: an idle controller, no sends)."""
        if self.ndata_wait is None or self._call_later is None:
            return
        wait = self.ndata_wait(stopped)
        if wait > 0.0 and self._wake is None:
            self._wake = self._call_later(wait, self._woken)

    def _woken(self) -> None:
        self._wake = None
        if self.blocked:
            self.unblock()

    def unblock(self) -> None:
        for skt in list(self.blocked):
            # Wait for a useful amount of room, not a few bytes (no trickle of tiny ndata).
            want = min(NDATA_MAX, max(1, skt.rbufsz // 4 - RECV_BUF_OVERHEAD))
            if self.recv_room(skt) >= want and skt.io is not None:
                self.blocked.discard(skt)
                skt.read_blocked = False
                skt.io.resume_reading()
        if self.blocked and self.ndata_wait is not None:
            self._wake_later()  # room came back while the checks wait: wake after them

    def forget(self, skt: Skt) -> int:
        """The socket is freed: drop its held notifications silently; returns their cost
        (the caller gives it back with the rest)."""
        held = sum(cost for _, _, cost in skt.held)
        ntags = sum(cost for bit, _, cost in skt.held if bit == _NTAG)
        skt.held.clear()
        skt.rbufused -= held - ntags  # a held ntag's charge is BufMax's alone
        self.blocked.discard(skt)
        self.dropping.discard(skt)
        return held

    # -- what sockets read ----------------------------------------------------------------

    def tcp_received(self, skt: Skt, data: bytes, time: int) -> None:
        # The reader asked recv_room() first; TCP is never truncated (flow control instead).
        if self.gate.checks_ndata and not self._ndata_allowed(skt, data, time, None, None):
            return
        frame = frames.ndata_tcp(skt.sktid, skt.family, skt.proto, time, data)
        self.deliver(skt, frame, len(data) + RECV_BUF_OVERHEAD)
        if self.after_ndata:
            self.run_after_ndata()

    def udp_received(self, skt: Skt, data: bytes, time: int, raddr: bytes, rport: int) -> None:
        self.datagram(skt, data, time, RECV_BUF_OVERHEAD + skt.alen + 2, raddr, rport)

    def kernel_dropped(self, skt: Skt, count: int, time: int) -> None:
        """Datagrams the kernel dropped before the endpoint could read them (its socket
        queue was full): counted as drops of unknown size (0 bytes) in DROPSTAT and the
        episode's ndrop, so that every datagram is accounted for. Their ndrop goes at once
        if the socket has room (the kernel's queue had none, the endpoint's budget may):
        noticed when the socket drained, there may be no datagram after them to end the
        episode."""
        self.count_drop(skt, time, 0, count)
        if self.recv_room(skt) > 0 and not skt.notifmask & _NDROP:
            self._end_episode(skt)

    def raw_received(self, skt: Skt, data: bytes, time: int) -> None:
        """A captured packet: as a UDP datagram without the address (§3.4, §3.5)."""
        self.datagram(skt, data, time, RECV_BUF_OVERHEAD, None, None)

    def datagram(
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
                self.count_drop(skt, time, n)
                return
            self.count_drop(skt, time, n - room)
            data = data[:room]
        if self.gate.checks_ndata and not self._ndata_allowed(skt, data, time, raddr, rport):
            return
        if skt.episode is not None and not skt.notifmask & _NDROP:
            # (While NDROP is masked the episode goes on: one ndrop when it is unmasked,
            # not one held frame per truncated datagram.)
            self._end_episode(skt)
        if raddr is None or rport is None:  # a captured packet: no address part
            frame = frames.ndata_tcp(skt.sktid, skt.family, skt.proto, time, data)
        else:
            frame = frames.ndata_udp(skt.sktid, skt.family, skt.proto, time, raddr, rport, data)
        self.deliver(skt, frame, len(data) + extra)
        if self.after_ndata:
            self.run_after_ndata()

    def deliver(self, skt: Skt, frame: bytes, cost: int) -> None:
        """Charge an ndata's budget and queue it, or hold it while NDATA is masked (§2.4)."""
        skt.rbufused += cost
        self.budget.used += cost
        if skt.notifmask & _NDATA:
            skt.held.append((_NDATA, frame, cost))
        else:
            self.outbox.put(frame, skt, cost)

    def run_after_ndata(self) -> None:
        after = self.after_ndata
        while after:
            after.pop(0)()

    def _ndata_allowed(
        self, skt: Skt, data: bytes, time: int, raddr: bytes | None, rport: int | None
    ) -> bool:
        verdict = self.gate.check_ndata(skt, data, time, raddr, rport)
        if verdict == NDATA_DELIVER:
            return True
        if verdict == NDATA_DROP_COUNTED:  # a receive quota ran out (§4.5)
            self.count_drop(skt, time, len(data))
        elif verdict != NDATA_DROP:
            if min(skt.rbufsz - skt.rbufused, self.budget.free) < RECV_BUF_OVERHEAD:
                # No room left for its nblock: dropped and counted, as a datagram that
                # does not fit.
                self.count_drop(skt, time, len(data))
                return False
            # The monitor's reason (§8.3). The nblock keeps buffer space like the ndata
            # it stands for until it is written (queued for a slow controller, or held
            # while NBLOCK is masked, §2.4), so a peer's traffic cannot grow either
            # without bound (§3.5).
            nblock = Nblock(
                sktid=skt.sktid,
                family=skt.family,
                proto=skt.proto,
                monerrid=verdict & 0xFFFF,
                time=time,
            )
            skt.rbufused += RECV_BUF_OVERHEAD
            self.budget.used += RECV_BUF_OVERHEAD
            self.notify(skt, _NBLOCK, codec.encode(nblock), RECV_BUF_OVERHEAD)
        return False

    # -- drop episodes (beyond 1.1.0: one ndrop per episode) ------------------------------

    def count_drop(self, skt: Skt, time: int, lost: int, units: int = 1) -> None:
        skt.drop_pkts += units
        skt.drop_bytes += lost
        ep = skt.episode
        if ep is None:
            ep = skt.episode = DropEpisode(time)
            self.dropping.add(skt)
        ep.last = time
        ep.units += units
        ep.bytes += lost

    def _end_episode(self, skt: Skt) -> None:
        """One ndrop per episode, sent when a datagram is accepted again."""
        ep = skt.episode
        assert ep is not None
        skt.episode = None
        self.dropping.discard(skt)
        frame = frames.ndrop(
            skt.sktid,
            skt.family,
            skt.proto,
            ep.first,
            ep.last,
            min(ep.units, U32_MAX),
            min(ep.bytes, U32_MAX),
        )
        self.notify(skt, _NDROP, frame)
