"""The precise sender and kernel timestamps with a real reactor and real loopback sockets.

Functional checks only (packets arrive, in order, never early, timestamps are consistent);
how precise the sends are is measured by benchmarks/bench_send_precision.py.
"""

from __future__ import annotations

import errno
import functools
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pytest_twisted
from testkit.poll import poll_until_async
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.task import LoopingCall, deferLater
from twisted.python.failure import Failure
from zope.interface import implementer

from packetlab.endpoint.clock import realtime_ns
from packetlab.endpoint.sender import PreciseScheduler, ScheduledSend, SendState
from packetlab.endpoint.timestamps import (
    SCM_TSTAMP_SND,
    SocketWatcher,
    TxStampMatcher,
    TxTimestamp,
    enable_rx_timestamps,
    enable_tx_timestamps,
    read_tx_timestamps,
    recv_with_timestamp,
)

reactor: Any = _reactor  # the global reactor (mypy cannot see its interfaces)
FDSET = reactor
HEADER = struct.Struct("!IQ")  # sequence number, scheduled time


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    await poll_until_async(cond, timeout=timeout, interval=0.002, reactor=reactor)


def udp_socket(bind: bool = True) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if bind:
        sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket) -> list[tuple[bytes, int | None]]:
    out: list[tuple[bytes, int | None]] = []
    while True:
        try:
            data, _addr, ts = recv_with_timestamp(sock, 2048)
        except BlockingIOError:
            return out
        out.append((data, ts))


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = udp_socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    enable_rx_timestamps(sock)
    yield sock
    sock.close()


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    sock = udp_socket(bind=False)
    yield sock
    sock.close()


@pytest.fixture
def scheduler() -> Iterator[PreciseScheduler]:
    sched = PreciseScheduler(FDSET)
    sched.start()
    yield sched
    sched.stop()


