"""The controller session against endpoints that break PROTOCOL.md §1-§3, or are merely
odd: every case ends in a specific `ControllerError` naming the message and what was
wrong (or is accepted, where the reference endpoint legitimately does it), never a hang,
an exception out of the protocol, or memory without a bound. Over a StringTransport and
a task.Clock (no timed asserts: the clock is advanced by hand)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from ctl_fakes import AbortLog, frames, on_string_transport, result_of
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab import wire
from packetlab.controller import (
    AnswerTimeout,
    EndpointSession,
    ProtocolViolation,
    RequestFailed,
    SessionClosed,
)
from packetlab.controller.session import (
    ANSWER_TIMEOUT,
    CLOSE_GRACE,
    MAX_FRAME_BODY,
    MAX_LINFO,
    MAX_LINFO_BYTES,
    UNKNOWN_LOGGED,
)
from packetlab.wire import (
    Linfo,
    Mdata,
    Nblock,
    Ndata,
    Ndrop,
    Nstat,
    NstatCode,
    Ntag,
    Result,
    Resumd,
    Status,
    Suspd,
    vmem,
)


def hdr(msgtype: int, body: bytes) -> bytes:
    return struct.pack(">I", msgtype << 24 | len(body)) + body


def failure_of(d: Deferred[Any]) -> BaseException:
    with pytest.raises(Exception) as info:
        result_of(d)
    return info.value


def advance(clock: Clock, seconds: float, steps: int = 40) -> None:
    """Advance in steps, as time passes on a reactor (each timer sees its own time)."""
    for _ in range(steps):
        clock.advance(seconds / steps)


def started(**options: Any) -> tuple[EndpointSession, AbortLog, Clock]:
    t = AbortLog()
    s, _, clock = on_string_transport(t, **options)
    return s, t, clock


# ------------------------------------------------------------------ mdata (§2.1)


def test_mdata_shorter_than_the_mread_is_a_violation() -> None:
    # The endpoint always answers len bytes (unmapped ones read as 0): a short mdata would
    # reach helpers that unpack fixed-size fields.
    s, t, _ = on_string_transport()
    d = s.mread(vmem.TIME.addr, 8)
    s.dataReceived(frames(Mdata(vmem.TIME.addr, b"\x00\x01\x02")))
    err = failure_of(d)
    assert isinstance(err, SessionClosed) and isinstance(s.close_reason, ProtocolViolation)
    assert "mdata for 0x10010000 (3 bytes) answers mread 0x10010000 (8 bytes)" in str(err)
    assert t.disconnecting


def test_mdata_of_exactly_the_length_asked_is_taken() -> None:
    s, _, _ = on_string_transport()
    d = s.mread(vmem.TIME.addr, 8)
    s.dataReceived(frames(Mdata(vmem.TIME.addr, bytes(8))))
    assert result_of(d) == bytes(8)


# ------------------------------------------------------------------ the reference's odd forms


def test_odd_but_legal_results_are_decoded() -> None:
    """SUCCESS as an explicit errid (length 2), ECTLMONUKN with monindx only (length 4),
    ECTLMONREJ with both (length 6), and a code PacketLab does not define."""
    s, _, _ = on_string_transport()
    ok = s.mwrite(vmem.SKT_BASE + 0x70, b"\x00\x00")
    ukn = s.nclose(1)
    rej = s.nclose(2)
    odd = s.nclose(3)
    s.dataReceived(
        hdr(0x40, b"\x00\x00")
        + hdr(0x40, b"\x00\x13\x00\x02")
        + hdr(0x40, b"\x00\x12\x00\x01\xff\xfd")
        + hdr(0x40, b"\x12\x34")
    )
    assert result_of(ok) == Result()
    e = failure_of(ukn)
    assert isinstance(e, RequestFailed) and e.status == Status.ECTLMONUKN and e.monindx == 2
    e = failure_of(rej)
    assert isinstance(e, RequestFailed) and (e.monindx, e.monerrid) == (1, 0xFFFD)
    e = failure_of(odd)
    assert isinstance(e, RequestFailed) and e.status == 0x1234
    assert "0x1234 (a status code PacketLab does not define)" in str(e)
    assert s.close_reason is None


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"\x00", "result length must be 0, 2, 4 or 6"),
        (b"\x00\x12", "ECTLMONREJ needs monindx and monerrid"),
        (b"\x00\x10\x00\x01", "others neither"),
    ],
)
def test_malformed_result_names_the_message_and_the_rule(body: bytes, text: str) -> None:
    s, t, _ = on_string_transport()
    d = s.nclose(1)
    s.dataReceived(hdr(0x40, body))
    err = failure_of(d)
    assert isinstance(s.close_reason, ProtocolViolation)
    assert f"malformed result from the endpoint ({len(body)}-byte body): " in str(err)
    assert text in str(err)
    assert t.disconnecting


# ------------------------------------------------------------------ closing mid-message


def test_endpoint_closing_mid_frame_says_which_frame_and_request() -> None:
    s, _, _ = on_string_transport()
    d = s.mread(vmem.TIME.addr, 8)
    s.dataReceived(frames(Mdata(vmem.TIME.addr, bytes(8)))[:7])
    s.connectionLost(Failure(ConnectionDone()))
    err = failure_of(d)
    assert str(err) == (
        "the endpoint closed the connection with 1 request unanswered (first: mread), "
        "in the middle of a frame (mdata, 7 of 16 bytes)"
    )


def test_endpoint_closing_inside_a_header_says_so() -> None:
    s, _, _ = on_string_transport()
    d = s.nclose(1)
    d2 = s.nclose(2)
    s.dataReceived(b"\x40\x00")
    s.connectionLost(Failure(ConnectionLost("reset")))
    err = failure_of(d)
    failure_of(d2)
    assert "connection lost with 2 requests unanswered (first: nclose)" in str(err)
    assert "in the middle of a frame header (2 of 4 bytes)" in str(err)
    assert isinstance(err, SessionClosed) and isinstance(err.cause, ConnectionLost)


# ------------------------------------------------------------------ never answering


def test_requests_never_answered_end_the_session_after_answer_timeout() -> None:
    s, t, clock = started()
    d = s.mread(vmem.TIME.addr, 8)
    d2 = s.nclose(1)
    advance(clock, ANSWER_TIMEOUT * 0.9)
    assert not d.called
    advance(clock, ANSWER_TIMEOUT * 0.5)
    err = failure_of(d)
    failure_of(d2)
    assert isinstance(err, SessionClosed) and isinstance(err.cause, AnswerTimeout)
    assert f"answered none of 2 waiting requests (first: mread) for {ANSWER_TIMEOUT:g} s" in str(
        err
    )
    assert t.aborted
    assert not clock.getDelayedCalls() or all(not c.active() for c in clock.getDelayedCalls())


def test_setup_never_answered_fails_ready() -> None:
    clock = Clock()
    s = EndpointSession(reactor=clock, programs=[b"\x01wasm"])
    s.makeConnection(AbortLog())
    advance(clock, ANSWER_TIMEOUT * 1.5)
    err = failure_of(s.ready)
    assert isinstance(err, SessionClosed) and isinstance(err.cause, AnswerTimeout)
    assert "(first: cdata)" in str(err)


def test_a_length_that_lies_ends_in_answer_timeout_naming_the_frame() -> None:
    s, _, clock = started()
    d = s.mread(vmem.TIME.addr, 8)
    s.dataReceived(hdr(0x41, bytes(100))[:14])  # announces 100 bytes, sends 10
    advance(clock, ANSWER_TIMEOUT * 1.5)
    err = failure_of(d)
    assert "in the middle of a frame (mdata, 14 of 104 bytes)" in str(err)


def test_answers_that_keep_coming_keep_a_long_pipeline_alive() -> None:
    s, _, clock = started()
    ds = [s.nclose(i) for i in range(6)]
    for d in ds:
        advance(clock, ANSWER_TIMEOUT * 0.6)  # each answer comes 0.6 timeouts after the last
        s.dataReceived(frames(Result()))
        assert result_of(d) == Result()
    assert s.close_reason is None and not s.pending
    advance(clock, ANSWER_TIMEOUT * 3)  # nothing waits: nothing to time out
    assert s.close_reason is None


def test_paused_reads_while_the_experiment_reads_and_a_suspension_do_not_count() -> None:
    s, _, clock = started(max_notes=2)
    opened = s.nopen_udp(1)
    s.dataReceived(frames(Result()))
    result_of(opened)
    d = s.mread(vmem.TIME.addr, 8)  # (an nclose of socket 1 resumes reads since session 32)
    note = Ndata(1, 4, 17, 5, b"x", b"\x7f\0\0\1", 53)
    s.dataReceived(frames(*[note] * 8))  # the socket queue is full: reads pause
    assert s.paused
    for _ in range(6):  # the experiment takes one now and then: the wait is its
        advance(clock, ANSWER_TIMEOUT * 0.75)
        result_of(s.socket(1).get())
        assert s.paused and not d.called and s.close_reason is None
    s.socket(1).drain()  # reads resume; the wait starts again
    assert not s.paused
    s.dataReceived(frames(Suspd()))
    advance(clock, ANSWER_TIMEOUT * 3)
    assert not d.called and s.close_reason is None
    s.suspended = False  # (a resumd)
    advance(clock, ANSWER_TIMEOUT * 1.5)
    assert isinstance(failure_of(d), SessionClosed)
    assert isinstance(s.close_reason, AnswerTimeout)


def test_paused_reads_with_nothing_taken_end_the_session_naming_the_socket() -> None:
    """An endpoint flooding a socket the experiment does not read with an answer behind
    the flood: reads paused, nothing taken, the mread never answered. Was a hang for ever
    (the paused time never counted); now the answer watchdog ends the session and says
    which socket holds the answers up. (An nclose of that socket resumes reads since
    session 32: it is answered.)"""
    s, t, clock = started(max_notes=4)
    opened = s.nopen_udp(3)
    s.dataReceived(frames(Result()))
    sock = result_of(opened)
    d = s.mread(vmem.TIME.addr, 8)
    note = Ndata(3, 4, 17, 5, b"x" * 100, b"\x7f\0\0\1", 53)
    s.dataReceived(frames(*[note] * 300, Mdata(vmem.TIME.addr, bytes(8))))
    assert s.paused and sock.queued == 4
    advance(clock, ANSWER_TIMEOUT * 0.9)
    assert not d.called
    advance(clock, ANSWER_TIMEOUT * 0.5)
    err = failure_of(d)
    assert isinstance(err, SessionClosed) and isinstance(err.cause, AnswerTimeout)
    assert str(err.cause) == (
        "socket 3 has 4 unread notifications and the experiment took none for 60 s while "
        "1 waiting request (first: mread) could not be answered (reads from the endpoint "
        "stay paused until the experiment reads that socket, or nopen with buffer=False)"
    )
    assert t.aborted and s.ended
    assert sock.drain() == [note] * 4  # what came is still readable


def test_answer_timeout_none_waits_for_ever() -> None:
    s, _, clock = started(answer_timeout=None)
    d = s.nclose(1)
    advance(clock, ANSWER_TIMEOUT * 10)
    assert not d.called and not clock.getDelayedCalls()


# ------------------------------------------------------------------ ending


def test_yield_answered_ends_the_session_cleanly() -> None:
    s, t, _ = on_string_transport()
    d = s.yield_(123)
    s.dataReceived(frames(Result()))
    assert result_of(d) == Result()
    assert t.disconnecting  # our EOF too: the endpoint closes next (§1.4 step 5)
    later = s.nclose(1)
    assert isinstance(failure_of(later), SessionClosed)
    s.connectionLost(Failure(ConnectionDone()))
    assert s.close_reason is None


def test_close_cuts_an_endpoint_that_ignores_our_eof() -> None:
    s, t, clock = started()
    closed = s.close()
    assert t.disconnecting and not t.aborted
    clock.advance(CLOSE_GRACE)
    assert t.aborted
    s.connectionLost(Failure(ConnectionLost()))
    assert result_of(closed) is None


def test_close_grace_is_cancelled_when_the_endpoint_closes() -> None:
    s, _, clock = started()
    s.close()
    s.connectionLost(Failure(ConnectionDone()))
    assert not [c for c in clock.getDelayedCalls() if c.active()]


# ------------------------------------------------------------------ floods


def test_a_linfo_flood_is_kept_bounded() -> None:
    s, _, _ = on_string_transport()
    s.dataReceived(frames(*[Linfo(b"monitor", b"\0\0", b"x" * 100)] * (MAX_LINFO + 500)))
    assert len(s.linfo) == MAX_LINFO and s.linfo_dropped == 500
    assert s.close_reason is None


def test_linfo_of_the_largest_frames_are_kept_within_a_byte_budget() -> None:
    """140 linfo of ~1 MiB (under the frame bound): 128 were kept, 128 MiB held for the
    session's life; now 1 MiB of them, the rest dropped and counted."""
    s, _, _ = on_string_transport()
    big = Linfo(b"monitor", b"\0\0", b"i" * (MAX_FRAME_BODY - 64))
    for _ in range(140):
        s.dataReceived(frames(big))
    kept = sum(len(x.name) + len(x.aux) + len(x.info) for x in s.linfo)
    assert kept == s.linfo_bytes <= MAX_LINFO_BYTES
    assert len(s.linfo) == 1 and s.linfo_dropped == 139
    s.dataReceived(frames(Linfo(b"m", b"", b"small")))  # one that fits is still kept
    assert s.linfo[-1].info == b"small" and s.close_reason is None


