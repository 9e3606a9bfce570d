"""`packetlab.hostport`: addresses in log lines as an operator reads them."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock

from packetlab.hostport import (
    cannot_listen,
    client_endpoint,
    host_port,
    join_host_port,
    shown_host,
    zone_problem,
)


def test_ipv6_in_brackets() -> None:
    assert host_port(IPv6Address("TCP", "::1", 20557)) == "[::1]:20557"
    assert host_port(IPv4Address("TCP", "127.0.0.1", 20557)) == "127.0.0.1:20557"
    assert join_host_port("fe80::1%veth0", 80) == "[fe80::1%veth0]:80"
    assert join_host_port("[::1]", 80) == "[::1]:80"  # not twice
    assert join_host_port("example.org", 80) == "example.org:80"


def test_cannot_listen_in_one_line() -> None:
    """Twisted's own text (and ours, `pktlab run --listen [::1]:PORT`, until session 32)
    said `::1:20556`."""
    e = CannotListenError("::1", 20556, OSError(98, "Address already in use"))
    assert cannot_listen(e) == "cannot listen on [::1]:20556: [Errno 98] Address already in use"
    assert cannot_listen(CannotListenError("", 5, OSError(13, "Permission denied"))) == (
        "cannot listen on *:5: [Errno 13] Permission denied"
    )


def test_zone_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def if_nametoindex(name: str) -> int:
        if name != "eth0":
            raise OSError(19, "No such device")
        return 2

    monkeypatch.setattr(socket, "if_nametoindex", if_nametoindex)
    assert zone_problem("fe80::1") == (
        "the link-local address fe80::1 needs its interface: fe80::1%IFNAME"
    )
    assert zone_problem("fe80::1%eth0") is None
    assert zone_problem("fe80::1%2") is None
    assert zone_problem("fe80::1%eth9") == "no interface 'eth9' here (in fe80::1%eth9)"
    assert zone_problem("2001:db8::1") is None
    assert zone_problem("192.0.2.1") is None
    assert zone_problem("example.org") is None


def test_client_endpoint_keeps_the_zone() -> None:
    """Twisted's HostnameEndpoint resolved `fe80::1%eth0` and connected without its zone:
    `Invalid argument` (xpmgr's BrokerAddr, its backlogs to a proxy; session 32)."""
    reactor = MemoryReactorClock()
    ep = client_endpoint(reactor, "fe80::1%eth0", 20556, 5)
    assert isinstance(ep, TCP6ClientEndpoint)
    ep.connect(Factory.forProtocol(Protocol))
    assert reactor.tcpClients[0][:2] == ("fe80::1%eth0", 20556)
    assert isinstance(client_endpoint(reactor, "192.0.2.1", 1, 5), TCP4ClientEndpoint)
    assert isinstance(client_endpoint(reactor, "broker.example", 1, 5), HostnameEndpoint)


def test_an_ipv4_client_of_a_dual_stack_port_is_its_ipv4_address() -> None:
    """A broker on `tcp6:PORT` said `subscribe peer=::ffff:127.0.0.1` and the TLS layer
    `[::ffff:127.0.0.1]:PORT`, where the per-address share counts 127.0.0.1."""
    assert shown_host("::ffff:192.0.2.9") == "192.0.2.9"
    assert host_port(IPv6Address("TCP", "::ffff:127.0.0.1", 5)) == "127.0.0.1:5"
    assert shown_host("::ffff:1:2") == "::ffff:1:2"  # not mapped
    assert shown_host("2001:db8::1") == "2001:db8::1"
