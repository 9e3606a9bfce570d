"""A TCP client endpoint to an IP address, without `twisted.internet.endpoints`.

That module (with the stdio, SNI and systemd helpers it imports) costs the idle endpoint
~0.38 MiB of RSS, and all it would do here is `reactor.connectTCP` behind Twisted's
`_WrappingFactory` (docs/performance.md, Memory, session 8). `TCPClientEndpoint` does the
same for an IPv4 or IPv6 address: the same connection, the same protocol stack (one
wrapping protocol between the TCP connection and the protocol the factory built), the
same `Deferred` (fires with that protocol once it is connected; fails with the
connection's error, with `NoProtocol` or the factory's exception, or with
`ConnectingCancelledError` when cancelled, which also stops the attempt). A host name
still goes through Twisted's `HostnameEndpoint`, imported then
(`packetlab.endpoint.service.PlaintextLink`).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, error, interfaces
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer

__all__ = ["TCPClientEndpoint"]

# What the wrapped protocol may provide, so the connection finds it on the wrapper too.
_PASSED_ON = (
    interfaces.IHalfCloseableProtocol,
    interfaces.IFileDescriptorReceiver,
    interfaces.IHandshakeListener,
)


@implementer(interfaces.IStreamClientEndpoint)
class TCPClientEndpoint:
    """`IStreamClientEndpoint` to `host` (an IPv4 or IPv6 address), `port`, as Twisted's
    `TCP4ClientEndpoint`/`TCP6ClientEndpoint` for an address."""

    def __init__(self, reactor: Any, host: str, port: int, timeout: float = 30) -> None:
        self._reactor = reactor
        self._host = host
        self._port = port
        self._timeout = timeout

    def connect(self, protocolFactory: interfaces.IProtocolFactory) -> defer.Deferred[Any]:
        try:
            factory = _Connecting(protocolFactory)
            self._reactor.connectTCP(self._host, self._port, factory, timeout=self._timeout)
            return factory.connected
        except BaseException:
            return defer.fail()


class _Connected(Protocol):
    """Between the TCP connection and the protocol the factory built: fires `connected`
    once that protocol is connected, then passes everything on to it."""

    def __init__(self, connected: defer.Deferred[Any], wrapped: Any) -> None:
        self._connected = connected
        self._wrapped = wrapped
        # All of them at once (Twisted's wrapper keeps only the last one it finds).
        provided = [iface for iface in _PASSED_ON if iface.providedBy(wrapped)]
        if provided:
            directlyProvides(self, *provided)

    def logPrefix(self) -> str:
        if interfaces.ILoggingContext.providedBy(self._wrapped):
            return str(self._wrapped.logPrefix())
        return self._wrapped.__class__.__name__

    def connectionMade(self) -> None:
        self._wrapped.makeConnection(self.transport)
        self._connected.callback(self._wrapped)

    def dataReceived(self, data: bytes) -> None:
        self._wrapped.dataReceived(data)

    def fileDescriptorReceived(self, descriptor: int) -> None:
        self._wrapped.fileDescriptorReceived(descriptor)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._wrapped.connectionLost(reason)

    def readConnectionLost(self) -> None:
        self._wrapped.readConnectionLost()

    def writeConnectionLost(self) -> None:
        self._wrapped.writeConnectionLost()

    def handshakeCompleted(self) -> None:
        self._wrapped.handshakeCompleted()


class _Connecting(ClientFactory):
    """One connection attempt: builds `_Connected` around what `wrapped` builds."""

    def __init__(self, wrapped: interfaces.IProtocolFactory) -> None:
        self._wrapped = wrapped
        self._connector: Any = None
        self.connected: defer.Deferred[Any] = defer.Deferred(canceller=self._cancel)

    def startedConnecting(self, connector: Any) -> None:
        self._connector = connector

    def _cancel(self, d: defer.Deferred[Any]) -> None:
        d.errback(error.ConnectingCancelledError(self._connector.getDestination()))
        self._connector.stopConnecting()

    def doStart(self) -> None:
        self._wrapped.doStart()

    def doStop(self) -> None:
        self._wrapped.doStop()

    def buildProtocol(self, addr: Any) -> _Connected | None:
        try:
            proto = self._wrapped.buildProtocol(addr)
            if proto is None:
                raise error.NoProtocol()
        except BaseException:
            self.connected.errback()
            return None
        return _Connected(self.connected, proto)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if not self.connected.called:
            self.connected.errback(reason)
