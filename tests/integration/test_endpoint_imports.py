"""What a fresh endpoint process imports: without monitors, wasmtime stays unloaded."""

from __future__ import annotations

import subprocess
import sys


def test_an_endpoint_without_monitors_does_not_load_wasmtime() -> None:
    code = (
        "import sys, packetlab.endpoint.tap, packetlab.endpoint.monitors, packetlab.cli.init\n"
        "from packetlab.endpoint.tap import Options\n"
        "Options().parseOptions(['--insecure-plaintext'])\n"
        "print('wasmtime' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # ~12 MiB of RSS saved
