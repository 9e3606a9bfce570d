"""`splice.near_rcvbuf` over a fake socket: a peer within NEAR_RTT_US gets the fixed
NEAR_RCVBUF receive buffer, a farther one (or one without a measured round trip, or a
socket that is not TCP) keeps the kernel's autotuning."""

from __future__ import annotations

import socket
import struct

import pytest

from packetlab.proxy.splice import NEAR_RCVBUF, NEAR_RTT_US, near_rcvbuf


class InfoSocket:
    """Answers TCP_INFO with a struct tcp_info whose tcpi_rtt is `rtt_us`."""

    def __init__(self, rtt_us: int | None) -> None:
        self.rtt_us = rtt_us
        self.set: list[tuple[int, int, int]] = []

    def getsockopt(self, level: int, opt: int, size: int) -> bytes:
        assert (level, opt) == (socket.IPPROTO_TCP, socket.TCP_INFO)
        if self.rtt_us is None:
            raise OSError(95, "Operation not supported")  # an AF_UNIX socket
        info = bytearray(size)
        struct.pack_into("I", info, 68, self.rtt_us)
        return bytes(info)

    def setsockopt(self, level: int, opt: int, value: int) -> None:
        self.set.append((level, opt, value))


@pytest.mark.parametrize("rtt", [1, 12, NEAR_RTT_US])
def test_a_near_peer_gets_the_fixed_buffer(rtt: int) -> None:
    sock = InfoSocket(rtt)
    assert near_rcvbuf(sock)
    assert sock.set == [(socket.SOL_SOCKET, socket.SO_RCVBUF, NEAR_RCVBUF)]


@pytest.mark.parametrize("rtt", [NEAR_RTT_US + 1, 5000, 0, None])
def test_far_unmeasured_or_not_tcp_keeps_autotuning(rtt: int | None) -> None:
    sock = InfoSocket(rtt)
    assert not near_rcvbuf(sock)
    assert sock.set == []
