"""The sending half of a timed iperf3 test (upload, --bidir's TX-C streams): blocks queued
at the endpoint unscheduled (a window per stream) or scheduled at -b's pace, each counted
at its ntag's time, as iperf3's sender counts its writes."""

from __future__ import annotations

import math
import os
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred

from packetlab.clockstep import steady
from packetlab.controller import RequestFailed, SendFailed, read_time
from packetlab.measure import iperf3
from packetlab.measure.stream import StreamError
from packetlab.measure.throughput_control import ThroughputError
from packetlab.measure.throughput_streams import (
    CLOCK_CLOSE_S,
    END_AHEAD_S,
    Flow,
    Streams,
    fork,
)
from packetlab.wire import Ntag

__all__ = ["Sending"]

#: Unscheduled TCP upload: blocks queued per stream ahead of their ntags (in all, split
#: among the streams, at least two blocks each): the endpoint's send buffer stays fed.
WINDOW = 8 << 20
#: Unscheduled sends queued per stream beyond their ntags, at most (blocks under 8 KiB:
#: -l 1400 over TCP or `-u -b 0`). 8 MiB of 1400-byte sends (5,992) kept the in-process
#: endpoint busy past T: TEST_END, scheduled for T, left 0.10-0.23 s late and the server
#: counted what went meanwhile (`-u -b 0 -l 1400 -t 1`: server span 1.12-1.23 s, 17,344
#: datagrams against 13,930 sent by T; with 1,024: 1.00 s, within 90 datagrams).
MAX_QUEUED = 1024
#: Scheduled sends (-b, UDP) are queued this far ahead of the endpoint's clock, the first
#: this long after the controller learnt the clock (the in-process endpoint shares the
#: controller's CPU: 0.2 s ahead left 40 % of the sends at 20 Mbit/s late by up to 26 ms).
HORIZON_S, FIRST_LEAD_S = 0.5, 0.02
#: A scheduled stream whose last ntag came this late, or whose next send is due, is behind
#: its schedule (-b above the endpoint's rate): a window in flight, as unpaced; ahead of
#: it, AHEAD_WINDOWS windows at most (0.5 s of sends above ~540 Mbit/s; session 28)
BEHIND_NS, AHEAD_WINDOWS = 20_000_000, 4
#: Scheduled sends: ntags for about this many sends a second per stream (every k-th, and
#: the last), enough for 0.1 s intervals without a notification per datagram.
TAGS_PER_S = 1000
#: A scheduled send whose ntag is this much after its time left late (the sends reached
#: the endpoint after their time: the controller or the endpoint did not keep up).
LATE_NS = 1_000_000


