# mypy: disable-error-code="union-attr,arg-type"
# (the memory reactor's factory is the TLS one; the harness connects it)
"""The Manager over a memory reactor: what it listens with (passive) and connects with
(active), and the endpoint TLS handshake deadline in both modes."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, Logger, formatEvent

from packetlab.cli.init import init_home
from packetlab.controller.xpmgr import HANDSHAKE_TIMEOUT, HostPort, Manager, ManagerError
from packetlab.controller.xpmgrconf import parse_xpmgr_config
from packetlab.ppks import PktlabHome, issue_certificate, read_private_key, read_public_key


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


def _manager_with(home: PktlabHome, mlet: list[str], exppriv: Path | None = None) -> Manager:
    r = home.root
    chain = exppriv or r / "certs/exppriv_eop_exper.cert"
    text = (
        f"EnableExpPublication 0\nControllerPrivkeyPath {r}/keys/k_xc\n"
        f"ExpExec 1::{chain},{r}/certs/pubcmd_exper_xc.cert:{r}/keys/k_eop.pub::\n"
    )
    return Manager(MemoryReactorClock(), parse_xpmgr_config(text, "xpmgr.conf"), mlet,
                   address=HostPort("127.0.0.1", 0), progress=io.StringIO())  # fmt: skip


@pytest.mark.parametrize(
    ("mlet", "message"),
    [
        ("nonexist.py", "MLET 'nonexist.py': no such file: nonexist.py"),
        ("nonexist.py:run", "MLET 'nonexist.py:run': no such file: nonexist.py"),
        ("nonexist_pkg.exp", "MLET 'nonexist_pkg.exp': no file or Python module nonexist_pkg"),
        ("packetlab.cli.campaign_mlett", "no file or Python module packetlab.cli.campaign_mlett"),
        ("no_such_program", "or the installed packages), and no program on PATH"),
        ("syntax.py", "MLET 'syntax.py': SyntaxError: expected ':' (syntax.py, line 1)"),
    ],
)
def test_a_python_mlet_that_is_not_there_stops_the_manager_at_start(
    home: PktlabHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlet: str, message: str
) -> None:
    """A typo in a Python MLET: one line at start. It was taken, and every endpoint's mlet
    then failed (`mlet nonexist.py: FileNotFoundError: ...`, the result `failed`)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "syntax.py").write_text("async def mlet(session, args)\n    pass\n")
    with pytest.raises(ManagerError, match=re.escape(message)):
        _manager_with(home, [mlet])


def test_python_mlets_that_are_there_are_taken(
    home: PktlabHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.py").write_text("async def mlet(session, args): pass\n")
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "exp2.py").write_text("async def run(session, args): pass\n")
    for mlet in ("exp.py", "exp.py:mlet", "mypkg.exp2:run", "packetlab.cli.campaign_mlet"):
        m = _manager_with(home, [mlet, "arg"])
        assert m.mlet_argv[-2:] == [mlet, "arg"]
    # a bare name that is no module: the program on PATH, as a shell runs it (`true` was
    # run as the Python module `true`)
    (tmp_path / "bin").mkdir()
    prog = tmp_path / "bin" / "my-mlet"
    prog.write_text("#!/bin/sh\n")
    prog.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert _manager_with(home, ["my-mlet", "x"]).mlet_argv == [str(prog), "x"]


def test_an_expired_experiment_chain_stops_the_manager_at_start(
    home: PktlabHome, tmp_path: Path
) -> None:
    """Every endpoint refuses an expired exppriv: the manager says so at start, as the
    endpoint, broker and proxy do for their own certificates (it listened, and each
    endpoint's result was `endpoint closed during setup: Connection ... lost`)."""
    old = tmp_path / "old.cert"
    eop = read_private_key(home.root / "keys/k_eop")
    exper = read_public_key(home.root / "keys/k_exper.pub")
    old.write_bytes(issue_certificate("exppriv", eop, exper, 0, 1_700_000_000).to_pem())
    with pytest.raises(ManagerError) as e:
        _manager_with(home, ["/bin/true"], exppriv=old)
    assert str(e.value) == (
        "xpmgr.conf:3: ExpExec chain: certificate #1 (exppriv) expired at "
        "2023-11-14T22:13:20Z: every peer refuses the chain; renew it "
        "(pktlab ppks sign exppriv ...) and start again"
    )


def test_a_controller_key_that_is_not_one_names_its_own_line(home: PktlabHome) -> None:
    """`ControllerPrivkeyPath .../k_xc.pub` (the public half): the error named the
    ExpExec line (`xpmgr.conf:3: private key file ...`), not the key's."""
    r = home.root
    text = (
        f"EnableExpPublication 0\nControllerPrivkeyPath {r}/keys/k_xc.pub\n"
        f"ExpExec 1::{r}/certs/exppriv_eop_exper.cert,{r}/certs/pubcmd_exper_xc.cert:::\n"
    )
    with pytest.raises(ManagerError) as e:
        Manager(MemoryReactorClock(), parse_xpmgr_config(text, "xpmgr.conf"), ["/bin/true"],
                progress=io.StringIO())  # fmt: skip
    assert str(e.value).startswith("xpmgr.conf:2: ControllerPrivkeyPath: key_not_pem: ")