def test_an_unknown_type_flood_is_counted_not_logged_line_by_line() -> None:
    s, _, _ = on_string_transport()
    events: list[dict[str, Any]] = []
    s.log = Logger(observer=events.append)  # type: ignore[arg-type]
    d = s.nclose(1)
    s.dataReceived(hdr(0x9A, b"z") * 1000 + frames(Result()))
    assert result_of(d) == Result()
    assert s.unknown_messages == 1000
    assert len(events) == UNKNOWN_LOGGED


def test_a_socket_asked_for_after_the_session_broke_does_not_wait() -> None:
    # Found by test_ctl_fuzz: a result with no request waiting ends the session; a
    # socket(n).get() after that made a live socket nothing would ever feed or end.
    s, _, _ = on_string_transport()
    s.dataReceived(frames(Result()))
    assert isinstance(s.close_reason, ProtocolViolation)
    err = failure_of(s.socket(3).get())
    assert isinstance(err, SessionClosed) and "no request waiting" in str(err)
    assert s.find_socket(3) is None


def test_a_socket_asked_for_after_a_clean_close_ends_at_once() -> None:
    s, _, _ = on_string_transport()
    s.close()
    s.connectionLost(Failure(ConnectionDone()))
    assert result_of(s.socket(3).get()) is None


