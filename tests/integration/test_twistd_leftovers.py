"""What `twistd pktendpoint` forgets before its own imports (packetlab.heaptrim): the
plugin scan's leftovers and the modules twistd binds for paths a daemon seldom takes,
which come back on first use."""

from __future__ import annotations

import subprocess
import sys

# As twistd loads a plugin's tap: its own modules, the plugin scan, then the tap module.
CODE = """
import sys
import twisted.scripts.twistd
from twisted import plugin
from twisted.application import app
from twisted.application.service import IServiceMaker
list(plugin.getPlugins(IServiceMaker))
gone = ["unittest", "argparse", "pdb", "bdb", "pprint", "getpass"]
before = {m for m in gone if m in sys.modules}
import packetlab.endpoint.tap
import packetlab.ppks, packetlab.endpoint.monitors, packetlab.endpoint.session
gone += ["packetlab.ppks.issue", "packetlab.wire.program"]
after = {m for m in gone if m in sys.modules}
print(sorted(before), sorted(after), type(app.pdb).__name__)
print(app.pdb.Pdb.__module__, "pdb" in sys.modules)  # twistd --debug: pdb comes back
"""


def test_twistd_forgets_pdb_and_the_scan_leftovers_and_gets_pdb_back() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    first, second = out.stdout.splitlines()
    assert first == ("['argparse', 'bdb', 'getpass', 'pdb', 'pprint', 'unittest'] [] LazyModule"), (
        out.stdout
    )
    assert second == "pdb True"


# The drop as twistd makes it (after the plugin scan), its peak allocation traced.
PEAK = """
import tracemalloc
import twisted.scripts.twistd
from twisted import plugin
from twisted.application.service import IServiceMaker
list(plugin.getPlugins(IServiceMaker))
from packetlab import heaptrim
tracemalloc.start()
tracemalloc.reset_peak()
dropped = heaptrim.drop_scan_leftovers()
print(len(dropped), tracemalloc.get_traced_memory()[1])
"""


def test_the_drop_allocates_little_on_its_way() -> None:
    """What the drop allocates to find the unused modules is freed, but it stays resident
    (scattered among the objects the daemon allocates next): an index of every global
    peaked at 2.7 MB under twistd and left idle RSS 0.6 MiB higher (docs/performance.md)."""
    out = subprocess.run([sys.executable, "-c", PEAK], capture_output=True, text=True, check=True)
    count, peak = (int(x) for x in out.stdout.split())
    assert count >= 20, out.stdout  # the scan's leftovers did go
    assert peak < 512 * 1024, f"the drop's peak allocation: {peak} bytes"


# As twistd: the scan, then the tap, whose imports bring in the reactor.
LAZY_SSL = """
import sys
import twisted.scripts.twistd
from twisted import plugin
from twisted.application.service import IServiceMaker
list(plugin.getPlugins(IServiceMaker))
import packetlab.endpoint.tap
from packetlab.endpoint import service
from twisted.internet import reactor, ssl
from packetlab.lazyimports import is_lazy
print(is_lazy("twisted.internet.ssl"), "service_identity" in sys.modules)
print(ssl.CertificateOptions.__module__, is_lazy("twisted.internet.ssl"))
"""


def test_the_reactors_tls_transport_loads_on_first_use() -> None:
    """Twisted's own TLS transport (and service_identity, idna) is left lazy under twistd
    pktendpoint (idle RSS -0.9 MiB), and is whole on first use."""
    out = subprocess.run(
        [sys.executable, "-c", LAZY_SSL], capture_output=True, text=True, check=True
    )
    assert out.stdout.splitlines() == ["True False", "twisted.internet._sslverify False"]
