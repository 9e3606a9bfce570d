"""What a real `twistd -n pktbroker` / `twistd -n pktproxy` never imports while it serves
(docs/performance.md, Memory, "Session 22 (lazy22)"): the reactor's UNIX sockets, PTYs
and X.509 path validation stay lazy modules (`packetlab.lazyimports.DAEMON`),
twistd's plugin scan's leftovers are forgotten (`heaptrim.drop_scan_leftovers`), and the
daemon still serves a real client. Twisted's own TLS transport is not among them: both
daemons read Twisted endpoint strings, and `twisted.internet.endpoints` imports it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pxworld
import pytest
from broker_world import BrokerProcess, Identity, publish_raw
from pxworld import ProxyProc, client_hello, receive_hello, register
from test_endpoint_idle_imports import SITECUSTOMIZE
from tls_world import pktlab_init

from packetlab import wire

#: Present in sys.modules as lazy modules, never run (each was imported whole before).
LAZY = ("twisted.internet.unix", "pty", "cryptography.x509.verification")
#: Not imported at all: `pty`'s own import (`tty`), and what only twistd's plugin scan
#: needed (trial and its unittest, argparse): forgotten before the daemon's imports.
NOT_LOADED = ("tty", "twisted.trial", "twisted.trial.unittest", "unittest", "argparse")


def listing(tmp_path: Path) -> tuple[Path, str]:
    """(the file the daemon lists its modules in at exit, a PYTHONPATH that makes it)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return tmp_path / "modules.txt", str(site)


def modules(path: Path) -> tuple[set[str], set[str]]:
    listed, lazy = path.read_text().split("=lazy=")
    return set(listed.split()), set(lazy.split())


def test_a_broker_serves_a_subscriber_and_a_publisher_without_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, site = listing(tmp_path)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("PKTLAB_TEST_MODULES", str(out))
    home = pktlab_init(tmp_path / "home")
    broker = BrokerProcess(home, tmp_path)
    try:
        ident = Identity(home, tmp_path, "sub")
        sub = ident.subscribe(broker.sub_port, b"endpoint_country=USA;")
        xd = b"endpoint_country=USA;controller_addr=127.0.0.1:20600;sni_key=exp1;"
        pub = publish_raw(home, broker, xd)
        assert sub.recv() == wire.Xnotify(ident.channel, xd)
        sub.close()
        pub.close()
    finally:
        broker.stop()
    loaded, lazy = modules(out)
    assert "packetlab.broker.service" in loaded  # the listing is the broker's
    assert sorted(loaded.intersection(NOT_LOADED)) == []
    assert sorted(lazy.intersection(LAZY)) == sorted(LAZY)  # there, not run


def test_a_proxy_registers_a_backlog_and_splices_without_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, site = listing(tmp_path)
    path = os.pathsep.join(filter(None, [site, pxworld.ENV.get("PYTHONPATH")]))
    monkeypatch.setitem(pxworld.ENV, "PYTHONPATH", path)
    monkeypatch.setitem(pxworld.ENV, "PKTLAB_TEST_MODULES", str(out))
    home = pktlab_init(tmp_path / "home").root
    proxy = ProxyProc(tmp_path, home)
    try:
        backlog = register(proxy.setup, "lazy1")
        proxy.wait_log(r"backlog .* registered for snikey lazy1")
        hello = client_hello("lazy1")
        ep = socket.create_connection(("127.0.0.1", proxy.endpoints), timeout=10)
        ep.sendall(hello)
        backlog.settimeout(10)
        receive_hello(backlog, hello)  # spliced byte for byte
        backlog.sendall(b"from the manager")
        ep.settimeout(10)
        assert ep.recv(100) == b"from the manager"
        ep.close()
        backlog.close()
    finally:
        proxy.stop()
    loaded, lazy = modules(out)
    assert "packetlab.proxy.server" in loaded  # the listing is the proxy's
    assert sorted(loaded.intersection(NOT_LOADED)) == []
    assert sorted(lazy.intersection((*LAZY, "idna"))) == sorted((*LAZY, "idna"))
