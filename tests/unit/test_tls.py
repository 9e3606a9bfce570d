# mypy: disable-error-code="union-attr"
# (transports and wrapped protocols are Optional until connected; the harness connects them)
"""packetlab.tls in memory: real OpenSSL handshakes over iosim, no sockets, no reactor."""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from testkit.logs import captured_events
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.test.iosim import ConnectionCompleter, IOPump, connectedServerAndClient
from zope.interface import implementer

from packetlab.ppks import (
    Reason,
    generate_private_key,
    issue_certificate,
    private_key_pem,
    raw_public_key,
)
from packetlab.tls import (
    AuthMode,
    Credentials,
    IPPKSPeerListener,
    PeerGate,
    PeerRefusal,
    PeerVerificationError,
    PPKSClientCreator,
    PPKSClientEndpoint,
    PPKSServerEndpoint,
    PPKSServerOptions,
    PPKSTLSFactory,
    ServerEntry,
    TLSConfigError,
    VerifiedPeer,
    gen_snikey,
    is_valid_snikey,
    peer_of,
)
from packetlab.tls.protocol import PPKSTLSProtocol
from packetlab.wire import Framer, Mread, Mwrite, Result, encode

NB, NA = 0, 2**31 - 1  # the validity pktlab_init uses


# --------------------------------------------------------------------------- the PPKS world


@dataclass
class World:
    """Keys and certificates like `pktlab_init` makes, plus variants for refusals."""

    eop: Ed25519PrivateKey = field(default_factory=generate_private_key)
    eop2: Ed25519PrivateKey = field(default_factory=generate_private_key)  # another EOp
    exper: Ed25519PrivateKey = field(default_factory=generate_private_key)
    xc: Ed25519PrivateKey = field(default_factory=generate_private_key)  # controller
    ep: Ed25519PrivateKey = field(default_factory=generate_private_key)  # endpoint
    bop: Ed25519PrivateKey = field(default_factory=generate_private_key)
    broker: Ed25519PrivateKey = field(default_factory=generate_private_key)

    def __post_init__(self) -> None:
        self.exppriv = issue_certificate("exppriv", self.eop, self.exper, NB, NA)
        self.pubcmd = issue_certificate("pubcmd", self.exper, self.xc, NB, NA)
        self.subcmd = issue_certificate("subcmd", self.eop, self.ep, NB, NA)
        self.agent_xc = issue_certificate("agent", self.xc, self.xc, NB, NA)
        self.agent_ep = issue_certificate("agent", self.ep, self.ep, NB, NA)
        self.agent_broker = issue_certificate("agent", self.bop, self.broker, NB, NA)

    def controller(self) -> Credentials:
        return Credentials([self.pubcmd, self.exppriv], self.xc)

    def endpoint(self) -> Credentials:
        return Credentials([self.subcmd], self.ep)


@pytest.fixture(scope="module")
def world() -> World:
    return World()


# --------------------------------------------------------------------------- harness


class App(Protocol):
    """Records what the application layer sees."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.data = b""
        self.lost: Failure | None = None
        self.peer: VerifiedPeer | None = None

    def connectionMade(self) -> None:
        self.events.append("connectionMade")

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self.events.append("connectionLost")
        self.lost = reason


@implementer(IPPKSPeerListener)
class ListeningApp(App):
    def peerVerified(self, peer: VerifiedPeer) -> None:
        self.events.append("peerVerified")
        self.peer = peer


@dataclass
class Outcome:
    peer: VerifiedPeer | None = None
    error: PeerVerificationError | None = None


def watch(gate: PeerGate) -> Outcome:
    out = Outcome()

    def ok(peer: VerifiedPeer) -> None:
        out.peer = peer

    def bad(f: Failure) -> None:
        f.trap(PeerVerificationError)
        out.error = cast(PeerVerificationError, f.value)

    gate.when_verified().addCallbacks(ok, bad)
    return out


@dataclass
class Link:
    client_tls: TLSMemoryBIOProtocol
    server_tls: TLSMemoryBIOProtocol
    pump: IOPump
    client_gate: PeerGate  # kept here: TLSMemoryBIOProtocol drops it on connectionLost
    server_gate: PeerGate
    client: Outcome
    server: Outcome

    @property
    def client_app(self) -> App:
        app: App = self.client_gate.app
        return app

    @property
    def server_app(self) -> App:
        app: App = self.server_gate.app
        return app


def link(
    creator: PPKSClientCreator,
    options: PPKSServerOptions,
    app: Callable[[], Protocol] = ListeningApp,
    **server_kw: Any,
) -> Link:
    sf = PPKSTLSFactory(options, False, Factory.forProtocol(app), **server_kw)
    cf = PPKSTLSFactory(creator, True, Factory.forProtocol(app))
    client_tls, server_tls, pump = connectedServerAndClient(
        lambda: sf.buildProtocol(None), lambda: cf.buildProtocol(None), greet=False
    )
    assert client_tls is not None and server_tls is not None
    cgate, sgate = client_tls.wrappedProtocol, server_tls.wrappedProtocol
    assert isinstance(cgate, PeerGate) and isinstance(sgate, PeerGate)
    out = Link(client_tls, server_tls, pump, cgate, sgate, watch(cgate), watch(sgate))
    pump.flush()
    return out


def endpoint_creator(
    w: World, *, roots: list[Any] | None = None, snikey: str | None = "exp1", **kw: Any
) -> PPKSClientCreator:
    """The endpoint's side of the controller link (§4.6 table, row 1)."""
    return PPKSClientCreator(
        kw.pop("credentials", w.endpoint()),
        AuthMode.ENDPOINT_AUTH_CONTROLLER,
        [w.eop] if roots is None else roots,
        snikey=snikey,
        **kw,
    )


def controller_entry(w: World, *, roots: list[Any] | None = None, **kw: Any) -> ServerEntry:
    return ServerEntry(
        kw.pop("credentials", w.controller()),
        AuthMode.CONTROLLER_AUTH_ENDPOINT,
        [w.eop] if roots is None else roots,
        **kw,
    )


def result_of(d: Deferred[Any]) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


TLS_RECORD_APPDATA = 0x17


def tls_records(stream: bytes) -> list[tuple[int, int]]:
    """(content type, length) of each TLS record in a raw byte stream; must parse whole."""
    out = []
    i = 0
    while i < len(stream):
        assert i + 5 <= len(stream), "truncated record header"
        ctype, major, minor, length = stream[i], stream[i + 1], stream[i + 2], stream[i + 3 : i + 5]
        assert (major, minor) == (3, 3), "TLS 1.3 records carry legacy version 0x0303"
        n = int.from_bytes(length, "big")
        assert i + 5 + n <= len(stream), "truncated record body"
        out.append((ctype, n))
        i += 5 + n
    return out


# --------------------------------------------------------------------------- successful links


