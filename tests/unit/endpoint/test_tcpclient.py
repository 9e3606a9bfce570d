"""`TCPClientEndpoint`: the endpoint's TCP connection to a controller address without
`twisted.internet.endpoints`, behaving as Twisted's TCP4/TCP6ClientEndpoint."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer, error, interfaces
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from packetlab.endpoint.service import CONNECT_TIMEOUT, ControllerAddress, PlaintextLink
from packetlab.endpoint.tcpclient import TCPClientEndpoint

ADDR = IPv4Address("TCP", "127.0.0.1", 20556)


class Recorder(Protocol):
    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        self.lost = reason


@implementer(interfaces.IHalfCloseableProtocol, interfaces.IHandshakeListener)
class HalfCloser(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def readConnectionLost(self) -> None:
        self.events.append("read")

    def writeConnectionLost(self) -> None:
        self.events.append("write")

    def handshakeCompleted(self) -> None:
        self.events.append("handshake")


def results(d: defer.Deferred[Any]) -> list[Any]:
    got: list[Any] = []
    d.addBoth(got.append)
    return got


def test_connects_to_the_address_and_fires_with_the_protocol_once_connected() -> None:
    reactor = MemoryReactorClock()
    d = TCPClientEndpoint(reactor, "127.0.0.1", 20556, timeout=3).connect(
        Factory.forProtocol(Recorder)
    )
    host, port, factory, timeout, bind = reactor.tcpClients[0]
    assert (host, port, timeout, bind) == ("127.0.0.1", 20556, 3, None)
    got = results(d)
    wrapper: Any = factory.buildProtocol(ADDR)
    assert got == []  # built, not yet connected
    transport = StringTransport()
    wrapper.makeConnection(transport)
    (proto,) = got
    assert isinstance(proto, Recorder) and proto.transport is transport
    wrapper.dataReceived(b"abc")
    wrapper.connectionLost(Failure(error.ConnectionDone()))
    assert proto.data == [b"abc"] and proto.lost is not None


def test_an_ipv6_address_is_connected_as_given() -> None:
    reactor = MemoryReactorClock()
    TCPClientEndpoint(reactor, "::1", 7).connect(Factory.forProtocol(Recorder))
    assert reactor.tcpClients[0][:2] == ("::1", 7)


def test_a_failed_connection_fails_the_deferred() -> None:
    reactor = MemoryReactorClock()
    got = results(TCPClientEndpoint(reactor, "127.0.0.1", 1).connect(Factory.forProtocol(Recorder)))
    factory = reactor.tcpClients[0][2]
    factory.clientConnectionFailed(reactor.connectors[0], Failure(error.ConnectionRefusedError()))
    assert isinstance(got[0], Failure) and got[0].check(error.ConnectionRefusedError)


def test_cancelling_stops_the_attempt() -> None:
    reactor = MemoryReactorClock()
    d = TCPClientEndpoint(reactor, "127.0.0.1", 1).connect(Factory.forProtocol(Recorder))
    got = results(d)
    d.cancel()
    assert got[0].check(error.ConnectingCancelledError)
    assert reactor.connectors[0].stoppedConnecting


def test_a_factory_building_nothing_fails_the_deferred() -> None:
    reactor = MemoryReactorClock()
    factory = Factory()
    factory.buildProtocol = lambda addr: None  # type: ignore[method-assign]
    got = results(TCPClientEndpoint(reactor, "127.0.0.1", 1).connect(factory))
    assert reactor.tcpClients[0][2].buildProtocol(ADDR) is None
    assert got[0].check(error.NoProtocol)


def test_half_close_and_handshake_reach_the_protocol_that_provides_them() -> None:
    reactor = MemoryReactorClock()
    d = TCPClientEndpoint(reactor, "127.0.0.1", 1).connect(Factory.forProtocol(HalfCloser))
    wrapper = reactor.tcpClients[0][2].buildProtocol(ADDR)
    assert interfaces.IHalfCloseableProtocol.providedBy(wrapper)
    wrapper.makeConnection(StringTransport())
    (proto,) = results(d)
    wrapper.readConnectionLost()
    wrapper.writeConnectionLost()
    wrapper.handshakeCompleted()
    assert proto.events == ["read", "write", "handshake"]
    plain = TCPClientEndpoint(reactor, "127.0.0.1", 1)
    plain.connect(Factory.forProtocol(Recorder))
    other = reactor.tcpClients[1][2].buildProtocol(ADDR)
    assert not interfaces.IHalfCloseableProtocol.providedBy(other)


def test_a_connect_that_raises_fails_the_deferred() -> None:
    class Broken(MemoryReactorClock):
        def connectTCP(self, *args: Any, **kw: Any) -> Any:
            raise OSError("no")

    got = results(TCPClientEndpoint(Broken(), "127.0.0.1", 1).connect(Factory()))
    assert got[0].check(OSError)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "10.1.2.3"])
def test_plaintext_link_connects_to_an_address_without_twisted_endpoints(host: str) -> None:
    reactor = MemoryReactorClock()
    ep = PlaintextLink().endpoint(reactor, ControllerAddress(host, 20556))
    assert isinstance(ep, TCPClientEndpoint)
    ep.connect(Factory.forProtocol(Recorder))
    assert reactor.tcpClients[0][:4] == (host, 20556, reactor.tcpClients[0][2], CONNECT_TIMEOUT)


def test_plaintext_link_resolves_a_host_name_with_twisted() -> None:
    from twisted.internet.endpoints import HostnameEndpoint

    ep = PlaintextLink().endpoint(MemoryReactorClock(), ControllerAddress("localhost", 1))
    assert isinstance(ep, HostnameEndpoint)
