"""The manager's end of one endpoint (`EndpointWorker`, the pktxpmgr side) against an
endpoint that stalls or floods during the setup: a clear error and bounded memory."""

from __future__ import annotations

import socket

from twisted.internet.testing import MemoryReactorClock, StringTransport

from packetlab import wire
from packetlab.controller.mlet import MAX_LINFO, SETUP_TIMEOUT, EndpointWorker


class Aborts(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


def worker() -> tuple[EndpointWorker, Aborts, MemoryReactorClock, list[socket.socket]]:
    reactor = MemoryReactorClock()
    launched: list[socket.socket] = []
    w = EndpointWorker(
        reactor, setup_for=lambda w: [b"\x01wasm"], launch=lambda w, s: launched.append(s),
        done=lambda w: None,
    )  # fmt: skip
    t = Aborts()
    w.makeConnection(t)
    return w, t, reactor, launched


def test_an_endpoint_that_never_answers_the_setup_is_given_up() -> None:
    w, t, reactor, launched = worker()
    w.dataReceived(wire.encode(wire.Result()))  # the cdata; start never answered
    reactor.advance(SETUP_TIMEOUT - 1)
    assert w.state == "setup" and w.error is None
    reactor.advance(1)
    assert w.error == f"endpoint did not answer start within {SETUP_TIMEOUT:g} s"
    assert t.aborted and w.state == "closed" and not launched
    assert w.result()["status"] == "failed"


def test_the_setup_timer_ends_with_the_setup() -> None:
    w, _, reactor, launched = worker()
    w.dataReceived(
        wire.encode(wire.Result())
        + wire.encode(wire.Result())
        + wire.encode(wire.Mdata(0x10030000, bytes(256)))
    )
    for s in launched:
        s.close()
    assert not [c for c in reactor.getDelayedCalls() if c.active()]


def test_a_notification_answering_the_setup_is_named() -> None:
    w, _, _, _ = worker()
    w.dataReceived(wire.encode(wire.Ndata(1, 4, 6, 0, b"x")))
    assert w.error == "endpoint refused cdata: it answered with ndata, not a result"


def test_a_linfo_flood_is_bounded() -> None:
    w, _, _, _ = worker()
    w.dataReceived(wire.encode(wire.Linfo(b"monitor", b"\0\0", b"hi")) * (MAX_LINFO + 50))
    assert len(w.linfo) == MAX_LINFO and w.linfo_dropped == 50


def test_a_frame_bigger_than_any_endpoint_sends_is_refused() -> None:
    w, t, _, _ = worker()
    w.dataReceived(b"\x62\xff\xff\xff" + bytes(100))
    assert w.error == (
        "endpoint sent a bad frame: frame at stream offset 0 announces a 16777215-byte "
        "body (limit 1048576)"
    )
    assert t.disconnecting and w.state == "closed"
