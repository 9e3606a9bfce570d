"""Seeded mutation fuzzing of a real ``twistd pktendpoint`` from its controller's side
(session 32, fuzz32): plaintext on loopback, and over TLS after a valid handshake.

The inputs are the reference sessions' controller frames (shared/spec/traces) mutated by
`fuzz32.mutate` (flipped bytes, cut, lying length fields, wrong and unknown types,
headers that claim more or less), then mread/mwrite at the edges of every vmem region
(`fuzz32.memory_requests`), then frames of every type with every body size 0..23 (each
read by the endpoint: after a session ended by a malformed one, the next session goes on
with the frame after it). Each session gets a valid `start` or a mutated one, a batch of
mutated frames (over TLS, in three sessions of five, cut into records of 1-64 bytes),
then our half-close: the endpoint must answer only with well-formed frames, close the
session within the deadline, log no traceback, and afterwards serve a fresh session,
hold no more descriptors than before and at most `RSS_BOUND_KIB` more memory. Addresses
that decode are pointed back at loopback first (`fuzz32.wire_safe`), at a responder that
answers each TCP segment and UDP datagram.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EndpointProcess, RawController
from fuzz32 import (
    every_type_and_size,
    log_alarms,
    memory_requests,
    mutate,
    rng_for,
    trace_sessions,
    wire_safe,
)
from procstat import Sample, sample, settle
from record_controller import RecordController, RecordSocket
from tls_world import TLSEndpoint, pktlab_init

from packetlab import wire
from packetlab.wire import vmem

pytestmark = pytest.mark.slow

RSS_BOUND_KIB = 16 * 1024
SESSIONS = 600  # per target: each a start and BATCH mutated frames
BATCH = 16
SIZES = 24  # every type with bodies of 0..SIZES-1 bytes
MEMORY_SESSIONS = 40  # each 64 mread/mwrite at the vmem regions' edges
START = wire.encode(wire.Start())


def fd_targets(pid: int) -> list[str]:
    """What each descriptor of `pid` is (for a leak's message)."""
    out = []
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            out.append(f"{fd}:{os.readlink(f'/proc/{pid}/fd/{fd}')}")
        except OSError:
            pass
    return out


class Target:
    """An endpoint and how to get a session of it (plaintext or TLS)."""

    def __init__(self, accept: Callable[[], RawController], pid: int, log: Callable[[], str]):
        self.accept, self.pid, self.log = accept, pid, log
        self.inputs = 0
        self.answers = 0
        self.port = 0  # the responder's (TCP and UDP): every decoded rport is set to it

    def served(self, fds: int | None = None) -> Sample:
        """A fresh session answers; the endpoint's figures taken while it is open (after
        its close the endpoint's next connection comes at any moment: a descriptor more
        or less), once it holds at most `fds` descriptors (bounded wait)."""
        c = self.accept()
        c.start()
        assert c.mread(vmem.HOSTID.addr, 4) != b""
        s = sample(self.pid) if fds is None else settle(self.pid, fds=fds, seconds=10)
        c.close()
        return s

    def throw(self, frames: list[bytes], record: int = 0) -> int:
        """One session: the frames (over TLS in records of `record` bytes, 0: one), our
        half-close, then every answer until its close; the number of responses (one per
        request read, PROTOCOL.md §1.1)."""
        c = self.accept()
        data = wire_safe(b"".join(frames), self.port)
        self.inputs += len(frames)
        try:
            if isinstance(c.sock, RecordSocket) and record:
                c.sock.send_records(data, record)  # frames cut across records
            else:
                c.sock.sendall(data)
            if isinstance(c.sock, RecordSocket):
                c.sock.close_notify()  # TLS 1.3 closes one side at a time
            else:
                c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # closed after a frame it refused: the answers are read below
        deadline = time.monotonic() + 20
        responses = 0
        try:
            while True:
                left = deadline - time.monotonic()
                assert left > 0, f"no close 20 s after our half-close; sent {data.hex()}"
                msg = c.recv(left)  # asserts a well-formed frame
                self.answers += 1
                responses += isinstance(msg, RawController.RESPONSES)
        except (EOFError, ConnectionError):
            pass
        finally:
            c.close()
        return responses


class Responder:
    """A TCP server and a UDP socket on one loopback port that answer what comes (one
    segment or datagram each), so the mutated sessions meet sockets that receive."""

    def __init__(self) -> None:
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.stopped = False
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._tcp, self._udp)]
        for th in self.threads:
            th.start()

    def _tcp(self) -> None:
        self.tcp.settimeout(0.2)
        conns: list[socket.socket] = []
        while not self.stopped:
            try:
                c, _ = self.tcp.accept()
                c.setblocking(False)
                conns.append(c)
            except (TimeoutError, OSError):
                pass
            for c in list(conns):
                try:
                    data = c.recv(65536)
                    if not data:
                        raise OSError
                    c.send(b"HTTP/1.0 200 OK\r\n\r\n" + data[:100])
                except BlockingIOError:
                    continue
                except OSError:
                    c.close()
                    conns.remove(c)
        for c in conns:
            c.close()

    def _udp(self) -> None:
        self.udp.settimeout(0.2)
        while not self.stopped:
            try:
                data, peer = self.udp.recvfrom(65536)
                self.udp.sendto(data[:100], peer)
            except (TimeoutError, OSError):
                pass

    def close(self) -> None:
        self.stopped = True
        for th in self.threads:
            th.join(5)
        self.tcp.close()
        self.udp.close()


