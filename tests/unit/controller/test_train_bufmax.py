"""send_train keeps the bytes it has waiting at the endpoint within its buffer budget
(BUFMAX, §3.5): past it the endpoint refuses nsends with ESYSNOBUFS (session 32)."""

from __future__ import annotations

import struct
from typing import Any

from ctl_fakes import FakeEndpoint, Rig

from packetlab.controller import send_train
from packetlab.wire import Ntag, Status, vmem

OVERHEAD = 116  # what this project's endpoint charges per queued send beyond its payload


def budgeted(rig: Rig, bufmax: int) -> dict[str, int]:
    """Make the fake endpoint charge each queued send, refuse past `bufmax` (ESYSNOBUFS)
    and send each at its time, as a real one does; returns its counters."""
    ep: FakeEndpoint = rig.endpoint
    off = vmem.BUFMAX.addr - vmem.SYS_BASE
    ep.memory = bytearray(off + 8)
    struct.pack_into(">I", ep.memory, off, bufmax)
    seen = {"used": 0, "most": 0, "refused": 0}

    def nsend(msg: Any) -> None:
        cost = len(msg.data) + OVERHEAD
        if seen["used"] + cost > bufmax:
            seen["refused"] += 1
            ep.result(Status.ESYSNOBUFS)
            return
        seen["used"] += cost
        seen["most"] = max(seen["most"], seen["used"])
        ep.result()
        when = max(msg.time, ep.now())

        def send() -> None:
            seen["used"] -= cost
            ep.send(Ntag(msg.sktid, msg.tag, when))

        ep.clock.callLater((when - ep.now()) / 1e9, send)

    ep.nsend = nsend  # type: ignore[method-assign]
    return seen


def test_a_train_larger_than_the_endpoints_buffer_is_paced_not_refused() -> None:
    # 10,000 x 1,400 B at 100 µs against twistd pktendpoint (BufMax 8 MiB): 4,467 nsends
    # refused ESYSNOBUFS, the sink had 5,533. Here 1,000 x 1,400 B against 1 MiB.
    rig = Rig()
    seen = budgeted(rig, 1 << 20)
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, 1000, 100_000, size=1400))
    assert seen["refused"] == 0
    assert report.sent_count == 1000 and set(report.errors) == {None}
    assert report.window == (1 << 20) // 2 // (1400 + 128) == 343
    assert seen["most"] <= (1 << 20) // 2


def test_a_small_train_reads_no_bufmax() -> None:
    # 100 x 64 B: nothing to fit, no extra request (nor with an endpoint that says 0)
    rig = Rig()
    budgeted(rig, 1 << 20)
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, 100, 100_000))
    assert report.window == 32768 and report.sent_count == 100
    reads = [m for m in rig.endpoint.received if getattr(m, "NAME", "") == "mread"]
    assert all(m.addr != vmem.BUFMAX.addr for m in reads)
