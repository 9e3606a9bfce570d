"""`pktlab run dns +tls` (DNS over TLS, RFC 7858) and `+https`/`+http-plain` (DNS over
HTTPS, RFC 8484, over HTTP/2) side by side with dig 9.18 against servers of the test's
(Python's ssl with a self-signed certificate made here; the h2 library): the same output
but for what differs by nature (test_dns_dig's `normal`), dig's certificate checks
(+tls-ca, +tls-hostname) and their failure lines, +keepopen's one connection, the
requests dig makes (POST, GET's ?dns=, the path)."""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dns.message
import dns.rrset
import h2.config
import h2.connection
import h2.events
import pytest
from dns_stream_server import StreamServer
from test_dns_dig import dig, normal, ours

pytestmark = pytest.mark.skipif(
    shutil.which("dig") is None or shutil.which("openssl") is None,
    reason="dig (dnsutils) or openssl missing",
)


class DotServer(StreamServer):
    """DNS over TLS on 127.0.0.1 (every A question answered), connections counted; with
    `client_ca` a client certificate it signed is required (`clients`: their CNs)."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(str(client_ca))
        self.clients: list[str] = []
        super().__init__("192.0.2.9")  # (starts accepting: the context first)

    def wrap(self, raw: socket.socket) -> socket.socket | None:
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):  # the client refused our certificate
            raw.close()
            return None
        peer: Any = conn.getpeercert() or {}
        self.clients += [v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"]
        return conn


def make_cert(key: Path, cert: Path, name: str) -> None:
    """A self-signed EC certificate for `name` (and 127.0.0.1) made by openssl."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


@pytest.fixture(scope="module")
def dot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DotServer, Path]]:
    where = tmp_path_factory.mktemp("dot")
    cert, key = where / "dot.crt", where / "dot.key"
    make_cert(key, cert, "dot.test")
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


class DohServer:
    """DNS over HTTPS on 127.0.0.1 (HTTP/2 over TLS with ALPN h2, or h2c with prior
    knowledge): a POST's body or a GET's ?dns= answered; the requests' method and path
    noted."""

    def __init__(self, cert: Path | None = None, key: Path | None = None) -> None:
        self.ctx: ssl.SSLContext | None = None
        if cert is not None and key is not None:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(str(cert), str(key))
            self.ctx.set_alpn_protocols(["h2"])
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[tuple[str, str]] = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, raw: socket.socket) -> None:
        try:
            conn: Any = self.ctx.wrap_socket(raw, server_side=True) if self.ctx else raw
        except (OSError, ssl.SSLError):
            raw.close()
            return
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h2c.initiate_connection()
        heads: dict[int, dict[str, str]] = {}
        bodies: dict[int, bytes] = {}
        with conn:
            try:
                conn.sendall(h2c.data_to_send())
                while data := conn.recv(65535):
                    for ev in h2c.receive_data(data):
                        if isinstance(ev, h2.events.RequestReceived):
                            heads[ev.stream_id] = {
                                (k.decode() if isinstance(k, bytes) else k):
                                    (v.decode() if isinstance(v, bytes) else v)
                                for k, v in ev.headers
                            }  # fmt: skip
                            bodies[ev.stream_id] = b""
                        elif isinstance(ev, h2.events.DataReceived):
                            bodies[ev.stream_id] += ev.data
                            h2c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        elif isinstance(ev, h2.events.StreamEnded):
                            self.answer(h2c, ev.stream_id, heads[ev.stream_id], bodies)
                    conn.sendall(h2c.data_to_send())
            except (OSError, ssl.SSLError):
                return

    def answer(self, h2c: Any, stream: int, head: dict[str, str], bodies: dict[int, bytes]) -> None:
        self.requests.append((head[":method"], urlsplit(head[":path"]).path))
        if head[":method"] == "GET":
            text = parse_qs(urlsplit(head[":path"]).query)["dns"][0]
            wire = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        else:
            wire = bodies[stream]
        query = dns.message.from_wire(wire)
        reply = dns.message.make_response(query)
        reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.9"))
        out = reply.to_wire()
        h2c.send_headers(stream, [(":status", "200"), ("content-type", "application/dns-message"),
                                  ("content-length", str(len(out)))])  # fmt: skip
        h2c.send_data(stream, out, end_stream=True)


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port no one listens on while the block runs: bound here, not listening,
    so that a connect to it is refused (RST) and no other process can take it. Port 1 was
    used (session 25): once, under load with other suites running, something accepted
    there, read the ClientHello and closed (`the server closed the connection during the
    TLS handshake`), and dig, a moment later, was refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_dns_over_https_as_dig(dot: tuple[DotServer, Path]) -> None:
    _, cert = dot
    key = cert.with_name("dot.key")
    secure, plain = DohServer(cert, key), DohServer()
    try:
        at = ["@127.0.0.1", "-p", str(secure.port)]
        a, _ = both(*at, "+https", "a.test")
        assert f";; SERVER: 127.0.0.1#{secure.port}(127.0.0.1) (HTTPS)\n" in a.stdout
        a, _ = both(*at, "+https-get", "+noall", "+answer", "+stats", "a.test")
        assert "(HTTPS-GET)" in a.stdout and "a.test.\t\t\t60\tIN\tA\t192.0.2.9" in a.stdout
        both(*at, "+https=/custom", "+tls-ca=" + str(cert), "+noall", "+answer", "a.test")
        a, b = both(*at, "+https", "+tls-ca", "a.test")
        assert a.stdout == (f";; TLS peer certificate verification for 127.0.0.1#{secure.port} "
                            "failed: self-signed certificate\n")  # fmt: skip
        assert secure.requests == [("POST", "/dns-query")] * 2 + [("GET", "/dns-query")] * 2 + [
            ("POST", "/custom")] * 2  # fmt: skip
        at = ["@127.0.0.1", "-p", str(plain.port)]
        for words in (["+http-plain"], ["+http-plain-get", "+noall", "+answer", "+stats"]):
            a, _ = both(*at, *words, "a.test")
            assert a.returncode == 0 and "192.0.2.9" in a.stdout
        assert [m for m, _ in plain.requests] == ["POST", "POST", "GET", "GET"]
        with closed_port() as port:
            for words in (["+https", "+tries=1"], ["+http-plain", "+tries=2"]):  # (dig: 3)
                a, b = both("@127.0.0.1", "-p", str(port), *words, "a.test")
                assert (a.returncode, b.returncode) == (1, 9)
    finally:
        secure.sock.close()
        plain.sock.close()


