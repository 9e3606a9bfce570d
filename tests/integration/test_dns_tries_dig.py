"""`pktlab run dns`'s UDP tries side by side with dig 9.18, against a silent server that
logs each datagram's source and query id: dig sends each try from a new socket (a new
source port, the same id) and closes the one before, so an answer to an earlier try that
comes late is not taken (the server answers the first try when the second comes: dig
still says `no servers could be reached`). Before session 22 (dig22) ours sent every
try from one endpoint socket and took that late answer."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import dns.message
import dns.rrset
import pytest
from test_dns_dig import dig, normal, ours, pytestmark  # noqa: F401  (skip)

ADDR = "127.0.0.12"  # (127.0.0.8-10: test_dns_udp_servers_dig.py's)


class LoggingServer:
    """A UDP socket that logs (source, query id) of each datagram and answers none, or
    (`late`) the first try once the second has come, to the first try's source."""

    def __init__(self, late: bool) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ADDR, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.late = late
        self.log: list[tuple[tuple[str, int], int]] = []
        self.first: tuple[bytes, tuple[str, int]] | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.done.is_set():
            try:
                data, src = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.log.append((src, struct.unpack("!H", data[:2])[0]))
            if self.first is None:
                self.first = (data, src)
            elif self.late and len(self.log) == 2:
                q = dns.message.from_wire(self.first[0])
                r = dns.message.make_response(q)
                r.answer.append(dns.rrset.from_text("a.test.", 60, "IN", "A", "192.0.2.1"))
                self.sock.sendto(r.to_wire(), self.first[1])

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[LoggingServer, LoggingServer]]:
    pair = LoggingServer(request.param), LoggingServer(request.param)  # ours', dig's
    try:
        yield pair
    finally:
        for s in pair:
            s.close()


def pattern(log: list[tuple[tuple[str, int], int]]) -> tuple[int, int, int]:
    """(tries, distinct source ports, distinct query ids)."""
    return len(log), len({src for src, _ in log}), len({qid for _, qid in log})


@pytest.mark.parametrize("servers", [False, True], ids=["silent", "late"], indirect=True)
def test_each_try_from_a_new_port_with_the_same_id_as_dig(
    servers: tuple[LoggingServer, LoggingServer],
) -> None:
    mine, theirs = servers
    words = ["+tries=3", "+time=1", "a.test"]
    with ThreadPoolExecutor(1) as pool:  # at once: one set of timeouts
        theirs_done = pool.submit(dig, f"@{ADDR}", "-p", str(theirs.port), *words)
        a = ours(f"@{ADDR}", "-p", str(mine.port), *words)
        b = theirs_done.result()
    assert "Traceback" not in a.stderr, a.stderr
    assert normal(a.stdout).replace(str(mine.port), "P") == normal(b.stdout).replace(
        str(theirs.port), "P"
    ), a.stderr
    assert b.stdout.count("timed out") == 3 and "no servers could be reached" in b.stdout
    assert (a.returncode, b.returncode) == (1, 9)  # ours, dig's (9: --dig-exit-codes)
    assert pattern(theirs.log) == pattern(mine.log) == (3, 3, 1), (theirs.log, mine.log)