def test_endpoint_controller_link_verifies_both_chains(world: World) -> None:
    link_ = link(endpoint_creator(world), PPKSServerOptions({"exp1": controller_entry(world)}))

    # endpoint (TLS client) checked the controller's pubcmd -> exppriv chain against the EOp
    peer = link_.client.peer
    assert peer is not None and link_.client.error is None
    assert peer.mode is AuthMode.ENDPOINT_AUTH_CONTROLLER
    assert peer.chain is not None
    assert [c.der for c in peer.chain.certs] == [world.pubcmd.der, world.exppriv.der]
    assert peer.chain.root_index == 0
    assert peer.public_key == raw_public_key(world.xc)
    assert peer.snikey == "exp1" and peer.entry is None

    # controller (TLS server) checked the endpoint's subcmd chain
    speer = link_.server.peer
    assert speer is not None and link_.server.error is None
    assert speer.mode is AuthMode.CONTROLLER_AUTH_ENDPOINT
    assert speer.chain is not None and speer.chain.leaf.der == world.subcmd.der
    assert speer.presented == (world.subcmd.der,)
    assert speer.snikey == "exp1"
    assert speer.entry is not None and speer.entry.credentials.leaf is world.pubcmd

    conn = link_.client_tls.getHandle()
    assert conn.get_protocol_version_name() == "TLSv1.3"


def test_application_connected_only_after_verification(world: World) -> None:
    link_ = link(endpoint_creator(world), PPKSServerOptions({"exp1": controller_entry(world)}))
    for app in (link_.client_app, link_.server_app):
        assert app.events == ["peerVerified", "connectionMade"]
    assert link_.client_app.peer is link_.client.peer
    assert peer_of(link_.client_app) is link_.client.peer
    assert peer_of(link_.server_app.transport) is link_.server.peer
    assert peer_of(Protocol()) is None

    link_.client_app.transport.write(b"from endpoint")
    link_.server_app.transport.write(b"from controller")
    link_.pump.flush()
    assert link_.server_app.data == b"from endpoint"
    assert link_.client_app.data == b"from controller"

    link_.client_app.transport.loseConnection()
    link_.pump.flush()
    assert link_.client_app.events[-1] == "connectionLost"
    assert link_.server_app.events[-1] == "connectionLost"
    # still known once the link is gone
    assert peer_of(link_.client_app) is link_.client.peer
    assert peer_of(link_.server_app) is link_.server.peer
    assert peer_of(7) is None
    d = link_.client_gate.when_verified()
    assert result_of(d) is link_.client.peer


def test_chains_with_delegation_in_any_order(world: World) -> None:
    w = world
    exper_d = generate_private_key()  # a delegated experimenter
    eop_d = generate_private_key()  # a delegated EOp
    del_exp = issue_certificate("delpriv", w.exper, exper_d, NB, NA, del_type="exppriv")
    pubcmd_d = issue_certificate("pubcmd", exper_d, w.xc, NB, NA)
    del_rep = issue_certificate("delpriv", w.eop, eop_d, NB, NA, del_type="reppriv")
    subcmd_d = issue_certificate("subcmd", eop_d, w.ep, NB, NA)
    # extra chain certs in any order; the leaf is found by key
    ctl = Credentials.from_unordered([w.exppriv, del_exp, pubcmd_d], w.xc)
    assert ctl.leaf is pubcmd_d
    link_ = link(
        endpoint_creator(w, credentials=Credentials([subcmd_d, del_rep], w.ep)),
        PPKSServerOptions({"exp1": controller_entry(w, credentials=ctl)}),
    )
    assert link_.client.peer is not None and link_.client.peer.chain is not None
    assert [c.cert_type.label for c in link_.client.peer.chain.certs] == [
        "pubcmd",
        "delpriv",
        "exppriv",
    ]
    assert link_.server.peer is not None and link_.server.peer.chain is not None
    assert [c.der for c in link_.server.peer.chain.certs] == [subcmd_d.der, del_rep.der]


def test_agent_mode_both_ways(world: World) -> None:
    """Endpoint -> broker: both present agent certs; the broker's is signed by the BOp."""
    creator = PPKSClientCreator(
        Credentials([world.agent_ep], world.ep), AuthMode.AGENT, [world.bop], snikey=None
    )
    broker = ServerEntry(Credentials([world.agent_broker], world.broker), AuthMode.AGENT)
    assert broker.client_cert_required  # AGENT mode: mandatory even without roots
    link_ = link(creator, PPKSServerOptions(default=broker))
    assert link_.client.peer is not None and link_.client.peer.leaf is not None
    assert link_.client.peer.leaf.der == world.agent_broker.der
    assert link_.server.peer is not None and link_.server.peer.leaf is not None
    assert link_.server.peer.leaf.der == world.agent_ep.der
    assert link_.server.peer.snikey is None


def test_agent_mode_with_client_roots(world: World) -> None:
    """xpmgr -> proxy with ProxyCertRootPath: the proxy trusts the controller's own key."""
    creator = PPKSClientCreator(Credentials([world.agent_xc], world.xc), AuthMode.AGENT)
    proxy = ServerEntry(Credentials([world.agent_broker], world.broker), AuthMode.AGENT, [world.xc])
    link_ = link(creator, PPKSServerOptions(default=proxy))
    assert link_.server.peer is not None and link_.server.peer.chain is not None
    assert link_.server.peer.chain.root_index == 0


def test_client_without_cert_accepted_when_no_roots(world: World) -> None:
    """A controller with an empty TRUSTEDEOP accepts endpoints that present no cert."""
    entry = controller_entry(world, roots=[])
    assert not entry.client_cert_required
    link_ = link(endpoint_creator(world, credentials=None), PPKSServerOptions({"exp1": entry}))
    assert link_.server.error is None
    assert link_.server.peer is not None
    assert link_.server.peer.chain is None and link_.server.peer.presented == ()
    assert link_.client.peer is not None


def test_form_only_check_without_roots(world: World) -> None:
    """Without roots any root is taken, but the chain must still have the right form."""
    entry = controller_entry(world, roots=[])
    link_ = link(endpoint_creator(world, roots=[]), PPKSServerOptions({"exp1": entry}))
    assert link_.client.peer is not None and link_.client.peer.chain is not None
    assert link_.client.peer.chain.root_index is None


def test_no_verify_mode(world: World) -> None:
    creator = PPKSClientCreator(None, AuthMode.NO_VERIFY)
    link_ = link(creator, PPKSServerOptions(default=controller_entry(world, roots=[])))
    assert link_.client.peer is not None and link_.client.peer.chain is None
    assert link_.client.peer.presented[0] == world.pubcmd.der


# --------------------------------------------------------------------------- refusals


def assert_refused(out: Outcome, refusal: PeerRefusal, rule: str | None = None) -> None:
    assert out.peer is None
    assert out.error is not None, "expected a refusal"
    assert out.error.refusal is refusal, str(out.error)
    if rule is not None:
        assert out.error.rule == rule, str(out.error)


