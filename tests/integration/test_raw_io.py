"""RawIO (packetlab.endpoint.raw) over a fake capture socket and a fake reactor clock:
endtime, version and loopback filtering, filter rejection, TX times, close. The sender is
a real UDP socket (TX stamps over loopback), hence integration; the real
AF_PACKET/IPPROTO_RAW sockets run in test_endpoint_raw.py."""

from __future__ import annotations

import errno
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from testkit.clock import FakeClock

from packetlab.endpoint import raw
from packetlab.endpoint.bpf import PACKET_OUTGOING, CapturedPacket, VerifierError
from packetlab.endpoint.closer import Closer
from packetlab.endpoint.sockets import CaptureRejected, PendingSend, Skt
from packetlab.wire.constants import Status

SEC = 1_000_000_000
T0 = 1_700_000_000 * SEC


class FakeCapture:
    def __init__(self, ifname: str = "eth0") -> None:
        self.ifname = ifname
        self.ifindex = 7
        self.queue: deque[CapturedPacket] = deque()
        self.filters: list[object] = []
        self.dropped_all = 0
        self.drained = 0
        self.closed = False
        self.kernel_drops = 0  # PACKET_STATISTICS' tp_drops, reset when read

    def drops(self) -> int:
        n, self.kernel_drops = self.kernel_drops, 0
        return n

    def fileno(self) -> int:
        return 42

    def recv_raw(self) -> CapturedPacket | None:
        return self.queue.popleft() if self.queue else None

    def recv(self) -> CapturedPacket | None:
        while (pkt := self.recv_raw()) is not None and pkt.outgoing:
            pass
        return pkt

    def set_filter(self, program: object) -> None:
        self.filters.append(program)

    def drop_all(self) -> None:
        self.dropped_all += 1

    def drain(self) -> int:
        n = len(self.queue)
        self.drained += n
        self.queue.clear()
        return n

    def close(self) -> None:
        self.closed = True


class Events:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, int]] = []
        self.done: list[tuple[PendingSend, int, int]] = []
        self.dropped: list[tuple[int, int]] = []

    def raw_received(self, skt: Skt, data: bytes, time: int) -> None:
        self.got.append((data, time))

    def raw_dropped(self, skt: Skt, count: int, time: int) -> None:
        self.dropped.append((count, time))

    def send_done(self, pending: PendingSend, time: int, err: int) -> None:
        self.done.append((pending, time, err))


class Loaded:
    def __enter__(self) -> Loaded:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield s
    s.close()


class R:
    """One RawIO over fakes (the sender is a real UDP socket: TX stamps work unprivileged)."""

    def __init__(self, sender: socket.socket, ifname: str) -> None:
        self.cap, self.reactor, self.events = FakeCapture(ifname), FakeClock(T0, step=0), Events()
        self.closed: list[int] = []
        self.handed: list[object] = []  # what went to the closer thread
        self.io = raw.RawIO(
            self.reactor,  # type: ignore[arg-type]
            Skt(1, 4, 0, 1 << 20),
            self.events,  # type: ignore[arg-type]
            sender,
            self.cap,  # type: ignore[arg-type]
            self.reactor.now_ns,
            lambda: self.closed.append(1),
            self.handed.append,
        )

    def times(self) -> list[int]:
        return [t for _, t in self.events.got]


@pytest.fixture
def make(sender: socket.socket, monkeypatch: pytest.MonkeyPatch) -> Callable[..., R]:
    monkeypatch.setattr(raw, "load_ncap_filter", lambda program: Loaded())
    return lambda ifname="eth0": R(sender, ifname)


def pkt(time: int, version: int = 4, outgoing: bool = False) -> CapturedPacket:
    data = bytes([version << 4 | 5]) + bytes(19)
    proto = 0x0800 if version == 4 else 0x86DD
    return CapturedPacket(data, time, PACKET_OUTGOING if outgoing else 0, proto, False)


