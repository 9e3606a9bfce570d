"""`pktlab reflex build|digest|test` on the example reflexes (docs/reflexes.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from packetlab.monitor.build import find_clang
from packetlab.reflex import abi

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "reflexes"

pytestmark = pytest.mark.skipif(find_clang() is None, reason="clang/lld not installed")


def pktlab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "packetlab", *args],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("src", ["udp_responder.c", "aimd.c", "tcp_handshake.c"])
def test_examples_build_with_their_digest(src: str, tmp_path: Path) -> None:
    out = tmp_path / "r.wasm"
    digest = pktlab("reflex", "build", str(EXAMPLES / src), "-o", str(out)).stdout.split()[0]
    assert digest == abi.digest(out.read_bytes()).hex()
    assert pktlab("reflex", "digest", str(out)).stdout.split()[0] == digest


def test_test_prints_what_the_responder_does() -> None:
    out = pktlab(
        "reflex", "test", str(EXAMPLES / "udp_responder.c"),
        "--messages", str(EXAMPLES / "packets.jsonl"), "--params", "01",
    ).stdout  # fmt: skip
    rows: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines()]
    assert rows[0] == {"init": "ok"}
    assert [r["verdict"] for r in rows[1:3]] == ["deliver", "deliver"]
    send = rows[1]["sends"][0]
    assert (send["raddr"], send["rport"], send["tag"]) == ("192.0.2.7", 4242, 1)
    assert send["data"].endswith(b"hello".hex())
    assert rows[-1] == {"state": "00000002"}


def test_a_monitor_is_not_a_reflex(tmp_path: Path) -> None:
    proc = pktlab(
        "reflex", "build", str(REPO / "examples" / "monitors" / "tcp_only.c"),
        "-o", str(tmp_path / "m.wasm"), check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "reflex_packet" in proc.stderr
    assert not (tmp_path / "m.wasm").exists()
