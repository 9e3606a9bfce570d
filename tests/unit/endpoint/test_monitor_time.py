"""A session's monitor time on the gate (docs/monitors.md, "Monitor time"), over fakes:
the monitors' calls cost what a fake clock says (`read_vmem_region` moves it), so a
"spinning" monitor costs no real time here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import wasmtime
from ep_fakes import LO4, Rig, udp_open, udp_send
from twisted.logger import capturedLogs, formatEvent

from packetlab import wire
from packetlab.endpoint.checks import OpenGate
from packetlab.endpoint.monitors import AuxMonitor, MonitorGate, MonitorHost
from packetlab.endpoint.session import Session
from packetlab.monitor import abi
from packetlab.monitor.runtime import Settings, compile_monitor
from packetlab.monitor.template import monitor_wat
from packetlab.wire.constants import Status

MONREJ, MONUKN = int(Status.ECTLMONREJ), int(Status.ECTLMONUKN)
READ = "(drop (call $read_vmem_region (i32.const 0x20000000) (i32.const 300) (i32.const 1)))"
# Every check reads vmem (which moves the fake clock by `Slow.cost`) and passes.
SLOW = {k: f"{READ} (i32.const 0)" for k in abi.CHECKS}
ALLOW = {k: "(i32.const 0)" for k in abi.CHECKS}


class Slow:
    """The fake clock; a monitor's vmem read costs `cost` seconds of it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.cost = 0.0

    def __call__(self) -> float:
        return self.now

    def read_vmem(self, addr: int, length: int) -> bytes:
        self.now += self.cost
        return bytes(length)


def rig(
    tmp_path: Path, *checks: dict[str, str], results: dict[str, str] | None = None, **settings: Any
) -> tuple[Rig, Slow]:
    slow = Slow()
    mods = [
        AuxMonitor(
            f"m{i}.wasm",
            compile_monitor(bytes(wasmtime.wat2wasm(monitor_wat(ALLOW | c, results=results)))),
        )
        for i, c in enumerate(checks)
    ]
    settings = {"deadline_ms": 100, "time_ms": 100, "report_crash": True} | settings
    h = MonitorHost(Settings(**settings), mods, str(tmp_path / "pm.sqlite3"), clock=slow)
    gate = h.gate(OpenGate())
    assert isinstance(gate, MonitorGate)
    r = Rig()
    r.session = Session(r.config, r.net, r.scheduler, r.clock, gate=gate)  # type: ignore[arg-type]
    r.frames.clear()
    r.session.outbox.attach(r.frames.append)
    gate.attach(r.session.memory, r.session.sockets, r.session.nopen_error)
    gate.read_vmem = slow.read_vmem  # type: ignore[method-assign]
    out = r.send(wire.Start())
    assert out[0] == wire.Result(0) and len(out) == 1 + len(checks)
    assert r.send(udp_open()) == [wire.Result(0)]
    return r, slow


def flood(r: Rig, n: int, t0: int = 100) -> list[str]:
    """`n` datagrams from a peer; the names of the frames they gave."""
    for i in range(n):
        r.session.udp_received(r.skt(1), b"x" * 16, t0 + i, LO4, 53)
    return [m.NAME for m in r.new()]


