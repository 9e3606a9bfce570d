"""A TLS server's handshake deadline (PPKSServerEndpoint / PPKSTLSFactory
`handshake_timeout`): a client that never finishes the handshake is cut off with a
specific refusal, one that finishes in time is not (issue 15: slowloris on the broker)."""

from __future__ import annotations

from typing import Any

from testkit.logs import captured_events
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.test.iosim import connectedServerAndClient

from packetlab.ppks import AuthMode, generate_private_key, issue_certificate
from packetlab.tls import Credentials, PPKSClientCreator, PPKSServerOptions, ServerEntry
from packetlab.tls.endpoints import PPKSTLSFactory
from packetlab.tls.gate import PeerGate
from packetlab.tls.peer import PeerRefusal

NB, NA = 0, 2**31 - 1


def server_options() -> PPKSServerOptions:
    key = generate_private_key()
    agent = issue_certificate("agent", key, key, NB, NA)
    return PPKSServerOptions(default=ServerEntry(Credentials([agent], key), AuthMode.NO_VERIFY))


class App(Protocol):
    made = False

    def connectionMade(self) -> None:
        self.made = True


def server(
    clock: Clock, seconds: float | None = 30.0, pending_max: int | None = None
) -> PPKSTLSFactory:
    return PPKSTLSFactory(
        server_options(),
        False,
        Factory.forProtocol(App),
        handshake_timeout=None if seconds is None else (seconds, clock),
        pending_max=pending_max,
    )


def gate_of(tls: Any) -> PeerGate:
    gate = tls.wrappedProtocol
    assert isinstance(gate, PeerGate)
    return gate


def test_a_silent_client_is_cut_off_at_the_deadline() -> None:
    clock = Clock()
    tls: Any = server(clock).buildProtocol(None)
    gate = gate_of(tls)
    transport = StringTransport()
    tls.makeConnection(transport)
    clock.advance(29.9)
    assert not transport.disconnecting and gate.refused is None
    tls.dataReceived(b"\x16\x03\x01\x00")  # a trickle does not extend the deadline
    clock.advance(0.1)
    assert gate.refused is not None
    assert gate.refused.refusal is PeerRefusal.HANDSHAKE_FAILED
    assert "TLS handshake not done in 30 s" in str(gate.refused)
    assert transport.disconnecting or transport.disconnected
    assert not gate.app.made
    assert clock.getDelayedCalls() == []


def test_a_client_that_goes_away_leaves_no_timer() -> None:
    clock = Clock()
    tls: Any = server(clock).buildProtocol(None)
    tls.makeConnection(StringTransport())
    assert len(clock.getDelayedCalls()) == 1
    tls.connectionLost(Exception("gone"))
    assert clock.getDelayedCalls() == []


def test_a_handshake_in_time_disarms_the_deadline() -> None:
    clock = Clock()
    creator = PPKSClientCreator(None, AuthMode.NO_VERIFY)
    cf = PPKSTLSFactory(creator, True, Factory.forProtocol(App))
    sf = server(clock)
    server_tls, _client_tls, pump = connectedServerAndClient(
        lambda: sf.buildProtocol(None), lambda: cf.buildProtocol(None), greet=False
    )
    pump.flush()
    gate = gate_of(server_tls)
    assert gate.peer is not None and gate.app.made
    assert clock.getDelayedCalls() == []
    clock.advance(60)
    assert gate.refused is None


def test_no_deadline_unless_asked() -> None:
    clock = Clock()
    tls: Any = server(clock, None).buildProtocol(None)
    tls.makeConnection(StringTransport())
    assert clock.getDelayedCalls() == []


def test_connections_in_the_handshake_are_capped_oldest_closed_first() -> None:
    """Silent TCP connections to a TLS server (`pktlab xpmgr`'s endpoint port) each held a
    descriptor and an OpenSSL session for the whole handshake deadline (30 s): 3,000 of
    them took 1,540 descriptors and +100 MB, and under a 256-descriptor limit 300 of them
    made Twisted close every new connection at accept (EMFILE), a real endpoint's too,
    for 22 s. With `pending_max`, each connection past the cap closes the oldest one still
    in the handshake (once-per-episode log line), so a quick client still gets through."""

    clock = Clock()
    f = server(clock, pending_max=3)
    with captured_events() as seen:
        conns = []
        for _ in range(10):
            tls: Any = f.buildProtocol(None)
            t = StringTransport()
            tls.makeConnection(t)
            conns.append((tls, t))
        closed = [t.disconnecting or t.disconnected for _, t in conns]
        assert closed == [True] * 7 + [False] * 3
        assert f.evicted == 7 and len(f.pending) == 3
        capped = seen.where(fmt="in the handshake (cap")
        assert len(capped) == 1, seen  # one line per episode, not one per eviction
        refusals = seen.where(fmt="refused TLS peer")
        assert refusals == []  # an eviction is not also logged as a refusal
        for tls, _ in conns:  # the evicted ones' connections end; the rest go away
            tls.connectionLost(Exception("gone"))
        assert len(f.pending) == 0
        assert seen.where(fmt="under the cap again")
        assert clock.getDelayedCalls() == []


def test_a_verified_connection_leaves_the_pending_set() -> None:
    clock = Clock()
    creator = PPKSClientCreator(None, AuthMode.NO_VERIFY)
    cf = PPKSTLSFactory(creator, True, Factory.forProtocol(App))
    sf = server(clock, pending_max=1)
    s, _c, pump = connectedServerAndClient(
        lambda: sf.buildProtocol(None), lambda: cf.buildProtocol(None)
    )
    pump.flush()
    assert gate_of(s).peer is not None and len(sf.pending) == 0
    tls: Any = sf.buildProtocol(None)  # a second one: under the cap, the first not evicted
    tls.makeConnection(StringTransport())
    assert sf.evicted == 0 and len(sf.pending) == 1


def test_at_the_cap_the_busiest_address_loses_its_oldest_handshake() -> None:
    """At the cap the oldest handshake of all was closed: a flood of silent clients from
    one address (127.0.0.2) closed a real peer's handshake (127.0.0.1) that began before
    it. Now the one closed is the oldest of the address holding the most."""
    from twisted.internet.address import IPv4Address

    clock = Clock()
    f = server(clock, pending_max=4)

    def connect(host: str, port: int) -> StringTransport:
        tls: Any = f.buildProtocol(IPv4Address("TCP", host, port))
        t = StringTransport()
        tls.makeConnection(t)
        return t

    real = connect("127.0.0.1", 40000)
    flood = [connect("127.0.0.2", 50000 + i) for i in range(20)]
    assert not (real.disconnecting or real.disconnected)
    closed = [t.disconnecting or t.disconnected for t in flood]
    assert closed == [True] * 17 + [False] * 3  # the flood's own oldest, in order
    assert f.evicted == 17 and sorted(f.pending.values()) == ["127.0.0.1"] + ["127.0.0.2"] * 3
    assert f.pending_by.held == {"127.0.0.1": 1, "127.0.0.2": 3}
