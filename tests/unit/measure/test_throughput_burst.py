"""iperf3's -b RATE/BURST and --pacing-timer (session 26, iperf26): the parameters as
native 3.12 sends them (`iperf3 -d`), a paced upload's sends in bursts at their schedule,
and the command line's words. Until session 26 `-b 10M/10` was argparse's `expected a
rate like 10M` and `--pacing-timer` an unrecognized argument."""

from __future__ import annotations

import argparse
from itertools import pairwise
from typing import Any

import pytest
from test_throughput_timed import rig_with_server, run

from packetlab.measure import iperf3
from packetlab.measure.throughput_timed import TimedSpec
from packetlab.wire import Nsend


def test_burst_and_pacing_timer_parameters_in_natives_place() -> None:
    """`iperf3 -c H -u -b 10M/10 -t 1 -l 1400 -d` sends "burst" right after
    "pacing_timer"; `--pacing-timer 0` leaves "pacing_timer" out, as 3.12 does."""
    base = dict(udp=True, seconds=1, nbytes=None, streams=1, reverse=False, length=1400,
                bitrate=10e6)  # fmt: skip
    keys = list(iperf3.timed_parameters(**base, burst=10))  # type: ignore[arg-type]
    assert keys == ["udp", "omit", "time", "num", "blockcount", "parallel", "len",
                    "bandwidth", "pacing_timer", "burst", "client_version"]  # fmt: skip
    p = iperf3.timed_parameters(**base, pacing_timer=2000)  # type: ignore[arg-type]
    assert p["pacing_timer"] == 2000 and "burst" not in p
    assert "pacing_timer" not in iperf3.timed_parameters(**base, pacing_timer=0)  # type: ignore[arg-type]


def test_rate_and_burst_parsed_in_iperf3s_words() -> None:
    assert iperf3.parse_rate_burst("10M") == (10e6, 0)
    assert iperf3.parse_rate_burst("10M/10") == (10e6, 10)
    assert iperf3.parse_rate_burst("0/1000") == (0, 1000)
    for bad in ("10M/0", "10M/1001", "10M/x", "10M/"):  # native: all four this line
        with pytest.raises(ValueError, match=r"invalid burst count \(maximum = 1000\)"):
            iperf3.parse_rate_burst(bad)
    with pytest.raises(ValueError, match="expected a rate like 10M"):
        iperf3.parse_rate_burst("lots/10")


def test_udp_upload_sends_in_bursts_at_the_rate() -> None:
    """-u -b 8M/4 -l 1000: 4 datagrams at one time, the next 4 at 4 ms (4 x 1000 bytes at
    8 Mbit/s), each with its own number, as native's multisend sends them back to back;
    the server is told the burst."""
    rig, server = rig_with_server()
    d, _ = run(rig, TimedSpec(direction="upload", seconds=0.5, udp=True, bitrate=8e6,
                              length=1000, interval=0, burst=4))  # fmt: skip
    assert "error" not in d, d
    assert server.params["burst"] == 4 and server.params["pacing_timer"] == 1000
    data = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 1][1:]
    times = [m.time for m in data]
    assert len(data) == 500  # 125 bursts of 4 in 0.5 s: the same count as unpaced bursts
    for k in range(0, len(times), 4):
        assert set(times[k : k + 4]) == {times[0] + k // 4 * 4_000_000}
    assert [iperf3.parse_udp_header(m.data)[0] for m in data[:8]] == list(range(1, 9))
    assert d["streams"][0]["receiver"]["packets"] == 500
    assert d["mbit_s"] == pytest.approx(8, rel=0.05)


def test_tcp_burst_schedules_blocks_together() -> None:
    """-b 16M/2 -l 20000 (TCP): blocks two by two, 20 ms apart (2 x 20 kB at 16 Mb/s)."""
    rig, server = rig_with_server()
    d, _ = run(rig, TimedSpec(direction="upload", seconds=0.5, bitrate=16e6, length=20_000,
                              interval=0, burst=2))  # fmt: skip
    assert "error" not in d, d
    sends = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 1][1:]
    assert [b.time - a.time for a, b in pairwise(sends)][:6] == [0, 20_000_000] * 3
    assert server.params["burst"] == 2
    assert d["sender_mbit_s"] == pytest.approx(16, rel=0.05)


def test_download_tells_the_server_its_burst_and_pacing_timer() -> None:
    """-R -u -b 8M/5 --pacing-timer 500: the server paces its own sends with both."""
    rig, server = rig_with_server()
    d, _ = run(rig, TimedSpec(direction="download", seconds=0.2, udp=True, bitrate=8e6,
                              length=1000, interval=0, burst=5, pacing_timer=500))  # fmt: skip
    assert "error" not in d, d
    assert server.params["burst"] == 5 and server.params["pacing_timer"] == 500


def test_command_line() -> None:
    from packetlab.cli import run_throughput

    p = argparse.ArgumentParser(exit_on_error=False)
    run_throughput.configure(p)
    args = p.parse_args(["-c", "192.0.2.5", "-u", "-b", "10M/10"])
    assert (args.bitrate, args.burst) == (10e6, 10) and run_throughput.timed(args)
    args = p.parse_args(["-c", "192.0.2.5", "-b", "5M"])
    assert (args.bitrate, args.burst, args.pacing_timer) == (5e6, 0, None)
    args = p.parse_args(["-c", "192.0.2.5", "--pacing-timer", "1K"])
    assert args.pacing_timer == 1024 and run_throughput.timed(args)  # iperf3's unit_atoi
    with pytest.raises(argparse.ArgumentError, match=r"invalid burst count \(maximum = 1000\)"):
        p.parse_args(["-c", "192.0.2.5", "-b", "10M/2000"])
    with pytest.raises(argparse.ArgumentError, match=r"--pacing-timer must be 0\.\."):
        p.parse_args(["-c", "192.0.2.5", "--pacing-timer", "-5"])
    with pytest.raises(ValueError, match="invalid burst count"):
        TimedSpec(burst=1001).check()


def test_small_unpaced_sends_queue_at_most_max_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    """-l 1000 unpaced over a slow link (TCP here; UDP -b 0 takes the same window): at
    most MAX_QUEUED (1024) sends wait at the endpoint beyond their ntags (were 8 MiB
    of them, 8,389: the in-process endpoint sent TEST_END, scheduled for T, 0.1-0.23 s
    late behind them, and the server counted more than we had sent by T)."""
    from packetlab.measure import throughput_send

    most = 0
    queue = throughput_send.Sending._queue

    def watched(self: Any, f: Any, *a: Any) -> None:
        nonlocal most
        queue(self, f, *a)
        most = max(most, f.outstanding)

    monkeypatch.setattr(throughput_send.Sending, "_queue", watched)
    rig, _ = rig_with_server()
    rig.endpoint.rate = 2e6  # bytes/s: the sends back up
    d, _ = run(rig, TimedSpec(direction="upload", seconds=0.3, length=1000, interval=0))
    assert "error" not in d, d
    assert 100 * 1000 < most <= 1024 * 1000, most
