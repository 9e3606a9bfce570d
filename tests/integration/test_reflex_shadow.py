"""The rehearsal's shadow socket (packetlab.endpoint.reflexwarm._ShadowUdp) on real
loopback sockets: the replay goes in through the real socket class's doRead and out
through its stamped send, every send lands in the shadow's own sink whatever address the
reflex asked for, and nothing reaches the real session."""

from __future__ import annotations

import socket

from ep_fakes import LO4, T0
from test_reflex_gate import ECHO, attach, frames, make_rig, opened, send, w

from packetlab import wire
from packetlab.endpoint.netio import UdpIO
from packetlab.endpoint.reflexwarm import _ShadowUdp
from packetlab.reflex.template import reflex_wat

FAR4 = bytes([192, 0, 2, 1])

# Echo with tag 1 (a stamped send, as the responder's) to 192.0.2.1:9, whoever sent it.
ELSEWHERE = reflex_wat(
    """
    (i32.store (i32.const 64) (i32.const 0x010200c0))
    (drop (call $reflex_send (local.get $sktid) (local.get $data) (local.get $len)
       (i32.const 64) (i32.const 4) (i32.const 9) (i64.const 0) (i32.const 1)))
    (i32.const 1)"""
)


def test_the_shadow_reads_and_sends_through_the_real_socket_class_to_its_sink() -> None:
    r, g = make_rig()
    g.service.warm_every = 1e-4
    opened(r)
    assert send(r, attach(1, w(ELSEWHERE), b"\x01")) == [wire.Result(0)]
    (reh,) = g.service.rehearsals
    assert reh.skt is not None
    io = reh.skt.io
    assert isinstance(io, _ShadowUdp) and isinstance(io, UdpIO)
    assert io.send.__func__ is not UdpIO.send  # type: ignore[attr-defined]
    r.session.udp_received(r.skt(1), b"ping", T0, FAR4, 4242)
    assert [(p.data, p.dest) for p in r.io(1).sent] == [(b"ping", ("192.0.2.1", 9))]
    frames(r)
    for _ in range(20):
        g.service.rehearse()
    shadow = reh.gate.attached[reh.skt]
    assert (reh.runs, shadow.runs, shadow.sent, shadow.denied) == (20, 20, 20, 0)
    assert shadow.passed == 20  # counted; not delivered (nothing after the send matters)
    # The reply to 192.0.2.1:9 went to the sink, from the shadow's own loopback address.
    data, _anc, _flags, src = io.sink.recvmsg(2048, 256)
    assert data == b"ping" and src == io.addr and src[0] == "127.0.0.1"
    # The real session saw nothing of it: no send, no frame.
    assert [p.data for p in r.io(1).sent] == [b"ping"]
    assert frames(r) == []
    reh.close()
    assert io.fileno() < 0 and io.sink.fileno() < 0


def test_the_shadows_tx_stamps_do_not_pile_up() -> None:
    r, g = make_rig()
    g.service.warm_every = 1e-4
    opened(r)
    send(r, attach(1, w(ELSEWHERE), b"\x00"))
    (reh,) = g.service.rehearsals
    r.session.udp_received(r.skt(1), b"ping", T0, LO4, 4242)
    assert reh.skt is not None
    io = reh.skt.io
    assert isinstance(io, _ShadowUdp)
    for _ in range(100):
        g.service.rehearse()
    waiting = 0
    while True:
        try:
            io._sock.recvmsg(0, 512, socket.MSG_ERRQUEUE)
        except BlockingIOError:
            break
        waiting += 1
    assert waiting <= 1  # each read away after its send
    reh.close()


def test_an_echo_without_stamps_rehearses_too() -> None:
    r, g = make_rig()
    g.service.warm_every = 1e-4
    opened(r)
    send(r, attach(1, w(ECHO), b"\x01"))
    (reh,) = g.service.rehearsals
    r.session.udp_received(r.skt(1), b"ping", T0, LO4, 4242)
    g.service.rehearse()
    g.service.rehearse()
    shadow = reh.gate.attached[reh.skt]
    assert (shadow.runs, shadow.sent) == (2, 2)
    reh.close()
