"""Hostile endpoints against a real `pktlab campaign` (our passive controller, session 21).

A campaign listens for endpoints from the field; each one here answers the start, then
misbehaves while the campaign reads its system block (lying lengths, a request type, a
result for the wrong request, answers out of order or of the wrong size, floods of stray
notifications, unknown types and huge linfo, a close mid-frame). Each must be one
`lost before the start` record with a clear reason, the campaign's memory must stay
bounded, no traceback, and a real endpoint arriving after them is served.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from hostile_endpoint import HostileEndpoint
from procstat import rss_kib
from pxworld import EndpointProc
from test_campaign import ENV, REPO, free_port, stop
from test_hostile_fd_exhaustion import low_nofile, silent_flood
from testkit.poll import poll_until
from tls_world import pktlab_init

from packetlab import wire
from packetlab.controller.local import twistd_command
from packetlab.wire import vmem

RSS_BOUND_KIB = 16 * 1024
Scenario = Callable[[HostileEndpoint, list[wire.Mread]], None]


def _lying_length(ep: HostileEndpoint, reads: list[wire.Mread]) -> None:
    ep.raw(b"\x41\xff\xff\xff")  # an mdata of 2^24 - 1 bytes


def _empty_mdata(ep: HostileEndpoint, reads: list[wire.Mread]) -> None:
    ep.raw(b"\x41\x00\x00\x00")


def _one_byte_mdata(ep: HostileEndpoint, reads: list[wire.Mread]) -> None:
    ep.raw(b"\x41\x00\x00\x01\x00")


def _wrong_request(ep: HostileEndpoint, reads: list[wire.Mread]) -> None:
    ep.send(wire.Result())  # a result where an mdata is due


def _out_of_order(ep: HostileEndpoint, reads: list[wire.Mread]) -> None:
    ep.answer(reads[1:2])


def _wrong_size(ep: HostileEndpoint, reads: list[wire.Mread]) -> None:
    ep.send(wire.Mdata(reads[0].addr, bytes(reads[0].len - 1)))


def _request_type(ep: HostileEndpoint, reads: list[wire.Mread]) -> None:
    ep.send(wire.Start())


def _stray_notes(ep: HostileEndpoint, reads: list[wire.Mread]) -> None:
    """20,000 ndata (20 MB) and nstat/ntag for sockets never opened, then a close."""
    nd = wire.encode(wire.Ndata(7, 4, 17, 1, bytes(1000), b"\x7f\0\0\x01", 9))
    other = wire.encode(wire.Nstat(9, 4, 6, 1, 0)) + wire.encode(wire.Ntag(3, 5, 1))
    for _ in range(200):
        ep.raw(nd * 100 + other)
    ep.close()


def _unknown_then_half_a_frame(ep: HostileEndpoint, reads: list[wire.Mread]) -> None:
    """50,000 tiny frames of an undefined type, then half an mdata, then a close."""
    ep.raw(b"\x00\x00\x00\x00" * 50_000)
    ep.raw(wire.encode(wire.Mdata(reads[0].addr, bytes(reads[0].len)))[:10])
    ep.close()


SCENARIOS: list[tuple[str, Scenario, str]] = [
    ("length 2^24-1", _lying_length, "announced a frame (mdata) with a 16777215-byte body"),
    ("length 0", _empty_mdata, "malformed mdata from the endpoint (0-byte body)"),
    ("length 1", _one_byte_mdata, "malformed mdata from the endpoint (1-byte body)"),
    ("wrong request", _wrong_request, "answered mread with result(SUCCESS) instead of mdata"),
    ("out of order", _out_of_order, f"mdata for 0x{vmem.IP4LS.addr:08x}"),
    ("wrong size", _wrong_size, "bytes) answers mread"),
    ("request type", _request_type, "a message it must not send: start"),
    ("stray notes", _stray_notes, "closed the connection with 6 requests unanswered"),
    ("unknown, half", _unknown_then_half_a_frame, "in the middle of a frame (mdata, 10 of"),
]


def test_a_campaign_outlives_hostile_endpoints_and_serves_a_real_one(tmp_path: Path) -> None:
    port = free_port()
    ctl = subprocess.Popen(
        [sys.executable, "-m", "packetlab", "campaign", "clocksync", "--rounds", "2",
         "--interval", "0.2", "--listen", f"127.0.0.1:{port}", "--endpoints", "1",
         "--insecure-plaintext", "--json", "--timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO,
    )  # fmt: skip
    assert ctl.stderr is not None and ctl.stdout is not None
    stdout = ctl.stdout
    assert "waiting for 1 endpoint" in ctl.stderr.readline()
    real: list[subprocess.Popen[bytes]] = []
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
    reader.start()

    def lost_said(n: int) -> None:
        poll_until(lambda: sum('"lost"' in x for x in lines) >= n, what=f"{n} lost records")

    try:
        base = rss_kib(ctl.pid)
        peak = base
        for i, (name, scenario, _why) in enumerate(SCENARIOS):
            ep = HostileEndpoint(port)
            ep.answer_start()
            scenario(ep, ep.system_reads())
            assert ep.closed_by_peer(), name
            ep.close()
            lost_said(i + 1)
            peak = max(peak, rss_kib(ctl.pid))
        # 140 linfo of ~1 MiB (under the frame bound): all kept while the session lived
        ep = HostileEndpoint(port)
        ep.answer_start()
        ep.system_reads()
        big = wire.encode(wire.Linfo(b"monitor", b"\0\0", bytes(1000_000)))
        for _ in range(140):
            ep.raw(big)
        ep.send(wire.Start())  # then a violation: its end says the linfo were all read
        assert ep.closed_by_peer()
        ep.close()
        lost_said(len(SCENARIOS) + 1)
        peak = max(peak, rss_kib(ctl.pid))
        real = [subprocess.Popen(
            [*twistd_command(), "-n", "--pidfile=", "pktendpoint", "--insecure-plaintext",
             "--config", os.devnull, "--host-id", "real", "--reconnect-delay", "60",
             f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=REPO,
        )]  # fmt: skip
        ctl.wait(90)
        err = ctl.stderr.read()
    finally:
        stop([ctl, *real])
        reader.join(10)
    assert ctl.returncode == 0, err
    records = [json.loads(x) for x in lines]
    lost = [r for r in records if r["type"] == "lost"]
    assert len(lost) == len(SCENARIOS) + 1, lost
    for r, (name, _, why) in zip(lost, SCENARIOS, strict=False):
        print(f"{name}: {r['reason']}")
        assert r["when"] == "before the start" and why in r["reason"], (name, r["reason"])
    assert "a message it must not send: start" in lost[-1]["reason"]
    assert [r["endpoint"] for r in records if r["type"] == "clockmodel"] == ["real"]
    assert "Traceback" not in err and "Unhandled" not in err, err[-3000:]
    grew = peak - base
    print(f"campaign RSS {base} KiB before, {peak} KiB at the peak (+{grew} KiB)")
    assert grew < RSS_BOUND_KIB, f"RSS grew by {grew} KiB"


def test_a_tls_campaign_serves_a_real_endpoint_through_silent_and_hostile_ones(
    tmp_path: Path,
) -> None:
    """Over TLS 1.3, under a 256-descriptor limit: 300 connections that never send a
    ClientHello, then an endpoint with a valid chain that answers the start and stops
    mid-frame. The silent ones held a descriptor each for the 30 s handshake deadline
    (no cap on `pktlab run`/`campaign --listen`), so the real endpoint was closed at
    accept until they expired; now the oldest in the handshake is closed past 32, the
    hostile one is one `lost` record, and the real one is served at once."""
    home = pktlab_init(tmp_path / "home").root
    port = free_port()
    with low_nofile():
        ctl = subprocess.Popen(
            [sys.executable, "-m", "packetlab", "campaign", "clocksync", "--rounds", "2",
             "--interval", "0.2", "--listen", f"127.0.0.1:{port}", "--home", str(home),
             "--endpoints", "1", "--json", "--timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO,
        )  # fmt: skip
    assert ctl.stderr is not None
    assert "waiting for 1 endpoint" in ctl.stderr.readline()
    real = None
    try:
        with silent_flood(port, ctl.pid):
            ep = HostileEndpoint(port, home)
            ep.answer_start()
            reads = ep.system_reads()
            ep.raw(wire.encode(wire.Mdata(reads[0].addr, bytes(reads[0].len)))[:7])
            ep.close()
            real = EndpointProc(tmp_path, home, f"127.0.0.1:{port}", "--host-id", "real")
            out, err = ctl.communicate(timeout=20)  # was: ~30 s (the flood's deadlines)
    finally:
        stop([ctl])
        if real is not None:
            real.stop()
    assert ctl.returncode == 0, err
    records = [json.loads(x) for x in out.splitlines()]
    (lost,) = [r for r in records if r["type"] == "lost"]
    assert "in the middle of a frame (mdata, 7 of" in lost["reason"], lost
    assert [r["endpoint"] for r in records if r["type"] == "clockmodel"] == ["real"]
    assert "Traceback" not in err and "EMFILE" not in err, err[-3000:]


# A controller (the library's `listen`) whose experiment opens a UDP socket and then reads
# the endpoint's clock without reading the socket: one line per outcome on stdout.
UNREAD_SOCKET_CONTROLLER = """
import sys
from twisted.internet import reactor
from packetlab.controller import listen, read_time