def test_wrong_chain_refused_by_endpoint(world: World) -> None:
    """The controller presents an endpoint-style (subcmd) chain: wrong type for mode 1."""
    w = world
    bad = Credentials([issue_certificate("subcmd", w.eop, w.xc, NB, NA)], w.xc)
    link_ = link(
        endpoint_creator(w), PPKSServerOptions({"exp1": controller_entry(w, credentials=bad)})
    )
    assert_refused(link_.client, PeerRefusal.BAD_CHAIN, "wrong_cert_type")
    assert link_.client.error is not None and link_.client.error.chain_error is not None
    assert link_.client_app.events == []  # never connected
    # The refusal closes the link; the controller's application never saw it either way.
    assert "connectionMade" not in link_.server_app.events or link_.server_app.lost is not None


def test_a_peer_of_another_role_is_named(world: World) -> None:
    """An endpoint pointed at a broker's port (or a broker-mode endpoint at a controller's)
    said only `wrong_cert_type: cert #0: agent where pubcmd is expected`."""
    w = world
    agent = Credentials([w.agent_broker], w.broker)
    link_ = link(
        endpoint_creator(w), PPKSServerOptions({"exp1": controller_entry(w, credentials=agent)})
    )
    assert_refused(link_.client, PeerRefusal.BAD_CHAIN, "wrong_cert_type")
    assert str(link_.client.error).endswith(
        "agent where pubcmd is expected (the peer presents an agent certificate: it is a broker, "
        "a proxy's setup port or an agent link, not a controller)"
    )
    link_ = link(
        PPKSClientCreator(w.endpoint(), AuthMode.AGENT),
        PPKSServerOptions(default=controller_entry(w)),  # no SNI from a broker's client
    )
    assert str(link_.client.error).endswith(
        "(the peer presents a pubcmd certificate: it is a controller (pktlab xpmgr or the "
        "controller API), not a broker or an agent)"
    )


def test_expired_cert_refused(world: World) -> None:
    w = world
    old = issue_certificate("exppriv", w.eop, w.exper, 0, 1_000_000)
    ctl = Credentials([w.pubcmd, old], w.xc)
    link_ = link(
        endpoint_creator(w), PPKSServerOptions({"exp1": controller_entry(w, credentials=ctl)})
    )
    assert_refused(link_.client, PeerRefusal.BAD_CHAIN, "expired")


@pytest.mark.parametrize(
    ("make", "alert"),
    [
        (lambda w: [w.pubcmd, issue_certificate("exppriv", w.eop, w.exper, 0, 1_000_000)],
         "certificate_expired"),
        (lambda w: [w.pubcmd, issue_certificate("exppriv", w.eop2, w.exper, NB, NA)],
         "unknown_ca"),
        (lambda w: [issue_certificate("subcmd", w.eop, w.xc, NB, NA)], "unsupported_certificate"),
    ],
)  # fmt: skip
def test_a_refused_controller_is_told_why_by_a_tls_alert(
    world: World, make: Callable[[World], list[Any]], alert: str
) -> None:
    """The endpoint refuses the controller's chain after the handshake: the controller
    (and its user) saw only a close. Now the endpoint sends the fatal alert of the rule
    first, as the reference's in-handshake check does (OBSERVED §1.1), and the
    controller's application loses the link with it."""
    ctl = Credentials(make(world), world.xc)
    link_ = link(
        endpoint_creator(world),
        PPKSServerOptions({"exp1": controller_entry(world, credentials=ctl)}),
    )
    assert_refused(link_.client, PeerRefusal.BAD_CHAIN)
    assert link_.server_app.events == ["peerVerified", "connectionMade", "connectionLost"]
    assert link_.server_app.lost is not None
    lost = str(link_.server_app.lost.value)
    assert f"the peer sent the TLS alert {alert} (the peer refused our certificate chain: " in lost


def test_clock_decides_validity(world: World) -> None:
    """The policy clock is what certificate validity is checked against."""
    link_ = link(
        endpoint_creator(world, clock=lambda: float(2**31 + 10)),
        PPKSServerOptions({"exp1": controller_entry(world)}),
    )
    assert_refused(link_.client, PeerRefusal.BAD_CHAIN, "expired")
    link_ = link(
        endpoint_creator(world),
        PPKSServerOptions({"exp1": controller_entry(world)}, clock=lambda: float(2**31 + 10)),
    )
    assert_refused(link_.server, PeerRefusal.BAD_CHAIN, "expired")


def test_untrusted_root_refused_by_endpoint(world: World) -> None:
    link_ = link(
        endpoint_creator(world, roots=[world.eop2]),
        PPKSServerOptions({"exp1": controller_entry(world)}),
    )
    assert_refused(link_.client, PeerRefusal.BAD_CHAIN, "untrusted_root")


def test_untrusted_root_refused_by_controller(world: World) -> None:
    link_ = link(
        endpoint_creator(world),
        PPKSServerOptions({"exp1": controller_entry(world, roots=[world.eop2])}),
    )
    assert link_.client.peer is not None  # TLS 1.3: the client is done before the server
    assert_refused(link_.server, PeerRefusal.BAD_CHAIN, "untrusted_root")
    assert link_.server_app.events == []
    # ... and the endpoint's application then loses the link.
    assert link_.client_app.events == ["peerVerified", "connectionMade", "connectionLost"]


def test_agent_mode_refuses_non_agent_cert(world: World) -> None:
    creator = PPKSClientCreator(world.endpoint(), AuthMode.AGENT)
    broker = ServerEntry(Credentials([world.agent_broker], world.broker), AuthMode.AGENT)
    link_ = link(creator, PPKSServerOptions(default=broker))
    assert_refused(link_.server, PeerRefusal.BAD_CHAIN, "wrong_cert_type")


def test_a_refused_client_is_cut_off_after_the_refusal_delay(world: World) -> None:
    # A reference endpoint whose agent certificate the broker refuses reconnects at once,
    # for ever (~470 TLS handshakes a second): the broker holds the refusal as it holds an
    # error result (BROKER-PROXY-OBSERVED.md §1.4, §5), reading nothing meanwhile.
    clock, asked = Clock(), []

    def delay(host: str) -> float:
        asked.append(host)
        return 2.0

    creator = PPKSClientCreator(world.endpoint(), AuthMode.AGENT)  # a subcmd chain
    broker = ServerEntry(Credentials([world.agent_broker], world.broker), AuthMode.AGENT)
    link_ = link(creator, PPKSServerOptions(default=broker), refusal_delay=(delay, clock))
    assert_refused(link_.server, PeerRefusal.BAD_CHAIN, "wrong_cert_type")
    assert len(asked) == 1 and link_.server_app.events == []
    assert link_.client_app.events == ["peerVerified", "connectionMade"]  # still open
    clock.advance(1.9)
    link_.pump.flush()
    assert link_.client_app.lost is None
    clock.advance(0.2)
    link_.pump.flush()
    assert link_.client_app.lost is not None and link_.server_app.events == []
    assert not clock.getDelayedCalls()


