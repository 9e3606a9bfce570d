"""A frame begun after the link's xsub/xpub must be whole within IdleTimeout (session 36,
spec36): a slow loris that subscribed (public channels need no proof) or published and
then sent part of a frame held its link, and the bytes, for ever, with no line. The
reference endpoint sends nothing after its xsub and pktxpmgr the pieces of a frame within
~43 ms (BROKER-PROXY-OBSERVED.md §1.2, §3.2), so none of theirs is ever cut for long."""

from __future__ import annotations

from test_broker_protocol import XD, ZERO, World, frames, sub_frames
from testkit.logs import events_while

from packetlab.broker.protocol import IDLE_TIMEOUT
from packetlab.broker.session import Role
from packetlab.wire import Result, Xcert, Xpub, encode

XCERT = encode(Xcert(b"\x30" + bytes(300)))  # a whole frame is 305 bytes


def _lines(run: object) -> list[str]:
    return events_while(run).lines(fmt="not finished")  # type: ignore[arg-type]


def test_a_subscriber_stalled_in_the_middle_of_a_frame_is_closed_with_one_line() -> None:
    w = World()
    p, t = w.connect(Role.SUBSCRIBE)
    p.dataReceived(sub_frames())
    assert frames(t) == [Result(0)]
    p.dataReceived(XCERT[:10])
    w.clock.advance(IDLE_TIMEOUT - 1)
    p.dataReceived(XCERT[10:20])  # trickling does not move the deadline
    said = _lines(lambda: w.clock.advance(1.1))
    assert t.disconnecting
    assert len(said) == 1, said
    assert "subscribe link peer=10.0.0.1" in said[0] and "(xcert, 20 of 305 bytes)" in said[0]
    assert f"within {IDLE_TIMEOUT:g} s" in said[0]
    assert w.factories[Role.SUBSCRIBE].counters.closed["stalled_frame"] == 1


def test_a_publisher_stalled_in_its_header_is_closed_and_its_publication_ends() -> None:
    w = World()
    p, t = w.connect(Role.PUBLISH)
    p.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    assert frames(t) == [Result(0)] and len(w.registry.publications) == 1
    p.dataReceived(b"\x31\x00")
    said = _lines(lambda: w.clock.advance(IDLE_TIMEOUT + 0.1))
    assert t.disconnecting and "(xpub, 2 of its 4 header bytes)" in said[0], said
    p.connectionLost()
    assert not w.registry.publications


def test_frames_that_come_whole_keep_the_link_however_long_it_lives() -> None:
    """Each frame finished in time, even split and late after the one before: the link
    stays; nothing cut, no timer is left to fire."""
    w = World()
    p, t = w.connect(Role.PUBLISH)
    p.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    assert frames(t) == [Result(0)]
    for i in range(5):
        w.clock.advance(IDLE_TIMEOUT * 3)  # idling between frames is fine
        data = encode(Xpub([b"public"], ZERO, f"controller_addr=h;sni_key=k{i};".encode()))
        p.dataReceived(data[:7])
        w.clock.advance(IDLE_TIMEOUT - 1)
        p.dataReceived(data[7:])
        assert frames(t) == [Result(0)], i
    w.clock.advance(IDLE_TIMEOUT * 3)
    assert not t.disconnecting
    assert w.factories[Role.PUBLISH].counters.closed["stalled_frame"] == 0


def test_a_new_frame_cut_just_as_the_last_deadline_ends_gets_its_own_time() -> None:
    """The deadline belongs to a frame: one finished and the next begun (cut) must not
    inherit what is left of the first one's time."""
    w = World()
    p, t = w.connect(Role.PUBLISH)
    p.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    a = encode(Xpub([b"public"], ZERO, b"controller_addr=h;sni_key=a;"))
    b = encode(Xpub([b"public"], ZERO, b"controller_addr=h;sni_key=b;"))
    p.dataReceived(a[:5])
    w.clock.advance(IDLE_TIMEOUT - 0.5)
    p.dataReceived(a[5:] + b[:5])  # a whole, b begun
    w.clock.advance(1)  # a's deadline passes: b has had 0.5 s
    assert not t.disconnecting
    w.clock.advance(IDLE_TIMEOUT)
    assert t.disconnecting


def test_a_link_not_read_while_its_error_answer_waits_is_not_called_stalled() -> None:
    """An error answer held by the throttle pauses reading: a frame we have only part of
    then is not the peer's stall (the rest waits in the kernel)."""
    w = World()
    w.throttle.base = w.throttle.cap = IDLE_TIMEOUT * 2  # a long hold
    p, t = w.connect(Role.PUBLISH)
    p.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    frames(t)
    bad = encode(Xpub([b"public"], ZERO, b"no_controller_addr=1;"))
    p.dataReceived(bad + XCERT[:10])  # refused (held), and a frame begun behind it
    w.clock.advance(IDLE_TIMEOUT + 1)
    assert not t.disconnecting
