"""The -s hand-over to the singleton (xpmgrhand.py): a real socketpair (so here, not in
tests/unit), a fake reactor."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from twisted.internet.testing import MemoryReactor

from packetlab.controller.xpmgrhand import Full, HandOver


class Calls:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.failed: list[tuple[str, OSError]] = []
        self.deaf = 0

    def on_deaf(self) -> None:
        self.deaf += 1


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield ours, theirs
    for s in (ours, theirs):
        if s.fileno() != -1:
            s.close()


def make(reactor: MemoryReactor, sock: socket.socket, calls: Calls, cap: int = 4) -> HandOver[str]:
    return HandOver(reactor, sock, calls.sent.append, calls.on_deaf,
                    lambda k, e: calls.failed.append((k, e)), cap)  # fmt: skip


def fill(h: HandOver[str], fd: int) -> int:
    """Hand endpoints until the socket is full: how many it took at once."""
    n = 0
    while h.hand(f"k{n}", fd, b"192.0.2.%d\0" % n):
        n += 1
    return n


def recv_one(sock: socket.socket) -> tuple[bytes, list[int]]:
    msg, fds, _, _ = socket.recv_fds(sock, 256, 4)
    return msg, fds


def test_a_full_socket_queues_in_order_up_to_the_cap_then_refuses(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    reactor, calls = MemoryReactor(), Calls()
    h = make(reactor, ours, calls)
    r, w = os.pipe()
    try:
        at_once = fill(h, r)  # the one that did not fit is queued (k{at_once})
        assert 0 < at_once < 40  # CONTROL_SNDBUF keeps the kernel's share small
        assert h in reactor.writers and len(h) == 1
        for i in range(1, 4):
            assert h.hand(f"q{i}", r, b"q%d\0" % i) is False
        with pytest.raises(Full, match="4 endpoints already wait for it"):
            h.hand("over", r, b"over\0")
        # the singleton reads everything: each message whole, its descriptor with it
        got = []
        for _ in range(at_once):
            msg, fds = recv_one(theirs)
            got.append(msg)
            assert len(fds) == 1 and os.fstat(fds[0]).st_ino == os.fstat(r).st_ino
            os.close(fds[0])
        h.doWrite()
        assert calls.sent == [f"k{at_once}", "q1", "q2", "q3"]
        assert h not in reactor.writers and len(h) == 0
        rest = [recv_one(theirs) for _ in range(4)]
        assert [m for m, _ in rest] == [b"192.0.2.%d\0" % at_once, b"q1\0", b"q2\0", b"q3\0"]
        for _, fds in rest:
            assert len(fds) == 1
            os.close(fds[0])
        assert got[0] == b"192.0.2.0\0"
    finally:
        h.close()
        os.close(r)
        os.close(w)


def test_an_endpoint_gone_while_waiting_is_dropped_and_its_duplicate_closed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _theirs = pair
    reactor, calls = MemoryReactor(), Calls()
    h = make(reactor, ours, calls)
    r, w = os.pipe()
    try:
        fill(h, r)
        assert h.hand("gone", r, b"x\0") is False
        before = len(os.listdir("/proc/self/fd"))
        assert "gone" in h and h.drop("gone") and "gone" not in h
        assert len(os.listdir("/proc/self/fd")) == before - 1  # its duplicate closed
        assert h.drop("gone") is False
    finally:
        h.close()
        os.close(r)
        os.close(w)


def test_close_returns_the_waiting_ones_and_a_closed_peer_is_deaf(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    reactor, calls = MemoryReactor(), Calls()
    h = make(reactor, ours, calls)
    r, w = os.pipe()
    try:
        at_once = fill(h, r)
        h.hand("a", r, b"a\0")
        theirs.close()  # the singleton closed its fd 0: what waits can never be sent
        h.doWrite()
        assert calls.deaf == 1 and calls.sent == [] and h not in reactor.writers
        assert h.close() == [f"k{at_once}", "a"]
        assert h.fileno() == -1 and h.close() == []
    finally:
        os.close(r)
        os.close(w)