def test_a_spinning_ndata_monitor_costs_at_most_its_time_then_data_is_dropped_and_counted(
    tmp_path: Path,
) -> None:
    r, slow = rig(tmp_path, SLOW, time_ms=100)
    slow.cost = 0.11  # each check: a deadline of 100 ms and a tick past it
    with capturedLogs() as events:
        # Two deadlines (200 ms) saved up: two checks run (the second on the 90 ms left;
        # nothing comes back while they run); the 48 after them are dropped without
        # entering it.
        assert flood(r, 50) == ["ndata"] * 2
        assert slow.now == pytest.approx(1000.22)  # 50 such checks cost 5.5 s before
        sid = r.skt(1)
        assert (sid.drop_pkts, sid.drop_bytes) == (48, 48 * 16)
        # A request to be checked is answered as a crash of the monitor, not entered.
        assert r.send(udp_send(tag=3)) == [wire.Result(MONUKN, 0)]
        assert slow.now == pytest.approx(1000.22)
        assert r.send(wire.Mread(addr=0x20000000, len=4))[0].NAME == "mdata"  # not checked
        # Paid back (20 ms of debt at 111 ms a second), not yet full: entered again, and
        # the episode's drops go out as one ndrop before the next ndata.
        slow.now += 0.5
        slow.cost = 0.0
        assert flood(r, 1, t0=500) == ["ndrop", "ndata"]
    lines = [formatEvent(e) for e in events if "monitor time" in formatEvent(e)]
    assert len(lines) == 1, lines  # one line for the episode's start, none per datagram
    assert lines[0].startswith("monitor 0 (") and "spent (100 ms a second" in lines[0]
    with capturedLogs() as events:
        slow.now += 10.0  # full again: the episode ends, with its counts
        assert flood(r, 1, t0=600) == ["ndata"]
    lines = [formatEvent(e) for e in events if "monitor time" in formatEvent(e)]
    assert len(lines) == 1 and "48 received chunk(s) dropped, 1 request(s) refused" in lines[0]


@pytest.mark.parametrize("report", [False, True])
def test_a_refusal_names_the_monitor_that_spent_the_time(tmp_path: Path, report: bool) -> None:
    r, slow = rig(tmp_path, ALLOW, SLOW, report_crash=report)
    slow.cost = 0.25
    assert r.send(udp_send(tag=1))[0] == wire.Result(0)  # it ran, and spent it all
    want = wire.Result(MONUKN, 1) if report else wire.Result(MONREJ, 1, 0)
    assert r.send(udp_send(tag=2)) == [want]
    assert len(r.io(1).sent) == 1  # the refused nsend was not sent
    assert r.send(udp_open(sktid=2)) == [want]  # every checked request, until it refills
    assert r.session.sockets[2] is None
    slow.now += 10.0
    slow.cost = 0.0
    assert r.send(udp_send(tag=3))[0] == wire.Result(0)  # the same instance again


def test_a_well_behaved_monitor_is_never_refused(tmp_path: Path) -> None:
    r, slow = rig(tmp_path, SLOW, time_ms=100)
    slow.cost = 0.0005  # 0.5 ms a check, one datagram every 10 ms: 5 % of the time
    for i in range(2000):
        assert flood(r, 1, t0=i) == ["ndata"]
        slow.now += 0.0095
    assert r.send(udp_send())[0] == wire.Result(0)
    assert r.skt(1).drop_pkts == 0


def test_result_callbacks_count_too(tmp_path: Path) -> None:
    r, slow = rig(tmp_path, ALLOW, results={"nsend": READ})
    slow.cost = 0.25
    assert r.send(udp_send(tag=1))[0] == wire.Result(0)  # checked at no cost; its result 250 ms
    assert r.send(udp_send(tag=2)) == [wire.Result(MONUKN, 0)]


def test_no_cap_with_monitor_time_0(tmp_path: Path) -> None:
    r, slow = rig(tmp_path, SLOW, time_ms=0)
    slow.cost = 0.11
    assert flood(r, 20) == ["ndata"] * 20  # as before: every datagram checked
    assert slow.now == pytest.approx(1002.2)


SPIN = "(loop (br 0)) (i32.const 0)"
BURST_CUT = "ran past 20 ms, the most monitor time a session saves up (MonitorTimeBurstMillsec)"


