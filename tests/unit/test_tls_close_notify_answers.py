"""The answers to requests that came in the same read as the peer's close_notify go out
before our close_notify (session 20, hard20). A controller that sent its last requests
and its close_notify together got none of their answers: the gate held the requests
until the read was over, and by then the link was shut (PPKSTLSProtocol._shutdownTLS
now hands the read's data to the application and sends what it writes first)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from test_tls_takeover import creator, options
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.test.iosim import connectedServerAndClient
from zope.interface import implementer

from packetlab.tls import PPKSTLSFactory, takeover
from packetlab.tls.protocol import PPKSTLSProtocol


class Answering(Protocol):
    """Answers every piece of data at once, as the endpoint answers requests."""

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"answer to " + data)


class Collecting(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


@pytest.mark.parametrize("path", ["python", "openssl"])
def test_requests_and_close_notify_in_one_read_are_answered(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(takeover.ENV, path)
    peer = Collecting()
    sf = PPKSTLSFactory(options(), False, Factory.forProtocol(Answering))
    cf = PPKSTLSFactory(creator(), True, Factory.forProtocol(lambda: peer))
    client, server, pump = connectedServerAndClient(
        lambda: sf.buildProtocol(None), lambda: cf.buildProtocol(None), greet=False
    )
    pump.flush()
    assert isinstance(client, PPKSTLSProtocol) and isinstance(server, PPKSTLSProtocol)
    assert server.record_path == path
    client.write(b"the last request")
    client.loseConnection()  # its close_notify follows the request: one read for the server
    pump.flush()
    assert peer.data == b"answer to the last request"


@implementer(IHalfCloseableProtocol)
class AnswersLater(Protocol):
    """Half-closeable: told of the peer's close_notify, it answers then closes, as the
    endpoint's controller link does with answers still queued."""

    def __init__(self) -> None:
        self.got = b""
        self.told = False

    def dataReceived(self, data: bytes) -> None:
        self.got += data

    def readConnectionLost(self) -> None:
        self.told = True

    def writeConnectionLost(self) -> None:
        pass


def test_close_notify_closes_one_side_of_a_half_closeable_application() -> None:
    """TLS 1.3 §6.1: a close_notify does not discard the receiver's pending writes. The
    link used to answer with its own close_notify at once, and what the application
    wrote later was lost (400 pipelined mreads and a close_notify: 126 answers)."""
    app = AnswersLater()
    peer = Collecting()
    sf = PPKSTLSFactory(options(), False, Factory.forProtocol(lambda: app))
    cf = PPKSTLSFactory(creator(), True, Factory.forProtocol(lambda: peer))
    client, server, pump = connectedServerAndClient(
        lambda: sf.buildProtocol(None), lambda: cf.buildProtocol(None), greet=False
    )
    pump.flush()
    assert isinstance(client, PPKSTLSProtocol) and isinstance(server, PPKSTLSProtocol)
    assert server.record_path == "python"
    client.write(b"request")
    client.loseConnection()
    pump.flush()
    assert app.got == b"request" and app.told
    link = cast(Any, app.transport)
    link.write(b"the answer, later")  # still possible
    link.loseConnection()  # then our close_notify and the TCP close
    pump.flush()
    assert peer.data == b"the answer, later"
    tcp = cast(Any, server.transport)
    assert tcp.disconnected
