"""`-R -k N` and `-R -n N` end as iperf3 3.12's client ends them: after its N-th read (or
the read that brought N bytes), each read what its socket held, up to -l bytes
(measure/throughput_reads.py), modelled from the endpoint's recv()s of up to 64 KiB. The
scripted server sends as iperf3 3.12's does: whole blocks until N bytes or N blocks,
then nothing until TEST_END."""

from __future__ import annotations

import struct

import pytest
from stream_fakes import StreamRig
from test_throughput_timed import PIECE, RATE, SERVER, TimedIperf3, UdpFakeEndpoint, run

from packetlab.measure.iperf3 import State
from packetlab.measure.throughput_reads import Reads, server_total
from packetlab.measure.throughput_timed import TimedSpec
from packetlab.wire import Nsend

KIB = 1024


class Iperf312(TimedIperf3):
    """Reverse TCP as iperf3 3.12's server: `writes` (bytes each, repeated), each reaching
    the endpoint at once (so it reads them in recv()s of 64 KiB, the last short), until
    `total` bytes, then nothing more."""

    def __init__(self, rig: StreamRig, writes: list[int], total: int) -> None:
        super().__init__(rig)
        self.writes, self.total, self.k = writes, total, 0

    def _send(self, i: int) -> None:
        if self.ended or sum(self.got) >= self.total:
            return
        size = min(self.writes[self.k % len(self.writes)], self.total - sum(self.got))
        self.k += 1
        self.data[i].write(b"x" * size)
        self.got[i] += size
        self.rig.clock.callLater(size / RATE, self._send, i)


def rig_312(writes: list[int], total: int) -> tuple[StreamRig, Iperf312]:
    rig = StreamRig(UdpFakeEndpoint)
    server = Iperf312(rig, writes, total)
    rig.endpoint.peers[SERVER] = server.connect
    return rig, server


def test_ends(rig: StreamRig) -> int:
    return sum(1 for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 0
               and m.data == struct.pack("b", State.TEST_END))  # fmt: skip


test_ends.__test__ = False  # type: ignore[attr-defined]


def test_a_read_is_what_the_socket_held_up_to_l_bytes() -> None:
    r = Reads(128 * KIB)
    never = lambda: False  # noqa: E731
    assert r.take(PIECE, never) == PIECE and (r.done, r.pending) == (0, PIECE)  # not empty
    assert r.take(PIECE, never) == PIECE and (r.done, r.done_bytes) == (1, 128 * KIB)
    assert r.take(30_000, never) == 30_000 and (r.done, r.pending) == (2, 0)  # short: empty
    assert r.take(PIECE, lambda: r.done == 2) == PIECE  # no read ended in it: not checked
    assert r.take(PIECE, lambda: r.done == 3) == PIECE and r.done == 3


def test_the_count_reached_within_a_recv_takes_only_that_read() -> None:
    r = Reads(16 * KIB)
    assert r.take(PIECE, lambda: r.done >= 3) == 48 * KIB  # the 4th 16 KiB is not read


def test_what_iperf3_3_12s_server_sends() -> None:
    """Measured: `-R -k 20 -l 1M` 20971520, `-n 1000000` 1048576, `-n 1000000 -l 1K`
    1000448, `-n 100K -l 30K` 122880 (its sum_sent, native 3.12 on loopback)."""
    assert server_total(None, 20, 1 << 20) == 20971520
    assert server_total(1_000_000, None, 128 * KIB) == 1048576
    assert server_total(1_000_000, None, KIB) == 1000448
    assert server_total(100 * KIB, None, 30 * KIB) == 122880