def test_a_callback_that_raises_does_not_cut_the_session() -> None:
    s, t, _ = on_string_transport()
    opened = s.nopen_udp(1)
    s.dataReceived(frames(Result()))
    sock = result_of(opened)
    seen: list[bytes] = []

    def picky(note: Any) -> None:
        if note.data == b"odd":
            raise ValueError("cannot parse that")
        seen.append(note.data)

    sock.add_callback(picky)
    events: list[dict[str, Any]] = []
    sock.log = Logger(observer=events.append)  # type: ignore[arg-type]
    d = s.mread(vmem.TIME.addr, 8)
    note = Ndata(1, 4, 17, 5, b"odd", b"\x7f\0\0\1", 53)
    s.dataReceived(
        frames(note, Ndata(1, 4, 17, 6, b"ok", b"\x7f\0\0\1", 53), Mdata(vmem.TIME.addr, bytes(8)))
    )
    assert result_of(d) == bytes(8)
    assert seen == [b"ok"] and sock.callback_errors == 1
    assert [n.data for n in sock.drain()] == [b"odd", b"ok"]  # type: ignore[union-attr]
    assert s.close_reason is None and not t.disconnecting
    assert len(events) == 1 and events[0]["name"] == "ndata" and events[0]["log_failure"]


# ------------------------------------------------------------------ our requests


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (lambda s: s.nclose(300), "nclose: sktid must be 0..255, got 300"),
        (lambda s: s.mread(0, 70000), "mread: len must be 1..65535, got 70000"),
        (lambda s: s.yield_(-1), "yield: rhint must be 0..18446744073709551615, got -1"),
        (lambda s: s.nopen_udp(1, rbufsz=1 << 32), "nopen: rbufsz must be 0..4294967295"),
        (
            lambda s: s.nsend(1, b"x", family=4, proto=6, time=-5),
            "nsend: time must be 0..18446744073709551615, got -5",
        ),
    ],
)
def test_a_field_out_of_its_wire_range_is_named(call: Any, text: str) -> None:
    s, t, _ = on_string_transport()
    err = failure_of(call(s))
    assert isinstance(err, ValueError) and text in str(err)
    assert t.value() == b"" and not s.pending


