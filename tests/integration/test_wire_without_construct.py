"""A process whose derived wire code is kept on disk runs without construct (issue 14,
Memory: construct is ~1.3 MiB of the endpoint's idle RSS)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CODE = (
    "import sys, packetlab.wire, packetlab.endpoint.frames, packetlab.endpoint.tap\n"
    "from packetlab import wire\n"
    "m = wire.Nsend(sktid=1, family=4, proto=6, time=0, tag=7, data=b'hi')\n"
    "assert wire.decode_frame(wire.encode(m)) == m\n"
    "print(sorted(n for n in sys.modules if n.split('.')[0] == 'construct'"
    " or n in ('packetlab.wire.sourcegen', 'packetlab.wire.layouts')))"
)


def test_the_endpoint_imports_no_construct_once_its_code_is_kept(tmp_path: Path) -> None:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    runs = [
        subprocess.run(
            [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, env=env
        ).stdout.strip()
        for _ in range(2)
    ]
    assert "construct" in runs[0]  # nothing kept yet: derived with construct, then kept
    assert runs[1] == "[]"
    assert list((tmp_path / "pktlab" / "wire-code").glob("derived-*"))
