"""iperf3's -t, -P, -u, -b, -i through the scripted endpoint against a scripted iperf3
server (measure/throughput_timed.py), and the sans-IO pieces in measure/iperf3.py: the
parameters and stream ids native iperf3 uses, the schedule of paced sends, UDP headers,
loss and jitter, interval reports, and iperf3's text forms."""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import json
import struct
from functools import partial
from itertools import pairwise
from typing import Any

import pytest
from ctl_fakes import BASE_NS
from stream_fakes import Peer, StreamFakeEndpoint, StreamRig
from twisted.internet.task import Clock

from packetlab.measure import iperf3
from packetlab.measure.iperf3 import Intervals, State, UdpReceiver
from packetlab.measure.throughput_timed import TimedSpec, timed_test
from packetlab.wire import Ndata, Nopen, Nsend, Proto, Result, Status

SERVER = ("192.0.2.5", 5201)
RATE = 10e6  # bytes/s per stream of the simulated TCP link
PIECE = 1 << 16


class UdpFakeEndpoint(StreamFakeEndpoint):
    """Also hands each UDP nsend to `udp_peer(sktid, data, time)` at its scheduled time,
    and lets the server send datagrams to a UDP socket (`datagram`). `quota` sockets at
    most (then ENORES, as a certificate's max_socket_count)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.udp_peer: Any = None
        self.quota: int | None = None
        self.lag = 0.0  # data notifications this late (the endpoint reading behind)
        self.links: dict[int, int] = {}  # sktid -> endpoint ns when its link is free
        self.window: int | None = None  # data bytes the endpoint lets go, then ESKTPKTDENY
        self.udp_late = 0  # ns a datagram leaves after its time (a loaded endpoint)
        self.udp_rate: float | None = None  # bytes/s a UDP socket's datagrams leave at

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Nopen) and self.quota is not None and len(self.sockets) >= self.quota:
            self.send(Result(int(Status.ENORES)))
            return
        if isinstance(msg, Nsend) and msg.sktid != 0 and self.window is not None:
            self.window -= len(msg.data)
            if self.window < 0:  # over the send window: refused, as the limits gate does
                self.send(Result(int(Status.ESKTPKTDENY)))
                return
        if isinstance(msg, Nsend) and msg.proto == Proto.UDP:
            self.result()
            when = max(msg.time, self.now()) + self.udp_late
            if self.udp_rate is not None:  # a bottleneck: it waits for the one before
                when = max(when, self.links.get(msg.sktid, 0))
                self.links[msg.sktid] = when + int(len(msg.data) / self.udp_rate * 1e9)
            if msg.tag:
                self.clock.callLater((when - self.now()) / 1e9, self._tag, msg, when)
            self.clock.callLater((when - self.now()) / 1e9, self.udp_peer, msg.sktid,
                                 msg.data, when)  # fmt: skip
            return
        super().handle(msg)

    def _pump(self) -> None:
        """As StreamFakeEndpoint's, with a link per socket (each TCP connection its own
        RATE): the control connection's bytes do not queue behind the data."""
        now = self.now()
        while self.pending and self.pending[0][0] <= now:
            ready, _, msg = heapq.heappop(self.pending)
            when = ready
            if self.rate is not None:
                free = self.links.get(msg.sktid, 0)
                when = max(ready, free) + int(len(msg.data) / self.rate * 1e9)
                self.links[msg.sktid] = when
            self.clock.callLater((when - now) / 1e9, self._sent, msg, when)
        if self.pending:
            self.clock.callLater((self.pending[0][0] - now) / 1e9, self._pump)

    def _notify(self, sktid: int, bit: int, note: Any) -> None:
        if self.lag and sktid != 0 and isinstance(note, Ndata):  # read late, stamped on time
            self.clock.callLater(self.lag, super()._notify, sktid, bit, note)
        else:
            super()._notify(sktid, bit, note)

    def _tag(self, msg: Nsend, when: int) -> None:
        from packetlab.wire import Ntag

        self.send(Ntag(msg.sktid, msg.tag, when))

    def datagram(self, sktid: int, data: bytes) -> None:
        if sktid in self.sockets:
            addr = ipaddress.ip_address(SERVER[0]).packed
            self.send(Ndata(sktid, 4, Proto.UDP, self.now(), data, addr, SERVER[1]))


