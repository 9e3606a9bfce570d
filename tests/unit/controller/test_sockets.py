"""Notifications: routing per socket, callbacks, async iteration, tracked ntags, and
backpressure (reading pauses while a socket's queue is over its mark)."""

from __future__ import annotations

import pytest
from ctl_fakes import frames, on_string_transport, result_of
from twisted.internet import defer
from twisted.internet.defer import Deferred

from packetlab.controller import (
    ConnectFailed,
    EndpointSession,
    SendFailed,
    Socket,
    SocketClosed,
)
from packetlab.controller.sockets import Note
from packetlab.wire import Ndata, Nopen, Nstat, NstatCode, Ntag, Result, Status, vmem


def ndata(sktid: int, data: bytes, t: int = 1) -> Ndata:
    return Ndata(sktid, 4, 6, t, data)


def open_tcp(s: EndpointSession, sktid: int, **kw: object) -> Socket:
    d = s.nopen_tcp_connect(sktid, "127.0.0.1", 80, **kw)  # type: ignore[arg-type]
    s.dataReceived(frames(Result()))
    return result_of(d)


def test_notes_go_to_their_socket_in_order() -> None:
    s, _, _ = on_string_transport()
    a, b = open_tcp(s, 1), open_tcp(s, 2)
    s.dataReceived(frames(ndata(2, b"x"), ndata(1, b"y"), ndata(2, b"z")))
    assert [n.data for n in b.drain()] == [b"x", b"z"]  # type: ignore[union-attr]
    assert [n.data for n in a.drain()] == [b"y"]  # type: ignore[union-attr]


def test_callbacks_see_every_note_and_can_be_removed() -> None:
    s, _, _ = on_string_transport()
    sock = open_tcp(s, 1, buffer=False)
    seen: list[Note] = []
    remove = sock.add_callback(seen.append)
    s.dataReceived(frames(ndata(1, b"a")))
    remove()
    s.dataReceived(frames(ndata(1, b"b")))
    assert [n.data for n in seen] == [b"a"]  # type: ignore[union-attr]
    assert sock.queued == 0 and sock.dropped == 1


def test_async_iteration_ends_when_the_socket_closes() -> None:
    s, _, _ = on_string_transport()
    sock = open_tcp(s, 1)

    async def consume() -> list[bytes]:
        got = []
        async for note in sock.notifications():
            if isinstance(note, Ndata):
                got.append(note.data)
        return got

    d = Deferred.fromCoroutine(consume())
    s.dataReceived(frames(ndata(1, b"a"), ndata(1, b"b")))
    assert not d.called
    closing = s.nclose(1)
    s.dataReceived(frames(ndata(1, b"c"), Result()))
    assert result_of(closing) == Result()
    assert result_of(d) == [b"a", b"b", b"c"]


def test_get_with_timeout_gives_none() -> None:
    s, _, clock = on_string_transport()
    sock = open_tcp(s, 1)
    d = sock.get(timeout=0.5)
    clock.advance(0.4)
    assert not d.called
    clock.advance(0.2)
    assert result_of(d) is None
    s.dataReceived(frames(ndata(1, b"late")))
    assert sock.queued == 1  # the timed-out waiter did not swallow it


def test_tracked_ntag_fires_its_deferred_not_the_queue() -> None:
    s, _, _ = on_string_transport()
    sock = open_tcp(s, 1)
    sent = [s.nsend(1, b"x", ntag=True), s.nsend(1, b"y", ntag=True), s.nsend(1, b"z")]
    s.dataReceived(frames(Result(), Result(), Result()))
    q1, q2, q3 = (result_of(d) for d in sent)
    assert (q1.tag, q2.tag, q3.tag) == (1, 2, 0) and q3.ntag is None
    s.dataReceived(frames(Ntag(1, 2, 20), Ntag(1, 1, 10, Status.EPKTNOTSENT), Ntag(1, 99, 30)))
    assert q2.ntag is not None and result_of(q2.ntag).time == 20
    assert q1.ntag is not None
    with pytest.raises(SendFailed) as e:
        result_of(q1.ntag)
    assert e.value.status == Status.EPKTNOTSENT and e.value.tag == 1
    assert sock.drain() == [Ntag(1, 99, 30)]  # not ours: queued


