"""Parsing of timestamp control messages and argument checks (no sockets: the checks on
real sockets are in tests/integration/test_timestamps_sockets.py)."""

from __future__ import annotations

import socket
import struct

import pytest

from packetlab.endpoint import timestamps as ts
from packetlab.endpoint.timestamps import (
    SCM_TSTAMP_SCHED,
    SCM_TSTAMP_SND,
    TxTimestamp,
    enable_rx_timestamps,
    enable_tx_timestamps,
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