class TimedIperf3:
    """A scripted `iperf3 -s` for timed, parallel and UDP tests: the first TCP connection
    is the control channel, the others data streams (cookie first); UDP streams are
    accepted on the connect datagram. Reverse TCP: each stream sends RATE bytes/s in
    64 KiB pieces until TEST_END; reverse UDP: datagrams `udp_gap` s apart, numbered from
    1 (`skip` numbers left out: lost). The results give each stream's bytes and, for UDP,
    iperf3's receiver counts."""

    def __init__(self, rig: StreamRig, *, udp_gap: float = 0.001, skip: tuple[int, ...] = ()):
        self.rig = rig
        self.endpoint: UdpFakeEndpoint = rig.endpoint  # type: ignore[assignment]
        self.endpoint.udp_peer = self._udp
        self.udp_gap, self.skip = udp_gap, skip
        self.ctl = Peer()
        self.ctl.received = self._ctl  # type: ignore[method-assign]
        self.cookie = b""
        self.params: dict[str, Any] = {}
        self.client_results: dict[str, Any] = {}
        self.data: list[Peer] = []
        self.cookies: list[bytes] = []
        self.got: list[int] = []  # bytes per stream (after the cookie / every datagram)
        self.udp_sktids: list[int] = []
        self.udp_rx: list[UdpReceiver] = []
        self.datagrams: list[tuple[int, int, bytes]] = []  # (stream, endpoint ns, data)
        self.started = 0.0
        self.ended = 0.0
        self.done = False
        self.conns = 0
        self.end_time = 0  # endpoint ns TEST_END was sent at
        self.extra_results: dict[str, Any] = {}  # more keys of its results (3.12's own)

    def connect(self) -> Peer:
        self.conns += 1
        if self.conns == 1:
            return self.ctl
        peer = Peer()
        i = len(self.data)
        self.data.append(peer)
        self.got.append(0)
        peer.received = partial(self._data, i)  # type: ignore[method-assign]
        return peer

    def state(self, s: State) -> None:
        self.ctl.write(struct.pack("b", s))

    @property
    def streams(self) -> int:
        """Data streams: -P, twice that with --bidir (the second half the server's)."""
        return int(self.params.get("parallel", 1)) * (2 if self.params.get("bidirectional") else 1)

    def _ctl(self, data: bytes) -> None:
        buf = self.ctl.got
        buf += data
        if not self.cookie:
            if len(buf) < iperf3.COOKIE_SIZE:
                return
            self.cookie = bytes(buf[: iperf3.COOKIE_SIZE])
            del buf[: iperf3.COOKIE_SIZE]
            self.state(State.PARAM_EXCHANGE)
        if not self.params and len(buf) >= 4:
            (n,) = struct.unpack(">I", buf[:4])
            if len(buf) < 4 + n:
                return
            self.params = json.loads(bytes(buf[4 : 4 + n]))
            del buf[: 4 + n]
            self.state(State.CREATE_STREAMS)
        if buf[:1] == struct.pack("b", State.TEST_END):
            del buf[:1]
            self.ended = self.rig.clock.seconds()
            self.end_time = self.endpoint.now()
            self.state(State.EXCHANGE_RESULTS)
        if not self.client_results and self.ended and len(buf) >= 4:
            (n,) = struct.unpack(">I", buf[:4])
            if len(buf) < 4 + n:
                return
            self.client_results = json.loads(bytes(buf[4 : 4 + n]))
            del buf[: 4 + n]
            secs = self.ended - self.started
            out = []
            for i, sid in enumerate(iperf3.stream_ids(self.streams)):
                rx = self.udp_rx[i] if self.udp_rx else UdpReceiver()
                out.append({"id": sid, "bytes": self.got[i], "retransmits": -1,
                            "jitter": rx.jitter, "errors": rx.lost, "packets": rx.packets,
                            "start_time": 0, "end_time": secs})  # fmt: skip
            self.ctl.write(iperf3.encode_json({**self.extra_results, "streams": out}))
            self.state(State.DISPLAY_RESULTS)
        if buf[:1] == struct.pack("b", State.IPERF_DONE):
            del buf[:1]
            self.done = True
            self.ctl.close(0.001)

    def _accepted(self) -> None:
        if len(self.cookies) + len(self.udp_sktids) == self.streams:
            self.state(State.TEST_START)
            self.started = self.rig.clock.seconds()
            self.state(State.TEST_RUNNING)
            if self.params.get("reverse") or self.params.get("bidirectional"):
                first = self.streams // 2 if self.params.get("bidirectional") else 0
                for i in range(first, self.streams):
                    if self.params.get("udp"):
                        self.rig.clock.callLater(self.udp_gap, self._datagram, i, 1)
                    else:
                        self.rig.clock.callLater(PIECE / RATE, self._send, i)

    def _data(self, i: int, data: bytes) -> None:
        if len(self.cookies) <= i:
            assert data[: iperf3.COOKIE_SIZE] == self.cookie
            self.cookies.append(data[: iperf3.COOKIE_SIZE])
            data = data[iperf3.COOKIE_SIZE :]
            self._accepted()
        if self.started and not self.ended:
            self.got[i] += len(data)

    def _send(self, i: int) -> None:
        if self.ended:
            return  # like iperf3: its sender stops at TEST_END
        self.data[i].write(b"x" * PIECE)
        self.got[i] += PIECE
        self.rig.clock.callLater(PIECE / RATE, self._send, i)

    def _datagram(self, i: int, count: int) -> None:
        if self.ended:
            return
        size = int(self.params["len"])
        if count not in self.skip:
            head = iperf3.udp_header(count, self.endpoint.now())
            self.endpoint.datagram(self.udp_sktids[i], head + bytes(size - len(head)))
        self.got[i] += size
        self.rig.clock.callLater(self.udp_gap, self._datagram, i, count + 1)

    def _udp(self, sktid: int, data: bytes, when: int) -> None:
        if data == iperf3.UDP_CONNECT_MSG and sktid not in self.udp_sktids:
            self.udp_sktids.append(sktid)
            self.udp_rx.append(UdpReceiver())
            self.got.append(0)
            self.endpoint.datagram(sktid, iperf3.UDP_CONNECT_REPLY)
            self._accepted()
            return
        i = self.udp_sktids.index(sktid)
        self.datagrams.append((i, when, data))
        if self.started and not self.ended:
            count, sent = iperf3.parse_udp_header(data)
            self.udp_rx[i].add(count, sent, when / 1e9)
            self.got[i] += len(data)


def rig_with_server(**kw: Any) -> tuple[StreamRig, TimedIperf3]:
    rig = StreamRig(UdpFakeEndpoint)
    server = TimedIperf3(rig, **kw)
    rig.endpoint.peers[SERVER] = server.connect
    return rig, server


def run(rig: StreamRig, spec: TimedSpec) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    intervals: list[dict[str, Any]] = []
    r = rig.run(timed_test(rig.session, SERVER[0], spec=spec, on_interval=intervals.append))
    return r.to_dict(), intervals


def test_time_limited_download_ends_when_the_endpoint_says() -> None:
    """-t 0.5 -R: TEST_END is an nsend on the control connection scheduled at TEST_START
    + 0.5 s; what arrived by then is counted, in 0.1 s intervals as they complete."""
    rig, server = rig_with_server()
    d, intervals = run(rig, TimedSpec(direction="download", seconds=0.5, interval=0.1))
    assert "error" not in d, d
    assert server.params["reverse"] is True and server.params["tcp"] is True
    assert server.params["time"] == 1 and server.params["num"] == 0  # iperf3: whole seconds
    assert server.params["parallel"] == 1 and server.done
    ends = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 0
            and m.data == struct.pack("b", State.TEST_END)]  # fmt: skip
    start = BASE_NS + int(server.started * 1e9)  # the fake endpoint's clock at TEST_START
    assert len(ends) == 1 and ends[0].time == start + 500_000_000
    assert d["seconds"] == pytest.approx(0.5, abs=1e-6)
    # the fake's 1 ms clock steps slow its pieces (7 ms, not 6.55): the server's own figure
    assert d["mbit_s"] == pytest.approx(d["server_mbit_s"], rel=0.02)
    assert d["mbit_s"] == pytest.approx(RATE * 8 / 1e6, rel=0.1)
    assert d["method"] == "ndata-stamps" and d["endpoint"] == "receiver"
    assert d["streams"][0]["id"] == 5
    assert d["streams"][0]["sender"]["bytes"] == server.got[0]  # the server's figure
    assert [(i["start"], i["end"]) for i in intervals] == [
        (0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5)]  # fmt: skip
    for i in intervals:
        assert i["type"] == "interval" and not i["sender"]
        assert i["streams"][0]["bits_per_second"] == pytest.approx(RATE * 8, rel=0.2)
    assert sum(i["sum"]["bytes"] for i in intervals) == d["bytes"]


def test_intervals_stream_while_the_test_runs() -> None:
    """Each interval is handed over once a stamp past its end came, not at the end."""
    rig, server = rig_with_server()
    seen: list[float] = []
    rig.run(timed_test(rig.session, SERVER[0], spec=TimedSpec(seconds=0.5, interval=0.1),
                       on_interval=lambda rec: seen.append(rig.clock.seconds())))  # fmt: skip
    assert len(seen) == 5
    assert seen[0] < server.ended - 0.3  # the first long before TEST_END