def test_a_spinning_call_is_cut_off_at_the_burst_not_at_a_long_deadline(tmp_path: Path) -> None:
    # 20 ms saved up at most, a deadline of 5 s: the call is cut off 20 ms (and up to a
    # tick) after it began. Before session 34 it ran 5 s, to its deadline (with
    # MonitorDeadlineMillsec 60000, 60 s of a reactor the other sessions share). The wasm
    # spins for real; the budget's clock is the fake one.
    r, _ = rig(tmp_path, {"nsend": SPIN}, deadline_ms=5000, time_burst_ms=20)
    assert r.send(udp_send(tag=1)) == [wire.Result(MONUKN, 0)]  # as a crash (§8.5)
    gate = r.session.gate
    assert isinstance(gate, MonitorGate)
    assert gate.monitors[0].last_crash == BURST_CUT
    r, _ = rig(tmp_path, ALLOW, results={"nsend": "(loop (br 0))"}, deadline_ms=5000,
               time_burst_ms=20)  # fmt: skip
    assert r.send(udp_send(tag=1))[0] == wire.Result(0)  # a result callback: the same
    gate = r.session.gate
    assert isinstance(gate, MonitorGate) and gate.monitors[0].last_crash == BURST_CUT


def test_a_call_runs_to_its_deadline_when_that_is_shorter_than_the_burst(
    tmp_path: Path,
) -> None:
    r, _ = rig(tmp_path, {"nsend": SPIN}, deadline_ms=20, time_burst_ms=5000)
    assert r.send(udp_send(tag=1)) == [wire.Result(MONUKN, 0)]
    gate = r.session.gate
    assert isinstance(gate, MonitorGate)
    assert gate.monitors[0].last_crash == "deadline of 20 ms exceeded"
    r, _ = rig(tmp_path, {"nsend": SPIN}, deadline_ms=20, time_ms=0, time_burst_ms=10)
    gate = r.session.gate
    assert r.send(udp_send(tag=1)) == [wire.Result(MONUKN, 0)]  # no cap: no burst either
    assert isinstance(gate, MonitorGate)
    assert gate.monitors[0].last_crash == "deadline of 20 ms exceeded"


def test_a_call_entered_with_a_crumb_left_is_not_cut_off(tmp_path: Path) -> None:
    """Only the burst cuts a call off, not the bucket being nearly empty: a usual check
    finishes (a TCP chunk it checks is not lost); the debt is paid back afterwards."""
    r, slow = rig(tmp_path, {"ndata": f"{READ} (i32.const 0)"}, time_burst_ms=200)
    gate = r.session.gate
    assert isinstance(gate, MonitorGate) and gate._time is not None
    gate._time.tokens = 1e-6  # a crumb
    slow.cost = 0.05
    assert flood(r, 1) == ["ndata"]  # checked and delivered, not a crash
    assert gate.monitors[0].crashes == 0
    assert gate._time.tokens == pytest.approx(1e-6 - 0.05)
    assert flood(r, 1, t0=200) == []  # then dropped and counted until it is paid back


def test_config_key_and_option() -> None:
    from packetlab.endpoint.config import ConfigError, EndpointConfig, parse_config
    from packetlab.endpoint.monitors import settings_of
    from packetlab.endpoint.tap import Options

    assert EndpointConfig().monitor_time_ms == 500 == Settings().time_ms
    cfg = parse_config(["MonitorTimeMillsec 0"])
    assert cfg.monitor_time_ms == 0 and settings_of(cfg).time_ms == 0
    with pytest.raises(ConfigError):
        parse_config(["MonitorTimeMillsec 1001"])
    assert EndpointConfig().monitor_time_burst_ms == 0 == Settings().time_burst_ms
    cfg = parse_config(["MonitorTimeBurstMillsec 5000", "MonitorDeadlineMillsec 60000"])
    assert settings_of(cfg).time_burst == 5.0
    assert settings_of(parse_config(["MonitorDeadlineMillsec 60000"])).time_burst == 1.0
    with pytest.raises(ConfigError):
        parse_config(["MonitorTimeBurstMillsec 60001"])
    opts = Options()
    opts.parseOptions(["--insecure-plaintext", "--monitor-time-ms", "250"])
    assert opts["endpoint_config"].monitor_time_ms == 250
