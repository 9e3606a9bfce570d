"""curl's -Y/-y speed check (measure.http_speed, sessions 28-29): each case as libcurl
7.88.1's progress.c (the current speed, sampled once a second of its clock) and
speedcheck.c (the check at each read or send, and a second after the last one), on
given times."""

from __future__ import annotations

import time

import pytest
from twisted.internet.task import Clock
from twisted.python import runtime

from packetlab.measure.http_speed import LowSpeed, TooSlow, clock_phase


def test_a_silent_server_ends_after_the_time() -> None:
    slow = LowSpeed(1, 3, lambda: 0)
    for now in (100.0, 101.0, 102.0):  # under 1 B/s since the request (100)
        slow.check(now)
        assert slow.next_check(now) == now + 1
    with pytest.raises(TooSlow, match="Less than 1 bytes/sec transferred the last 3 seconds"):
        slow.check(103.0)


def test_a_read_does_not_move_curls_timer() -> None:
    # curl's tool wakes at its timer's earliest time: a check at a read between two
    # timer checks leaves the next one where it was
    slow = LowSpeed(1, 3, lambda: 0)
    for now in (100.0, 101.0, 102.0, 102.5):
        slow.check(now)
    assert slow.next_check(102.5) == 103.0
    with pytest.raises(TooSlow):
        slow.check(103.0)


def test_a_new_connections_happy_eyeballs_timer_sets_the_cadence() -> None:
    # measured: curl -Y 1 -y 2 against a silent server gives up 2.2 s after the request
    # on a new connection (its happy eyeballs timer 0.2 s after the connect began: a
    # check, and the next a second after it), 2.0 on a reused one
    slow = LowSpeed(1, 2, lambda: 0, wake=100.2)
    slow.check(100.0)
    assert slow.next_check(100.0) == 100.2
    for now in (100.2, 101.2):
        slow.check(now)
        assert slow.next_check(now) == now + 1
    with pytest.raises(TooSlow):
        slow.check(102.2)
    early = LowSpeed(1, 2, lambda: 0, wake=99.9)  # (ended before the request: no check)
    early.check(100.0)
    assert early.next_check(100.0) == 101.0


def test_a_transfer_at_the_limit_goes_on() -> None:
    got = [0]
    slow = LowSpeed(2, 1, lambda: got[0])
    for tick in range(40):  # 2 B/s, a byte each half second
        got[0] = tick
        slow.check(tick / 2)
    assert slow.below is None


def test_a_burst_then_a_stall_ends_once_the_window_has_slowed() -> None:
    got = [0]
    slow = LowSpeed(100, 2, lambda: got[0])
    slow.check(0.0)  # the request: speed 0, under the limit
    got[0] = 1000
    slow.check(0.1)  # the same second of curl's clock: no new sample, still under
    assert slow.below == 0.0
    for now in range(1, 10):  # (the 5 s window holds the burst from 1 s to 5 s)
        try:
            slow.check(float(now))
        except TooSlow:
            break
    # 1000 B over 5 s is 200 B/s until 5 s, 0 from 6 s on: ended at 8 s
    assert now == 8


def test_the_speed_is_sampled_at_the_seconds_of_curls_clock() -> None:
    # the same reads, the clock's second starting 0.05 s after the request: the burst
    # at 0.1 is a new second's sample at once (over the limit); else only at 1.1
    got = [0]
    early, late = LowSpeed(100, 1, lambda: got[0], 0.95), LowSpeed(100, 1, lambda: got[0])
    for slow in (early, late):
        got[0] = 0
        slow.check(0.0)
        got[0] = 1000
        slow.check(0.1)
    assert early.below is None and early.speed == 10000  # (1000 B in 100 ms)
    assert late.below == 0.0 and late.speed == 0
    late.check(1.1)  # its next second's sample: 1000 B in 1.1 s, over the limit now
    assert late.below is None and late.speed == 909


def test_the_speed_is_whole_bytes_per_second_over_whole_milliseconds() -> None:
    got = [0]
    slow = LowSpeed(3, 10, lambda: got[0])
    slow.check(0.0)
    got[0] = 5
    slow.check(1.9995)  # 5 B over 1999 ms (curl's truncated span): 2 B/s, under 3
    assert slow.speed == 2 and slow.below == 0.0


class _RealClock:
    """A clock on the reactor's time (its `seconds` is Twisted's runtime.seconds)."""

    seconds = staticmethod(runtime.seconds)


def test_clock_phase_is_curls_clock_for_the_reactor_and_none_for_a_fake() -> None:
    assert clock_phase(Clock()) == 0.0
    real = _RealClock()
    phase = clock_phase(real)
    assert abs(real.seconds() + phase - time.monotonic()) < 0.01