# -- the scheduler on real sockets ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_scheduled_train_arrives_in_order_and_never_early(
    scheduler: PreciseScheduler, sender: socket.socket, receiver: socket.socket
) -> None:
    dest = receiver.getsockname()
    start = realtime_ns() + 50_000_000
    gaps = [100_000] * 150 + [7_300] * 150
    times = [start + sum(gaps[:i]) for i in range(len(gaps))]
    done: list[ScheduledSend] = []
    for seq, when in enumerate(times):
        data = HEADER.pack(seq, when)
        scheduler.schedule(when, functools.partial(sender.sendto, data, dest), done.append, key=1)
    await wait_for(lambda: len(done) == len(times))

    assert all(s.error is None for s in done)
    assert [s.when_ns for s in done] == times  # callbacks in send order
    befores = [s.sent_before_ns for s in done]
    assert befores == sorted(befores)
    assert all(s.sent_before_ns >= s.when_ns for s in done)  # lead 0: never started early

    got = drain(receiver)
    assert len(got) == len(times)
    seqs = [HEADER.unpack_from(data)[0] for data, _ in got]
    assert seqs == list(range(len(times)))
    rx = [ts for _, ts in got]
    assert all(t is not None for t in rx)
    assert rx == sorted(rx)  # type: ignore[type-var]
    # Same clock on both sides: the kernel saw each packet after it was scheduled, and the
    # reported send time is near the kernel's (loose bound: a unit or clock mix-up fails).
    offsets = []
    for send, ts in zip(done, rx, strict=True):
        assert ts is not None
        assert send.when_ns <= send.sent_before_ns <= ts
        offsets.append(abs(send.sent_ns - ts))
    assert sorted(offsets)[len(offsets) // 2] < 1_000_000


@pytest_twisted.ensureDeferred
async def test_immediate_sends_go_out_inside_schedule(
    scheduler: PreciseScheduler, sender: socket.socket, receiver: socket.socket
) -> None:
    dest = receiver.getsockname()
    sends = [
        scheduler.schedule(0, functools.partial(sender.sendto, HEADER.pack(i, 0), dest))
        for i in range(200)
    ]
    assert all(s.state is SendState.DONE and s.error is None for s in sends)
    assert scheduler.stats.immediate == 200
    got = drain(receiver)
    assert [HEADER.unpack_from(d)[0] for d, _ in got] == list(range(200))


@pytest_twisted.ensureDeferred
async def test_send_errors_are_reported_not_raised(scheduler: PreciseScheduler) -> None:
    sock = udp_socket(bind=False)
    sock.close()  # every send on it fails with EBADF
    done: list[ScheduledSend] = []
    scheduler.schedule(
        realtime_ns() + 2_000_000,
        functools.partial(sock.sendto, b"x", ("127.0.0.1", 9)),
        done.append,
    )
    await wait_for(lambda: len(done) == 1)
    assert isinstance(done[0].error, OSError)


@pytest_twisted.ensureDeferred
async def test_cancel_key_drops_queued_sends_of_a_closed_socket(
    scheduler: PreciseScheduler, sender: socket.socket, receiver: socket.socket
) -> None:
    dest = receiver.getsockname()
    when = realtime_ns() + 100_000_000
    done: list[ScheduledSend] = []
    for i in range(20):
        key = "closing" if i % 2 else "open"
        scheduler.schedule(
            when + i * 1_000,
            functools.partial(sender.sendto, HEADER.pack(i, 0), dest),
            done.append,
            key,
        )
    dropped = scheduler.cancel_key("closing")
    assert [s.key for s in dropped] == ["closing"] * 10
    await wait_for(lambda: len(done) == 10)
    got: list[bytes] = []

    def received_ten() -> bool:
        got.extend(d for d, _ in drain(receiver))
        return len(got) >= 10

    await wait_for(received_ten)
    assert [HEADER.unpack_from(d)[0] for d in got] == list(range(0, 20, 2))
    assert scheduler.pending() == 0


@pytest_twisted.ensureDeferred
async def test_reactor_keeps_running_during_a_long_dense_train(
    scheduler: PreciseScheduler, sender: socket.socket, receiver: socket.socket
) -> None:
    dest = receiver.getsockname()
    count, gap = 8_000, 20_000  # 160 ms of back-to-back spinning if nothing yielded
    start = realtime_ns() + 30_000_000
    ticks: list[int] = []
    ticker = LoopingCall(lambda: ticks.append(realtime_ns()))
    ticker.start(0.001)
    try:
        last: list[ScheduledSend] = []
        for i in range(count):
            scheduler.schedule(
                start + i * gap,
                functools.partial(sender.sendto, b"x" * 32, dest),
                last.append if i == count - 1 else None,
            )
        await wait_for(lambda: bool(last))
    finally:
        ticker.stop()
    during = [t for t in ticks if start <= t <= last[0].sent_after_ns]
    assert scheduler.stats.yields > 0
    assert len(during) >= 10  # timed calls kept running between slices
    drain(receiver)


# -- kernel timestamps ---------------------------------------------------------------------


def test_udp_rx_timestamp_lies_between_send_and_receive(
    sender: socket.socket, receiver: socket.socket
) -> None:
    before = realtime_ns()
    sender.sendto(b"ping", receiver.getsockname())
    data, addr, ts = recv_with_timestamp(receiver, 100)
    after = realtime_ns()
    assert data == b"ping" and addr[0] == "127.0.0.1"
    assert ts is not None and before <= ts <= after


def test_tcp_rx_timestamp_works_on_stream_reads() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        try:
            enable_rx_timestamps(conn)
            before = realtime_ns()
            client.sendall(b"hello")
            conn.settimeout(5)
            data, addr, ts = recv_with_timestamp(conn, 100)
            after = realtime_ns()
            assert data == b"hello" and addr is None
            assert ts is not None and before <= ts <= after
            client.close()
            assert recv_with_timestamp(conn, 100) == (b"", None, None)  # EOF: no time
        finally:
            conn.close()
            client.close()


def test_tcp_tx_timestamps_count_bytes() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        try:
            enable_tx_timestamps(client)
            client.sendall(b"12345")
            client.sendall(b"678")
            deadline = time.monotonic() + 5
            stamps: list[TxTimestamp] = []
            while len(stamps) < 2 and time.monotonic() < deadline:
                stamps += read_tx_timestamps(client)
            assert [s.id for s in stamps if s.kind == SCM_TSTAMP_SND] == [4, 7]  # last byte
        finally:
            conn.close()
            client.close()


def test_udp_tx_timestamp_is_taken_inside_the_send_call(
    sender: socket.socket, receiver: socket.socket
) -> None:
    enable_tx_timestamps(sender)
    rows = []
    for _ in range(20):
        before = realtime_ns()
        sender.sendto(b"x", receiver.getsockname())
        after = realtime_ns()
        rows.append((before, after))
    stamps = read_tx_timestamps(sender)
    assert [s.id for s in stamps] == list(range(20))  # OPT_ID counts datagrams
    assert all(s.kind == SCM_TSTAMP_SND for s in stamps)
    for (before, after), stamp in zip(rows, stamps, strict=True):
        assert before <= stamp.ts_ns <= after
    assert read_tx_timestamps(sender) == []


def test_tx_matcher_pairs_every_send_with_its_stamp(
    sender: socket.socket, receiver: socket.socket
) -> None:
    matcher = TxStampMatcher(sender)
    rows = []
    for i in range(30):
        before = realtime_ns()
        ident = matcher.sendto(b"%d" % i, receiver.getsockname())
        rows.append((ident, before, realtime_ns()))
    for ident, before, after in reversed(rows):  # any order
        ts = matcher.take(ident, before)
        assert ts is not None and before <= ts <= after
    assert matcher.take(rows[0][0]) is None  # taken already
    assert matcher.take(12345) is None  # never sent


def test_tx_matcher_keeps_at_most_keep_unclaimed_stamps(
    sender: socket.socket, receiver: socket.socket
) -> None:
    matcher = TxStampMatcher(sender, keep=4)
    before = realtime_ns()
    ids = [matcher.sendto(b"x", receiver.getsockname()) for _ in range(10)]
    assert matcher.take(ids[-1], before) is not None  # read past the nine before it
    assert [matcher.take(i, before) is not None for i in ids[:-1]] == [False] * 5 + [True] * 4


def test_tx_matcher_stamps_only_its_own_sends(
    sender: socket.socket, receiver: socket.socket
) -> None:
    matcher = TxStampMatcher(sender)
    dest = receiver.getsockname()
    sender.sendto(b"plain", dest)
    before = realtime_ns()
    ident = matcher.sendto(b"stamped", dest)
    sender.sendto(b"plain", dest)
    ts = matcher.take(ident, before)
    assert ts is not None and ts >= before
    assert read_tx_timestamps(sender) == []  # the plain sends were not stamped
    assert len(drain(receiver)) == 3


def test_tx_matcher_without_explicit_ids(sender: socket.socket, receiver: socket.socket) -> None:
    matcher = TxStampMatcher(sender)
    matcher.explicit_ids = False  # what kernels before 6.13 get
    before = realtime_ns()
    ids = [matcher.sendto(b"x", receiver.getsockname()) for _ in range(5)]
    assert ids == list(range(5))
    assert all(matcher.take(i, before) is not None for i in ids)


# -- keeping TX-timestamped sockets away from Twisted's EPOLLERR handling ------------------


@implementer(IReadDescriptor)
class PlainReader:
    """What a naive endpoint would do: give the UDP socket to the reactor directly."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lost: list[Failure] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        drain(self.sock)

    def connectionLost(self, reason: Failure) -> None:
        self.lost.append(reason)

    def logPrefix(self) -> str:
        return "PlainReader"


@pytest_twisted.ensureDeferred
async def test_twisted_drops_a_socket_whose_error_queue_holds_stamps(
    sender: socket.socket, receiver: socket.socket
) -> None:
    # Why SocketWatcher exists: the pending TX timestamp raises EPOLLERR without EPOLLIN and
    # the reactor disconnects the descriptor.
    reader = PlainReader(sender)
    FDSET.addReader(reader)
    try:
        enable_tx_timestamps(sender)
        sender.sendto(b"x", receiver.getsockname())
        await wait_for(lambda: bool(reader.lost), timeout=5)
        assert reader not in FDSET.getReaders()
    finally:
        FDSET.removeReader(reader)


@pytest_twisted.ensureDeferred
async def test_socket_watcher_delivers_stamps_and_data_and_keeps_the_socket(
    receiver: socket.socket,
) -> None:
    sock = udp_socket()
    watcher = SocketWatcher(FDSET)
    stamps: list[TxTimestamp] = []
    data: list[bytes] = []
    try:
        watcher.watch(
            sock, on_readable=lambda: data.extend(d for d, _ in drain(sock)), on_tx=stamps.extend
        )
        enable_tx_timestamps(sock)
        for i in range(5):
            sock.sendto(b"%d" % i, receiver.getsockname())
        await wait_for(lambda: len(stamps) == 5)
        assert [s.id for s in stamps] == list(range(5))
        receiver.sendto(b"reply", sock.getsockname())
        await wait_for(lambda: data == [b"reply"])
        watcher.set_reading(sock, False)
        receiver.sendto(b"held", sock.getsockname())
        sock.sendto(b"more", receiver.getsockname())
        await wait_for(lambda: len(stamps) == 6)  # stamps flow while reading is paused
        assert data == [b"reply"]
        watcher.set_reading(sock, True)
        await wait_for(lambda: data == [b"reply", b"held"])
        assert watcher in FDSET.getReaders()
    finally:
        watcher.unwatch(sock)
        watcher.close()
        sock.close()
    assert watcher not in FDSET.getReaders()


@pytest_twisted.ensureDeferred
async def test_socket_watcher_reports_a_socket_error_once() -> None:
    probe = udp_socket()
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there now: the kernel answers port unreachable
    sock = udp_socket()
    sock.connect(("127.0.0.1", port))
    watcher = SocketWatcher(FDSET)
    errors: list[int] = []
    try:
        watcher.watch(sock, on_error=errors.append)
        sock.send(b"anyone?")
        await wait_for(lambda: bool(errors))
        await sleep(0.05)  # a level-triggered error not cleared would repeat many times here
        assert errors == [errno.ECONNREFUSED]
    finally:
        watcher.close()
        sock.close()


def test_socket_watcher_rejects_misuse(sender: socket.socket) -> None:
    watcher = SocketWatcher(FDSET)
    try:
        with pytest.raises(TypeError):
            watcher.watch(7)  # type: ignore[arg-type]
        watcher.watch(sender)
        with pytest.raises(ValueError, match="already watched"):
            watcher.watch(sender)
        with pytest.raises(ValueError, match="without on_readable"):
            watcher.set_reading(sender, True)
        other = udp_socket()
        with pytest.raises(KeyError, match="not watched"):
            watcher.set_reading(other, False)
        other.close()
    finally:
        watcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        watcher.watch(sender)
