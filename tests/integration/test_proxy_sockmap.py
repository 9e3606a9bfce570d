"""The sockmap relay (`--relay sockmap`): the kernel redirects each skb to the peer socket,
user space moves only what the BPF program passes to it. Real TCP sockets over loopback,
the real BPF program (root); the test plays the reactor (`turn()`, timers included)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from packetlab.proxy import sockmap
from packetlab.proxy.splice import SpliceRelay

WHY = sockmap.available()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"no BPF sockmap here: {WHY}")


class TurnReactor:
    """Readers, writers and callLater, run by hand: one `turn()` is one reactor turn."""

    def __init__(self) -> None:
        self.readers: set[Any] = set()
        self.writers: set[Any] = set()
        self.calls: list[list[Any]] = []

    def addReader(self, r: Any) -> None:
        self.readers.add(r)

    def removeReader(self, r: Any) -> None:
        self.readers.discard(r)

    def addWriter(self, w: Any) -> None:
        self.writers.add(w)

    def removeWriter(self, w: Any) -> None:
        self.writers.discard(w)

    def callLater(self, delay: float, f: Any, *args: Any) -> Any:
        reactor = self

        class Call:
            def __init__(self) -> None:
                self.entry = [time.monotonic() + delay, f, args]

            def active(self) -> bool:
                return self.entry in reactor.calls

            def cancel(self) -> None:
                reactor.calls.remove(self.entry)

        call = Call()
        self.calls.append(call.entry)
        return call

    def turn(self) -> None:
        import select

        r = [e for e in self.readers]
        w = [e for e in self.writers]
        ready_r, ready_w, _ = select.select(r, w, [], 0.001) if r or w else ([], [], [])
        for end in ready_r:
            end.doRead()
        for end in ready_w:
            end.doWrite()
        now = time.monotonic()
        for entry in [c for c in self.calls if c[0] <= now]:
            if entry in self.calls:
                self.calls.remove(entry)
                entry[1](*entry[2])


class SockTransport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = ""

    def fileno(self) -> int:
        return self.sock.fileno()

    def stopReading(self) -> None:
        pass

    def stopWriting(self) -> None:
        pass

    def loseConnection(self) -> None:
        self.closed = "clean"
        self.sock.close()

    def abortConnection(self) -> None:
        self.closed = "abort"
        self.sock.close()


def tcp_pair(server: socket.socket) -> tuple[socket.socket, socket.socket]:
    near = socket.create_connection(server.getsockname())
    far, _ = server.accept()
    return near, far


@pytest.fixture
def pairs() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    """endpoint <-> (a | relay | b) <-> manager, over loopback TCP."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        ep, a = tcp_pair(server)
        b, mgr = tcp_pair(server)
    for s in (ep, mgr):
        s.setblocking(False)
    yield ep, a, b, mgr
    for s in (ep, a, b, mgr):
        s.close()


def make(pairs: Any, hello: bytes = b"HELLO") -> tuple[SpliceRelay, TurnReactor, dict[str, int],
                                                        list[str | None]]:  # fmt: skip
    _ep, a, b, _mgr = pairs
    reactor = TurnReactor()
    counted = {"ab": 0, "ba": 0}
    ends: list[str | None] = []
    relay = SpliceRelay(
        reactor, SockTransport(a), SockTransport(b), a_to_b=hello,
        count_ab=lambda n: counted.__setitem__("ab", counted["ab"] + n),
        count_ba=lambda n: counted.__setitem__("ba", counted["ba"] + n),
        done=ends.append, mode="sockmap",
    )  # fmt: skip
    return relay, reactor, counted, ends


class Stream:
    """One direction's sender and receiver, driven a little per turn, hashing both ends."""

    def __init__(self, src: socket.socket, dst: socket.socket, size: int, seed: int) -> None:
        self.src, self.dst, self.size = src, dst, size
        self.data = (hashlib.sha256(bytes([seed])).digest() * 4096)[: 1 << 17]  # 128 KiB
        self.sent = self.got = 0
        self.h_out, self.h_in = hashlib.sha256(), hashlib.sha256()
        self.eof = False

    def step(self, reading: bool = True) -> None:
        if self.sent < self.size:
            chunk = self.data[: min(len(self.data), self.size - self.sent)]
            try:
                n = self.src.send(chunk)
                self.h_out.update(chunk[:n])
                self.sent += n
            except BlockingIOError:
                pass
            if self.sent == self.size:
                self.src.shutdown(socket.SHUT_WR)
        while reading and not self.eof:
            try:
                got = self.dst.recv(1 << 20)
            except BlockingIOError:
                break
            if not got:
                self.eof = True
            self.h_in.update(got)
            self.got += len(got)


def run(reactor: TurnReactor, until: Any, seconds: float = 30, each: Any = None) -> None:
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "timed out"
        if each is not None:
            each()
        reactor.turn()