def test_no_client_cert_when_required(world: World) -> None:
    entry = controller_entry(world)  # roots configured -> a client cert is mandatory
    assert entry.client_cert_required
    link_ = link(endpoint_creator(world, credentials=None), PPKSServerOptions({"exp1": entry}))
    assert_refused(link_.server, PeerRefusal.NO_PEER_CERTIFICATE)
    assert link_.server_app.events == []
    assert link_.client_app.lost is not None


def test_no_client_cert_in_agent_mode(world: World) -> None:
    broker = ServerEntry(Credentials([world.agent_broker], world.broker), AuthMode.AGENT)
    link_ = link(PPKSClientCreator(None, AuthMode.AGENT), PPKSServerOptions(default=broker))
    assert_refused(link_.server, PeerRefusal.NO_PEER_CERTIFICATE)


def test_required_cert_can_be_forced_off(world: World) -> None:
    entry = controller_entry(world, require_client_cert=False)
    link_ = link(endpoint_creator(world, credentials=None), PPKSServerOptions({"exp1": entry}))
    assert link_.server.peer is not None and link_.server.peer.chain is None


def test_unknown_snikey_fails_handshake(world: World) -> None:
    options = PPKSServerOptions({"exp1": controller_entry(world)})
    link_ = link(endpoint_creator(world, snikey="nosuchkey"), options)
    assert_refused(link_.server, PeerRefusal.UNKNOWN_SNIKEY)
    assert link_.server.error is not None and "nosuchkey" in str(link_.server.error)
    assert_refused(link_.client, PeerRefusal.HANDSHAKE_FAILED)
    assert link_.client_app.events == [] and link_.server_app.events == []


@pytest.mark.parametrize(
    ("sni", "hint"),
    [
        (b"nosuchkey", "(the server knows no snikey 'nosuchkey': a proxy with no backlog"),
        (None, "(we sent no SNI and the server wants one: a proxy routes by it"),
    ],
)
def test_an_unrecognized_name_alert_is_explained_to_the_endpoint(
    sni: bytes | None, hint: str
) -> None:
    """`twistd pktproxy` answers an SNI it has no backlog for (or none) with the
    unrecognized_name alert: the endpoint logged only `handshake_failed: tlsv1
    unrecognized name`, which did not say that its snikey was the problem."""

    class Handle:
        def get_servername(self) -> bytes | None:
            return sni

    class TLS:
        def getHandle(self) -> Handle:
            return Handle()

    gate = PeerGate(Protocol(), is_client=True)
    gate.transport = TLS()  # type: ignore[assignment]
    alert = SSL.Error([("SSL routines", "", "tlsv1 unrecognized name")])
    err = gate._classify_loss(Failure(alert))
    assert err.refusal is PeerRefusal.HANDSHAKE_FAILED
    assert str(err).startswith(f"handshake_failed: tlsv1 unrecognized name {hint}")


def test_no_sni_without_default_fails(world: World) -> None:
    options = PPKSServerOptions({"exp1": controller_entry(world)})
    link_ = link(endpoint_creator(world, snikey=None), options)
    assert_refused(link_.server, PeerRefusal.NO_DEFAULT_ENTRY)
    assert_refused(link_.client, PeerRefusal.HANDSHAKE_FAILED)


@implementer(IOpenSSLClientConnectionCreator)
class TLS12Creator:
    """A client that offers at most TLS 1.2 (what the reference refuses)."""

    def __init__(self) -> None:
        self.ctx = SSL.Context(SSL.TLS_METHOD)
        self.ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        self.ctx.set_verify(SSL.VERIFY_NONE)

    def clientConnectionForTLS(self, tls: TLSMemoryBIOProtocol) -> SSL.Connection:
        return SSL.Connection(self.ctx, None)


def test_tls12_client_refused(world: World) -> None:
    sf = PPKSTLSFactory(
        PPKSServerOptions(default=controller_entry(world, roots=[])),
        False,
        Factory.forProtocol(App),
    )
    cf = TLSMemoryBIOFactory(TLS12Creator(), True, Factory.forProtocol(App), clock=Clock())
    client, server, pump = connectedServerAndClient(
        lambda: sf.buildProtocol(None), lambda: cf.buildProtocol(None), greet=False
    )
    assert isinstance(server.wrappedProtocol, PeerGate)
    out = watch(server.wrappedProtocol)
    client_app = client.wrappedProtocol
    pump.flush()
    assert_refused(out, PeerRefusal.HANDSHAKE_FAILED)
    assert out.error is not None and "protocol" in out.error.detail
    assert isinstance(client_app, App) and client_app.lost is not None
    assert client_app.lost.check(SSL.Error)


@implementer(IOpenSSLClientConnectionCreator)
class PlainCertCreator:
    """A TLS 1.3 client presenting an ordinary (non-PPKS) Ed25519 certificate."""

    def __init__(self) -> None:
        key = generate_private_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plain")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(datetime.datetime(2020, 1, 1))
            .not_valid_after(datetime.datetime(2035, 1, 1))
            .sign(key, None)
        )
        self.ctx = SSL.Context(SSL.TLS_METHOD)
        self.ctx.use_certificate(cert)
        self.ctx.use_privatekey(key)
        self.ctx.set_verify(SSL.VERIFY_NONE)

    def clientConnectionForTLS(self, tls: TLSMemoryBIOProtocol) -> SSL.Connection:
        conn = SSL.Connection(self.ctx, None)
        conn.set_tlsext_host_name(b"exp1")
        return conn


def test_non_ppks_client_cert_refused(world: World) -> None:
    sf = PPKSTLSFactory(
        PPKSServerOptions({"exp1": controller_entry(world)}), False, Factory.forProtocol(App)
    )
    cf = TLSMemoryBIOFactory(PlainCertCreator(), True, Factory.forProtocol(App), clock=Clock())
    _client, server, pump = connectedServerAndClient(
        lambda: sf.buildProtocol(None), lambda: cf.buildProtocol(None), greet=False
    )
    assert isinstance(server.wrappedProtocol, PeerGate)
    out = watch(server.wrappedProtocol)
    pump.flush()
    assert_refused(out, PeerRefusal.BAD_CHAIN)
    assert out.error is not None and out.error.chain_error is not None  # a ppks rule names it
    assert out.error.rule in {r.value for r in Reason}


@implementer(IOpenSSLClientConnectionCreator)
class RawDERCreator:
    """A TLS 1.3 client presenting any DER bytes OpenSSL will load as its certificate."""

    def __init__(self, der: bytes, key: Ed25519PrivateKey) -> None:
        import warnings

        from OpenSSL import crypto

        self.ctx = SSL.Context(SSL.TLS_METHOD)
        with warnings.catch_warnings():  # X509 objects: `cryptography` would refuse these
            warnings.simplefilter("ignore", DeprecationWarning)
            self.ctx.use_certificate(crypto.load_certificate(crypto.FILETYPE_ASN1, der))
        self.ctx.use_privatekey(key)
        self.ctx.set_verify(SSL.VERIFY_NONE)

    def clientConnectionForTLS(self, tls: TLSMemoryBIOProtocol) -> SSL.Connection:
        return SSL.Connection(self.ctx, None)


