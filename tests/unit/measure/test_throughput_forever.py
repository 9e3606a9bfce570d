"""`-t 0`, as native iperf3 3.12: a test with no end of its own, until Ctrl-C (it was
refused, `-t must be 0 < T <= 86400 s`). The server is told `"time": 0`, -V says `0
second test` and -J `"duration": 0` as native's; the endpoint is told an end all the same,
86400 s on (`FOREVER_S`), as every -t test's."""

from __future__ import annotations

from packetlab.cli import run_throughput
from packetlab.cli.run_command import parse_args
from packetlab.cli.run_throughput_rows import starting_test
from packetlab.measure import iperf3
from packetlab.measure.throughput_json import start
from packetlab.measure.throughput_spec import FOREVER_S, TimedSpec


def test_t_0_runs_until_ctrl_c_told_as_native() -> None:
    spec = TimedSpec(direction="upload", seconds=0)
    spec.check()
    spec.check()  # (timed_test checks it again)
    assert (spec.forever, spec.seconds, spec.told_seconds) == (True, FOREVER_S, 0.0)
    params = iperf3.timed_parameters(udp=False, seconds=spec.told_seconds, nbytes=None,
                                     streams=1, reverse=False, length=spec.block,
                                     bitrate=None)  # fmt: skip
    assert params["time"] == 0  # native `iperf3 -c -t 0 -d`
    assert spec.progress(3.04) == "3.0 s (until Ctrl-C)"
    timed = TimedSpec(seconds=10)
    timed.check()
    assert timed.progress(12.0) == "10.0/10 s" and timed.told_seconds == 10


def test_t_0_in_the_v_line_the_document_and_the_budget() -> None:
    args = parse_args(run_throughput.COMMAND, ["-c", "127.0.0.1", "-t", "0"])
    assert run_throughput.budget(args) >= FOREVER_S  # the in-process run's --timeout
    spec = {"protocol": "tcp", "parallel": 1, "length": 131072, "time": 0}
    assert starting_test(spec).endswith(", 0 second test, tos 0")
    assert starting_test({**spec, "time": 1}).endswith(", 1 second test, tos 0")
    assert starting_test({**spec, "time": None}).endswith(", 10 second test, tos 0")


def test_t_0_is_duration_0_in_the_json_document() -> None:
    connected = {"streams": [], "cookie": "c", "tcp_mss": 32768}
    r = {"protocol": "tcp", "server": "127.0.0.1", "port": 5201, "parallel": 1, "time": 0}
    assert start(connected, r, 0.0, "v")["test_start"]["duration"] == 0  # native's
    assert start(connected, {**r, "time": 1.5}, 0.0, "v")["test_start"]["duration"] == 2
