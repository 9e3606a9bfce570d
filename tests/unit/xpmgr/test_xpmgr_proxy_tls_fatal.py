# mypy: disable-error-code="union-attr,attr-defined"
"""OBSERVED §4.1: pktxpmgr gives up at the first failed TLS setup with the proxy (`FATAL
Backlog connection TLS setup failed`, exit 1, no retry); this manager retried until
BootstrapBacklogTimeout (5 s) and then exited 1 (session 36, spec36's leftover). Once a
backlog was established a failure is the pool's to retry, as before."""

from __future__ import annotations

import io

import pytest
from twisted.internet.testing import MemoryReactorClock

from packetlab.cli.init import init_home
from packetlab.controller.xpmgr import Manager
from packetlab.controller.xpmgrconf import parse_xpmgr_config
from packetlab.ppks import PktlabHome


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> PktlabHome:
    h = PktlabHome.at(tmp_path_factory.mktemp("pxtls") / "home")
    init_home(h)
    return h


def active(home: PktlabHome) -> tuple[Manager, MemoryReactorClock, io.StringIO]:
    r = home.root
    text = "\n".join([
        "EnableExpPublication 0", "EnableProxyMode 1", f"ControllerPrivkeyPath {r}/keys/k_xc",
        f"ExpExec 1:snione:{r}/certs/exppriv_eop_exper.cert,{r}/certs/pubcmd_exper_xc.cert:"
        f"{r}/keys/k_eop.pub::",
    ]) + "\n"  # fmt: skip
    reactor = MemoryReactorClock()
    progress = io.StringIO()
    m = Manager(reactor, parse_xpmgr_config(text), ["/bin/true"], progress=progress)
    m.start()
    return m, reactor, progress


def test_the_first_failed_tls_setup_before_any_backlog_is_fatal_at_once(
    home: PktlabHome,
) -> None:
    m, _reactor, progress = active(home)
    [pool] = m.pools
    pool.tls_failed("certificate #0: expired")
    assert m._exit_code == 1 and m.wrapping_up
    assert "FATAL: backlog connection TLS setup with the proxy failed: certificate #0: " \
        "expired" in progress.getvalue()  # fmt: skip
    assert not pool.running  # no retry


def test_a_failed_tls_setup_after_a_backlog_was_established_is_retried(
    home: PktlabHome,
) -> None:
    m, _reactor, progress = active(home)
    [pool] = m.pools
    pool.registered = 1  # one backlog worked: the proxy may be restarting
    pool.tls_failed("connection lost during the handshake")
    assert not m.wrapping_up and pool.running
    assert pool.hard_failure == "connection lost during the handshake"
    assert "FATAL" not in progress.getvalue()
    m.wrap_up()
