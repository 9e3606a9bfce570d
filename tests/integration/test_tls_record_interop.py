"""The Python record layer (packetlab.tls.records) against real OpenSSL on the other side:
pyOpenSSL peers (our protocol forced onto the OpenSSL path), the standard library's `ssl`,
and `openssl s_server` / `s_client` with KeyUpdates forced from their side (their `K`
command) and from ours. Byte-exact streams of 1-byte to 40 KB frames, pipelined; tickets
are on wherever OpenSSL is the server."""

from __future__ import annotations

import hashlib
import random
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from benchmarks.bench_tls_records import self_signed_cert
from packetlab.ppks import generate_private_key, issue_certificate
from packetlab.tls import (
    AuthMode,
    Credentials,
    PPKSClientCreator,
    PPKSServerOptions,
    PPKSTLSFactory,
    ServerEntry,
)
from packetlab.tls.protocol import PPKSTLSProtocol

TIMEOUT = 30.0
NB, NA = 0, 2**31 - 1
OPENSSL = shutil.which("openssl")

eop, exper, xc, ep = (generate_private_key() for _ in range(4))
EXPPRIV = issue_certificate("exppriv", eop, exper, NB, NA)
PUBCMD = issue_certificate("pubcmd", exper, xc, NB, NA)
SUBCMD = issue_certificate("subcmd", eop, ep, NB, NA)


class PythonRecords(PPKSTLSProtocol):
    record_layer = "python"


class OpenSSLRecords(PPKSTLSProtocol):
    record_layer = "openssl"


def frames_of(seed: int, total: int) -> list[bytes]:
    """Frames of 1 byte to 40 KB, mostly small, as a link carries them."""
    rng = random.Random(seed)
    out, size = [], 0
    while size < total:
        roll = rng.random()
        n = 1 if roll < 0.05 else rng.randint(2, 200) if roll < 0.9 else rng.randint(16_000, 40_000)
        out.append(rng.randbytes(n))
        size += n
    return out


