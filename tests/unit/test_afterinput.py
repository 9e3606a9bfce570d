"""packetlab.afterinput over a fake clock: a deadline runs READ_TURNS reactor turns late
(each `callLater(0)` a poll for input on the real reactor; tests/integration/
test_flight_waker.py shows the reading), cancels cleanly, and a timed-out Deferred gives
None while other outcomes pass through."""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from packetlab.afterinput import READ_TURNS, AfterInput, timeout_after_input


class _Turns(Clock):
    """A clock that runs one batch of due calls per `turn()`, as a reactor iteration."""

    def turn(self) -> None:
        due = [c for c in self.calls if c.getTime() <= self.seconds()]
        for c in due:
            self.calls.remove(c)
            c.called = True
            c.func(*c.args, **c.kw)


def test_the_call_runs_only_after_the_reactor_turns_past_the_deadline() -> None:
    clock = _Turns()
    ran: list[str] = []
    AfterInput(clock, 1.0, ran.append, "due")
    clock.rightNow = 1.0
    for _ in range(READ_TURNS):
        clock.turn()
        assert ran == []  # a turn to read input first
    clock.turn()
    assert ran == ["due"]
    assert not clock.calls


def test_cancel_stops_it_in_any_turn_and_active_says_so() -> None:
    clock = _Turns()
    ran: list[int] = []
    call = AfterInput(clock, 0.5, ran.append, 1)
    assert call.active()
    clock.rightNow = 0.5
    clock.turn()
    assert call.active()  # between turns, still pending
    call.cancel()
    assert not call.active()
    for _ in range(READ_TURNS + 1):
        clock.turn()
    assert ran == [] and not clock.calls
    call.cancel()  # twice is harmless


def test_a_deferred_that_times_out_gives_none_and_is_cancelled() -> None:
    clock = Clock()
    cancelled: list[Deferred[int]] = []
    d: Deferred[int] = Deferred(cancelled.append)
    got: list[int | None] = []
    timeout_after_input(d, 2.0, clock).addCallback(got.append)
    clock.advance(1.9)
    assert got == []
    clock.advance(0.1)  # (Clock.advance runs the callLater(0) turns it makes, too)
    assert got == [None] and cancelled == [d]


def test_a_result_before_the_deadline_goes_through_and_leaves_no_timer() -> None:
    clock = Clock()
    d: Deferred[int] = Deferred()
    got: list[int | None] = []
    timeout_after_input(d, 2.0, clock).addCallback(got.append)
    d.callback(7)
    assert got == [7] and not clock.calls


def test_a_failure_before_the_deadline_stays_a_failure() -> None:
    clock = Clock()
    d: Deferred[int] = Deferred()
    errors: list[Failure] = []
    timeout_after_input(d, 2.0, clock).addErrback(errors.append)
    d.errback(ValueError("boom"))
    assert len(errors) == 1 and errors[0].check(ValueError)


def test_a_cancel_by_the_caller_is_not_taken_for_a_timeout() -> None:
    clock = Clock()
    d: Deferred[int] = Deferred()
    errors: list[Failure] = []
    timeout_after_input(d, 2.0, clock).addErrback(errors.append)
    d.cancel()
    assert len(errors) == 1 and errors[0].check(CancelledError) and not clock.calls