def test_nothing_is_delivered_before_the_first_ncap(make: Callable[..., R]) -> None:
    r = make()
    assert r.io in r.reactor.readers
    r.cap.queue.append(pkt(T0))
    r.io.doRead()
    assert r.events.got == []


def test_capture_until_endtime(make: Callable[..., R]) -> None:
    r = make()
    end = T0 + 2 * SEC
    r.io.capture(b"prog", end)
    assert len(r.cap.filters) == 1 and r.cap.dropped_all == 0
    r.cap.queue.extend([pkt(T0 + 1), pkt(T0 + 2, version=6)])  # another IP version: skipped
    r.io.doRead()
    assert r.times() == [T0 + 1]
    # Packets still queued at endtime: those received before it go out, the rest is dropped.
    r.cap.queue.extend([pkt(end - 1), pkt(end), pkt(end + 5)])
    r.reactor.advance(2)
    assert r.cap.dropped_all == 1
    assert r.times() == [T0 + 1, end - 1]
    r.cap.queue.append(pkt(end - 3))  # a late arrival of an early packet: capture is over
    r.io.doRead()
    assert len(r.events.got) == 2


@pytest.mark.parametrize("endtime", [0, T0 - 1, T0])
def test_endtime_not_in_the_future_stops(make: Callable[..., R], endtime: int) -> None:
    r = make()
    r.io.capture(b"prog", endtime)
    assert r.cap.filters == [] and r.cap.dropped_all == 1
    assert r.reactor.getDelayedCalls() == []


def test_new_ncap_replaces_filter_and_endtime(make: Callable[..., R]) -> None:
    r = make()
    r.io.capture(b"one", T0 + SEC)
    r.io.capture(b"two", T0 + 5 * SEC)
    assert len(r.cap.filters) == 2 and len(r.reactor.getDelayedCalls()) == 1
    r.reactor.advance(2)
    assert r.cap.dropped_all == 0
    r.io.capture(b"stop", 0)  # stops a running capture
    assert r.cap.dropped_all == 1 and r.reactor.getDelayedCalls() == []


def test_far_future_endtime_timer_is_capped(make: Callable[..., R]) -> None:
    r = make()
    r.io.capture(b"prog", 2**63)
    (call,) = r.reactor.getDelayedCalls()
    assert call.getTime() - r.reactor.seconds() == pytest.approx(86400)
    r.reactor.advance(86400)
    assert r.cap.dropped_all == 0 and len(r.reactor.getDelayedCalls()) == 1


def test_loopback_keeps_only_the_incoming_copy(make: Callable[..., R]) -> None:
    r = make("lo")
    r.io.capture(b"prog", T0 + SEC)
    r.cap.queue.extend([pkt(T0 + 1, outgoing=True), pkt(T0 + 2)])
    r.io.doRead()
    assert r.times() == [T0 + 2]


