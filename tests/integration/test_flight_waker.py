"""measure.flight.Waker on the real reactor: a deadline that passed while the process was
not running (descheduled, or busy) wakes the sleeper only after the input already waiting
is read. Twisted runs due timers before it polls sockets: ping and traceroute gave up on
an answer that sat in a socket (a `*` under CPU load where native traceroute, which
reads first, had the answer)."""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest_twisted
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import DatagramProtocol

from packetlab.measure.flight import Waker

reactor: Any = _reactor


class _Answers(DatagramProtocol):
    def __init__(self, then: Callable[[bytes], None]) -> None:
        self.then = then
        self.got: list[bytes] = []

    def datagramReceived(self, data: bytes, addr: object) -> None:
        self.got.append(data)
        self.then(data)


class _Busy(DatagramProtocol):
    """Handling its datagram, sends the answer, then runs nothing for 50 ms (as a process
    descheduled, or busy with other input, while the deadline passes)."""

    def __init__(self, to: int) -> None:
        self.to = to

    def datagramReceived(self, data: bytes, addr: object) -> None:
        assert self.transport is not None
        self.transport.write(b"answer", ("127.0.0.1", self.to))
        time.sleep(0.05)


async def answer_while_busy(
    then: Callable[[bytes], None], wait: Callable[[float], Awaitable[object]]
) -> tuple[list[bytes], object]:
    """`wait(deadline)` while the answer comes and the deadline passes in a busy handler
    (the reactor reads the trigger in a poll, the handler lets the deadline pass with the
    answer waiting; then the reactor runs its due timers, then polls again): what had been
    read when the wait returned, and what it returned."""
    answers = _Answers(then)
    port = reactor.listenUDP(0, answers, interface="127.0.0.1")
    busy = reactor.listenUDP(0, _Busy(port.getHost().port), interface="127.0.0.1")
    trigger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        go = ("127.0.0.1", busy.getHost().port)
        reactor.callLater(0.005, trigger.sendto, b"go", go)
        got = await wait(reactor.seconds() + 0.02)
        return list(answers.got), got  # what the sleeper sees the moment it runs again
    finally:
        trigger.close()
        await busy.stopListening()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_deadline_passed_while_busy_wakes_after_the_waiting_answer() -> None:
    waker = Waker(reactor)
    seen, _ = await answer_while_busy(lambda _: waker.poke(), waker.sleep)
    assert seen == [b"answer"]


@pytest_twisted.ensureDeferred
async def test_a_dns_query_s_deadline_takes_the_waiting_answer() -> None:
    from packetlab.measure.dnstransport import _Inbox
    from packetlab.wire import Ndata

    inbox = _Inbox(reactor)
    put = inbox.feeder("udp")
    _, got = await answer_while_busy(
        lambda data: put(Ndata(sktid=0, family=2, proto=17, time=0, data=data)), inbox.next
    )
    assert got is not None, "the query gave up with its answer waiting"
    kind, note = cast(tuple[str, Ndata], got)
    assert (kind, note.data) == ("udp", b"answer")


@pytest_twisted.ensureDeferred
async def test_a_deadline_with_nothing_waiting_still_ends_the_sleep() -> None:
    waker = Waker(reactor)
    t0 = reactor.seconds()
    await waker.sleep(t0 + 0.01)
    assert reactor.seconds() - t0 >= 0.01
    assert not reactor.getDelayedCalls() or all(
        c.getTime() > reactor.seconds() for c in reactor.getDelayedCalls()
    )


@pytest_twisted.ensureDeferred
async def test_a_controller_socket_s_get_timeout_takes_the_waiting_answer() -> None:
    """The public `Socket.get(timeout)` (exchange helpers, streams, captures): the same."""
    from packetlab.controller import Socket
    from packetlab.wire import Ndata

    sock = Socket(0, 2, 17, reactor)
    _, got = await answer_while_busy(
        lambda data: sock.deliver(Ndata(sktid=0, family=2, proto=17, time=0, data=data)),
        lambda until: sock.get(timeout=until - reactor.seconds()),
    )
    assert isinstance(got, Ndata), "get() timed out with the answer waiting"
    assert got.data == b"answer"


@pytest_twisted.ensureDeferred
async def test_an_ntag_wait_takes_the_waiting_ntag() -> None:
    from twisted.internet.defer import Deferred

    from packetlab.measure.capture import ntag_time
    from packetlab.wire import Ntag

    tag: Deferred[Ntag] = Deferred()
    _, got = await answer_while_busy(
        lambda data: tag.callback(Ntag(sktid=0, tag=1, time=42)),
        lambda until: Deferred.fromCoroutine(ntag_time(tag, reactor, until - reactor.seconds())),
    )
    assert got == 42, "the ntag wait gave up with the ntag waiting"
