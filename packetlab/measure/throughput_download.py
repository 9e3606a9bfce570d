"""The download of the paper's fixed-size transfer (`HeldDownload`): the data socket's
ndata held at the endpoint until RBUFUSED has passed N and stays put for a poll, then
released and counted at their receive stamps (iperf3's client's reads modelled by
`throughput_reads`); TEST_END once the server's whole blocks are in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from packetlab.clockstep import steady
from packetlab.controller import EndpointSession, set_notifmask
from packetlab.measure import iperf3
from packetlab.measure.iperf3 import State
from packetlab.measure.pcap import TcpFlow
from packetlab.measure.stream import StreamError
from packetlab.measure.throughput_control import Control, read_u32, sleep
from packetlab.measure.throughput_figures import ThroughputResult, mbit, rate_after, stalls
from packetlab.measure.throughput_reads import Reads
from packetlab.wire import Ndata, Nstat, NstatCode, vmem

__all__ = ["WHOLE_GRACE", "HeldDownload", "Progress"]

Progress = Callable[[int, int], None]  # (bytes so far, bytes in all)
#: A download's N is in but not the server's whole last block: how long the rest may take
#: (an iperf3 3.12 server sends it right after; one that stops at N sends none)
WHOLE_GRACE = 0.5


class HeldDownload:
    """Counts the data socket's ndata (held, then released) with their stamps. The server
    sends `whole` bytes (whole blocks); the test's bytes are iperf3's client's: its reads
    up to the one that brought `result.bytes` (-n), modelled from the recv()s."""

    def __init__(self, session: EndpointSession, result: ThroughputResult, whole: int) -> None:
        self.session = session
        self.result = result
        self.whole = whole
        self.received = 0
        self.stamps: list[tuple[int, int]] = []
        self.closed = False
        self.flow: TcpFlow | None = None
        self._waiter: Deferred[None] | None = None
        self._grace: Any = None

    def note(self, note: object) -> None:
        if isinstance(note, Ndata):
            self.received += len(note.data)
            self.stamps.append((self.received, note.time))
            if self.flow is not None:
                self.flow.received(note.time, note.data)
        elif isinstance(note, Nstat) and note.code != NstatCode.ESTABLISHED:
            self.closed = True
        else:
            return
        if self._waiter is None:
            return
        if self.received >= self.whole or self.closed:
            self._release()
        elif self.received >= self.result.bytes and self._grace is None:
            # N is in; a server that does not round up to whole blocks (not 3.12's) sends
            # no more: what came within WHOLE_GRACE is all
            self._grace = self.session.reactor.callLater(WHOLE_GRACE, self._release)

    def _release(self) -> None:
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        if self._waiter is not None:
            w, self._waiter = self._waiter, None
            w.callback(None)

    def counted(self) -> int:
        """iperf3's bytes: its reads of up to -l bytes (throughput_reads) until the one
        that brought N; all that came if none did (the last read ends at the socket's
        end)."""
        limit, reads, prev = self.result.bytes, Reads(iperf3.BLOCK), 0
        for cum, _t in self.stamps:
            taken = reads.take(cum - prev, lambda: reads.done_bytes >= limit)
            if reads.done_bytes >= limit:
                return prev + taken
            prev = cum
        return self.received

    async def run(
        self, sktid: int, ctl: Control, timeout: float, poll: float, progress: Progress | None
    ) -> None:
        session, total = self.session, self.result.bytes
        clock = session.reactor
        deadline = steady(clock) + timeout
        last = -1
        while True:  # the transfer: the only controller traffic is this poll
            used = await read_u32(session, vmem.skt_addr(sktid, vmem.SKT_RBUFUSED))
            if progress is not None:
                progress(min(used, total), total)
            # RBUFUSED is a budget, not a byte count: each held ndata is charged its bytes
            # plus the endpoint's per-recv overhead (116 bytes here, 4 000 recvs in a
            # 25 MiB transfer), so it passes N while up to ~0.5 MB are still on the way. A
            # TEST_END then stopped the server short ("no data past the skipped part").
            # So: past N and still for a whole poll, the transfer is (nearly) over.
            if used >= total and used == last:
                break
            if steady(clock) > deadline:
                raise StreamError(f"only {used} of {total} bytes arrived within {timeout:g} s")
            last = used
            await sleep(session, poll)
        # Release the held ndata and count the bytes themselves; TEST_END once the server's
        # whole blocks are in (iperf3 sends it after the read that brought N: all of them
        # when they came together, as on a fast path).
        self._waiter = Deferred()
        await set_notifmask(session, sktid, 0)
        waiter = self._waiter
        if waiter is not None:  # not all in yet
            waiter.addTimeout(timeout, clock)
            await waiter
        ctl.send_state(State.TEST_END)
        if self.received < total:
            raise StreamError(f"the data connection closed after {self.received} of {total} bytes")
        r = self.result
        r.bytes = got = self.counted()
        b, t0, t1 = rate_after(self.stamps, got, r.skip)
        r.seconds = (t1 - t0) / 1e9
        r.measured_bytes = got - b
        r.mbit_s = mbit(got - b, t1 - t0)
        r.method = "ndata-stamps"
        r.start_ns = self.stamps[0][1]
        r.chunks = len(self.stamps)
        r.stalls, r.stall_ms = stalls(self.stamps, r.mbit_s)
