"""`pktlab campaign --split` when an endpoint's run fails: its share is named (session 31).

Real processes: the campaign, three `twistd pktendpoint`s (plaintext, loopback), one of
them with the example monitor `tcp_only.wasm`, which refuses the measurement's UDP
socket, and dns_zone_server.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from childserver import serve_child
from test_campaign import ENV, REPO, free_port, named, stop

from packetlab.controller.local import twistd_command
from packetlab.monitor.build import find_clang

NAMES = ["a.test", "mx.test", "ns1.test", "www.test", "b.test", "c.test"]


@pytest.mark.skipif(find_clang() is None, reason="clang/lld not installed")
def test_a_refused_endpoints_share_is_named_and_the_split_said_incomplete(
    tmp_path: Path,
) -> None:
    """Before: `[lab-3] error: nopen failed: ECTLMONREJ ...` and a summary that said
    nothing of the two names dealt to lab-3, which no record named."""
    wasm = tmp_path / "tcp_only.wasm"
    subprocess.run([sys.executable, "-m", "packetlab", "monitor", "build",
                    str(REPO / "examples/monitors/tcp_only.c"), "-o", str(wasm)],
                   check=True, capture_output=True, timeout=300, cwd=REPO)  # fmt: skip
    zone = str(Path(__file__).with_name("dns_zone_server.py"))
    with serve_child(zone) as dns:
        port = free_port()
        ctl = subprocess.Popen(
            [sys.executable, "-m", "packetlab", "campaign", "dns", "--split", "--json",
             "--listen", f"127.0.0.1:{port}", "--endpoints", "3", "--insecure-plaintext",
             "--timeout", "150", "--server", f"127.0.0.1:{dns}", *NAMES],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO,
        )  # fmt: skip
        assert ctl.stderr is not None
        assert "waiting for 3 endpoints" in ctl.stderr.readline()
        eps = named(port, "lab-1", "lab-2")
        eps.append(subprocess.Popen(
            [*twistd_command(), "-n", "--pidfile=", "pktendpoint", "--insecure-plaintext",
             "--config", "/dev/null", "--host-id", "lab-3", "--reconnect-delay", "60",
             "-m", str(wasm), f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=REPO,
        ))  # fmt: skip
        try:
            out, err = ctl.communicate(timeout=150)
        finally:
            stop(eps)
    assert ctl.returncode == 1, err
    records = [json.loads(x) for x in out.splitlines()]
    (error,) = [r for r in records if r["type"] == "error"]
    assert error["endpoint"] == "lab-3" and "ECTLMONREJ" in error["error"]
    share = error["share"]
    assert error["records"] == 0 and len(share) == 2 and set(share) <= set(NAMES)
    asked = {r["qname"].rstrip(".") for r in records if r["type"] == "dns"}
    assert asked == set(NAMES) - set(share)  # the others measured theirs
    summary = records[-1]
    assert summary["type"] == "summary" and summary["incomplete"] == {"lab-3": share}
    assert summary["errors"] == 1