async def experiment(session):
    await session.nopen_udp(1)
    return await read_time(session)

def report(outcome):
    print(outcome.peer, "ok" if outcome.ok else outcome.failure.getErrorMessage(), flush=True)
    ctl.next_outcome().addCallback(report)

def listening(c):
    global ctl
    ctl = c
    print("listening", c.port.getHost().port, flush=True)
    c.next_outcome().addCallback(report)

listen(reactor, "tcp:0:interface=127.0.0.1", experiment, answer_timeout=2.0).addCallback(listening)
reactor.run()
"""


def line_within(out: IO[str], seconds: float) -> str:
    """The next line the controller prints (each is flushed alone), or "" after `seconds`."""
    ready, _, _ = select.select([out], [], [], seconds)
    return out.readline() if ready else ""


def test_an_ndata_flood_on_a_socket_nobody_reads_is_bounded_and_ends_the_session() -> None:
    """The endpoint answers the nopen, then floods ndata on that socket (200 MB offered)
    with the clock read's answer behind: reads pause once 4 MiB are queued (memory
    bounded, the endpoint's sends stall), and the session, answers stuck behind a queue
    the experiment never reads, ended after the answer timeout naming the socket (it was
    a hang for ever). A real-size RSS figure is printed; the next endpoint is served."""
    ctl = subprocess.Popen([sys.executable, "-c", UNREAD_SOCKET_CONTROLLER],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=ENV, cwd=REPO)  # fmt: skip
    assert ctl.stdout is not None
    try:
        port = int(ctl.stdout.readline().split()[1])
        base = rss_kib(ctl.pid)
        ep = HostileEndpoint(port)
        ep.answer_start()
        (nopen,) = ep.read(1)
        assert isinstance(nopen, wire.Nopen)
        ep.send(wire.Result())
        (mread,) = ep.read(1)
        nd = wire.encode(wire.Ndata(1, 4, 17, 1, bytes(60_000), b"\x7f\0\0\x01", 9))
        ep.sock.settimeout(1.0)
        sent = 0
        try:
            while sent < 200_000_000:
                ep.raw(nd * 10)
                sent += len(nd) * 10
        except (TimeoutError, OSError):
            pass  # stalled (the controller stopped reading), or cut
        peak = rss_kib(ctl.pid)
        line = line_within(ctl.stdout, 20)  # the outcome, after the 2 s answer timeout
        assert "socket 1 has" in line and "the experiment took none for 2 s" in line, line
        assert ep.closed_by_peer()
        ep.close()
        good = HostileEndpoint(port)
        good.answer_start()
        good.read(1)
        good.send(wire.Result())
        (mread,) = good.read(1)
        assert isinstance(mread, wire.Mread)
        good.send(wire.Mdata(mread.addr, bytes(mread.len)))
        assert line_within(ctl.stdout, 20).split()[1] == "ok"
        good.close()
    finally:
        ctl.kill()
        ctl.wait(10)
    err = ctl.stderr.read() if ctl.stderr else ""
    assert "Traceback" not in err, err[-3000:]
    print(f"controller RSS {base} KiB, {peak} KiB with {sent // 1_000_000} MB offered")
    assert sent < 200_000_000  # the endpoint's sends stalled
    assert peak - base < RSS_BOUND_KIB, f"RSS grew by {peak - base} KiB"