def test_download_counts_data_stamped_in_time_but_read_late() -> None:
    """The kernel stamps data as it arrives; the endpoint may read (and notify) it later,
    after EXCHANGE_RESULTS: it still counts, in the figures and the intervals alike."""
    rig, server = rig_with_server()
    assert isinstance(rig.endpoint, UdpFakeEndpoint)
    rig.endpoint.lag = 0.03
    d, intervals = run(rig, TimedSpec(direction="download", seconds=0.3, interval=0.1))
    assert "error" not in d, d
    assert d["bytes"] == server.got[0]  # every piece the server sent before TEST_END
    assert sum(i["sum"]["bytes"] for i in intervals) == d["bytes"]
    assert len(intervals) == 3


def test_time_limited_upload_counts_blocks_at_their_ntags() -> None:
    rig, server = rig_with_server()
    rig.endpoint.rate = RATE
    d, intervals = run(rig, TimedSpec(direction="upload", seconds=0.5, interval=0.25))
    assert "error" not in d, d
    assert "reverse" not in server.params and server.done
    sends = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 1]
    assert sends[0].data == server.cookies[0]
    assert all(m.tag and m.time == 0 for m in sends[1:])  # unscheduled, each with an ntag
    assert d["sender_mbit_s"] == pytest.approx(RATE * 8 / 1e6, rel=0.05)
    assert d["mbit_s"] == d["sum"]["receiver"]["mbit_s"]  # the server's, as -n uploads
    assert [(i["start"], i["end"]) for i in intervals] == [(0.0, 0.25), (0.25, 0.5)]
    assert all(i["sender"] for i in intervals)
    # queueing stopped once an ntag passed the end: the window's worth more, no more
    assert server.got[0] <= RATE * 0.5 + (8 << 20) + iperf3.BLOCK


def test_time_limited_upload_ends_on_time_on_a_slow_link() -> None:
    """TEST_END goes once an ntag passes TEST_START + T, as iperf3's timer: not after the
    blocks still queued at the endpoint (8 MiB: 8 s at 1 MB/s) went out."""
    slow = 1e6
    rig, server = rig_with_server()
    rig.endpoint.rate = slow
    d, _ = run(rig, TimedSpec(direction="upload", seconds=0.5, interval=0))
    assert "error" not in d, d
    assert server.ended - server.started == pytest.approx(0.5, abs=0.15)
    assert d["sender_mbit_s"] == pytest.approx(slow * 8 / 1e6, rel=0.3)  # 128 KiB steps
    assert d["mbit_s"] == pytest.approx(slow * 8 / 1e6, rel=0.3)


def test_paced_upload_above_the_endpoints_rate_ends_on_time() -> None:
    """-b far above what the endpoint sends (`-b 100G -t 1` on loopback): the stream falls
    behind its schedule, and its due blocks are queued a window at a time, as unpaced
    ones, so TEST_END goes at T (session 28: every due block was queued at once, 47,684
    of them for 0.5 s here, and the test ran on for as long as that took; a real one
    past 20 s)."""
    import signal

    def too_long(*_: Any) -> None:  # (before: still queueing after 100 s of real time)
        raise TimeoutError("the test did not end within 30 s (sends queued without bound)")

    slow = 1e8  # bytes/s: 800 Mbit/s
    rig, server = rig_with_server()
    rig.endpoint.rate = slow
    before = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(30)
    try:
        d, _ = run(rig, TimedSpec(direction="upload", seconds=0.5, bitrate=1e11, interval=0))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
    assert "error" not in d, d
    assert server.ended - server.started == pytest.approx(0.5, abs=0.15)
    sends = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 1]
    # what went in 0.5 s at 800 Mbit/s (381 blocks) and the windows still queued
    assert len(sends) <= 381 + 5 * 64, len(sends)
    assert d["sender_mbit_s"] == pytest.approx(slow * 8 / 1e6, rel=0.3)


def test_a_paced_upload_the_endpoint_cannot_keep_up_with_is_warned() -> None:
    """Session 29: `-b` above what the endpoint sends ran at the endpoint's rate with no
    word but the late-sends note of the text (not with -J); now one stderr line with the
    figure. At a rate the endpoint keeps up with (UDP and TCP), none."""
    from packetlab.cli.run_throughput_rows import pace_warning

    rig, _ = rig_with_server()
    rig.endpoint.rate = 1e8  # bytes/s: 800 Mbit/s
    d, _ = run(rig, TimedSpec(direction="upload", seconds=0.5, bitrate=1e10, interval=0))
    assert "error" not in d, d
    warning = pace_warning(d)
    assert warning is not None and warning.startswith(
        "warning: -b 10.0 Gbits/sec was not met: the endpoint sent "
    ), warning
    got = d["streams"][0]["sender"]
    figure = iperf3.unit(got["bytes"] * 8 / got["seconds"], "bits").strip()
    assert f"sent {figure}/sec (" in warning and "fell behind" in warning
    # the text's late-sends note (its cause: sends reaching the endpoint late) not with it
    from packetlab.cli.run_throughput_rows import timed_rows

    assert d.get("late_sends", 0) > 0 and "timed sends left" not in timed_rows(d)
    for udp in (False, True):
        rig, _ = rig_with_server()
        rig.endpoint.rate = RATE
        spec = TimedSpec(direction="upload", seconds=0.5, bitrate=8e6, udp=udp, interval=0)
        d, _ = run(rig, spec)
        assert "error" not in d and pace_warning(d) is None, d
    assert pace_warning({**d, "stopped": True, "bitrate": 1e12}) is None
    assert pace_warning({**d, "direction": "download", "bitrate": 1e12}) is None


def test_parallel_streams() -> None:
    """-P 3: three data connections, each opened with the cookie; iperf3's stream ids
    1, 3, 4 in the results exchange; [  5], [  7], [  9] and a sum."""
    rig, server = rig_with_server()
    opened: list[dict[str, Any]] = []
    intervals: list[dict[str, Any]] = []
    spec = TimedSpec(direction="download", seconds=0.3, streams=3, interval=0.1)
    r = rig.run(timed_test(rig.session, SERVER[0], spec=spec, on_interval=intervals.append,
                           on_connected=opened.append))  # fmt: skip
    d = r.to_dict()
    (c,) = opened
    assert c["type"] == "connected" and [s["id"] for s in c["streams"]] == [5, 7, 9]
    assert {(s["remote_host"], s["remote_port"]) for s in c["streams"]} == {SERVER}
    assert "error" not in d, d
    assert server.params["parallel"] == 3 and len(server.cookies) == 3
    assert set(server.cookies) == {server.cookie}
    assert [s["id"] for s in server.client_results["streams"]] == [1, 3, 4]
    assert [s["id"] for s in d["streams"]] == [5, 7, 9]
    assert d["mbit_s"] == pytest.approx(d["server_mbit_s"], rel=0.05)
    assert d["sum"]["receiver"]["bytes"] == sum(s["receiver"]["bytes"] for s in d["streams"])
    assert [s["id"] for s in intervals[0]["streams"]] == [5, 7, 9]
    assert intervals[0]["sum"]["bytes"] == sum(s["bytes"] for s in intervals[0]["streams"])


