"""The controller connection over a StringTransport: order, batching, backpressure,
setup timeout, malformed input, teardown."""

from __future__ import annotations

from typing import Any

from ep_fakes import Rig, names, tcp_open, udp_open
from testkit.logs import captured_events
from twisted.internet.abstract import FileDescriptor
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from packetlab import wire
from packetlab.endpoint.protocol import (
    FLUSH_AFTER,
    LINGER_TIMEOUT,
    MAX_QUEUED,
    SETUP_TIMEOUT,
    ControllerProtocol,
)
from packetlab.endpoint.session import SessionEnd
from packetlab.wire import vmem


class Transport(StringTransport):
    nodelay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.nodelay = enabled


class Conn:
    def __init__(self) -> None:
        self.rig = Rig()
        self.clock = MemoryReactorClock()
        self.proto = ControllerProtocol(lambda: self.rig.session, self.clock)
        self.transport = Transport()
        self.proto.makeConnection(self.transport)
        self.framer = wire.Framer()
        self.ended: list[SessionEnd] = []
        self.proto.done.addCallback(self.ended.append)

    def feed(self, *msgs: wire.Message | bytes) -> None:
        self.proto.dataReceived(
            b"".join(m if isinstance(m, bytes) else wire.encode(m) for m in msgs)
        )

    def out(self) -> list[Any]:
        data = self.transport.value()
        self.transport.clear()
        return list(self.framer.feed(data))


def mread(field: vmem.Region = vmem.IP4NO) -> wire.Mread:
    return wire.Mread(addr=field.addr, len=field.size)


def test_nodelay_and_every_request_of_one_read_answered_in_order() -> None:
    c = Conn()
    assert c.transport.nodelay
    assert c.transport.producer is c.proto and c.transport.streaming
    c.feed(wire.Start(), mread(vmem.IP4NO), wire.Nclose(sktid=3), mread(vmem.IP6NO))
    assert c.out() == [
        wire.Result(0),
        wire.Mdata(addr=vmem.IP4NO.addr, data=b"\x02"),
        wire.Result(wire.Status.ESKTNOTOPEN),
        wire.Mdata(addr=vmem.IP6NO.addr, data=b"\x01"),
    ]


def test_frames_split_across_reads() -> None:
    c = Conn()
    stream = wire.encode(wire.Start()) + wire.encode(mread())
    for i in range(len(stream)):
        c.proto.dataReceived(stream[i : i + 1])
    assert names(c.out()) == ["result", "mdata"]


def test_requests_wait_while_100_frames_are_queued() -> None:
    c = Conn()
    c.feed(wire.Start())
    c.out()
    c.proto.pauseProducing()  # the transport's buffer is full
    c.feed(*[mread() for _ in range(MAX_QUEUED + 50)])
    assert len(c.rig.session.outbox) == MAX_QUEUED
    assert c.transport.producerState == "paused"  # we stopped reading requests
    assert c.proto.framer.buffered == 50 * 10
    assert c.out() == []
    c.proto.resumeProducing()
    assert len(c.out()) == MAX_QUEUED + 50
    assert c.transport.producerState == "producing"
    assert c.proto.framer.buffered == 0


def test_tcp_sockets_read_nothing_while_requests_wait_on_a_full_outbox() -> None:
    """TCP budgets may pay for more than MAX_QUEUED ndata (two sockets of 4 MiB: 128 of
    64 KiB): the sockets refilled the outbox as fast as the controller took frames, so it
    never fell under MAX_QUEUED and the requests were never read again (`run throughput
    --bidir -P 2` waited 40 s). While requests wait, TCP reads wait too; once the outbox
    drains the waiting requests are handled first, then the sockets read again."""
    c = Conn()
    c.feed(wire.Start(), tcp_open(2, rbufsz=8 << 20))
    skt = c.rig.skt(2)
    c.rig.session.tcp_established(skt, b"\x7f\x00\x00\x01", 1, b"\x7f\x00\x00\x01", 80)
    receiving = c.rig.session.receiving
    assert receiving.recv_room(skt) > 0
    c.out()
    c.proto.pauseProducing()  # the transport's buffer is full
    c.feed(*[mread() for _ in range(MAX_QUEUED + 5)])
    assert c.transport.producerState == "paused"
    assert receiving.recv_room(skt) == 0  # no more ndata behind the requests
    receiving.tcp_blocked(skt)  # the reader found no room
    c.proto.resumeProducing()  # the controller took the frames
    answers = [f for f in c.out() if isinstance(f, wire.Mdata)]
    assert len(answers) == MAX_QUEUED + 5  # every request answered, the last 5 too
    assert c.transport.producerState == "producing"
    assert receiving.recv_room(skt) > 0 and not skt.read_blocked
    assert c.rig.io(2).resumed == 1  # and the socket reads again


