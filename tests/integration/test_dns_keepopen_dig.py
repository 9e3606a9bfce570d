"""`pktlab run dns +tcp +keepopen` side by side with dig 9.18: the queries of a run over
one TCP connection (counted at a server of the test's), the same output."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from dns_stream_server import StreamServer
from test_dns_dig import dig, normal, ours

pytestmark = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) missing")


class Server(StreamServer):
    """DNS over TCP on 127.0.0.1: every A question answered, connections counted; a
    connection stays open until the client closes it."""

    def __init__(self) -> None:
        super().__init__("192.0.2.7")


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.sock.close()


def test_keepopen_asks_over_one_connection_as_dig(server: Server) -> None:
    at = ["@127.0.0.1", "-p", str(server.port), "+tcp", "+nocookie"]
    names = ["a.test", "b.test", "c.test"]
    for words, connections in ((["+keepopen"], 1), ([], 3), (["+keepo", "+nokeepopen"], 3)):
        counts = []
        outputs = []
        for tool in (ours, dig):
            before = server.connections
            run = tool(*at, *words, *names)
            assert run.returncode == 0, run.stderr
            counts.append(server.connections - before)
            outputs.append(normal(run.stdout))
        assert counts == [connections, connections], words
        assert outputs[0] == outputs[1], words