def test_parallel_upload_with_bytes_shares_them() -> None:
    """-n counts all streams together (iperf3's rule); the blocks go to each in turn."""
    rig, server = rig_with_server()
    rig.endpoint.rate = RATE
    n = 4 << 20
    d, _ = run(rig, TimedSpec(direction="upload", nbytes=n, streams=2, interval=0))
    assert "error" not in d, d
    assert server.got == [n // 2, n // 2]
    assert d["bytes"] == n


def test_more_streams_than_the_endpoint_allows() -> None:
    rig, _ = rig_with_server()
    assert isinstance(rig.endpoint, UdpFakeEndpoint)
    rig.endpoint.quota = 3  # the control connection and two data streams
    d, _ = run(rig, TimedSpec(direction="download", seconds=0.2, streams=4))
    assert "ENORES" in d["error"] and "max_socket_count" in d["error"]
    assert "refused stream 3" in d["error"]


def test_udp_upload_is_paced_by_scheduled_sends() -> None:
    """-u -b 8M -l 1000: datagram k of a stream is scheduled at first + k ms, carrying
    iperf3's header (its scheduled time, its number from 1); the server's jitter, lost and
    total come back."""
    rig, server = rig_with_server()
    d, intervals = run(rig, TimedSpec(direction="upload", seconds=0.5, udp=True,
                                     bitrate=8e6, length=1000, interval=0.25))  # fmt: skip
    assert "error" not in d, d
    assert server.params["udp"] is True and server.params["bandwidth"] == 8_000_000
    assert server.params["len"] == 1000
    data = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 1]
    assert data[0].data == iperf3.UDP_CONNECT_MSG
    data = data[1:]
    assert all(len(m.data) == 1000 for m in data)
    gaps = {b.time - a.time for a, b in pairwise(data)}
    assert gaps == {1_000_000}  # 1000 bytes at 8 Mbit/s
    for i, m in enumerate(data[:5]):
        count, sent = iperf3.parse_udp_header(m.data)
        assert count == i + 1 and sent == pytest.approx(m.time / 1e9, abs=1e-6)
    start = data[0].time
    assert data[-1].time < start + 0.5e9 and len(data) == pytest.approx(500, abs=10)
    rx = d["streams"][0]["receiver"]
    assert rx["packets"] == len(data) and rx["lost"] == 0
    assert rx["jitter_ms"] == pytest.approx(0, abs=1e-3)  # float seconds near 1.7e9: 0.1 us
    assert d["streams"][0]["sender"]["packets"] == len(data)
    assert d["mbit_s"] == pytest.approx(8, rel=0.05)
    assert sum(s["packets"] for i in intervals for s in i["streams"]) == len(data)


def test_udp_without_b_is_iperf3s_default_rate() -> None:
    """-u without -b: iperf3 3.12's UDP_RATE, 1024 * 1024 bit/s (`target_bitrate`
    1048576 in native's -J, `bandwidth` in its parameters), told the server and paced at;
    was 1,000,000 (session 28: 4.6 % fewer datagrams than native's `-u -l 1400 -t 10`)."""
    rig, server = rig_with_server()
    d, _ = run(rig, TimedSpec(direction="upload", seconds=0.5, udp=True, length=1024,
                              interval=0.25))  # fmt: skip
    assert "error" not in d, d
    assert server.params["bandwidth"] == 1_048_576
    data = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 1][1:]
    assert {b.time - a.time for a, b in pairwise(data)} == {7_812_500}  # 8192 bits each


@pytest.mark.parametrize("length", [None, 1000], ids=["chosen", "given"])
def test_udp_block_chosen_is_said_to_v(length: int | None) -> None:
    """UDP without -l: the block taken from the control connection is marked in the
    `connected` record, so -V prints 3.12's `Setting UDP block size to N` (session 28)."""
    rig, _ = rig_with_server()
    opened: list[dict[str, Any]] = []
    spec = TimedSpec(direction="upload", seconds=0.2, udp=True, bitrate=1e6, length=length,
                     interval=0.1)  # fmt: skip
    rig.run(timed_test(rig.session, SERVER[0], spec=spec, on_connected=opened.append))
    (c,) = opened
    assert c.get("udp_block_chosen", False) is (length is None), c
    assert length is None or c["length"] == length


def test_udp_download_loss_and_jitter_from_endpoint_stamps() -> None:
    rig, _ = rig_with_server(udp_gap=0.002, skip=(3, 7))
    d, intervals = run(rig, TimedSpec(direction="download", seconds=0.4, udp=True,
                                     length=1200, interval=0.2))  # fmt: skip
    assert "error" not in d, d
    rx = d["streams"][0]["receiver"]
    assert rx["lost"] == 2 and rx["packets"] == pytest.approx(200, abs=3)
    assert rx["jitter_ms"] == pytest.approx(0, abs=1e-3)  # evenly spaced in the fake
    assert intervals[0]["streams"][0]["lost"] == 2
    assert intervals[1]["streams"][0]["lost"] == 0


def test_spec_bounds_as_iperf3() -> None:
    with pytest.raises(ValueError, match="only one test end condition"):
        TimedSpec(seconds=1, nbytes=1 << 20).check()
    with pytest.raises(ValueError, match=r"1\.\.128"):
        TimedSpec(streams=129).check()
    with pytest.raises(ValueError, match=r"0\.1\.\.60"):
        TimedSpec(interval=0.05).check()
    spec = TimedSpec(udp=True)
    spec.check()
    assert spec.seconds == 10 and spec.rate == 1 << 20 and spec.block == 1460
    assert TimedSpec(udp=True, bitrate=0).rate is None  # -b 0: unlimited


def test_block_length_bounds_as_iperf3() -> None:
    """-l in iperf3 3.12's bounds and words (session 21; were 1..16 MiB for TCP, so
    `-l 10M` ran where native refuses, and 16..65499 for UDP, so `-u -l 65507` was
    refused where native sends it); `-l 0` is the default block, as native's."""
    TimedSpec(length=1 << 20).check()
    with pytest.raises(ValueError, match=r"^-l 1048577: block size too large \(maximum = "
                       r"1048576 bytes\), as iperf3$"):  # fmt: skip
        TimedSpec(length=(1 << 20) + 1).check()
    TimedSpec(udp=True, length=65507).check()
    for n in (15, 65508):
        with pytest.raises(ValueError, match=rf"^-l {n}: block size invalid \(minimum = 16 "
                           r"bytes, maximum = 65507 bytes\), as iperf3$"):  # fmt: skip
            TimedSpec(udp=True, length=n).check()
    for udp, block in ((False, 128 * 1024), (True, 1460)):
        spec = TimedSpec(udp=udp, length=0)
        spec.check()
        assert spec.block == block