def test_setup_timeout_aborts() -> None:
    c = Conn()
    c.clock.advance(SETUP_TIMEOUT - 0.1)
    assert not c.transport.disconnecting
    c.clock.advance(0.2)
    assert c.transport.disconnected  # abortConnection
    assert c.rig.session.ended is not None


def test_no_timeout_once_started() -> None:
    c = Conn()
    c.feed(wire.Start())
    c.clock.advance(SETUP_TIMEOUT * 3)
    assert not c.transport.disconnecting
    assert c.clock.getDelayedCalls() == []


def test_malformed_answers_and_disconnects_after_flushing() -> None:
    c = Conn()
    bad_mread = b"\x28\x00\x00\x06" + b"\x00\x00\x00\x00\x00\x00"  # len 0
    c.feed(wire.Start(), bad_mread, mread())
    assert c.out() == [wire.Result(0), wire.Result(wire.Status.ECTLBADMSG)]
    assert c.transport.disconnecting
    c.feed(mread())
    assert c.out() == []


def test_yield_with_a_paused_transport_closes_once_drained() -> None:
    c = Conn()
    c.feed(wire.Start())
    c.proto.pauseProducing()
    c.feed(mread(), wire.Yield(rhint=0))
    assert not c.transport.disconnecting
    c.proto.resumeProducing()
    assert names(c.out()) == ["result", "mdata", "result"]
    assert c.transport.disconnecting


def test_connection_lost_frees_the_session() -> None:
    c = Conn()
    c.feed(wire.Start(), udp_open(1))
    c.out()
    c.proto.connectionLost(Failure(ConnectionError("gone")))
    assert c.rig.io(1).closed
    assert c.ended and c.ended[0].reason == "controller closed the connection"
    assert c.clock.getDelayedCalls() == []


def test_a_controller_that_closes_before_a_byte_is_told_apart() -> None:
    """A controller that refuses the endpoint's chain (pktlab xpmgr checks it after the
    TLS handshake and aborts) left "session over: controller closed the connection",
    the line of any ending, 10 times a second: the operator could not tell that the
    chain was the problem. A close before the first byte now says so."""
    c = Conn()
    c.proto.connectionLost(Failure(ConnectionError("gone")))
    assert c.ended[0].reason == "controller closed the connection before its first message"


def test_a_session_the_endpoint_ends_does_not_blame_the_controller() -> None:
    """Ctrl-C (SIGINT/SIGTERM) during a session logged `session over: controller closed
    the connection` (and broker mode's `experiment #1 over: ...` the same): the operator
    read that the controller had gone. The end time reached said it too."""
    for why, reason in [
        ((), "closed by the endpoint: the endpoint is stopping"),
        (
            ("experiment end time reached (end)",),
            "closed by the endpoint: experiment end time reached (end)",
        ),
    ]:
        c = Conn()
        c.feed(wire.Start())
        c.proto.end_session(*why)
        assert c.transport.disconnecting
        c.proto.connectionLost(Failure(ConnectionError("aborted")))
        assert [e.reason for e in c.ended] == [reason]


def count_writes(c: Conn) -> list[bytes]:
    writes: list[bytes] = []
    write = c.transport.write

    def spy(data: bytes) -> None:
        writes.append(data)
        write(data)

    c.transport.write = spy  # type: ignore[method-assign]
    return writes


def test_answers_to_one_read_leave_in_one_write() -> None:
    c = Conn()
    c.feed(wire.Start())
    c.out()
    writes = count_writes(c)
    c.feed(mread(vmem.IP4NO), mread(vmem.IP6NO), mread(vmem.IP4NO))
    assert len(writes) == 1  # one transport write (one send) for the three answers
    assert names(c.out()) == ["mdata", "mdata", "mdata"]


