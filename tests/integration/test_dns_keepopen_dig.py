"""`pktlab run dns +tcp +keepopen` side by side with dig 9.18: the queries of a run over
one TCP connection (counted at a server of the test's), the same output."""

from __future__ import annotations

import shutil
import socket
import struct
import threading
from collections.abc import Iterator

import dns.message
import dns.rrset
import pytest
from test_dns_dig import dig, normal, ours

pytestmark = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) missing")


class Server:
    """DNS over TCP on 127.0.0.1: every A question answered, connections counted; a
    connection stays open until the client closes it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        with conn:
            while head := self.read(conn, 2):
                wire = self.read(conn, struct.unpack(">H", head)[0])
                query = dns.message.from_wire(wire)
                reply = dns.message.make_response(query)
                name = query.question[0].name
                reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.7"))
                out = reply.to_wire()
                conn.sendall(struct.pack(">H", len(out)) + out)

    @staticmethod
    def read(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                return b""
            data += chunk
        return data


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
