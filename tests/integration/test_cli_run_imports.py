"""What a fresh `pktlab run` imports before its first probe: the controller's public
names load their modules on first use, so a traceroute loads neither the exchanges nor
the trains (docs/performance.md, pktlab run, Session 6)."""

from __future__ import annotations

import subprocess
import sys


def test_pktlab_run_loads_only_the_controller_parts_it_uses() -> None:
    code = (
        "import sys, packetlab.cli as c\n"
        "rc = c.main(['run', 'ping', '-c', '1', '-q', '127.0.0.1'])\n"
        "print(rc, *sorted(m for m in sys.modules if m.startswith('packetlab.controller.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    rc, *names = out.stdout.splitlines()[-1].split()
    loaded = set(names)
    assert rc == "0", out
    assert "packetlab.controller.listener" in loaded  # what the run does need
    assert not loaded & {"packetlab.controller.exchange", "packetlab.controller.train"}, loaded
