"""packetlab.logbudget: a flood of events is a bounded number of log lines."""

from __future__ import annotations

from twisted.internet.task import Clock

from packetlab.logbudget import LogBudget


def test_a_burst_per_window_then_counted_then_said() -> None:
    clock = Clock()
    b = LogBudget(clock.seconds, burst=3, window=60)
    got = [b.allow() for _ in range(10)]
    assert got[:2] == ["", ""] and got[2] is not None and "next ones are counted" in got[2]
    assert got[3:] == [None] * 7 and b.hidden == 7
    clock.advance(59.9)
    assert b.allow() is None
    clock.advance(0.1)  # a new window: the first line says what was left out
    assert b.allow() == " [8 not logged before this one]"
    assert b.allow() == ""
