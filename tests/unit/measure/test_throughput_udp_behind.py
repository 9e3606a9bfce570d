"""A paced UDP upload above what the endpoint's path takes (`-u -b 30M -l 32768` through
a 20 Mbit/s bottleneck): the datagrams wait at the endpoint for buffer space, and the
time in their iperf3 header is the server's jitter's input (session 31, ep31)."""

from __future__ import annotations

import pytest
from test_throughput_timed import UdpFakeEndpoint, rig_with_server, run

from packetlab.measure import iperf3
from packetlab.measure.throughput_timed import TimedSpec
from packetlab.wire import Nsend


def test_datagrams_that_wait_carry_about_the_time_they_leave() -> None:
    """The header carried the time each datagram was due: one more datagram's worth of
    wait each (13.1 against 8.7 ms apart), so the server's jitter was the rate mismatch,
    4.4 ms here (4.68 ms through a real tbf, where iperf3, which writes the time of its
    write(), said 0.52). Behind its schedule, a stream's header times now follow the pace
    its ntags show: the jitter is the path's, 0 here, as iperf3's."""
    block = 32768
    rig, _ = rig_with_server()
    assert isinstance(rig.endpoint, UdpFakeEndpoint)
    rig.endpoint.udp_rate = 20e6 / 8
    spec = TimedSpec(
        direction="upload", seconds=1.5, udp=True, bitrate=30e6, length=block, interval=0
    )
    d, _ = run(rig, spec)
    assert "error" not in d, d
    rx = d["streams"][0]["receiver"]
    assert rx["lost"] == 0 and rx["packets"] > 100, rx
    assert rx["jitter_ms"] < 0.5, rx  # before: 4.37
    # the header is never before the time the datagram was due (ahead of the schedule,
    # as before: the scheduled time)
    sends = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 1][1:]
    for m in sends:
        _, sent = iperf3.parse_udp_header(m.data)
        assert sent >= m.time / 1e9 - 1e-6
    assert iperf3.parse_udp_header(sends[0].data)[1] == pytest.approx(sends[0].time / 1e9)


def test_a_stream_on_schedule_carries_its_scheduled_times() -> None:
    """The path keeps up (-b 15M through 20M): each header is the send's time, as before."""
    rig, _ = rig_with_server()
    assert isinstance(rig.endpoint, UdpFakeEndpoint)
    rig.endpoint.udp_rate = 20e6 / 8
    spec = TimedSpec(
        direction="upload", seconds=0.5, udp=True, bitrate=15e6, length=32768, interval=0
    )
    d, _ = run(rig, spec)
    assert "error" not in d, d
    sends = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 1][1:]
    assert len(sends) > 20
    for m in sends:
        assert iperf3.parse_udp_header(m.data)[1] == pytest.approx(m.time / 1e9, abs=1e-6)
    assert d["streams"][0]["receiver"]["jitter_ms"] == pytest.approx(0, abs=1e-3)


def test_unpaced_datagrams_carry_a_send_time() -> None:
    """`-u -b 0`: every header said 0 s (the time of a send queued "now"), so the server's
    jitter was the datagrams' arrival gaps (13.4 ms through a 20 Mbit/s tbf with `-l
    32768`, native 1.0). Now the endpoint's clock when it was queued, then, once ntags
    came, the one before plus the block at their pace: the path's jitter once the first
    window (queued before any ntag) has gone."""
    rig, _ = rig_with_server()
    assert isinstance(rig.endpoint, UdpFakeEndpoint)
    rig.endpoint.udp_rate = 20e6 / 8
    spec = TimedSpec(direction="upload", seconds=1, udp=True, bitrate=0, length=1448, interval=0)
    d, _ = run(rig, spec)
    assert "error" not in d, d
    sends = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 1][1:]
    first = iperf3.parse_udp_header(sends[0].data)[1]
    assert first > 1e9, first  # the endpoint's clock, not 0
    rx = d["streams"][0]["receiver"]
    assert rx["lost"] == 0 and rx["packets"] > 1000, rx
    assert rx["jitter_ms"] < 0.1, rx  # before: 0.58, the arrival gaps
