"""A controller that half-closes (EOF on its sending side, still reading) gets every
answer already queued, then the close (session 20, hard20). The endpoint dropped them:
2,000 pipelined 64 KiB mreads and a `shutdown(SHUT_WR)` got 1,912 answers over plain
TCP, the rest were in the outbox or the transport when the EOF was read."""

from __future__ import annotations

from ep_fakes import udp_open
from test_ep_protocol import Conn, mread

from packetlab import wire
from packetlab.endpoint.protocol import CLOSE_TIMEOUT, MAX_QUEUED


def test_answers_queued_at_the_eof_go_out_then_the_close() -> None:
    c = Conn()
    c.feed(wire.Start(), udp_open(1))
    c.out()
    c.proto.pauseProducing()  # the controller is not reading yet
    c.feed(*[mread() for _ in range(MAX_QUEUED - 10)])
    c.proto.readConnectionLost()  # then its EOF
    assert c.rig.io(1).closed  # the session ended: sockets freed at once
    assert c.rig.session.ended is not None
    assert not c.transport.disconnecting and c.ended == []  # the answers wait
    c.proto.resumeProducing()  # it reads
    assert [type(f) for f in c.out()] == [wire.Mdata] * (MAX_QUEUED - 10)
    assert c.transport.disconnecting  # then the close (FIN after the last answer)
    c.proto.connectionLost()
    assert c.ended and c.ended[0].reason == "controller closed the connection"
    assert c.clock.getDelayedCalls() == []


def test_requests_still_waiting_at_the_eof_are_answered_first() -> None:
    """Over TLS the EOF (close_notify) can be read past requests that wait behind a full
    outbox: they are handled once it drains, and only then does the session end."""
    c = Conn()
    c.feed(wire.Start(), udp_open(1))
    c.out()
    c.proto.pauseProducing()
    c.feed(*[mread() for _ in range(MAX_QUEUED + 20)])
    assert c.proto.framer.buffered  # 20 wait unread
    c.proto.readConnectionLost()
    assert c.rig.session.ended is None and not c.rig.io(1).closed
    c.proto.resumeProducing()
    assert [type(f) for f in c.out()] == [wire.Mdata] * (MAX_QUEUED + 20)
    assert c.rig.session.ended is not None and c.rig.io(1).closed
    assert c.transport.disconnecting


def test_a_controller_that_never_reads_after_its_eof_is_cut_off() -> None:
    c = Conn()
    c.feed(wire.Start())
    c.proto.pauseProducing()
    c.feed(mread())
    c.proto.readConnectionLost()
    c.clock.advance(CLOSE_TIMEOUT)
    assert c.transport.disconnected  # aborted


def test_an_eof_before_a_byte_closes_at_once() -> None:
    c = Conn()
    c.proto.readConnectionLost()
    assert c.transport.disconnecting


def test_an_eof_while_pre_empted_closes_at_once() -> None:
    """A suspended session sends nothing until it is resumed: nothing to wait for."""
    c = Conn()
    c.feed(wire.Start(), udp_open(1))
    c.proto.suspend()
    c.proto.readConnectionLost()
    assert c.transport.disconnecting
