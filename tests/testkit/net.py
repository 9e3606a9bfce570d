"""Small typed accessors for Twisted's network objects in tests."""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IListeningPort


def port_of(listening: IListeningPort) -> int:
    """The port a listener bound (`getHost()` is typed as a bare IAddress)."""
    host = listening.getHost()
    assert isinstance(host, IPv4Address | IPv6Address), host
    return host.port
