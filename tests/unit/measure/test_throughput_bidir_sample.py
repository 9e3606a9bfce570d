"""--bidir -t without -b: the sending streams' Retr and Cwnd (issue 13, session 19).

iperf3 3.12's client reads its sockets' TCP_INFO as its timer ends the test, before it
sends TEST_END. Ours queues TEST_END at the endpoint for TEST_START + T, and the server
closes the data connections when it reads it; an unpaced sending stream still has blocks
queued at the endpoint, whose next send then fails (EPIPE/ECONNRESET), and the endpoint
frees the socket, its TCP_INFO with it. A controller that read the last sample only
10 ms before the end, and was late (its CPU busy with the receiving half's ndata), got
no TCP_INFO for the TX-C streams: no `Retr  Cwnd` columns. Scripted endpoint and iperf3
server (test_throughput_timed's), with requests held back as the test ends."""

from __future__ import annotations

from typing import Any

from stream_fakes import StreamRig
from test_throughput_tcp_info import TcpInfoEndpoint
from test_throughput_timed import RATE, SERVER, TimedIperf3, run
from twisted.internet.task import Clock

from packetlab.cli import run_throughput
from packetlab.measure.throughput_timed import TimedSpec
from packetlab.wire import vmem

BUSY_NS = 50_000_000  # the endpoint answers nothing in the 50 ms each side of the end


class LateEndpoint(TcpInfoEndpoint):
    """Requests that come while `busy` (endpoint ns, [from, to)) wait until its end and are
    answered then, in order (a controller, or an endpoint sharing its CPU, behind as the
    test ends); sends queued before go at their time. A socket in `gone` has no TCP_INFO
    (zeros: the endpoint freed it when a send failed)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.busy: tuple[int, int] | None = None
        self.backlog: list[Any] = []
        self.gone: set[int] = set()

    def handle(self, msg: Any) -> None:
        busy = self.busy is not None and self.busy[0] <= self.now() < self.busy[1]
        if self.backlog or busy:
            if not self.backlog:
                assert self.busy is not None
                self.clock.callLater((self.busy[1] - self.now()) / 1e9, self._answer)
            self.backlog.append(msg)
            return
        super().handle(msg)

    def _answer(self) -> None:
        todo, self.backlog = self.backlog, []
        for msg in todo:
            super().handle(msg)

    def read(self, addr: int, n: int) -> bytes:
        sktid, off = divmod(addr - vmem.SKT_BASE, vmem.SKT_STRIDE)
        if addr >= vmem.SKT_BASE and off == vmem.SKT_TCPINFO.addr and sktid in self.gone:
            return bytes(n)
        return super().read(addr, n)


class ClosingIperf3(TimedIperf3):
    """An iperf3 server that closes its data connections on TEST_END, as 3.12's does: the
    endpoint's TX-C sockets, with blocks still queued, fail (`gone`)."""

    endpoint: LateEndpoint

    def __init__(self, rig: StreamRig, seconds: float) -> None:
        super().__init__(rig)
        self.seconds = seconds

    def _accepted(self) -> None:
        super()._accepted()
        if self.started:  # the endpoint is behind around TEST_START + T
            end = self.endpoint.now() + int(self.seconds * 1e9)
            self.endpoint.busy = (end - BUSY_NS, end + BUSY_NS)

    def _ctl(self, data: bytes) -> None:
        super()._ctl(data)
        if self.ended and not self.endpoint.gone:
            tx = self.data[: self.streams // 2]
            self.endpoint.gone = {s for s, p in self.endpoint.live.items() if p in tx}


def late_rig(seconds: float) -> tuple[StreamRig, ClosingIperf3]:
    rig = StreamRig(LateEndpoint)
    server = ClosingIperf3(rig, seconds)
    rig.endpoint.peers[SERVER] = server.connect
    rig.endpoint.rate = RATE
    return rig, server


def test_unpaced_bidir_keeps_retr_and_cwnd_when_the_sample_is_late() -> None:
    """--bidir -t 0.5 -i 0.5 (no -b): the TX-C stream's line and its sender total have the
    endpoint's TCP_INFO, sampled before TEST_END left, although the controller's requests
    reached the endpoint only after the server had closed the connections (was: blank
    columns, the interval header without `Retr  Cwnd`)."""
    rig, server = late_rig(0.5)
    d, intervals = run(rig, TimedSpec(seconds=0.5, bidir=True, interval=0.5, length=10_000))
    assert "error" not in d, d
    assert server.done and server.endpoint.gone  # the server closed; the sockets failed
    (last,) = intervals
    tx, rx = last["streams"]
    assert tx["role"] == "TX-C" and tx["snd_cwnd"] == 14480 and "retransmits" in tx
    assert rx["role"] == "RX-C" and "retransmits" not in rx
    text = run_throughput.interval_rows(last).splitlines()
    assert text[0].endswith("Bitrate         Retr  Cwnd")
    assert "14.1 KBytes" in text[1]
    sender = d["streams"][0]["sender"]
    assert d["streams"][0]["role"] == "TX-C" and sender["retransmits"] == tx["retransmits"]
    assert sender["max_snd_cwnd"] == 14480
    block = (run_throughput.row(d) or "").splitlines()
    assert block[1].endswith("Bitrate         Retr")
    assert block[2].startswith("[  5][TX-C]") and block[2].endswith("sender")
    assert block[2].split()[-2] == str(tx["retransmits"])  # Retr in the sender line


def test_intervals_before_the_end_sample_at_their_close() -> None:
    """--bidir -t 1 -i 0.25 (no -b): each interval before the last has a sample of its
    own, read as it closed, not the last one's; the last has the last sample taken
    before TEST_END, which the sender total shares, or the one before's where that was
    read later (the scripted endpoint counts one more retransmit at every read: the last
    samples are read from 0.25 s before the end, the 0.75 s interval's came after the
    first of them, and those near the end after the server had closed): never a negative
    count, and the lines add up to the total."""
    rig, _server = late_rig(1.0)
    endpoint = rig.endpoint
    assert isinstance(endpoint, LateEndpoint)
    d, intervals = run(rig, TimedSpec(seconds=1.0, bidir=True, interval=0.25, length=10_000))
    assert "error" not in d, d
    assert [i["end"] for i in intervals] == [0.25, 0.5, 0.75, 1.0]
    tx = [i["streams"][0] for i in intervals]
    assert all("snd_cwnd" in s for s in tx)
    counts = [s["retransmits"] for s in tx]
    assert counts[:3] == [0, 1, 2] and counts[3] >= 0
    assert d["streams"][0]["sender"]["retransmits"] == sum(counts)
    assert sum(counts) == endpoint.retrans[1]  # its last sample before the server closed
