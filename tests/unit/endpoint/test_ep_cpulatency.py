"""CpuLatencyUs over a recording device: the request is written when the first session
opens and withdrawn when the last one closes; a failed write never fails a session."""

from __future__ import annotations

from pathlib import Path

import pytest

from packetlab.endpoint.config import ConfigError, parse_config
from packetlab.endpoint.cpulatency import (
    NO_CONSTRAINT,
    CpuLatencyHold,
    CpuLatencyUnavailable,
    open_device,
)


class Recorder:
    """A PM QoS device that keeps what was written; `fail` makes writes raise."""

    def __init__(self) -> None:
        self.writes: list[int] = []
        self.closed = False
        self.fail: OSError | None = None

    def write(self, value: int, /) -> None:
        if self.fail is not None:
            raise self.fail
        self.writes.append(value)

    def close(self) -> None:
        self.closed = True


def test_held_from_the_first_session_open_to_the_last_close() -> None:
    dev = Recorder()
    hold = CpuLatencyHold(0, dev)
    assert dev.writes == [] and not hold.held  # nothing asked before a session opens
    first = hold.opened()
    assert dev.writes == [0] and hold.held
    second = hold.opened()
    first()
    assert dev.writes == [0] and hold.held  # one session still open
    second()
    assert dev.writes == [0, NO_CONSTRAINT] and not hold.held
    third = hold.opened()
    assert dev.writes == [0, NO_CONSTRAINT, 0] and hold.holds == 2
    third()
    assert hold.live == 0


def test_a_close_callback_called_twice_counts_once() -> None:
    dev = Recorder()
    hold = CpuLatencyHold(25, dev)
    a, b = hold.opened(), hold.opened()
    a()
    a()  # Session runs its close hooks once, but a second call must not end b's hold
    assert hold.live == 1 and hold.held and dev.writes == [25]
    b()
    assert dev.writes == [25, NO_CONSTRAINT]


def test_a_failed_write_is_logged_and_the_session_goes_on() -> None:
    dev, lines = Recorder(), list[str]()
    dev.fail = OSError(5, "Input/output error")
    hold = CpuLatencyHold(0, dev, lines.append)
    closed = hold.opened()
    assert not hold.held and hold.live == 1
    assert lines == ["CpuLatencyUs: could not write 0 to the PM QoS device: [Errno 5] "
                     "Input/output error"]  # fmt: skip
    dev.fail = None
    closed()
    assert hold.live == 0 and dev.writes == [NO_CONSTRAINT]


def test_close_drops_the_request() -> None:
    dev = Recorder()
    hold = CpuLatencyHold(0, dev)
    hold.opened()
    hold.close()
    assert dev.closed and not hold.held


def test_a_missing_device_is_one_line_naming_the_key(tmp_path: Path) -> None:
    want = r"^CpuLatencyUs needs .*/nope \(Linux PM QoS\), which this system does not have; "
    with pytest.raises(CpuLatencyUnavailable, match=want + "remove CpuLatencyUs$"):
        open_device(str(tmp_path / "nope"))


def test_a_device_that_cannot_be_written_says_why(tmp_path: Path) -> None:
    want = r"^CpuLatencyUs: cannot open .*: Is a directory$"
    with pytest.raises(CpuLatencyUnavailable, match=want):
        open_device(str(tmp_path))


def test_config_key() -> None:
    assert parse_config([]).cpu_latency_us is None
    assert parse_config(["CpuLatencyUs 0"]).cpu_latency_us == 0
    assert parse_config(["CpuLatencyUs 20"]).cpu_latency_us == 20
    for bad in ("-1", "1000001", "fast"):
        with pytest.raises(ConfigError, match="CpuLatencyUs"):
            parse_config([f"CpuLatencyUs {bad}"])


def test_the_example_config_parses() -> None:
    from packetlab.endpoint.config import load_config

    example = Path(__file__).parents[3] / "examples" / "endpt.low-latency.conf"
    cfg = load_config(str(example))
    assert cfg.cpu_latency_us == 0 and cfg.busy_poll_us == 0 and not cfg.warnings