def test_ncap_and_nctl_are_refused_here_on_sockets_of_the_wrong_protocol() -> None:
    # The endpoint would refuse them with a code that does not say why (ESKTNOMATCH or
    # ECTLNOTSUP); the reference endpoint crashes on ncap for a TCP/UDP socket (§3.4).
    s, t, _ = on_string_transport()
    opened = s.nopen_udp(2)
    s.dataReceived(frames(Result()))
    result_of(opened)
    t.clear()
    err = failure_of(s.ncap(2, b"\x00" + bytes(8), endtime=0))
    assert str(err) == "ncap works on raw sockets only; socket 2 is UDP"
    err = failure_of(s.nctl_fin(2))
    assert str(err) == "nctl_fin works on TCP sockets only; socket 2 is UDP"
    assert t.value() == b""


def test_a_frame_bigger_than_any_endpoint_sends_is_refused_before_its_body() -> None:
    s, t, _ = on_string_transport()
    d = s.mread(vmem.TIME.addr, 8)
    s.dataReceived(b"\x62\xff\xff\xff" + b"x" * 100)  # ndata announcing 16 MiB - 1
    err = failure_of(d)
    assert isinstance(s.close_reason, ProtocolViolation)
    assert (
        f"announced a frame (ndata) with a 16777215-byte body, more than any endpoint sends "
        f"(limit {MAX_FRAME_BODY}; stream offset 4)"
    ) in str(err)
    assert t.disconnecting


