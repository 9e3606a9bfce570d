"""`cli.lost.Arrivals`, the one piece `pktlab campaign` and `pktlab run --listen
--endpoints N` share for endpoints arriving (read for their HOSTID, then into the pool)
and lost before the start: over fake sessions, its HOSTID read faked. Both callers' own
words are tested in test_cli_campaign_pool.py and test_run_command_pool.py."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

import packetlab.controller
from packetlab.cli.lost import Arrivals, Record


class Session:
    """What `Arrivals` and the pool use of a session: its peer, its end, why it ended."""

    def __init__(self, peer: str, hostid: str | None) -> None:
        self.peer, self.hostid = peer, hostid  # hostid None: gone before saying it
        self.close_reason: str | None = None
        self.waiters: list[Deferred[None]] = []

    def when_closed(self) -> Deferred[None]:
        self.waiters.append(Deferred())
        return self.waiters[-1]

    def close(self, why: str) -> None:
        self.close_reason = why
        for d in self.waiters:
            d.callback(None)


class Info:
    def __init__(self, hostid: str) -> None:
        self.hostid = hostid


@pytest.fixture
def field(monkeypatch: pytest.MonkeyPatch) -> tuple[Arrivals, list[Record], list[str]]:
    async def read(session: Session) -> Info:
        if session.hostid is None:
            raise ConnectionError("gone")
        return Info(session.hostid)

    monkeypatch.setattr(packetlab.controller, "read_system_info", read)
    told: list[Record] = []
    heard: list[str] = []
    return Arrivals(2, MemoryReactorClock(), told.append, here=heard.append), told, heard


def come(arrivals: Arrivals, session: Session) -> Deferred[None]:
    return Deferred.fromCoroutine(arrivals.arrive(session))


def test_lost_while_waiting_is_told_once_with_its_hostid_and_forgotten(field: Any) -> None:
    arrivals, told, heard = field
    s = Session("10.0.0.1:4000", "early")
    come(arrivals, s)
    assert heard == ["early"] and arrivals.hostids == {s: "early"}
    s.close("watchdog: silent for 30 s")
    assert told == [{"type": "lost", "endpoint": "early", "hostid": "early",
                     "address": "10.0.0.1:4000", "when": "before the start",
                     "records": 0, "reason": "watchdog: silent for 30 s"}]  # fmt: skip
    assert heard[-1] == "early lost" and arrivals.hostids == {}
    assert arrivals.pool.waiting == []


def test_gone_before_its_hostid_is_told_by_its_address_and_heard(field: Any) -> None:
    # The campaign's progress line said nothing of this one (it kept the last arrival's
    # name) while it said "X lost" for one lost waiting: now both.
    arrivals, told, heard = field
    come(arrivals, Session("10.0.0.9:4000", None))
    assert [(r["endpoint"], r["hostid"], r["reason"]) for r in told] == [
        ("10.0.0.9:4000", "", "the endpoint closed the connection")
    ]
    assert heard == ["10.0.0.9:4000 lost"] and arrivals.pool.waiting == []


def test_after_the_start_nothing_is_told(field: Any) -> None:
    arrivals, told, heard = field
    a, b = Session("10.0.0.1:4000", "a"), Session("10.0.0.2:4000", "b")
    come(arrivals, a)
    come(arrivals, b)
    sessions: list[Any] = []
    Deferred.fromCoroutine(arrivals.pool.wait()).addCallback(sessions.extend)
    assert sessions == [a, b]
    arrivals.started = True
    a.close("cut")
    come(arrivals, Session("10.0.0.3:4000", None))  # a late one, gone before its HOSTID
    assert told == [] and heard == ["a", "b"]
    assert arrivals.hostids == {a: "a", b: "b"}  # the pool holds them: the runs name them
