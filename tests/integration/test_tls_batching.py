"""The batched TLS link on real loopback sockets and the real reactor: 10 MB of frames of
mixed sizes written by a streaming producer (batched per reactor turn, sent directly
when the socket takes them) to a reader that keeps pausing. Every frame arrives whole and
in order, byte-exact; each frame up to 16 KiB is exactly one TLS record, larger ones span
records that hold nothing else; the writer is paused by the transport (backpressure) and
what it holds outside the kernel stays bounded."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from packetlab.ppks import generate_private_key, issue_certificate
from packetlab.tls import (
    AuthMode,
    Credentials,
    PPKSClientCreator,
    PPKSClientEndpoint,
    PPKSServerEndpoint,
    PPKSServerOptions,
    ServerEntry,
)
from packetlab.tls.directwrite import CORK_LIMIT, frame_writer, socket_connection

TOTAL = 10 * 1000 * 1000
NB, NA = 0, 2**31 - 1
eop, exper, xc, ep = (generate_private_key() for _ in range(4))
EXPPRIV = issue_certificate("exppriv", eop, exper, NB, NA)
PUBCMD = issue_certificate("pubcmd", exper, xc, NB, NA)
SUBCMD = issue_certificate("subcmd", eop, ep, NB, NA)


def make_frames(seed: int) -> list[bytes]:
    """Length-prefixed frames: mostly small (answers, ntags), some above 16 KiB."""
    rng = random.Random(seed)
    out, size = [], 0
    while size < TOTAL:
        n = rng.randint(1, 200) if rng.random() < 0.9 else rng.randint(1000, 40_000)
        body = rng.randbytes(n)
        out.append(n.to_bytes(4, "big") + body)
        size += 4 + n
    return out


@implementer(IPushProducer)
class Writer(Protocol):
    """Writes every frame, as fast as the link takes them."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.next = 0
        self.paused = False
        self.pauses = 0
        self.max_held = 0  # bytes held by Twisted's TCP buffer, at most
        self.done: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.link = frame_writer(self.transport)
        self.link.batch_turns(reactor)
        self.tcp = socket_connection(self.transport)
        assert self.tcp is not None
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        reactor.callLater(0, self.resumeProducing)

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        frames, write = self.frames, self.link.write
        while not self.paused and self.next < len(frames):
            write(frames[self.next])
            self.next += 1
            held = self.tcp._tempDataLen + len(self.tcp.dataBuffer) - self.tcp.offset
            self.max_held = max(self.max_held, held)
        if self.next == len(frames) and not self.done.called:
            self.done.callback(None)

    def stopProducing(self) -> None:
        pass


class SlowReader(Protocol):
    """Takes what comes, but pauses its transport for 20 ms every ~1 MB."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.records: list[bytes] = []
        self.next_pause = 1 << 20
        self.got_all: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        gate = self.transport.wrappedProtocol  # type: ignore[union-attr]
        deliver = gate.dataReceived

        def per_record(data: bytes) -> None:  # one decrypted record per call
            self.records.append(data)
            deliver(data)

        gate.dataReceived = per_record

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if len(self.data) >= self.next_pause:
            self.next_pause += 1 << 20
            t: Any = self.transport
            t.pauseProducing()
            reactor.callLater(0.02, t.resumeProducing)
        if len(self.data) >= TOTAL and not self.got_all.called:
            self.got_all.callback(None)


@pytest_twisted.ensureDeferred
async def test_ten_megabytes_byte_exact_one_record_per_frame_with_backpressure() -> None:
    frames = make_frames(14)
    expected = b"".join(frames)
    writer = Writer(frames)
    reader = SlowReader()
    entry = ServerEntry(
        Credentials([PUBCMD, EXPPRIV], xc), AuthMode.CONTROLLER_AUTH_ENDPOINT, [eop]
    )
    server = PPKSServerEndpoint(
        TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), PPKSServerOptions({"e": entry})
    )
    port = await server.listen(Factory.forProtocol(lambda: writer))
    creator = PPKSClientCreator(
        Credentials([SUBCMD], ep), AuthMode.ENDPOINT_AUTH_CONTROLLER, [eop], snikey="e"
    )
    client = PPKSClientEndpoint(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), creator
    )
    try:
        await client.connect(Factory.forProtocol(lambda: reader))
        await reader.got_all.addTimeout(60, reactor)
        await writer.done
    finally:
        if reader.transport is not None:
            reader.transport.loseConnection()
        await port.stopListening()
    got = bytes(reader.data)
    assert len(got) == len(expected)
    assert hashlib.sha256(got).digest() == hashlib.sha256(expected).digest()
    # One record per frame: walk the records against the frames.
    records = iter(reader.records)
    for frame in frames:
        if len(frame) <= 16384:
            assert next(records) == frame
        else:
            parts = b""
            while len(parts) < len(frame):
                rec = next(records)
                assert len(rec) <= 16384
                parts += rec
            assert parts == frame  # spans records of its own
    assert next(records, None) is None
    # Backpressure: the transport paused the writer, and Twisted's buffer stayed bounded
    # (its limit, plus one cork's worth sealed at once, plus one large frame).
    assert writer.pauses > 0
    assert writer.max_held <= 64 * 1024 + 2 * CORK_LIMIT + 41_000, writer.max_held