def test_the_largest_frames_an_endpoint_sends_are_taken() -> None:
    s, _, _ = on_string_transport()
    opened = s.nopen_tcp_connect(1, "127.0.0.1", 80)
    d = s.mread(vmem.SYS_BASE, 0xFFFF)
    s.dataReceived(
        frames(
            Result(),
            Mdata(vmem.SYS_BASE, bytes(0xFFFF)),
            Ndata(1, 4, 6, 1, bytes(0x10000)),
            Linfo(b"monitor", b"\0\0", bytes(0x10000)),
        )
    )
    sock = result_of(opened)
    assert len(result_of(d)) == 0xFFFF
    assert len(sock.drain()) == 1 and s.close_reason is None


def test_a_flood_of_notifications_for_no_socket_is_counted_not_logged_line_by_line() -> None:
    s, _, _ = on_string_transport()
    events: list[dict[str, Any]] = []
    s.log = Logger(observer=events.append)  # type: ignore[arg-type]
    s.dataReceived(frames(*[Ndata(7, 4, 6, 1, b"x")] * 500))
    assert s.stray_notes == 500 and len(events) == UNKNOWN_LOGGED
    assert s.close_reason is None


def test_a_reflex_on_report_that_raises_does_not_cut_the_session() -> None:
    from packetlab.reflex import wire as rw

    s, t, _ = on_string_transport()
    d = s.attach_reflex(3, b"\0asm\x01\0\0\0")
    caps = rw.Caps(flags=rw.CAPS_ALLOWED, params_len=1024, state_len=1024, max_emits=64)
    s.dataReceived(frames(Mdata(rw.CAPS, caps.encode()), Result()))
    reflex = result_of(d)

    def on_report(rep: Any) -> None:
        raise ValueError("cannot take it")

    reflex.on_report = on_report
    events: list[dict[str, Any]] = []
    reflex.log = Logger(observer=events.append)  # type: ignore[arg-type]
    m = s.mread(vmem.TIME.addr, 8)
    s.dataReceived(rw.Report(3, 5, b"hi").frame() + frames(Mdata(vmem.TIME.addr, bytes(8))))
    assert result_of(m) == bytes(8)
    assert len(events) == 1 and events[0]["log_failure"]
    assert s.close_reason is None and not t.disconnecting


# ------------------------------------------------------------------ every §1.2/§1.3 form


@pytest.mark.parametrize("status", [st for st in Status if st != Status.SUCCESS])
def test_every_status_code_fails_the_request_with_its_name(status: Status) -> None:
    s, _, _ = on_string_transport()
    d = s.nclose(1)
    monindx = 1 if status in (Status.ECTLMONREJ, Status.ECTLMONUKN) else None
    monerrid = 7 if status == Status.ECTLMONREJ else None
    s.dataReceived(frames(Result(int(status), monindx, monerrid)))
    err = failure_of(d)
    assert isinstance(err, RequestFailed) and err.status is status and err.name == status.name
    assert str(err).startswith(f"nclose failed: {status.name} (0x{int(status):02x}): ")
    assert (err.monindx, err.monerrid) == (monindx, monerrid)
    assert s.close_reason is None


