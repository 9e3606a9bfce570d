"""The session's parts on their own: the phase table, the receive path and the send path
(packetlab.endpoint.session, recvpath, sendpath) over fakes."""

from __future__ import annotations

from ep_fakes import LO4, FakeClock, FakeIO, FakeTimer, Rig
from twisted.internet.testing import MemoryReactor

from packetlab import wire
from packetlab.endpoint.budget import RECV_BUF_OVERHEAD, SEND_BUF_OVERHEAD, Budget
from packetlab.endpoint.checks import OpenGate
from packetlab.endpoint.recvpath import ReceivePath
from packetlab.endpoint.sender import PreciseScheduler
from packetlab.endpoint.sendpath import SendPath
from packetlab.endpoint.session import _REQUESTS, _TRANSITIONS, Phase
from packetlab.endpoint.sockets import PendingSend, Skt
from packetlab.wire.constants import NotifMask, NsendErr, SocketState, Status


class _Parts:
    """A receive path and a send path over a real scheduler on a fake clock; frames out
    are decoded into `out`."""

    def __init__(self, bufmax: int = 1 << 20) -> None:
        self.clock = FakeClock()
        self.scheduler = PreciseScheduler(MemoryReactor(), clock=self.clock, timer=FakeTimer())
        self.scheduler.start()
        self.receive = ReceivePath(Budget(bufmax), OpenGate())
        self.send = SendPath(self.scheduler, self.clock, self.receive)
        self.frames: list[bytes] = []
        self.receive.outbox.attach(self.frames.append)

    def out(self) -> list[wire.Message]:
        got = [wire.decode_frame(f) for f in self.frames]
        self.frames.clear()
        return got

    def udp(self, sktid: int = 1, rbufsz: int = 1 << 20) -> Skt:
        skt = Skt(sktid, 4, 17, rbufsz)
        skt.state = SocketState.OPEN
        return skt


# -- the phase table ------------------------------------------------------------------------


def test_every_phase_is_declared_and_ended_answers_nothing() -> None:
    assert set(_REQUESTS) == set(Phase)
    assert _REQUESTS[Phase.ENDED] == {}
    assert {to for to in _TRANSITIONS.values()} == {Phase.IDLE, Phase.ENDED}
    # Nothing leaves ENDED, nothing goes back to SETUP.
    assert not [k for k in _TRANSITIONS if k[0] is Phase.ENDED]


def test_session_follows_the_table() -> None:
    rig = Rig()
    assert rig.session.phase is Phase.SETUP
    rig.started()
    assert rig.session.phase is Phase.IDLE
    rig.send(wire.Yield(rhint=0))
    assert rig.session.phase is Phase.ENDED
    assert rig.send(wire.Mread(addr=0x10000000, len=4)) == []


# -- the receive path -----------------------------------------------------------------------


def test_datagram_over_rbufsz_is_truncated_or_dropped_and_each_episode_has_one_ndrop() -> None:
    parts = _Parts()
    extra = RECV_BUF_OVERHEAD + 4 + 2
    skt = parts.udp(rbufsz=extra + 10)
    parts.receive.outbox.pause()  # nothing leaves: the budget stays charged
    parts.receive.udp_received(skt, b"x" * 25, 100, LO4, 53)  # truncated to 10 bytes
    assert skt.rbufused == extra + 10 and skt.drop_bytes == 15
    parts.receive.udp_received(skt, b"y" * 5, 200, LO4, 53)  # no room at all
    parts.receive.udp_received(skt, b"y" * 6, 300, LO4, 53)
    assert skt.drop_pkts == 3 and skt.drop_bytes == 26
    parts.receive.outbox.resume()
    drop, data, drop2 = parts.out()
    assert isinstance(drop, wire.Ndrop) and (drop.unitcnt, drop.bytecnt) == (1, 15)
    assert isinstance(data, wire.Ndata) and data.data == b"x" * 10
    # The ndata left, so the socket has room again: the second episode ends with it (it
    # waited for a datagram that might never come).
    assert isinstance(drop2, wire.Ndrop) and (drop2.tfirst, drop2.tlast) == (200, 300)
    assert (drop2.unitcnt, drop2.bytecnt) == (2, 11)
    assert skt.rbufused == 0 and parts.receive.budget.used == 0
    parts.receive.udp_received(skt, b"z", 400, LO4, 53)  # accepted: no episode to end
    (data,) = parts.out()
    assert isinstance(data, wire.Ndata) and data.data == b"z"


