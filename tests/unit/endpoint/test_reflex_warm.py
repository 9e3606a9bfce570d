"""The reflex rehearsal while busy-polling (packetlab.endpoint.reflexwarm, docs/reflexes.md):
a shadow replays the socket's latest packet through the same code and never touches the
real session, its socket, its counters or the controller."""

from __future__ import annotations

from typing import Any

import pytest
from ep_fakes import LO4, T0, Rig
from test_ep_busypoll import EV, spinner
from test_reflex_gate import ECHO, TRAP, attach, block, detach, frames, make_rig, opened, send, w

from packetlab import wire
from packetlab.endpoint.config import ConfigError, parse_config
from packetlab.endpoint.reflexes import ReflexGate


def warm_rig(every_us: int = 100) -> tuple[Rig, ReflexGate, Any]:
    r, g = make_rig()
    g.service.rehearse_loopback = False  # unit tests make no sockets
    p, _ = spinner([EV], window_us=1000)
    g.service.warm_on(p, every_us)
    return r, g, p


def test_off_without_busy_poll_or_with_zero() -> None:
    for spin, every in ((None, 100), (spinner([])[0], 0)):
        r, g = make_rig()
        g.service.warm_on(spin, every)
        opened(r)
        send(r, attach(1, w(ECHO)))
        assert g.service.rehearsals == []
        assert g.attached[r.skt(1)].rehearsal is None


def test_rehearsal_replays_the_latest_packet_without_touching_the_session() -> None:
    r, g, _ = warm_rig()
    opened(r)
    assert send(r, attach(1, w(ECHO), b"\x01")) == [wire.Result(0)]
    (reh,) = g.service.rehearsals
    g.service.rehearse()
    assert reh.runs == 0  # nothing received yet: nothing to replay
    r.session.udp_received(r.skt(1), b"ping", T0, LO4, 4242)
    assert [p.data for p in r.io(1).sent] == [b"Ring"]
    before = (frames(r), block(r, 1))
    used = r.session.budget.used
    for _ in range(5):
        g.service.rehearse()
    assert reh.runs == 5
    shadow = reh.gate.attached[reh.skt]
    assert (shadow.runs, shadow.sent, shadow.passed) == (5, 5, 5)
    # The real socket sent nothing more; no frame, counter or budget moved.
    assert [p.data for p in r.io(1).sent] == [b"Ring"]
    assert frames(r) == []
    assert block(r, 1) == before[1]
    assert r.session.budget.used == used


def test_a_closed_socket_is_not_rehearsed() -> None:
    r, g, _ = warm_rig()
    opened(r)
    send(r, attach(1, w(ECHO), b"\x01"))
    r.session.udp_received(r.skt(1), b"ping", T0, LO4, 4242)
    (reh,) = g.service.rehearsals
    assert send(r, wire.Nclose(1))[-1] == wire.Result(0)
    g.service.rehearse()
    assert reh.runs == 0


def test_the_spin_rehearses_at_most_once_per_period() -> None:
    r, g, p = warm_rig(every_us=10)
    opened(r)
    send(r, attach(1, w(ECHO), b"\x01"))
    r.session.udp_received(r.skt(1), b"ping", T0, LO4, 4242)
    (reh,) = g.service.rehearsals
    p.poll(-1, 8)  # I/O: the next poll spins (1 ms window, 1 µs per clock reading)
    p.poll(-1, 8)
    # ~1000 turns of the spin, a rehearsal every 10 µs of the spinner's clock at most
    assert 1 <= reh.runs <= 1000 // 10 + 1


def test_detach_and_a_trapping_reflex_drop_the_rehearsal() -> None:
    r, g, _ = warm_rig()
    opened(r)
    send(r, attach(1, w(ECHO)))
    (reh,) = g.service.rehearsals
    assert send(r, detach(1)) == [wire.Result(0)]
    assert g.service.rehearsals == [] and not reh.ok
    send(r, attach(1, w(TRAP)))
    (reh,) = g.service.rehearsals
    r.session.udp_received(r.skt(1), b"ping", T0, LO4, 4242)  # the real one traps
    assert g.service.rehearsals == [] and not reh.ok


def test_a_shadow_that_traps_stops_rehearsing_alone() -> None:
    r, g, _ = warm_rig()
    opened(r)
    send(r, attach(1, w(ECHO), b"\x01"))
    (reh,) = g.service.rehearsals
    r.session.udp_received(r.skt(1), b"ping", T0, LO4, 4242)
    reh.packet = (b"x" * 70_000, T0, LO4, 4242)  # too long for its packet buffer: it fails
    g.service.rehearse()
    assert not reh.ok
    g.service.rehearse()  # stays off, the real reflex runs on
    r.session.udp_received(r.skt(1), b"pong", T0, LO4, 4242)
    assert [p.data for p in r.io(1).sent] == [b"Ring", b"Rong"]


def test_config_key() -> None:
    assert parse_config([]).reflex_warm_us == 100  # only while BusyPollUs spins
    assert parse_config(["ReflexWarmUs 0"]).reflex_warm_us == 0
    with pytest.raises(ConfigError, match="ReflexWarmUs"):
        parse_config(["ReflexWarmUs -1"])


def test_on_spin_runs_first_in_each_turn_and_a_read_ends_the_poll() -> None:
    calls: list[str] = []
    p, ep = spinner([EV, [], [], EV], window_us=1000)
    reads = iter([False, True])

    def on_spin() -> bool:
        calls.append(f"spin after {len(ep.calls)} polls")
        return next(reads, False)

    p.on_spin = on_spin
    p.poll(-1, 8)  # blocking: no on_spin
    assert calls == []
    assert p.poll(-1, 8) == []  # the second turn's on_spin read a socket itself
    assert calls == ["spin after 1 polls", "spin after 2 polls"]
    assert ep.calls == [-1, 0]  # on_spin came before each turn's poll; none after the read
