"""BusyPollUs over a fake epoll object and a fake clock: spin only after I/O, never past
the reactor's timeout, and block again once the window passes without events."""

from __future__ import annotations

from typing import Any

import pytest

from packetlab.endpoint.busypoll import BusyPollUnsupported, SpinningPoller, install
from packetlab.endpoint.config import ConfigError, parse_config

EV = [(5, 1)]


class FakeEpoll:
    """Answers each poll from a script of event lists (then none); records the timeouts."""

    def __init__(self, clock: FakeTime, script: list[list[tuple[int, int]]]) -> None:
        self.clock = clock
        self.script = script
        self.calls: list[float] = []

    def poll(self, timeout: float = -1, maxevents: int = -1) -> list[tuple[int, int]]:
        self.calls.append(timeout)
        if timeout > 0:
            self.clock.t += timeout  # a blocking poll that found nothing waited it out
        return self.script.pop(0) if self.script else []

    def register(self, fd: int, mask: int) -> str:
        return f"registered {fd}"


class FakeTime:
    """Seconds; each reading moves time 1 µs, so a spin loop ends."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1e-6
        return self.t


def spinner(
    script: list[list[tuple[int, int]]], window_us: int = 50
) -> tuple[SpinningPoller, FakeEpoll]:
    clock = FakeTime()
    epoll = FakeEpoll(clock, script)
    return SpinningPoller(epoll, window_us / 1e6, clock), epoll


def test_blocks_when_the_last_turn_had_no_io() -> None:
    p, ep = spinner([EV])
    assert p.poll(1.5, 8) == EV
    assert ep.calls == [1.5]  # straight to the blocking poll


def test_spins_after_io_and_finds_the_next_request_without_blocking() -> None:
    p, ep = spinner([EV, [], [], EV])
    p.poll(-1, 8)
    assert p.poll(-1, 8) == EV
    assert ep.calls == [-1, 0, 0, 0]
    assert p.spins == 1


def test_blocks_after_the_window_passes_without_io() -> None:
    p, ep = spinner([EV], window_us=20)
    p.poll(-1, 8)
    assert p.poll(-1, 8) == []
    spun = ep.calls[1:-1]
    assert spun and set(spun) == {0}
    assert 10 <= len(spun) <= 25  # ~1 µs per clock reading, 20 µs window
    assert ep.calls[-1] == -1  # then it blocks, for as long as the reactor asked
    # and stays blocking until I/O comes again
    ep.calls.clear()
    p.poll(-1, 8)
    assert ep.calls == [-1]


def test_never_spins_past_the_reactors_timeout() -> None:
    p, ep = spinner([EV], window_us=1000)
    p.poll(-1, 8)
    p.poll(10e-6, 8)  # a timer is due in 10 µs
    assert len(ep.calls[1:-1]) <= 12
    assert 0 <= ep.calls[-1] < 10e-6  # what is left of the timeout


def test_timeout_zero_and_window_zero_poll_once() -> None:
    p, ep = spinner([EV, EV])
    p.poll(-1, 8)
    p.poll(0, 8)
    assert ep.calls == [-1, 0]
    p.window = 0
    p.poll(-1, 8)
    assert ep.calls == [-1, 0, -1]


def test_other_epoll_methods_pass_through() -> None:
    p, _ = spinner([])
    assert p.register(3, 1) == "registered 3"


def test_install_refuses_a_reactor_without_epoll() -> None:
    class PollReactor:
        _poller: Any = object()

    with pytest.raises(BusyPollUnsupported, match="epoll reactor"):
        install(PollReactor(), 50)
    assert install(PollReactor(), 0) is None  # off: nothing checked, nothing changed


def test_install_twice_keeps_one_wrapper_with_the_longer_window() -> None:
    class R:
        pass

    r = R()
    p, _ = spinner([], window_us=20)
    r._poller = p  # type: ignore[attr-defined]
    assert install(r, 100) is p
    assert p.window == pytest.approx(100e-6)
    assert install(r, 10) is p
    assert p.window == pytest.approx(100e-6)


def test_config_key() -> None:
    assert parse_config([]).busy_poll_us == 0
    assert parse_config(["BusyPollUs 200"]).busy_poll_us == 200
    with pytest.raises(ConfigError, match="BusyPollUs"):
        parse_config(["BusyPollUs -1"])
    with pytest.raises(ConfigError, match="BusyPollUs"):
        parse_config(["BusyPollUs 5000000"])
