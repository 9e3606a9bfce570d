"""`MonitorTime`, a session's monitor time (docs/monitors.md, "Monitor time"), over a
fake clock."""

from __future__ import annotations

import pytest

from packetlab.endpoint.montime import MonitorTime


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def budget(rate: float = 0.1, burst: float = 0.1) -> tuple[MonitorTime, Clock, list[str]]:
    clock, notes = Clock(), list[str]()
    return MonitorTime(clock, rate, burst, notes.append), clock, notes


def call(b: MonitorTime, clock: Clock, cost: float) -> bool:
    """One monitor call costing `cost` s, if the budget lets it in."""
    t = b.start()
    if t is None:
        return False
    clock.now += cost
    b.spent(t)
    return True


def test_a_spinning_call_puts_the_session_in_debt_until_it_is_paid_back() -> None:
    b, clock, notes = budget()
    assert call(b, clock, 0.11)  # a full bucket lets one deadline (and its tick) in
    # 100 - 110 ms; nothing comes back while the monitors run (session 34: before, 11 ms
    # did, and a spinner went on with it)
    assert abs(b.tokens - -0.01) < 1e-9
    assert not call(b, clock, 0.11) and len(notes) == 1 and "spent" in notes[0]
    # 10 ms of debt, paid back at 100/900 s a second of the other 900 ms of each second
    assert "in 0.09 s" in notes[0]
    clock.now += 0.08
    assert b.start() is None  # still 1 ms short
    clock.now += 0.02
    assert call(b, clock, 0.11)  # entered again once the debt is paid
    assert len(notes) == 1  # ... in the same episode: no line per call


def test_over_time_a_spinner_gets_the_rate_and_no_more() -> None:
    b, clock, _ = budget(rate=0.1)
    spent = 0.0
    while clock.now < 1100.0:  # 100 s of a peer's datagrams, one every 10 ms
        if call(b, clock, 0.11):
            spent += 0.11
        else:
            b.drop()
        clock.now += 0.01
    assert 9.5 < spent < 10.6  # 10 % of 100 s, give or take one call and the burst


def test_a_well_behaved_monitor_is_never_refused() -> None:
    b, clock, notes = budget(rate=0.1)
    for _ in range(100_000):  # 50 us a call every 1 ms: 5 % of the time
        assert call(b, clock, 50e-6)
        clock.now += 0.001 - 50e-6
    assert notes == []


def test_one_episode_one_line_at_each_end_with_the_counts() -> None:
    b, clock, notes = budget()
    call(b, clock, 0.15)
    for _ in range(3):
        assert b.start() is None
        b.drop()
    assert b.start() is None
    b.refuse()
    clock.now += 0.6  # 60 ms back, 10 ms above zero: entered, spins again
    assert call(b, clock, 0.15)
    assert b.start() is None
    b.drop()
    assert len(notes) == 1
    clock.now += 10.0  # full again: the episode ends at the next check
    assert call(b, clock, 0.001)
    assert len(notes) == 2
    assert "4 received chunk(s) dropped, 1 request(s) refused" in notes[1]
    assert "entered 1 time(s)" in notes[1]
    b.close()
    assert len(notes) == 2  # no episode going on


def test_close_ends_an_episode_still_going_on() -> None:
    b, clock, notes = budget()
    call(b, clock, 0.5)
    assert b.start() is None
    b.drop()
    b.close()
    assert len(notes) == 2 and "at the session's end" in notes[1]
    assert "1 received chunk(s) dropped" in notes[1]


def test_the_bucket_saves_up_the_burst_at_most() -> None:
    b, clock, _ = budget(rate=0.1, burst=0.1)
    clock.now += 3600.0  # an hour idle saves 100 ms, not 360 s
    assert call(b, clock, 0.2)
    assert b.start() is None


def test_wait_says_when_the_monitors_may_be_entered_again() -> None:
    b, clock, _ = budget(rate=0.1, burst=0.1)
    assert b.wait() == 0.0
    call(b, clock, 0.2)  # 100 ms of debt, paid back at 100/900 s a second
    assert abs(b.wait() - 0.901) < 1e-9  # the debt's end, and a margin
    clock.now += 0.89
    assert b.start() is None  # not yet: the timer must not fire before it is paid
    clock.now += 0.011
    assert b.wait() == 0.0 and b.start() is not None


def test_the_default_burst_is_two_deadlines_at_most_one_second() -> None:
    from packetlab.monitor.abi import Settings

    assert Settings().time_burst == pytest.approx(0.2)  # 2 x MonitorDeadlineMillsec 100
    assert Settings(deadline_ms=400).time_burst == pytest.approx(0.8)
    # A long deadline no longer lets a spinning monitor hold the reactor 2 x 60 s.
    assert Settings(deadline_ms=60000).time_burst == pytest.approx(1.0)
    # An operator who wants monitors' long calls to run says how long, on its own key.
    assert Settings(deadline_ms=60000, time_burst_ms=5000).time_burst == pytest.approx(5.0)
    assert Settings(time_burst_ms=50).time_burst == pytest.approx(0.05)
