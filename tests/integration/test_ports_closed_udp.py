"""tests/integration/ports.py: a closed UDP port is one no autobind can take meanwhile."""

from __future__ import annotations

import socket

from ports import LOWEST, closed_udp_port, ephemeral_range


def test_closed_udp_port_is_below_the_ephemeral_range_and_free() -> None:
    low, high = ephemeral_range()
    for host in ("127.0.0.1", "::1"):
        port = closed_udp_port(host)
        assert LOWEST <= port < low, (port, low, high)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((host, port))  # still free


def test_bind_zero_gives_a_port_an_autobind_may_take() -> None:
    """Why: the old way (bind to port 0, close) gives a port inside the range, the one
    UDP autobind picks from (a test expecting `connection refused` there timed out when
    an unconnected socket was bound to it: shown in session 33, flake33)."""
    low, high = ephemeral_range()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        assert low <= s.getsockname()[1] <= high