def test_sans_io_pieces() -> None:
    assert iperf3.stream_ids(1) == [1] and iperf3.stream_ids(4) == [1, 3, 4, 5]
    assert iperf3.display_ids(3) == [5, 7, 9]
    assert iperf3.parse_rate("10M") == 10e6 and iperf3.parse_rate("1.5g") == 1.5e9
    assert iperf3.parse_rate("0") == 0 and iperf3.parse_rate("800") == 800
    for bad in ("xyz", "-5", ""):
        with pytest.raises(ValueError, match="expected a rate"):
            iperf3.parse_rate(bad)
    # (session 29: iperf3 3.12 reads these, the text after the number ignored; they
    # were refused here: tests/unit/measure/test_throughput_cnum.py has its table)
    assert iperf3.parse_rate("10Q") == 10 and iperf3.parse_rate("10M/100") == 10e6
    head = iperf3.udp_header(7, 1_700_000_001_234_567_891)
    assert head == struct.pack(">III", 1_700_000_001, 234_567, 7)
    assert iperf3.parse_udp_header(head) == (7, pytest.approx(1_700_000_001.234567))
    wide = iperf3.udp_header(1 << 40, 5_000_000, wide=True)
    assert iperf3.parse_udp_header(wide, wide=True)[0] == 1 << 40
    p = iperf3.timed_parameters(udp=True, seconds=2.5, nbytes=None, streams=2, reverse=False,
                                length=1460, bitrate=1e6)  # fmt: skip
    assert p == {"udp": True, "omit": 0, "time": 3, "num": 0, "blockcount": 0, "parallel": 2,
                 "len": 1460, "bandwidth": 1000000, "pacing_timer": 1000,
                 "client_version": "3.12"}  # fmt: skip


def test_udp_receiver_counts_as_iperf3() -> None:
    rx = UdpReceiver()
    for count, sent, arrived in [(1, 0.0, 1.0), (2, 0.1, 1.1), (4, 0.3, 1.32), (3, 0.2, 1.4)]:
        rx.add(count, sent, arrived)
    assert (rx.packets, rx.lost, rx.out_of_order) == (4, 0, 1)  # 3 came late: not lost
    # transit 1.0, 1.0, 1.02, 1.2: |D| 0, 0.02, 0.18, each moving J by (|D| - J) / 16
    j = 0.0
    for d in (0.0, 0.02, 0.18):
        j += (d - j) / 16
    assert rx.jitter == pytest.approx(j)


def test_intervals() -> None:
    ms = 1_000_000
    iv = Intervals(1000 * ms, 100 * ms, [5, 7])
    assert iv.add(5, 1010 * ms, 10) == []
    assert iv.add(7, 1050 * ms, 20) == []
    out = iv.add(5, 1230 * ms, 5)  # closes [0, 0.1) and [0.1, 0.2)
    assert [(r["start"], r["end"], r["sum"]["bytes"]) for r in out] == [
        (0.0, 0.1, 30), (0.1, 0.2, 0)]  # fmt: skip
    assert out[0]["streams"] == [
        {"id": 5, "bytes": 10, "packets": 0, "bits_per_second": pytest.approx(800)},
        {"id": 7, "bytes": 20, "packets": 0, "bits_per_second": pytest.approx(1600)},
    ]
    last = iv.finish(1250 * ms)  # the open interval, partial, with bytes
    assert [(r["start"], r["end"], r["sum"]["bytes"]) for r in last] == [(0.2, 0.25, 5)]
    iv = Intervals(0, 100 * ms, [5])
    assert len(iv.finish(205 * ms)) == 2  # a 5 % tail without bytes is dropped, as iperf3


def test_a_stamp_at_an_intervals_end_counts_in_it() -> None:
    """A stamp exactly at an interval's end is in that interval, and at the test's end
    (-t's stop time, -n's last read) in its last line: until session 27 it opened the
    next interval, which `finish` at that very time dropped, its bytes in the totals and
    in no line (seen in a --bidir test over the fake endpoint: 65,536 bytes short)."""
    ms = 1_000_000
    iv = Intervals(0, 100 * ms, [5])
    assert iv.add(5, 50 * ms, 10) == []
    assert iv.add(5, 100 * ms, 20) == []  # the first interval's end: still in it
    out = iv.add(5, 150 * ms, 30)
    assert [(r["start"], r["end"], r["sum"]["bytes"]) for r in out] == [(0.0, 0.1, 30)]
    assert iv.add(5, 200 * ms, 40) == []  # the test's last stamp, at its end
    last = iv.finish(200 * ms)
    assert [(r["start"], r["end"], r["sum"]["bytes"]) for r in last] == [(0.1, 0.2, 70)]


def test_iperf3_text_forms() -> None:
    """Lines as iperf3 3.12 printed them on this machine (see docs/throughput.md)."""
    line = iperf3.report_line(5, 0.0, 0.5, 1006 << 20, 0.5)
    assert line == "[  5]   0.00-0.50   sec  1006 MBytes  16.9 Gbits/sec"
    line = iperf3.report_line(5, 0.0, 1.0, 1277952, 1.000121,
                              iperf3.udp_tail(0.006e-3, 0, 39) + "  receiver")  # fmt: skip
    assert line == ("[  5]   0.00-1.00   sec  1.22 MBytes  10.2 Mbits/sec  0.006 ms  0/39 (0%)"
                    "  receiver")  # fmt: skip
    assert iperf3.report_line("SUM", 0.5, 1.0, 668 << 20, 0.5).startswith(
        "[SUM]   0.50-1.00   sec   668 MBytes  11.2 Gbits/sec"
    )
    assert iperf3.udp_tail(0, 81668, 103950) == "  0.000 ms  81668/103950 (79%)"
    assert iperf3.unit(640 * 1024, "bytes") == " 640 KBytes"


def test_cli_options() -> None:
    from packetlab.cli import run_throughput
    from packetlab.cli.run import RunError

    p = argparse.ArgumentParser(exit_on_error=False)
    run_throughput.configure(p)
    args = p.parse_args(["-c", "192.0.2.5", "-t", "2", "-P", "2", "-u", "-b", "5M"])
    assert run_throughput.timed(args) and args.bitrate == 5e6
    assert not run_throughput.timed(p.parse_args(["-c", "192.0.2.5", "-n", "8M"]))
    with pytest.raises(argparse.ArgumentError, match="expected a rate like 10M"):
        p.parse_args(["-c", "192.0.2.5", "-b", "lots"])
    args = p.parse_args(["-c", "192.0.2.5", "-t", "2", "-n", "8M"])
    with pytest.raises(RunError, match="only one test end condition"):
        run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]
    args = p.parse_args(["-c", "192.0.2.5", "-P", "300"])
    with pytest.raises(RunError, match=r"-P must be 1..128"):
        run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("direction", ["download", "upload"])
