"""A paced traceroute (`pace`, traceroute -N): every probe queued on the endpoint with
send times apart, or a window of them in flight; answers taken as they come, and hops
told in TTL order as each is settled."""

from __future__ import annotations

from collections.abc import Callable

from twisted.python.failure import Failure

from packetlab.clockstep import steady
from packetlab.controller import EndpointSession, QueuedSend, SendFailed, StopSignal, read_time
from packetlab.measure.capture import RawCapture, parse_ndata
from packetlab.measure.flight import GRACE_S, Waker
from packetlab.measure.probes import REFUSABLE, Probe, ProbeTable
from packetlab.measure.records_traceroute import Hop
from packetlab.measure.replies import Reply
from packetlab.measure.traceroute_probes import (
    MIN_MTU,
    Adopt,
    HopCallback,
    end_of_ttl,
    ends_trace,
    too_big,
)
from packetlab.wire import Ntag, Status

PACED_LEAD_S = 0.05  # paced: the first probe leaves this long after the clock was read


# How long a silent probe is waited for once a later hop (NEAR) or another probe of the
# same hop (HERE) answered: that many times their RTT (Butskoy traceroute's -w 5,3,10).
HERE, NEAR = 3.0, 10.0
INF = float("inf")
# -w is kept on the endpoint's clock, as traceroute keeps it on its own: a reply counts
# when the endpoint's kernel had it within -w of the probe's leaving, and its news is
# awaited this much past -w after the probe's ntag came (the way back to us). Before,
# -w counted from the probe's queueing here: `-w 0.001` to 127.0.0.1 was `* * *` on
# every hop where traceroute shows `localhost  0.024 ms` (session 31, odds31).
NEWS_S = 0.05


