"""The controller API against a real `twistd pktendpoint --insecure-plaintext` process on
loopback: setup, clock, system info, TCP and UDP exchanges, trains, refused requests,
and backpressure on a large TCP download.

Each test starts its own endpoint with `run_with_local_endpoint` (which stops it again,
also on failure) and serves its targets from this process on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
import pytest_twisted
from testkit.poll import poll_until_async
from twisted.internet import reactor, task
from twisted.internet.defer import maybeDeferred
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol

from packetlab.controller import (
    ConnectFailed,
    EndpointSession,
    RequestFailed,
    estimate_clock,
    read_socket_info,
    read_system_info,
    send_train,
    tcp_exchange,
    udp_exchange,
)
from packetlab.controller.local import run_with_local_endpoint
from packetlab.wire import Ndata, Nstat, NstatCode, SocketState, Status, TransSup

TIMEOUT = 30.0


class Blob(Protocol):
    """Sends the factory's blob and closes, whatever it was sent."""

    def connectionMade(self) -> None:
        self.transport.write(self.factory.blob)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class Echo(DatagramProtocol):
    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.transport.write(b"echo:" + data, addr)  # type: ignore[union-attr]


class Sink(DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.got.append(data)


async def on_endpoint(experiment: Any, **options: Any) -> Any:
    return await run_with_local_endpoint(reactor, experiment, timeout=TIMEOUT, **options)


async def tcp_server(blob: bytes) -> Any:
    f = Factory.forProtocol(Blob)
    f.blob = blob  # type: ignore[attr-defined]
    return reactor.listenTCP(0, f, interface="127.0.0.1")  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_setup_clock_and_system_info() -> None:
    async def experiment(session: EndpointSession) -> Any:
        return await estimate_clock(session, samples=5), await read_system_info(session)

    clock, info = await on_endpoint(experiment)
    # Same machine, same CLOCK_REALTIME: the endpoint's reading lies inside our interval.
    assert abs(clock.offset) <= clock.error + 1
    assert len(clock.samples) == 5
    assert TransSup.TCP in info.transsup and TransSup.UDP in info.transsup
    assert info.bufmax > 0


@pytest_twisted.ensureDeferred
async def test_tcp_exchange_fetches_all_bytes() -> None:
    blob = b"HTTP/1.0 200 OK\r\n\r\n" + os.urandom(50_000)
    port = await tcp_server(blob)
    try:

        async def experiment(session: EndpointSession) -> Any:
            return await tcp_exchange(session, "127.0.0.1", port.getHost().port, b"GET /\r\n\r\n")

        got = await on_endpoint(experiment)
    finally:
        await maybeDeferred(port.stopListening)
    assert got.data == blob
    assert got.end == "peer closed"
    # This server talks first: its data's kernel RX stamp may precede the moment the
    # endpoint saw the connect complete (the ESTABLISHED nstat is stamped by the endpoint
    # when the socket turns writable), so only each against the start is ordered.
    assert got.first_data_at is not None and got.last_data_at is not None
    assert got.started_at <= got.established_at
    assert got.started_at <= got.first_data_at <= got.last_data_at


@pytest_twisted.ensureDeferred
async def test_refused_tcp_connect() -> None:
    port = await tcp_server(b"")
    closed = port.getHost().port
    await maybeDeferred(port.stopListening)  # nothing listens there now

    async def experiment(session: EndpointSession) -> Any:
        with pytest.raises(ConnectFailed) as e:
            await tcp_exchange(session, "127.0.0.1", closed, b"x", connect_timeout=5)
        return e.value.state

    state = await on_endpoint(experiment)
    assert state in ("REFUSED", "RESET", "UNKNOWN", "TIMEOUT")


@pytest_twisted.ensureDeferred
async def test_udp_exchange_echo_and_times() -> None:
    udp = reactor.listenUDP(0, Echo(), interface="127.0.0.1")  # type: ignore[attr-defined]
    try:

        async def experiment(session: EndpointSession) -> Any:
            return await udp_exchange(
                session, "127.0.0.1", udp.getHost().port, [b"a", b"bb", b"ccc"], timeout=5
            )

        got = await on_endpoint(experiment)
    finally:
        await maybeDeferred(udp.stopListening)
    assert sorted(r.data for r in got.replies) == [b"echo:a", b"echo:bb", b"echo:ccc"]
    assert got.end == "expected replies"
    assert all(s.time is not None and s.error is None for s in got.sent)
    first_sent = min(s.time for s in got.sent if s.time is not None)
    assert all(r.time >= first_sent for r in got.replies)


@pytest_twisted.ensureDeferred
async def test_send_train_reaches_the_sink_with_ntag_times() -> None:
    sink = Sink()
    udp = reactor.listenUDP(0, sink, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:

        async def experiment(session: EndpointSession) -> Any:
            return await send_train(session, "127.0.0.1", udp.getHost().port, 50, 1_000_000)

        rep = await on_endpoint(experiment)
        await poll_until_async(
            lambda: len(sink.got) >= 50, what=lambda: f"{len(sink.got)}/50 datagrams"
        )
    finally:
        await maybeDeferred(udp.stopListening)
    assert rep.sent_count == 50 and rep.errors == [None] * 50
    assert len(sink.got) == 50
    assert sorted(int.from_bytes(d[:4], "big") for d in sink.got) == list(range(50))
    assert len(rep.gaps()) == 49


@pytest_twisted.ensureDeferred
async def test_refusals_carry_their_status() -> None:
    async def experiment(session: EndpointSession) -> Any:
        await session.nopen_udp(5)
        codes = []
        for attempt in (
            lambda: session.nopen_udp(5),  # in use
            lambda: session.nclose(6),  # not open
            lambda: session.nsend(7, b"x", family=4, proto=17, to=("127.0.0.1", 9)),
        ):
            try:
                await attempt()
            except RequestFailed as e:
                codes.append(e.status)
        info = await read_socket_info(session, 5)
        await session.nclose(5)
        return codes, info

    codes, info = await on_endpoint(experiment)
    assert codes == [Status.ESKTINUSE, Status.ESKTNOTOPEN, Status.ESKTNOTOPEN]
    assert info.state == SocketState.OPEN and info.proto == 17


@pytest_twisted.ensureDeferred
async def test_backpressure_on_a_large_download_loses_nothing() -> None:
    blob = os.urandom(8 << 20)
    port = await tcp_server(blob)
    try:

        async def experiment(session: EndpointSession) -> Any:
            sock = await session.nopen_tcp_connect(1, "127.0.0.1", port.getHost().port)
            h = hashlib.sha256()
            n = paused = 0
            async for note in sock:
                if isinstance(note, Ndata):
                    h.update(note.data)
                    n += len(note.data)
                    paused += session.paused
                    if n % (1 << 20) < len(note.data):
                        await task.deferLater(reactor, 0.05)  # a slow consumer
                elif isinstance(note, Nstat) and note.code == NstatCode.PEERCLOSED:
                    break
            await session.nclose(1)
            return n, h.hexdigest(), paused

        n, digest, paused = await on_endpoint(experiment, max_notes=8)
    finally:
        await maybeDeferred(port.stopListening)
    assert n == len(blob) and digest == hashlib.sha256(blob).hexdigest()
    assert paused > 0  # the queue did fill, and reading resumed
