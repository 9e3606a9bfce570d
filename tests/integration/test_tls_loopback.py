"""packetlab.tls with the real reactor on loopback sockets.

A controller-style TLS server and an endpoint-style TLS client do the PPKS handshake and
echo PacketLab frames; a refused chain fails the client's connect; and the system's
`openssl s_client` (a C OpenSSL client, like the reference endpoint) passes or is refused.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from testkit.logs import captured_events
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from packetlab.ppks import generate_private_key, issue_certificate, private_key_pem
from packetlab.tls import (
    AuthMode,
    Credentials,
    PeerVerificationError,
    PPKSClientCreator,
    PPKSClientEndpoint,
    PPKSServerEndpoint,
    PPKSServerOptions,
    ServerEntry,
    peer_of,
)
from packetlab.wire import Framer, Mread, Result, encode

TIMEOUT = 10.0
NB, NA = 0, 2**31 - 1

eop, exper, xc, ep, eop2 = (generate_private_key() for _ in range(5))
EXPPRIV = issue_certificate("exppriv", eop, exper, NB, NA)
PUBCMD = issue_certificate("pubcmd", exper, xc, NB, NA)
SUBCMD = issue_certificate("subcmd", eop, ep, NB, NA)


class Echo(Protocol):
    """Controller side: echoes every PacketLab frame back, one write per frame."""

    def __init__(self) -> None:
        self.framer = Framer()
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        for msg in self.framer.feed(data):
            self.transport.write(encode(msg))  # type: ignore[arg-type, union-attr]

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self.lost.callback(None)


class Collect(Protocol):
    """Endpoint side: collects frames; `until(n)` fires once n have arrived."""

    def __init__(self) -> None:
        self.framer = Framer()
        self.got: list[Any] = []
        self.waiting: tuple[int, Deferred[list[Any]]] | None = None
        self.lost: Deferred[None] = Deferred()

    def until(self, n: int) -> Deferred[list[Any]]:
        d: Deferred[list[Any]] = Deferred()
        self.waiting = (n, d)
        self._check()
        return d.addTimeout(TIMEOUT, reactor)

    def _check(self) -> None:
        if self.waiting and len(self.got) >= self.waiting[0]:
            d = self.waiting[1]
            self.waiting = None
            d.callback(self.got)

    def dataReceived(self, data: bytes) -> None:
        self.got.extend(self.framer.feed(data))
        self._check()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self.lost.callback(None)


class Servers:
    """Listening ports and server protocols, all torn down after the test."""

    def __init__(self) -> None:
        self.ports: list[Any] = []
        self.protocols: list[Protocol] = []

    async def listen(self, options: PPKSServerOptions, cls: type[Protocol] = Echo) -> int:
        def build() -> Protocol:
            p = cls()
            self.protocols.append(p)
            return p

        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = await PPKSServerEndpoint(endpoint, options).listen(Factory.forProtocol(build))
        self.ports.append(port)
        return int(port.getHost().port)

    async def close(self) -> None:
        for p in self.protocols:
            tls: Any = p.transport
            if tls is not None and tls.connected and not tls.disconnecting:
                tls.abortConnection()
        for port in self.ports:
            await port.stopListening()


@pytest.fixture
def servers() -> Iterator[Servers]:
    s = Servers()
    yield s
    pytest_twisted.blockon(Deferred.fromCoroutine(s.close()))


def controller_options(roots: list[Any] | None = None) -> PPKSServerOptions:
    entry = ServerEntry(
        Credentials([PUBCMD, EXPPRIV], xc),
        AuthMode.CONTROLLER_AUTH_ENDPOINT,
        [eop] if roots is None else roots,
    )
    return PPKSServerOptions({"exp1": entry})


def endpoint_client(port: int, roots: list[Any] | None = None) -> PPKSClientEndpoint:
    creator = PPKSClientCreator(
        Credentials([SUBCMD], ep),
        AuthMode.ENDPOINT_AUTH_CONTROLLER,
        [eop] if roots is None else roots,
        snikey="exp1",
    )
    return PPKSClientEndpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), creator)


@pytest_twisted.ensureDeferred
async def test_handshake_and_frame_echo(servers: Servers) -> None:
    port = await servers.listen(controller_options())
    proto = (
        await endpoint_client(port)
        .connect(Factory.forProtocol(Collect))
        .addTimeout(TIMEOUT, reactor)
    )
    assert isinstance(proto, Collect)
    try:
        peer = peer_of(proto)
        assert peer is not None and peer.leaf is not None
        assert peer.leaf.der == PUBCMD.der and peer.snikey == "exp1"
        assert proto.transport.getTcpNoDelay()  # type: ignore[union-attr]
        tls = proto.transport.getHandle()  # type: ignore[union-attr]
        assert tls.get_protocol_version_name() == "TLSv1.3"

        frames = [encode(Mread(addr=0x1000 + i, len=8)) for i in range(20)]
        frames.append(encode(Result()))
        for f in frames:
            proto.transport.write(f)  # type: ignore[union-attr]
        got = await proto.until(len(frames))
        assert [encode(m) for m in got] == frames

        server = servers.protocols[0]
        speer = peer_of(server)
        assert speer is not None and speer.leaf is not None and speer.leaf.der == SUBCMD.der
    finally:
        proto.transport.loseConnection()  # type: ignore[union-attr]
    await proto.lost.addTimeout(TIMEOUT, reactor)


@pytest_twisted.ensureDeferred
async def test_refused_chain_fails_connect(servers: Servers) -> None:
    port = await servers.listen(controller_options())
    d = endpoint_client(port, roots=[eop2]).connect(Factory.forProtocol(Collect))
    with pytest.raises(PeerVerificationError) as info:
        await d.addTimeout(TIMEOUT, reactor)
    assert info.value.rule == "untrusted_root"


# ----------------------------------------------------------------- a C OpenSSL client

OPENSSL = shutil.which("openssl")


class Greeter(Protocol):
    """Sends one frame once the client is verified, then closes."""

    def connectionMade(self) -> None:
        self.transport.write(b"PPKS-OK\n")  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


def s_client(port: int, tmp: Path, *extra: str) -> Deferred[subprocess.CompletedProcess[bytes]]:
    (tmp / "ep.pem").write_bytes(SUBCMD.to_pem())
    (tmp / "ep.key").write_bytes(private_key_pem(ep))
    args = [
        str(OPENSSL),
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-cert",
        str(tmp / "ep.pem"),
        "-key",
        str(tmp / "ep.key"),
        "-quiet",
        *extra,
    ]
    # subprocess.run's timeout kills the client if it hangs.
    return threads.deferToThread(
        subprocess.run, args, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT
    )


@pytest.mark.skipif(OPENSSL is None, reason="no openssl command line tool")
@pytest_twisted.ensureDeferred
async def test_openssl_s_client_with_sni_and_chain(servers: Servers, tmp_path: Path) -> None:
    port = await servers.listen(controller_options(), Greeter)
    done = await s_client(port, tmp_path, "-servername", "exp1", "-tls1_3")
    assert b"PPKS-OK" in done.stdout, done.stderr.decode(errors="replace")
    speer = peer_of(servers.protocols[0])
    assert speer is not None and speer.leaf is not None and speer.leaf.der == SUBCMD.der


@pytest.mark.skipif(OPENSSL is None, reason="no openssl command line tool")
@pytest_twisted.ensureDeferred
async def test_openssl_s_client_refusals(servers: Servers, tmp_path: Path) -> None:
    port = await servers.listen(controller_options(), Greeter)
    with captured_events(level=LogLevel.warn, has="rule") as seen:
        tls12 = await s_client(port, tmp_path, "-servername", "exp1", "-tls1_2")
        unknown = await s_client(port, tmp_path, "-servername", "nosuchkey")
    assert b"PPKS-OK" not in tls12.stdout and b"PPKS-OK" not in unknown.stdout
    rules = [e["rule"] for e in seen]
    assert rules == ["handshake_failed", "unknown_snikey"], rules