def test_both_ways_hello_first_byte_exact_half_close_and_counters(pairs: Any) -> None:
    ep, _a, _b, mgr = pairs
    relay, reactor, counted, ends = make(pairs, b"HELLO")
    got = bytearray()
    run(reactor, lambda: len(got) >= 5, each=lambda: got.extend(_recv(mgr)))
    assert bytes(got[:5]) == b"HELLO"
    up = Stream(ep, mgr, 48 << 20, 1)
    down = Stream(mgr, ep, 32 << 20, 2)
    up.h_in.update(bytes(got[5:]))
    up.got = len(got) - 5

    def both() -> None:
        up.step()
        down.step()

    run(reactor, lambda: up.eof and down.eof, each=both)
    assert (up.got, down.got) == (up.size, down.size)
    assert up.h_in.digest() == up.h_out.digest() and down.h_in.digest() == down.h_out.digest()
    run(reactor, lambda: relay.finished)
    assert ends == [None]
    assert counted == {"ab": 5 + up.size, "ba": down.size}


def _recv(s: socket.socket) -> bytes:
    try:
        return s.recv(1 << 20)
    except BlockingIOError:
        return b""


def test_half_close_waits_for_bytes_still_in_the_kernel(pairs: Any) -> None:
    """The endpoint sends and closes its side at once while the manager reads slowly: the
    FIN must reach the manager only after every byte the kernel was still holding."""
    ep, _a, _b, mgr = pairs
    relay, reactor, counted, ends = make(pairs, b"")
    up = Stream(ep, mgr, 24 << 20, 3)
    turns = [0]

    def slow() -> None:
        turns[0] += 1
        up.step(reading=turns[0] % 20 == 0)  # the manager reads one turn in twenty

    run(reactor, lambda: up.eof, each=slow)
    assert up.got == up.size and up.h_in.digest() == up.h_out.digest()
    # the other way is still open: the manager can answer after the endpoint's FIN
    mgr.sendall(b"answer")
    reply = bytearray()
    run(reactor, lambda: bool(reply), each=lambda: reply.extend(_recv(ep)))
    assert bytes(reply) == b"answer"
    mgr.shutdown(socket.SHUT_WR)
    run(reactor, lambda: relay.finished)
    assert ends == [None] and counted == {"ab": up.size, "ba": 6}


def test_slow_reader_bounds_what_the_proxy_holds(pairs: Any) -> None:
    """A manager that never reads: plain sockmap redirection would queue everything the
    endpoint sends (measured: 814 MiB in 3 s); the program must stop redirecting and let
    the endpoint's window close."""
    ep, _a, _b, mgr = pairs
    relay, reactor, _counted, _ends = make(pairs, b"")
    up = Stream(ep, mgr, 512 << 20, 4)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        up.step(reading=False)
        reactor.turn()
    bound = sockmap.INFLIGHT_LIMIT + (32 << 20)  # + the sockets' own buffers
    assert up.sent < bound, f"{up.sent >> 20} MiB taken while the manager read nothing"
    sent_then = up.sent
    for _ in range(200):
        up.step(reading=False)
        reactor.turn()
    assert up.sent - sent_then < (1 << 20), "still taking bytes: not bounded"
    up.size = up.sent + 1  # then the manager reads: nothing lost, in order
    run(reactor, lambda: up.eof, each=up.step)
    assert up.got == up.size and up.h_in.digest() == up.h_out.digest()
    assert not relay.finished or _ends == [None]


def test_end_removes_both_sockets_from_the_maps(pairs: Any) -> None:
    ep, a, b, mgr = pairs
    sm = sockmap.shared()
    free = len(sm.free)
    cookies = [s.getsockopt(socket.SOL_SOCKET, sockmap.SO_COOKIE, 8) for s in (a, b)]
    relay, reactor, _counted, ends = make(pairs, b"")
    assert len(sm.free) == free - 2
    ep.shutdown(socket.SHUT_WR)
    mgr.shutdown(socket.SHUT_WR)
    run(reactor, lambda: relay.finished)
    assert ends == [None] and len(sm.free) == free
    for c in cookies:
        with pytest.raises(OSError):
            sockmap._elem(sockmap._MAP_LOOKUP, sm.slots, c, out=4)


def test_reset_ends_the_relay_with_an_error(pairs: Any) -> None:
    ep, _a, _b, mgr = pairs
    relay, reactor, _counted, ends = make(pairs, b"")
    mgr.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    mgr.close()
    ep.send(b"x" * 1000)
    run(reactor, lambda: relay.finished, seconds=10)
    assert len(ends) == 1 and ends[0]


_UNPRIVILEGED = """
import os
from packetlab.proxy import sockmap
os.setgroups([]); os.setgid(65534); os.setuid(65534)
print(sockmap.available())
"""


def test_unprivileged_process_gets_a_reason_not_a_crash() -> None:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", _UNPRIVILEGED], capture_output=True, text=True,
                         timeout=60, cwd=repo)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("BPF sockmap: Operation not permitted"), out.stdout