def test_a_client_certificate_as_dig(dot: tuple[DotServer, Path], tmp_path: Path) -> None:
    """+tls-certfile/+tls-keyfile against a DoT server that wants a client certificate:
    the answer as dig's with both (dig 9.18.49 then checks the server's certificate:
    +tls-ca), dig's line for one alone, dig's `end of file` for none."""
    _, cert = dot
    ccert, ckey = tmp_path / "client.crt", tmp_path / "client.key"
    make_cert(ckey, ccert, "client.test")
    server = DotServer(cert, cert.with_name("dot.key"), client_ca=ccert)
    try:
        at = ["@127.0.0.1", "-p", str(server.port), "+tries=1", "+time=2"]
        mine = [f"+tls-certfile={ccert}", f"+tls-keyfile={ckey}"]
        a, _ = both(*at, f"+tls-ca={cert}", *mine, "+noall", "+answer", "a.test")
        assert a.stdout == "a.test.\t\t\t60\tIN\tA\t192.0.2.9\n" and a.returncode == 0
        assert server.clients == ["client.test"] * 2  # dig's and ours
        a, b = both(*at, *mine, "a.test")  # the server's certificate checked: self-signed
        assert a.stdout == (f";; TLS peer certificate verification for 127.0.0.1#{server.port} "
                            "failed: self-signed certificate\n")  # fmt: skip
        assert (a.returncode, b.returncode) == (1, 0)
        for half in ([mine[0]], [mine[1]], ["+tls", mine[0], "+https"]):  # one alone
            a, b = both(*at, *half, "a.test")
            assert a.stdout == (";; both TLS client certificate and key file must be specified "
                                "a the same time\n"), half  # fmt: skip
            assert (a.returncode, b.returncode) == (1, 0)
        a = ours("--dig-exit-codes", *at, mine[1], "a.test")
        assert a.returncode == 0  # dig: the status as it was
        # none: the server's alert ends the connection, or its close resets it (dig 9.18.49
        # says either, or, a race in it, nothing at all)
        a = ours(*at, "+tls", "+noall", "a.test")
        assert a.stdout in (f";; communications error to 127.0.0.1#{server.port}: {why}\n"
                            ";; no servers could be reached\n"
                            for why in ("end of file", "connection reset"))  # fmt: skip
        assert a.returncode == 1 and "Traceback" not in a.stderr  # was an internal error, 2
        assert ours("--dig-exit-codes", *at, "+tls", "+noall", "a.test").returncode == 9
        bad = ours(*at, f"+tls-certfile={ckey}", f"+tls-keyfile={ccert}", "a.test")  # swapped
        assert bad.returncode == 2 and bad.stderr.endswith(": cannot be used: PEM lib\n")
        assert server.clients == ["client.test"] * 2  # nothing more went out
    finally:
        server.sock.close()


def test_post_aliases_as_dig(dot: tuple[DotServer, Path]) -> None:
    """+https-post and +http-plain-post, dig's names of the default (was refused by name)."""
    _, cert = dot
    secure, plain = DohServer(cert, cert.with_name("dot.key")), DohServer()
    try:
        at = ["@127.0.0.1", "-p", str(secure.port), "+noall", "+answer"]
        for words in (["+https-post"], ["+https-post=/custom"], ["+https-get", "+https-post"],
                      ["+https-p"]):  # fmt: skip
            a, _ = both(*at, *words, "a.test")
            assert a.returncode == 0 and "192.0.2.9" in a.stdout, words
        # (+https-get +https-post: GET, as dig 9.18.49: -post does not undo -get)
        assert secure.requests == [("POST", "/dns-query")] * 2 + [("POST", "/custom")] * 2 + [
            ("GET", "/dns-query")] * 2 + [("POST", "/dns-query")] * 2  # fmt: skip
        a, _ = both("@127.0.0.1", "-p", str(plain.port), "+http-plain-post", "a.test")
        assert a.returncode == 0 and "(HTTP)" in a.stdout
        assert plain.requests == [("POST", "/dns-query")] * 2
    finally:
        secure.sock.close()
        plain.sock.close()
