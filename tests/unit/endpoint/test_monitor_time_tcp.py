"""A session's monitor time spent while a TCP socket receives (docs/monitors.md, "Monitor
time"): the socket stops reading until the time is back (§3.5: flow control), rather than
losing chunks out of the middle of the stream. Over fakes: the monitor's calls cost what
the fake clock says, the reader is netio's loop in a few lines, the timer a list."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ep_fakes import LO4, Rig, tcp_open
from test_monitor_time import SLOW, Slow, rig
from twisted.logger import capturedLogs, formatEvent

from packetlab import wire
from packetlab.endpoint.monitors import MonitorGate


class Timers:
    """call_later over the fake clock: (when, what), fired by the test."""

    def __init__(self, slow: Slow) -> None:
        self.slow = slow
        self.set: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, f: Callable[[], None]) -> Timers:
        self.set.append((self.slow.now + delay, f))
        return self

    def active(self) -> bool:
        return bool(self.set)

    def cancel(self) -> None:
        self.set.clear()

    def fire(self) -> None:
        when, f = self.set.pop(0)
        self.slow.now = max(self.slow.now, when)
        f()


def paced(tmp_path: Path) -> tuple[Rig, Slow, Timers]:
    r, slow = rig(tmp_path, SLOW, time_ms=100)
    gate = r.session.gate
    assert isinstance(gate, MonitorGate)
    timers = Timers(slow)
    r.session.receiving.pace_tcp(gate.ndata_wait, timers)  # as the tap wires it
    assert r.send(tcp_open()) == [wire.Result(0)]
    r.session.tcp_established(r.skt(2), LO4, 40000, LO4, 80)
    r.new()
    return r, slow, timers


def read(r: Rig, chunks: list[bytes]) -> list[bytes]:
    """netio's TCP reader: read while there is room, else stop and say so; what is left."""
    skt = r.skt(2)
    while chunks:
        if r.session.recv_room(skt) <= 0:
            r.session.tcp_blocked(skt)
            return chunks
        r.session.tcp_received(skt, chunks.pop(0), 100)
    return chunks


def test_tcp_stops_reading_while_the_monitor_time_is_spent_and_loses_nothing(
    tmp_path: Path,
) -> None:
    # Before review33A: each chunk read while the time was spent was dropped and counted
    # (7 of 10 here: 7,000 bytes out of the middle of the stream), and the socket kept
    # reading. Two checks now (nothing comes back while the monitors run, session 34).
    r, slow, timers = paced(tmp_path)
    slow.cost = 0.11  # each check: a deadline and a tick (two deadlines saved up)
    stream = [bytes([65 + i]) * 1000 for i in range(10)]
    with capturedLogs() as events:
        left = read(r, list(stream))
        assert len(left) == 8 and r.skt(2).read_blocked
        assert len(timers.set) == 1  # one wake-up, when the debt is paid
        got = [m.data for m in r.new() if isinstance(m, wire.Ndata)]
        stops = 1
        while left:
            timers.fire()
            assert r.io(2).resumed == stops
            left = read(r, left)
            stops += bool(left)
            got += [m.data for m in r.new() if isinstance(m, wire.Ndata)]
        r.session.gate.close()
    assert got == stream  # every byte, in order
    assert (r.skt(2).drop_pkts, r.skt(2).drop_bytes) == (0, 0)
    # One episode: its start, and its end with the counts (the stops, no drop).
    lines = [formatEvent(e) for e in events if "monitor time" in formatEvent(e)]
    assert len(lines) == 2 and "TCP sockets stop reading" in lines[0], lines
    assert "0 received chunk(s) dropped" in lines[1], lines
    assert f"TCP reading paused {stops} time(s)" in lines[1], lines


def test_no_timer_is_left_at_the_sessions_end(tmp_path: Path) -> None:
    r, slow, timers = paced(tmp_path)
    slow.cost = 0.3
    assert len(read(r, [b"x" * 100, b"y" * 100])) == 1
    assert timers.set
    r.session.receiving.stop_pacing()
    assert not timers.set


def test_udp_is_not_paced(tmp_path: Path) -> None:
    """Datagrams have no flow control: dropped and counted as before (the peer's pace)."""
    r, slow, _ = paced(tmp_path)
    slow.cost = 0.3
    r.session.udp_received(r.skt(1), b"x" * 16, 100, bytes(4), 53)
    assert r.session.recv_room(r.skt(1)) > 0
    r.session.udp_received(r.skt(1), b"x" * 16, 101, bytes(4), 53)
    assert r.skt(1).drop_pkts == 1
