"""The paced sender of `run throughput` (`-b`, UDP: measure.throughput_send.Sending) driven
over a fake endpoint by any bytes (session 29, iperf29): the rate, block, burst, streams and
end condition (-t, -n, -k), the endpoint's speed, how far the controller's clock moves
between looks, jumps of the endpoint's clock, a data connection the server closes (its
sends refused from then on), failed ntags, a session that ends mid-run and a Ctrl-C all
come from the input. Invariants:

* `upload()` ends (returns, or raises a ControllerError / StreamError) within twice its
  timeout of simulated time (the sends get it, then their last ntags); nothing else
  escapes;
* nothing is sent after it ended; with -t (not stopped) no block is scheduled at or past
  the test's end, and one TEST_END at most is sent;
* each stream's scheduled times never go back (no negative gap), and an interval record
  never has a negative span or byte count;
* the bytes counted (a test that did not fail) are the bytes the endpoint reported
  sent: each ntag stands for the sends since the stream's last tagged one, counted when
  it came by the test's end (-t) or always (-n, -k).
"""

from __future__ import annotations

import functools
import heapq
import struct
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

if TYPE_CHECKING:
    from packetlab.measure.iperf3 import State
    from packetlab.wire import Ntag


@functools.cache
def _pl() -> Any:
    """The code under test and its types, imported when first used (stress/fuzz.py reads
    fuzz_decoders' tables before it imports packetlab, instrumented)."""
    from packetlab import wire
    from packetlab.controller import ControllerError, RequestFailed, SendFailed
    from packetlab.controller.errors import SessionClosed
    from packetlab.measure.iperf3 import State
    from packetlab.measure.stream import StreamError
    from packetlab.measure.throughput_send import Sending
    from packetlab.measure.throughput_spec import TimedSpec
    from packetlab.measure.throughput_streams import Flow
    from packetlab.wire import Ntag

    return SimpleNamespace(
        wire=wire, ControllerError=ControllerError, RequestFailed=RequestFailed,
        SendFailed=SendFailed, SessionClosed=SessionClosed, State=State,
        StreamError=StreamError, Sending=Sending, TimedSpec=TimedSpec, Flow=Flow, Ntag=Ntag,
    )  # fmt: skip


__all__ = ["fuzz_paced_send", "paced_seeds"]

_BASE_NS = 1_700_000_000 * 10**9
_TIMEOUT = 5.0  # upload()'s: simulated seconds
RTT_S = 0.0005  # a request's answer comes this long after it (a closed session's: at once)


