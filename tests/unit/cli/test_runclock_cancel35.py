"""RunClock.around(first=True): a run cancelled (Ctrl-C, its --timeout) while it waits
for the first TIME read ends there. The read's errback, which keeps a failed read from
failing the run, took the cancel for a failed read: the experiment started anyway."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred

from packetlab.cli.run_command import Progress, begun
from packetlab.cli.runclock import RunClock


class _Silent:
    """A session whose endpoint never answers (each mread pending until cancelled)."""

    def __init__(self) -> None:
        self.reads: list[Deferred[bytes]] = []

    def mread(self, addr: int, size: int) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self.reads.append(d)
        return d


def test_a_cancel_during_the_first_read_does_not_start_the_experiment() -> None:
    session = _Silent()
    progress = Progress()
    progress.clock = RunClock(now_ns=lambda: 10**18)
    started: list[Any] = []

    async def experiment(s: Any) -> None:
        started.append(s)

    d = Deferred.fromCoroutine(begun(experiment, progress, True, first=True)(session))
    assert not d.called and len(session.reads) == 1  # waiting for TIME
    d.cancel()
    assert started == []  # (was: the experiment, then the run went on)
    failed: list[Any] = []
    d.addErrback(failed.append)
    assert failed and failed[0].check(CancelledError)
    assert progress.clock.first is None  # the summary stays on our clock


def test_a_failed_first_read_still_runs_the_experiment_on_our_clock() -> None:
    session = _Silent()
    progress = Progress()
    progress.clock = RunClock(now_ns=lambda: 10**18)
    started: list[Any] = []

    async def experiment(s: Any) -> None:
        started.append(progress.clock.now())

    d = Deferred.fromCoroutine(begun(experiment, progress, True, first=True, last=False)(session))
    session.reads[0].errback(ConnectionError("session gone"))
    assert started == [1e9]  # (ours: no offset known)
    assert d.called and d.result is None
