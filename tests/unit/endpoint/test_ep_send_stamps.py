"""The session's timed sends: the scheduled action is the socket's send alone, and a tagged
UDP send reports the socket's kernel TX timestamp in ntag and teaches the scheduler its
lead (docs/sending.md)."""

from __future__ import annotations

from ep_fakes import T0, Rig, names, tcp_open, tcp_send, udp_open, udp_send

from packetlab import wire
from packetlab.endpoint.sockets import PendingSend

STAMP_AFTER_NS = 2_500  # the fake "packet at the device" time after the send call starts


def _stamping(rig: Rig, sktid: int) -> list[int]:
    """Give the fake socket a tx_time like UdpIO's; returns the stamps it handed out."""
    handed: list[int] = []

    def tx_time(pending: PendingSend, not_before: int) -> int | None:
        if not pending.tag:
            return None
        handed.append(not_before + STAMP_AFTER_NS)
        return handed[-1]

    rig.io(sktid).tx_time = tx_time  # type: ignore[method-assign]
    return handed


def test_tagged_udp_ntag_carries_the_tx_stamp() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    handed = _stamping(rig, 1)
    got = rig.send(udp_send(1, tag=7))
    assert names(got) == ["result", "ntag"]
    assert got[1] == wire.Ntag(sktid=1, tag=7, time=handed[0])


def test_tx_stamps_teach_the_scheduler_its_lead() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    _stamping(rig, 1)
    assert rig.scheduler.lead_ns == 0
    for i in range(16):
        rig.send(udp_send(1, tag=i + 1))
    assert rig.scheduler.lead_ns == STAMP_AFTER_NS


def test_a_socket_without_tx_stamps_reports_the_send_time() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))  # FakeIO has no tx_time
    got = rig.send(udp_send(1, tag=4))
    assert isinstance(got[1], wire.Ntag) and T0 < got[1].time < rig.clock.now
    assert rig.scheduler.lead_ns == 0


def test_tcp_sends_never_ask_for_a_tx_stamp() -> None:
    rig = Rig().started()
    rig.send(tcp_open(2))
    asked: list[PendingSend] = []
    rig.io(2).tx_time = lambda p, nb: asked.append(p)  # type: ignore[method-assign,assignment]
    got = rig.send(tcp_send(2, tag=9))
    assert names(got) == ["result", "ntag"] and asked == []


def test_the_scheduled_action_is_the_socket_send() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    at = T0 + 5_000_000
    rig.send(udp_send(1, tag=3, time=at))
    skt = rig.skt(1)
    (pending,) = skt.queued
    handle = pending.handle
    assert handle is not None
    # The pending send is its own action: calling it is io.send(pending) and nothing more.
    assert handle.action is pending and pending.io is rig.io(1)
    rig.run_timer_to(at)
    assert skt.queued == set()  # bookkeeping ran in on_done, after the send
    (ntag,) = rig.new()
    assert isinstance(ntag, wire.Ntag) and ntag.tag == 3
