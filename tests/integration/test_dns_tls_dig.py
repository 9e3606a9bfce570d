"""`pktlab run dns +tls` (DNS over TLS, RFC 7858) side by side with dig 9.18 against a
DoT server of the test's (Python's ssl, a self-signed certificate made here): the same
output but for what differs by nature (test_dns_dig's `normal`), dig's certificate
checks (+tls-ca, +tls-hostname) and their failure lines, +keepopen's one connection."""

from __future__ import annotations

import shutil
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rrset
import pytest
from test_dns_dig import dig, normal, ours

pytestmark = pytest.mark.skipif(
    shutil.which("dig") is None or shutil.which("openssl") is None,
    reason="dig (dnsutils) or openssl missing",
)


class DotServer:
    """DNS over TLS on 127.0.0.1 (every A question answered), connections counted."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
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

    def serve(self, raw: socket.socket) -> None:
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):  # the client refused our certificate
            raw.close()
            return
        with conn:
            try:
                while head := self.read(conn, 2):
                    query = dns.message.from_wire(self.read(conn, struct.unpack(">H", head)[0]))
                    reply = dns.message.make_response(query)
                    name = query.question[0].name
                    reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.9"))
                    out = reply.to_wire()
                    conn.sendall(struct.pack(">H", len(out)) + out)
            except (OSError, ssl.SSLError):
                return

    @staticmethod
    def read(conn: ssl.SSLSocket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                return b""
            data += chunk
        return data


@pytest.fixture(scope="module")
def dot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DotServer, Path]]:
    where = tmp_path_factory.mktemp("dot")
    cert, key = where / "dot.crt", where / "dot.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=dot.test",
         "-addext", "subjectAltName=DNS:dot.test,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    server = DotServer(cert, key)
    yield server, cert
    server.sock.close()


def both(*words: str) -> tuple[subprocess.CompletedProcess[str], ...]:
    a, b = ours(*words), dig(*words)
    assert "Traceback" not in a.stderr, a.stderr
    assert normal(a.stdout) == normal(b.stdout), (words, a.stdout, b.stdout)
    return a, b


def test_dns_over_tls_as_dig(dot: tuple[DotServer, Path]) -> None:
    server, cert = dot
    at = ["@127.0.0.1", "-p", str(server.port)]
    a, _ = both(*at, "+tls", "a.test")
    assert f";; SERVER: 127.0.0.1#{server.port}(127.0.0.1) (TLS)\n" in a.stdout
    assert a.returncode == 0
    for words in (["+tls-ca=" + str(cert)], ["+tls-ca=" + str(cert), "+tls-hostname=dot.test"],
                  ["+tls", "+noall", "+ans", "+stats", "a.test", "MX"]):  # fmt: skip
        a, _ = both(*at, *words, "+noall", "+answer", "b.test")
        assert "b.test.\t\t\t60\tIN\tA\t192.0.2.9\n" in a.stdout and a.returncode == 0
    mismatch = ["+tls-ca=" + str(cert), "+tls-hostname=other.test"]
    for words, why in ((["+tls-ca"], "self-signed certificate"),
                       (mismatch, "hostname mismatch")):  # fmt: skip
        a, b = both(*at, *words, "a.test")
        assert a.stdout == (f";; TLS peer certificate verification for 127.0.0.1#{server.port} "
                            f"failed: {why}\n")  # fmt: skip
        assert (a.returncode, b.returncode) == (1, 0)  # dig 9.18.49: 0 all the same


def test_keepopen_over_tls_as_dig(dot: tuple[DotServer, Path]) -> None:
    server, _ = dot
    at = ["@127.0.0.1", "-p", str(server.port), "+tls", "+keepopen", "+noall", "+answer"]
    for tool in (ours, dig):
        before = server.connections
        run = tool(*at, "a.test", "b.test", "c.test")
        assert run.returncode == 0 and run.stdout.count("192.0.2.9") == 3, run.stderr
        assert server.connections - before == 1, tool


def test_a_refused_tls_connection_as_dig() -> None:
    a, b = both("@127.0.0.1", "-p", "1", "+tls", "+tries=1", "a.test")
    assert a.stdout.startswith(";; Connection to 127.0.0.1#1(127.0.0.1) for a.test failed")
    assert (a.returncode, b.returncode) == (1, 9)