def test_a_stop_ends_the_test_early_with_its_figures(direction: str) -> None:
    """Ctrl-C (the `stopping` poll turning true) in a -t 10 test: it ends at once, with the
    figures and the results exchange of what ran, as iperf3 on Ctrl-C."""
    rig, server = rig_with_server()
    rig.endpoint.rate = RATE
    spec = TimedSpec(direction=direction, seconds=10, interval=0.1)
    at = rig.clock.seconds() + 0.35
    got: list[dict[str, Any]] = []
    r = rig.run(timed_test(rig.session, SERVER[0], spec=spec, on_interval=got.append,
                           stopping=lambda: rig.clock.seconds() >= at))  # fmt: skip
    d = r.to_dict()
    assert "error" not in d, d
    assert d["stopped"] is True and server.done
    assert 0.2 < d["seconds"] < 0.5  # the test ran until the stop, not 10 s
    assert d["mbit_s"] == pytest.approx(RATE * 8 / 1e6, rel=0.2)
    assert sum(i["sum"]["bytes"] for i in got) == d["bytes"]
    ends = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 0
            and m.data == struct.pack("b", State.TEST_END)]  # fmt: skip
    assert len(ends) == 1 and ends[0].time == 0  # sent at once, none left scheduled


def test_tcp_bitrate_schedules_the_blocks() -> None:
    """-b for TCP: block k at first + k * len * 8 / rate, sent by the endpoint then."""
    rig, server = rig_with_server()
    rig.endpoint.rate = RATE
    d, _ = run(rig, TimedSpec(direction="upload", seconds=0.5, bitrate=16e6, length=20_000,
                              interval=0))  # fmt: skip
    assert "error" not in d, d
    assert server.params["bandwidth"] == 16_000_000 and server.params["len"] == 20_000
    sends = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 1][1:]
    assert {b.time - a.time for a, b in pairwise(sends)} == {10_000_000}  # 20 kB at 16 Mb/s
    assert len(sends) == 50 and sum(len(m.data) for m in sends) == server.got[0]
    assert d["sender_mbit_s"] == pytest.approx(16, rel=0.01)


def test_udp_server_that_does_not_answer_the_connect_datagram() -> None:
    rig, server = rig_with_server()
    assert isinstance(rig.endpoint, UdpFakeEndpoint)
    rig.endpoint.udp_peer = lambda sktid, data, when: None  # UDP to the server is dropped
    d, _ = run(rig, TimedSpec(direction="upload", seconds=1, udp=True))
    assert d["error"] == (
        "the iperf3 server did not answer UDP stream 1's connect datagram within 10 s "
        "(UDP to 192.0.2.5:5201 blocked?)"
    )
    assert not server.done


def test_sends_over_the_endpoints_window_are_a_clear_error() -> None:
    rig, _ = rig_with_server()
    assert isinstance(rig.endpoint, UdpFakeEndpoint)
    rig.endpoint.rate = RATE
    rig.endpoint.window = 2 << 20
    d, _ = run(rig, TimedSpec(direction="upload", seconds=1, interval=0))
    assert d["error"].startswith("the endpoint refused the sends (ESKTPKTDENY)")
    assert "max_burst_rate_byte" in d["error"] and "use -b below it" in d["error"]


def test_omit_runs_a_pretest_reported_omitted_and_not_counted() -> None:
    """-O 1 -t 0.3 -R: the server is told (`omit`), TEST_END goes at TEST_START + 1.3 s;
    the first second's intervals are marked omitted and left out of the figures; the
    counted ones start from 0 again, as iperf3 prints them."""
    rig, server = rig_with_server()
    d, intervals = run(rig, TimedSpec(direction="download", seconds=0.3, interval=0.25, omit=1))
    assert "error" not in d, d
    assert server.params["omit"] == 1 and d["omit"] == 1
    ends = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 0
            and m.data == struct.pack("b", State.TEST_END)]  # fmt: skip
    start = BASE_NS + int(server.started * 1e9)
    assert len(ends) == 1 and ends[0].time == start + 1_300_000_000
    pre = [(i["start"], i["end"]) for i in intervals if i.get("omitted")]
    counted = [i for i in intervals if not i.get("omitted")]
    assert pre == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    assert [(i["start"], i["end"]) for i in counted] == [(0.0, 0.25), (0.25, 0.3)]
    assert all(i["after_omit"] for i in counted)
    assert d["seconds"] == pytest.approx(0.3, abs=1e-6)
    assert sum(i["sum"]["bytes"] for i in counted) == d["bytes"]
    assert d["bytes"] == pytest.approx(server.got[0] * 0.3 / 1.3, rel=0.1)  # not the pre-test
    assert d["mbit_s"] == pytest.approx(RATE * 8 / 1e6, rel=0.1)
    sent = server.client_results["streams"][0]
    assert sent["bytes"] == d["bytes"] and sent["end_time"] == pytest.approx(0.3, abs=1e-6)


def test_omit_with_a_paced_upload_and_cport_binds_the_streams() -> None:
    """-O 1 -t 0.3 -u -b 8M -P 2 --cport 40100: O + T s of scheduled sends; the sends of
    the first second are not in the figures sent to the server; stream k from port
    40100 + k at the endpoint (iperf3 3.12's consecutive ports)."""
    rig, server = rig_with_server()
    spec = TimedSpec(direction="upload", seconds=0.3, udp=True, bitrate=8e6, length=1000,
                     streams=2, interval=0, omit=1, cport=40100)  # fmt: skip
    d, _ = run(rig, spec)
    assert "error" not in d, d
    opens = [m for m in rig.endpoint.received if isinstance(m, Nopen) and m.proto == Proto.UDP]
    assert [m.lport for m in opens] == [40100, 40101] and d["cport"] == 40100
    sends = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.proto == Proto.UDP
             and len(m.data) == 1000]  # fmt: skip
    span = (max(m.time for m in sends) - min(m.time for m in sends)) / 1e9
    assert span == pytest.approx(1.3, abs=0.01)  # the pre-test's sends and the test's
    for s in server.client_results["streams"]:  # the test's 0.3 s at 1000 datagrams/s
        assert s["packets"] == pytest.approx(300, abs=2) and s["bytes"] == s["packets"] * 1000
    assert d["seconds"] == pytest.approx(0.3, abs=1e-6)


def test_omit_and_cport_bounds_and_window_refused() -> None:
    from packetlab.cli import run_throughput
    from packetlab.cli.run import RunError

    for spec, message in (
        (TimedSpec(seconds=1, omit=61), "-O must be 0..60 s"),
        (TimedSpec(nbytes=1 << 20, omit=1), "-O with -n or -k is not built"),
        (TimedSpec(blocks=3, omit=1), "-O with -n or -k is not built"),
        (TimedSpec(seconds=1, streams=2, cport=65535), "--cport must be 1..65535 with room"),
    ):
        with pytest.raises(ValueError, match=message):
            spec.check()
    p = argparse.ArgumentParser(exit_on_error=False)
    run_throughput.configure(p)
    args = p.parse_args(["-c", "192.0.2.5", "-O", "2", "--cport", "40000"])
    assert run_throughput.timed(args) and (args.omit, args.cport) == (2, 40000)
    assert run_throughput.timed(p.parse_args(["-c", "192.0.2.5", "--bidir"]))
    args = p.parse_args(["-c", "192.0.2.5", "-t", "1", "-w", "64K"])
    with pytest.raises(RunError, match=r"-w 64K: not supported: iperf3 sets SO_SNDBUF/SO_RCVBUF"):
        run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]


