# mypy: disable-error-code="union-attr,attr-defined"
"""The manager's defaults named in PROTOCOL.md §5.4, §6, §7.1-7.2 and §4.6, over a memory
reactor: where it listens (passive) or connects (active, TargetBacklogConn at once), the
broker's default port, and when an endpoint's client certificate is required."""

from __future__ import annotations

import importlib
import io

import pytest
from twisted.internet.testing import MemoryReactorClock

from packetlab.cli.init import init_home
from packetlab.controller.publish import _broker_endpoint
from packetlab.controller.xpmgr import Manager
from packetlab.controller.xpmgrconf import parse_xpmgr_config
from packetlab.ppks import AuthMode, PktlabHome


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> PktlabHome:
    h = PktlabHome.at(tmp_path_factory.mktemp("mgrdef") / "home")
    init_home(h)
    return h


def manager(home: PktlabHome, *lines: str, eop: bool = True) -> tuple[Manager, MemoryReactorClock]:
    r = home.root
    trusted = f"{r}/keys/k_eop.pub" if eop else ""
    text = "\n".join([
        "EnableExpPublication 0", f"ControllerPrivkeyPath {r}/keys/k_xc", *lines,
        f"ExpExec 1:snione:{r}/certs/exppriv_eop_exper.cert,{r}/certs/pubcmd_exper_xc.cert:"
        f"{trusted}::",
    ]) + "\n"  # fmt: skip
    reactor = MemoryReactorClock()
    m = Manager(reactor, parse_xpmgr_config(text), ["/bin/true"], progress=io.StringIO())
    return m, reactor


def test_passive_mode_listens_on_0_0_0_0_port_20556_by_default(home: PktlabHome) -> None:
    m, reactor = manager(home)
    m.start()
    [(port, _, _, interface)] = reactor.tcpServers
    assert (interface, port) == ("0.0.0.0", 20556)
    m.wrap_up()


def test_active_mode_opens_target_backlog_connections_to_port_20557_at_once(
    home: PktlabHome,
) -> None:
    # §6.1/§7.2: TargetBacklogConn (default 2) setup connections in parallel, to the
    # proxy's setup port (default 20557); each step has BacklogConnTimeout (2 s) and the
    # whole warm-up BootstrapBacklogTimeout (5 s).
    m, reactor = manager(home, "EnableProxyMode 1")
    m.start()
    assert [port for _, port, *_ in reactor.tcpClients] == [20557, 20557]
    [pool] = m.pools
    assert (pool.target, pool.step_timeout) == (2, 2.0)
    assert [c.getTime() for c in reactor.getDelayedCalls() if c.func == m._bootstrap_check] == [5.0]
    m.wrap_up()


def test_the_broker_default_port_is_20556() -> None:
    ep = _broker_endpoint(MemoryReactorClock(), "broker.example")
    assert (ep._hostBytes, ep._port) == (b"broker.example", 20556)
    ep = _broker_endpoint(MemoryReactorClock(), "broker.example:3333")
    assert ep._port == 3333


@pytest.mark.parametrize(("eop", "required"), [(True, True), (False, False)])
def test_an_endpoint_certificate_is_required_only_with_trusted_eop_keys(
    home: PktlabHome, eop: bool, required: bool
) -> None:
    # §4.6: the endpoint's cert is checked in CONTROLLER_AUTH_ENDPOINT mode and is
    # mandatory only when roots are configured; an empty TRUSTEDEOP_PATH accepts endpoints
    # that present none (§7.2).
    m, _ = manager(home, eop=eop)
    for entry in (m.options.entry("snione"), m.options.entry(None)):  # the default one too
        assert entry is not None
        assert entry.mode is AuthMode.CONTROLLER_AUTH_ENDPOINT
        assert entry.client_cert_required is required
        assert len(entry.roots) == (1 if eop else 0)


class FakePublication:
    """What the manager keeps of a live publication (`packetlab.controller.publish`)."""

    def __init__(self, xdescr: bytes) -> None:
        from twisted.internet.defer import Deferred

        self.xdescr = xdescr
        self.closed = False
        self._ended: Deferred[None] = Deferred()

    @property
    def ended(self) -> object:
        return self._ended

    def close(self) -> None:
        self.closed = True
        if not self._ended.called:
            self._ended.callback(None)