def test_rejected_filter_is_esktbadfilt(
    make: Callable[..., R], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = make()

    def reject(program: bytes) -> None:
        raise VerifierError(errno.EACCES, "0: (bf) r0 = r2\nR2 !read_ok\nprocessed 1 insns")

    monkeypatch.setattr(raw, "load_ncap_filter", reject)
    with pytest.raises(CaptureRejected, match="R2 !read_ok") as info:
        r.io.capture(b"bad", T0 + SEC)
    assert info.value.status == Status.ESKTBADFILT
    assert r.cap.filters == [] and r.reactor.getDelayedCalls() == []


def test_tagged_sends_get_a_tx_time(make: Callable[..., R]) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    r = make()
    tagged = PendingSend(r.io.skt, 3, b"tagged", rx.getsockname(), 0)
    plain = PendingSend(r.io.skt, 0, b"plain", rx.getsockname(), 0)
    assert r.io.send(tagged) is True and r.io.send(plain) is True
    assert rx.recv(100) == b"tagged" and rx.recv(100) == b"plain"
    stamp = r.io.tx_time(tagged, 0)
    assert stamp is not None and stamp > 0
    assert r.io.tx_time(plain, 0) is None
    assert r.io.tx_time(tagged, 0) is None  # taken once
    rx.close()


class FullSender(socket.socket):
    """A sender whose buffer is full while `full` is set."""

    full = False

    def sendto(self, *args: Any) -> int:
        if self.full:
            raise BlockingIOError(errno.EAGAIN, "full")
        return super().sendto(*args)


def test_a_full_send_buffer_waits_as_a_blocking_sender(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EAGAIN was ENOBUFS at once (ntag EPKTNOTSENT): `pktlab run ping -l 200 -s 1400`
    through a 20 Mbit/s tbf lost 35 % where ping, told ENOBUFS, sends again (0 %). The
    sends now wait, in order, and go once the buffer has room (session 30, ep30)."""
    monkeypatch.setattr(raw, "load_ncap_filter", lambda program: Loaded())
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    with FullSender(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        r = R(sender, "eth0")
        sends = [PendingSend(r.io.skt, 0, b"%d" % i, rx.getsockname(), 0) for i in range(3)]
        sender.full = True
        assert [r.io.send(p) for p in sends[:2]] == [False, False]
        r.reactor.advance(0.001)  # still full: nothing, tried again later
        assert r.events.done == [] and len(r.reactor.getDelayedCalls()) == 1
        sender.full = False
        assert r.io.send(sends[2]) is False  # behind the waiting ones
        r.reactor.advance(0.001)
        assert [(p, err) for p, _, err in r.events.done] == [(p, 0) for p in sends]
        assert [rx.recv(10) for _ in sends] == [b"0", b"1", b"2"]
        assert r.reactor.getDelayedCalls() == []
        sender.full = True
        assert r.io.send(sends[0]) is False
        assert r.io.close() == [sends[0]]  # unsent, given back; the retry cancelled
        assert r.reactor.getDelayedCalls() == []
    rx.close()


def test_close_releases_everything(make: Callable[..., R], sender: socket.socket) -> None:
    r = make()
    r.io.capture(b"prog", T0 + SEC)
    assert r.io.close() == []
    assert sender.fileno() == -1 and r.closed == [1]
    # The capture goes to the closer thread, not closed on the reactor's (its release
    # waits for an RCU grace period: bench_raw_close).
    assert r.handed == [r.cap] and not r.cap.closed
    assert r.io not in r.reactor.readers and r.reactor.getDelayedCalls() == []
    r.io.close()  # twice is harmless
    assert r.closed == [1] and r.handed == [r.cap]


def test_the_closer_closes_in_order_on_its_own_thread() -> None:
    done = threading.Event()
    seen: list[tuple[int, int]] = []

    class Closable:
        def __init__(self, n: int) -> None:
            self.n = n

        def close(self) -> None:
            seen.append((self.n, threading.get_ident()))
            if self.n == 2:
                done.set()

    class Gone:
        def close(self) -> None:
            raise OSError(errno.EBADF, "already closed")

    closer = Closer("test close")
    for item in (Closable(0), Gone(), Closable(1), Closable(2)):
        closer(item)
    assert done.wait(10), "the closer thread closed nothing in 10 s"
    assert [n for n, _ in seen] == [0, 1, 2]  # in order; an OSError does not stop it
    assert {ident for _, ident in seen} != {threading.get_ident()}


def test_kernel_drops_are_reported_while_capturing(make: Callable[..., R]) -> None:
    """The kernel's drops at the capture socket's full queue (session 20, ep20): read at
    each wake-up, reported while a capture runs; those after endtime are not ours."""
    r = make()
    r.io.capture(b"prog", T0 + SEC)
    r.cap.queue.append(pkt(T0 + 1))
    r.cap.kernel_drops = 5
    r.io.doRead()
    assert r.events.dropped == [(5, T0)] and len(r.events.got) == 1
    r.io.doRead()  # nothing new
    assert r.events.dropped == [(5, T0)]
    r.reactor.advance(2.0)  # endtime: the capture stops
    r.cap.kernel_drops = 2
    r.io.doRead()
    assert r.events.dropped == [(5, T0)]