class Sink(Protocol):
    """Collects bytes; `until(n)` fires once n bytes arrived."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.want: tuple[int, defer.Deferred[bytes]] | None = None
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.reason: Failure | None = None
        self.made: defer.Deferred[Sink] = defer.Deferred()

    def connectionMade(self) -> None:
        self.made.callback(self)

    def until(self, n: int) -> defer.Deferred[bytes]:
        d: defer.Deferred[bytes] = defer.Deferred()
        self.want = (n, d)
        self._check()
        return d.addTimeout(TIMEOUT, reactor)

    def _check(self) -> None:
        if self.want and len(self.data) >= self.want[0]:
            d, self.want = self.want[1], None
            d.callback(bytes(self.data))

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        self._check()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self.reason = reason
        self.lost.callback(None)


class Echo(Sink):
    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.transport.write(data)  # type: ignore[union-attr]


def tls_of(proto: Protocol) -> PPKSTLSProtocol:
    tls = proto.transport
    assert isinstance(tls, PPKSTLSProtocol)
    return tls


async def pyopenssl_pair(
    server_cls: type[PPKSTLSProtocol], client_cls: type[PPKSTLSProtocol], server_app: type[Sink]
) -> tuple[Sink, Sink, Any]:
    entry = ServerEntry(
        Credentials([PUBCMD, EXPPRIV], xc), AuthMode.CONTROLLER_AUTH_ENDPOINT, [eop]
    )
    servers: list[Sink] = []

    def build() -> Sink:
        servers.append(server_app())
        return servers[-1]

    sf = PPKSTLSFactory(PPKSServerOptions({"e": entry}), False, Factory.forProtocol(build))
    sf.protocol = server_cls
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(sf)
    creator = PPKSClientCreator(
        Credentials([SUBCMD], ep), AuthMode.ENDPOINT_AUTH_CONTROLLER, [eop], snikey="e"
    )
    client = Sink()
    cf = PPKSTLSFactory(creator, True, Factory.forProtocol(lambda: client))
    cf.protocol = client_cls
    await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(cf)
    await client.made.addTimeout(TIMEOUT, reactor)
    await threads.deferToThread(lambda: None)  # a turn for the server's own check
    while not servers or servers[0].transport is None:
        await threads.deferToThread(lambda: None)
    return servers[0], client, port


@pytest.mark.parametrize(
    ("server_cls", "client_cls"),
    [(OpenSSLRecords, PythonRecords), (PythonRecords, OpenSSLRecords), (PythonRecords,) * 2],
    ids=["pyopenssl-server", "pyopenssl-client", "both-python"],
)
@pytest_twisted.ensureDeferred
async def test_ten_megabytes_echoed_byte_exact_with_key_updates(
    server_cls: type[PPKSTLSProtocol], client_cls: type[PPKSTLSProtocol]
) -> None:
    server, client, port = await pyopenssl_pair(server_cls, client_cls, Echo)
    try:
        ctls, stls = tls_of(client), tls_of(server)
        assert ctls.record_path == ("python" if client_cls is PythonRecords else "openssl")
        assert stls.record_path == ("python" if server_cls is PythonRecords else "openssl")
        frames = frames_of(7, 10 * 1000 * 1000)
        expected = b"".join(frames)
        ours = ctls if client_cls is PythonRecords else stls
        assert ours._records is not None
        generation = ours._records.write.secret
        for i, frame in enumerate(frames):
            ctls.write(frame)
            if i == len(frames) // 3:
                ours.key_update(request=True)  # the OpenSSL side answers with its own
            if i % 64 == 0:
                await threads.deferToThread(lambda: None)  # let the reactor move bytes
        got = await client.until(len(expected))
        assert len(got) == len(expected)
        assert hashlib.sha256(got).digest() == hashlib.sha256(expected).digest()
        assert ours._records.write.secret != generation
    finally:
        client.transport.loseConnection()  # type: ignore[union-attr]
        await port.stopListening()
    await client.lost.addTimeout(TIMEOUT, reactor)
    assert client.reason is not None and client.reason.check(ConnectionDone)  # clean close
    await server.lost.addTimeout(TIMEOUT, reactor)


# ------------------------------------------------------------------ the standard library


async def python_client(port: int, cipher: str | None = None) -> Sink:
    """Our TLS client on the Python record layer (offering only `cipher` if given)."""
    creator = PPKSClientCreator(None, AuthMode.NO_VERIFY)
    if cipher is not None:
        creator._ctx.set_tls13_ciphersuites(cipher.encode())
    client = Sink()
    cf = PPKSTLSFactory(creator, True, Factory.forProtocol(lambda: client))
    cf.protocol = PythonRecords
    await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(cf)
    await client.made.addTimeout(TIMEOUT, reactor)
    assert tls_of(client).record_path == "python"
    return client


@pytest.mark.parametrize("cipher", ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"])
@pytest_twisted.ensureDeferred
async def test_stdlib_ssl_server_echoes_byte_exact(tmp_path: Path, cipher: str) -> None:
    cert, key = self_signed_cert(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)  # tickets on: 2 NewSessionTickets per connection
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    frames = frames_of(3, 2 * 1000 * 1000)
    expected = b"".join(frames)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            raw, _ = listener.accept()
            with ctx.wrap_socket(raw, server_side=True) as s:
                s.settimeout(TIMEOUT)
                seen = 0
                while seen < len(expected):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    seen += len(chunk)
                    s.sendall(chunk)
                s.unwrap()  # close_notify both ways
        except BaseException as e:  # reported by the test thread
            errors.append(e)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = None
    try:
        client = await python_client(listener.getsockname()[1], cipher)
        tls = tls_of(client)
        assert tls.getHandle().get_cipher_name() == cipher
        for i, frame in enumerate(frames):
            tls.write(frame)
            if i == len(frames) // 2:
                tls.key_update(request=True)
        got = await client.until(len(expected))
        assert hashlib.sha256(got).digest() == hashlib.sha256(expected).digest()
        tls.loseConnection()
        await client.lost.addTimeout(TIMEOUT, reactor)
        await threads.deferToThread(thread.join, TIMEOUT)
        assert not errors, errors
    finally:
        listener.close()
        if client is not None and client.transport is not None:
            tls_of(client).abortConnection()


# ------------------------------------------------------- the openssl command line tools


S_SERVER = ("s_server", "-accept", "0", "-naccept", "1", "-tls1_3", "-num_tickets", "2")
S_CLIENT = ("s_client", "-servername", "e", "-tls1_3")


class LineProcess:
    """An openssl s_server/s_client driven through its stdin, its stdout read by a thread."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.lines: list[bytes] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append(b"<EOF>")
            self.cond.notify_all()

    def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def _wait(self, token: bytes) -> bytes:
        with self.cond:
            ok = self.cond.wait_for(
                lambda: any(token in x or x == b"<EOF>" for x in self.lines), TIMEOUT
            )
            hit = [x for x in self.lines if token in x]
            if not ok or not hit:
                raise AssertionError(f"{token!r} not in the output: {b''.join(self.lines)!r}")
            return hit[0]

    def wait_for(self, token: bytes) -> defer.Deferred[bytes]:
        return threads.deferToThread(self._wait, token)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        self.reader.join(TIMEOUT)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


