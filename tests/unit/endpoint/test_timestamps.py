"""Parsing of timestamp control messages and argument checks (no packets are sent here)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from packetlab.endpoint import timestamps as ts
from packetlab.endpoint.timestamps import (
    SCM_TSTAMP_SCHED,
    SCM_TSTAMP_SND,
    TxTimestamp,
    enable_rx_timestamps,
    enable_tx_timestamps,
    recv_with_timestamp,
    rx_timestamp_from_ancdata,
    tx_timestamp_from_ancdata,
)

SEC = 1_700_000_123
NSEC = 456_789_012
TS = SEC * 1_000_000_000 + NSEC


def timespecs(*pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack("@ll", s, n) for s, n in pairs)


def extended_err(origin: int, info: int, data: int, errno_: int = 42) -> bytes:
    return struct.pack("@IBBBBII", errno_, origin, 0, 0, 0, info, data)


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield sock
    sock.close()


# -- receive timestamps --------------------------------------------------------------------


def test_rx_timestamp_is_read_from_scm_timestampns() -> None:
    anc = [(socket.SOL_SOCKET, ts.SCM_TIMESTAMPNS, timespecs((SEC, NSEC)))]
    assert rx_timestamp_from_ancdata(anc) == TS


def test_rx_timestamp_skips_other_messages() -> None:
    anc = [
        (socket.SOL_IP, 8, b"\x01\x02\x03\x04" * 3),  # IP_PKTINFO
        (socket.SOL_SOCKET, ts.SCM_TIMESTAMPING, timespecs((1, 2), (0, 0), (0, 0))),
        (socket.SOL_SOCKET, ts.SCM_TIMESTAMPNS, timespecs((SEC, NSEC))),
    ]
    assert rx_timestamp_from_ancdata(anc) == TS


@pytest.mark.parametrize(
    "anc",
    [
        [],
        [(socket.SOL_SOCKET, ts.SCM_TIMESTAMPNS, b"\x00" * 8)],  # truncated
        [(socket.SOL_IP, ts.SCM_TIMESTAMPNS, timespecs((SEC, NSEC)))],  # wrong level
    ],
)
def test_rx_timestamp_absent_or_malformed_is_none(anc: list[tuple[int, int, bytes]]) -> None:
    assert rx_timestamp_from_ancdata(anc) is None


# -- transmit timestamps -------------------------------------------------------------------


def test_tx_timestamp_from_ipv4_error_queue_message() -> None:
    anc = [
        (socket.SOL_SOCKET, ts.SCM_TIMESTAMPING, timespecs((SEC, NSEC), (0, 0), (0, 0))),
        (
            socket.SOL_IP,
            ts.IP_RECVERR,
            extended_err(ts.SO_EE_ORIGIN_TIMESTAMPING, SCM_TSTAMP_SND, 7),
        ),
    ]
    assert tx_timestamp_from_ancdata(anc) == TxTimestamp(7, SCM_TSTAMP_SND, TS)


def test_tx_timestamp_from_ipv6_error_queue_message_in_any_order() -> None:
    anc = [
        (
            ts.SOL_IPV6,
            ts.IPV6_RECVERR,
            extended_err(ts.SO_EE_ORIGIN_TIMESTAMPING, SCM_TSTAMP_SCHED, 3),
        ),
        (socket.SOL_SOCKET, ts.SCM_TIMESTAMPING, timespecs((SEC, NSEC), (0, 0), (0, 0))),
    ]
    assert tx_timestamp_from_ancdata(anc) == TxTimestamp(3, SCM_TSTAMP_SCHED, TS)


@pytest.mark.parametrize(
    "anc",
    [
        [],
        # an ICMP error (origin 2), not a timestamp
        [
            (socket.SOL_SOCKET, ts.SCM_TIMESTAMPING, timespecs((SEC, NSEC), (0, 0), (0, 0))),
            (socket.SOL_IP, ts.IP_RECVERR, extended_err(2, 0, 0)),
        ],
        # timestamp without the extended error that names it
        [(socket.SOL_SOCKET, ts.SCM_TIMESTAMPING, timespecs((SEC, NSEC), (0, 0), (0, 0)))],
        # extended error without the time
        [(socket.SOL_IP, ts.IP_RECVERR, extended_err(ts.SO_EE_ORIGIN_TIMESTAMPING, 0, 1))],
        # truncated pieces
        [
            (socket.SOL_SOCKET, ts.SCM_TIMESTAMPING, b"\x01" * 7),
            (socket.SOL_IP, ts.IP_RECVERR, extended_err(ts.SO_EE_ORIGIN_TIMESTAMPING, 0, 1)),
        ],
        [
            (socket.SOL_SOCKET, ts.SCM_TIMESTAMPING, timespecs((SEC, NSEC), (0, 0), (0, 0))),
            (socket.SOL_IP, ts.IP_RECVERR, b"\x00" * 10),
        ],
    ],
)
def test_tx_timestamp_absent_or_malformed_is_none(anc: list[tuple[int, int, bytes]]) -> None:
    assert tx_timestamp_from_ancdata(anc) is None


# -- argument checks -----------------------------------------------------------------------


@pytest.mark.parametrize("func", [enable_rx_timestamps, enable_tx_timestamps])
def test_enable_needs_a_socket(func: object) -> None:
    with pytest.raises(TypeError, match=r"socket\.socket"):
        func(3)  # type: ignore[operator]


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


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("6.18.44-fc-v657", True),
        ("6.13.0", True),
        ("6.12.9-arch1", False),
        ("5.15", False),
        ("x", False),
    ],
)
def test_kernel_version_check(
    monkeypatch: pytest.MonkeyPatch, release: str, expected: bool
) -> None:
    monkeypatch.setattr(ts.platform, "release", lambda: release)
    assert ts._kernel_at_least(6, 13) is expected