def test_omitted_interval_lines_as_iperf3() -> None:
    """iperf3 3.12's pre-test lines: `(omitted)` after the columns (TCP: 18 spaces), the
    counted intervals from 0.00 again without a second header."""
    from packetlab.cli.run_throughput import interval_rows

    one = {"id": 5, "bytes": 6 << 20, "packets": 0, "bits_per_second": 0.0}
    rec = {"type": "interval", "start": 0.0, "end": 0.5, "seconds": 0.5, "streams": [one],
           "sum": one, "protocol": "tcp", "sender": False, "omitted": True}  # fmt: skip
    assert interval_rows(rec).splitlines() == [  # receiving (-R): iperf3 3.12 leaves the
        iperf3.HEADER,  # 18 columns of Retr and Cwnd blank, with no header for them
        "[  5]   0.00-0.50   sec  6.00 MBytes   101 Mbits/sec                  (omitted)",
    ]
    after = {**rec, "omitted": False, "after_omit": True}
    assert interval_rows(after) == "[  5]   0.00-0.50   sec  6.00 MBytes   101 Mbits/sec" + " " * 18
    udp = {**one, "jitter_ms": 0.001, "lost": 0, "total": 429}
    rec = {**rec, "protocol": "udp", "streams": [udp], "sum": udp, "start": 0.5, "end": 1.0}
    assert interval_rows(rec) == (
        "[  5]   0.50-1.00   sec  6.00 MBytes   101 Mbits/sec  0.001 ms  0/429 (0%)  (omitted)"
    )
    rec = {**rec, "streams": [one], "sum": one, "sender": True}
    assert (
        interval_rows(rec) == "[  5]   0.50-1.00   sec  6.00 MBytes   101 Mbits/sec  0  (omitted)"
    )


@pytest.mark.parametrize("udp", [False, True])
def test_bidir_sends_and_receives_at_once(udp: bool) -> None:
    """--bidir -P 2 -t 0.3 (-b 8M): `bidirectional` in the parameters, four data streams,
    the first two sent from the endpoint (TX-C), the other two sent by the server (RX-C),
    both at once; one TEST_END, scheduled at TEST_START + T; each stream's figures from
    its own side, summed apart."""
    rig, server = rig_with_server()
    rig.endpoint.rate = RATE
    spec = TimedSpec(seconds=0.3, streams=2, bidir=True, interval=0.1, bitrate=8e6,
                     udp=udp, length=1000 if udp else 10_000)  # fmt: skip
    d, intervals = run(rig, spec)
    assert "error" not in d, d
    assert server.params["bidirectional"] is True and "reverse" not in server.params
    assert server.params["parallel"] == 2 and server.done
    ends = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 0
            and m.data == struct.pack("b", State.TEST_END)]  # fmt: skip
    start = BASE_NS + int(server.started * 1e9)
    assert len(ends) == 1 and ends[0].time == start + 300_000_000
    assert [(s["id"], s["role"]) for s in d["streams"]] == [
        (5, "TX-C"), (7, "TX-C"), (9, "RX-C"), (11, "RX-C")]  # fmt: skip
    assert [s["id"] for s in server.client_results["streams"]] == [1, 3, 4, 5]
    assert d["direction"] == "bidir" and d["seconds"] == pytest.approx(0.3, abs=1e-6)
    tx = d["sum"]["sender"]["mbit_s"]  # 8 Mbit/s a stream, from the endpoint's ntags
    assert tx == pytest.approx(16, rel=0.1) and d["mbit_s"] == d["sum"]["receiver"]["mbit_s"]
    rx = d["sum_reverse"]["receiver"]  # what the server sent, at the endpoint's stamps
    assert rx["bytes"] == sum(server.got[2:]) and d["mbit_s_reverse"] == rx["mbit_s"]
    for i in intervals:
        assert [(s["id"], s["role"]) for s in i["streams"]][::2] == [(5, "TX-C"), (9, "RX-C")]
        assert ("jitter_ms" in i["streams"][2]) == udp and "jitter_ms" not in i["streams"][0]
    from packetlab.cli.run_throughput import interval_rows, timed_rows

    text = interval_rows(intervals[0]).splitlines()
    assert text[0].startswith("[ ID][Role] Interval           Transfer     Bitrate")
    assert [x[:11] for x in text[1:]] == ["[  5][TX-C]", "[  7][TX-C]", "[SUM][TX-C]",
                                          "[  9][RX-C]", "[ 11][RX-C]", "[SUM][RX-C]",
                                          "- - - - - -"]  # fmt: skip
    block = timed_rows(d).splitlines()
    roles = ["[  5][TX-C]", "[  7][TX-C]", "[SUM][TX-C]", "[  9][RX-C]", "[ 11][RX-C]",
             "[SUM][RX-C]"]  # fmt: skip
    assert [x[:11] for x in block[1:13:2]] == roles
    assert block[-1].startswith("# TX-C: sender the endpoint's stamps")


def test_a_stop_ends_a_bidir_test_with_both_halves() -> None:
    """Ctrl-C in a --bidir -t 10 test: both halves stop at once, one TEST_END, each half's
    figures of what ran."""
    rig, server = rig_with_server()
    rig.endpoint.rate = RATE
    spec = TimedSpec(seconds=10, bidir=True, interval=0.1, bitrate=8e6, length=10_000)
    at = rig.clock.seconds() + 0.35
    r = rig.run(timed_test(rig.session, SERVER[0], spec=spec,
                           stopping=lambda: rig.clock.seconds() >= at))  # fmt: skip
    d = r.to_dict()
    assert "error" not in d, d
    assert d["stopped"] is True and server.done and 0.2 < d["seconds"] < 0.6
    ends = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 0
            and m.data == struct.pack("b", State.TEST_END)]  # fmt: skip
    assert len(ends) == 1
    assert d["sum"]["sender"]["mbit_s"] == pytest.approx(8, rel=0.2)
    assert d["sum_reverse"]["receiver"]["mbit_s"] == pytest.approx(RATE * 8 / 1e6, rel=0.2)