def test_nclose_fails_ntags_still_waiting() -> None:
    s, _, _ = on_string_transport()
    open_tcp(s, 1)
    sent = s.nsend(1, b"x", ntag=True)
    s.dataReceived(frames(Result()))
    q = result_of(sent)
    closing = s.nclose(1)
    s.dataReceived(frames(Result()))
    result_of(closing)
    assert q.ntag is not None
    with pytest.raises(SocketClosed, match="socket 1 was closed before its ntag 1"):
        result_of(q.ntag)


def test_ntag_timeout_frees_the_tag() -> None:
    s, _, clock = on_string_transport()
    sock = open_tcp(s, 1)
    sent = s.nsend(1, b"x", ntag=True)
    s.dataReceived(frames(Result()))
    q = result_of(sent)
    assert q.ntag is not None
    q.ntag.addTimeout(1, clock)
    clock.advance(2)
    with pytest.raises(defer.TimeoutError):
        result_of(q.ntag)
    s.dataReceived(frames(Ntag(1, q.tag, 5)))
    assert sock.drain() == [Ntag(1, q.tag, 5)]


def test_explicit_tag_in_use_is_refused() -> None:
    s, _, _ = on_string_transport()
    open_tcp(s, 1)
    s.nsend(1, b"x", ntag=True, tag=7)
    with pytest.raises(ValueError, match="tag 7 is already waiting"):
        result_of(s.nsend(1, b"y", ntag=True, tag=7))


def test_failed_nsend_releases_its_tag() -> None:
    s, _, _ = on_string_transport()
    open_tcp(s, 1)
    d = s.nsend(1, b"x", ntag=True, tag=7)
    s.dataReceived(frames(Result(Status.ESYSNOBUFS)))
    with pytest.raises(Exception, match="ESYSNOBUFS"):
        result_of(d)
    s.nsend(1, b"y", ntag=True, tag=7)  # free again


def test_notes_for_unknown_sockets_are_counted_and_dropped() -> None:
    s, _, _ = on_string_transport()
    s.dataReceived(frames(ndata(7, b"?")))
    assert s.stray_notes == 1 and s.close_reason is None


def test_established_and_failed_connects() -> None:
    s, _, _ = on_string_transport()
    a, b = open_tcp(s, 1), open_tcp(s, 2)
    da, db = a.wait_established(), b.wait_established()
    s.dataReceived(
        frames(
            Nstat(1, 4, 6, 5, 0, b"\x7f\0\0\x01", 80),
            Nstat(2, 4, 6, 6, NstatCode.RESET),
        )
    )
    assert result_of(da).time == 5
    assert result_of(a.wait_established()).time == 5  # later callers too
    with pytest.raises(ConnectFailed, match="RESET"):
        result_of(db)


def test_backpressure_pauses_reading_until_drained() -> None:
    s, t, _ = on_string_transport(max_notes=4, max_bytes=1 << 20)
    sock = open_tcp(s, 1)
    d = s.mread(vmem.TIME.addr, 8)
    burst = frames(*(ndata(1, bytes([i])) for i in range(6)))
    s.dataReceived(burst + frames(vmem_answer := _mdata()))
    # reading paused at the 4th note; the rest stays in the framer, unprocessed
    assert t.producerState == "paused" and s.paused
    assert sock.queued == 4 and not d.called
    result_of(sock.get())
    assert s.paused and sock.queued == 3
    result_of(sock.get())  # down to half: resume, take 2 more notes, full again
    assert s.paused and sock.queued == 4 and not d.called
    assert [n.data for n in sock.drain()] == [bytes([i]) for i in range(2, 6)]  # type: ignore[union-attr]
    assert not s.paused and t.producerState == "producing"
    assert result_of(d) == vmem_answer.data