def test_the_publication_agent_certificate_is_checked_at_start(
    home: PktlabHome, tmp_path: Path
) -> None:
    """PubAgentCertPath: expired, unreadable or no certificate: a stop at start naming its
    line (before session 29 the last two were left to the publication to say; before that
    they raised ValueError from `min()` here)."""
    r = home.root
    old = tmp_path / "agent_old.cert"
    xc = read_private_key(r / "keys/k_xc")
    old.write_bytes(issue_certificate("agent", xc, xc.public_key(), 0, 1_700_000_000).to_pem())

    def manager(agent: Path) -> Manager:
        text = (
            f"EnableExpPublication 1\nControllerPrivkeyPath {r}/keys/k_xc\n"
            f"BrokerAddr 127.0.0.1\nPubAgentCertPath {agent}\n"
            f"ExpExec 1::{r}/certs/exppriv_eop_exper.cert,{r}/certs/pubcmd_exper_xc.cert:"
            f"{r}/keys/k_eop.pub::\n"
        )
        return Manager(MemoryReactorClock(), parse_xpmgr_config(text, "xpmgr.conf"),
                       ["/bin/true"], progress=io.StringIO())  # fmt: skip

    with pytest.raises(ManagerError) as e:
        manager(old)
    assert str(e.value).startswith(
        "xpmgr.conf:4: PubAgentCertPath: certificate #0 (agent) expired at 2023-11-14T22:13:20Z"
    )
    # session 29: unreadable or no certificate stops the start too, naming file, line and
    # key (it was left to the publication, which said it once listening, naming neither)
    for unusable, why in ((tmp_path / "none.cert", "No such file"), (r / "keys/k_xc.pub", "no")):
        with pytest.raises(ManagerError) as e:
            manager(unusable)
        assert str(e.value).startswith("xpmgr.conf:4: PubAgentCertPath: ") and why in str(e.value)
    assert manager(r / "certs/agent_xc_xc.cert").snikeys


def test_endpoints_silent_after_the_handshake_are_capped_oldest_out(
    home: PktlabHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Endpoints that finish TLS and then answer nothing (session 18): each held a
    descriptor and a worker for the 30 s setup timeout, uncapped (400 of them: 400
    descriptors, +19 MB), so a few thousand took every descriptor. Past `setup_max` in
    the setup, the oldest is closed for each new one; one warning per episode."""
    from types import SimpleNamespace

    from packetlab.controller import xpmgr

    m, _ = manager(home)
    m.setup_max = 4
    exp = m._exps[0]
    monkeypatch.setattr(xpmgr, "peer_of", lambda w: SimpleNamespace(entry=exp.entry))
    lines: list[str] = []
    m.log = Logger(observer=cast(ILogObserver, lambda e: lines.append(formatEvent(e))))
    m.start()
    ts = []
    for _ in range(10):
        w = m.worker_factory().buildProtocol(None)
        t = StringTransport()
        w.makeConnection(t)
        ts.append(t)
    assert [t.disconnecting for t in ts] == [True] * 6 + [False] * 4
    assert len([ln for ln in lines if "in the setup" in ln]) == 1, lines
    assert m.failed == 6 and m.running == 4
    late = m.worker_factory().buildProtocol(None)
    late.makeConnection(StringTransport())  # a 5th: the 7th oldest goes, no new line
    assert ts[6].disconnecting and len([ln for ln in lines if "in the setup" in ln]) == 1
    # one past its setup (relaying to its mlet) frees its slot: nobody is closed for the
    # next one, and the one after that closes the oldest still in the setup
    w8 = next(w for w in m.workers if w.transport is ts[7])
    w8.state = "relay"
    m.worker_factory().buildProtocol(None).makeConnection(StringTransport())
    assert not ts[7].disconnecting and not ts[8].disconnecting
    m.worker_factory().buildProtocol(None).makeConnection(StringTransport())
    assert not ts[7].disconnecting and ts[8].disconnecting


def test_after_a_usage_stop_an_endpoint_still_in_its_setup_gets_no_mlet(
    home: PktlabHome, tmp_path: Path
) -> None:
    """Session 31: the first mlet's usage error wraps the manager up; an endpoint whose
    setup was under way then is turned away (`failed`, in words), not run."""
    from packetlab.controller.mlet import TurnedAway

    m = _manager_with(home, ["/bin/true"])
    m.usage_stop = True
    with pytest.raises(TurnedAway, match="arguments were refused at the first endpoint"):
        m._launch(cast(Any, object()), cast(Any, object()))  # (no mlet: nothing is read)
