"""What a real `twistd pktendpoint` over TLS never imports in a session that uses none of
it (issue 14, Memory, docs/performance.md): each of these cost the idle endpoint RSS."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_endpoint_startup_memory import session
from tls_world import controller_chain, pktlab_init

#: Loaded only on first use: Twisted's endpoints for a controller host name (an address
#: connects with packetlab.endpoint.tcpclient), libpcap for a CaptureFilter, ctypes.util
#: if libc.so.6 cannot be opened by its name, the reflex gate and the extension's messages
#: on a session's first reflex request (packetlab.endpoint.reflexhook). Twisted's own TLS
#: transport (`twisted.internet.ssl`, left a lazy module by packetlab.lazyimports.DAEMON)
#: and what it loads: the endpoint's link is packetlab.tls (~0.9 MiB of idle RSS).
NOT_LOADED = (
    "twisted.internet._sslverify",
    "service_identity",
    "idna",
    "tty",
    "packetlab.endpoint.reflexes",
    "packetlab.reflex.wire",
    "twisted.internet.endpoints",
    "twisted.internet.stdio",
    "twisted.python.systemd",
    "packetlab.pcap.libpcap",
    "ctypes.util",
)

SITECUSTOMIZE = """\
import atexit, os, sys

def _modules():
    lazy = [n for n, m in sys.modules.items() if type(m).__name__ == "_LazyModule"]
    with open(os.environ["PKTLAB_TEST_MODULES"], "w") as f:
        f.write("\\n".join(sorted(sys.modules)) + "\\n=lazy=\\n" + "\\n".join(sorted(lazy)))

atexit.register(_modules)
"""


def test_a_session_without_them_imports_none_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    listing = tmp_path / "modules.txt"
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("PKTLAB_TEST_MODULES", str(listing))
    home = pktlab_init(tmp_path / "home")
    session(home, controller_chain(home, tmp_path / "chain"), tmp_path / "a", lambda pid: None)
    listed, lazy = listing.read_text().split("=lazy=")
    loaded = set(listed.split())
    assert "packetlab.endpoint.session" in loaded  # the listing is the endpoint's
    assert sorted(loaded.intersection(NOT_LOADED)) == []
    assert "packetlab.endpoint.tcpclient" in loaded
    assert "twisted.internet.ssl" in lazy.split()  # there, not run: loads on first use