def test_bytes_arriving_while_paused_are_held_not_dispatched() -> None:
    """A transport may still deliver after pauseProducing (bytes already read, a TLS
    record's rest): they wait in the framer. Each such delivery dispatched one frame
    before the paused check, one note over the high-water mark per call (Hypothesis,
    test_ctl_fuzz seed 1014: 5 queued of max_notes 4, the frames fed a byte at a time)."""
    s, t, _ = on_string_transport(max_notes=4, max_bytes=1 << 20)
    sock = open_tcp(s, 1)
    s.dataReceived(frames(*(ndata(1, bytes([i])) for i in range(4))))
    assert s.paused and sock.queued == 4
    for frame in (frames(ndata(1, bytes([i]))) for i in range(4, 7)):
        s.dataReceived(frame)
    assert s.paused and sock.queued == 4
    assert [n.data for n in sock.drain()] == [bytes([i]) for i in range(4)]  # type: ignore[union-attr]
    assert not s.paused and t.producerState == "producing"
    assert [n.data for n in sock.drain()] == [bytes([i]) for i in range(4, 7)]


def _mdata():  # type: ignore[no-untyped-def]
    from packetlab.wire import Mdata

    return Mdata(vmem.TIME.addr, b"\0" * 7 + b"\x09")


def test_byte_budget_also_pauses() -> None:
    s, _, _ = on_string_transport(max_notes=1000, max_bytes=100)
    sock = open_tcp(s, 1)
    s.dataReceived(frames(ndata(1, b"x" * 60), ndata(1, b"y" * 60), ndata(1, b"z")))
    assert s.paused and sock.queued == 2
    sock.drain()
    assert not s.paused and sock.queued == 1


def test_consumer_taking_notes_inside_dispatch_does_not_reenter() -> None:
    s, _, _ = on_string_transport(max_notes=2)
    sock = open_tcp(s, 1)
    got: list[bytes] = []

    async def consume() -> None:
        async for note in sock:
            assert isinstance(note, Ndata)
            got.append(note.data)
            if len(got) == 3:
                s.dataReceived(frames(ndata(1, b"late")))  # re-entrant delivery

    Deferred.fromCoroutine(consume())
    s.dataReceived(frames(*(ndata(1, bytes([65 + i])) for i in range(5))))
    assert got == [b"A", b"B", b"C", b"D", b"E", b"late"]


def test_a_raw_nopen_request_gets_a_socket_too() -> None:
    s, _, _ = on_string_transport()
    d = s.request(Nopen(9, 4, 17, 4096, b"\0" * 4, 0))
    s.dataReceived(frames(Result()))
    result_of(d)
    sock = s.find_socket(9)
    assert sock is not None and (sock.family, sock.proto) == (4, 17)
    s.nsend(9, b"x", to=("127.0.0.1", 7))  # family/proto known


def test_notes_for_a_closed_socket_are_stray_and_its_queue_stays_as_it_was() -> None:
    """Session 21 (ctl21), pinned: ndata, nstat and ntag for a socket after its nclose
    was answered go nowhere (counted), however many; what it had queued stays readable."""
    s, _, _ = on_string_transport()
    sock = open_tcp(s, 2)
    s.dataReceived(frames(ndata(2, b"kept")))
    closed = s.nclose(2)
    s.dataReceived(frames(Result()))
    result_of(closed)
    late = [ndata(2, b"late"), Nstat(2, 4, 6, 9, NstatCode.PEERCLOSED), Ntag(2, 99, 9)]
    s.dataReceived(frames(*late * 1000))
    assert s.stray_notes == 3000 and s.close_reason is None and not s.paused
    assert [n.data for n in sock.drain()] == [b"kept"]  # type: ignore[union-attr]
    assert sock.ended and sock.dropped == 0
