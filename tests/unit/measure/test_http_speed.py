"""curl's -Y/-y speed check (measure.http_speed, session 28): each case as libcurl
7.88.1's speedcheck.c over its current speed (the last 5 s), on given times."""

from __future__ import annotations

import pytest

from packetlab.measure.http_speed import LowSpeed, TooSlow


def test_a_silent_server_ends_after_the_time() -> None:
    got = [0]
    slow = LowSpeed(1, 3, lambda: got[0])
    for now in (100.0, 101.0, 102.0, 102.5):  # under 1 B/s since the request (100)
        slow.check(now)
        assert slow.next_check(now) <= 103.0
    with pytest.raises(TooSlow, match="Less than 1 bytes/sec transferred the last 3 seconds"):
        slow.check(103.0)


def test_a_transfer_at_the_limit_goes_on() -> None:
    got = [0]
    slow = LowSpeed(2, 1, lambda: got[0])
    for tick in range(20):  # 2 B/s, a byte each half second
        got[0] = tick
        slow.check(tick / 2)
    assert slow.below is None


def test_a_burst_then_a_stall_ends_once_the_window_has_slowed() -> None:
    got = [0]
    slow = LowSpeed(100, 2, lambda: got[0])
    slow.check(0.0)  # the request: speed 0, under the limit
    got[0] = 1000
    slow.check(0.1)  # 1000 B in 0.1 s: over it, the count stopped
    assert slow.below is None
    for now in range(1, 10):  # (the 5 s window still holds the burst at 1-5 s)
        try:
            slow.check(float(now))
        except TooSlow:
            break
    # under 100 B/s from 6 s on (1000 B over 5 s is 200 B/s until then): ended at 8 s
    assert now == 8


def test_next_check_is_each_second_from_the_request_or_the_times_end() -> None:
    slow = LowSpeed(10, 5, lambda: 0)
    assert slow.next_check(7.25) == 8.25  # before the first check: a second from now
    slow.check(7.25)
    assert slow.below == 7.25
    assert slow.next_check(7.5) == 8.25
    assert LowSpeed(10, 1, lambda: 0, start=0.0, below=0.0).next_check(0.2) == 1.0