class Ticking(MemoryReactorClock):
    """Each reading of the time is `step` seconds after the previous one (work going on)."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step

    def seconds(self) -> float:
        self.rightNow += self.step
        return self.rightNow


def test_a_long_reads_answers_leave_in_chunks_in_order() -> None:
    """So the controller can read answers and send more while the rest is handled."""
    c = Conn()
    c.feed(wire.Start())
    c.out()
    writes = count_writes(c)
    c.proto._reactor = Ticking(FLUSH_AFTER / 3.96)  # each request takes a quarter of it
    n = 20
    c.feed(*(wire.Mread(addr=vmem.IP4NO.addr, len=i % 4 + 1) for i in range(n)))
    assert len(writes) == 5  # after every fourth request; the last chunk at the read's end
    assert [len(m.data) for m in c.out()] == [i % 4 + 1 for i in range(n)]
    writes.clear()
    c.feed(mread(), mread())  # a short read: one send
    assert len(writes) == 1


def test_frames_written_outside_reads_leave_once_per_turn() -> None:
    c = Conn()
    c.feed(wire.Start())
    c.out()
    writes = count_writes(c)
    outbox = c.rig.session.outbox
    outbox.put(wire.encode(wire.Ntag(sktid=1, tag=1, time=5)))  # e.g. timers, socket events
    outbox.put(wire.encode(wire.Ntag(sktid=1, tag=2, time=6)))
    assert writes == []  # held until the reactor turn ends
    c.clock.advance(0)
    assert len(writes) == 1
    assert [m.tag for m in c.out()] == [1, 2]


def test_frames_held_for_the_turn_go_out_before_the_close() -> None:
    c = Conn()
    c.feed(wire.Start())
    c.out()
    c.rig.session.outbox.put(wire.encode(wire.Ntag(sktid=1, tag=7, time=5)))
    c.feed(wire.Yield(rhint=0))  # the session ends in the same turn
    assert c.transport.disconnecting
    assert names(c.out()) == ["ntag", "result"]


class SocketLike(FileDescriptor):
    """A connected socket descriptor without a socket: what `_lose` sees under the
    controller connection (plain TCP, or below TLS)."""

    def __init__(self, reactor: MemoryReactorClock) -> None:
        super().__init__(reactor)
        self.connected = 1
        self.written = b""
        self.lost: list[Failure] = []
        self.startReading()  # as a connected tcp.Connection does

    def writeSomeData(self, data: bytes) -> int:
        self.written += bytes(data)
        return len(data)

    def _closeWriteConnection(self) -> None:
        self.write_shut = True

    def connectionLost(self, reason: Failure) -> None:
        self.lost.append(reason)
        super().connectionLost(reason)

    def getPeer(self) -> str:
        return "peer"


def test_after_badmsg_the_endpoint_half_closes_reads_on_then_closes() -> None:
    rig = Rig()
    clock = MemoryReactorClock()
    proto = ControllerProtocol(lambda: rig.session, clock)
    fd = SocketLike(clock)
    fd.protocol = proto  # type: ignore[attr-defined]
    proto.makeConnection(fd)
    proto.dataReceived(wire.encode(wire.Start()) + b"\x2b\x00\x00\x00")  # malformed nclose
    fd.doWrite()  # the socket takes everything
    framer = wire.Framer()
    assert list(framer.feed(fd.written)) == [wire.Result(0), wire.Result(wire.Status.ECTLBADMSG)]
    # Half-closed (FIN after the answers), still reading, not yet closed.
    assert getattr(fd, "write_shut", False) and not fd.lost and not fd.disconnecting
    assert fd in clock.readers
    proto.dataReceived(b"more bytes from the controller")  # read and dropped
    clock.advance(LINGER_TIMEOUT)
    assert fd.lost  # then closed
    proto.connectionLost(fd.lost[0])
    assert clock.getDelayedCalls() == []


def test_the_session_start_names_the_controller_as_host_port() -> None:
    """Was `controller session started with IPv4Address(type='TCP', host='10.0.0.1',
    port=20556)`."""

    with captured_events() as seen:
        Conn()
    (event,) = seen.where(fmt="session started")
    assert event["peer"] == "192.168.1.1:54321"  # StringTransport's peer


def test_a_refused_session_is_logged_with_its_rule_once() -> None:
    """Was `refusing controller peer: accounting: accounting: accounting database ...`:
    the rule twice (the message already starts with it; fresh28, session 28)."""
    from typing import cast

    from packetlab.endpoint.checks import SessionRefused

    def refuse() -> Any:
        raise SessionRefused("accounting", "accounting database x: disk full")

    with captured_events() as seen:
        proto = ControllerProtocol(refuse, MemoryReactorClock())
        proto.makeConnection(StringTransport(peerAddress=cast(Any, "peer")))
    lines = seen.lines(fmt="refusing")
    assert lines == ["refusing controller peer: accounting: accounting database x: disk full"]


def test_a_refused_session_closes_and_drops_what_the_controller_sent() -> None:
    """Refused after the handshake: a close (TLS: close_notify, then FIN), not an abort,
    as the reference (session 29); requests that come meanwhile are read and dropped
    (there is no session to give them to)."""
    from packetlab.endpoint.checks import SessionRefused

    class NoAbort(StringTransport):
        def abortConnection(self) -> None:
            raise AssertionError("aborted")

    def refuse() -> Any:
        raise SessionRefused("accounting", "accounting database x: disk full")

    proto = ControllerProtocol(refuse, MemoryReactorClock())
    t = NoAbort()
    proto.makeConnection(t)
    assert t.disconnecting
    proto.dataReceived(wire.encode(wire.Start()))  # was: no session, no link
    assert t.value() == b""


def test_a_session_that_cannot_be_made_is_refused_not_raised() -> None:
    """`twistd -u nobody pktendpoint` with Python under /root: `No module named 'sqlite3'`
    out of connectionMade left ClientService stuck (`NoTransition`; a second controller
    waited in vain). Now refused like a chain's limits, the traceback logged once."""
    from typing import cast

    def broken() -> Any:
        raise ModuleNotFoundError("No module named 'sqlite3'")

    with captured_events() as seen:
        proto = ControllerProtocol(broken, MemoryReactorClock())
        t = StringTransport(peerAddress=cast(Any, "peer"))
        proto.makeConnection(t)  # was: ModuleNotFoundError raised out of it
    assert t.disconnecting
    assert seen.lines(fmt="refusing") == [
        "refusing controller peer: internal: ModuleNotFoundError: No module named 'sqlite3'"
    ]
    assert sum("log_failure" in e for e in seen) == 1