def publishing(
    home: PktlabHome, monkeypatch: pytest.MonkeyPatch, *lines: str
) -> tuple[Manager, MemoryReactorClock, list[FakePublication]]:
    from twisted.internet.defer import succeed

    # (the package's lazy `publish` attribute is the function, not the module)
    publish_module = importlib.import_module("packetlab.controller.publish")
    made: list[FakePublication] = []

    def fake_publish(
        reactor: object, broker: str, xdescr: bytes, *a: object, **kw: object
    ) -> object:
        made.append(FakePublication(xdescr))
        return succeed(made[-1])

    monkeypatch.setattr(publish_module, "publish", fake_publish)
    r = home.root
    m, reactor = manager(
        home,
        "BrokerAddr 127.0.0.1:20556",
        f"PubAgentCertPath {r}/certs/agent_xc_xc.cert",
        *lines,
    )
    m.cfg.enable_publication = True
    m.start()
    return m, reactor, made


def test_pub_end_closes_the_publication_then_greeting_lasts_greet_period(
    home: PktlabHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    # §7.1 and OBSERVED §3.4 [pub_pubend]: at pub_end (now + PubPeriod) the manager closes
    # its broker link ("Stopping publication") and greets endpoints until pub_end +
    # GreetPeriodAfterPubEnd, then wraps up (exit 0 with nothing running).
    m, reactor, made = publishing(
        home, monkeypatch, "PubPeriod 10000000000", "GreetPeriodAfterPubEnd 5000000000"
    )
    [pub] = made
    # [pub_noaddr]: no -a, no -p: the local address toward the broker, no port
    assert pub.xdescr.startswith(b"pub_end=")
    assert pub.xdescr.endswith(b";controller_addr=127.0.0.1;sni_key=snione;")
    reactor.advance(9.9)
    assert not pub.closed
    reactor.advance(0.1)
    assert pub.closed and not m.wrapping_up and m.port is not None  # still greeting
    reactor.advance(4.9)
    assert not m.wrapping_up
    reactor.advance(0.2)
    assert m.wrapping_up and m.port is None
    assert m.finished.called and m.finished.result == 0


def test_a_broker_eof_is_not_republished_and_greeting_goes_on(
    home: PktlabHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OBSERVED §3.4 [pub_fin]: pktxpmgr logs "broker EOF, cleaning up", never reconnects or
    # republishes, and keeps accepting endpoints until pub_end + GreetPeriodAfterPubEnd.
    m, reactor, made = publishing(home, monkeypatch, "PubPeriod 10000000000")
    made[0].close()  # the broker closed the link
    reactor.advance(9.0)
    assert len(made) == 1 and not m.wrapping_up and m.port is not None
    reactor.advance(1.1)
    assert m.wrapping_up and len(made) == 1


@pytest.mark.parametrize(
    ("broker", "host", "port"),
    [
        ("::1:3333", "::1", 3333),  # the reference's form: split on the last ':'
        ("[::1]:3333", "::1", 3333),
        ("::1", "::1", 20556),
        ("2001:db8::1", "2001:db8::1", 20556),
        ("[fe80::1%eth0]:3333", "fe80::1%eth0", 3333),
    ],
)
def test_an_ipv6_broker_address(broker: str, host: str, port: int) -> None:
    """`BrokerAddr ::1:3333`, as a reference xpmgr.conf writes it, was refused (`expected
    HOST[:PORT] ([IPv6]:PORT for an IPv6 address)`); session 32 (dual32)."""
    from packetlab.controller.xpmgrconf import parse_xpmgr_config

    ep = _broker_endpoint(MemoryReactorClock(), broker)
    assert (ep._host, ep._port) == (host, port)
    if "%" not in broker:  # (a zone needs an interface of the machine running the test)
        text = f"EnableExpPublication 0\nBrokerAddr {broker}\nControllerPrivkeyPath k\n"
        cfg = parse_xpmgr_config(text + "ExpExec 1::c:::\n")
        assert cfg.broker_addr == broker
