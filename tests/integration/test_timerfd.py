"""TimerFd (packetlab.endpoint.clock) on the kernel: the timer and eventfd the precise
sender sleeps on, read with poll(2)."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator

import pytest

from packetlab.endpoint.clock import TimerFd, realtime_ns

# -- the kernel timerfd --------------------------------------------------------------------


@pytest.fixture
def timerfd() -> Iterator[TimerFd]:
    timer = TimerFd()
    yield timer
    timer.close()


def _readable(fd: int, timeout_ms: int = 0) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout_ms))


def test_timerfd_armed_in_the_past_is_readable_at_once(timerfd: TimerFd) -> None:
    timerfd.arm_at(realtime_ns() - 1_000)
    assert _readable(timerfd.fileno())  # the eventfd: no timer interrupt to wait for
    timerfd.arm_at(0)  # a second kick while one is pending is harmless
    timerfd.acknowledge()
    assert not _readable(timerfd.fileno())
    timerfd.acknowledge()  # nothing to consume: no error


def test_timerfd_future_and_disarm(timerfd: TimerFd) -> None:
    timerfd.arm_at(realtime_ns() + 10_000_000_000)
    assert not _readable(timerfd.fileno())
    timerfd.arm_at(realtime_ns() + 2_000_000)  # re-arming replaces the old deadline
    assert _readable(timerfd.fileno(), 1000)
    timerfd.acknowledge()
    assert not _readable(timerfd.fileno())
    timerfd.arm_at(realtime_ns() + 1_000_000)
    timerfd.disarm()
    assert not _readable(timerfd.fileno(), 20)


def test_timerfd_closed_use_is_a_clear_error() -> None:
    timer = TimerFd()
    fd = timer.fileno()
    timer.close()
    timer.close()  # idempotent
    for use in (timer.fileno, timer.acknowledge, lambda: timer.arm_at(realtime_ns())):
        with pytest.raises(ValueError, match="closed"):
            use()
    with pytest.raises(OSError):
        os.fstat(fd)
