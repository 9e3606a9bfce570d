"""`tls_server` (the demo controller's TLS listener, §4.6) cuts off an endpoint that
connects and never finishes the TLS handshake, instead of holding it for good."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
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


def test_silent_endpoints_past_the_cap_close_the_oldest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both TLS listeners (`tls_server`, `pktlab run`/`campaign --listen`) had no cap on
    the connections in the handshake: each silent one held a descriptor for 30 s, and
    past the descriptor limit accept() failed for everyone (a real endpoint too). Now the
    oldest in the handshake is closed for each one past `default_pending_max()`."""
    import packetlab.controller.local
    import packetlab.tls
    from packetlab.cli.link import Link, listening_endpoint

    cap = 16  # (the smallest default_pending_max gives)
    monkeypatch.setattr(packetlab.tls, "default_pending_max", lambda: cap)
    monkeypatch.setattr(packetlab.controller.local, "default_pending_max", lambda: cap)
    home = PktlabHome.at(tmp_path / "home")
    init_home(home)
    for make in (
        lambda r: tls_server(r, "tcp:0:interface=127.0.0.1", home, "exp1"),
        lambda r: listening_endpoint(r, Link(listen="tcp:0", home=home.root))[0],
    ):
        reactor = MemoryReactorClock()
        make(reactor).listen(Factory.forProtocol(Protocol))
        factory: Any = reactor.tcpServers[0][1]
        transports = []
        for _ in range(cap + 3):
            tls: Any = factory.buildProtocol(None)
            transports.append(t := StringTransport())
            tls.makeConnection(t)
        closed = [t.disconnecting for t in transports]
        assert closed == [True] * 3 + [False] * cap
