"""`pktlab run dns @A @B @C` over UDP side by side with dig 9.18, when the first servers
are closed (ICMP port unreachable: nothing listens on 127.0.0.9 and 127.0.0.10 at the
zone server's port) or silent (a bound socket that never reads, 127.0.0.8): dig's order,
the lookup's tries on the first server, then each next one once, a `communications
error` line a try (before session 15 a closed server was asked once, and a silent first
server got its tries and each next server its own)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from test_dns_dig import dig, normal, ours, pytestmark, zone_server  # noqa: F401  (skip)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    yield from zone_server("127.0.0.1")


@pytest.fixture(scope="module")
def silent(port: int) -> Iterator[str]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.8", port))  # bound, never read: a silent server
    try:
        yield "127.0.0.8"
    finally:
        s.close()


def test_closed_and_silent_first_servers_as_dig(port: int, silent: str) -> None:
    p = ["-p", str(port)]
    for servers, tries in (
        (["@127.0.0.9", "@127.0.0.1"], "+tries=3"),
        (["@127.0.0.9", "@127.0.0.1"], "+tries=2"),
        (["@127.0.0.9", "@127.0.0.10", "@127.0.0.1"], "+tries=2"),
        (["@127.0.0.9", "@127.0.0.10", "@127.0.0.1"], "+tries=1"),
        (["@127.0.0.9"], "+tries=3"),
        (["@127.0.0.9", "@127.0.0.10"], "+tries=2"),
        ([f"@{silent}", "@127.0.0.9", "@127.0.0.1"], "+tries=2"),
        (["@127.0.0.9", f"@{silent}", "@127.0.0.1"], "+tries=2"),
    ):
        words = [*servers, *p, tries, "+time=1", "a.test"]
        a, b = ours(*words), dig(*words)
        assert "Traceback" not in a.stderr, a.stderr
        assert normal(a.stdout) == normal(b.stdout), (words, a.stderr)
        assert (a.returncode == 0) == (b.returncode == 0), words
    # the closed server's lines, one a try: 3 (dig's count)
    a = ours("@127.0.0.9", "@127.0.0.1", *p, "+tries=3", "a.test", "+short")
    assert a.stdout.count("127.0.0.9#") == 3 and a.stdout.endswith("192.0.2.2\n")
