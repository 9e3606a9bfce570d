"""Timestamp options and argument checks on real (unconnected, unbound) sockets: nothing
is sent; the parsing of control messages is unit-tested in tests/unit/endpoint."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from packetlab.endpoint import timestamps as ts
from packetlab.endpoint.timestamps import (
    enable_rx_timestamps,
    enable_tx_timestamps,
    recv_with_timestamp,
)


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield sock
    sock.close()


@pytest.mark.parametrize("func", [enable_rx_timestamps, enable_tx_timestamps])
def test_enable_on_closed_socket_is_a_clear_error(func: object) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.close()
    with pytest.raises(ValueError, match="closed"):
        func(sock)  # type: ignore[operator]


def test_enable_sets_the_expected_flags(udp: socket.socket) -> None:
    enable_rx_timestamps(udp)
    assert udp.getsockopt(socket.SOL_SOCKET, ts.SO_TIMESTAMPNS) == 1
    flags = enable_tx_timestamps(udp, sched=True)
    assert udp.getsockopt(socket.SOL_SOCKET, ts.SO_TIMESTAMPING) == flags
    for bit in (
        ts.SOF_TIMESTAMPING_TX_SOFTWARE,
        ts.SOF_TIMESTAMPING_SOFTWARE,
        ts.SOF_TIMESTAMPING_OPT_ID,
        ts.SOF_TIMESTAMPING_OPT_TSONLY,
        ts.SOF_TIMESTAMPING_TX_SCHED,
    ):
        assert flags & bit


@pytest.mark.parametrize("bufsize", [0, -1, 1.5, "10"])
def test_recv_with_bad_bufsize_is_rejected(udp: socket.socket, bufsize: object) -> None:
    with pytest.raises(ValueError, match="bufsize"):
        recv_with_timestamp(udp, bufsize)  # type: ignore[arg-type]


def test_tx_matcher_refuses_tcp() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(ValueError, match="datagrams"):
            ts.TxStampMatcher(sock)
    finally:
        sock.close()


def test_tx_timestamps_on_unconnected_tcp_say_why() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(OSError, match="once connected"):
            enable_tx_timestamps(sock)
    finally:
        sock.close()
