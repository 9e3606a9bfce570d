"""The kernel receive buffer of a bulk TCP socket (netio._size_rcvbuf)."""

from __future__ import annotations

import socket

from packetlab.endpoint.netio import _size_rcvbuf


def _rcvbuf(rbufsz: int) -> tuple[int, int]:
    with socket.socket() as s:
        before = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        _size_rcvbuf(s, rbufsz)
        return before, s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def test_small_budgets_keep_autotuning() -> None:
    before, after = _rcvbuf(64 * 1024)
    assert after == before


def test_bulk_budgets_get_a_large_buffer() -> None:
    before, after = _rcvbuf(27 << 20)
    with open("/proc/sys/net/core/rmem_max") as f:
        rmem_max = int(f.read())
    # root: 4 MiB (the kernel reports twice what was set); else up to rmem_max
    assert after > before and after >= min(2 * rmem_max, 8 << 20)


def test_bulk_window_is_clamped_below_the_buffer() -> None:
    # The kernel ACKs on arrival only while its window would not shrink: half the buffer
    # as window leaves room for what the Python reader has not read yet.
    with socket.socket() as s:
        _size_rcvbuf(s, 27 << 20)
        clamp = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_WINDOW_CLAMP)
        buf = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)  # twice what was set
    assert 0 < clamp <= min(buf // 4, 4 << 20)