class ParallelRun:
    """Every probe queued at once, with endpoint send times `pace` s apart; answers taken
    as they arrive; hops told in TTL order as soon as each is settled (answered, or given
    up on: `wait` s, or less once a later hop answered, as native traceroute does)."""

    def __init__(
        self,
        session: EndpointSession,
        cap: RawCapture,
        probes: list[Probe],
        adopt: Adopt,
        on_hop: HopCallback | None,
    ) -> None:
        self.session, self.cap, self.probes, self.on_hop = session, cap, probes, on_hop
        self.adopt = adopt
        self.reactor = session.reactor
        self.waker = Waker(self.reactor)
        self.table: ProbeTable[int] = ProbeTable()
        for i, probe in enumerate(probes):
            self.table.add(probe.key, i)
        self.answers: dict[int, tuple[Reply, int]] = {}
        self.sent: dict[int, int] = {}
        self.tagged_at: dict[int, float] = {}  # when each probe's ntag came (reactor time)
        # the last probe sent with each (at once, or in one -N window's fill): with
        # `-w 0` a reply the endpoint had before that one left counts, as traceroute's
        # poll(0) after its batch of sends reads what its kernel already holds
        self.batch_end: dict[int, int] = {}
        self.failure: BaseException | None = None
        self.unsent: dict[int, BaseException] = {}  # probes the endpoint did not send
        # fragmented probes: `rebuild(i, mtu)` cuts probe i in fragments of mtu, to send
        # one again that the endpoint refused after a "too big" taught its kernel a
        # smaller MTU (None: no fragments, e.g. with DF)
        self.rebuild: Callable[[int, int], Probe] | None = None
        self.frag_mtu: int | None = None
        self.parked: set[int] = set()  # refused, waiting for a smaller MTU to be named
        self.taught: int | None = None  # the least MTU a "too big" named (fragments allowed)
        # DF probes (traceroute -F, `df`): the MTU the endpoint's kernel holds them to
        # (its route's, lowered by a "too big" it heeded), when known; one it refuses is
        # then a hop `*  0.000 ms !F-MTU` that ends the trace, as traceroute -F's local
        # error (None: unknown, e.g. with --listen: `!F`, when the probe is longer than
        # REFUSABLE; a shorter one's refusal is not its size: it fails the run)
        self.df = False
        self.df_mtu: int | None = None
        # probes so refused; their MTU is taken as each is told, in TTL order: the
        # refusal's ntag may come before the "too big" (to an earlier probe) that taught
        # the endpoint's kernel the MTU it refused it at
        self.refused: set[int] = set()
        self.resent: set[int] = set()
        self.end = len(probes)  # probes past the TTL that ends the trace are not waited for
        self.here, self.near = HERE, NEAR  # traceroute -w's factors
        self.hops: list[Hop] = []
        self.next = 0  # the first probe not sent yet
        self.floor = float("inf")  # no wait is shortened before `_distance` is known
        cap.sock.buffering = False
        self._remove = cap.sock.add_callback(self._note)

    def _note(self, note: object) -> None:
        got = parse_ndata(note)
        if got is None:
            return
        reply = self.adopt(got[0])
        if reply is None:  # (traceroute's kernel would not have passed it on)
            return
        got = (reply, got[1])
        i = self.table.pop(got[0].key)
        if i is None:  # not ours, or a duplicate
            return
        if self._left_before_the_news(i, got[0]):
            self.table.add(self.probes[i].key, i)
            self._again(i)
            self.waker.poke()
            return
        self.answers[i] = got
        if ends_trace(got[0]):
            self.end = min(self.end, end_of_ttl(self.probes, i))
        mtu = got[0].mtu or 0
        if too_big(got[0]) and mtu >= MIN_MTU[got[0].src.version]:
            if self.rebuild is not None:
                self.taught = min(self.taught or mtu, mtu)
                self._learnt(mtu)
            if self.df:
                self.df_mtu = min(self.df_mtu or mtu, mtu)
        self.waker.poke()

    def _left_before_the_news(self, i: int, reply: Reply) -> bool:
        """Probe i (fragments allowed) was answered "too big" though an earlier one had
        already taught a smaller MTU than it was sent at: it left before that answer came.
        Traceroute's probes leave one by one, each a socket and a send apart (~50 µs),
        so on a short path its kernel has the first "too big" before the next probe and
        fragments it: one `!F-1400`, then the next router's answers (session 29). Ours
        leave back to back; such a probe goes again in fragments of the MTU learnt, as
        the later ones traceroute's kernel sent. (Past the TTL that ends the trace
        nothing waits for it.)"""
        if self.rebuild is None or self.taught is None or i >= self.end:
            return False
        if not too_big(reply) or i in self.resent:
            return False
        return self.taught < max(map(len, self._pieces(i)))

    def _learnt(self, mtu: int) -> None:
        """A "too big" named `mtu`: probes refused since (the endpoint's kernel learnt it
        too) go again in fragments of it, as traceroute's kernel sends the next ones."""
        self.frag_mtu = min(self.frag_mtu or mtu, mtu)
        for i in sorted(self.parked):
            self.parked.discard(i)
            self.unsent.pop(i, None)
            self._again(i)

    def _again(self, i: int) -> None:
        assert self.rebuild is not None and self.frag_mtu is not None
        self.probes[i] = probe = self.rebuild(i, self.frag_mtu)
        self.resent.add(i)
        self.tagged_at.pop(i, None)
        self.sent.pop(i, None)  # (the first send's time is not this one's)
        d = self.session.nsend(self.cap.sktid, probe.packet, ntag=True)
        d.addCallbacks(self._queued(i), self._failed)
        for piece in probe.more:
            self.session.nsend(self.cap.sktid, piece).addErrback(self._failed)

    def _ntag(self, i: int, tag: Ntag) -> None:
        self.sent[i] = tag.time
        self.tagged_at[i] = steady(self.reactor)
        self.waker.poke()

    def _failed(self, f: Failure) -> None:
        if self.failure is None:
            self.failure = f.value
        self.waker.poke()

    async def run(
        self, wait: float, pace: float, stop: StopSignal | None, window: int | None = None
    ) -> list[Hop]:
        """`window`: at most that many probes in flight (sent, neither answered nor
        `wait` s old), the next one sent as one leaves (traceroute -N), and with `pace`
        not sooner than `pace` s after the one before (traceroute -N with -z, its
        `last_send + send_secs`); None: all, `pace` s apart on the endpoint's clock."""
        try:
            t0 = steady(self.reactor)
            n = len(self.probes)
            gap = pace if window is not None else 0.0  # -N's sends are paced here
            if window is not None:
                pace = 0.0
            if pace == 0:  # all at once: time 0 sends as soon as the endpoint has them
                clock = read_time(self.session)  # only to learn our distance to it
                clock.addCallbacks(lambda _: self._distance(t0), self._failed)
                times, local = [0] * n, [t0] * n
            else:  # paced by the endpoint's clock, from just after now
                start = await read_time(self.session) + int(PACED_LEAD_S * 1e9)
                now = steady(self.reactor)
                self._distance(t0)
                times = [start + int(i * pace * 1e9) for i in range(n)]
                local = [now + PACED_LEAD_S + i * pace for i in range(n)]
            if window is None:
                for i in range(n):
                    self._send(i, times[i])
                    self.batch_end[i] = n - 1
            else:
                local = [INF] * n  # when each was sent; not yet
            stop_by: float | None = None
            last = self.end  # after a stop: the probes due by then (-N's sent, --pace's
            # scheduled); those after it are no hops, not silent ones
            while len(self.hops) < min(self.end, last):
                if self.failure is not None:
                    raise self.failure
                now = steady(self.reactor)
                if stop is not None and stop.requested and stop_by is None:
                    stop_by = now + min(wait, GRACE_S)
                    last = next((i for i in range(len(self.hops), n) if local[i] > now), n)
                    if last <= len(self.hops):
                        break
                if window is not None and stop_by is None:
                    self._fill(window, local, wait, now, gap)
                due = self._settle(local, wait, self.floor, now, stop_by)
                if due is None:
                    continue
                if window is not None:
                    due = min(due, self._next_expiry(local, wait, gap))
                until = None if due == INF else due
                await self.waker.sleep(until, stop if stop_by is None else None)
            return self.hops
        finally:
            self._remove()

    def _send(self, i: int, time: int) -> None:
        d = self.session.nsend(self.cap.sktid, self.probes[i].packet, time=time, ntag=True)
        d.addCallbacks(self._queued(i), self._failed)
        for piece in self.probes[i].more:  # the rest of a fragmented probe, right after
            self.session.nsend(self.cap.sktid, piece, time=time).addErrback(self._failed)
        self.next = i + 1

    def _in_flight(self, local: list[float], wait: float, now: float) -> list[int]:
        settled = len(self.hops)
        return [
            j for j in range(settled, self.next) if j not in self.answers and now < local[j] + wait
        ]

    def _fill(self, window: int, local: list[float], wait: float, now: float, gap: float) -> None:
        """Send the next probes (at once, or one each `gap` s) while fewer than `window`
        are in flight."""
        flying = len(self._in_flight(local, wait, now))
        batch: list[int] = []
        while self.next < self.end and flying < window and now >= self._next_send(local, gap):
            local[self.next] = now
            batch.append(self.next)
            self._send(self.next, 0)
            flying += 1
        for i in batch:
            self.batch_end[i] = batch[-1]

    def _next_send(self, local: list[float], gap: float) -> float:
        """The earliest the next probe may leave: `gap` s after the one before."""
        return local[self.next - 1] + gap if gap and self.next > 0 else 0.0

    def _next_expiry(self, local: list[float], wait: float, gap: float = 0.0) -> float:
        """When the next probe in flight stops holding its place in the window, or (with
        a place free) the next may leave after `gap`."""
        now = steady(self.reactor)
        flying = self._in_flight(local, wait, now)
        due = min((local[j] + wait for j in flying), default=INF)
        if gap and self.next < self.end:
            due = min(due, max(now, self._next_send(local, gap)))
        return due

    def _distance(self, t0: float) -> None:
        """A request answered, sent at `t0`: the floor of a shortened wait is twice that
        round trip (our distance to the endpoint, which every answer also travels)."""
        self.floor = max(0.05, 2 * (steady(self.reactor) - t0))
        self.waker.poke()

    def _queued(self, i: int) -> Callable[[QueuedSend], None]:
        def cb(q: QueuedSend) -> None:
            assert q.ntag is not None
            q.ntag.addCallbacks(lambda tag: self._ntag(i, tag), lambda f: self._unsent(i, f))

        return cb

    def _pieces(self, i: int) -> list[bytes]:
        return [self.probes[i].packet, *self.probes[i].more]

    def _unsent(self, i: int, f: Failure) -> None:
        """Probe i was not sent: the trace fails when it comes to that probe, not if it
        ends before (a probe past a "too big" that taught the endpoint's kernel a smaller
        MTU, whose ntag may come before that answer)."""
        if not f.check(SendFailed):
            self._failed(f)
            return
        if self.rebuild is not None and i not in self.resent:  # (fragments allowed)
            if self.frag_mtu is not None and self.frag_mtu < max(map(len, self._pieces(i))):
                self._again(i)
            else:
                self.parked.add(i)  # until a "too big" names a smaller MTU, or its wait ends
                if self.frag_mtu is None and f.value is not None:  # (no MTU known,
                    self.unsent[i] = f.value  # --listen: it fails at its turn, unless a
                    # "too big" names one first)
            self.waker.poke()
            return
        if self.df and (self.df_mtu is not None or len(self.probes[i]) > REFUSABLE):
            self.refused.add(i)
            self.end = min(self.end, end_of_ttl(self.probes, i))
            self.waker.poke()
            return
        assert f.value is not None
        self.unsent[i] = f.value
        self.waker.poke()

    def _settle(
        self, local: list[float], wait: float, floor: float, now: float, stop_by: float | None
    ) -> float | None:
        """Tell the next hop if it is settled (then None: look again), else return when
        it will be given up on."""
        i = len(self.hops)
        probe = self.probes[i]
        if i in self.unsent:
            raise self.unsent[i]
        if i in self.parked and now >= local[i] + wait:
            raise SendFailed(self.cap.sktid, 0, 0, int(Status.EPKTNOTSENT))
        if i in self.refused:
            hop = Hop.refused(probe.ttl, self.df_mtu)
        elif i in self.answers and i in self.sent and self._in_time(i, wait):
            reply, recv_ns = self.answers[i]
            hop = Hop.from_reply(
                probe.ttl,
                reply,
                probe_send_ns=self.sent[i],
                reply_recv_ns=recv_ns,
                probe_len=len(probe),
            )
        else:
            # A shortened wait counts from when the probe is known to have left (its ntag
            # came): a busy endpoint may send the last of many queued probes late.
            give_up = local[i] + wait
            if i in self.tagged_at:
                give_up = max(give_up, self.tagged_at[i] + wait + NEWS_S)
                patience = self._patience(i, wait, floor)
                if patience < wait:
                    give_up = min(give_up, self.tagged_at[i] + patience)
            elif i in self.answers or wait < NEWS_S:  # its ntag not in yet: not long
                give_up = local[i] + wait + 1.0
            if i in self.answers and i in self.sent and self._batch_sent(i):
                give_up = now  # (answered after -w: a `*`, as traceroute's)
            if stop_by is not None:
                give_up = min(give_up, stop_by)
            if now < give_up:
                return give_up
            if i in self.answers and i not in self.sent:
                reply, recv_ns = self.answers[i]
                hop = Hop.from_reply(
                    probe.ttl,
                    reply,
                    probe_send_ns=None,
                    reply_recv_ns=recv_ns,
                    probe_len=len(probe),
                )
            else:
                hop = Hop.timeout(probe.ttl, probe_send_ns=self.sent.get(i))
        self.hops.append(hop)
        if self.on_hop is not None:
            self.on_hop(hop)
        return None

    def _in_time(self, i: int, wait: float) -> bool:
        """Probe i's reply came within `wait` of its leaving, on the endpoint's clock; or
        before the last probe sent with it left (traceroute reads what its kernel holds
        after a batch of sends before it gives any probe up: with `-w 0`, all it gets)."""
        recv_ns, sent = self.answers[i][1], self.sent[i]
        if recv_ns - sent <= wait * 1e9:
            return True
        last = self.sent.get(self.batch_end.get(i, i))
        return last is not None and recv_ns <= last

    def _batch_sent(self, i: int) -> bool:
        """The last probe sent with probe i has left (its ntag came)."""
        return self.batch_end.get(i, i) in self.sent

    def _patience(self, i: int, wait: float, floor: float) -> float:
        """`wait`, shortened once the same hop (HERE) or a later hop (NEAR) answered: that
        many times the longest of their RTTs, but at least `floor`."""
        ttl = self.probes[i].ttl
        longest = 0.0
        for j, (_, recv_ns) in self.answers.items():
            sent = self.sent.get(j)
            if sent is None or self.probes[j].ttl < ttl or j >= self.end:
                continue
            factor = self.here if self.probes[j].ttl == ttl else self.near
            longest = max(longest, factor * (recv_ns - sent) / 1e9)
        return wait if longest == 0.0 else min(wait, max(floor, longest))
