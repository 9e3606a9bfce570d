"""`pktlab reflex test` shows a packet as the endpoint handles it (session 31): the
socket reflex_init gets, which packets reach the reflex, and the sends and reports the
endpoint refuses past the per-call bounds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from wasmtime import wat2wasm

from packetlab.cli import reflex
from packetlab.reflex.template import reflex_wat

# reflex_init keeps its sktid in state[0]; each packet is sent back on that socket
INIT_SKTID = reflex_wat(
    "(drop (call $reflex_send (i32.load8_u (i32.add (local.get $ctx) (i32.const 1024)))"
    " (local.get $data) (local.get $len) (local.get $raddr) (local.get $raddrlen)"
    " (local.get $rport) (i64.const 0) (i32.const 0))) (i32.const 0)",
    init="(i32.store8 (i32.add (local.get $ctx) (i32.const 1024)) (local.get $sktid))"
    " (i32.const 0)",
)
# 100 sends and 20 reports per packet: 64 and 16 are taken, the rest answered -1
FLOOD = reflex_wat(
    """(local $i i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.const 100)))
      (drop (call $reflex_send (local.get $sktid) (local.get $data) (local.get $len)
        (local.get $raddr) (local.get $raddrlen) (local.get $rport) (i64.const 0) (i32.const 0)))
      (if (i32.lt_u (local.get $i) (i32.const 20))
        (then (drop (call $reflex_report (local.get $data) (local.get $len)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.const 0)"""
)


def ndata(sktid: int, data: str) -> str:
    return json.dumps(
        {"type": "ndata", "sktid": sktid, "family": 4, "proto": 17, "time": 1,
         "raddr": "192.0.2.7", "rport": 4242, "data": data}
    )  # fmt: skip


def run(tmp: Path, wat: str, lines: list[str], *words: str) -> int:
    wasm, msgs = tmp / "r.wasm", tmp / "m.jsonl"
    wasm.write_bytes(bytes(wat2wasm(wat)))
    msgs.write_text("".join(line + "\n" for line in lines))
    parser = argparse.ArgumentParser()
    reflex.add_arguments(parser)
    args = parser.parse_args(["test", str(wasm), "--messages", str(msgs), *words])
    return int(reflex.run(args))


@pytest.fixture
def rows(capsys: pytest.CaptureFixture[str]) -> Any:
    def take() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    return take


def test_reflex_init_gets_the_reflexs_socket(tmp_path: Path, rows: Any) -> None:
    """reflex_init got socket 0 here whatever the packets' socket (the endpoint gives the
    socket the reflex is attached to): a reflex that keeps it showed its sends on socket
    0, and on socket 1 at a real endpoint."""
    lines = ['{"type": "nclose", "sktid": 1}', ndata(1, "00aa")]
    status = run(tmp_path, INIT_SKTID, lines)
    got = rows()
    assert status == 0
    assert got[0] == {"init": "ok"}
    assert got[2]["sends"][0]["sktid"] == 1
    assert got[-1] == {"state": "01"}
    # --sktid chooses it; another socket's packets do not reach the reflex, as there
    status = run(tmp_path, INIT_SKTID, [ndata(1, "00aa"), ndata(3, "00bb")], "--sktid", "3")
    got = rows()
    assert got[1] == {"line": 1, "verdict": "another socket's (the reflex is on socket 3)"}
    assert got[2]["sends"][0]["sktid"] == 3 and got[2]["sends"][0]["data"] == "00bb"
    assert got[-1] == {"state": "03"}


def test_sends_and_reports_past_the_bounds_are_shown_refused(tmp_path: Path, rows: Any) -> None:
    """100 reflex_send and 20 reflex_report in one call: 64 sends and 16 reports were
    shown and the 40 the reflex was answered -1 for were not shown at all."""
    status = run(tmp_path, FLOOD, [ndata(1, "00aa")])
    row = rows()[1]
    assert status == 0
    assert (len(row["sends"]), len(row["reports"]), row["refused"]) == (64, 16, 40)


def test_a_packet_no_endpoint_reads_is_a_bad_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ndata line of 70,000 bytes ended in `ValueError: memoryview assignment` (an
    endpoint reads at most NDATA_MAX, 65,536, into the reflex's packet buffer)."""
    status = run(tmp_path, FLOOD, [ndata(1, "00" * 70_000), ndata(1, "00aa")])
    got = capsys.readouterr()
    assert status == 2
    want = "an ndata of 70000 bytes: endpoints read at most 65536 (NDATA_MAX)"
    assert got.err == f"{tmp_path / 'm.jsonl'}:1: {want}\n"
    rows = [json.loads(line) for line in got.out.splitlines()]
    assert [r.get("line") for r in rows] == [None, 2, None]  # the rest still run


def test_a_reflex_whose_init_refuses_handles_no_packet(tmp_path: Path, rows: Any) -> None:
    """reflex_init returning 7: `{"init": "refused (7)"}`, then every packet shown
    handled ("deliver") and exit 0, while an endpoint answers the rattach EUNKFAULT and
    never runs the reflex. Now the run ends there, exit 1, as for a crashing init."""
    wat = reflex_wat("(i32.const 1)", init="(i32.const 7)")
    status = run(tmp_path, wat, [ndata(1, "00aa")])
    assert status == 1
    got = rows()
    assert len(got) == 1 and got[0]["init"] == "refused (7)" and "EUNKFAULT" in got[0]["why"]
