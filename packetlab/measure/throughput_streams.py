"""One timed iperf3 test's data streams (`Flow`) and what both directions share
(`Streams`): the counts within the test (-O's pre-test apart), the -i interval reports
as they complete, with iperf3's sender columns from the endpoint's TCP_INFO samples, and
TEST_END. `throughput_receive` and `throughput_send` add each direction's half."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from packetlab.controller import ControllerError, EndpointSession, read_tcp_info, read_time
from packetlab.measure import iperf3
from packetlab.measure.iperf3 import Intervals, State, UdpReceiver
from packetlab.measure.throughput_control import CTRL_CLOSED, Control, ControlLost, sleep
from packetlab.measure.throughput_file import DiskFile
from packetlab.measure.throughput_pcap import TimedCapture
from packetlab.measure.throughput_reads import Reads, server_total
from packetlab.measure.throughput_result import TcpStats, interval_sum
from packetlab.measure.throughput_spec import TimedSpec
from packetlab.wire import Ndata, Nstat, NstatCode

__all__ = ["END_AHEAD_S", "Flow", "OnInterval", "OnProgress", "Streams", "fork"]

T = TypeVar("T")

OnInterval = Callable[[dict[str, Any]], None]
OnProgress = Callable[[str], None]


#: A UDP upload stream's send pace is read over its last PACE_TAGS ntags (at -b 30M with
#: 32 KiB blocks, 0.4 s): an endpoint short of CPU sends in bursts, and the pace between
#: two ntags then spread 0.7-1.7x the path's (load 11).
PACE_TAGS = 32


@dataclass(slots=True)
class Flow:
    """One data stream: its ids and what was counted on it (within the test)."""

    sid: int  # iperf3's stream id (1, 3, 4, ...)
    label: int  # the `[  5]` iperf3 prints
    sktid: int
    direction: str = "download"  # the endpoint receives ("download") or sends ("upload")
    bytes: int = 0
    packets: int = 0
    queued: int = 0  # upload: bytes queued
    sent_packets: int = 0  # upload: sends queued
    outstanding: int = 0  # upload: bytes queued whose ntag has not come
    next_time: int = 0  # scheduled upload: the next send's endpoint time
    backlog: int = 0  # scheduled upload: bytes queued whose (every k-th) ntag has not come
    lag: int = 0  # scheduled upload: how late (ns) the last ntag came after its send's time
    stamp: int = 0  # UDP upload: the time in the last iperf3 header queued
    # UDP upload: (`queued` through a tagged send, its ntag's time) of the last PACE_TAGS,
    # and the pace they show (ns a byte)
    tag_marks: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=PACE_TAGS))
    ns_per_byte: float = 0.0
    closed: bool = False
    omitted_bytes: int = 0  # -O: counted in the pre-test (not in the totals)
    omitted_packets: int = 0
    omit_mark: tuple[int, int, int] | None = None  # UDP download: (lost, packets, ooo) at -O's end
    eof: bool = False  # -F: its file is read to the end
    disk: DiskFile | None = None  # -F: the file, as this stream reads or writes it
    udp: UdpReceiver = field(default_factory=UdpReceiver)
    reply: Deferred[None] | None = None  # UDP: the server's answer to the connect datagram
    reads: Reads | None = None  # TCP download -n/-k: iperf3's reads, modelled


def fork(d: Deferred[T]) -> Deferred[T]:
    """A Deferred with `d`'s result, leaving `d` its result (awaiting a Deferred takes it:
    the second of two readers of the test's last sample got None)."""
    out: Deferred[T] = Deferred()

    def both(result: Any) -> Any:
        if isinstance(result, Failure):
            out.errback(result)
        else:
            out.callback(result)
        return result

    d.addBoth(both)
    return out


#: -t: TEST_END is queued at the endpoint this long before its time (a queued send cannot
#: be taken back: until then a stop can still end the test at once).
END_AHEAD_S = 0.25
#: -t: the streams' TCP_INFO is read as TEST_END is queued, then this often from this
#: long before the end until a sample comes after it (`last_sample_before`).
FINAL_SAMPLE_EVERY_S, FINAL_SAMPLE_FROM_S = 0.01, 0.03


#: An interval no stamp closed is closed by the clock once the endpoint's time
#: (estimated) is this far past its end and no data notification (receiving) or ntag
#: (sending) came for as long: a stalled server, whose intervals iperf3's timer prints
#: as they pass (`0.00 Bytes`); until session 26 (iperf26b) ours waited for the next
#: stamp, printing them when the data resumed, at the end or before --rcv-timeout's
#: error. While data flows its stamps close the intervals, as before: a notification
#: late by less than this still counts in its own interval.
CLOCK_CLOSE_S = 0.25


