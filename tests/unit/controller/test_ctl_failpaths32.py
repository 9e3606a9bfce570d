"""The controller API's failure paths as a Twisted programmer meets them (session 32,
ctl32): cancelled Deferreds free what they held, an endpoint lost mid-call fails every
wait with an error of its own and logs nothing unhandled, misuse gets one clear error."""

from __future__ import annotations

import gc
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from ctl_fakes import frames, on_string_transport, result_of
from testkit.logs import Events, captured_events
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from packetlab import wire
from packetlab.controller import (
    EndpointSession,
    RequestFailed,
    SessionClosed,
    read_socket_info,
    read_socket_state,
    read_tcp_info,
    read_time,
    set_notifmask,
    set_rbufsz,
    tcp_exchange,
    wait_connected,
)
from packetlab.wire import Mdata, Ndata, Result, Status, vmem


def sent(data: bytes) -> list[str]:
    return [m.NAME for m in wire.Framer().feed(data) if isinstance(m, wire.Message)]


@pytest.fixture
def unhandled() -> Iterator[Events]:
    """The 'Unhandled error in Deferred' events logged while the test runs (and by its
    garbage, collected at the end)."""
    gc.collect()  # the garbage of earlier tests logs before we listen
    with captured_events(fmt="Unhandled error in Deferred") as events:
        yield events
        gc.collect()


# ------------------------------------------------------------------ cancellation


def test_a_cancelled_nopen_closes_the_socket_the_endpoint_opened() -> None:
    # up to session 31 it stayed open on the endpoint (and its Socket took notifications)
    # until the session ended: cancelling freed nothing
    s, t, _ = on_string_transport()
    d = s.nopen_udp(0)
    d.cancel()
    with pytest.raises(CancelledError):
        result_of(d)
    t.clear()
    s.dataReceived(frames(Result()))  # the endpoint opened it all the same
    assert sent(t.value()) == ["nclose"]
    assert s.free_sktid() == 1  # taken until the nclose is answered
    s.dataReceived(frames(Result()))
    assert s.find_socket(0) is None and s.free_sktid() == 0
    refused = s.nopen_udp(0)  # a refused one has nothing to close
    refused.cancel()
    t.clear()
    s.dataReceived(frames(Result(Status.ESKTNOADDR)))
    assert t.value() == b"" and s.pending == 0 and s.free_sktid() == 0


def test_a_cancelled_tcp_exchange_closes_its_socket(unhandled: Events) -> None:
    # cancelled while its TIME read was answered, the nopen behind it was never cancelled:
    # the connection stayed open on the endpoint until the session ended
    s, t, _ = on_string_transport()
    d = tcp_exchange(s, "192.0.2.80", 80, b"GET /")
    assert sent(t.value()) == ["mread", "nopen"]
    d.cancel()
    with pytest.raises(CancelledError):
        result_of(d)
    t.clear()
    s.dataReceived(frames(Mdata(vmem.TIME.addr, bytes(8)), Result()))
    assert sent(t.value()) == ["nclose"]
    s.dataReceived(frames(Result()))
    assert s.find_socket(0) is None and s.pending == 0 and unhandled == []


def test_a_request_with_a_timeout_leaves_the_pipeline_in_order() -> None:
    s, _, clock = on_string_transport()
    slow = s.mread(0x100, 4).addTimeout(1.0, clock)
    after = s.mread(0x200, 4)
    clock.advance(1.0)
    with pytest.raises(defer.TimeoutError):
        result_of(slow)
    s.dataReceived(frames(Mdata(0x100, b"late"), Mdata(0x200, b"mine")))
    assert result_of(after) == b"mine" and s.pending == 0 and not s.ended


# ------------------------------------------------------------------ the endpoint gone


