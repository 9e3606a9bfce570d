"""EndpointSession: setup, FIFO matching of responses, error mapping, bad input, loss."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from ctl_fakes import WriteLog, frames, on_string_transport, result_of
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from packetlab import wire
from packetlab.controller import (
    EndpointSession,
    ProtocolViolation,
    RequestFailed,
    SessionClosed,
    SetupFailed,
    Suspended,
)
from packetlab.wire import (
    Cdata,
    Linfo,
    Mdata,
    Mread,
    Nopen,
    Nsend,
    Result,
    Resumd,
    Start,
    Status,
    Suspd,
    vmem,
)


def decode_all(data: bytes) -> list[object]:
    return list(wire.Framer().feed(data))


def test_setup_sends_programs_then_start_one_write_each() -> None:
    s = EndpointSession(programs=[b"\x01wasm1", Cdata(b"filter", b"\x00x")], reactor=Clock())
    t = WriteLog()
    s.makeConnection(t)
    assert t.nodelay
    assert [decode_all(w) for w in t.writes] == [
        [Cdata(b"monitor", b"\x01wasm1")],
        [Cdata(b"filter", b"\x00x")],
        [Start()],
    ]
    assert not s.ready.called
    s.dataReceived(frames(Result(), Result()))
    assert not s.ready.called
    s.dataReceived(frames(Result()))
    assert result_of(s.ready) is s


def test_setup_refused_fails_ready_and_closes() -> None:
    s = EndpointSession(programs=[b"\x01m"], reactor=Clock())
    t = WriteLog()
    s.makeConnection(t)
    s.dataReceived(frames(Result(Status.ECRTBADHDAT)))
    with pytest.raises(SetupFailed, match="ECRTBADHDAT"):
        result_of(s.ready)
    assert t.disconnecting


def test_start_refused_names_the_status() -> None:
    s = EndpointSession(reactor=Clock())
    s.makeConnection(WriteLog())
    s.dataReceived(frames(Result(Status.ECRTNOHDAT)))
    with pytest.raises(SetupFailed) as e:
        result_of(s.ready)
    cause = e.value.__cause__
    assert isinstance(cause, RequestFailed) and cause.status == Status.ECRTNOHDAT


def test_responses_match_requests_in_order_with_notes_between() -> None:
    s, t, _ = on_string_transport()
    a = s.mread(vmem.TIME.addr, 8)
    b = s.mwrite(vmem.skt_addr(1, vmem.SKT_NOTIFMASK), b"\x00\x08")
    c = s.mread(vmem.HOSTID.addr, 4)
    assert s.pending == 3
    assert len(t.writes) == 3  # one write per message
    s.dataReceived(
        frames(
            Mdata(vmem.TIME.addr, b"\x00" * 7 + b"\x05"),
            Linfo(b"mon", b"", b"hello"),
            Result(),
        )
    )
    assert result_of(a) == b"\x00" * 7 + b"\x05"
    assert result_of(b) == Result()
    assert not c.called
    s.dataReceived(frames(Mdata(vmem.HOSTID.addr, b"host")))
    assert result_of(c) == b"host"
    assert s.linfo == [Linfo(b"mon", b"", b"hello")]


def test_a_response_split_over_reads() -> None:
    s, _, _ = on_string_transport()
    d = s.mread(0x10000000, 2)
    data = frames(Mdata(0x10000000, b"\x01\x00"))
    for i in range(len(data)):
        s.dataReceived(data[i : i + 1])
    assert result_of(d) == b"\x01\x00"


def test_error_result_maps_to_request_failed() -> None:
    s, _, _ = on_string_transport()
    d = s.nclose(3)
    s.dataReceived(frames(Result(Status.ESKTNOTOPEN)))
    with pytest.raises(RequestFailed) as e:
        result_of(d)
    assert e.value.status == Status.ESKTNOTOPEN
    assert e.value.name == "ESKTNOTOPEN"
    assert "nclose failed: ESKTNOTOPEN (0x33)" in str(e.value)


def test_monitor_rejection_carries_monitor_fields() -> None:
    s, _, _ = on_string_transport()
    d = s.nopen_udp(2)
    s.dataReceived(frames(Result(Status.ECTLMONREJ, 1, 77)))
    with pytest.raises(RequestFailed) as e:
        result_of(d)
    assert (e.value.status, e.value.monindx, e.value.monerrid) == (Status.ECTLMONREJ, 1, 77)
    assert "monitor 1 error 77" in str(e.value)


def test_unknown_status_code_keeps_the_number() -> None:
    s, _, _ = on_string_transport()
    d = s.mwrite(0x20000070, b"\x00\x00")
    s.dataReceived(frames(Result(0x7777)))
    with pytest.raises(RequestFailed) as e:
        result_of(d)
    assert e.value.status == 0x7777 and e.value.name == "0x7777"


def test_malformed_frame_closes_and_fails_everything() -> None:
    s, t, _ = on_string_transport()
    d1 = s.mread(vmem.TIME.addr, 8)
    d2 = s.nclose(1)
    s.dataReceived(b"\x40\x00\x00\x03abc")  # a result cannot be 3 bytes long
    waiting: list[Deferred[Any]] = [d1, d2]
    for d in waiting:
        with pytest.raises(SessionClosed) as e:
            result_of(d)
        assert isinstance(e.value.cause, ProtocolViolation)
        assert "malformed result" in str(e.value)
    assert t.disconnecting
    assert isinstance(s.close_reason, ProtocolViolation)
    # later requests fail at once, later input is ignored
    with pytest.raises(SessionClosed):
        result_of(s.mread(0, 1))
    s.dataReceived(frames(Result()))


def test_oversized_frame_header_is_a_violation() -> None:
    s, t, _ = on_string_transport()
    s._framer.max_body = 1000
    d = s.mread(vmem.TIME.addr, 8)
    s.dataReceived(b"\x41\xff\xff\xff")
    with pytest.raises(SessionClosed, match=r"announced a frame \(mdata\) with a 16777215-byte"):
        result_of(d)
    assert t.disconnecting


@pytest.mark.parametrize(
    ("request_", "answer", "text"),
    [
        (None, Result(), "no request waiting"),
        ("nclose", Mdata(0, b"x"), "answered nclose with mdata"),
        ("mread", Mdata(0x1234, b"x"), "answers mread"),
        ("mread", Result(), "instead of mdata"),
        ("nclose", Nsend(1, 4, 6, 0, 0, b""), "must not send: nsend (0x2c)"),
    ],
)
def test_protocol_violations(request_: str | None, answer: object, text: str) -> None:
    s, t, _ = on_string_transport()
    d: Deferred[Any] | None = None
    if request_ == "nclose":
        d = s.nclose(1)
    elif request_ == "mread":
        d = s.mread(vmem.TIME.addr, 8)
    s.dataReceived(frames(answer))  # type: ignore[arg-type]
    assert isinstance(s.close_reason, ProtocolViolation)
    assert text in str(s.close_reason)
    assert t.disconnecting
    if d is not None:
        with pytest.raises(SessionClosed):
            result_of(d)


def test_unknown_message_type_is_ignored() -> None:
    s, t, _ = on_string_transport()
    d = s.nclose(1)
    s.dataReceived(b"\x9a\x00\x00\x01z" + frames(Result()))
    assert result_of(d) == Result()
    assert s.close_reason is None and not t.disconnecting


def test_connection_lost_fails_pending_requests_ntags_and_sockets() -> None:
    s, _, _ = on_string_transport()
    opened = s.nopen_udp(4)
    s.dataReceived(frames(Result()))
    sock = result_of(opened)
    sent = s.nsend(4, b"x", to=("127.0.0.1", 9), ntag=True)
    s.dataReceived(frames(Result()))
    q = result_of(sent)
    pending = s.mread(vmem.TIME.addr, 8)
    note = sock.get()
    s.connectionLost(Failure(ConnectionLost("gone")))
    waiting: list[Deferred[Any] | None] = [pending, q.ntag, note]
    for d in waiting:
        assert d is not None
        with pytest.raises(SessionClosed, match="connection lost"):
            result_of(d)
    assert isinstance(s.close_reason, SessionClosed)
    assert result_of(s.when_closed()) is None


def test_clean_close_ends_socket_iteration_without_error() -> None:
    s, t, _ = on_string_transport()
    opened = s.nopen_udp(4)
    s.dataReceived(frames(Result()))
    sock = result_of(opened)
    note = sock.get()
    closed = s.close()
    assert t.disconnecting and not closed.called
    s.connectionLost(Failure(ConnectionLost()))
    assert result_of(closed) is None
    assert result_of(note) is None
    assert s.close_reason is None


def test_requests_after_close_fail_at_once() -> None:
    s, _, _ = on_string_transport()
    s.close()
    with pytest.raises(SessionClosed, match="session closed"):
        result_of(s.nclose(1))


def test_suspd_then_close_ends_the_session_with_suspended() -> None:
    # the reference endpoint closes right after suspd
    s, _, _ = on_string_transport()
    d = s.mread(vmem.TIME.addr, 8)
    s.dataReceived(frames(Suspd()))
    assert s.suspended and not d.called  # held, not failed: ours may resume
    s.connectionLost(Failure(ConnectionLost()))
    with pytest.raises(SessionClosed) as e:
        result_of(d)
    assert isinstance(e.value.cause, Suspended)


def test_suspd_then_resumd_carries_on() -> None:
    s, t, _ = on_string_transport()
    d = s.mread(vmem.TIME.addr, 8)
    s.dataReceived(frames(Suspd()))
    s.dataReceived(frames(Resumd(), Mdata(vmem.TIME.addr, b"\0" * 8)))
    assert not s.suspended and result_of(d) == b"\0" * 8
    assert not t.disconnecting


def test_bad_arguments_fail_without_sending() -> None:
    s, t, _ = on_string_transport()
    # session 30 (eyes30): a name said only "not an IP address: 'localhost'"
    named = r"^not an IP address: 'localhost' \(a host name\? the controller API takes IP add"
    with pytest.raises(ValueError, match=named):
        result_of(s.nopen_tcp_connect(1, "localhost", 80))
    with pytest.raises(ValueError, match=r"^not an IP address: '10\.0\.0\.300'$"):
        result_of(s.nsend(1, b"x", to=("10.0.0.300", 9), family=4, proto=17))
    with pytest.raises(ValueError, match="rport"):
        result_of(s.nopen_tcp_connect(1, "127.0.0.1", 70000))
    # was sent, and came back as a refused connect (the kernel's ECONNREFUSED for port 0)
    with pytest.raises(ValueError, match=r"rport must be 1\.\.65535 to connect to, got 0"):
        result_of(s.nopen_tcp_connect(1, "127.0.0.1", 0))
    with pytest.raises(ValueError, match="not open in this session"):
        result_of(s.nsend(9, b"x"))
    with pytest.raises(wire.EncodeError):
        result_of(s.request(Mread(0, 0x10000)))
    assert t.writes == [] and s.pending == 0


def test_nopen_variants_build_the_wire_messages() -> None:
    s, t, _ = on_string_transport()
    s.nopen_tcp_connect(1, ipaddress.ip_address("192.0.2.7"), 80, rbufsz=4096)
    s.nopen_tcp_connect(2, "2001:db8::1", 443, laddr="2001:db8::2", lport=5000)
    s.nopen_tcp_listen(3, 8080)
    s.nopen_udp(4, lport=53)
    s.nopen_raw(5, laddr=b"\x0a\x00\x00\x01")
    msgs = [decode_all(w)[0] for w in t.writes]
    z4 = b"\0" * 4
    assert msgs == [
        Nopen(1, 4, 6, 4096, z4, 0, bytes([192, 0, 2, 7]), 80),
        Nopen(
            2, 6, 6, 1 << 20,
            ipaddress.ip_address("2001:db8::2").packed, 5000,
            ipaddress.ip_address("2001:db8::1").packed, 443,
        ),
        Nopen(3, 4, 6, 1 << 20, z4, 8080),
        Nopen(4, 4, 17, 1 << 20, z4, 53),
        Nopen(5, 4, 0, 1 << 20, b"\x0a\x00\x00\x01"),
    ]  # fmt: skip


def test_end_accepts_the_reference_ectlnotsup_then_closes() -> None:
    s, t, _ = on_string_transport()
    d = s.end()
    s.dataReceived(frames(Result(Status.ECTLNOTSUP)))
    assert t.disconnecting
    s.connectionLost(Failure(ConnectionLost()))
    assert result_of(d) is None


@pytest.mark.parametrize(
    "chunks", [[b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"], [b"\x16", b"\x03\x01"]]
)
def test_a_tls_handshake_on_a_plaintext_session_says_so_at_once(chunks: list[bytes]) -> None:
    # An endpoint with TLS connected to a plaintext controller: its ClientHello was read
    # as a frame of type 0x16 announcing 196,608+ bytes, and the session waited for them
    # (60 s, AnswerTimeout) or ended "in the middle of a frame (type 0x16 ...)" with a hint
    # about exp_priority, while the endpoint waited for a ServerHello.
    s = EndpointSession(reactor=Clock())
    t = WriteLog()
    s.makeConnection(t)
    for chunk in chunks:
        s.dataReceived(chunk)
    with pytest.raises(SessionClosed) as e:
        result_of(s.ready)
    assert isinstance(e.value.cause, ProtocolViolation)
    assert "started a TLS handshake" in str(e.value.cause)
    assert "--insecure-plaintext" in str(e.value.cause)
    assert t.disconnecting


def test_a_first_frame_split_after_its_first_byte_is_still_read() -> None:
    s = EndpointSession(reactor=Clock())
    s.makeConnection(WriteLog())
    whole = frames(Result())
    s.dataReceived(whole[:1])
    s.dataReceived(whole[1:])
    assert result_of(s.ready) is s


def test_udp_nsend_to_port_0_or_over_the_largest_datagram_fails_before_sending() -> None:
    # Both went out and came back as ntag EPKTNOTSENT per packet, with no reason given
    # (examples/udp_train.py --target 127.0.0.1:0, --size 70000: 100 rows of EPKTNOTSENT).
    s, t, _ = on_string_transport()
    s.nopen_udp(4)
    s.nopen_udp(6, family=6)
    s.dataReceived(frames(Result(), Result()))
    t.writes.clear()
    with pytest.raises(ValueError, match=r"destination port must be 1\.\.65535 to send to, got 0"):
        result_of(s.nsend(4, b"x", to=("127.0.0.1", 0), ntag=True))
    with pytest.raises(ValueError, match="over IPv4 is at most 65507 bytes, got 65508"):
        result_of(s.nsend(4, b"x" * 65508, to=("127.0.0.1", 9)))
    with pytest.raises(ValueError, match="over IPv6 is at most 65527 bytes, got 65528"):
        result_of(s.nsend(6, b"x" * 65528, to=("::1", 9)))
    assert t.writes == [] and s.pending == 0 and s._tags == {}
    s.nsend(4, b"x" * 65507, to=("127.0.0.1", 9))
    s.nsend(6, b"x" * 65527, to=("::1", 9))
    assert len(t.writes) == 2


def test_a_str_or_a_float_time_fails_the_deferred_and_leaks_no_tag() -> None:
    # nsend(sktid, "abc", ...) raised TypeError("string argument without an encoding") out
    # of the call instead of failing its Deferred, after tracking its ntag: the tag leaked
    # and later failed "Unhandled error in Deferred: SocketClosed ... before its ntag 5".
    s, t, _ = on_string_transport()
    s.nopen_udp(4)
    s.dataReceived(frames(Result()))
    t.writes.clear()
    d = s.nsend(4, "abc", to=("127.0.0.1", 9), ntag=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"nsend data must be bytes, got str \(encode it: 'abc'"):
        result_of(d)
    with pytest.raises(TypeError, match="nsend time must be an int"):
        result_of(s.nsend(4, b"x", to=("127.0.0.1", 9), time=1.5e18, ntag=True))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mwrite data must be bytes, got int"):
        result_of(s.mwrite(0, 5))  # type: ignore[arg-type]
    assert t.writes == [] and s._tags == {} and s.pending == 0
    s.nsend(4, bytearray(b"ok"), to=("127.0.0.1", 9))
    s.nsend(4, memoryview(b"ok"), to=("127.0.0.1", 9))
    assert len(t.writes) == 2


def test_a_refused_nopen_says_what_it_asked_for() -> None:
    # session 20 (api20): `nopen failed: ESKTNOADDR (0x36): ...` did not say which address
    s, _, _ = on_string_transport()
    d = s.nopen_udp(4, laddr="10.9.9.9", lport=5353)
    s.dataReceived(frames(Result(Status.ESKTNOADDR)))
    with pytest.raises(RequestFailed) as e:
        result_of(d)
    assert str(e.value) == (
        "nopen failed: ESKTNOADDR (0x36): the local address is not one the endpoint "
        "exports, or cannot be bound (asked: UDP socket 4 from 10.9.9.9 port 5353)"
    )
    d = s.nopen_tcp_connect(5, "192.0.2.80", 80)
    s.dataReceived(frames(Result(Status.ESKTINUSE)))
    with pytest.raises(RequestFailed) as e:
        result_of(d)
    assert str(e.value).endswith(" (asked: TCP socket 5 to 192.0.2.80 port 80)")


def test_requests_may_be_pipelined_behind_their_sockets_nopen() -> None:
    # session 20 (api20): an nsend (or ncap) issued before its socket's nopen was answered
    # failed with `socket 3 is not open here; give family and proto`, though requests
    # "may be pipelined freely"
    s, t, _ = on_string_transport()
    opened = s.nopen_udp(3, family=6)
    sent = s.nsend(3, b"q", to=("2001:db8::1", 53))
    raw = s.nopen_raw(4, family=6)
    cap = s.ncap(4, b"\x00prog", endtime=1)
    s.dataReceived(frames(Result(), Result(), Result(), Result()))
    assert result_of(opened).sktid == 3 and result_of(sent).sktid == 3
    assert result_of(raw).sktid == 4 and result_of(cap) == Result()
    msgs = decode_all(t.value())
    nsend = next(m for m in msgs if isinstance(m, Nsend))
    assert (nsend.family, nsend.proto) == (6, 0x11)
    assert next(m for m in msgs if isinstance(m, wire.Ncap)).family == 6


def test_an_nsend_on_a_socket_never_opened_says_so() -> None:
    s, _, _ = on_string_transport()
    with pytest.raises(ValueError, match=r"nsend: socket 7 is not open in this session"):
        result_of(s.nsend(7, b"x", to=("127.0.0.1", 9)))


def test_an_ntag_cut_by_the_sessions_end_says_which_send() -> None:
    # session 20 (api20): it said only "session closed" (logged as an unhandled error
    # when nobody awaited it, with nothing to tell which send it was)
    s, _, _ = on_string_transport()
    opened = s.nopen_udp(3)
    queued = s.nsend(3, b"later", time=2**62, to=("127.0.0.1", 9), ntag=True)
    s.dataReceived(frames(Result(), Result()))
    assert result_of(opened).sktid == 3
    q = result_of(queued)
    s.connectionLost(Failure(ConnectionLost()))
    assert q.ntag is not None
    with pytest.raises(SessionClosed, match=r"^ntag 1 of socket 3 never came: connection") as e:
        result_of(q.ntag)
    assert isinstance(e.value.cause, ConnectionLost)


def test_a_cancelled_nopen_keeps_its_sktid_until_answered() -> None:
    # session 20 (api20): cancelling freed the sktid at once, so free_sktid() handed it
    # out again while the endpoint was opening it (the next nopen: ESKTINUSE)
    s, _, _ = on_string_transport()
    d = s.nopen_udp(0)
    d.cancel()
    with pytest.raises(CancelledError):
        result_of(d)
    assert s.free_sktid() == 1
    s.dataReceived(frames(Result()))
    sock = s.find_socket(0)
    assert sock is not None and sock.proto == 0x11  # opened: the session knows it
    assert s.free_sktid() == 1
    s.dataReceived(frames(Result()))  # session 32: the nclose of the cancelled nopen's socket
    assert s.find_socket(0) is None and s.free_sktid() == 0
    failed = s.nopen_udp(1)
    failed.cancel()
    s.dataReceived(frames(Result(Status.ESKTNOADDR)))  # dropped: nobody waits
    assert s.find_socket(1) is None and s.free_sktid() == 0
    with pytest.raises(CancelledError):
        result_of(failed)
