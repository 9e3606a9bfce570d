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


# reflex_init arms a timer 1 ms on; each run sends "t" + the run count to 192.0.2.7:4242
# on socket 1 and re-arms 1 ms on, three runs in all
TICKER = reflex_wat(
    "(i32.const 0)",
    init="(drop (call $reflex_timer_at (i64.add (call $reflex_now) (i64.const 1000000))))"
    " (i32.const 0)",
    timer="""(i32.store8 offset=1024 (local.get $ctx)
      (i32.add (i32.load8_u offset=1024 (local.get $ctx)) (i32.const 1)))
    (i32.store (i32.const 16) (i32.const 0x070200c0))
    (i32.store8 (i32.const 20) (i32.const 0x74))
    (i32.store8 (i32.const 21) (i32.load8_u offset=1024 (local.get $ctx)))
    (drop (call $reflex_send (i32.const 1) (i32.const 20) (i32.const 2) (i32.const 16)
      (i32.const 4) (i32.const 4242) (i64.const 0) (i32.const 0)))
    (if (i32.lt_u (i32.load8_u offset=1024 (local.get $ctx)) (i32.const 3))
      (then (drop (call $reflex_timer_at (i64.add (local.get $now) (i64.const 1000000))))))
    (i32.const 0)""",
)
T = 1_700_000_000_000_000_000


def at(time: int, data: str) -> str:
    return ndata(1, data).replace('"time": 1', f'"time": {time}')


def test_timers_run_on_a_simulated_clock_between_and_after_packets(
    tmp_path: Path, rows: Any
) -> None:
    """`reflex test` showed an armed timer (`"timer": T`, T from the wall clock) and never
    ran `reflex_timer`: a timer-driven reflex could not be tried. Now the clock is the
    packets' (from the first ndata's time), a timer due runs before the first packet at
    or after it, the rest after the last packet (--timers-ms), each with what it sent."""
    send = {"sktid": 1, "raddr": "192.0.2.7", "rport": 4242, "time": 0, "tag": 0}
    status = run(tmp_path, TICKER, [at(T, "00"), at(T + 2_500_000, "01")])
    assert status == 0
    assert rows() == [
        {"init": "ok", "timer": T + 1_000_000},
        {"line": 1, "verdict": "consume"},
        {"reflex_timer": T + 1_000_000, "sends": [send | {"data": "7401"}], "timer": T + 2_000_000},
        {"reflex_timer": T + 2_000_000, "sends": [send | {"data": "7402"}], "timer": T + 3_000_000},
        {"line": 2, "verdict": "consume"},
        {"reflex_timer": T + 3_000_000, "sends": [send | {"data": "7403"}]},
        {"state": "03"},
    ]
    # --timers-ms bounds the run after the last packet: the third run is 0.5 ms on
    run(tmp_path, TICKER, [at(T, "00"), at(T + 2_500_000, "01")], "--timers-ms", "0.4")
    got = rows()
    ran = [r.get("reflex_timer") for r in got]
    assert ran == [None, None, T + 1_000_000, T + 2_000_000, None, None]
    assert got[-1] == {"state": "02"}


def test_a_timer_that_crashes_or_never_stops(tmp_path: Path, rows: Any) -> None:
    """A crashing reflex_timer is a crash (exit 1, as a packet's); one re-armed at its own
    time forever stops after MAX_TIMER_RUNS, said on a line."""
    arm = "(drop (call $reflex_timer_at (call $reflex_now))) (i32.const 0)"
    crash = reflex_wat("(i32.const 0)", init=arm, timer="(unreachable)")
    assert run(tmp_path, crash, [at(T, "00")]) == 1
    got = rows()
    assert got[-1]["reflex_timer"] == T and got[-1]["verdict"] == "crash (detached)"
    forever = reflex_wat("(i32.const 0)", init=arm, timer=arm)
    assert run(tmp_path, forever, [at(T, "00")]) == 0
    got = rows()
    assert sum("reflex_timer" in r for r in got) == reflex.MAX_TIMER_RUNS
    stopped = "stopped after 10000 runs of reflex_timer (an endpoint goes on)"
    assert got[1 + reflex.MAX_TIMER_RUNS] == {"timers": stopped}
    assert got[-2:] == [{"line": 1, "verdict": "consume"}, {"state": ""}]


def test_the_timers_stop_is_said_once_though_later_packets_re_arm(
    tmp_path: Path, rows: Any
) -> None:
    """After MAX_TIMER_RUNS each later packet that re-armed the timer printed the
    `timers: stopped` line again (review32A); once is enough."""
    arm = "(drop (call $reflex_timer_at (call $reflex_now))) (i32.const 0)"
    forever = reflex_wat(arm, init=arm, timer=arm)
    assert run(tmp_path, forever, [at(T, "00"), at(T + 1, "00"), at(T + 2, "00")]) == 0
    got = rows()
    assert sum("timers" in r for r in got) == 1, [r for r in got if "timers" in r]
    assert sum("reflex_timer" in r for r in got) == reflex.MAX_TIMER_RUNS


def test_timers_late_as_on_a_busy_endpoint(tmp_path: Path, rows: Any) -> None:
    """An endpoint runs a timer at or after its time; a reflex that re-arms from `now`
    drifts. --timer-late-us shows it: each run 0.3 ms late, the next armed from there."""
    run(tmp_path, TICKER, [at(T, "00")], "--timer-late-us", "300")
    ran = [r["reflex_timer"] for r in rows() if "reflex_timer" in r]
    assert ran == [T + 1_300_000, T + 2_600_000, T + 3_900_000]


def test_vmem_time_is_the_simulated_clock(tmp_path: Path, rows: Any) -> None:
    """vmem's TIME (read_vmem_region) was the wall clock while reflex_now() was the
    packets' clock: a reflex reading it saw a new value each run. Now the same clock."""
    from packetlab.wire import vmem

    keep_time = reflex_wat(
        f"(drop (call $read_vmem_region (i32.const {vmem.TIME.addr}) "
        "(i32.add (local.get $ctx) (i32.const 1024)) (i32.const 8))) (i32.const 0)"
    )
    run(tmp_path, keep_time, [at(T + 1, "00")])
    assert rows()[-1] == {"state": (T + 1).to_bytes(8, "big").hex()}
