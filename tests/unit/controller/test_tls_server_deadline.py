"""`tls_server` (the demo controller's TLS listener, §4.6) cuts off an endpoint that
connects and never finishes the TLS handshake, instead of holding it for good."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport

from packetlab.cli.init import init_home
from packetlab.controller.local import HANDSHAKE_TIMEOUT, tls_server
from packetlab.ppks import PktlabHome
from packetlab.tls.peer import PeerRefusal


def test_a_silent_endpoint_is_cut_off_after_the_handshake_timeout(tmp_path: Path) -> None:
    home = PktlabHome.at(tmp_path / "home")
    init_home(home)
    reactor = MemoryReactorClock()
    tls_server(reactor, "tcp:0:interface=127.0.0.1", home, "exp1").listen(
        Factory.forProtocol(Protocol)
    )
    factory: Any = reactor.tcpServers[0][1]
    tls: Any = factory.buildProtocol(None)
    transport = StringTransport()
    tls.makeConnection(transport)
    reactor.advance(HANDSHAKE_TIMEOUT - 0.5)
    assert tls.wrappedProtocol.refused is None
    reactor.advance(0.5)
    refused = tls.wrappedProtocol.refused
    assert refused is not None and refused.refusal is PeerRefusal.HANDSHAKE_FAILED
    assert f"TLS handshake not done in {HANDSHAKE_TIMEOUT:g} s" in str(refused)


def test_pktlab_run_listen_cuts_off_a_silent_endpoint(tmp_path: Path) -> None:
    """`pktlab run ... --listen` (and the examples) over TLS: the same deadline."""
    from packetlab.cli.link import Link, listening_endpoint

    home = PktlabHome.at(tmp_path / "home")
    init_home(home)
    reactor = MemoryReactorClock()
    where, creds = listening_endpoint(reactor, Link(listen="tcp:0", home=home.root))
    assert creds is not None
    where.listen(Factory.forProtocol(Protocol))
    factory: Any = reactor.tcpServers[0][1]
    tls: Any = factory.buildProtocol(None)
    tls.makeConnection(StringTransport())
    reactor.advance(HANDSHAKE_TIMEOUT - 0.5)
    assert tls.wrappedProtocol.refused is None
    reactor.advance(0.5)
    refused = tls.wrappedProtocol.refused
    assert refused is not None and refused.refusal is PeerRefusal.HANDSHAKE_FAILED