def test_a_session_ended_for_a_malformed_request_is_one_log_line() -> None:
    """The reason was said 3 times in 5 lines per such session (`malformed request,
    ending the session: R`, `session ending: malformed request: R`, `session over:
    malformed request: R`; fuzz32: 1,005 sessions, 6,862 lines). Now one warning with the
    controller, the status answered and the request's type (session 32, odds32)."""

    from twisted.logger import LogLevel, formatEvent

    with captured_events() as seen:
        c = Conn()
        c.feed(wire.Start(), b"\x28\x00\x00\x06" + bytes(6))  # an mread of length 0
        c.proto.connectionLost(Failure(Exception("closed")))
    lines = [(e["log_level"], formatEvent(e)) for e in seen if "ControllerProtocol" in
             e.get("log_namespace", "") or "Session" in e.get("log_namespace", "")]  # fmt: skip
    assert lines[0][1] == "controller session started with 192.168.1.1:54321"
    over = [line for line in lines[1:] if "malformed" in line[1]]
    assert over == [
        (
            LogLevel.warn,
            "session over: malformed request: malformed message type 0x28 at body offset 6: "
            "mread len must be > 0 (controller 192.168.1.1:54321, answered ECTLBADMSG)",
        )
    ], lines
    (event,) = seen.where(fmt="session over")
    assert (event["peer"], event["code"], event["msgtype"]) == (
        "192.168.1.1:54321", "ECTLBADMSG", 0x28)  # fmt: skip


def test_the_setup_window_passing_is_one_log_line() -> None:
    """`no start within 10.0 s: closing`, then `session over: no start within the setup
    window`: now the second alone, a warning naming the controller."""

    with captured_events() as seen:
        c = Conn()
        c.clock.advance(SETUP_TIMEOUT)
        c.proto.connectionLost(Failure(Exception("aborted")))
    lines = seen.lines("no start")
    assert lines == [
        "session over: no start within the setup window (controller 192.168.1.1:54321)"
    ]
