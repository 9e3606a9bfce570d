"""The experiment's end time (§4.5) ends the session from the endpoint's side: what is
queued goes out, then the close (close_notify and FIN over TLS), as at the controller's
EOF (session 30, ep30). It aborted: the queued answers and notifications were lost and
the controller saw a reset."""

from __future__ import annotations

from ep_fakes import udp_open
from test_ep_protocol import Conn, mread
from twisted.python.failure import Failure

from packetlab import wire
from packetlab.endpoint.protocol import CLOSE_TIMEOUT, MAX_QUEUED

WHY = "experiment end time reached (end)"


def test_the_end_time_sends_what_is_queued_then_closes() -> None:
    c = Conn()
    c.feed(wire.Start(), udp_open(1))
    c.out()
    c.proto.pauseProducing()  # the controller is not reading yet
    c.feed(*[mread() for _ in range(MAX_QUEUED - 10)])
    c.proto.end_session(WHY, drain=True)
    assert c.rig.io(1).closed  # the session ended: sockets freed at once
    assert not c.transport.disconnecting and c.ended == []  # the answers wait
    c.feed(mread())  # a request after the end: not answered
    c.proto.resumeProducing()  # it reads
    assert [type(f) for f in c.out()] == [wire.Mdata] * (MAX_QUEUED - 10)
    assert c.transport.disconnecting  # then the close (FIN after the last answer)
    c.proto.connectionLost(Failure(ConnectionError("closed")))
    assert [e.reason for e in c.ended] == [f"closed by the endpoint: {WHY}"]
    assert c.clock.getDelayedCalls() == []


def test_a_controller_that_never_reads_at_the_end_time_is_cut_off() -> None:
    c = Conn()
    c.feed(wire.Start())
    c.proto.pauseProducing()
    c.feed(mread())
    c.proto.end_session(WHY, drain=True)
    c.proto.end_session(WHY, drain=True)  # max_exp_period used up too: once is enough
    assert not c.transport.disconnected
    c.clock.advance(CLOSE_TIMEOUT)
    assert c.transport.disconnected  # aborted


def test_the_endpoint_stopping_still_aborts() -> None:
    c = Conn()
    c.feed(wire.Start())
    c.proto.pauseProducing()
    c.feed(mread())
    c.proto.end_session()
    assert c.transport.disconnected
