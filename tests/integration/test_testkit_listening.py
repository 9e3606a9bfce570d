"""testkit.poll.tcp_listening reads /proc: a listener is seen, a closed one is not."""

from __future__ import annotations

import socket

import pytest
from testkit.poll import PollTimeout, tcp_listening, wait_tcp_listening


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_a_listener_is_seen_until_closed(family: int, host: str) -> None:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    assert not tcp_listening(port)  # bound is not listening
    sock.listen()
    wait_tcp_listening(port, timeout=5)
    sock.close()
    assert not tcp_listening(port)
    with pytest.raises(PollTimeout, match=f"a listener on TCP {port}"):
        wait_tcp_listening(port, timeout=0)