def test_a_tcp_exchange_cut_before_its_connect_logs_no_unhandled_error(
    unhandled: Events,
) -> None:
    # its nopen failed unawaited when the TIME read before it failed: "Unhandled error in
    # Deferred: SessionClosed: connection lost ..." after the experiment had its error
    s, _, _ = on_string_transport()
    d = tcp_exchange(s, "192.0.2.80", 80, b"GET /")
    s.connectionLost(Failure(ConnectionLost()))
    assert "connection lost with 2 requests unanswered" in str(_error(d))
    del d
    gc.collect()
    assert unhandled == []


def test_every_wait_cut_by_the_loss_gets_an_exception_of_its_own() -> None:
    # one SessionClosed instance was raised into every waiting coroutine, so each one's
    # traceback grew the frames of all the others (tcp_exchange's showed read_time's)
    s, _, _ = on_string_transport()
    s.nopen_udp(1)
    s.dataReceived(frames(Result()))
    sock = s.find_socket(1)
    assert sock is not None

    async def alpha_waits() -> None:
        await s.mread(0, 8)

    async def beta_waits() -> None:
        await read_time(s)

    async def gamma_reads() -> None:
        await sock.get()

    waits = [Deferred.fromCoroutine(f()) for f in (alpha_waits, beta_waits, gamma_reads)]
    s.connectionLost(Failure(ConnectionLost()))
    errors: list[Any] = []
    for d in waits:
        with pytest.raises(SessionClosed) as e:
            result_of(d)
        errors.append(e.value)
    errors += [_error(s.mread(0, 8)), _error(s.mread(0, 8)), _error(sock.get())]
    assert len({id(e) for e in errors}) == len(errors)
    assert {str(e) for e in errors} == {str(errors[0])}
    tb = "".join(traceback.format_tb(errors[0].__traceback__))
    assert "alpha_waits" in tb and "beta_waits" not in tb and "gamma_reads" not in tb
    assert isinstance(errors[-1].cause, ConnectionLost) and s.ended


def _error(d: Deferred[Any]) -> BaseException:
    box: list[Failure] = []
    d.addErrback(box.append)
    assert box and box[0].value is not None
    return box[0].value


# ------------------------------------------------------------------ misuse


def test_a_request_before_the_connection_says_it_is_not_connected() -> None:
    # it said "session closed", of a session that had not begun
    s = EndpointSession()
    with pytest.raises(SessionClosed, match=r"^the session is not connected yet: "):
        result_of(s.mread(0, 8))
    assert not s.ended


def test_a_field_of_the_wrong_type_or_an_empty_mread_is_named() -> None:
    # mread("a", 4) failed "EncodeError: Mread: can only concatenate str (not "int") to
    # str", mread(0, 0) "Mread: mread len must be > 0"
    s, t, _ = on_string_transport()
    with pytest.raises(TypeError, match=r"^mread: addr must be an int, got str$"):
        result_of(s.mread("a", 4))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^mread: len must be 1\.\.65535, got 0$"):
        result_of(s.mread(0, 0))
    with pytest.raises(TypeError, match=r"^nclose: sktid must be an int, got float$"):
        result_of(s.nclose(1.0))  # type: ignore[arg-type]
    assert t.value() == b"" and s.pending == 0


def test_the_same_sktid_twice_is_refused_by_the_endpoint_and_named() -> None:
    s, _, _ = on_string_transport()
    first, second = s.nopen_udp(3), s.nopen_udp(3)
    s.dataReceived(frames(Result(), Result(Status.ESKTINUSE)))
    assert result_of(first).sktid == 3
    with pytest.raises(Exception, match=r"ESKTINUSE .*\(asked: UDP socket 3\)"):
        result_of(second)
    sock = s.find_socket(3)
    assert sock is not None and not sock.ended  # the first one is untouched


def test_requests_after_close_fail_at_once() -> None:
    s, t, _ = on_string_transport()
    s.close()
    t.clear()
    with pytest.raises(SessionClosed, match=r"^session closed$"):
        result_of(s.mread(0, 8))
    assert t.value() == b""


