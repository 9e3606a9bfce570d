"""The controller API behind packetlab.tls on real loopback sockets: a Controller listening
with PPKSServerEndpoint, and an endpoint-side TLS client (PPKSClientEndpoint) that answers
requests with the unit tests' scripted endpoint. Checks that the session's writes come
out one TLS record per message, and that backpressure (pausing the TLS transport) loses
nothing on a large transfer.

The real endpoint has no TLS yet; once it has, test_controller_loopback.py covers it too.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
from testkit.net import port_of
from twisted.internet import reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory

from packetlab.controller import Controller, EndpointSession, estimate_clock
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
from packetlab.wire import Framer, Mread, Start

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "controller"))
from ctl_fakes import FakeEndpoint

TIMEOUT = 30.0
NB, NA = 0, 2**31 - 1
eop, exper, xc, ep = (generate_private_key() for _ in range(4))
EXPPRIV = issue_certificate("exppriv", eop, exper, NB, NA)
PUBCMD = issue_certificate("pubcmd", exper, xc, NB, NA)
SUBCMD = issue_certificate("subcmd", eop, ep, NB, NA)


class RecordCounter(FakeEndpoint):
    """Counts the frames in each TLS record: the TLS protocol hands the gate one record's
    plaintext per dataReceived call (the gate joins the records of one socket read for
    the application), so frames per gate call show packing."""

    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.frames_per_read: list[int] = []

    def connectionMade(self) -> None:
        gate = self.transport.wrappedProtocol  # type: ignore[union-attr]
        deliver = gate.dataReceived

        def per_record(data: bytes) -> None:
            self.frames_per_read.append(len(list(Framer().feed(data))))
            deliver(data)

        gate.dataReceived = per_record
        super().connectionMade()


async def tls_controller(experiment: Any) -> tuple[Controller[Any], int]:
    entry = ServerEntry(
        Credentials([PUBCMD, EXPPRIV], xc), AuthMode.CONTROLLER_AUTH_ENDPOINT, [eop]
    )
    server = PPKSServerEndpoint(
        TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), PPKSServerOptions({"exp1": entry})
    )
    ctl: Controller[Any] = Controller(experiment, reactor=reactor, limit=1)
    port = await ctl.listen(server)
    return ctl, port_of(port)


async def tls_endpoint(port: int, fake: FakeEndpoint) -> None:
    creator = PPKSClientCreator(
        Credentials([SUBCMD], ep), AuthMode.ENDPOINT_AUTH_CONTROLLER, [eop], snikey="exp1"
    )
    client = PPKSClientEndpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", port), creator)
    await client.connect(Factory.forProtocol(lambda: fake))


@pytest_twisted.ensureDeferred
async def test_controller_over_tls_one_record_per_message() -> None:
    async def experiment(session: EndpointSession) -> Any:
        reads = [session.mread(0x10010000, 8) for _ in range(20)]  # pipelined
        for d in reads:
            await d
        return await estimate_clock(session, samples=3)

    ctl, port = await tls_controller(experiment)
    fake = RecordCounter(reactor)
    try:
        await tls_endpoint(port, fake)
        outcome = await ctl.next_outcome().addTimeout(TIMEOUT, reactor)
    finally:
        await ctl.stop()
    assert outcome.unwrap().rtt > 0
    assert fake.received[0] == Start()
    assert sum(isinstance(m, Mread) for m in fake.received) == 23
    # 20 pipelined writes in one reactor turn still arrive as 20 separate records
    assert set(fake.frames_per_read) == {1}, fake.frames_per_read


@pytest_twisted.ensureDeferred
async def test_backpressure_through_tls_loses_nothing() -> None:
    blob = os.urandom(4 << 20)

    async def experiment(session: EndpointSession) -> Any:
        sock_d = session.nopen_tcp_connect(1, "127.0.0.1", 80)
        sock = await sock_d
        await sock.wait_established()
        await session.nsend(1, b"go")
        got = bytearray()
        paused = 0
        async for note in sock:
            data = getattr(note, "data", None)
            if data is not None:
                got += data
                paused += session.paused
                if len(got) % (1 << 20) < len(data):
                    await task.deferLater(reactor, 0.05)
            elif getattr(note, "code", 0) == 3:  # PEERCLOSED
                break
        return bytes(got), paused

    ctl, port = await tls_controller(experiment)
    ctl.session_options = {"max_notes": 4}
    fake = FakeEndpoint(reactor)  # type: ignore[arg-type]
    chunks = [blob[i : i + 65536] for i in range(0, len(blob), 65536)]
    fake.tcp_servers[("127.0.0.1", 80)] = lambda req: chunks
    try:
        await tls_endpoint(port, fake)
        outcome = await ctl.next_outcome().addTimeout(TIMEOUT, reactor)
    finally:
        await ctl.stop()
    data, paused = outcome.unwrap()
    assert hashlib.sha256(data).digest() == hashlib.sha256(blob).digest()
    assert paused > 0