@pytest.mark.skipif(OPENSSL is None, reason="no openssl command line tool")
@pytest_twisted.ensureDeferred
async def test_openssl_s_server_key_updates_both_ways(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    server = LineProcess([str(OPENSSL), *S_SERVER, "-cert", str(cert), "-key", str(key)])
    client = None
    try:
        line = await server.wait_for(b"ACCEPT")
        port = int(line.rsplit(b":", 1)[1])
        client = await python_client(port)
        tls = tls_of(client)
        tls.write(b"ping-1\n")
        await server.wait_for(b"ping-1")
        server.send(b"K\n")  # KeyUpdate, update_requested: we must answer
        # (a command line is read alone: wait until it is done before the next one)
        await server.wait_for(b"SSL_do_handshake -> 1")
        server.send(b"pong-2\n")
        assert (await client.until(7)).endswith(b"pong-2\n")
        generation = tls._records.read.secret if tls._records else b""
        tls.write(b"ping-3\n")  # under our new keys
        await server.wait_for(b"ping-3")
        assert tls._records is not None and tls._records.read.secret == generation
        tls.key_update(request=True)  # ours: s_server answers
        tls.write(b"ping-4\n")
        await server.wait_for(b"ping-4")
        server.send(b"pong-5\n")
        assert (await client.until(14)).endswith(b"pong-5\n")
        assert tls._records.read.secret != generation
    finally:
        if client is not None and client.transport is not None:
            client.transport.loseConnection()
            await client.lost.addTimeout(TIMEOUT, reactor)
        await threads.deferToThread(server.stop)


@pytest.mark.skipif(OPENSSL is None, reason="no openssl command line tool")
@pytest_twisted.ensureDeferred
async def test_openssl_s_client_key_update_against_our_server(tmp_path: Path) -> None:
    servers: list[Sink] = []

    def build() -> Sink:
        servers.append(Echo())
        return servers[-1]

    entry = ServerEntry(Credentials([PUBCMD, EXPPRIV], xc), AuthMode.CONTROLLER_AUTH_ENDPOINT, [])
    sf = PPKSTLSFactory(PPKSServerOptions({"e": entry}), False, Factory.forProtocol(build))
    sf.protocol = PythonRecords
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(sf)
    client = LineProcess([str(OPENSSL), *S_CLIENT, "-connect", f"127.0.0.1:{port.getHost().port}"])
    try:
        await client.wait_for(b"Verify return code")
        client.send(b"echo-1\n")
        await client.wait_for(b"echo-1")
        records = tls_of(servers[0])._records
        assert records is not None
        read_keys, write_keys = records.read.secret, records.write.secret
        client.send(b"K\n")  # s_client's KeyUpdate, update_requested
        await client.wait_for(b"KEYUPDATE")  # (a command line is read alone)
        client.send(b"echo-2\n")
        await client.wait_for(b"echo-2")
        assert records.read.secret != read_keys and records.write.secret != write_keys
        tls_of(servers[0]).key_update(request=False)
        client.send(b"echo-3\n")
        await client.wait_for(b"echo-3")
        assert servers[0].data == b"echo-1\necho-2\necho-3\n"
        client.send(b"Q\n")  # s_client closes with close_notify
        await servers[0].lost.addTimeout(TIMEOUT, reactor)
        assert servers[0].reason is not None and servers[0].reason.check(ConnectionDone)
    finally:
        await threads.deferToThread(client.stop)
        await port.stopListening()
