"""Subscribers that never read, many of them (session 20): each holds at most one queued
notification per live publication, but links are free, so 1,000 of them offered 10,000
publications held 10 million entries (~1 GB at ~100 bytes each). Now all the links of a
port hold at most `MAX_QUEUED` (500,000; scaled down here): past it the ones holding the most are
closed, down to nine tenths, and a subscriber that reads is untouched."""

from __future__ import annotations

from test_broker_protocol import ZERO, World, frames, sub_frames
from testkit.logs import captured_events

from packetlab.broker.session import Role
from packetlab.wire import Result, Xnotify, Xpub, encode


def test_links_that_never_read_hold_a_bounded_number_of_notifications() -> None:
    w = World()
    sf = w.factories[Role.SUBSCRIBE]
    sf.max_queued = 100
    w.registry.max_per_key = w.registry.max_per_address = 1000
    silent = []
    for i in range(20):
        sp, st = w.connect(Role.SUBSCRIBE, f"10.1.0.{i + 1}")
        sp.session.agent_key = bytes([i]) * 32  # type: ignore[union-attr]  # one endpoint each
        sp.dataReceived(sub_frames())
        assert frames(st) == [Result(0)]
        sp.pauseProducing()  # its transport is full: it does not read
        silent.append((sp, st))
    reader, rt = w.connect(Role.SUBSCRIBE, "10.1.1.1")
    reader.session.agent_key = b"R" * 32  # type: ignore[union-attr]
    reader.dataReceived(sub_frames())
    assert frames(rt) == [Result(0)]
    pubs = [w.connect(Role.PUBLISH, f"10.2.0.{j + 1}")[0] for j in range(4)]
    with captured_events() as events:
        for n in range(40):  # 20 silent links x 40 publications: 800 entries without a cap
            pubs[n % 4].dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=h%d;" % n)))
            w.clock.advance(0)
            queued = sum(len(sp._queue or ()) for sp, _ in silent)
            assert queued < sf.max_queued
    closed = [sp for sp, st in silent if st.disconnecting or sp._closing]
    assert closed and len(closed) < len(silent)
    assert all(sp._queue is None for sp in closed)
    # the reader got every publication, and was never closed
    got = frames(rt)
    assert len(got) == 40 and all(isinstance(m, Xnotify) for m in got)
    assert not reader._closing
    said = events.lines(fmt="do not read")
    assert said and "the links of this port held 100, at most 100" in said[0], said
    assert len(said) < len(closed) + 1  # one line per trim, not per link
