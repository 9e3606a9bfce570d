"""Backpressure on the records TLS writes of its own accord, on the pyOpenSSL record path
(session 20, tlsbp20; `packetlab.tls.backlog`). OpenSSL answers each KeyUpdate with
update_requested at once: a controller that sent them (a byte of data after every 31)
and read nothing grew the endpoint without bound. Now the link stops reading once 16 KiB
of our own records wait unsent, reads again when they drain, and is cut when they stay
unread for 30 s. The application's own writes do not count (they have their own
backpressure).

In memory (iosim): the endpoint (client) on pyOpenSSL, the controller (server) on the
Python record layer, which writes the KeyUpdates; the bytes the fake transport holds
stand for the TCP transport's unsent buffer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_tls_takeover import Link, link, warnings
from testkit.logs import Events
from twisted.internet.testing import MemoryReactorClock

from packetlab.tls import backlog
from packetlab.tls.protocol import PPKSTLSProtocol
from packetlab.tls.records import MAX_KEY_UPDATES, RecordLayer

__all__ = ["warnings"]  # the fixture, imported for its use here


class Reading:
    """The fake transport's pause/resume, and its unsent bytes (what the peer has not read)."""

    def __init__(self, lk: Link) -> None:
        transport: Any = lk.client.transport
        self.transport = transport
        self.paused = False
        transport.pauseProducing = self.pause
        transport.resumeProducing = self.resume

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def unsent(self) -> int:
        return unsent(self.transport)

    def peer_reads(self) -> None:
        self.transport.stream.clear()


def unsent(transport: Any) -> int:
    return sum(map(len, transport.stream))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Link, Reading, MemoryReactorClock]]:
    clock = MemoryReactorClock()
    monkeypatch.setattr(
        PPKSTLSProtocol, "_unsent", lambda self: unsent(self.transport), raising=False
    )
    monkeypatch.setattr(PPKSTLSProtocol, "clock", clock, raising=False)
    lk = link(record_layers=("openssl", "python"))
    assert lk.client.record_path == "openssl" and lk.server.record_path == "python"
    reading = Reading(lk)
    yield lk, reading, clock


def flood(lk: Link, cycles: int) -> None:
    """`cycles` times 31 KeyUpdates (update_requested) and a byte of data, in one read
    each; the controller reads none of the answers."""
    ctl: RecordLayer | None = lk.server._records
    assert ctl is not None
    for _ in range(cycles):
        updates = b"".join(ctl.key_update(request=True) for _ in range(MAX_KEY_UPDATES - 1))
        lk.client.dataReceived(updates + ctl.seal(b"x"))


def cycles_for(nbytes: int) -> int:
    return nbytes // ((MAX_KEY_UPDATES - 1) * 27) + 1  # an answer is a 27-byte record


def test_reading_stops_once_our_answers_pile_up_and_resumes_when_read(
    world: tuple[Link, Reading, MemoryReactorClock],
) -> None:
    lk, reading, clock = world
    flood(lk, cycles_for(backlog.OWN_BOUND // 2))
    assert not reading.paused
    flood(lk, cycles_for(backlog.OWN_BOUND // 2) + 1)
    assert reading.paused  # was never: the answers grew without bound
    assert reading.unsent() > backlog.OWN_BOUND
    clock.advance(backlog.CHECK_EVERY)
    assert reading.paused
    reading.peer_reads()
    clock.advance(backlog.CHECK_EVERY)
    assert not reading.paused
    assert lk.client_app.data.endswith(b"x")  # the link goes on
    assert not lk.client.disconnecting


def test_a_peer_that_never_reads_is_cut_with_a_log_line(
    world: tuple[Link, Reading, MemoryReactorClock], warnings: Events
) -> None:
    lk, reading, clock = world
    flood(lk, cycles_for(backlog.OWN_BOUND) + 1)
    assert reading.paused
    clock.pump([backlog.CHECK_EVERY] * int(backlog.UNREAD_DEADLINE / backlog.CHECK_EVERY - 1))
    assert not lk.client._aborted
    clock.advance(backlog.CHECK_EVERY)
    assert lk.client._aborted
    said = warnings.lines()
    assert len(said) == 1 and "unread for 30 s" in said[0], said
    assert "answers to its KeyUpdates" in said[0]


def test_the_applications_own_writes_do_not_count(
    world: tuple[Link, Reading, MemoryReactorClock],
) -> None:
    lk, reading, _ = world
    lk.client.write(b"m" * (4 * backlog.OWN_BOUND))  # uncorked: TLSMemoryBIOProtocol._write
    lk.client.cork()
    for _ in range(100):
        lk.client.write(b"n" * 1000)
    lk.client.uncork()  # corked: _emit
    assert reading.unsent() > 4 * backlog.OWN_BOUND
    flood(lk, 2)  # 62 answers behind the application's bytes
    assert not reading.paused


def test_the_application_and_the_backlog_pause_reading_together(
    world: tuple[Link, Reading, MemoryReactorClock],
) -> None:
    lk, reading, clock = world
    lk.client.pauseProducing()  # the endpoint's outbox is full, say
    flood(lk, cycles_for(backlog.OWN_BOUND) + 1)
    lk.client.resumeProducing()
    assert reading.paused  # our own bytes still wait
    lk.client.pauseProducing()
    reading.peer_reads()
    clock.advance(backlog.CHECK_EVERY)
    assert reading.paused  # the application's pause holds
    lk.client.resumeProducing()
    assert not reading.paused


def test_links_whose_own_records_all_leave_at_once_keep_no_backlog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker holds many quiet links: those never queue TLS's own records."""
    monkeypatch.setattr(PPKSTLSProtocol, "_unsent", lambda self: 0, raising=False)
    lk = link(record_layers=("openssl", "python"))
    flood(lk, 3)
    assert lk.client._backlog is None and lk.server._backlog is None