class Sending(Streams):
    """A test's sending streams."""

    async def upload(self, timeout: float) -> None:
        spec, session = self.spec, self.session
        clock = session.reactor
        tx = [f for f in self.flows if f.direction == "upload"]  # --bidir: the sending half
        last_word = not spec.bidir  # --bidir: the receiving half's TEST_END ends the test
        rate = spec.rate
        block = spec.block
        before = steady(clock)
        now = await read_time(session)
        rtt = steady(clock) - before
        base_here = steady(clock)

        def endpoint_now() -> int:
            return now + int((steady(clock) - base_here) * 1e9)

        self.now_ns = endpoint_now

        gap = 0
        every = 1
        lead = 0.0
        if rate:
            gap = max(1, int(block * 8 / rate * 1e9))
            lead = max(FIRST_LEAD_S, 2 * rtt)
            first = now + int(lead * 1e9)
            if not spec.bidir:  # --bidir: the test's clock is TEST_START's (it receives too)
                self.t0 = first  # the sender's clock starts with its first send: O + T s
                self._begin(first)  # of sends from it, as iperf3 sends
            for f in tx:
                f.next_time = first
            every = max(1, math.ceil(1e9 / gap / TAGS_PER_S))
        # ... and at most MAX_QUEUED sends: thousands of small ones queued at the endpoint
        # held TEST_END (scheduled for T) behind them, and went on after T
        window = min(max(2 * block, WINDOW // len(tx)), MAX_QUEUED * block)
        # -t (not --bidir, whose receiving half does it; not -F, whose file may end first):
        # TEST_END queued at the endpoint for the test's end, as iperf3's timer sends it
        # (the server stops counting then, not a controller round trip after the last
        # send: a paced test's last datagram or block was counted late or not at all)
        schedules_end = last_word and spec.seconds is not None and spec.file is None
        # iperf3 fills its send buffer once with random bytes (readentropy) and sends it
        # again and again; zeros here were the one thing a compressing path could tell
        payload = iperf3.repeating_pattern(block) if spec.repeating_payload else os.urandom(block)
        limit = steady(clock) + timeout
        cut_short = False  # Ctrl-C seen here (--bidir: the receiving half may see it first)
        while True:
            if self.failure is not None:
                raise self.failure
            queued_any = False
            more = True
            while more:  # a send per stream in turn (-n counts all streams together)
                more = False
                for f in tx:
                    if self._sent_all(f, rate):
                        continue
                    if rate:
                        # the horizon grows from the first send's lead: a whole horizon
                        # queued at once made the first sends 40 ms late here
                        ahead = min(max(HORIZON_S, 4 * rtt), lead + steady(clock) - base_here)
                        if f.next_time > endpoint_now() + int(ahead * 1e9):
                            continue
                        behind = f.next_time <= endpoint_now() or f.lag > BEHIND_NS
                        if f.backlog >= (window if behind else AHEAD_WINDOWS * window):
                            # -b above what the endpoint sends (`-b 100G -t 1` queued
                            # 0.5 s of blocks at 100 Gbit/s and ran on past T for as long
                            # as that took): behind its schedule, a window in flight as
                            # unpaced, as iperf3's throttle sends as fast as its socket
                            # takes; ahead of it, a few windows (the horizon's bytes)
                            continue
                    elif f.outstanding >= window:
                        continue
                    data = payload
                    if f.disk is not None:
                        read = f.disk.block(len(payload))
                        if read is None:  # an empty file
                            f.eof = True
                            continue
                        data, f.eof = read, f.disk.done  # the last block: an ntag
                    self._queue(f, data, gap, every, rate, window // 2)
                    queued_any = more = True
                    if f.sent_packets % 64 == 0:
                        await session.wait_writable()
            stop = self.should_stop is not None and self.should_stop() and not cut_short
            if stop and not self.end_queued:  # (once queued, TEST_END goes at its time)
                cut_short = self.stopped = True  # Ctrl-C: no more sends; the test ends
                cut = max(endpoint_now(), self.latest) if rate else self.latest
                self.stop_at = self.end = min(self.stop_at, cut) if self.stop_at else cut
            if schedules_end and not self.stopped and not self.end_queued and self.stop_at \
                    and endpoint_now() >= self.stop_at - int(END_AHEAD_S * 1e9):  # fmt: skip
                self.schedule_end()
            if self.end_queued and endpoint_now() >= self.stop_at:
                self.ending = True  # TEST_END went: the server may close, sends fail
            if self.ending:  # -t: the end went (an unpaced window, a paced stream behind
                break  # its schedule: what is still queued is moot)
            if all(self._sent_all(f, rate) for f in tx) and (
                self.end_queued or self.stopped or not schedules_end
            ):  # paced -t: all queued (0.5 s ahead), and TEST_END too once it is near
                break
            if steady(clock) > limit:
                raise StreamError(f"the test did not end within {timeout:g} s")
            if (
                not spec.bidir
                and self.t0
                and steady(clock) - max(self.heard_ntag, base_here) >= CLOCK_CLOSE_S
            ):  # no ntag for a while (a stalled server): the clock's (--bidir: the
                # receiving half's wait does it, with no ndata nor ntag for as long)
                self.close_by_clock(endpoint_now() - int(CLOCK_CLOSE_S * 1e9))
            if self.progress is not None and self.spec.seconds is not None:
                done = max(0, self.latest - self.t0) / 1e9
                self.progress(self.spec.progress(done))
            if not queued_any or rate:
                self.wake = Deferred()
                timer = clock.callLater(0.01 if rate else 0.05, self._wakeup)
                await self.wake
                if timer.active():
                    timer.cancel()
        if cut_short:
            # Ctrl-C: TEST_END now (--bidir: the receiving half's); the sends still queued
            # at the endpoint (paced ones up to 0.5 s ahead, an unpaced window) are not
            # waited for, their failures once the server closes moot: the server counted
            # them until TEST_END (a paced 10 Mbit/s test stopped at 1.25 s: 2.12 MB
            # received, 1.50 MB sent by then; --bidir -b 10M: `nsend ... not sent`)
            self.ending = True
            if last_word:
                self._test_end()
            return
        if spec.bidir and spec.counted:
            await self._bidir_sent(limit)
            return
        eof = any(f.eof for f in tx)
        # a paced stream still behind its schedule when TEST_END went: as unpaced
        behind = bool(rate) and self.ending and not all(self._sent_all(f, rate) for f in tx)
        if spec.seconds is not None and (not rate or behind) and not self.stopped and not eof:
            # unpaced -t: TEST_END at the end, as iperf3's timer sends it with its socket
            # buffer still full; the blocks still queued at the endpoint are not waited for
            # (8 MiB took 0.7 s at 100 Mbit/s). The server counts only until TEST_END.
            self.ending = True
            if last_word and not self.end_queued:
                self._test_end()
            return
        # the last sends' ntags: every byte went to the kernel. Each is waited for through
        # a fork: a timeout on the ntag's own Deferred cancelled it into `_refused`, which
        # took the CancelledError as the test's failure, and upload() raised that (not a
        # ControllerError: the test's error was `internal error`) instead of this line
        # (session 29's paced-send fuzz target found it, an endpoint at 2 kB/s)
        deadline = steady(clock) + timeout
        for d in list(self.ntags):
            waiting = fork(d)
            waiting.addTimeout(max(0.0, deadline - steady(clock)), clock)
            try:
                await waiting
            except defer.TimeoutError:
                raise StreamError(f"the endpoint had not sent the data within {timeout:g} s") \
                    from None  # fmt: skip
        if self.failure is not None:
            raise self.failure
        if last_word and not self.end_queued:
            self._test_end()
        if (self.spec.seconds is None or eof) and not (self.stopped and self.end):
            self.end = self.latest

    async def _bidir_sent(self, limit: float) -> None:
        """--bidir -n/-k, the sending half: once its last ntag came (iperf3 counts a block
        sent when write() returns), the test ends then, unless the receiving half got its
        count first: then the blocks still queued are not waited for."""
        clock = self.session.reactor
        while not self.done.called and self.awaiting:
            if self.failure is not None:
                raise self.failure
            if steady(clock) > limit:
                raise StreamError("the endpoint had not sent the data in time")
            self.wake = Deferred()
            timer = clock.callLater(0.05, self._wakeup)
            await self.wake
            if timer.active():
                timer.cancel()
        self.ending = True  # TEST_END goes now: later failures of queued sends are moot
        if not self.done.called:
            self.end = self.latest
            self.done.callback(None)  # the receiving half sends TEST_END

    def _sent_all(self, f: Flow, rate: float | None) -> bool:
        spec = self.spec
        if spec.counted and (self.stopped or self.done.called):  # --bidir: received all
            return True
        if any(x.eof for x in self.flows):  # -F: a stream's file end ends the test (iperf3's
            return True  # diskfile_send: test->done)
        # paced (-b, UDP): iperf3 sends a block on every stream in a round and counts
        # after it (`-k 10 -P 3 -b 20M`: 12 blocks, native), so a stream's next block is
        # sent if the rounds before it fell short; unpaced, it counts before every block
        rounds = f.sent_packets * spec.streams if rate else 0
        if spec.nbytes is not None:
            if rate:
                return rounds * spec.block >= spec.nbytes
            return sum(x.queued for x in self.flows) >= spec.nbytes
        if spec.blocks is not None:  # iperf3's blocks_sent: its writes of -l bytes
            if rate:
                return rounds >= spec.blocks
            return sum(x.sent_packets for x in self.flows) >= spec.blocks
        if rate:
            return f.next_time >= self.stop_at
        return self.latest >= self.stop_at

    def _queue(self, f: Flow, payload: bytes, gap: int, every: int,
               rate: float | None, tag_bytes: int = 0) -> None:  # fmt: skip
        """Queue one block. Paced, an ntag every `every` sends or once `tag_bytes` went
        untagged (above ~33 Gbit/s a stream's every-k-th tag is more than half its window
        apart: a stream behind its schedule waits for a tag within its window)."""
        spec, session = self.spec, self.session
        size = len(payload)  # -n: whole blocks until N bytes went, as iperf3
        when = f.next_time if rate else 0
        f.sent_packets += 1
        if spec.udp:
            f.stamp = self._stamp(f, when, size, gap)
            head = iperf3.udp_header(f.sent_packets, f.stamp, wide=spec.wide)
            data = head + payload[len(head) : size]
        else:
            data = payload[:size]
        f.queued += size
        f.outstanding += size
        if rate:
            f.backlog += size
        if rate and f.sent_packets % (spec.burst or 1) == 0:
            # -b RATE/BURST: a burst's blocks all at one time, the next a burst's time at
            # the rate later, as iperf3's multisend sends them back to back once its
            # throttle turns green (the endpoint sends equal times in their queued order)
            f.next_time += gap * (spec.burst or 1)
        last = self._sent_all(f, rate)
        tag = not rate or last or f.sent_packets % every == 0 or 0 < tag_bytes <= f.outstanding
        unit = f.outstanding if tag else 0  # bytes this ntag stands for
        if tag:
            f.outstanding = 0 if rate else f.outstanding
            self.awaiting += 1
        to = (self.addr, self.port) if spec.udp else None
        head = b""
        if self.capture is not None:
            head = bytes(data[: self.capture.snap])
            if when and every > 1:  # a paced send among untagged ones: at its scheduled
                self.capture.sent(f.label, when, size, head)  # time, as they all are
                head = b""
        d: Deferred[Any] = session.nsend(f.sktid, data, time=when, ntag=tag, to=to)
        d.addCallback(self._queued, f, size, unit, when, head, f.queued)  # then its ntag
        d.addErrback(self._refused)
        self.ntags.append(d)
        # keep those not done yet (awaited at the end); a list rebuilt per send took 43 %
        # of the CPU at 8.5k/s. All may be done: an nsend a closed session fails at once
        # (`d` called already) after every ntag came, and an empty deque's [0] was an
        # IndexError out of upload() (session 29's paced-send fuzz target found it)
        while self.ntags and self.ntags[0].called:
            self.ntags.popleft()

    def _stamp(self, f: Flow, when: int, size: int, gap: int) -> int:
        """The send time for a UDP block's iperf3 header: its scheduled time, or,
        while its stream is behind its schedule (its last ntag late, its ntags slower
        than its pace), the one before plus the block at the pace its last ntags show.
        iperf3 writes the time of its write(); the header goes with the nsend, before
        the endpoint knows when its socket will take it. A block due at its time, behind
        a backlog waiting for buffer space, carried the time it was due: through a 20
        Mbit/s tbf, `-u -b 30M -l 32768` datagrams 8.7 ms apart by their headers reached
        the server 13.1 ms apart, and its jitter was that mismatch (4.68 ms; iperf3
        0.39-2.55). Unpaced (-b 0), no time is due: the endpoint's clock as the block
        is queued, then the pace (every header said 0 s, and the server's jitter was
        the arrival gaps)."""
        pace = f.ns_per_byte * size
        if not when:  # unpaced (-b 0): the endpoint's clock as it was queued, then the pace
            now = self.now_ns() if self.now_ns is not None else 0  # (the header said 0 s)
            return max(now, f.stamp + int(pace)) if f.stamp and pace else now
        if not f.stamp or f.lag <= BEHIND_NS or pace <= gap:
            return when
        return max(when, f.stamp + int(pace))

    def _queued(
        self, q: Any, f: Flow, size: int, unit: int, when: int, head: bytes, through: int
    ) -> Deferred[Ntag] | None:
        if q.ntag is None:
            return None
        return q.ntag.addCallback(self._sent, f, size, unit, when, head, through)

    def _sent(
        self, tag: Ntag, f: Flow, size: int, unit: int, when: int, head: bytes, through: int
    ) -> Ntag:
        spec = self.spec
        if spec.udp:  # the pace the endpoint sends at (behind or unpaced: its path's)
            marks = f.tag_marks
            if not marks or (through > marks[-1][0] and tag.time > marks[-1][1]):
                marks.append((through, tag.time))
                mark, at = marks[0]
                if through > mark:
                    f.ns_per_byte = (tag.time - at) / (through - mark)
        self.awaiting -= 1
        self.heard_ntag = steady(self.session.reactor)
        if head and self.capture is not None:  # when it went to the kernel: unpaced, or
            # paced with every send tagged (up to TAGS_PER_S a stream: any upload under an
            # endpoint's default 10 Mb/s quota); it was the scheduled time, up to 18.7 ms
            # before tcpdump saw it (median 2.8 ms, -b 1M on a loaded in-process endpoint)
            self.capture.sent(f.label, tag.time, size, head)
        if when:  # a scheduled send: did it leave on time?
            self.tagged += 1
            f.lag = tag.time - when
            if tag.time - when > LATE_NS:
                self.late += 1
                self.late_max = max(self.late_max, tag.time - when)
        if spec.rate:
            nbytes, packets = unit, 0
            f.backlog -= unit
        else:
            f.outstanding -= size
            nbytes, packets = size, 1 if spec.udp else 0
        if spec.udp and spec.rate:
            packets = max(1, round(unit / spec.block))
        # -t: what left before the stop time; -n/-k: every byte that left, as a sender
        # counts its writes (with --bidir the receiving half may end the test while
        # queued sends still go: they reach the server)
        if spec.seconds is None or tag.time <= self.stop_at:
            self._count(f, tag.time, nbytes, packets)
        self.latest = max(self.latest, tag.time)
        self._wakeup()
        return tag

    def _refused(self, failure: Any) -> None:
        e = failure.value
        # once TEST_END is queued, the server may close the connections as it reads it
        # (before we see the end pass): the queued sends then fail (EPKTNOTSENT), moot
        # (or refuses them, the socket closed: a paced stream behind its schedule still
        # queues sends up to T, after the endpoint sent TEST_END at it)
        closed = isinstance(e, RequestFailed) and e.name == "ESKTNOTOPEN"
        moot = self.ending or (self.end_queued and (isinstance(e, SendFailed) or closed))
        if self.failure is None and not moot:
            if isinstance(e, RequestFailed) and e.name == "ESKTPKTDENY":
                self.failure = ThroughputError(
                    "the endpoint refused the sends (ESKTPKTDENY): over a send window or "
                    "quota of its certificates (without a max_burst_rate_byte grant an "
                    "endpoint allows 12,500,000 bytes per 10 s, 10 Mb/s): use -b below it, "
                    "or see docs/throughput.md, Uploads over TLS above 10 Mb/s"
                )
            else:
                self.failure = e if isinstance(e, Exception) else StreamError(str(e))
        self._wakeup()