@pytest.mark.parametrize(
    ("argv", "head", "what"),
    [
        (["-Z"], "-Z", "sends with sendfile() (zero copy) from its own process, and PacketLab "
         "cannot choose how the endpoint copies the bytes of an nsend"),
        (["--zerocopy"], "-Z", "sends with sendfile()"),
        (["-C", "cubic"], "-C cubic", "sets TCP_CONGESTION on its sockets"),
        (["--congestion=bbr"], "-C bbr", "sets TCP_CONGESTION on its sockets"),
        (["-M", "1000"], "-M 1000", "sets TCP_MAXSEG on its sockets"),
        (["--set-mss", "x"], "-M x", "sets TCP_MAXSEG"),  # the value as typed: no matter
        (["-N"], "-N", "sets TCP_NODELAY on its sockets"),
        (["--no-delay"], "-N", "sets TCP_NODELAY"),
        (["-S", "0x10"], "-S 0x10", "sets IP_TOS (IPV6_TCLASS) on its sockets"),
        (["--tos", "16"], "-S 16", "sets IP_TOS"),
        (["--fq-rate", "10M"], "--fq-rate 10M", "sets SO_MAX_PACING_RATE on its sockets"),
    ],
)  # fmt: skip
def test_iperf3_socket_options_are_refused_in_one_line(
    argv: list[str], head: str, what: str
) -> None:
    """iperf3's -Z, -C, -M, -N, -S, --fq-rate were unknown options (argparse's usage and
    exit 2); each is refused by name with the reason, as -w is: nopen carries no socket
    options. The refusal comes before anything is sent (the run's exit status 2). An
    upload here: since session 27 -Z, -C, -N, --fq-rate with -R (our default) are told
    the server, the only sender (`test_server_told_socket_options_with_r`)."""
    from packetlab.cli import run_throughput
    from packetlab.cli.run import RunError

    p = argparse.ArgumentParser(exit_on_error=False)
    run_throughput.configure(p)
    args = p.parse_args(["-c", "192.0.2.5", "-t", "1", "--direction", "upload", *argv])
    with pytest.raises(RunError) as e:
        run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]
    assert str(e.value).startswith(f"{head}: not supported: iperf3 {what}")
    told = head.split()[0] in ("-Z", "-C", "-N", "--fq-rate")  # with -R the server's
    assert str(e.value).endswith(run_throughput.SERVER_TOLD_NOTE) == told
    assert (
        str(e.value)
        .removesuffix(run_throughput.SERVER_TOLD_NOTE)
        .endswith(
            "(nopen takes only the protocol, the addresses and rbufsz; there is no socket option "
            "request)"
        )
    )
    assert "\n" not in str(e.value)
    assert "-Z (sendfile), -C ALGO (TCP_CONGESTION), -M MSS (TCP_MAXSEG)" in " ".join(
        run_throughput.EPILOG.split()
    )


# native iperf3 3.12's parameters (recorded by test_throughput_control_as_iperf3's relay):
# `-R -t 1 -b 1M -N --fq-rate 10M -C reno -Z -T hi --extra-data x --get-server-output
# --repeating-payload`, and `-R -u -t 1 -b 1M --dont-fragment -Z --udp-counters-64bit`
NATIVE_SOCKOPTS_TCP = (
    '{"tcp":true,"omit":0,"time":1,"num":0,"blockcount":0,"nodelay":true,"parallel":1,'
    '"reverse":true,"len":131072,"bandwidth":1000000,"fqrate":10000000,"pacing_timer":1000,'
    '"title":"hi","extra_data":"x","congestion":"reno","get_server_output":1,'
    '"repeating_payload":1,"zerocopy":1,"client_version":"3.12"}'
)
NATIVE_SOCKOPTS_UDP = (
    '{"udp":true,"omit":0,"time":1,"num":0,"blockcount":0,"parallel":1,"reverse":true,'
    '"len":32768,"bandwidth":1000000,"pacing_timer":1000,"udp_counters_64bit":1,'
    '"zerocopy":1,"dont_fragment":1,"client_version":"3.12"}'
)


def test_server_told_socket_options_with_r() -> None:
    """-R (the server the only sender): -N, --fq-rate, -C, -Z, --dont-fragment are told
    the server in native's keys and places, byte for byte (session 27; refused before,
    though on a receiver they act on nothing native sends but ACKs); --bidir and an
    upload still refuse them, the endpoint's sockets taking no option."""
    from packetlab.cli import run_throughput
    from packetlab.cli.run import RunError

    p = argparse.ArgumentParser(exit_on_error=False)
    run_throughput.configure(p)
    args = p.parse_args(["-c", "192.0.2.5", "-R", "-t", "1", "-b", "1M", "-N", "--fq-rate",
                         "10M", "-C", "reno", "-Z"])  # fmt: skip
    assert run_throughput.refused(args) is None
    opts = run_throughput.server_sockopts(args)
    assert opts == iperf3.ServerSockopts(nodelay=True, fq_rate=10_000_000, congestion="reno",
                                         zerocopy=True)  # fmt: skip
    tcp = iperf3.timed_parameters(
        udp=False, seconds=1, nbytes=None, streams=1, reverse=True, length=131072,
        bitrate=1e6, title="hi", extra_data="x", get_server_output=True,
        repeating_payload=True, server_sockopts=opts,
    )  # fmt: skip
    assert json.dumps(tcp, separators=(",", ":")) == NATIVE_SOCKOPTS_TCP
    udp = iperf3.timed_parameters(
        udp=True, seconds=1, nbytes=None, streams=1, reverse=True, length=32768,
        bitrate=1e6, wide_counters=True,
        server_sockopts=iperf3.ServerSockopts(zerocopy=True, dont_fragment=True),
    )  # fmt: skip
    assert json.dumps(udp, separators=(",", ":")) == NATIVE_SOCKOPTS_UDP
    assert run_throughput.timed(p.parse_args(["-c", "192.0.2.5", "-N"]))  # iperf3's test
    for way in (["--bidir"], ["--direction", "upload"]):
        args = p.parse_args(["-c", "192.0.2.5", "-t", "1", "-C", "reno", *way])
        with pytest.raises(RunError, match=r"-C reno: not supported: .* the server is told"):
            run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only with -R"):  # the library says so too
        TimedSpec(direction="upload", seconds=1,
                  server_sockopts=iperf3.ServerSockopts(nodelay=True)).check()  # fmt: skip
    args = p.parse_args(["-c", "192.0.2.5", "-t", "1", "--fq-rate", "fast"])
    with pytest.raises(RunError, match="--fq-rate: expected a rate like 10M"):
        run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]


def test_a_congestion_control_the_server_did_not_use_is_warned() -> None:
    """-R -C ALGO: a 3.12 server without ALGO runs the test with its default, saying so
    only in its results; native fails first on its own host, ours warns on stderr."""
    from packetlab.cli.run_throughput import congestion_warning

    r = {"server_info": {"congestion_used": "bbr"}}
    assert congestion_warning(r, "nosuch") == (
        "warning: -C nosuch: the server used bbr (its host lacks nosuch, or refused it)"
    )
    assert congestion_warning(r, "bbr") is None and congestion_warning(r, None) is None
    assert congestion_warning({}, "reno") is None  # not said: nothing to warn of