class _Bytes:
    """The input read as small numbers, zeros once it runs out (a finding replays)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def u8(self) -> int:
        self.at += 1
        return self.data[self.at - 1] if self.at <= len(self.data) else 0

    def u16(self) -> int:
        return self.u8() << 8 | self.u8()


class _Ctl:
    """The control connection: the states sent (TEST_END now, or queued for a time)."""

    peer = "192.0.2.9:5201"

    def __init__(self) -> None:
        self.states: list[tuple[State, int | None]] = []

    def send_state(self, state: State, time: int | None = None) -> None:
        self.states.append((state, time))


class _Endpoint:
    """A fake endpoint session: sends go at their time (or now) in time order, each
    taking the time its bytes take at `rate` bytes/s; ntags fire with the send time.
    Its clock is the controller's plus `skew` (jumps move it)."""

    def __init__(self, clock: Clock, rate: float, refuse_every: int, fail_every: int) -> None:
        self.reactor = clock
        self.rate = rate
        self.refuse_every, self.fail_every = refuse_every, fail_every
        self.skew = 0
        self.free_at = 0
        self.heap: list[tuple[int, int, int, int, int, Deferred[Ntag] | None]] = []
        self.seq = 0
        self.gone = False
        self.calls: list[tuple[int, int, int, bool]] = []  # (sktid, time, size, ntag)
        self.group: dict[int, int] = {}  # bytes sent on a socket since its last tagged send
        self.tagged: list[tuple[int, int]] = []  # (send time, group bytes) of each ntag fired
        self.pending: list[Deferred[Ntag]] = []
        self.answers: list[tuple[Deferred[Any], Deferred[Ntag] | None]] = []  # not answered
        self.closed: set[int] = set()  # sockets the server closed

    def now(self) -> int:
        return _BASE_NS + int(self.reactor.seconds() * 1e9) + self.skew

    def mread(self, addr: int, size: int) -> Deferred[bytes]:
        P = _pl()
        if self.gone:
            return fail(P.SessionClosed("the endpoint closed the session"))
        if size == 8:  # the clock (TIME); anything else (TCP_INFO) is not there
            return succeed(struct.pack(">Q", self.now()))
        return fail(P.ControllerError("no such memory here"))

    def wait_writable(self) -> Deferred[None]:
        return succeed(None)

    def nsend(self, sktid: int, data: bytes, *, time: int = 0, ntag: bool = False,
              to: Any = None) -> Deferred[Any]:  # fmt: skip
        P = _pl()
        self.calls.append((sktid, time, len(data), ntag))
        request = P.wire.Nsend(sktid=sktid, family=4, proto=6, time=time, tag=0, data=b"")
        if self.gone:
            return fail(P.SessionClosed("the endpoint closed the session"))
        answer: Deferred[Any] = Deferred()  # the endpoint's result, a round trip later
        if self.refuse_every and len(self.calls) % self.refuse_every == 0:
            self._close(sktid)  # the server closed the connection: this send and all later
        if sktid in self.closed:  # ones refused (ESKTNOTOPEN), its queued ones not sent
            self.answers.append((answer, None))
            self.reactor.callLater(RTT_S, self._answer, answer, P.RequestFailed(request, 0x33))
            return answer
        d: Deferred[Ntag] | None = Deferred() if ntag else None
        if d is not None:
            self.pending.append(d)
        self.answers.append((answer, d))
        self.seq += 1
        heapq.heappush(self.heap, (time, self.seq, sktid, len(data), self.seq, d))
        self.reactor.callLater(RTT_S, self._answer, answer, _Queued(d))
        return answer

    def _close(self, sktid: int) -> None:
        P = _pl()
        self.closed.add(sktid)
        self.group.pop(sktid, None)
        kept = [x for x in self.heap if x[2] != sktid]
        gone = [x[5] for x in self.heap if x[2] == sktid and x[5] is not None]
        self.heap = kept
        heapq.heapify(self.heap)
        for d in gone:
            self.pending.remove(d)
            d.errback(P.SendFailed(sktid, 1, self.now(), P.wire.Status.EPKTNOTSENT))

    def _answer(self, answer: Deferred[Any], result: Any) -> None:
        entry = next((x for x in self.answers if x[0] is answer), None)
        if entry is not None:
            self.answers.remove(entry)
            if isinstance(result, Exception):
                answer.errback(result)
            else:
                answer.callback(result)

    def run(self) -> None:
        """The sends due by now, in time order, one after another at `rate`."""
        P = _pl()
        now = self.now()
        while self.heap and not self.gone:
            when, _, sktid, size, number, d = self.heap[0]
            at = max(when, self.free_at, 0)
            if at > now:
                return
            heapq.heappop(self.heap)
            self.free_at = at + int(size / self.rate * 1e9)
            if d is not None and self.fail_every and number % self.fail_every == 0:
                self.pending.remove(d)  # not sent (EPKTNOTSENT): its ntag says so
                self.group.pop(sktid, None)  # (what its tag stood for is not counted)
                d.errback(P.SendFailed(sktid, 1, at, P.wire.Status.EPKTNOTSENT))
                continue
            self.group[sktid] = self.group.get(sktid, 0) + size
            if d is None:
                continue
            self.pending.remove(d)
            self.tagged.append((at, self.group.pop(sktid)))
            d.callback(P.Ntag(sktid, 1, at))

    def end(self) -> None:
        """The session ends: queued sends never go, awaited ntags fail."""
        P = _pl()
        self.gone = True
        answers, self.answers = self.answers, []
        for a, d in answers:  # (their ntags were never handed out: the session drops them)
            if d is not None and d in self.pending:
                self.pending.remove(d)
            elif d is not None:  # failed already (a closed socket), never to be read
                d.addErrback(lambda _: None)
            a.errback(P.SessionClosed("the endpoint closed the session"))
        pending, self.pending = self.pending, []
        for d in pending:
            d.errback(P.SessionClosed("the endpoint closed the session", waiting="an ntag"))


class _Queued:
    def __init__(self, ntag: Deferred[Ntag] | None) -> None:
        self.ntag = ntag


