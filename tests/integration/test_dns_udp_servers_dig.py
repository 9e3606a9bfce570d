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
from test_dns_dig import both, dig, normal, ours, pytestmark, zone_server  # noqa: F401  (skip)


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
        a, b = both(words, words)  # (at once: the silent server's timeouts once)
        assert "Traceback" not in a.stderr, a.stderr
        assert normal(a.stdout) == normal(b.stdout), (words, a.stderr)
        assert (a.returncode == 0) == (b.returncode == 0), words
    # the closed server's lines, one a try: 3 (dig's count)
    a = ours("@127.0.0.9", "@127.0.0.1", *p, "+tries=3", "a.test", "+short")
    assert a.stdout.count("127.0.0.9#") == 3 and a.stdout.endswith("192.0.2.2\n")


@pytest.fixture(scope="module")
def xfr_port() -> Iterator[int]:
    from pathlib import Path

    from childserver import serve_child

    with serve_child(str(Path(__file__).resolve().parent / "dns_xfr_server.py"), "127.0.0.1") as n:
        yield n


def test_a_truncated_ixfr_over_udp_requeued_over_tcp_with_the_tries_left_as_dig(
    xfr_port: int,
) -> None:
    """`IXFR=N +notcp` to a closed first server: the UDP tries on it, the TC reply of the
    next, then dig's requeue over TCP from the first server with the lookup's tries left
    (once at least, then the next: no `no servers could be reached`). Before: the TCP
    transfer had its own +tries."""
    p = ["-p", str(xfr_port)]
    for tries in ("+tries=1", "+tries=2", "+tries=3"):
        for servers in (["@127.0.0.9", "@127.0.0.1"], ["@127.0.0.9", "@127.0.0.10", "@127.0.0.1"]):
            words = [*servers, *p, "tc.xfr", "IXFR=1", "+notcp", tries]
            a, b = ours(*words), dig(*words)
            assert "Traceback" not in a.stderr, a.stderr
            assert normal(a.stdout) == normal(b.stdout), (words, a.stderr)
            assert "no servers could be reached" not in a.stdout and "XFR size" in a.stdout