def _explicit_critical_false(der: bytes, signer: Ed25519PrivateKey) -> bytes:
    """`der` with its AKI's DEFAULT `critical FALSE` written out, signed again: OpenSSL
    loads it, `cryptography`'s stricter parser does not."""
    from packetlab.ppks import der as pder

    def tlv(tag: int, body: bytes) -> bytes:
        n = len(body)
        size = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes([tag]) + (bytes([n]) if n < 0x80 else bytes([0x80 | len(size)]) + size) + body

    top = pder.children(pder.read_single(der).value)
    fields = [f.raw for f in pder.children(top[0].value)]
    exts = [
        e.raw for e in pder.children(pder.read_single(pder.read_single(fields[-1]).value).value)
    ]
    oid, value = pder.children(pder.read_single(exts[0]).value)
    exts[0] = tlv(0x30, oid.raw + b"\x01\x01\x00" + value.raw)
    tbs = tlv(0x30, b"".join([*fields[:-1], tlv(0xA3, tlv(0x30, b"".join(exts)))]))
    return tlv(0x30, tbs + top[1].raw + tlv(0x03, b"\x00" + signer.sign(tbs)))


def test_a_certificate_openssl_takes_but_cryptography_does_not_is_refused_by_rule(
    world: World,
) -> None:
    """The presented chain was read through `cryptography` objects: a certificate OpenSSL
    took but `cryptography` refused (here a written-out DEFAULT FALSE) raised out of the
    check ("PPKS check crashed", `internal error: ValueError(...)`, a traceback). Now the
    PPKS check sees OpenSSL's bytes and names the rule and the certificate."""
    k = generate_private_key()
    agent = _explicit_critical_false(issue_certificate("agent", k, k, NB, NA).der, k)
    entry = ServerEntry(Credentials([world.agent_broker], world.broker), AuthMode.AGENT, [])
    sf = PPKSTLSFactory(PPKSServerOptions(default=entry), False, Factory.forProtocol(App))
    cf = TLSMemoryBIOFactory(RawDERCreator(agent, k), True, Factory.forProtocol(App), clock=Clock())
    _client, server, pump = connectedServerAndClient(
        lambda: sf.buildProtocol(None), lambda: cf.buildProtocol(None), greet=False
    )
    assert isinstance(server.wrappedProtocol, PeerGate)
    out = watch(server.wrappedProtocol)
    pump.flush()
    assert_refused(out, PeerRefusal.BAD_CHAIN, Reason.MALFORMED_DER.value)
    assert "cert #0: extension 2.5.29.35: critical FALSE written out" in str(out.error)


@pytest.mark.parametrize("seed", range(5))
def test_garbage_instead_of_a_client_hello(world: World, seed: int) -> None:
    sf = PPKSTLSFactory(
        PPKSServerOptions({"exp1": controller_entry(world)}), False, Factory.forProtocol(App)
    )
    server = sf.buildProtocol(None)
    assert server is not None
    gate = server.wrappedProtocol
    assert isinstance(gate, PeerGate)
    out = watch(gate)
    transport = StringTransport()
    server.makeConnection(transport)
    rnd = random.Random(seed)
    junk = bytes([0x16, 0x03, 0x01]) + rnd.randbytes(300) if seed % 2 else rnd.randbytes(300)
    server.dataReceived(junk)
    assert transport.disconnecting
    server.connectionLost(Failure(ConnectionDone()))
    assert_refused(out, PeerRefusal.HANDSHAKE_FAILED)
    assert gate.app.events == []


def test_refusal_is_logged_with_rule(world: World, caplog: pytest.LogCaptureFixture) -> None:
    from twisted.logger import LogLevel

    with captured_events(level=LogLevel.warn, has="rule") as seen:
        link(
            endpoint_creator(world, roots=[world.eop2]),
            PPKSServerOptions({"exp1": controller_entry(world)}),
        )
    assert any(e["rule"] == "untrusted_root" and e["side"] == "server" for e in seen)