class Streams:
    """One test's data streams once the server asked for them: the state both halves
    share."""

    def __init__(
        self,
        session: EndpointSession,
        spec: TimedSpec,
        addr: Any,
        port: int,
        ctl: Control,
        on_interval: OnInterval | None,
        progress: OnProgress | None,
    ) -> None:
        self.session, self.spec, self.addr, self.port, self.ctl = session, spec, addr, port, ctl
        self.on_interval = on_interval
        self.progress = progress
        self.flows: list[Flow] = []
        self.t0 = 0  # endpoint stamp of TEST_START
        self.omit_ns = int(spec.omit * 1e9)
        self.counted_from = 0  # endpoint time the counted test begins (t0 + -O's seconds)
        self.omitted: Intervals | None = None  # -O with -i: the pre-test's intervals
        self.stop_at = 0  # -t: t0 + O + T
        self.end: int | None = None  # the test's end (endpoint ns), once known
        self.intervals: Intervals | None = None
        self.done: Deferred[None] = Deferred()  # download -n: N bytes in
        self.ntags: deque[Deferred[Any]] = deque()
        self.failure: Exception | None = None
        self.wake: Deferred[None] | None = None
        self.latest = 0  # upload: the latest ntag time
        self.now_ns: Callable[[], int] | None = None  # upload: the endpoint's clock, estimated
        self.should_stop: Callable[[], bool] | None = None  # polled: wrap up (Ctrl-C)
        self.stopped = False
        self.ending = False  # TEST_END went with sends still queued: their failures are moot
        self._stop_timer: Any = None
        self.tagged = self.late = self.late_max = 0  # scheduled sends: tagged, late, worst ns
        self.awaiting = 0  # upload: ntags asked for and not come yet
        self.heard = 0.0  # download: when the last data notification came (controller s)
        self.heard_ntag = 0.0  # upload: when the last ntag came (controller s)
        self.idle_from = 0.0  # download: TEST_START's time here (--rcv-timeout's start)
        self._idle_timer: Any = None  # download -n/-k with --rcv-timeout: its poll
        self._clock_timer: Any = None  # download -n/-k: the intervals' clock poll
        self.idle_seen = False  # --rcv-timeout: idle at the last check (confirmed next)
        self.counted = False  # the figures are final: later notifications are not counted
        self.early: list[tuple[Flow, Ndata]] = []  # download data seen before `started`
        self.marks: dict[int, tuple[int, int]] = {}  # UDP download: (lost, packets) so far
        # TCP upload (and --bidir): each interval's Retr/Cwnd sampled (SKT_TCPINFO) before
        # it is shown; `emitting` keeps the intervals in order. `retrans`: each stream's
        # last total; `rtts`: each stream's samples' maxima, minimum RTT and sum (-J's
        # max_snd_cwnd, max_snd_wnd, max_rtt, min_rtt, mean_rtt)
        self.sample_tcp = not spec.udp and (spec.direction == "upload" or spec.bidir)
        self.emitting: Deferred[None] | None = None
        self.retrans: dict[int, int] = {}
        self.rtts: dict[int, TcpStats] = {}
        self.capture: TimedCapture | None = None  # --pcap: the data streams' packets
        self.final: Deferred[dict[int, Any]] | None = None  # the sample as the test ended
        self.end_queued = False  # -t: TEST_END is queued at the endpoint for stop_at
        self.samples = 0  # TCP_INFO samples asked for (their order at the endpoint)
        self.shown: dict[int, tuple[int, Any]] = {}  # each stream's last in a line, numbered
        self.disks: list[DiskFile] = []  # -F: the file as each stream opened it
        # TCP -R: the test's last interval, shown once the server's results came, as
        # iperf3 3.12 prints it (at DISPLAY_RESULTS; see `show_held`)
        self.hold_last = not spec.udp and spec.direction == "download" and not spec.bidir
        self.held: list[dict[str, Any]] = []
        self.omitted_shown = False  # -O's pre-test has lines (not with -i 0)
        # -n/-k over TCP: what the server sends in all (then every read in progress ends),
        # and whether iperf3's reads reached the count (later data is not counted)
        self.rx_total: int | None = None
        if spec.counted and not spec.udp:
            self.rx_total = server_total(spec.nbytes, spec.blocks, spec.block)
        self.read_all = False
        self.end_sent = False  # TEST_END sent now (-n/-k, a stop): the test is over
        self.awaiting_done = False  # download -n/-k: `done` awaited (a failure fails it)

    def _count(self, flow: Flow, t: int, nbytes: int, packets: int) -> None:
        # -O: the pre-test, reported "(omitted)", not counted. Without -O the data stamped
        # before TEST_START's stamp counts (the kernel's stamps of two sockets need not
        # keep the order the server sent in: a 64 KiB recv() of -R -n was dropped so)
        if self.omit_ns and t < self.counted_from:
            flow.omitted_bytes += nbytes
            flow.omitted_packets += packets
            if self.omitted is not None:
                for rec in self.omitted.add(flow.label, t, nbytes, packets):
                    self._emit(rec, omitted=True)
            return
        self._close_omitted()
        flow.bytes += nbytes
        flow.packets += packets
        if self.intervals is not None:
            for rec in self.intervals.add(flow.label, t, nbytes, packets):
                self._emit(rec)

    def _close_until(self, t: int) -> None:
        """The intervals (the pre-test's while in it) that ended by the stamp `t`."""
        if self.omit_ns and t < self.counted_from:
            if self.omitted is not None:
                for rec in self.omitted.until(t):
                    self._emit(rec, omitted=True)
            return
        self._close_omitted()
        if self.intervals is not None:
            for rec in self.intervals.until(t):
                self._emit(rec)

    def close_by_clock(self, now: int) -> None:
        """The intervals that ended by the endpoint time `now` (ns), shown as iperf3's
        timer shows them, empty or not (`CLOCK_CLOSE_S`); a -t test's last one is left
        for the test's end. The flows' totals are not touched: a stamp that comes later
        counts in the open interval, as `Intervals` counts another stream's late one."""
        if self.intervals is None or self.counted or self.read_all or self.end_sent:
            return
        if self.spec.seconds is not None:
            now = min(now, self.stop_at - 1)
        if self.omitted is not None:  # -O's pre-test
            if now < self.counted_from:
                for rec in self.omitted.until(now):
                    self._emit(rec, omitted=True)
                return
            self._close_omitted()
        for rec in self.intervals.until(now):
            self._emit(rec)

    def _emit(self, rec: dict[str, Any], omitted: bool = False) -> None:
        if self.on_interval is not None:
            rec.update(type="interval", direction=self.spec.direction,
                       protocol="udp" if self.spec.udp else "tcp",
                       sender=self.spec.direction == "upload")  # fmt: skip
            if self.spec.bidir:  # each stream's role, iperf3's TX-C (we send) and RX-C
                rec.update(direction="bidir", sender=None)
                role = {f.label: "TX-C" if f.direction == "upload" else "RX-C" for f in self.flows}
                for st in rec["streams"]:
                    st["role"] = role[st["id"]]
                # each role summed apart (iperf3's -J: sum and sum_bidir_reverse)
                for key, name in (("sum", "TX-C"), ("sum_reverse", "RX-C")):
                    rec[key] = interval_sum(
                        [st for st in rec["streams"] if st["role"] == name], rec["seconds"]
                    )
            if omitted:
                rec["omitted"] = True
            elif self.omitted_shown:  # after -O's pre-test's lines (iperf3: no 2nd header)
                rec["after_omit"] = True
            if self.hold_last and not omitted and self._last(rec):
                self.held.append(rec)
            elif self.sample_tcp:
                # the last interval (closed after the test's end): the test's last sample;
                # one closed before it, a sample now
                sample = self.final if not omitted and self._last(rec) else None
                self.emitting = Deferred.fromCoroutine(self._sampled(rec, self.emitting, sample))
            else:
                self.on_interval(rec)

    def _last(self, rec: dict[str, Any]) -> bool:
        """`rec` is the test's last interval: closed as the test ended, or ending at -t."""
        seconds = self.spec.seconds
        return self.counted or (seconds is not None and rec["end"] >= seconds - 1e-9)

    def show_held(self, server_retransmits: int | None = None) -> None:
        """The last interval, held (TCP -R): iperf3 3.12's client prints it after the
        results exchange, and if no interval came before it, its header is the one of a
        sender with retransmits when the server says it has them (its results'
        `sender_has_retransmits`: `Retr  Cwnd` over a -R test's only line, -R -n 1M or
        -R -t 1, where the lines of a longer test have the receiver's header)."""
        held, self.held = self.held, []
        for rec in held:
            if server_retransmits is not None:
                rec["sender_has_retransmits"] = server_retransmits
            assert self.on_interval is not None
            self.on_interval(rec)

    async def tcp_sample(self) -> dict[int, Any]:
        """Each stream's TCP_INFO now, by label (those the endpoint has: none from an
        endpoint without SKT_TCPINFO, or once the tests's sockets are gone). `samples`
        numbers them as they are asked for: the endpoint answers in order, so a higher
        number was sampled later."""
        self.samples += 1
        reads = [(f.label, read_tcp_info(self.session, f.sktid)) for f in self.flows]
        out = {}
        for label, d in reads:
            try:
                info = await d
            except ControllerError:
                info = None
            if info is not None:
                out[label] = info
        return out

    async def _sampled(
        self,
        rec: dict[str, Any],
        before: Deferred[None] | None,
        sample: Deferred[dict[int, Any]] | None,
    ) -> None:
        """Show `rec` with iperf3's sender columns after `before`: TCP_INFO sampled now, or
        `sample`, the one taken as the test ended (the interval closed after it)."""
        if before is not None:
            await before
        if sample is None:
            now = Deferred.fromCoroutine(self.tcp_sample())
            number = self.samples
            infos = await now
            self.note_sample(infos)
            for label, info in infos.items():
                self.shown[label] = (number, info)
        else:
            infos = await fork(sample)  # noted by the caller (the totals take it too)
        for st in rec["streams"]:
            info = infos.get(st["id"])
            if info is None or st.get("role") == "RX-C":  # iperf3: a receiver's are blank
                continue
            prev = self.retrans.get(st["id"], 0)
            self.retrans[st["id"]] = info.total_retrans
            st.update(retransmits=info.total_retrans - prev, snd_cwnd=info.cwnd_bytes,
                      snd_wnd=info.snd_wnd, rtt=info.rtt, rttvar=info.rttvar,
                      pmtu=info.pmtu)  # fmt: skip
        if infos:  # --bidir: `sum` is the TX-C streams'
            rec["sum"]["retransmits"] = sum(st.get("retransmits", 0) for st in rec["streams"])
        assert self.on_interval is not None
        self.on_interval(rec)

    def note_sample(self, infos: dict[int, Any]) -> None:
        """One TCP_INFO sample of the streams into their -J statistics (iperf3 takes one
        per interval and one as the test ends)."""
        for label, info in infos.items():
            self.rtts.setdefault(label, TcpStats()).add(info)

    def _close_omitted(self, end: int | None = None) -> None:
        """-O: the pre-test's last intervals, once the counted test began (or ended)."""
        if self.omitted is not None:
            last = self.counted_from if end is None else min(end, self.counted_from)
            done, self.omitted = self.omitted, None
            for rec in done.finish(last):
                self._emit(rec, omitted=True)

    def _begin(self, t0: int) -> None:
        """The test's clock from `t0`: -O's pre-test, then T s counted, with intervals."""
        spec = self.spec
        self.counted_from = t0 + self.omit_ns
        if spec.seconds is not None:
            self.stop_at = self.counted_from + int(spec.seconds * 1e9)
            self.end = self.stop_at if spec.direction == "upload" or spec.bidir else None
        # -i 0: one interval, the whole counted test, shown at its end (iperf3 3.12's
        # last stats callback; -O's pre-test then shows none)
        labels = [f.label for f in self.flows]
        receives = spec.direction == "download" or spec.bidir
        extra = self._udp_interval if spec.udp and receives else None
        every = int(spec.interval * 1e9)
        self.intervals = Intervals(self.counted_from, every, labels, extra)
        if self.omit_ns and every:  # iperf3: the pre-test's intervals from 0, "(omitted)"
            self.omitted = Intervals(t0, every, labels, extra)
            self.omitted_shown = True

    def _udp_interval(self, label: int) -> dict[str, Any]:
        """A UDP receiver's interval columns, as iperf3's: the jitter now, the datagrams
        lost and expected since the last interval."""
        f = next(x for x in self.flows if x.label == label)
        if f.direction != "download":  # --bidir: a sending stream has no receiver columns
            return {}
        lost0, total0 = self.marks.get(label, (0, 0))
        self.marks[label] = (f.udp.lost, f.udp.packets)
        return {"jitter_ms": round(f.udp.jitter * 1e3, 6), "lost": f.udp.lost - lost0,
                "total": f.udp.packets - total0}  # fmt: skip

    def schedule_end(self) -> None:
        """-t: TEST_END queued at the endpoint for TEST_START + T (`stop_at`), as iperf3's
        timer ends the test (a download's receiving ends then to the nanosecond; an
        upload's last send is not followed by a controller round trip), and the streams'
        last TCP_INFO read until then (`last_sample_before`)."""
        self.end_queued = True
        self.ctl.send_state(State.TEST_END, time=self.stop_at)
        if self.sample_tcp:
            self.final = Deferred.fromCoroutine(self.last_sample_before(self.stop_at))

    async def last_sample_before(self, end: int) -> dict[int, Any]:
        """-t: each stream's last TCP_INFO before `end`, when the endpoint sends the
        TEST_END queued for it (iperf3's client reads its sockets' as its timer ends the
        test, then sends TEST_END). The server closes the data connections when it reads
        TEST_END, an unpaced sending stream's next queued send then fails and the endpoint
        frees the socket, TCP_INFO and all; a read cannot be scheduled at the endpoint,
        and one timed from here comes late when the controller is busy (--bidir, the
        receiving half's ndata: a read aimed 10 ms before the end got no sample of the
        TX-C sockets, and no Retr/Cwnd). So samples are read from now on, each followed by
        a read of the endpoint's clock (answered in order: the sample was taken before
        that time), until one comes after `end`; a stream's sample from after it counts
        only when none came before. One now, then from `FINAL_SAMPLE_FROM_S` before the
        end every `FINAL_SAMPLE_EVERY_S` (-P 128: 129 mreads a sample)."""
        kept: dict[int, tuple[int, Any]] = {}
        while True:
            sample = Deferred.fromCoroutine(self.tcp_sample())
            number = self.samples
            now = await read_time(self.session)  # sent after the sample's reads
            infos = await sample
            if now >= end:
                last = {label: (number, info) for label, info in infos.items()}
                last.update(kept)
                # an interval's line took a later one (closed meanwhile): that one, so
                # the intervals' Retr add up to the total and none comes out negative
                for label, shown in self.shown.items():
                    if label not in last or shown[0] > last[label][0]:
                        last[label] = shown
                return {label: info for label, (_, info) in last.items()}
            kept.update((label, (number, info)) for label, info in infos.items())
            left = (end - now) / 1e9 - FINAL_SAMPLE_FROM_S
            await sleep(self.session, max(FINAL_SAMPLE_EVERY_S, left))

    def _test_end(self) -> None:
        """TEST_END, after the mreads of the streams' last TCP_INFO (answered in order:
        sampled as the test ends, as iperf3's sender totals; the server may reset the
        connections right after TEST_END)."""
        if self.sample_tcp:
            self.final = Deferred.fromCoroutine(self.tcp_sample())
        self.end_sent = True
        self.ctl.send_state(State.TEST_END)

    def watch_control(self) -> None:
        """While the test runs, the control connection: iperf3 3.12's client selects on
        it and fails at once when the server closes it (a server killed: `control socket
        has closed unexpectedly`) or says SERVER_TERMINATE / SERVER_ERROR; here, until
        TEST_END is queued or sent, either fails the test now (a UDP upload sent on
        until T before, its sends never failing; a -R test waited for T)."""
        self.ctl.stream.sock.add_callback(self._control_note)

    def _control_note(self, note: object) -> None:
        if self.end_queued or self.end_sent or self.counted or self.failure is not None:
            return  # the server's answer to TEST_END (EXCHANGE_RESULTS), read in order
        error: Exception | None = None
        if isinstance(note, Nstat) and note.code != NstatCode.ESTABLISHED:
            error = ControlLost(
                f"the iperf3 server {self.ctl.peer} closed the control connection during the test",
                native=CTRL_CLOSED,
            )
        elif isinstance(note, Ndata) and note.data[:1] == iperf3.state_byte(State.SERVER_TERMINATE):
            error = iperf3.Iperf3Error(
                "the iperf3 server terminated the test", native=iperf3.TERMINATED
            )
        elif isinstance(note, Ndata) and note.data[:1] == iperf3.state_byte(State.SERVER_ERROR):
            error = iperf3.Iperf3Error("the iperf3 server failed during the test")
        if error is None:
            return
        self.failure = error
        if self.awaiting_done and not self.done.called:  # -n/-k download waiting on it
            self.done.errback(error)
        self._wakeup()

    def _wakeup(self) -> None:
        w, self.wake = self.wake, None
        if w is not None and not w.called:
            w.callback(None)