def fuzz_paced_send(data: bytes) -> None:
    """Any bytes: a paced upload over a fake endpoint keeps the invariants above."""
    P = _pl()
    b = _Bytes(data)
    udp = bool(b.u8() & 1)
    streams = 1 + b.u8() % 3
    block = 16 + b.u16() % (1400 if udp else 65520)
    per_s = 1 + b.u16() % 3000  # sends a second a stream the rate asks for
    rate = float(block * 8 * per_s)
    burst = b.u8() % 12
    burst = burst if burst <= 8 else 0
    end = b.u8() % 3
    seconds = nbytes = blocks = None
    if end == 0:
        seconds = (1 + b.u8() % 30) / 100  # 0.01..0.3 s
    elif end == 1:
        nbytes = 1 + b.u16() % (block * 200)
    else:
        blocks = 1 + b.u8() % 200
    spec = P.TimedSpec(direction="upload", seconds=seconds, nbytes=nbytes, blocks=blocks,
                     streams=streams, udp=udp, bitrate=rate, length=block, interval=0.1,
                     burst=burst)  # fmt: skip
    try:
        spec.check()
    except ValueError:
        return
    clock = Clock()
    speed = (1 + b.u16()) * 2_000.0  # the endpoint's bytes/s: 2 kB/s .. 131 MB/s
    refuse = b.u8() % 64 if b.u8() < 16 else 0  # every so many sends: a socket closes
    fails = b.u8() % 64 if b.u8() < 16 else 0  # every so many sends: EPKTNOTSENT
    ep = _Endpoint(clock, speed, refuse, fails)
    ctl = _Ctl()
    records: list[dict[str, Any]] = []
    test = P.Sending(ep, spec, "192.0.2.9", 5201, ctl, records.append, None)
    test.flows = [P.Flow(1 + i, 5 + 2 * i, 1 + i, "upload") for i in range(streams)]
    stop_after = 1 + b.u16() % 3000 if b.u8() < 48 else None  # a Ctrl-C after so many looks
    end_after = 1 + b.u16() % 3000 if b.u8() < 48 else None  # the session ends then
    looks = 0
    test.should_stop = lambda: stop_after is not None and looks >= stop_after

    outcome: list[Any] = []
    done = Deferred.fromCoroutine(test.upload(_TIMEOUT))
    done.addCallbacks(lambda _: outcome.append("ok"), outcome.append)
    while not outcome and clock.seconds() < 2 * _TIMEOUT + 1:
        looks += 1
        if end_after is not None and looks == end_after:
            ep.end()
        step = b.u8()
        if step < 8:  # the endpoint's clock jumps (forward, or back a little)
            ep.skew += (b.u16() - 8192) * 10_000
        clock.advance((1 + step % 64) * 1e-4 if step >= 8 else 1e-3)
        ep.run()
    assert outcome, f"upload() did not end within {2 * _TIMEOUT + 1} s of simulated time"
    failure = outcome[0] if outcome[0] != "ok" else None
    if failure is not None and not failure.check(P.ControllerError, P.StreamError):
        failure.raiseException()  # anything else: a crash of the sender
    if test.final is not None:
        test.final.addErrback(lambda _: None)
    calls = len(ep.calls)
    for _ in range(300):  # the queued sends go, their ntags come; nothing new is queued
        clock.advance(0.01)
        ep.run()
    assert len(ep.calls) == calls, f"{len(ep.calls) - calls} sends after upload() ended"

    ends = [s for s in ctl.states if s[0] == P.State.TEST_END]
    assert len(ends) <= 1, ctl.states
    if seconds is not None and not test.stopped and failure is None:
        late = [t for _, t, _, _ in ep.calls if t >= test.stop_at]
        assert not late, f"{len(late)} sends at or after the end {test.stop_at}"
    for sktid in {c[0] for c in ep.calls}:
        times = [t for s, t, _, _ in ep.calls if s == sktid]
        assert times == sorted(times), f"socket {sktid}: a scheduled time went back"
    for rec in records:
        assert 0 <= rec["start"] <= rec["end"] and rec["sum"]["bytes"] >= 0, rec

    if failure is None:  # (a failed test's figures are not shown: a refused send's bytes
        # are in the next ntag's count here, a failed ntag's are lost with it)
        counted = sum(f.bytes + f.omitted_bytes for f in test.flows)
        reported = sum(n for t, n in ep.tagged if seconds is None or t <= test.stop_at)
        assert counted == reported, (counted, reported)


def paced_seeds() -> list[bytes]:
    """A -t UDP upload on time, a TCP one behind its schedule, -n and -k with bursts, a
    Ctrl-C, a session that ends, refused sends and clock jumps."""
    return [
        bytes([1, 0, 5, 0x78, 0, 100, 0, 0, 10, 0, 200, 200, 200, 200, 200, 200]),
        bytes([0, 1, 0xFF, 0x00, 0x0B, 0xB8, 0, 0, 20, 0, 5, 200, 200, 200, 200, 200]),
        bytes([1, 2, 2, 0, 0, 50, 4, 1, 0x10, 0, 0, 0xFF, 200, 200, 200]),
        bytes([0, 0, 1, 0, 1, 0, 3, 2, 30, 0, 100, 200, 200, 200]),
        bytes([1, 0, 4, 0, 0, 200, 0, 0, 30, 0, 50, 200, 200, 200, 10, 0, 40, 200, 200]),
        bytes([1, 1, 4, 0, 0, 200, 0, 0, 30, 0, 50, 200, 200, 200, 200, 10, 0, 40, 200]),
        bytes([1, 0, 4, 0, 0, 200, 0, 0, 30, 0, 50, 5, 7, 5, 9, 200, 200, 3, 0x30, 0, 200]),
    ]
