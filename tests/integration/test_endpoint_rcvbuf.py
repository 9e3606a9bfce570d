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
