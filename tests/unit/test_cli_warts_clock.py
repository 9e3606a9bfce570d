"""`--warts`: the cycle's start and stop are both on the endpoint's clock, as every time
in the trace or ping record is (scamper writes them all from the vantage point's one
clock). The stop was the controller's `time.time()`: with the endpoint's clock 10 min
ahead, a cycle stopped 600 s before it started (session 33, skew33)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from packetlab.cli.run import build_parser
from packetlab.cli.run_ping_echo import write_ping_warts
from packetlab.cli.run_traceroute_trace import write_tracelb_warts, write_warts
from packetlab.measure.mda import MdaHop, MdaResult
from packetlab.measure.records_ping import PingReply, PingResult
from packetlab.measure.records_traceroute import Hop, TracerouteResult
from packetlab.measure.warts_format import OBJ_CYCLE_START, OBJ_CYCLE_STOP
from packetlab.measure.warts_read import read_warts

#: the endpoint's clock, 10 min ahead of ours (this process's)
AHEAD_NS = int((time.time() + 600) * 1e9)


def _cycle(path: Path) -> tuple[int, int]:
    objs = read_warts(path.read_bytes())
    (start,) = [o.fixed["start"] for o in objs if o.kind == OBJ_CYCLE_START]
    (stop,) = [o.fixed["stop"] for o in objs if o.kind == OBJ_CYCLE_STOP]
    return start, stop


def test_a_ping_cycle_stops_on_the_endpoints_clock(tmp_path: Path) -> None:
    args = build_parser().parse_args(["ping", "-c", "2", "192.0.2.1"])
    replies = (
        PingReply(1, "192.0.2.1", 5.0, 64, 64, AHEAD_NS, AHEAD_NS + 5_000),
        PingReply(2, None, None, 64, None, AHEAD_NS + 3 * 10**9, None),  # lost: sent 3 s on
    )
    result = PingResult("192.0.2.1", 2, replies, "192.0.2.9", start_ns=AHEAD_NS)
    path = tmp_path / "p.warts"
    with path.open("wb") as out:
        write_ping_warts(out, args, result, interrupted=False)
    start, stop = _cycle(path)
    assert start == AHEAD_NS // 10**9
    assert stop == (AHEAD_NS + 3 * 10**9) // 10**9  # the last request sent, not our clock


def test_a_trace_cycle_stops_on_the_endpoints_clock(tmp_path: Path) -> None:
    args = build_parser().parse_args(["traceroute", "192.0.2.1"])
    hop = Hop(1, "192.0.2.1", 5.0, "dest-unreachable", 3, AHEAD_NS, AHEAD_NS + 5_000, 60)
    result = TracerouteResult(dst="192.0.2.1", hops=(hop,), src="192.0.2.9", max_ttl=30)
    path = tmp_path / "t.warts"
    with path.open("wb") as out:
        write_warts(out, args, result, interrupted=False)
    start, stop = _cycle(path)
    assert start == stop == AHEAD_NS // 10**9


def test_a_tracelb_cycle_stops_on_the_endpoints_clock(tmp_path: Path) -> None:
    args = build_parser().parse_args(["traceroute", "--mda", "192.0.2.1"])
    hop = MdaHop(2, ("192.0.2.1",), 1)
    result = replace(
        MdaResult("192.0.2.1", "192.0.2.9", "udp-paris", 0.95, (hop,), 1, True),
        start_ns=AHEAD_NS,
    )
    path = tmp_path / "lb.warts"
    with path.open("wb") as out:
        write_tracelb_warts(out, args, result)
    start, stop = _cycle(path)
    assert start == stop == AHEAD_NS // 10**9
