"""Everything a queued send holds goes with its socket and its session (issue 15, defects
1 and 2): a send queued for the far future must not pin its payload or its session in the
scheduler once the socket is closed or the session is over, and queued bytes count
against BufMax until they leave or are dropped."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from ep_fakes import T0, Rig, errids, tcp_open, tcp_send, udp_open, udp_send

from packetlab import wire
from packetlab.endpoint.budget import SEND_BUF_OVERHEAD
from packetlab.endpoint.session import Session
from packetlab.wire.constants import Status

FAR = (1 << 64) - 1  # the last representable time: the send never comes due


class Payload(bytearray):
    """A payload we can hold a weak reference to (bytes cannot have one)."""


def _gone(ref: weakref.ref[Any]) -> bool:
    gc.collect()
    return ref() is None


def test_far_future_send_does_not_outlive_its_session() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    data = Payload(b"x" * 4096)
    assert errids(rig.send(udp_send(1, tag=1, data=data, time=FAR))) == [0]  # type: ignore[arg-type]
    payload, session = weakref.ref(data), weakref.ref(rig.session)
    del data
    rig.session.close()  # the controller went away (EOF)
    rig.session = None  # type: ignore[assignment]
    rig.net.ios.clear()  # the fake network's record of its sockets (not the endpoint's)
    # The scheduler lives on (one per endpoint); nothing of the session may stay in it.
    assert rig.scheduler.running
    assert _gone(payload), "the payload of a dropped send is still referenced"
    assert _gone(session), "the scheduler still pins the ended session"
    assert rig.scheduler.pending() == 0


def test_far_future_send_does_not_outlive_its_socket() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    data = Payload(b"x" * 4096)
    assert errids(rig.send(udp_send(1, tag=1, data=data, time=FAR))) == [0]  # type: ignore[arg-type]
    payload = weakref.ref(data)
    del data
    assert rig.session.budget.used == 4096 + SEND_BUF_OVERHEAD
    assert rig.send(wire.Nclose(sktid=1)) == [wire.Result(0)]
    assert rig.session.budget.used == 0
    assert _gone(payload), "nclose gave the budget back but kept the bytes"


def test_many_dropped_far_sends_leave_nothing_in_the_scheduler() -> None:
    """The scheduler's heap may not grow with sends that were cancelled."""
    rig = Rig().started()
    for _ in range(3000):
        rig.send(udp_open(1), udp_send(1, tag=0, time=FAR), wire.Nclose(sktid=1))
    assert rig.scheduler.pending() == 0
    assert len(rig.scheduler._heap) <= 1024  # bounded, whatever the number of cycles


def test_tcp_bytes_handed_to_the_socket_count_until_written_or_dropped() -> None:
    rig = Rig(buf_max=3 * (1000 + SEND_BUF_OVERHEAD)).started()
    rig.send(tcp_open(2))
    io = rig.io(2)
    io.complete = False  # the kernel takes nothing: every send waits in the socket
    assert errids(rig.send(tcp_send(2, tag=1, data=b"a" * 1000))) == [0]
    assert errids(rig.send(tcp_send(2, tag=2, data=b"b" * 1000))) == [0]
    assert errids(rig.send(tcp_send(2, tag=3, data=b"c" * 1000))) == [0]
    assert errids(rig.send(tcp_send(2, tag=4, data=b"d"))) == [Status.ESYSNOBUFS]
    io.finish(T0)  # all written: the budget is free again
    assert rig.session.budget.used == 0
    assert errids(rig.send(tcp_send(2, tag=5, data=b"e" * 1000, time=FAR))) == [0]
    assert rig.send(wire.Nclose(sktid=2)) == [wire.Result(0)]
    assert rig.session.budget.used == 0


def test_ended_session_frees_sends_of_every_socket() -> None:
    rig = Rig().started()
    refs = []
    for sktid in range(1, 6):
        rig.send(udp_open(sktid))
        data = Payload(b"y" * 1000)
        refs.append(weakref.ref(data))
        rig.send(udp_send(sktid, tag=sktid, data=data, time=FAR))  # type: ignore[arg-type]
        del data
    session: Session = rig.session
    assert rig.send(wire.Yield(rhint=0)) == [wire.Result(0)]
    assert session.budget.used == 0
    assert all(_gone(r) for r in refs)


def test_close_hooks_run_once_after_everything_is_freed() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    seen: list[int] = []
    rig.session.close_hooks.append(lambda: seen.append(rig.session.open_sockets))
    rig.session.close()
    assert seen == [0]  # sockets already freed when the hook runs
    rig.session.close()
    assert seen == [0]  # hooks are consumed: a second close calls nothing
