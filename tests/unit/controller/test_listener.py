"""The passive controller: an experiment per connecting endpoint, outcomes, errors that do
not stop the listener, limit/run_once, stop()."""

from __future__ import annotations

from typing import Any

import pytest
from ctl_fakes import FakeEndpoint, result_of
from testkit.logs import captured_events
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

from packetlab.controller import (
    Controller,
    ControllerError,
    EndpointSession,
    SessionClosed,
    SetupFailed,
    listen,
    read_time,
    run_once,
)
from packetlab.wire import Start, Status


class Net:
    """A MemoryReactorClock, and fake endpoints connected to whatever listens on it."""

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.pumps: list[iosim.IOPump] = []
        self.connected = 0

    def connect(
        self, start_status: int = 0, host: str = "127.0.0.1"
    ) -> tuple[EndpointSession, FakeEndpoint]:
        _port, factory, _backlog, _iface = self.reactor.tcpServers[-1]
        kind = IPv6Address if ":" in host else IPv4Address
        peer = kind("TCP", host, 40000 + self.connected)
        self.connected += 1
        session = factory.buildProtocol(peer)
        fake = FakeEndpoint(self.reactor)
        fake.start_status = start_status
        self.pumps.append(
            iosim.connect(
                session,
                iosim.FakeTransport(session, isServer=True, peerAddress=peer),
                fake,
                iosim.makeFakeClient(fake),
                clock=self.reactor,
            )
        )
        assert isinstance(session, EndpointSession)
        return session, fake

    def settle(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            for p in self.pumps:
                p.flush()
            self.reactor.advance(0.01)


async def time_experiment(session: EndpointSession) -> int:
    return await read_time(session)


def test_an_ipv6_endpoint_is_bracketed_in_its_outcome() -> None:
    """`Outcome.peer` (xpmgr's and `pktlab run --endpoints`'s lines and JSON) was
    `::1:40000` before session 32 (dual32): its port not told from the address."""
    net = Net()
    ctl = result_of(listen(net.reactor, "tcp6:20556:interface=\\:\\:1", time_experiment))
    session, _fake = net.connect(host="::1")
    assert session.peer == "[::1]:40000"
    outcome = ctl.next_outcome()
    net.settle()
    assert result_of(outcome).peer == "[::1]:40000"


def test_experiment_runs_per_endpoint_and_session_closes() -> None:
    net = Net()
    ctl = result_of(listen(net.reactor, "tcp:20556:interface=127.0.0.1", time_experiment))
    assert isinstance(ctl, Controller)
    assert net.reactor.tcpServers[0][0] == 20556
    (s1, f1), (s2, _f2) = net.connect(), net.connect()
    first = ctl.next_outcome()
    net.settle()
    # the first is the caller's now; `outcomes` keeps the one not taken
    assert ctl.finished == 2 and len(ctl.outcomes) == 1 and ctl.outcomes[0].ok
    assert result_of(first).peer == "127.0.0.1:40000"
    assert isinstance(result_of(first).unwrap(), int)
    assert f1.requests() == ["start", "mread"]
    assert s1.close_reason is None and s1._lost and s2._lost  # EOF ended them
    assert ctl.sessions == set()


def test_failing_experiment_is_logged_and_listener_carries_on() -> None:
    net = Net()
    calls: list[int] = []

    async def flaky(session: EndpointSession) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return "fine"

    with captured_events() as events:
        ctl = result_of(listen(net.reactor, "tcp:0", flaky))
        net.connect()
        net.settle()
        net.connect()
        net.settle()
    bad, good = ctl.outcomes
    assert not bad.ok and bad.failure is not None and bad.failure.check(RuntimeError)
    with pytest.raises(RuntimeError, match="boom"):
        bad.unwrap()
    assert good.unwrap() == "fine"
    assert any("failed" in e.get("log_format", "") and e.get("log_failure") for e in events)


def test_refused_setup_gives_a_failed_outcome_without_running() -> None:
    net = Net()
    ran: list[EndpointSession] = []
    ctl: Controller[Any] = result_of(listen(net.reactor, "tcp:0", ran.append))  # type: ignore[arg-type]
    net.connect(start_status=Status.ECRTNOHDAT)
    net.settle()
    (out,) = ctl.outcomes
    assert ran == [] and out.failure is not None and out.failure.check(SetupFailed)


def test_plain_and_deferred_experiments() -> None:
    net = Net()
    ctl = result_of(listen(net.reactor, "tcp:0", lambda s: succeed(s.peer)))
    net.connect()
    # a plain (not awaitable) result is accepted at run time, though not by the type
    ctl2: Controller[Any] = result_of(listen(net.reactor, "tcp:0", lambda s: 42))  # type: ignore[arg-type,return-value]
    net.connect()
    net.settle()
    assert ctl.outcomes[0].unwrap() == "127.0.0.1:40000"
    assert ctl2.outcomes[0].unwrap() == 42


def test_run_once_returns_the_result_and_stops_listening() -> None:
    net = Net()
    ports: list[Any] = []
    d = run_once(net.reactor, "tcp:0", time_experiment, on_listening=ports.append)
    assert len(ports) == 1 and not d.called
    net.connect()
    net.settle()
    assert isinstance(result_of(d), int)


def test_limit_stops_listening() -> None:
    net = Net()
    ctl = Controller(time_experiment, reactor=net.reactor, limit=1)
    result_of(ctl.listen("tcp:0"))
    assert ctl.port is not None
    net.connect()
    assert ctl.port is None and ctl.accepted == 1


def test_run_once_timeout() -> None:
    net = Net()
    d = run_once(net.reactor, "tcp:0", time_experiment, timeout=3)
    net.reactor.advance(4)
    net.settle(1)
    with pytest.raises(ControllerError, match="no experiment finished within 3 s"):
        result_of(d)


def test_stop_closes_live_sessions() -> None:
    net = Net()
    never: Deferred[None] = Deferred()

    async def waits(session: EndpointSession) -> None:
        await session.mread(0x10010000, 8)
        await never

    ctl = result_of(listen(net.reactor, "tcp:0", waits))
    session, _ = net.connect()
    net.settle(2)
    stopped = ctl.stop()
    net.settle(2)
    never.callback(None)
    net.settle(2)
    assert result_of(stopped) is None
    assert session._lost


def test_endpoint_vanishing_mid_experiment_fails_the_run() -> None:
    net = Net()
    hang: Deferred[None] = Deferred()

    async def slow(session: EndpointSession) -> None:
        await hang
        await session.mread(0x10010000, 8)

    ctl = result_of(listen(net.reactor, "tcp:0", slow))
    _session, fake = net.connect()
    net.settle(2)
    fake.transport.loseConnection()  # type: ignore[union-attr]
    net.settle(2)
    hang.callback(None)
    net.settle(2)
    (out,) = ctl.outcomes
    assert out.failure is not None and out.failure.check(SessionClosed)


def test_run_once_raises_a_failure_without_logging_its_traceback_too() -> None:
    # run_once (and the in-process link of packetlab.cli.link) raised the experiment's
    # error to its caller and also logged it with a traceback: a researcher who caught
    # it still had "experiment on endpoint ... failed" and a traceback on stderr per run.
    net = Net()

    async def boom(session: EndpointSession) -> None:
        raise RuntimeError("boom")

    with captured_events() as events:
        d = run_once(net.reactor, "tcp:0", boom)
        net.connect()
        net.settle()
    with pytest.raises(RuntimeError, match="boom"):
        result_of(d)
    assert not any(e.get("log_failure") for e in events)
    said = events.where(fmt="failed: {error}")
    assert [e["error"] for e in said] == ["boom"]


def test_a_failed_run_does_not_keep_its_session_alive() -> None:
    # A failed experiment's Outcome kept the Failure's frames, and through them the
    # session (its sockets and whatever they had queued) for as long as the listener
    # lived: a passive controller kept every failed session it ever ran.
    import gc
    import weakref

    refs: list[weakref.ref[EndpointSession]] = []

    async def boom(session: EndpointSession) -> None:
        refs.append(weakref.ref(session))
        try:
            await read_time(session)
            raise KeyError("inner")
        except KeyError as e:
            raise RuntimeError("boom") from e

    net = Net()
    ctl = result_of(listen(net.reactor, "tcp:0", boom))
    net.connect()
    net.settle()
    net.pumps.clear()
    net.reactor.tcpServers.clear()
    gc.collect()
    (out,) = ctl.outcomes
    assert out.failure is not None and out.failure.check(RuntimeError)
    assert out.failure.getErrorMessage() == "boom" and out.result is None
    assert refs[0]() is None
    assert "in boom" in out.failure.getTraceback()  # (its frames kept as text)


def test_run_once_timeout_ends_an_experiment_that_never_does() -> None:
    # run_once(..., timeout=3) (and run_in_process(..., timeout=1)) with an experiment
    # waiting on a Deferred of its own hung for ever: the timeout fired, then stop()
    # waited for the run, which waited for the experiment.
    net = Net()
    cancelled: list[bool] = []

    async def stuck(session: EndpointSession) -> None:
        try:
            await Deferred()
        except defer.CancelledError:
            cancelled.append(True)
            raise

    d = run_once(net.reactor, "tcp:0", stuck, timeout=3)
    net.connect()
    net.settle()
    net.reactor.advance(4)
    net.settle()
    with pytest.raises(ControllerError, match=r"within 3 s \(the experiment did not end\)"):
        result_of(d)
    assert cancelled == [True]


def test_stop_cancels_the_experiments_still_running() -> None:
    net = Net()
    ctl: Controller[Any] = result_of(listen(net.reactor, "tcp:0", lambda s: Deferred()))
    net.connect()
    net.settle()
    stopped = ctl.stop()
    net.settle()
    assert stopped.called
    (out,) = ctl.outcomes
    assert out.failure is not None and out.failure.check(defer.CancelledError)


def serve(ctl: Controller[Any], net: Net, sessions: int) -> None:
    """`sessions` fake endpoints, one after the other, each run to its end."""
    for _ in range(sessions):
        net.connect()
        pump = net.pumps.pop()
        for _ in range(3):
            pump.flush()
        net.reactor.advance(0)


def test_a_listener_serving_10000_sessions_stays_bounded() -> None:
    """`outcomes` grew by one per run for ever, and an outcome whose failure kept its
    frames (report_failures=False) kept its session too: 10,000 sessions, 10,000 kept.
    Now the newest KEEP_OUTCOMES are kept, the rest dropped and counted."""
    import gc
    import weakref

    from packetlab.controller.listener import KEEP_OUTCOMES

    live: weakref.WeakSet[EndpointSession] = weakref.WeakSet()

    async def fails(session: EndpointSession) -> None:
        live.add(session)
        raise RuntimeError("boom")  # its frames (and the session) stay in the Failure

    net = Net()
    ctl: Controller[None] = Controller(fails, reactor=net.reactor, report_failures=False)
    result_of(ctl.listen("tcp:0"))
    serve(ctl, net, 10_000)
    gc.collect()
    assert ctl.finished == 10_000 and ctl.accepted == 10_000
    assert len(ctl.outcomes) == KEEP_OUTCOMES == 1000
    assert ctl.dropped_outcomes == 9000
    assert len(live) <= KEEP_OUTCOMES  # the dropped outcomes' sessions are gone
    assert all(o.peer for o in ctl.outcomes) and not ctl._waiters
    # next_outcome() skips the dropped ones: the oldest kept, and it leaves the list
    first = result_of(ctl.next_outcome())
    assert first is not None and len(ctl.outcomes) == 999


def test_outcomes_taken_by_next_outcome_are_released() -> None:
    """A caller taking every outcome with next_outcome() leaves nothing behind, with the
    index semantics unchanged: the i-th call gets the i-th run to end."""
    net = Net()
    peers: list[str] = []
    ctl: Controller[str] = Controller(
        lambda s: succeed(s.peer), reactor=net.reactor, keep_outcomes=None
    )
    result_of(ctl.listen("tcp:0"))
    ahead = [ctl.next_outcome() for _ in range(3)]  # waiting before the runs end
    serve(ctl, net, 5)
    peers += [result_of(d).unwrap() for d in ahead]
    assert len(ctl.outcomes) == 2  # runs 4 and 5: not taken yet
    peers += [result_of(ctl.next_outcome()).unwrap() for _ in range(2)]
    assert ctl.outcomes == []
    late = ctl.next_outcome()
    assert not late.called
    serve(ctl, net, 1)
    peers.append(result_of(late).unwrap())
    assert peers == [f"127.0.0.1:{40000 + i}" for i in range(6)]
    assert ctl.finished == 6 and ctl.outcomes == [] and not ctl._waiters


def test_a_wait_that_timed_out_gives_its_place_up() -> None:
    """A `next_outcome()` whose Deferred was cancelled (a timeout) takes no outcome: the
    next run's goes to the next call waiting, else stays in `outcomes` (bounded by
    keep_outcomes). eyes14: it was the timed-out call's and released, so a caller polling
    with a timeout lost the next outcome per timeout, and a waiter stayed behind for each
    while no run ended (10,000 timeouts: 10,000 Deferreds kept, the next 10,000 outcomes
    thrown away)."""
    net = Net()
    ctl: Controller[str] = Controller(lambda s: succeed(s.peer), reactor=net.reactor)
    result_of(ctl.listen("tcp:0"))
    d = ctl.next_outcome().addTimeout(1, net.reactor)
    net.reactor.advance(2)
    with pytest.raises(defer.TimeoutError):
        result_of(d)
    assert not ctl._waiters
    serve(ctl, net, 2)
    assert [o.peer for o in ctl.outcomes] == ["127.0.0.1:40000", "127.0.0.1:40001"]
    assert result_of(ctl.next_outcome()).peer == "127.0.0.1:40000"
    ctl.outcomes.clear()
    for _ in range(10_000):  # a caller polling with a timeout while no endpoint comes
        poll = ctl.next_outcome().addTimeout(1, net.reactor)
        net.reactor.advance(2)
        poll.addErrback(lambda f: f.trap(defer.TimeoutError))
    assert len(ctl._waiters) == 0
    live = ctl.next_outcome()
    serve(ctl, net, 1)
    assert result_of(live).peer == "127.0.0.1:40002"
    # a wait cancelled among others: the ones after it keep their order
    first, gone, third = (ctl.next_outcome() for _ in range(3))
    gone.cancel()
    gone.addErrback(lambda f: f.trap(defer.CancelledError))
    serve(ctl, net, 2)
    assert [result_of(first).peer, result_of(third).peer] == ["127.0.0.1:40003", "127.0.0.1:40004"]
    assert ctl.outcomes == [] and not ctl._waiters and ctl.finished == 5


def test_keep_outcomes_bounds_what_nobody_takes() -> None:
    net = Net()
    ctl: Controller[str] = Controller(
        lambda s: succeed(s.peer), reactor=net.reactor, keep_outcomes=2
    )
    result_of(ctl.listen("tcp:0"))
    serve(ctl, net, 5)
    assert [o.peer for o in ctl.outcomes] == ["127.0.0.1:40003", "127.0.0.1:40004"]
    assert ctl.dropped_outcomes == 3
    assert result_of(ctl.next_outcome()).peer == "127.0.0.1:40003"
    with pytest.raises(ValueError, match="keep_outcomes"):
        Controller(time_experiment, reactor=net.reactor, keep_outcomes=-1)


def test_keep_outcomes_0_hands_out_only_to_a_caller_waiting() -> None:
    """keep_outcomes=0: an outcome nobody waits for is dropped (counted), one a
    next_outcome() waits for is handed out, and the call after the drops waits for the
    next run (it is not handed a dropped one)."""
    net = Net()
    ctl: Controller[str] = Controller(
        lambda s: succeed(s.peer), reactor=net.reactor, keep_outcomes=0
    )
    result_of(ctl.listen("tcp:0"))
    serve(ctl, net, 2)
    assert (ctl.outcomes, ctl.dropped_outcomes, ctl.finished) == ([], 2, 2)
    d = ctl.next_outcome()
    assert not d.called
    serve(ctl, net, 1)
    assert result_of(d).peer == "127.0.0.1:40002" and ctl.dropped_outcomes == 2


class Silent(FakeEndpoint):
    """Connects and answers nothing (a slowloris of the setup)."""

    def handle(self, msg: Any) -> None:
        pass


def test_silent_endpoints_past_setup_max_close_the_oldest_and_a_real_one_is_served() -> None:
    """Endpoints that connect (plain TCP: anyone can) and never answer the start each held
    their descriptor for the 60 s answer timeout, with no cap: enough of them took every
    descriptor. Now at most `setup_max` wait in the setup, the oldest closed for each new
    one, in one log line for the episode."""
    net = Net()
    with captured_events() as events:
        ctl = result_of(listen(net.reactor, "tcp:0", time_experiment, setup_max=4))
        silent: list[Any] = []
        for _ in range(10):
            _port, factory, _b, _i = net.reactor.tcpServers[-1]
            peer = IPv4Address("TCP", "10.0.0.1", 30000 + len(silent))
            session: Any = factory.buildProtocol(peer)
            fake = Silent(net.reactor)
            net.pumps.append(iosim.connect(
                session, iosim.FakeTransport(session, isServer=True, peerAddress=peer),
                fake, iosim.makeFakeClient(fake), clock=net.reactor,
            ))  # fmt: skip
            silent.append(session)
            net.settle(2)
        assert [s.ended for s in silent] == [True] * 6 + [False] * 4
        assert ctl.setup_evicted == 6
        net.connect()  # a real one: the oldest silent one goes for it
        net.settle()
    assert silent[6].ended and not silent[7].ended
    served = [o for o in ctl.outcomes if o.ok]
    assert len(served) == 1 and isinstance(served[0].unwrap(), int)
    evicted = [o for o in ctl.outcomes if not o.ok]
    assert len(evicted) == 7
    assert evicted[0].failure is not None
    err = evicted[0].failure.value
    assert isinstance(err, SessionClosed) and isinstance(err.cause, SetupFailed)
    assert str(err.cause) == "closed for a newer endpoint (4 in the setup)"
    caps = events.where(fmt="(cap {cap})")
    assert len(caps) == 1 and caps[0]["cap"] == 4
    stopped = ctl.stop()
    net.settle()
    result_of(stopped)


class Garbled(FakeEndpoint):
    """Answers the start with a malformed mdata (an empty body)."""

    def handle(self, msg: Any) -> None:
        self.transport.write(b"\x41\x00\x00\x00")  # type: ignore[union-attr]


def test_a_flood_of_bad_endpoints_logs_one_line_each_within_a_budget_no_traceback() -> None:
    """Each endpoint failing its setup was 3 lines (the violation, the setup's loss, and
    "experiment ... failed" with a traceback), one set per connection at the endpoints'
    will. Now one line each, at most 20 a minute over all sessions, then counted."""
    net = Net()
    with captured_events() as events:
        ctl = result_of(listen(net.reactor, "tcp:0", time_experiment))
        for i in range(50):
            _port, factory, _b, _i = net.reactor.tcpServers[-1]
            peer = IPv4Address("TCP", "10.0.0.2", 30000 + i)
            session: Any = factory.buildProtocol(peer)
            fake = Garbled(net.reactor)
            net.pumps.append(iosim.connect(
                session, iosim.FakeTransport(session, isServer=True, peerAddress=peer),
                fake, iosim.makeFakeClient(fake), clock=net.reactor,
            ))  # fmt: skip
            net.settle(2)
        net.reactor.advance(61)
        net.connect()
        net.settle()
    assert ctl.finished == 51 and len([o for o in ctl.outcomes if o.ok]) == 1
    assert not [e for e in events if e.get("log_failure")]
    said = events.where(fmt="closing the session")
    assert len(said) == 20
    assert "malformed mdata from the endpoint (0-byte body)" in str(said[0]["error"])
    assert "the next ones are counted" in said[-1]["budget_note"]


class Vanishing(FakeEndpoint):
    """Answers the start, then closes instead of answering the next request."""

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Start):
            self.result()
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]


