# mypy: disable-error-code="union-attr,attr-defined"
"""The manager's defaults named in PROTOCOL.md §5.4, §6, §7.1-7.2 and §4.6, over a memory
reactor: where it listens (passive) or connects (active, TargetBacklogConn at once), the
broker's default port, and when an endpoint's client certificate is required."""

from __future__ import annotations

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
