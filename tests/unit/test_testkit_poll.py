"""testkit.poll: returns the first true value, fails naming what it waited for."""

from __future__ import annotations

import pytest
from testkit.poll import PollTimeout, poll_until, poll_until_async
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock


def test_returns_the_first_true_value() -> None:
    values = iter([0, None, "", 7, 8])
    assert poll_until(lambda: next(values), interval=0) == 7
    assert next(values) == 8  # not called again once true


def test_a_condition_never_met_fails_with_what_and_the_last_value() -> None:
    with pytest.raises(PollTimeout, match=r"the thing not reached in 0 s \(last: \[\]\)"):
        poll_until(lambda: [], timeout=0, what="the thing")
    with pytest.raises(AssertionError, match="computed late"):
        poll_until(lambda: False, timeout=0, what=lambda: "computed late")


def test_async_waits_on_the_reactor_it_is_given() -> None:
    clock, calls = Clock(), []

    def cond() -> int:
        calls.append(clock.seconds())
        return len(calls) >= 3 and len(calls)

    d = poll_until_async(cond, interval=0.5, reactor=clock)
    got: list[int] = []
    ensureDeferred(d).addCallback(got.append)
    clock.advance(0.5)
    assert got == []
    clock.advance(0.5)
    assert got == [3] and calls == [0, 0.5, 1.0]