V6 = bytes(15) + b"\x01"


@pytest.mark.parametrize(
    "note",
    [
        Ntag(1, 9, 5),
        Ntag(1, 9, 5, int(Status.EPKTNOTSENT)),
        Nstat(1, 4, 6, 5, 0, b"\x7f\0\0\x01", 80),  # ESTABLISHED, the reference's form
        Nstat(1, 6, 6, 5, 0, V6, 80),
        Nstat(1, 4, 6, 5, int(NstatCode.PEERCLOSED)),
        Nstat(1, 4, 17, 5, int(NstatCode.UNKNOWN)),
        Ndata(1, 4, 6, 5, b"tcp bytes"),
        Ndata(1, 4, 6, 5, b""),
        Ndata(1, 4, 17, 5, b"dgram", b"\x7f\0\0\x01", 53),
        Ndata(1, 6, 17, 5, b"dgram6", V6, 53),
        Ndata(1, 4, 0, 5, b"\x45" + bytes(19)),  # raw: the IP packet, no address
        Ndrop(1, 4, 17, 5, 6, 2, 3000),
        Nblock(1, 4, 17, 0xFFFD, 5),
    ],
    ids=lambda n: f"{n.NAME}-{len(wire.encode(n)) - 4}",
)
def test_every_notification_form_reaches_its_socket(note: Any) -> None:
    s, _, _ = on_string_transport()
    sock = s.socket(1)
    s.dataReceived(frames(note))
    assert sock.drain() == [note] and s.close_reason is None


def test_monitor_linfo_suspd_and_resumd_are_taken() -> None:
    s, _, _ = on_string_transport()
    s.dataReceived(frames(Linfo(b"monitor", b"\x01\x00", b"hello"), Suspd()))
    assert s.linfo == [Linfo(b"monitor", b"\x01\x00", b"hello")] and s.suspended
    s.dataReceived(frames(Resumd()))
    assert not s.suspended and s.close_reason is None


def test_an_endpoint_closing_before_the_setup_answer_says_why_it_may_have() -> None:
    clock = Clock()
    s = EndpointSession(reactor=clock)
    s.makeConnection(AbortLog())
    s.connectionLost(Failure(ConnectionDone()))
    err = failure_of(s.ready)
    assert str(err).startswith(
        "the endpoint closed the connection with 1 request unanswered (first: start) "
        "(an endpoint closes before answering the setup when it refuses the experiment "
        "after TLS: exp_priority above the chain's max_num_priority"
    )


@pytest.mark.parametrize(
    ("call", "hint"),
    [
        (lambda s: s.nopen_tcp_listen(1, 8080), "exits on a TCP listen nopen: §3.1"),
        (lambda s: s.nopen_udp(1, family=6), "aborts on UDP over IPv6: §3.1"),
        (lambda s: s.mread(vmem.TIME.addr, 8), None),
    ],
)
def test_a_loss_after_a_request_the_reference_dies_on_says_so(call: Any, hint: Any) -> None:
    s, _, _ = on_string_transport()
    d = call(s)
    s.connectionLost(Failure(ConnectionLost("worker gone")))
    text = str(failure_of(d))
    assert (hint in text) if hint else "§" not in text


def test_a_reactor_held_up_by_the_experiment_is_not_an_endpoint_that_does_not_answer() -> None:
    # The answers may be sitting unread in the socket while our own code held the
    # reactor: a watchdog tick that comes far too late must not blame the endpoint.
    s, _, clock = started()
    d = s.nclose(1)
    clock.advance(ANSWER_TIMEOUT * 3)  # one late tick, as after a blocked reactor
    assert not d.called and s.close_reason is None
    s.dataReceived(frames(Result()))
    assert result_of(d) == Result()
    d2 = s.nclose(2)
    advance(clock, ANSWER_TIMEOUT * 1.5)  # ticks on time: the endpoint really is silent
    assert isinstance(failure_of(d2), SessionClosed)