def fuzz(t: Target, name: str) -> str:
    responder = Responder()
    t.port = responder.port
    try:
        return _fuzz(t, name)
    finally:
        responder.close()


def _fuzz(t: Target, name: str) -> str:
    rng, seed = rng_for(name)
    sessions = trace_sessions()
    seeds = [f for s in sessions for f in s]
    t.served()  # warm up before the baseline
    before = t.served()
    for i in range(SESSIONS):
        first = START if i % 3 else mutate(rng, START)
        # a third of the sessions first replay a valid prefix of a reference session, so
        # the mutations meet open sockets and pending sends
        session = rng.choice(sessions)
        prefix = session[1 : rng.randrange(1, len(session) + 1)] if i % 3 == 1 else []
        frames = [first, *prefix] + [mutate(rng, rng.choice(seeds)) for _ in range(BATCH)]
        t.throw(frames, record=rng.choice([0, 0, 1, 3, rng.randint(1, 64)]))
    # Memory requests at every region's edges, a UDP socket open to the responder first.
    udp = trace_sessions()[1][1]  # the dns session's nopen
    for _ in range(MEMORY_SESSIONS):
        t.throw([START, udp, *memory_requests(rng, 64)])
    # A malformed request ends its session: the sweep goes on in the next session from
    # the frame after the last one answered (all its frames' lengths are true).
    sweep = list(every_type_and_size(rng, SIZES))
    at = 0
    while at < len(sweep):
        read = t.throw([START, *sweep[at : at + 256]]) - 1  # less the start's
        t.inputs -= len(sweep[at : at + 256]) - max(1, read)
        at += max(1, read)
    after = t.served(fds=before.fds)
    assert after.fds <= before.fds, (before, after, fd_targets(t.pid), seed)
    grew = after.rss_kib - before.rss_kib
    assert grew <= RSS_BOUND_KIB, f"RSS grew by {grew} KiB (seed {seed})"
    alarms = log_alarms(t.log())
    assert not alarms, alarms[:5]
    print(f"{name}: seed {seed!r}, {t.inputs} inputs, {t.answers} answers, RSS {grew:+} KiB")
    return seed


def test_fuzz_plaintext_endpoint(endpoint_factory: Callable[..., EndpointProcess]) -> None:
    ep = endpoint_factory(args=["--reconnect-delay", "0"])
    t = Target(ep.accept, ep.pid, lambda: ep.logfile.read_text(errors="replace"))
    fuzz(t, "endpoint-plain")
    assert ep.proc.poll() is None


def test_fuzz_tls_endpoint(tmp_path: Path) -> None:
    home = pktlab_init(tmp_path / "home")
    ctl = RecordController(home)
    ep = TLSEndpoint(home, ctl.address, tmp_path, "--reconnect-delay", "0")
    try:
        t = Target(ctl.accept, ep.proc.pid, ep.output)
        fuzz(t, "endpoint-tls")
        assert ep.proc.poll() is None
    finally:
        ep.stop()
        ctl.close()
