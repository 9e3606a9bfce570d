"""Volume through a real in-process endpoint over TLS: a 100,000-packet scheduled UDP
train runs to completion (notifications are read while the train is queued, and no more
than `MAX_PENDING` packets wait for their ntag, so the 16-bit tags never run out)."""

from __future__ import annotations

import ipaddress

import pytest_twisted
from twisted.internet.protocol import DatagramProtocol

from packetlab.cli.link import run_in_process
from packetlab.controller import EndpointSession, TrainReport, send_train

COUNT = 70_000


class Sink(DatagramProtocol):
    def __init__(self) -> None:
        self.count = 0

    def datagramReceived(self, data: bytes, addr: object) -> None:
        self.count += 1


@pytest_twisted.ensureDeferred
async def test_a_100000_packet_train_completes() -> None:
    from twisted.internet import reactor

    sink = Sink()
    port = reactor.listenUDP(0, sink, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:

        async def experiment(session: EndpointSession) -> TrainReport:
            # A 1 s lead, not the adaptive one (tests/unit/controller/test_train_lead.py):
            # that one lets MAX_PENDING nsends be queued before the first is due, ~15 s
            # of this test's ~20 spent idle. The packets due before their nsend came are
            # sent late, which this test does not look at: it is about the volume.
            return await send_train(
                session, "127.0.0.1", port.getHost().port, COUNT, 10_000, size=16, lead=1e9
            )

        report = await run_in_process(
            reactor, experiment, addresses=[ipaddress.IPv4Address("127.0.0.1")], timeout=600
        )
    finally:
        await port.stopListening()
    assert report.count == COUNT
    assert report.sent_count == COUNT, {e for e in report.errors if e}
    assert sink.count > 0
