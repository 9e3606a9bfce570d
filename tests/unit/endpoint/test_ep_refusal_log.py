"""Refused requests a controller sends by the thousand cost a few log lines (session 20,
hard20). An nopen that cannot bind, an odd-length nopen, a raw send denied, an ncap
filter rejected and a request over a certificate limit each logged one line per
request: ~190 bytes of log per 17-byte request, and twistd keeps every rotated log file
(15,000 such requests: 2.9 MB in three files). Now at most 20 lines a minute per
session, then one line saying how many were left out; the answers are unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ep_fakes import Rig, udp_open
from testkit.logs import Events, captured_events

from packetlab import wire
from packetlab.endpoint.limits import LimitsGate
from packetlab.endpoint.sockets import OpenError
from packetlab.ppks import Limits
from packetlab.wire.constants import Status


@pytest.fixture
def lines() -> Iterator[Events]:
    with captured_events() as seen:
        yield seen


def refusals(seen: Events, word: str) -> list[str]:
    return seen.where(fmt=word).formats()


def test_nopens_that_cannot_bind_log_twenty_lines_a_minute(lines: Events) -> None:
    rig = Rig().started()
    rig.net.fail = OpenError(Status.ESKTNOADDR, "bind: address not available")
    for _ in range(5000):
        assert rig.send(udp_open(1)) == [wire.Result(Status.ESKTNOADDR)]
    assert len(refusals(lines, "refused")) == 20  # was 5,000
    rig.clock.now += 61 * 10**9  # a minute later: lines again, with the count
    rig.send(udp_open(1))
    got = lines.where(fmt="refused")
    assert len(got) == 21 and got[-1]["note"] == " [4980 not logged before this one]"


def test_odd_nopens_share_the_budget(lines: Events) -> None:
    rig = Rig().started()
    odd = wire.Framer().feed(b"\x2a\x00\x00\x08" + bytes([5, 4, 17]) + bytes(5))
    (item,) = list(odd)
    for _ in range(3000):
        assert rig.send(item) == [wire.Result(Status.ESKTNOADDR)]
    assert len(refusals(lines, "refused")) == 20


def test_requests_over_a_certificate_limit_log_twenty_lines_a_minute(
    lines: Events,
) -> None:
    rig = Rig()
    clock = rig.clock
    gate = LimitsGate(Limits(max_socket_count=1), None, clock, end_ns=clock() + 10**12)
    rig.session.gate = gate
    rig.started()
    assert rig.send(udp_open(1)) == [wire.Result(0)]
    for i in range(2000):
        assert rig.send(udp_open(2 + i % 200)) == [wire.Result(Status.ENORES)]
    assert gate.denied == 2000
    assert len(refusals(lines, "certificate limit")) == 20