def test_a_cancelled_wait_connected_leaves_no_timer() -> None:
    # its poll timer (0.05 s) stayed scheduled after the cancel: a DelayedCall left over
    s, _, clock = on_string_transport()
    s.nopen_tcp_connect(3, "192.0.2.1", 80)
    s.dataReceived(frames(Result()))
    before = set(clock.getDelayedCalls())
    d = wait_connected(s, 3)
    assert set(clock.getDelayedCalls()) - before
    d.cancel()
    with pytest.raises(CancelledError):
        result_of(d)
    assert set(clock.getDelayedCalls()) <= before
    sock = s.find_socket(3)
    assert sock is not None and sock._estab_waiters == []


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (lambda s: read_socket_info(s, 300), "read_socket_info: sktid must be 0..255, got 300"),
        (lambda s: read_socket_state(s, -1), "read_socket_state: sktid must be 0..255, got -1"),
        (lambda s: read_tcp_info(s, 256), "read_tcp_info: sktid must be 0..255, got 256"),
        (lambda s: set_rbufsz(s, 300, 1024), "set_rbufsz: sktid must be 0..255, got 300"),
        (lambda s: set_rbufsz(s, 1, 1 << 32), "set_rbufsz: size must be 0..4294967295, got"),
        (lambda s: set_notifmask(s, 1, 1 << 16), "set_notifmask: mask must be 0..65535, got"),
    ],
)
def test_a_socket_helper_with_no_such_socket_fails_before_sending(call: Any, text: str) -> None:
    # read_socket_info(s, 300) read the memory after the socket table and returned a
    # FREE socket 300; set_rbufsz(s, 300, n) wrote there; a size or mask beyond its field
    # raised struct.error out of the call instead of failing its Deferred
    s, t, _ = on_string_transport()
    with pytest.raises(ValueError) as e:
        result_of(call(s))
    assert str(e.value).startswith(text) and t.value() == b"" and s.pending == 0


def test_a_tcp_exchange_request_that_is_no_bytes_fails_before_the_connect() -> None:
    # a str connected first, then failed at its nsend: a connection opened for nothing
    s, t, _ = on_string_transport()
    with pytest.raises(TypeError, match=r"^tcp_exchange request must be bytes, got str"):
        result_of(tcp_exchange(s, "192.0.2.80", 80, "GET /"))  # type: ignore[arg-type]
    assert t.value() == b"" and s.pending == 0


def _ndata(i: int) -> Ndata:
    return Ndata(1, 4, 17, i, b"x", bytes(4), 9)


def test_an_nclose_of_a_full_socket_is_answered() -> None:
    # a socket closed with its queue full (a flood the experiment no longer wants): reads
    # stayed paused, the nclose's answer waited behind the unread notifications, and the
    # answer watchdog cut the whole session 60 s later ("socket 1 has 4 unread
    # notifications and the experiment took none for 60 s ... (first: nclose)")
    s, _, clock = on_string_transport(max_notes=4)
    s.nopen_udp(1)
    s.dataReceived(frames(Result()))
    s.dataReceived(frames(*[_ndata(i) for i in range(6)]))
    sock = s.find_socket(1)
    assert sock is not None and s.paused and sock.queued == 4
    closed = s.nclose(1)
    s.dataReceived(frames(_ndata(7), Result()))
    assert result_of(closed) == Result() and not s.paused and s.pending == 0
    clock.advance(200)
    assert not s.ended
    got = [result_of(sock.get()) for _ in range(8)]  # what was queued is still there
    assert [n.time for n in got if n is not None] == [0, 1, 2, 3, 4, 5, 7] and got[-1] is None


def test_a_refused_nclose_lets_the_full_queue_hold_reads_again() -> None:
    s, _, _ = on_string_transport(max_notes=4)
    s.nopen_udp(1)
    s.dataReceived(frames(Result()))
    s.dataReceived(frames(*[_ndata(i) for i in range(4)]))
    assert s.paused
    closed = s.nclose(1)
    assert not s.paused
    s.dataReceived(frames(Result(Status.ESKTNOTOPEN)))
    with pytest.raises(RequestFailed):
        result_of(closed)
    assert s.paused  # the socket is still open with its 4 unread notifications