def test_an_endpoint_gone_under_the_experiment_is_one_line_not_a_traceback() -> None:
    """An endpoint that closes (or is cut) while the experiment waits on it: was
    "experiment on endpoint X failed" with a traceback of the controller's own frames;
    it is the endpoint's doing, one line with its reason."""
    net = Net()
    with captured_events() as events:
        ctl = result_of(listen(net.reactor, "tcp:0", time_experiment))
        _port, factory, _b, _i = net.reactor.tcpServers[-1]
        peer = IPv4Address("TCP", "10.0.0.3", 30000)
        session: Any = factory.buildProtocol(peer)
        fake = Vanishing(net.reactor)
        net.pumps.append(iosim.connect(
            session, iosim.FakeTransport(session, isServer=True, peerAddress=peer),
            fake, iosim.makeFakeClient(fake), clock=net.reactor,
        ))  # fmt: skip
        net.settle()
    (out,) = ctl.outcomes
    assert out.failure is not None and out.failure.check(SessionClosed)
    assert not [e for e in events if e.get("log_failure")]
    (line,) = events.where(fmt="ended with its session")
    assert "the endpoint closed the connection with 1 request unanswered" in str(line["error"])


def test_forgotten_frames_keep_their_text_when_clean_failure_does_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pytest-twisted makes Failure.cleanFailure a no-op; Failure computes its frames from
    # tb lazily, so with nothing formatting the failure first (logging begun to a quiet
    # observer, as `pktlab run` does) the frames came out of tb=None: an empty traceback.
    # test_a_failed_run_does_not_keep_its_session_alive failed so after any test that
    # began logging (tests/unit/test_run_reactor_sigterm.py).
    from twisted.python.failure import Failure

    from packetlab.controller.listener import _forget_frames

    monkeypatch.setattr(Failure, "cleanFailure", lambda self: None)

    def boom() -> None:
        raise RuntimeError("boom")

    try:
        boom()
    except RuntimeError:
        failure = Failure()
    _forget_frames(failure)
    assert failure.tb is None and failure.value is not None
    assert failure.value.__traceback__ is None
    assert "in boom" in failure.getTraceback()
