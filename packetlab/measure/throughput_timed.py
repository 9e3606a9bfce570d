"""iperf3's time-limited, parallel and UDP tests through an endpoint, with interval
reports (`pktlab run throughput -t/-P/-u/-b/-i`), against a stock iperf3 server.

The control protocol is the one `throughput.py` speaks (packetlab.measure.iperf3), with
native `iperf3 -c`'s parameters for -t/-n, -P, -u, -b, -l and -R. Every figure is timed
by the endpoint:

* The test's clock starts at the endpoint's receive stamp of TEST_START, as iperf3's
  client starts its own when TEST_START arrives.
* Download (-R): the data sockets' ndata flow to the controller as they come (nothing is
  held: a time-limited test has no size to budget for); each counts at its receive
  stamp. TEST_END is an nsend on the control connection scheduled at TEST_START + T, so
  the endpoint ends the test at the nanosecond; what was received by then counts. With
  -n instead, TEST_END goes once the streams hold N bytes (iperf3's rule: all streams).
  UDP: each datagram's number and send time (iperf3's header) give loss and jitter as
  iperf3's receiver computes them, with the endpoint's receive stamp as the arrival.
* Upload: TCP blocks (128 KiB) go unscheduled, a window of them queued per stream, each
  with an ntag; the ntag's time (the block handed to the kernel) counts it, as iperf3's
  sender counts a write. Once an ntag passes TEST_START + T, TEST_END goes at once (the
  blocks still queued are not waited for, as iperf3's timer does not). With -b (and
  always for UDP) the sends are scheduled instead: block k of a stream at
  `first + k * len * 8 / rate`, computed here and sent by the endpoint at that time (the
  PacketLab way: no timer at the controller), queued up to 0.5 s ahead as the test goes
  (that horizon reached gradually from the first send's 20 ms lead). A paced test's T
  seconds run from its first send; a send whose ntag came over 1 ms after its time is
  counted as late (`late_sends`: the sends did not reach the endpoint in time).
  Each UDP datagram carries iperf3's header with its scheduled time and number; the
  server's jitter, loss and total come back in the results exchange.
* `-i`: an interval is reported once a stamp past its end arrived (or at the end).
* TCP upload: iperf3's sender columns, `Retr` and `Cwnd`, from the endpoint's TCP_INFO
  sample (SKT_TCPINFO, ours): read for every stream as each interval closes and once at
  the end (the sender's total). An endpoint without it (the reference) has no columns.

The receiver's figure is the test's `mbit_s`: ours (endpoint stamps) for a download, the
iperf3 server's for an upload, as in `throughput.py`; both sides' figures are kept.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred

from packetlab.controller import (
    AddressLike,
    ControllerError,
    EndpointSession,
    RequestFailed,
    deferred_api,
    parse_address,
    read_socket_info,
    read_system_info,
    read_tcp_info,
    read_time,
    wait_connected,
)
from packetlab.measure import iperf3
from packetlab.measure.iperf3 import DEFAULT_PORT, Intervals, Iperf3Error, State, UdpReceiver
from packetlab.measure.pcap import PcapRecorder
from packetlab.measure.stream import StreamError, connect_failure
from packetlab.measure.throughput import (
    ThroughputError,
    _admitted,
    _closed_by_server,
    _Control,
    _sleep,
)
from packetlab.measure.throughput_pcap import TimedCapture
from packetlab.measure.throughput_reads import Reads, end_all, server_total
from packetlab.wire import Family, Ndata, Nstat, NstatCode, Ntag
from packetlab.wire.constants import MAX_MSGQ_LEN, NDATA_MAX

__all__ = ["TimedResult", "TimedSpec", "timed_test"]

OnInterval = Callable[[dict[str, Any]], None]
OnProgress = Callable[[str], None]

#: Unscheduled TCP upload: blocks queued per stream ahead of their ntags (in all, split
#: among the streams, at least two blocks each): the endpoint's send buffer stays fed.
WINDOW = 8 << 20
#: Scheduled sends (-b, UDP) are queued this far ahead of the endpoint's clock, the first
#: this long after the controller learnt the clock (the in-process endpoint shares the
#: controller's CPU: 0.2 s ahead left 40 % of the sends at 20 Mbit/s late by up to 26 ms).
HORIZON_S, FIRST_LEAD_S = 0.5, 0.02
#: Scheduled sends: ntags for about this many sends a second per stream (every k-th, and
#: the last), enough for 0.1 s intervals without a notification per datagram.
TAGS_PER_S = 1000
RBUF = 4 << 20  # download: each data socket's receive budget at the endpoint
#: TCP download (and --bidir's receiving half): the receiving sockets' budgets together.
#: An endpoint stops reading requests while 100 frames wait for the controller (PROTOCOL.md
#: §1.4 step 4, MAX_MSGQ_LEN), and it keeps reading data as long as the budgets allow:
#: budgets worth more than 100 ndata of NDATA_MAX bytes let a download faster than the
#: controller keep it there, every request unread (--bidir -P 2 with 4 MiB each: the
#: sends, TEST_END and the nclose stuck behind 128 queued ndata while the server sent on,
#: until it gave up 40 s later). Half of it leaves room for the ntags and answers.
RX_TOTAL = MAX_MSGQ_LEN // 2 * NDATA_MAX
CONNECT_WAIT = 10.0
#: Download: the data is all in once no notification came for this long after the end.
QUIET_S = 0.05
#: Download -t: TEST_END is queued at the endpoint this long before its time.
END_AHEAD_S = 0.25
#: --bidir -t: the sending streams' last TCP_INFO is read this long before the scheduled
#: TEST_END (after it the iperf3 server may reset the connections; a read cannot be
#: scheduled at the endpoint).
FINAL_SAMPLE_AHEAD_S = 0.01
#: A scheduled send whose ntag is this much after its time left late (the sends reached
#: the endpoint after their time: the controller or the endpoint did not keep up).
LATE_NS = 1_000_000


@dataclass(slots=True)
class TimedSpec:
    """What native `iperf3 -c` takes: `seconds` (-t), `nbytes` (-n, all streams
    together) or `blocks` (-k: blocks of `length` sent or received, all streams together;
    --bidir: per direction, the first to reach it ends the test), `streams`
    (-P), `udp` (-u), `bitrate` (-b, bit/s per stream; UDP default 1 Mbit/s, TCP unlimited),
    `interval` (-i, 0: none), `length` (-l), `omit` (-O: that many whole seconds of
    pre-test before the T seconds counted), `cport` (--cport: stream k binds local port
    cport + k at the endpoint, as iperf3 3.12), `bidir` (--bidir: the endpoint sends on
    `streams` streams and receives on as many, at once; `direction` is then not used)."""

    direction: str = "download"
    seconds: float | None = None
    nbytes: int | None = None
    blocks: int | None = None  # -k
    streams: int = 1
    udp: bool = False
    bitrate: float | None = None
    interval: float = 0.0
    length: int | None = None
    wide: bool = False  # --udp-counters-64bit
    omit: int = 0  # -O: seconds of pre-test first, reported "(omitted)" and not counted
    cport: int | None = None  # --cport: the data streams' local ports at the endpoint, from it
    bidir: bool = False  # --bidir: `streams` sending and as many receiving, at once
    extra_data: str | None = None  # --extra-data: told the server (its JSON shows it)
    server_output: bool = False  # --get-server-output: the server's own report, in the result
    repeating_payload: bool = False  # --repeating-payload: "0123..." blocks both ways
    bind: str | None = None  # -B: the endpoint's local address for every connection
    connect_timeout: float | None = None  # --connect-timeout (s): the control connection's
    authtoken: str | None = None  # --username: iperf3's encrypted credentials
    file: str | None = None  # -F: blocks read from it (sending), what came written to it

    def check(self) -> None:
        if self.direction not in ("download", "upload"):
            raise ValueError(f"direction must be download or upload, got {self.direction!r}")
        ends = [x for x in (self.seconds, self.nbytes, self.blocks) if x is not None]
        if len(ends) > 1:
            raise ValueError("only one test end condition (-t, -n, -k) may be specified")
        if not ends and self.file is not None and self.direction == "upload" and not self.bidir:
            try:  # iperf3 3.12: -F alone is -n of the file's size (a missing file: the test's
                self.nbytes = os.stat(self.file).st_size or None  # error, when it opens it)
            except OSError:
                pass
        if not ends and self.nbytes is None:
            self.seconds = iperf3.DEFAULT_TIME
        if not 0 <= self.omit <= iperf3.MAX_OMIT:
            raise ValueError(f"-O must be 0..{iperf3.MAX_OMIT} s (iperf3's bound), got {self.omit}")
        if self.omit and self.counted:
            raise ValueError(
                "-O with -n or -k is not built here (-O omits the first seconds of a -t test)"
            )
        if self.cport is not None and not 1 <= self.cport <= 65536 - self.sockets:
            raise ValueError(
                f"--cport must be 1..65535 with room for the {self.sockets} streams' ports "
                f"(cport + 0..{self.sockets - 1}), got {self.cport}"
            )
        if self.seconds is not None and not 0 < self.seconds <= 86400:
            raise ValueError(f"-t must be 0 < T <= 86400 s, got {self.seconds:g}")
        if self.nbytes is not None and self.nbytes <= 0:
            raise ValueError(f"-n must be positive, got {self.nbytes}")
        if self.blocks is not None and self.blocks <= 0:
            raise ValueError(f"-k must be positive, got {self.blocks}")
        if not 1 <= self.streams <= iperf3.MAX_STREAMS:
            raise ValueError(
                f"-P must be 1..{iperf3.MAX_STREAMS} (iperf3's maximum), got {self.streams}"
            )
        if self.interval and not iperf3.MIN_INTERVAL <= self.interval <= iperf3.MAX_INTERVAL:
            raise ValueError(
                f"-i must be 0 or {iperf3.MIN_INTERVAL:g}..{iperf3.MAX_INTERVAL:g} s "
                f"(iperf3's bounds), got {self.interval:g}"
            )
        if self.bitrate is not None and self.bitrate < 0:
            raise ValueError(f"-b must not be negative, got {self.bitrate:g}")
        top = iperf3.MAX_UDP_BLOCK if self.udp else 16 << 20
        least = 16 if self.udp else 1
        if self.length is not None and not least <= self.length <= top:
            raise ValueError(f"-l must be {least}..{top} bytes, got {self.length}")
        if self.file is not None and self.bidir:
            raise ValueError(
                "-F with --bidir is not built: iperf3 3.12 opens the file for writing, "
                "emptying it, for its receiving streams while its sending streams read it "
                "(it sent nothing of a 1 MB file, and left 128 KiB of what came in it)"
            )
        if self.connect_timeout is not None and not 0 < self.connect_timeout <= 3600:
            raise ValueError(
                f"--connect-timeout must be 1..3600000 ms, got {self.connect_timeout * 1e3:g}"
            )

    @property
    def counted(self) -> bool:
        """The test ends on a count (-n or -k), not a time."""
        return self.nbytes is not None or self.blocks is not None

    @property
    def sockets(self) -> int:
        """Data connections: `streams`, twice that with --bidir."""
        return 2 * self.streams if self.bidir else self.streams

    def direction_of(self, k: int) -> str:
        """The direction of data stream k (from 0): --bidir's first half sends (iperf3's
        TX-C), the second receives (RX-C)."""
        if self.bidir:
            return "upload" if k < self.streams else "download"
        return self.direction

    @property
    def block(self) -> int:
        if self.length:
            return self.length
        return iperf3.DEFAULT_UDP_BLOCK if self.udp else iperf3.BLOCK

    @property
    def rate(self) -> float | None:
        """bit/s per stream, None: as fast as it goes."""
        if self.bitrate:
            return self.bitrate
        return float(iperf3.DEFAULT_UDP_RATE) if self.udp and self.bitrate is None else None


@dataclass(slots=True)
class _Flow:
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
    closed: bool = False
    omitted_bytes: int = 0  # -O: counted in the pre-test (not in the totals)
    omitted_packets: int = 0
    omit_mark: tuple[int, int, int] | None = None  # UDP download: (lost, packets, ooo) at -O's end
    eof: bool = False  # -F: its file is read to the end
    disk: DiskFile | None = None  # -F: the file, as this stream reads or writes it
    udp: UdpReceiver = field(default_factory=UdpReceiver)
    reply: Deferred[None] | None = None  # UDP: the server's answer to the connect datagram
    reads: Reads | None = None  # TCP download -n/-k: iperf3's reads, modelled


@dataclass(slots=True)
class _TcpStats:
    """A stream's TCP_INFO samples as iperf3's sender statistics (its -J end.streams[]
    .sender: max_snd_cwnd and max_snd_wnd in bytes, max_rtt, min_rtt, mean_rtt in µs, the
    mean an integer division as iperf3's)."""

    max_snd_cwnd: int = 0
    max_snd_wnd: int = 0
    max_rtt: int = 0
    min_rtt: int = 0
    rtt_sum: int = 0
    count: int = 0

    def add(self, info: Any) -> None:
        self.max_snd_cwnd = max(self.max_snd_cwnd, info.cwnd_bytes)
        self.max_snd_wnd = max(self.max_snd_wnd, info.snd_wnd)
        self.max_rtt = max(self.max_rtt, info.rtt)
        self.min_rtt = info.rtt if not self.count else min(self.min_rtt, info.rtt)
        self.rtt_sum += info.rtt
        self.count += 1

    def fields(self) -> dict[str, int]:
        return {"max_snd_cwnd": self.max_snd_cwnd, "max_snd_wnd": self.max_snd_wnd,
                "max_rtt": self.max_rtt, "min_rtt": self.min_rtt,
                "mean_rtt": self.rtt_sum // self.count if self.count else 0}  # fmt: skip


@dataclass(slots=True)
class TimedResult:
    spec: TimedSpec
    server: str
    port: int
    seconds: float | None = None  # the test's span (TEST_START to its end), endpoint time
    streams: list[dict[str, Any]] = field(default_factory=list)
    late: tuple[int, int, float] | None = None  # scheduled sends: (late, tagged, worst ms)
    stopped: bool = False  # ended early when asked (`stopping`: Ctrl-C)
    pcap_dropped: int = 0  # --pcap: data packets past its bound, not in the file
    server_output: str | dict[str, Any] | None = None  # --get-server-output: the server's
    remote: dict[str, Any] = field(default_factory=dict)  # its CPU figures and congestion
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        s = self.spec
        out: dict[str, Any] = {
            "type": "throughput",
            "direction": "bidir" if s.bidir else s.direction,
            "server": self.server,
            "port": self.port,
            "protocol": "udp" if s.udp else "tcp",
            "parallel": s.streams,
            "time": s.seconds,
            "bytes": s.nbytes,
            "interval": s.interval,
            "length": s.block,
        }
        if s.nbytes is not None:
            out["bytes_limit"] = s.nbytes  # -n (`bytes` becomes what was moved)
        if s.blocks is not None:
            out["blocks"] = s.blocks
        if s.rate:
            out["bitrate"] = s.rate
        if s.omit:
            out["omit"] = s.omit
        if s.cport is not None:
            out["cport"] = s.cport
        if self.error is not None:
            out["error"] = self.error
            return out
        if s.bidir:
            out["bidir"] = True
            return self._bidir_dict(out)
        ours, theirs = "receiver", "sender"
        if s.direction == "upload":
            ours, theirs = theirs, ours
        total = {side: _sum([st[side] for st in self.streams], s.udp) for side in (ours, theirs)}
        out.update(
            seconds=self.seconds,
            bytes=total[ours]["bytes"],
            mbit_s=total["receiver"]["mbit_s"],
            method="ndata-stamps" if s.direction == "download" else "iperf3-server",
            server_bytes=total[theirs]["bytes"],
            server_seconds=total[theirs]["seconds"],
            server_mbit_s=total[theirs]["mbit_s"],
            endpoint=ours,
            streams=self.streams,
            sum=total,
        )
        if s.direction == "upload":
            out["sender_mbit_s"] = total["sender"]["mbit_s"]
        return self._ending(out)

    def _ending(self, out: dict[str, Any]) -> dict[str, Any]:
        """`out` with how the test ended: stopped early, and timed sends that left late."""
        if self.stopped:
            out["stopped"] = True
        if self.pcap_dropped:
            out["pcap_dropped"] = self.pcap_dropped
        if isinstance(self.server_output, str):
            out["server_output_text"] = self.server_output
        elif self.server_output is not None:
            out["server_output_json"] = self.server_output
        if self.spec.extra_data is not None:
            out["extra_data"] = self.spec.extra_data
        if self.remote:
            out["server_info"] = self.remote
        if self.late is not None:
            out.update(late_sends=self.late[0], tagged_sends=self.late[1],
                       late_max_ms=self.late[2])  # fmt: skip
        return out

    def _bidir_dict(self, out: dict[str, Any]) -> dict[str, Any]:
        """--bidir: the sending streams (TX-C: the endpoint's ntags, the server's receiver
        figure) and the receiving ones (RX-C: the endpoint's stamps, the server's sender
        figure) summed apart, as iperf3's sum_sent/sum_received and their _bidir_reverse."""
        udp = self.spec.udp
        tx = [st for st in self.streams if st["role"] == "TX-C"]
        rx = [st for st in self.streams if st["role"] == "RX-C"]
        sums = {role: {side: _sum([st[side] for st in group], udp)
                       for side in ("sender", "receiver")}
                for role, group in (("TX-C", tx), ("RX-C", rx))}  # fmt: skip
        out.update(
            seconds=self.seconds,
            bytes=sums["TX-C"]["sender"]["bytes"],  # what the endpoint sent
            mbit_s=sums["TX-C"]["receiver"]["mbit_s"],  # the server's figure for it
            bytes_reverse=sums["RX-C"]["receiver"]["bytes"],  # what the endpoint received
            mbit_s_reverse=sums["RX-C"]["receiver"]["mbit_s"],  # the endpoint's stamps
            method="bidir",
            endpoint="TX-C sender, RX-C receiver",
            streams=self.streams,
            sum=sums["TX-C"],
            sum_reverse=sums["RX-C"],
        )
        return self._ending(out)


def _sum(sides: list[dict[str, Any]], udp: bool) -> dict[str, Any]:
    nbytes = sum(x["bytes"] for x in sides)
    seconds = max((x["seconds"] for x in sides), default=0.0)
    out: dict[str, Any] = {
        "bytes": nbytes,
        "seconds": seconds,
        "mbit_s": nbytes * 8 / seconds / 1e6 if seconds > 0 else None,
    }
    if sides and all("retransmits" in x for x in sides):
        out["retransmits"] = sum(x["retransmits"] for x in sides)
    if udp:
        out["packets"] = sum(x.get("packets", 0) for x in sides)
        if all("lost" in x for x in sides):
            out["lost"] = sum(x["lost"] for x in sides)
            out["jitter_ms"] = sum(x["jitter_ms"] for x in sides) / max(len(sides), 1)
    return out


def _interval_sum(streams: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    nbytes = sum(st["bytes"] for st in streams)
    return {"bytes": nbytes, "packets": sum(st["packets"] for st in streams),
            "bits_per_second": nbytes * 8 / seconds if seconds > 0 else 0.0}  # fmt: skip


def _side(nbytes: int, seconds: float, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bytes": nbytes,
        "seconds": round(seconds, 6),
        "mbit_s": nbytes * 8 / seconds / 1e6 if seconds > 0 else None,
    }
    out.update(extra)
    return out


class _Test:
    """One test's data streams once the server asked for them."""

    def __init__(
        self,
        session: EndpointSession,
        spec: TimedSpec,
        addr: Any,
        port: int,
        ctl: _Control,
        on_interval: OnInterval | None,
        progress: OnProgress | None,
    ) -> None:
        self.session, self.spec, self.addr, self.port, self.ctl = session, spec, addr, port, ctl
        self.on_interval = on_interval
        self.progress = progress
        self.flows: list[_Flow] = []
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
        self.should_stop: Callable[[], bool] | None = None  # polled: wrap up (Ctrl-C)
        self.stopped = False
        self.ending = False  # TEST_END went with sends still queued: their failures are moot
        self._stop_timer: Any = None
        self.tagged = self.late = self.late_max = 0  # scheduled sends: tagged, late, worst ns
        self.awaiting = 0  # upload: ntags asked for and not come yet
        self.heard = 0.0  # download: when the last data notification came (controller s)
        self.counted = False  # the figures are final: later notifications are not counted
        self.early: list[tuple[_Flow, Ndata]] = []  # download data seen before `started`
        self.marks: dict[int, tuple[int, int]] = {}  # UDP download: (lost, packets) so far
        # TCP upload (and --bidir): each interval's Retr/Cwnd sampled (SKT_TCPINFO) before
        # it is shown; `emitting` keeps the intervals in order. `retrans`: each stream's
        # last total; `rtts`: each stream's samples' maxima, minimum RTT and sum (-J's
        # max_snd_cwnd, max_snd_wnd, max_rtt, min_rtt, mean_rtt)
        self.sample_tcp = not spec.udp and (spec.direction == "upload" or spec.bidir)
        self.emitting: Deferred[None] | None = None
        self.retrans: dict[int, int] = {}
        self.rtts: dict[int, _TcpStats] = {}
        self.capture: TimedCapture | None = None  # --pcap: the data streams' packets
        self.final: Deferred[dict[int, Any]] | None = None  # the sample as the test ended
        self.disks: list[DiskFile] = []  # -F: the file as each stream opened it
        # -n/-k over TCP: what the server sends in all (then every read in progress ends),
        # and whether iperf3's reads reached the count (later data is not counted)
        self.rx_total: int | None = None
        if spec.counted and not spec.udp:
            self.rx_total = server_total(spec.nbytes, spec.blocks, spec.block)
        self.read_all = False

    # ---------------------------------------------------------------- streams

    async def open(self, key: bytes) -> None:
        spec, session = self.spec, self.session
        family = Family.IP6 if self.addr.version == 6 else Family.IP4
        info = await read_system_info(session)
        n = spec.sockets
        rbuf = max(256 << 10, min(RBUF, (info.bufmax - info.bufused) // (n + 1)))
        if not spec.udp:  # see RX_TOTAL (a sending stream receives nothing)
            rbuf = max(NDATA_MAX, min(rbuf, RX_TOTAL // spec.streams))
        for i, (sid, label) in enumerate(
            zip(iperf3.stream_ids(n), iperf3.display_ids(n), strict=True)
        ):
            lport = spec.cport + i if spec.cport is not None else 0
            try:
                sktid = session.free_sktid()
                if spec.udp:
                    sock = await session.nopen_udp(sktid, family=family, rbufsz=rbuf,
                                                   laddr=spec.bind, lport=lport,
                                                   buffer=False)  # fmt: skip
                else:
                    sock = await session.nopen_tcp_connect(
                        sktid,
                        self.addr,
                        self.port,
                        laddr=spec.bind,
                        rbufsz=rbuf,
                        lport=lport,
                        buffer=False,
                    )
            except RequestFailed as e:
                if lport and e.name != "ENORES":
                    raise ThroughputError(
                        f"--cport {spec.cport}: the endpoint could not open stream {i + 1} "
                        f"from its port {lport}: {e} (the port in use?)"
                    ) from None
                if e.name == "ENORES":
                    raise ThroughputError(
                        f"-P {spec.streams}: the endpoint refused stream {i + 1} (ENORES: its "
                        f"max_socket_count, the certificate's socket quota, is used up with "
                        f"{i + 1} sockets open); ask for fewer streams"
                    ) from None
                raise
            except ControllerError as e:
                raise ThroughputError(
                    f"-P {spec.streams}: stream {i + 1} cannot be opened: {e} (the endpoint's "
                    "socket ids, 256 a session, are shared with the control connection)"
                ) from None
            flow = _Flow(sid, label, sktid, spec.direction_of(i))
            flow.disk = self.disks[i] if self.disks else None
            if self.rx_total is not None and flow.direction == "download":
                flow.reads = Reads(spec.block)
            self.flows.append(flow)
            sock.add_callback(partial(self._note, flow))
            if spec.udp and self.capture is not None:
                sinfo = await read_socket_info(session, sktid)
                local = sinfo.laddr
                if local is None or local.is_unspecified:  # unbound: the endpoint's address
                    mine = [a for a in info.addresses if a.version == self.addr.version]
                    local = self.addr if self.addr.is_loopback or not mine else mine[0]
                self.capture.udp(label, local, sinfo.lport, self.addr, self.port)
            if spec.udp:
                flow.reply = Deferred()
                try:
                    await session.nsend(sktid, iperf3.UDP_CONNECT_MSG, to=(self.addr, self.port))
                except BaseException:
                    flow.reply.addErrback(lambda _: None)
                    flow.reply.cancel()
                    raise
                flow.reply.addTimeout(CONNECT_WAIT, session.reactor)
                try:
                    await flow.reply
                except defer.TimeoutError:
                    raise StreamError(
                        f"the iperf3 server did not answer UDP stream {i + 1}'s connect "
                        f"datagram within {CONNECT_WAIT:g} s (UDP to {self.addr}:{self.port} "
                        "blocked?)"
                    ) from None
            else:
                asked = session.reactor.seconds()
                est = await wait_connected(session, sktid, timeout=CONNECT_WAIT)
                session.nsend(sktid, key).addErrback(lambda _: None)
                if self.capture is not None:
                    sinfo = await read_socket_info(session, sktid)
                    started = est.time - int((session.reactor.seconds() - asked) * 1e9)
                    self.capture.tcp(label, sinfo.laddr or self.addr, sinfo.lport, self.addr,
                                     self.port, min(started, est.time), est.time)  # fmt: skip
                    self.capture.sent(label, est.time, len(key), key)

    def _note(self, flow: _Flow, note: object) -> None:
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
        self.heard = self.session.reactor.seconds()
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

    def _count(self, flow: _Flow, t: int, nbytes: int, packets: int) -> None:
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
                    rec[key] = _interval_sum(
                        [st for st in rec["streams"] if st["role"] == name], rec["seconds"]
                    )
            if omitted:
                rec["omitted"] = True
            elif self.omit_ns:  # counted, after -O's pre-test (iperf3: no second header)
                rec["after_omit"] = True
            if self.sample_tcp:
                sample = self.final  # closed after the test's end: its last sample
                self.emitting = Deferred.fromCoroutine(self._sampled(rec, self.emitting, sample))
            else:
                self.on_interval(rec)

    async def tcp_sample(self) -> dict[int, Any]:
        """Each stream's TCP_INFO now, by label (those the endpoint has: none from an
        endpoint without SKT_TCPINFO, or once the tests's sockets are gone)."""
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
            infos = await self.tcp_sample()
            self.note_sample(infos)
        else:
            infos = await sample  # noted by the caller (the totals take it too)
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
            self.rtts.setdefault(label, _TcpStats()).add(info)

    def _close_omitted(self, end: int | None = None) -> None:
        """-O: the pre-test's last intervals, once the counted test began (or ended)."""
        if self.omitted is not None:
            last = self.counted_from if end is None else min(end, self.counted_from)
            done, self.omitted = self.omitted, None
            for rec in done.finish(last):
                self._emit(rec, omitted=True)

    def started(self, t0: int) -> None:
        self.t0 = t0
        self._begin(t0)
        early, self.early = self.early, []
        for flow, note in early:
            self._note(flow, note)

    def _begin(self, t0: int) -> None:
        """The test's clock from `t0`: -O's pre-test, then T s counted, with intervals."""
        spec = self.spec
        self.counted_from = t0 + self.omit_ns
        if spec.seconds is not None:
            self.stop_at = self.counted_from + int(spec.seconds * 1e9)
            self.end = self.stop_at if spec.direction == "upload" or spec.bidir else None
        if spec.interval:
            labels = [f.label for f in self.flows]
            receives = spec.direction == "download" or spec.bidir
            extra = self._udp_interval if spec.udp and receives else None
            every = int(spec.interval * 1e9)
            self.intervals = Intervals(self.counted_from, every, labels, extra)
            if self.omit_ns:  # iperf3: the pre-test's intervals from 0 too, "(omitted)"
                self.omitted = Intervals(t0, every, labels, extra)

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

    # ---------------------------------------------------------------- download

    async def download(self, timeout: float) -> None:
        spec, clock = self.spec, self.session.reactor
        if spec.seconds is not None:
            # TEST_END is queued at the endpoint for TEST_START + T once that is near (a
            # queued send cannot be taken back: until then a stop can still end it now)
            if await self._wait_until(self.stop_at - int(END_AHEAD_S * 1e9), timeout):
                self.end = self.stop_at  # the endpoint sends TEST_END then (scheduled)
                self.ctl.stream.send(iperf3.state_byte(State.TEST_END), time=self.stop_at)
                if self.sample_tcp:  # --bidir: the sending streams' last TCP_INFO, just
                    ahead = self.stop_at - int(FINAL_SAMPLE_AHEAD_S * 1e9)  # before TEST_END
                    await self._wait_until(ahead, timeout, stoppable=False)
                    self.final = Deferred.fromCoroutine(self.tcp_sample())
                await self._wait_until(self.stop_at, timeout, stoppable=False)
                return
        else:
            self.done.addTimeout(timeout, clock)
            self._watch_stop()
            try:
                await self.done
            except defer.TimeoutError:
                got = sum(f.bytes for f in self.flows if f.direction == "download")
                want = spec.nbytes if spec.nbytes is not None else (spec.blocks or 0) * spec.block
                raise StreamError(
                    f"only {got} of {want} bytes arrived within {timeout:g} s"
                ) from None
            finally:
                if self._stop_timer is not None and self._stop_timer.active():
                    self._stop_timer.cancel()
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

    async def _wait_until(self, end: int, timeout: float, *, stoppable: bool = True) -> bool:
        """Report progress until the endpoint's clock passes `end` (estimated from here);
        False if asked to stop first."""
        clock = self.session.reactor
        now = await read_time(self.session)
        here = clock.seconds()
        deadline = here + (end - now) / 1e9
        limit = here + timeout
        while clock.seconds() < deadline:
            if stoppable and self.should_stop is not None and self.should_stop():
                return False
            if self.progress is not None:
                done = clock.seconds() - here + (now - self.t0) / 1e9
                self.progress(f"{done:.1f}/{self.spec.seconds:g} s")
            if clock.seconds() > limit:
                raise StreamError(f"the test did not end within {timeout:g} s")
            await _sleep(self.session, min(0.1, max(0.001, deadline - clock.seconds())))
        return True

    # ---------------------------------------------------------------- upload

    async def upload(self, timeout: float) -> None:
        spec, session = self.spec, self.session
        clock = session.reactor
        tx = [f for f in self.flows if f.direction == "upload"]  # --bidir: the sending half
        last_word = not spec.bidir  # --bidir: the receiving half's TEST_END ends the test
        rate = spec.rate
        block = spec.block
        before = clock.seconds()
        now = await read_time(session)
        rtt = clock.seconds() - before
        base_here = clock.seconds()

        def endpoint_now() -> int:
            return now + int((clock.seconds() - base_here) * 1e9)

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
        window = max(2 * block, WINDOW // len(tx))
        payload = iperf3.repeating_pattern(block) if spec.repeating_payload else bytes(block)
        limit = clock.seconds() + timeout
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
                        ahead = min(max(HORIZON_S, 4 * rtt), lead + clock.seconds() - base_here)
                        if f.next_time > endpoint_now() + int(ahead * 1e9):
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
                    self._queue(f, data, gap, every, rate)
                    queued_any = more = True
                    if f.sent_packets % 64 == 0:
                        await session.wait_writable()
            if self.should_stop is not None and self.should_stop() and not self.stopped:
                self.stopped = True  # Ctrl-C: no more sends; the test ends with what went
                cut = max(endpoint_now(), self.latest) if rate else self.latest
                self.stop_at = self.end = min(self.stop_at, cut) if self.stop_at else cut
            if all(self._sent_all(f, rate) for f in tx):
                break
            if clock.seconds() > limit:
                raise StreamError(f"the test did not end within {timeout:g} s")
            if self.progress is not None and self.spec.seconds is not None:
                done = max(0, self.latest - self.t0) / 1e9
                self.progress(f"{min(done, self.spec.seconds):.1f}/{self.spec.seconds:g} s")
            if not queued_any or rate:
                self.wake = Deferred()
                timer = clock.callLater(0.01 if rate else 0.05, self._wakeup)
                await self.wake
                if timer.active():
                    timer.cancel()
        if spec.bidir and spec.counted:
            await self._bidir_sent(limit)
            return
        eof = any(f.eof for f in tx)
        if spec.seconds is not None and not rate and not self.stopped and not eof:
            # unpaced -t: TEST_END now, as iperf3's timer sends it with its socket buffer
            # still full; the blocks still queued at the endpoint are not waited for (8 MiB
            # took 0.7 s at 100 Mbit/s). The server counts only until TEST_END.
            self.ending = True
            if last_word:
                self._test_end()
            return
        for d in self.ntags:  # the last sends' ntags: every byte went to the kernel
            d.addTimeout(timeout, clock)
        for d in list(self.ntags):
            try:
                await d
            except defer.TimeoutError:
                raise StreamError(f"the endpoint had not sent the data within {timeout:g} s") \
                    from None  # fmt: skip
        if self.failure is not None:
            raise self.failure
        if last_word:
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
            if clock.seconds() > limit:
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

    def _test_end(self) -> None:
        """TEST_END, after the mreads of the streams' last TCP_INFO (answered in order:
        sampled as the test ends, as iperf3's sender totals; the server may reset the
        connections right after TEST_END)."""
        if self.sample_tcp:
            self.final = Deferred.fromCoroutine(self.tcp_sample())
        self.ctl.send_state(State.TEST_END)

    def _sent_all(self, f: _Flow, rate: float | None) -> bool:
        spec = self.spec
        if spec.counted and (self.stopped or self.done.called):  # --bidir: received all
            return True
        if any(x.eof for x in self.flows):  # -F: a stream's file end ends the test (iperf3's
            return True  # diskfile_send: test->done)
        if spec.nbytes is not None:
            return sum(x.queued for x in self.flows) >= spec.nbytes
        if spec.blocks is not None:  # iperf3's blocks_sent: its writes of -l bytes
            return sum(x.sent_packets for x in self.flows) >= spec.blocks
        if rate:
            return f.next_time >= self.stop_at
        return self.latest >= self.stop_at

    def _queue(self, f: _Flow, payload: bytes, gap: int, every: int,
               rate: float | None) -> None:  # fmt: skip
        spec, session = self.spec, self.session
        size = len(payload)  # -n: whole blocks until N bytes went, as iperf3
        when = f.next_time if rate else 0
        f.sent_packets += 1
        if spec.udp:
            head = iperf3.udp_header(f.sent_packets, when, wide=spec.wide)
            data = head + payload[len(head) : size]
        else:
            data = payload[:size]
        f.queued += size
        f.outstanding += size
        if rate:
            f.next_time += gap
        last = self._sent_all(f, rate)
        tag = not rate or last or f.sent_packets % every == 0
        unit = f.outstanding if tag else 0  # bytes this ntag stands for
        if tag:
            f.outstanding = 0 if rate else f.outstanding
            self.awaiting += 1
        to = (self.addr, self.port) if spec.udp else None
        if when and self.capture is not None:  # a paced send: at its scheduled time
            self.capture.sent(f.label, when, size, data[: self.capture.snap])
        d: Deferred[Any] = session.nsend(f.sktid, data, time=when, ntag=tag, to=to)
        d.addCallback(self._queued, f, size, unit, when)  # then waits for the ntag
        d.addErrback(self._refused)
        self.ntags.append(d)
        while self.ntags[0].called:  # keep those not done yet (awaited at the end); a
            self.ntags.popleft()  # list rebuilt per send took 43 % of the CPU at 8.5k/s

    def _queued(self, q: Any, f: _Flow, size: int, unit: int, when: int) -> Deferred[Ntag] | None:
        if q.ntag is None:
            return None
        return q.ntag.addCallback(self._sent, f, size, unit, when)

    def _sent(self, tag: Ntag, f: _Flow, size: int, unit: int, when: int) -> Ntag:
        spec = self.spec
        self.awaiting -= 1
        if not when and self.capture is not None:  # unpaced: when it went to the kernel
            self.capture.sent(f.label, tag.time, size, bytes(min(size, self.capture.snap)))
        if when:  # a scheduled send: did it leave on time?
            self.tagged += 1
            if tag.time - when > LATE_NS:
                self.late += 1
                self.late_max = max(self.late_max, tag.time - when)
        if spec.rate:
            nbytes, packets = unit, 0
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
        if self.failure is None and not self.ending:
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

    def _wakeup(self) -> None:
        w, self.wake = self.wake, None
        if w is not None and not w.called:
            w.callback(None)

    # ---------------------------------------------------------------- results

    def figures(self) -> list[tuple[int, int, int, float]]:
        seconds = self.seconds()
        return [(f.sid, f.queued - f.omitted_bytes, f.sent_packets - f.omitted_packets, seconds)
                if f.direction == "upload" else (f.sid, f.bytes, f.packets, seconds)
                for f in self.flows]  # fmt: skip

    def seconds(self) -> float:
        """The counted test's span (after -O's pre-test)."""
        begin = max(self.t0, self.counted_from)
        end = self.end if self.end is not None else max(self.latest, begin)
        return max(0, end - begin) / 1e9

    def _udp_counts(self, f: _Flow) -> tuple[int, int, int]:
        """A UDP download stream's (lost, packets, out of order) after -O's pre-test."""
        mark = f.omit_mark if self.omit_ns else (0, 0, 0)
        if mark is None:  # nothing came after the pre-test
            mark = (f.udp.lost, f.udp.packets, f.udp.out_of_order)
        return (f.udp.lost - mark[0], f.udp.packets - mark[1], f.udp.out_of_order - mark[2])

    async def drained(self, quiet: float = QUIET_S, limit: float = 5.0) -> None:
        """Download: wait until the data notifications stop (`quiet` s without one). The
        kernel stamps a packet when it arrives, the endpoint reads it when it can: data in
        by the test's end may still be on its way to the controller."""
        clock = self.session.reactor
        give_up = clock.seconds() + limit
        receives = self.spec.direction == "download" or self.spec.bidir
        while receives and clock.seconds() < give_up:
            wait = self.heard + quiet - clock.seconds()
            if wait <= 0:
                break
            await _sleep(self.session, wait)

    def finish(self) -> None:
        self.counted = True
        self._close_omitted(self.end if self.end is not None else self.latest)
        if self.intervals is not None and (self.end or self.latest) >= self.counted_from:
            end = self.end if self.end is not None else self.latest
            for rec in self.intervals.finish(end):
                self._emit(rec)

    def streams(
        self, server: dict[int, dict[str, float]], tcp: dict[int, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Both sides' figures per stream; `tcp`: TCP upload, the streams' TCP_INFO at the
        end (the sender's retransmits, iperf3's Retr)."""
        spec, seconds = self.spec, self.seconds()
        out = []
        for f in self.flows:
            theirs = server.get(f.sid)
            if theirs is None:
                raise Iperf3Error(
                    f"the iperf3 server {self.ctl.peer}: its results lack stream {f.sid}"
                )
            mine: dict[str, Any]
            if f.direction == "download":
                extra: dict[str, Any] = {}
                theirs_extra: dict[str, Any] = {}
                if spec.udp:
                    lost, packets, ooo = self._udp_counts(f)
                    extra = {"packets": packets, "lost": lost,
                             "jitter_ms": round(f.udp.jitter * 1e3, 6),
                             "out_of_order": ooo}  # fmt: skip
                    # the server's total less what we saw in -O's pre-test, as iperf3's
                    # client (3.12: the server's results count the pre-test in)
                    pre = f.udp.packets - packets
                    theirs_extra = {"packets": max(0, int(theirs["packets"]) - pre)}
                mine = _side(f.bytes, seconds, **extra)
                if not spec.udp and theirs.get("retransmits", -1) >= 0:
                    theirs_extra["retransmits"] = int(theirs["retransmits"])  # the server's count
                if spec.bidir and f.label in self.rtts:  # iperf3 --bidir: its receiving
                    theirs_extra.update(self.rtts[f.label].fields())  # socket's, as native
                other = _side(int(theirs["bytes"]), theirs["seconds"], **theirs_extra)
                out.append({"id": f.label, "sender": other, "receiver": mine})
                if spec.bidir:
                    out[-1]["role"] = "RX-C"
            else:
                extra = {"packets": f.packets} if spec.udp else {}
                if tcp is not None and f.label in tcp:
                    extra["retransmits"] = tcp[f.label].total_retrans
                    if f.label in self.rtts:
                        extra.update(self.rtts[f.label].fields())
                mine = _side(f.bytes, seconds, **extra)
                extra = {}
                if spec.udp:  # the server's total less our pre-test's sends, as iperf3's
                    pre = f.omitted_packets
                    extra = {"packets": max(0, int(theirs["packets"]) - pre),
                             "lost": int(theirs["errors"]),
                             "jitter_ms": round(theirs["jitter"] * 1e3, 6)}  # fmt: skip
                other = _side(int(theirs["bytes"]), theirs["seconds"], **extra)
                out.append({"id": f.label, "sender": mine, "receiver": other})
                if spec.bidir:
                    out[-1]["role"] = "TX-C"
        return out

    async def _udp_local(self) -> Any:
        """The address an unbound UDP socket sends from (iperf3 connects its UDP sockets and
        shows that one): -B's, the server's on loopback, else the endpoint's first of its
        family."""
        if self.spec.bind is not None:
            return parse_address(self.spec.bind)
        if self.addr.is_loopback:
            return self.addr
        mine = [a for a in (await read_system_info(self.session)).addresses
                if a.version == self.addr.version]  # fmt: skip
        return mine[0] if mine else None

    async def connected(self, key: bytes = b"") -> dict[str, Any]:
        """iperf3's `connected` list: each stream's local and remote address and port (the
        endpoint's side; an unbound UDP socket the address it sends from), and the test's
        cookie (iperf3 -V and -J show it)."""
        infos = [read_socket_info(self.session, f.sktid) for f in self.flows]
        try:  # iperf3 -V's "TCP MSS" and -J's tcp_mss_default: the control connection's
            ctl_info = await read_tcp_info(self.session, self.ctl.stream.sktid)
        except ControllerError:
            ctl_info = None
        streams = []
        for f, d in zip(self.flows, infos, strict=True):
            info = await d
            local = info.laddr
            if self.spec.udp and (local is None or local.is_unspecified):
                local = await self._udp_local()
            streams.append({"id": f.label, "local_host": str(local or ""),
                            "local_port": info.lport, "remote_host": str(self.addr),
                            "remote_port": self.port})  # fmt: skip
        return {
            "type": "connected",
            "server": str(self.addr),
            "port": self.port,
            "direction": "bidir" if self.spec.bidir else self.spec.direction,
            "protocol": "udp" if self.spec.udp else "tcp",
            "streams": streams,
            "cookie": key.rstrip(b"\0").decode(errors="replace"),
            # 0: an endpoint without SKT_TCPINFO (the reference)
            "tcp_mss": ctl_info.snd_mss if ctl_info is not None else 0,
            # the test as the server was told (iperf3 -V's "Starting Test" line)
            "parallel": self.spec.streams, "length": self.spec.block, "omit": self.spec.omit,
            "time": self.spec.seconds, "bytes_limit": self.spec.nbytes,
            "blocks": self.spec.blocks, "bitrate": self.spec.rate,
        }  # fmt: skip

    async def close(self) -> None:
        for disk in self.disks:
            disk.close()
        for d in self.ntags:
            d.addErrback(lambda _: None)
        for e in (self.emitting, self.final):  # a test that failed: samples not awaited
            if e is not None:
                e.addErrback(lambda _: None)
        for f in self.flows:
            if self.session.find_socket(f.sktid) is not None:
                try:
                    await self.session.nclose(f.sktid)
                except ControllerError:
                    pass


def _server_results(
    results: dict[str, Any],
) -> tuple[dict[int, dict[str, float]], str | dict[str, Any] | None, dict[str, Any]]:
    """The server's figures per stream, its own report (--get-server-output), and what it
    says of itself (-J's remote CPU figures and congestion control)."""
    return iperf3.server_streams(results), iperf3.server_output(results), iperf3.remote(results)


async def _bind_refused(session: EndpointSession, bind: str, server: Any) -> str | None:
    """-B: None when `bind` is one of the endpoint's addresses, of the server's family;
    else the one line saying why, naming the endpoint's addresses (iperf3 would fail its
    bind(): "Cannot assign requested address")."""
    import ipaddress

    try:
        want = ipaddress.ip_address(bind)
    except ValueError:
        return f"-B {bind}: not an IP address (the endpoint's local address is wanted)"
    mine = (await read_system_info(session)).addresses
    if want not in mine:
        listed = ", ".join(str(a) for a in mine) or "none"
        return (
            f"-B {bind}: not an address of the endpoint (its addresses: {listed}); iperf3 "
            "would fail to bind it (Cannot assign requested address)"
        )
    if want.version != server.version:
        return (
            f"-B {bind}: an IPv{want.version} address, but the server {server} is "
            f"IPv{server.version}"
        )
    return None


class DiskFile:
    """iperf3's -F (3.12's diskfile_send/_recv), one stream's: each stream opens the file
    itself. A sender sends it from its start in blocks of -l bytes, the last one short, and
    the test ends at its end (-F alone: at the streams' -n of the file's size, in whole
    blocks); a receiver writes what it read from the file's start (emptied first), over
    what the other streams wrote, each write(2) as it comes, as iperf3's."""

    def __init__(self, path: str, *, sending: bool) -> None:
        # unbuffered for writing: the streams' writes land in the file in the order made
        self.f = open(path, "rb" if sending else "wb", buffering=-1 if sending else 0)  # noqa: SIM115
        self.ahead: bytes | None = None  # the next block, read ahead to know the last
        self.done = False  # the block returned last was the file's last

    def block(self, size: int) -> bytes | None:
        data = self.f.read(size) if self.ahead is None else self.ahead
        if not data:
            self.done = True
            return None
        self.ahead = self.f.read(size)
        self.done = not self.ahead
        return data

    def write(self, data: bytes) -> None:
        self.f.write(data)

    def close(self) -> None:
        self.f.close()


async def _both(*steps: Any) -> None:
    """Run coroutines at once; the first failure is raised, the others cancelled (a
    refused upload half must not leave the receiving half to send TEST_END, or poll the
    endpoint's clock, after the test ended)."""
    ds = [Deferred.fromCoroutine(step) for step in steps]
    try:
        await defer.gatherResults(ds, consumeErrors=True)
    except defer.FirstError as e:
        for d in ds:
            d.cancel()  # a no-op on those done
        e.subFailure.raiseException()


@deferred_api
async def timed_test(
    session: EndpointSession,
    server: AddressLike,
    port: int = DEFAULT_PORT,
    *,
    spec: TimedSpec,
    timeout: float | None = None,
    on_interval: OnInterval | None = None,
    progress: OnProgress | None = None,
    stopping: Callable[[], bool] | None = None,
    on_connected: OnInterval | None = None,
    recorder: PcapRecorder | None = None,
) -> TimedResult:
    """One iperf3 test as `spec` says, timed by the endpoint. `on_interval` gets each -i
    interval as it completes ({"start", "end", "seconds", "streams": [{"id", "bytes",
    "packets", "bits_per_second"}], "sum"}). `stopping` is polled: once true the test
    ends early with what was measured, as iperf3 on Ctrl-C. `on_connected` gets the
    streams' addresses once they are open (iperf3's `connected`, type "connected").
    `timeout` bounds the transfer
    (default: the test's time + 30 s). `recorder` gets the control connection's packets and
    the data streams' (`throughput_pcap`: payloads cut to 64 bytes, built after the test;
    `pcap_dropped` in the record counts those past its bound). Failures after the start
    come back in `error`; a spec iperf3
    would refuse raises ValueError, one the endpoint cannot serve ThroughputError."""
    spec.check()
    addr = parse_address(server)
    if timeout is None:
        timeout = (spec.seconds or 0) + 30.0
    result = TimedResult(spec, str(addr), port)
    if spec.bind is not None:
        result.error = await _bind_refused(session, spec.bind, addr)
        if result.error is not None:
            return result
    try:
        ctl, key = await _admitted(session, addr, port, recorder, laddr=spec.bind,
                                   timeout=spec.connect_timeout)  # fmt: skip
    except Iperf3Error as e:
        result.error = str(e)
        return result
    except ControllerError as e:
        result.error = connect_failure(e, addr, port)
        return result
    test = _Test(session, spec, addr, port, ctl, on_interval, progress)
    test.should_stop = stopping
    if spec.file is not None:
        try:
            for _ in range(spec.streams):
                test.disks.append(DiskFile(spec.file, sending=spec.direction == "upload"))
        except OSError as e:
            result.error = f"-F {spec.file}: {e.strerror or e}"
            for disk in test.disks:
                disk.close()
            await ctl.stream.close()
            return result
    if recorder is not None:
        test.capture = TimedCapture(recorder)
    try:
        params = iperf3.timed_parameters(
            udp=spec.udp, seconds=spec.seconds, nbytes=spec.nbytes, blocks=spec.blocks,
            streams=spec.streams,
            reverse=spec.direction == "download" and not spec.bidir, length=spec.block,
            bitrate=spec.rate, wide_counters=spec.wide, omit=spec.omit, bidir=spec.bidir,
            extra_data=spec.extra_data, get_server_output=spec.server_output,
            repeating_payload=spec.repeating_payload, authtoken=spec.authtoken,
        )  # fmt: skip
        ctl.stream.send(iperf3.encode_json(params))
        try:
            await ctl.expect(State.CREATE_STREAMS)
        except Iperf3Error as e:  # iperf3 3.12's server fails the test, saying nothing more
            if spec.authtoken is None or "failed" not in str(e):
                raise
            raise Iperf3Error(
                f"{e}: test authorization failed (iperf3's words): a user, password or key "
                "the server does not take, or clocks further apart than its skew threshold"
            ) from None
        await test.open(key)
        if on_connected is not None:
            on_connected(await test.connected(key))
        await ctl.expect(State.TEST_START, timeout=CONNECT_WAIT)
        test.started(ctl.time)
        await ctl.expect(State.TEST_RUNNING)
        if spec.bidir:  # both at once; the receiving half's TEST_END ends the test
            await _both(test.upload(timeout), test.download(timeout))
        elif spec.direction == "download":
            await test.download(timeout)
        else:
            await test.upload(timeout)
        await ctl.expect(State.EXCHANGE_RESULTS, timeout=timeout)
        await test.drained()
        test.finish()
        tcp = await test.final if test.final is not None else None  # the sender's Retr
        if tcp is not None:
            test.note_sample(tcp)
        if test.emitting is not None:
            await test.emitting  # the intervals shown before the totals
        ctl.stream.send(iperf3.encode_json(iperf3.timed_client_results(test.figures())))
        theirs, output, result.remote = await ctl.read_json(_server_results)
        if spec.server_output:  # an iperf3 3.12 server keeps sending it after one asked
            result.server_output = output
        result.streams = test.streams(theirs, tcp)
        result.seconds = round(test.seconds(), 6)
        result.stopped = test.stopped
        if test.tagged:
            result.late = (test.late, test.tagged, round(test.late_max / 1e6, 3))
        await ctl.expect(State.DISPLAY_RESULTS)
        ctl.send_state(State.IPERF_DONE)
        await _closed_by_server(ctl.stream)
    except (Iperf3Error, StreamError, RequestFailed, ThroughputError) as e:
        result.error = str(e)
    except defer.TimeoutError:
        result.error = f"the endpoint's notifications did not come within {timeout:g} s"
    finally:
        await test.close()
        await ctl.stream.close()
        if test.capture is not None:  # the packets built now, after the test
            result.pcap_dropped = test.capture.dropped
            test.capture.write()
    return result
