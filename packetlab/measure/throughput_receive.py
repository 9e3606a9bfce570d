"""The receiving half of a timed iperf3 test (-R, --bidir's RX-C streams): the endpoint's
ndata counted at their receive stamps; TEST_END scheduled at the endpoint for -t, or sent
once iperf3's reads reached -n/-k (`throughput_reads`)."""

from __future__ import annotations

from twisted.internet import defer

from packetlab.clockstep import steady
from packetlab.controller import read_time
from packetlab.measure import iperf3
from packetlab.measure.iperf3 import Iperf3Error
from packetlab.measure.stream import StreamError
from packetlab.measure.throughput_control import sleep
from packetlab.measure.throughput_reads import end_all
from packetlab.measure.throughput_streams import CLOCK_CLOSE_S, END_AHEAD_S, Flow, Streams
from packetlab.wire import Ndata, Nstat, NstatCode

__all__ = ["Receiving"]

#: Download: the data is all in once no notification came for this long after the end.
QUIET_S = 0.05
#: iperf3 3.12's words (iperf_error.c, IENOMSG) for --rcv-timeout's idle receiver
IDLE = "idle timeout for receiving data"


class Receiving(Streams):
    """A test's receiving streams."""

    def _note(self, flow: Flow, note: object) -> None:
        if isinstance(note, Nstat) and note.code != NstatCode.ESTABLISHED:
            flow.closed = True
            return
        if not isinstance(note, Ndata):
            return
        if self.capture is not None:  # everything the endpoint received on the stream
            if flow.reply is not None and not flow.reply.called:  # the connect: no ntag
                self.capture.sent(flow.label, note.time, 4, iperf3.UDP_CONNECT_MSG)
            self.capture.received(flow.label, note.time, note.data)
        if flow.reply is not None and not flow.reply.called:
            if note.data == iperf3.UDP_CONNECT_REPLY or len(note.data) == 4:
                flow.reply.callback(None)
            return
        if flow.direction != "download" or self.counted:
            return
        self.heard = steady(self.session.reactor)
        if not self.t0:  # before the controller read TEST_START: counted once it has
            self.early.append((flow, note))
            return
        if self.end is not None and note.time > self.end:
            return  # after the test's end: iperf3 stops reading then
        if self.read_all:
            return  # -n/-k: iperf3's reads reached the count; the rest is read uncounted
        packets = 0
        nbytes = len(note.data)
        if flow.reads is not None:  # -n/-k over TCP: iperf3's reads of up to -l bytes
            nbytes = flow.reads.take(nbytes, self._received_all)
        if self.spec.udp and len(note.data) >= (16 if self.spec.wide else 12):
            count, sent = iperf3.parse_udp_header(note.data, wide=self.spec.wide)
            # the intervals this datagram closes, before it is in the loss figures (its
            # bytes go to the next one: its Lost/Total counted it, 0/3 beside 2 datagrams'
            # bytes, where native's lines agree)
            self._close_until(note.time)
            if self.omit_ns and flow.omit_mark is None and note.time >= self.counted_from:
                self._close_omitted()  # the pre-test's loss is not the test's (iperf3)
                flow.omit_mark = (flow.udp.lost, flow.udp.packets, flow.udp.out_of_order)
            flow.udp.add(count, sent, note.time / 1e9)
            packets = 1
        self._count(flow, note.time, nbytes, packets)
        if flow.disk is not None:  # -R -F: what iperf3 read, into the file
            flow.disk.write(note.data[:nbytes])
        if self.rx_total is not None and self._rx_bytes() >= self.rx_total:
            end_all(f.reads for f in self.flows if f.reads is not None)  # all in: no more
        if self.end is None and self._received_all():
            self.read_all = True
            self.end = note.time
            if not self.done.called:
                self.done.callback(None)
            self._wakeup()  # --bidir: the sending half stops

    def _received_all(self) -> bool:
        """-n/-k: iperf3's client ends the test once its reads brought N bytes, or after N
        reads (blocks_received): over TCP each read is up to -l bytes, as
        `throughput_reads` models them from the endpoint's recv()s; over UDP a datagram."""
        spec = self.spec
        rx = [f for f in self.flows if f.direction == "download"]
        if spec.udp:
            if spec.nbytes is not None:
                return sum(f.bytes for f in rx) >= spec.nbytes
            return spec.blocks is not None and sum(f.packets for f in rx) >= spec.blocks
        reads = [f.reads for f in rx if f.reads is not None]
        if spec.nbytes is not None:
            return sum(r.done_bytes for r in reads) >= spec.nbytes
        return spec.blocks is not None and sum(r.done for r in reads) >= spec.blocks

    def _rx_bytes(self) -> int:
        return sum(f.bytes for f in self.flows if f.direction == "download")

    def _check_idle(self) -> None:
        """--rcv-timeout: iperf3 3.12's client, receiving, fails a running test once no
        data came for that long (IENOMSG); here no data notification (controller time,
        from TEST_START)."""
        limit = self.spec.rcv_timeout
        if limit is None or not self.t0:
            return
        idle = steady(self.session.reactor) - max(self.heard, self.idle_from)
        if idle <= limit:
            self.idle_seen = False
            return
        if not self.idle_seen:
            # seen once: a timer can run before the notifications a busy controller has
            # not read yet (the reactor runs its timers first); the next check, after
            # the reading, decides
            self.idle_seen = True
            return
        # the intervals that passed meanwhile, as iperf3's timer printed them (empty ones
        # too) before its error: up to the endpoint's time now, estimated
        now = self.t0 + int((steady(self.session.reactor) - self.idle_from) * 1e9)
        if self.intervals is not None and now > self.counted_from:
            for rec in self.intervals.until(now):
                self._emit(rec)
        raise Iperf3Error(
            f"no data from the server for {idle:.1f} s (--rcv-timeout {limit * 1e3:g} ms)",
            native=IDLE,
        )

    def _clock_intervals(self) -> None:
        """Receiving: the intervals that passed with no data notification (a stalled
        server), closed on the endpoint's clock (`close_by_clock`), estimated from
        TEST_START's stamp and when it was read (behind the endpoint's, if anything).
        --bidir: with no ntag of its sending half either (its stamps close the intervals
        while it sends; until session 27 --bidir was left out, its lines came when the
        data resumed, where native 3.12's timer prints both directions' as they pass)."""
        if not self.t0:
            return
        here = steady(self.session.reactor)
        last = max(self.heard, self.idle_from)
        if self.spec.bidir:
            last = max(last, self.heard_ntag)
        if here - last < CLOCK_CLOSE_S:
            return
        self.close_by_clock(self.t0 + int((here - self.idle_from - CLOCK_CLOSE_S) * 1e9))

    def started(self, t0: int) -> None:
        self.t0 = t0
        self.idle_from = steady(self.session.reactor)  # --rcv-timeout counts from here
        self._begin(t0)
        early, self.early = self.early, []
        for flow, note in early:
            self._note(flow, note)

    async def download(self, timeout: float) -> None:
        spec, clock = self.spec, self.session.reactor
        if spec.seconds is not None:
            # TEST_END is queued at the endpoint for TEST_START + T once that is near (a
            # queued send cannot be taken back: until then a stop can still end it now)
            if await self._wait_until(self.stop_at - int(END_AHEAD_S * 1e9), timeout):
                self.end = self.stop_at  # the endpoint sends TEST_END then (scheduled)
                self.schedule_end()
                await self._wait_until(self.stop_at, timeout, stoppable=False)
                return
        else:
            self.done.addTimeout(timeout, clock)
            self._watch_stop()
            self._watch_idle()  # --rcv-timeout: the wait watched for it
            self._watch_clock()  # intervals without data closed as they pass
            self.awaiting_done = True  # a server gone fails it (watch_control)
            if self.failure is not None and not self.done.called:  # gone already
                self.done.errback(self.failure)
            try:
                await self.done
            except defer.TimeoutError:
                got = sum(f.bytes for f in self.flows if f.direction == "download")
                want = spec.nbytes if spec.nbytes is not None else (spec.blocks or 0) * spec.block
                raise StreamError(
                    f"only {got} of {want} bytes arrived within {timeout:g} s"
                ) from None
            finally:
                for timer in (self._stop_timer, self._idle_timer, self._clock_timer):
                    if timer is not None and timer.active():
                        timer.cancel()
            if not self.stopped:
                self._test_end()
                return
        # stopped (Ctrl-C): the test ends now, with what came so far
        self.stopped = True
        now = await read_time(self.session)
        if self.end is None or self.end > now:
            self.end = now
        self._test_end()

    def _watch_stop(self) -> None:
        """Download -n: fire `done` when asked to stop (polled)."""
        if self.done.called or self.should_stop is None:
            return
        if self.should_stop():
            self.stopped = True
            self.done.callback(None)
            return
        self._stop_timer = self.session.reactor.callLater(0.05, self._watch_stop)

    def _watch_clock(self) -> None:
        """Download -n/-k: the intervals closed on the clock while the count is awaited
        (polled, as -t's wait does)."""
        if self.done.called:
            return
        self._clock_intervals()
        self._clock_timer = self.session.reactor.callLater(0.1, self._watch_clock)

    def _watch_idle(self) -> None:
        """Download -n/-k with --rcv-timeout: fail `done` once idle that long (polled)."""
        if self.done.called or self.spec.rcv_timeout is None:
            return
        try:
            self._check_idle()
        except Iperf3Error as e:
            self.done.errback(e)
            return
        self._idle_timer = self.session.reactor.callLater(0.05, self._watch_idle)

    async def _wait_until(self, end: int, timeout: float, *, stoppable: bool = True) -> bool:
        """Report progress until the endpoint's clock passes `end` (estimated from here);
        False if asked to stop first."""
        clock = self.session.reactor
        now = await read_time(self.session)
        here = steady(clock)
        deadline = here + (end - now) / 1e9
        limit = here + timeout
        while steady(clock) < deadline:
            if stoppable and self.should_stop is not None and self.should_stop():
                return False
            if self.failure is not None:  # the control connection closed (watch_control)
                raise self.failure
            self._check_idle()
            self._clock_intervals()
            if self.progress is not None:
                done = steady(clock) - here + (now - self.t0) / 1e9
                self.progress(self.spec.progress(done))
            if steady(clock) > limit:
                raise StreamError(f"the test did not end within {timeout:g} s")
            await sleep(self.session, min(0.1, max(0.001, deadline - steady(clock))))
        return True

    async def drained(self, quiet: float = QUIET_S, limit: float = 5.0) -> None:
        """Download: wait until the data notifications stop (`quiet` s without one). The
        kernel stamps a packet when it arrives, the endpoint reads it when it can: data in
        by the test's end may still be on its way to the controller."""
        clock = self.session.reactor
        give_up = steady(clock) + limit
        receives = self.spec.direction == "download" or self.spec.bidir
        while receives and steady(clock) < give_up:
            wait = self.heard + quiet - steady(clock)
            if wait <= 0:
                break
            await sleep(self.session, wait)