def test_a_flood_of_bad_handshakes_is_a_bounded_number_of_log_lines(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker's port took 1,500 connections of junk: 1,500 lines "refused TLS peer
    IPv4Address(type='TCP', host=..., port=...) (client): handshake_failed:
    handshake_failed: ...". Now a budget of lines a minute for all of them, the peer as
    HOST:PORT and the rule said once."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.logger import LogLevel

    from packetlab.logbudget import LogBudget
    from packetlab.tls import gate

    clock = Clock()
    monkeypatch.setattr(gate, "REFUSAL_LOG", LogBudget(clock.seconds))
    sf = PPKSTLSFactory(
        PPKSServerOptions({"exp1": controller_entry(world)}), False, Factory.forProtocol(App)
    )
    with captured_events(level=LogLevel.warn, has="rule") as seen:
        for _ in range(200):
            server = sf.buildProtocol(None)
            assert server is not None
            transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.9", 4242))
            server.makeConnection(transport)
            server.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
            server.connectionLost(Failure(ConnectionDone()))
    assert len(seen) == 20
    line = seen[0]["log_format"].format(**seen[0])
    assert line.startswith("refused TLS peer 192.0.2.9:4242 (client): handshake_failed: "), line
    assert "handshake_failed: handshake_failed" not in line


def test_a_client_that_sent_no_tls_at_all_is_named_a_plaintext_peer(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint run with --insecure-plaintext connects to a TLS controller and waits for
    it to speak, then closes after 10 s: the refusal said only "before the peer was
    verified", and the controller blamed its own chain first (session 30, eyes30). A
    client that sent bytes and then closed is not called silent."""
    from twisted.internet.address import IPv4Address
    from twisted.logger import LogLevel

    from packetlab.logbudget import LogBudget
    from packetlab.tls import gate

    monkeypatch.setattr(gate, "REFUSAL_LOG", LogBudget(lambda: 0.0, burst=100))
    sf = PPKSTLSFactory(
        PPKSServerOptions({"exp1": controller_entry(world)}), False, Factory.forProtocol(App)
    )
    with captured_events(level=LogLevel.warn) as events:
        for first in (b"", b"\x16\x03\x01\x02\x00\x01"):  # nothing; half a ClientHello
            server = sf.buildProtocol(None)
            assert server is not None
            server.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.9", 1)))
            if first:
                server.dataReceived(first)
            server.connectionLost(Failure(ConnectionDone()))
    seen = [str(e["error"]) for e in events if e.get("rule") == "connection_lost"]
    assert len(seen) == 2, seen
    assert seen[0].endswith(gate.SILENT_PEER) and not seen[1].endswith(gate.SILENT_PEER)


# --------------------------------------------------------------------------- SNI map


def test_sni_selects_the_chain_and_default(world: World) -> None:
    w = world
    exper2 = generate_private_key()
    exppriv2 = issue_certificate("exppriv", w.eop, exper2, NB, NA)
    pubcmd2 = issue_certificate("pubcmd", exper2, w.xc, NB, NA)
    second = controller_entry(w, credentials=Credentials([pubcmd2, exppriv2], w.xc))
    default = controller_entry(w)
    options = PPKSServerOptions({"exp1": controller_entry(w), "exp2": second}, default=default)
    assert options.snikeys == {"exp1", "exp2"}
    assert options.entry("exp2") is second and options.entry(None) is default

    for snikey, leaf in (("exp1", w.pubcmd), ("exp2", pubcmd2), (None, w.pubcmd)):
        link_ = link(endpoint_creator(w, snikey=snikey), options)
        peer = link_.client.peer
        assert peer is not None and peer.leaf is not None, snikey
        assert peer.leaf.der == leaf.der
        assert link_.server.peer is not None
        assert link_.server.peer.snikey == snikey
    assert link_.server.peer.entry is default

    options.remove("exp2")
    assert_refused(
        link(endpoint_creator(w, snikey="exp2"), options).server, PeerRefusal.UNKNOWN_SNIKEY
    )
    options.set_default(None)
    assert_refused(
        link(endpoint_creator(w, snikey=None), options).server, PeerRefusal.NO_DEFAULT_ENTRY
    )
    options.add("exp2", second)  # entries can come back while serving
    assert link(endpoint_creator(w, snikey="exp2"), options).server.peer is not None


def test_per_entry_client_cert_rule(world: World) -> None:
    """The verify mode travels with the SNI entry, not with the first context."""
    options = PPKSServerOptions(
        {"strict": controller_entry(world), "open": controller_entry(world, roots=[])}
    )
    open_ = link(endpoint_creator(world, snikey="open", credentials=None), options)
    assert open_.server.peer is not None
    strict = link(endpoint_creator(world, snikey="strict", credentials=None), options)
    assert_refused(strict.server, PeerRefusal.NO_PEER_CERTIFICATE)


# --------------------------------------------------------------------------- records


def frames(n: int) -> list[bytes]:
    return [encode(Result()) for _ in range(n // 2)] + [
        encode(Mread(addr=0x100 * i, len=8)) for i in range(n - n // 2)
    ]


def test_one_tls_record_per_write(world: World) -> None:
    link_ = link(endpoint_creator(world), PPKSServerOptions({"exp1": controller_entry(world)}))
    sio = link_.pump.serverIO
    assert sio.stream == []  # handshake (and tickets) flushed
    msgs = frames(5)
    for m in msgs:  # all in the same reactor turn
        link_.server_app.transport.write(m)
    link_.server_app.transport.writeSequence([msgs[0][:4], msgs[0][4:]])
    raw = b"".join(sio.stream)
    records = tls_records(raw)
    assert [t for t, _ in records] == [TLS_RECORD_APPDATA] * 6
    # each record: message + inner content type (1) + AEAD tag (16)
    assert [n for _, n in records] == [len(m) + 17 for m in [*msgs, msgs[0]]]
    link_.pump.flush()
    got = [encode(m) for m in Framer().feed(link_.client_app.data)]  # type: ignore[arg-type]
    assert got == [*msgs, msgs[0]]


def test_twisted_default_factory_coalesces(world: World) -> None:
    """Why PPKSTLSFactory exists: Twisted's TLSMemoryBIOFactory joins one turn's writes."""
    clock = Clock()
    sf = TLSMemoryBIOFactory(
        PPKSServerOptions({"exp1": controller_entry(world, roots=[])}),
        False,
        Factory.forProtocol(App),
        clock=clock,
    )
    cf = PPKSTLSFactory(endpoint_creator(world), True, Factory.forProtocol(App))
    _client, server, pump = connectedServerAndClient(
        lambda: sf.buildProtocol(None), lambda: cf.buildProtocol(None), greet=False, clock=clock
    )
    pump.flush()
    for m in frames(5):
        server.write(m)
    clock.advance(0)
    records = tls_records(b"".join(pump.serverIO.stream))
    assert len(records) == 1


def test_large_message_spans_records_alone(world: World) -> None:
    """A message above the 16 KiB record limit spans records, never sharing one."""
    link_ = link(endpoint_creator(world), PPKSServerOptions({"exp1": controller_entry(world)}))
    small = encode(Result())
    payload = random.Random(1).randbytes(40_000)
    large = encode(Mwrite(addr=0, data=payload))
    link_.server_app.transport.write(small)
    link_.server_app.transport.write(large)
    records = tls_records(b"".join(link_.pump.serverIO.stream))
    sizes = [n - 17 for _, n in records]
    assert sizes[0] == len(small)
    assert sum(sizes[1:]) == len(large) and all(s <= 16384 for s in sizes[1:])


# --------------------------------------------------------------------------- no resumption


class ResumingCreator(PPKSClientCreator):
    """Offers a saved session, as a client trying to resume would."""

    session: SSL.Session | None = None

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        conn = super().clientConnectionForTLS(tlsProtocol)
        if self.session is not None:
            conn.set_session(self.session)
        return conn


def test_sessions_are_never_resumed(world: World) -> None:
    from OpenSSL._util import lib  # no public "session reused" in pyOpenSSL

    options = PPKSServerOptions({"exp1": controller_entry(world)})
    creator = ResumingCreator(
        world.endpoint(), AuthMode.ENDPOINT_AUTH_CONTROLLER, [world.eop], snikey="exp1"
    )
    first = link(creator, options)
    first.server_app.transport.write(b"x")  # lets the client read any ticket
    first.pump.flush()
    creator.session = first.client_tls.getHandle().get_session()
    second = link(creator, options)
    assert second.client.peer is not None and second.server.peer is not None
    assert lib.SSL_session_reused(second.client_tls.getHandle()._ssl) == 0
    assert second.server.peer.presented == (world.subcmd.der,)


# --------------------------------------------------------------------------- endpoints


def test_client_endpoint_fires_after_verification(world: World) -> None:
    reactor = MemoryReactorClock()
    server_app: list[App] = []

    def make_server_app() -> App:
        server_app.append(App())
        return server_app[-1]

    PPKSServerEndpoint(
        TCP4ServerEndpoint(reactor, 20556),
        PPKSServerOptions({"exp1": controller_entry(world)}),
    ).listen(Factory.forProtocol(make_server_app))
    ep = PPKSClientEndpoint(
        TCP4ClientEndpoint(reactor, "127.0.0.1", 20556), endpoint_creator(world)
    )
    d = ep.connect(Factory.forProtocol(App))
    assert not d.called
    pump = ConnectionCompleter(reactor).succeedOnce()
    assert pump is not None
    pump.flush()
    proto = result_of(d)
    assert isinstance(proto, App) and proto.events == ["connectionMade"]
    peer = peer_of(proto)
    assert peer is not None and peer.public_key == raw_public_key(world.xc)
    assert server_app and server_app[0].events == ["connectionMade"]


def test_client_endpoint_fails_with_reason(world: World) -> None:
    reactor = MemoryReactorClock()
    PPKSServerEndpoint(
        TCP4ServerEndpoint(reactor, 20556),
        PPKSServerOptions({"exp1": controller_entry(world)}),
    ).listen(Factory.forProtocol(App))
    ep = PPKSClientEndpoint(
        TCP4ClientEndpoint(reactor, "127.0.0.1", 20556), endpoint_creator(world, roots=[world.eop2])
    )
    d = ep.connect(Factory.forProtocol(App))
    pump = ConnectionCompleter(reactor).succeedOnce()
    assert pump is not None
    pump.flush()
    with pytest.raises(PeerVerificationError) as info:
        result_of(d)
    assert info.value.rule == "untrusted_root"


def test_cancelling_connect_aborts(world: World) -> None:
    reactor = MemoryReactorClock()
    PPKSServerEndpoint(
        TCP4ServerEndpoint(reactor, 20556),
        PPKSServerOptions({"exp1": controller_entry(world)}),
    ).listen(Factory.forProtocol(App))
    ep = PPKSClientEndpoint(
        TCP4ClientEndpoint(reactor, "127.0.0.1", 20556), endpoint_creator(world)
    )
    d = ep.connect(Factory.forProtocol(App))
    pump = ConnectionCompleter(reactor).succeedOnce(greet=False)
    assert pump is not None
    d.cancel()  # TCP is up, the handshake has not finished
    pump.flush()
    assert pump.clientIO.disconnecting
    with pytest.raises(Exception) as info:
        result_of(d)
    assert info.type.__name__ == "CancelledError"


def test_factory_checks_creator_kind(world: World) -> None:
    with pytest.raises(TypeError):
        PPKSTLSFactory(PPKSServerOptions(), True, Factory.forProtocol(App))
    with pytest.raises(TypeError):
        PPKSTLSFactory(endpoint_creator(world), False, Factory.forProtocol(App))


def test_factory_returning_none_refuses(world: World) -> None:
    class NoFactory(Factory):
        def buildProtocol(self, addr: Any) -> None:
            return None

    f = PPKSTLSFactory(PPKSServerOptions(), False, NoFactory())
    assert f.buildProtocol(None) is None


# --------------------------------------------------------------------------- configuration


def test_key_mismatch_is_a_clear_error(world: World) -> None:
    with pytest.raises(TLSConfigError, match="does not match the leaf"):
        Credentials([world.pubcmd, world.exppriv], world.ep)
    with pytest.raises(TLSConfigError, match="does not match the leaf"):
        Credentials([world.exppriv, world.pubcmd], world.xc)  # leaf must come first
    with pytest.raises(TLSConfigError, match=r"no certificate .* public key"):
        Credentials.from_unordered([world.pubcmd, world.exppriv], world.ep)
    with pytest.raises(TLSConfigError, match="empty"):
        Credentials([], world.xc)
    with pytest.raises(TLSConfigError, match="not Ed25519"):
        Credentials([world.pubcmd], b"\x00" * 32)  # type: ignore[arg-type]
    with pytest.raises(TLSConfigError, match="not a Certificate"):
        Credentials([world.pubcmd.der], world.xc)  # type: ignore[list-item]


def test_credentials_load(world: World, tmp_path: Path) -> None:
    (tmp_path / "exppriv.cert").write_bytes(world.exppriv.to_pem())
    (tmp_path / "pubcmd.cert").write_bytes(world.pubcmd.to_pem())
    (tmp_path / "xc.key").write_bytes(private_key_pem(world.xc, b"secret"))
    files = [tmp_path / "exppriv.cert", tmp_path / "pubcmd.cert"]  # ExpExec order
    creds = Credentials.load(files, tmp_path / "xc.key", b"secret", any_order=True)
    assert [c.der for c in creds.chain] == [world.pubcmd.der, world.exppriv.der]
    with pytest.raises(TLSConfigError, match="does not match the leaf"):
        Credentials.load(files, tmp_path / "xc.key", b"secret")
    with pytest.raises(TLSConfigError, match=r"xc\.key"):
        Credentials.load(files, tmp_path / "xc.key", b"wrong")
    with pytest.raises(TLSConfigError, match=r"missing\.cert"):
        Credentials.load([tmp_path / "missing.cert"], tmp_path / "xc.key", b"secret")
    (tmp_path / "junk.cert").write_bytes(b"not a certificate")
    with pytest.raises(TLSConfigError, match=r"junk\.cert"):
        Credentials.load([tmp_path / "junk.cert"], tmp_path / "xc.key", b"secret")
    # one file holding the whole chain, leaf first (pktendpt style)
    (tmp_path / "chain.pem").write_bytes(world.pubcmd.to_pem() + world.exppriv.to_pem())
    assert (
        len(Credentials.load([tmp_path / "chain.pem"], tmp_path / "xc.key", b"secret").chain) == 2
    )


def test_config_errors(world: World) -> None:
    with pytest.raises(TLSConfigError, match="snikey"):
        endpoint_creator(world, snikey="Exp1")
    with pytest.raises(TLSConfigError, match="snikey"):
        PPKSServerOptions({"bad.key": controller_entry(world)})
    with pytest.raises(TLSConfigError, match="mode"):
        PPKSClientCreator(None, 5)
    with pytest.raises(TLSConfigError, match="mode"):
        ServerEntry(world.controller(), 9)
    with pytest.raises(TLSConfigError, match="root #1"):
        ServerEntry(world.controller(), AuthMode.AGENT, [world.eop, b"short"])
    with pytest.raises(TLSConfigError, match="ServerEntry"):
        PPKSServerOptions({"exp1": world.controller()})  # type: ignore[dict-item]
    with pytest.raises(TLSConfigError, match="Credentials"):
        PPKSClientCreator(world.pubcmd, AuthMode.AGENT)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        PPKSServerOptions().remove("exp1")


def test_snikey_rules() -> None:
    for ok in ("a", "0", "exp1", "a" * 63, b"abc123"):
        assert is_valid_snikey(ok), ok
    for bad in ("", "a" * 64, "Exp", "a-b", "a.b", "ab ", "é", b"\xff", "a\n"):
        assert not is_valid_snikey(bad), bad
    keys = {gen_snikey() for _ in range(50)}
    assert len(keys) == 50
    assert all(len(k) == 63 and is_valid_snikey(k) for k in keys)


def test_context_settings(world: World) -> None:
    """TLS 1.3 minimum and no tickets are configured on both sides' contexts."""
    creator = endpoint_creator(world)
    ctx = creator._ctx
    assert ctx.set_options(0) & SSL.OP_NO_TICKET  # set_options returns the mask
    assert ctx.get_session_cache_mode() == SSL.SESS_CACHE_OFF
    assert ctx.get_verify_mode() == SSL.VERIFY_PEER


# --------------------------------------------------------------------------- batching


class Echo(App):
    """Answers every frame it receives with the same frame, one write each (unless
    `quiet`: the client side of a link of two Echos)."""

    quiet = False
    calls = 0

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.calls += 1
        if not self.quiet:
            for msg in Framer().feed(data):
                cast(Any, self.transport).write(encode(msg))  # type: ignore[arg-type]


def app_records(stream: list[bytes], start: int) -> list[list[tuple[int, int]]]:
    """The TLS records of each transport write from index `start` on."""
    return [tls_records(chunk) for chunk in stream[start:]]


def test_corked_writes_one_record_each_in_one_transport_write(world: World) -> None:
    link_ = link(endpoint_creator(world), PPKSServerOptions({"exp1": controller_entry(world)}))
    tls, sio = link_.server_tls, link_.pump.serverIO
    assert isinstance(tls, PPKSTLSProtocol)
    msgs = frames(6)
    before = len(sio.stream)
    tls.cork()
    for m in msgs:
        link_.server_app.transport.write(m)
    assert len(sio.stream) == before  # held while corked
    tls.uncork()
    writes = app_records(sio.stream, before)
    assert len(writes) == 1  # one write to the transport...
    assert [(t, n - 17) for t, n in writes[0]] == [(TLS_RECORD_APPDATA, len(m)) for m in msgs]
    link_.pump.flush()  # ...holding one record per message, which the peer reads whole
    assert link_.client_app.data == b"".join(msgs)


def test_answers_to_one_read_leave_in_one_write(world: World) -> None:
    link_ = link(
        endpoint_creator(world), PPKSServerOptions({"exp1": controller_entry(world)}), Echo
    )
    cast(Echo, link_.client_app).quiet = True
    msgs = frames(8)
    for m in msgs:  # eight records, delivered to the server in one read
        link_.client_app.transport.write(m)
    sio = link_.pump.serverIO
    written: list[bytes] = []
    write = sio.write

    def spy(data: bytes) -> None:
        written.append(data)
        write(data)

    sio.write = spy
    link_.pump.flush()
    server = cast(Echo, link_.server_app)
    assert server.data == b"".join(msgs) and server.calls == 1  # one piece for the app
    writes = app_records(written, 0)
    assert len(writes) == 1 and len(writes[0]) == len(msgs)  # eight records, one write
    assert link_.client_app.data == b"".join(msgs)


def test_turn_batching_holds_writes_until_the_turn_ends(world: World) -> None:
    link_ = link(endpoint_creator(world), PPKSServerOptions({"exp1": controller_entry(world)}))
    clock = Clock()
    tls, sio = link_.server_tls, link_.pump.serverIO
    assert isinstance(tls, PPKSTLSProtocol)
    tls.batch_turns(clock)
    before = len(sio.stream)
    for m in frames(3):
        tls.write(m)
    assert len(sio.stream) == before
    clock.advance(0)
    assert [len(w) for w in app_records(sio.stream, before)] == [3]


def test_close_sends_corked_frames_before_close_notify(world: World) -> None:
    link_ = link(endpoint_creator(world), PPKSServerOptions({"exp1": controller_entry(world)}))
    tls = link_.server_tls
    assert isinstance(tls, PPKSTLSProtocol)
    msgs = frames(4)
    tls.cork()
    for m in msgs:
        tls.write(m)
    tls.loseConnection()
    link_.pump.flush()
    assert link_.client_app.data == b"".join(msgs)
    assert "connectionLost" in link_.client_app.events


def test_abort_drops_corked_frames(world: World) -> None:
    link_ = link(endpoint_creator(world), PPKSServerOptions({"exp1": controller_entry(world)}))
    tls = link_.server_tls
    assert isinstance(tls, PPKSTLSProtocol)
    tls.cork()
    tls.write(frames(1)[0])
    tls.abortConnection()
    tls.uncork()
    link_.pump.flush()
    assert link_.client_app.data == b""


def test_pinned_tls_memory_bio_internals(world: World) -> None:
    """What PPKSTLSProtocol overrides or reads of Twisted's TLSMemoryBIOProtocol: if this
    fails after a Twisted upgrade, packetlab/tls/protocol.py must be revisited first
    (records would be sealed or sent out of order, or after close)."""
    import inspect

    from twisted.protocols.tls import TLSMemoryBIOProtocol

    link_ = link(endpoint_creator(world), PPKSServerOptions({"exp1": controller_entry(world)}))
    tls = link_.server_tls
    assert isinstance(tls, PPKSTLSProtocol)
    # State read by _emit: set by the base class on every connection.
    assert tls._aborted is False and tls._producer is None and tls._lostTLSConnection is False
    # What _emit calls when sealing fails, as the base class's _write does.
    assert "self._tlsShutdownFinished(Failure())" in inspect.getsource(TLSMemoryBIOProtocol._write)
    assert isinstance(tls._tlsConnection, SSL.Connection)
    # _write seals one piece (records of at most 16 KiB) and then flushes the send BIO
    # through _flushSendBIO, the method we override to send the records of a cork at once.
    write_src = inspect.getsource(TLSMemoryBIOProtocol._write)
    assert "self._tlsConnection.send(" in write_src and "self._flushSendBIO()" in write_src
    assert "self._flushSendBIO()" in inspect.getsource(TLSMemoryBIOProtocol._flushReceiveBIO)
    # write() is the public entry the base class routes through _write.
    assert "self._write(" in inspect.getsource(TLSMemoryBIOProtocol.write)


@pytest.mark.parametrize("is_client", [False, True])
def test_an_oversized_certificate_list_is_named(is_client: bool) -> None:
    """A peer presenting 1,000 certificates, or one of 15 MiB, is stopped by OpenSSL
    (max_cert_list, 100 KB) before any PPKS check: `twistd pktbroker` logged only
    `handshake_failed: excessive message size` (tests/integration/test_ppks_hostile_daemons.py)."""

    class Context:
        def get_app_data(self) -> None:
            return None

    class Handle:
        def get_context(self) -> Context:
            return Context()

        def get_servername(self) -> bytes | None:
            return None

    class TLS:
        def getHandle(self) -> Handle:
            return Handle()

    gate = PeerGate(Protocol(), is_client=is_client)
    gate.transport = TLS()  # type: ignore[assignment]
    err = gate._classify_loss(Failure(SSL.Error([("SSL routines", "", "excessive message size")])))
    assert err.refusal is PeerRefusal.HANDSHAKE_FAILED
    assert str(err) == (
        "handshake_failed: excessive message size (the peer's certificate list is over"
        " OpenSSL's 100 KB limit; a PPKS chain is a few KB, and at most 32 certificates are read)"
    )
