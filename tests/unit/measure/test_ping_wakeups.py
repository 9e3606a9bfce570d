"""How often `ping -f` wakes its send loop, and what each wake-up costs (session 31,
pingf31): `run ping -f` spent ~15 % of its CPU waking the loop for nothing."""

from __future__ import annotations

from typing import Any

import pytest
from test_traceroute_fakes import TG4, RawRig

from packetlab.controller.stop import StopSignal
from packetlab.measure import flight
from packetlab.measure.ping import ping


def _count_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    sleep = flight.Waker.sleep

    def counted(self: flight.Waker, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return sleep(self, *args, **kwargs)

    monkeypatch.setattr(flight.Waker, "sleep", counted)
    return calls


@pytest.mark.parametrize("with_stop", [False, True])
def test_flood_wakes_the_send_loop_once_per_reply_not_per_ntag(
    monkeypatch: pytest.MonkeyPatch, with_stop: bool
) -> None:
    """-f (interval 0): the loop waits for each reply; the ntag of the request just sent
    makes no room, so it wakes nobody while requests are being sent (it woke the loop,
    which slept again: two sleeps per request, one now). Same replies, same order."""
    sleeps = _count_sleeps(monkeypatch)
    rig = RawRig([TG4])
    rig.endpoint.delays[1] = 0.0001
    stop = StopSignal() if with_stop else None
    result = rig.run(ping(rig.session, TG4, count=200, interval=0, stop=stop), step=0.001)
    assert (result.sent, result.received) == (200, 200)
    assert [r.seq for r in result.replies] == list(range(1, 201))
    assert all(r.probe_send_ns is not None for r in result.replies)
    assert sleeps[0] <= 200 + 10, sleeps  # (was 400: one more per ntag)


def test_a_sleep_with_a_stop_cancels_no_deferred(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each turn of a loop sleeping with a stop signal registered on it and unregistered
    again; a cancelled `when_requested()` Deferred each turn built a Failure each time."""
    from twisted.internet.defer import Deferred, ensureDeferred
    from twisted.internet.task import Clock

    cancels = [0]
    cancel = Deferred.cancel

    def counted(self: Deferred[Any]) -> None:
        cancels[0] += 1
        cancel(self)

    monkeypatch.setattr(Deferred, "cancel", counted)
    clock, stop = Clock(), StopSignal()
    waker = flight.Waker(clock)
    for _ in range(50):
        d = ensureDeferred(waker.sleep(clock.seconds() + 5, stop))
        waker.poke()
        assert d.called
    assert cancels[0] == 0
    assert stop.watched and not stop._waiters  # nothing left registered
    d = ensureDeferred(waker.sleep(None, stop))
    stop.request("deadline")
    assert d.called and not stop._waiters


def test_stop_listeners_run_once_in_order_with_when_requested() -> None:
    stop, seen = StopSignal(), []
    first = stop.when_requested()
    first.addCallback(lambda r: seen.append(("deferred", r)))
    stop.listen(lambda r: seen.append(("listener", r)))
    gone = stop.listen(lambda r: seen.append(("removed", r)))
    gone()
    cancelled = stop.when_requested()
    cancelled.addErrback(lambda f: None)
    cancelled.cancel()
    stop.request("deadline")
    stop.request("again")
    assert seen == [("deferred", "deadline"), ("listener", "deadline")]
    late: list[str] = []
    stop.listen(late.append)()  # already requested: at once; the remover does nothing
    assert late == ["deadline"]