@pytest.mark.parametrize(
    ("writes", "blocks", "length", "want"),
    [
        # each 96 KiB write read whole (64 KiB + a short 32 KiB): ten reads of 96 KiB
        # (was: 10 x 128 KiB awaited, 1.28 MB)
        ([96 * KIB], 10, 128 * KIB, 10 * 96 * KIB),
        # 200 KiB writes: a read of 128 KiB, then one of 72 KiB that empties the socket
        ([200 * KIB], 10, 128 * KIB, 5 * 200 * KIB),
        # -l 16K: a short 8 KiB recv() is a read, then 40 KiB: the third read ends the
        # test 32 KiB into it, the last 8 KiB not read (was: all 48 KiB counted)
        ([8 * KIB, 40 * KIB], 3, 16 * KIB, 40 * KIB),
        # whole blocks in full recv()s: N x -l, as before
        ([PIECE], 10, 128 * KIB, 10 * 128 * KIB),
    ],
    ids=["short-96K", "200K-writes", "within-a-recv", "whole-blocks"],
)
def test_blockcount_download_ends_after_n_reads(
    writes: list[int], blocks: int, length: int, want: int
) -> None:
    rig, server = rig_312(writes, blocks * length)
    d, _ = run(rig, TimedSpec(direction="download", blocks=blocks, length=length))
    assert "error" not in d, d
    assert d["bytes"] == want and d["sum"]["receiver"]["bytes"] == want
    assert test_ends(rig) == 1 and server.done


def test_bytes_download_ends_after_the_read_that_reached_n() -> None:
    """-R -n 150K -l 100K: 200 KiB sent (two blocks); a 72 KiB write read whole, then the
    rest in full recv()s: the read that reaches 150 KiB is 100 KiB long (172 KiB counted;
    was 200 KiB, every recv() whole)."""
    rig, server = rig_312([72 * KIB, 128 * KIB], 200 * KIB)
    d, _ = run(rig, TimedSpec(direction="download", nbytes=150 * KIB, length=100 * KIB))
    assert "error" not in d, d
    assert d["bytes"] == 172 * KIB
    assert test_ends(rig) == 1 and server.done


def test_a_read_left_open_ends_once_all_the_server_sends_is_in() -> None:
    """-R -n 200K -l 100K: reads of 72 and 100 KiB, then 28 KiB of a third whose last recv()
    was a full 64 KiB (the socket may hold more): the server has sent its two blocks, so
    that read ends (iperf3's would find the socket empty) and the test with it, at 200 KiB
    (was, with no such end: the test waited for bytes that never come)."""
    rig, server = rig_312([72 * KIB, 128 * KIB], 200 * KIB)
    d, _ = run(rig, TimedSpec(direction="download", nbytes=200 * KIB, length=100 * KIB))
    assert "error" not in d, d
    assert d["bytes"] == 200 * KIB and test_ends(rig) == 1 and server.done


def test_parallel_streams_count_their_reads_together() -> None:
    """-P 2 -k 6 -l 128K, 96 KiB writes (the server's turns go stream by stream): six reads
    of 96 KiB between the two streams."""
    rig, _server = rig_312([96 * KIB], 6 * 128 * KIB)
    d, _ = run(rig, TimedSpec(direction="download", blocks=6, streams=2))
    assert "error" not in d, d
    assert d["bytes"] == 6 * 96 * KIB and test_ends(rig) == 1


class EarlyData(Iperf312):
    """The first 64 KiB reaches the endpoint stamped before TEST_START does (two sockets'
    kernel stamps need not keep the server's order)."""

    def _accepted(self) -> None:
        if len(self.cookies) < self.streams:
            return
        self.data[0].write(b"x" * PIECE)
        self.got[0] += PIECE
        for s in (State.TEST_START, State.TEST_RUNNING):
            self.ctl.write(struct.pack("b", s), delay=0.001)
        self.started = self.rig.clock.seconds()
        self.rig.clock.callLater(0.002, self._send, 0)


def test_data_stamped_before_test_start_counts() -> None:
    """-R -n 2M: every byte the server sends is the test's; the first 64 KiB, stamped before
    TEST_START, counts (was: taken for -O's pre-test and dropped, so the count never came
    and the test failed)."""
    rig = StreamRig(UdpFakeEndpoint)
    server = EarlyData(rig, [PIECE], 2 << 20)
    rig.endpoint.peers[SERVER] = server.connect
    d, _ = run(rig, TimedSpec(direction="download", nbytes=2 << 20, interval=0.1))
    assert "error" not in d, d
    assert d["bytes"] == 2 << 20 and test_ends(rig) == 1
