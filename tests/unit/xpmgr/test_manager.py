# mypy: disable-error-code="union-attr,arg-type"
# (the memory reactor's factory is the TLS one; the harness connects it)
"""The Manager over a memory reactor: what it listens with (passive) and connects with
(active), and the endpoint TLS handshake deadline in both modes."""

from __future__ import annotations

import io

import pytest
from twisted.internet.testing import MemoryReactorClock, StringTransport

from packetlab.cli.init import init_home
from packetlab.controller.xpmgr import HANDSHAKE_TIMEOUT, HostPort, Manager
from packetlab.controller.xpmgrconf import parse_xpmgr_config
from packetlab.ppks import PktlabHome


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> PktlabHome:
    h = PktlabHome.at(tmp_path_factory.mktemp("mgr") / "home")
    init_home(h)
    return h


def manager(home: PktlabHome, *lines: str) -> tuple[Manager, MemoryReactorClock]:
    r = home.root
    text = "\n".join([
        "EnableExpPublication 0", f"ControllerPrivkeyPath {r}/keys/k_xc", *lines,
        f"ExpExec 1::{r}/certs/exppriv_eop_exper.cert,{r}/certs/pubcmd_exper_xc.cert:"
        f"{r}/keys/k_eop.pub::",
    ]) + "\n"  # fmt: skip
    reactor = MemoryReactorClock()
    m = Manager(reactor, parse_xpmgr_config(text), ["/bin/true"],
                address=HostPort("127.0.0.1", 0), progress=io.StringIO())  # fmt: skip
    return m, reactor


def test_passive_endpoint_silent_in_the_handshake_is_cut_off(home: PktlabHome) -> None:
    """A TCP connection that never completes TLS (a scanner, a stalled endpoint) must
    not hold its descriptor, and its worker slot, for good."""
    m, reactor = manager(home)
    m.start()
    _, factory, _, _ = reactor.tcpServers[0]
    proto = factory.buildProtocol(None)
    t = StringTransport()
    proto.makeConnection(t)
    reactor.advance(HANDSHAKE_TIMEOUT - 0.1)
    assert not t.disconnecting
    reactor.advance(0.2)
    assert t.disconnecting
    assert m.seen == 0  # never an endpoint: not counted


def test_active_mode_backlog_server_has_the_same_deadline(home: PktlabHome) -> None:
    m, reactor = manager(home, "EnableProxyMode 1")
    m.start()
    assert m.pools[0].server_factory.handshake_timeout == (HANDSHAKE_TIMEOUT, reactor)
    m.wrap_up()


def test_endpoint_finishing_tls_after_the_wrap_up_is_turned_away(home: PktlabHome) -> None:
    """-n N: greeting ends at the Nth endpoint (§7.1); one whose TLS completes after that
    (it was mid-handshake, or spliced by the proxy) gets no mlet and is not counted."""
    m, _ = manager(home)
    m.start()
    m.wrap_up()
    worker = m.worker_factory().buildProtocol(None)
    t = StringTransport()
    worker.makeConnection(t)
    assert t.disconnecting and t.value() == b""
    assert (m.seen, m.running) == (0, 0) and m.finished.called
