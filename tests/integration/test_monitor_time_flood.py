"""A monitor whose ndata check spins, and a peer sending datagrams to the session's socket,
on a real `twistd pktendpoint` (docs/monitors.md, "Monitor time").

Each spinning check costs the reactor one deadline (100 ms) at least: before the
session's monitor time was capped, 50 datagrams held an mread of the same session for
50 deadlines (5.6 s measured, session 30); now the monitors are entered until their time
is spent, and the rest are dropped and counted. Timing-based: marked serial; the bound is
half of what the 50 deadlines take at the least (wall-clock deadlines cannot run faster
on a loaded machine, only slower)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import DEFAULT_CONFIG, RawController
from test_monitors import ALLOW, LO, module, started

from packetlab import wire

pytestmark = pytest.mark.serial

DEADLINE = 0.1  # MonitorDeadlineMillsec 100, the default
# Spin on a datagram whose first byte is "s"; pass the others.
SPIN_ON_S = {
    "ndata": "(drop (call $read_vmem_region (i32.const 0) (i32.const 300) (i32.const 1)))"
    " (if (i32.eq (i32.load8_u (i32.const 300)) (i32.const 115)) (then (loop (br 0))))"
    " (i32.const 0)"
}
LPORT = 0x20000000 + 0x400 + 0x30  # socket 1's local port in vmem
RATE, SECONDS = 20, 3.0  # the peer's datagrams a second, for so long
N = int(RATE * SECONDS)


def spinning_udp_session(
    endpoint_factory: Any, tmp_path: Path, config: str = ""
) -> tuple[Any, RawController, int]:
    """An endpoint whose ndata check spins on "s" datagrams, its session started and a UDP
    socket 1 open: (the endpoint, the controller, the socket's local port)."""
    mon = module(tmp_path, "spin_on_s", ALLOW | SPIN_ON_S)
    config = DEFAULT_CONFIG + f"MonitorPersistentPath {tmp_path / 'pm.sqlite3'}\n" + config
    ep = endpoint_factory(config, args=["-m", str(mon)])
    c = ep.accept()
    started(c, 1)
    c.ok(wire.Nopen(sktid=1, family=4, proto=17, rbufsz=1 << 20, laddr=LO, lport=0))
    return ep, c, int.from_bytes(c.mread(LPORT, 2), "big")


def ok_once_time_is_back(c: RawController, peer: socket.socket, lport: int) -> wire.Ndata:
    """The peer sends "ok" every 0.5 s until the endpoint delivers an ndata (within 30 s):
    the same monitor instance works again once the session's monitor time is back."""
    end = time.monotonic() + 30
    while True:
        peer.sendto(b"ok", ("127.0.0.1", lport))
        try:
            return c.notification(wire.Ndata, timeout=0.5)
        except TimeoutError:
            assert time.monotonic() < end, c.notes


def flood_and_mread(
    c: RawController, peer: socket.socket, lport: int, rate: float, seconds: float
) -> list[float]:
    """The peer sends "s"*16 `rate` times a second for `seconds` (a thread) while the
    controller sends one mread after the other: their latencies (s)."""

    def send() -> None:
        t0 = time.monotonic()
        for i in range(int(rate * seconds)):
            left = t0 + i / rate - time.monotonic()
            if left > 0:
                time.sleep(left)  # pacing the peer, not waiting for the endpoint
            peer.sendto(b"s" * 16, ("127.0.0.1", lport))

    sender = threading.Thread(target=send)
    sender.start()
    lat = []
    try:
        while sender.is_alive():
            t = time.monotonic()
            c.send(wire.Mread(addr=LPORT, len=2))
            assert isinstance(c.response(timeout=60), wire.Mdata)
            lat.append(time.monotonic() - t)
    finally:
        sender.join()
    return lat


def test_a_flood_at_a_spinning_ndata_monitor_does_not_hold_the_session(
    endpoint_factory: Any, tmp_path: Path
) -> None:
    ep, c, lport = spinning_udp_session(endpoint_factory, tmp_path)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        lat = flood_and_mread(c, peer, lport, RATE, SECONDS)
        # Before: the reactor read the flood in one batch of up to 64 datagrams, each
        # checked for a deadline at least (wall clock: a loaded machine only makes it
        # longer), so an mread waited for about all 60 (6.8 s measured). Now: the calls
        # the saved-up time allows (3 of ~110 ms), then one every ~0.2 s.
        assert max(lat) < N * DEADLINE / 2, f"mread latencies {sorted(lat)[-5:]}"
        # The same instance keeps working once the time has refilled (~0.2 s at 500 ms a
        # second): "ok" is delivered, after one ndrop for the datagrams not checked.
        assert ok_once_time_is_back(c, peer, lport).data == b"ok"
        dropped = sum(m.unitcnt for m in c.notes if isinstance(m, wire.Ndrop))
        assert 0 < dropped < N, c.notes  # (one ndrop, unless an episode ended early)
    finally:
        peer.close()
    c.close()
    lines = [ln for ln in ep.output().splitlines() if "monitor time" in ln]
    assert len(lines) >= 1 and "spent (500 ms a second" in lines[0], lines
