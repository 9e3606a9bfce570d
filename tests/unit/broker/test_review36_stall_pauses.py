"""The frame deadline counts only time the broker reads the link (session 36, review36).

spec36's deadline (a frame begun after the xsub/xpub whole within IdleTimeout) ran on
while the broker itself did not read: its writes to a slow subscriber waiting (the
transport full: `pauseProducing`) or an error answer held by the throttle. The rest of
the frame then waits in the kernel (and, over a slow link, behind a full receive
window); reading resumed with less than a round trip of the deadline left closed a
healthy link as `stalled_frame`. Now a pause cancels the deadline, and the frame gets
its whole IdleTimeout again once reading resumes."""

from __future__ import annotations

from test_broker_protocol import XD, ZERO, World, frames, sub_frames

from packetlab.broker.protocol import IDLE_TIMEOUT
from packetlab.broker.session import Role
from packetlab.wire import Result, Xcert, Xpub, encode

XCERT = encode(Xcert(b"\x30" + bytes(300)))  # a whole frame is 305 bytes


def test_a_subscriber_not_read_while_its_writes_wait_keeps_its_frames_time() -> None:
    w = World()
    p, t = w.connect(Role.SUBSCRIBE)
    p.dataReceived(sub_frames())
    assert frames(t) == [Result(0)]
    p.dataReceived(XCERT[:10])  # a frame begun
    p.pauseProducing()  # its transport is full: we stop reading it
    w.clock.advance(IDLE_TIMEOUT - 0.5)
    p.resumeProducing()  # it read our writes: we read again
    w.clock.advance(1)  # the old deadline (from the frame's start) passes
    assert not t.disconnecting  # failed before: closed as stalled_frame
    p.dataReceived(XCERT[10:])  # the rest, a round trip after the resume
    assert not t.disconnecting
    assert w.factories[Role.SUBSCRIBE].counters.closed["stalled_frame"] == 0


def test_a_frame_still_cut_a_whole_idle_timeout_after_the_resume_is_stalled() -> None:
    w = World()
    p, t = w.connect(Role.SUBSCRIBE)
    p.dataReceived(sub_frames())
    frames(t)
    p.dataReceived(XCERT[:10])
    p.pauseProducing()
    w.clock.advance(IDLE_TIMEOUT * 3)  # not read meanwhile: not its stall
    assert not t.disconnecting
    p.resumeProducing()
    w.clock.advance(0)  # the turn that reads again
    w.clock.advance(IDLE_TIMEOUT - 0.5)
    assert not t.disconnecting
    w.clock.advance(1)
    assert t.disconnecting
    assert w.factories[Role.SUBSCRIBE].counters.closed["stalled_frame"] == 1


def test_an_error_answer_held_until_just_before_the_deadline_leaves_the_frame_its_time() -> None:
    w = World()
    w.throttle.base = w.throttle.cap = IDLE_TIMEOUT - 0.5  # held nearly the whole deadline
    p, t = w.connect(Role.PUBLISH)
    p.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    frames(t)
    bad = encode(Xpub([b"public"], ZERO, b"no_controller_addr=1;"))
    p.dataReceived(bad + XCERT[:10])  # refused (held), a frame begun behind it
    w.clock.advance(IDLE_TIMEOUT - 0.4)  # the answer released: reading again
    w.clock.advance(1)
    assert not t.disconnecting  # failed before: 0.1 s of reading left to the frame
    p.dataReceived(XCERT[10:])
    assert not t.disconnecting