def test_drops_of_a_flood_that_stopped_are_reported_once_there_is_room() -> None:
    """BufMax used up by ndata the controller does not take, then datagrams dropped: the
    ndrop used to wait for a datagram accepted after them, so when the flood had stopped
    the drops showed only in DROPSTAT. Room comes back as the ndata leave."""
    extra = RECV_BUF_OVERHEAD + 4 + 2
    parts = _Parts(bufmax=2 * (extra + 100))
    a, b = parts.udp(1), parts.udp(2)
    parts.receive.outbox.pause()
    parts.receive.udp_received(a, b"a" * 100, 1, LO4, 53)
    parts.receive.udp_received(a, b"a" * 100, 2, LO4, 53)  # BufMax used up
    for t in range(3, 13):
        parts.receive.udp_received(b if t % 2 else a, b"b" * 50, t, LO4, 53)
    assert (a.drop_pkts, b.drop_pkts) == (5, 5)
    parts.receive.set_notifmask(b, int(NotifMask.NDROP))  # b's ndrop is held back
    parts.receive.outbox.resume()
    got = parts.out()
    assert [m.NAME for m in got] == ["ndata", "ndata", "ndrop"]  # in the order they came
    drop = got[2]
    assert isinstance(drop, wire.Ndrop) and drop.sktid == 1
    assert (drop.tfirst, drop.tlast, drop.unitcnt, drop.bytecnt) == (4, 12, 5, 250)
    assert b.episode is not None  # masked: one ndrop when the mask clears
    parts.receive.set_notifmask(b, 0)
    (drop,) = parts.out()
    assert isinstance(drop, wire.Ndrop) and drop.sktid == 2
    assert (drop.tfirst, drop.tlast, drop.unitcnt, drop.bytecnt) == (3, 11, 5, 250)
    assert not parts.receive.dropping and parts.receive.budget.used == 0


def test_masked_ndata_is_held_with_its_charge_until_the_mask_clears() -> None:
    parts = _Parts()
    skt = parts.udp()
    parts.receive.set_notifmask(skt, int(NotifMask.NDATA))
    parts.receive.udp_received(skt, b"abc", 1, LO4, 53)
    assert parts.out() == [] and skt.rbufused > 0
    parts.receive.set_notifmask(skt, 0)
    assert [m.NAME for m in parts.out()] == ["ndata"]
    assert skt.rbufused == 0


def test_blocked_tcp_reader_resumes_when_a_useful_amount_is_free() -> None:
    parts = _Parts(bufmax=8 * 1024)
    skt = Skt(2, 4, 6, 8 * 1024)
    io = FakeIO(skt, parts.receive)  # type: ignore[arg-type]
    skt.io = io
    parts.receive.outbox.pause()
    parts.receive.tcp_received(skt, b"x" * 7000, 1)
    parts.receive.tcp_blocked(skt)
    parts.receive.unspend(0)
    assert io.resumed == 0
    parts.receive.outbox.resume()  # the ndata leaves: its charge comes back
    assert io.resumed == 1 and not skt.read_blocked and not parts.receive.blocked


# -- the send path --------------------------------------------------------------------------


def _pending(parts: _Parts, skt: Skt, tag: int, data: bytes = b"x") -> PendingSend:
    cost = len(data) + SEND_BUF_OVERHEAD
    parts.receive.budget.used += cost
    return PendingSend(skt, tag, data, ("127.0.0.1", 53), cost, skt.io)


def test_every_send_ends_in_send_done_with_the_budget_back() -> None:
    parts = _Parts()
    skt = parts.udp()
    io = FakeIO(skt, parts.send)  # type: ignore[arg-type]
    skt.io = io
    now = parts.clock.now
    parts.send.submit(_pending(parts, skt, tag=5), 0)  # taken at once
    io.complete = False
    parts.send.submit(_pending(parts, skt, tag=6), 0)  # the socket reports it later
    io.finish(now + 1000)
    io.error = 101  # ENETUNREACH
    parts.send.submit(_pending(parts, skt, tag=7), 0)
    t5, t6, t7 = parts.out()
    assert isinstance(t5, wire.Ntag) and t5.tag == 5 and t5.errid == 0 and t5.time > now
    assert isinstance(t6, wire.Ntag) and (t6.tag, t6.time) == (6, now + 1000)
    assert isinstance(t7, wire.Ntag) and t7.errid == int(Status.EPKTNOTSENT)
    assert skt.nsenderr == int(NsendErr.UNREACH) and skt.nsenderrtag == 7
    assert parts.receive.budget.used == 0 and not skt.queued


def test_failed_socket_drops_what_it_held_and_what_waits() -> None:
    parts = _Parts()
    skt = Skt(2, 4, 6, 1 << 20)
    io = FakeIO(skt, parts.send)  # type: ignore[arg-type]
    skt.io = io
    io.complete = False
    parts.send.submit(_pending(parts, skt, tag=1), 0)  # handed over, not yet written
    parts.send.submit(_pending(parts, skt, tag=2), parts.clock.now + 10**9)  # still waiting
    parts.send.fail(skt, SocketState.RESET, io.close())
    tags = parts.out()
    assert [(m.tag, m.errid) for m in tags if isinstance(m, wire.Ntag)] == [
        (1, int(Status.EPKTNOTSENT)),
        (2, int(Status.EPKTNOTSENT)),
    ]
    assert skt.nsenderr == int(NsendErr.RESET)
    assert parts.receive.budget.used == 0 and parts.scheduler.pending() == 0
