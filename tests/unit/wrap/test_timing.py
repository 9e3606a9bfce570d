"""The virtual clock (timing fidelity) and per-connection timelines, on a fake clock."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from testkit.clock import FakeClock
from twisted.internet.task import Clock

from packetlab.wrap.timeline import ConnTiming, Timeline, TimingLog
from packetlab.wrap.vclock import VirtualClock


def test_due_hides_the_delay_but_never_goes_below_what_was_seen(tmp_path: Path) -> None:
    now = FakeClock(1_000_000_000, step=0)
    vc = VirtualClock(str(tmp_path / "clock"), now=now)
    start = vc.virtual()
    now.now += 50_000_000  # 50 ms later the endpoint's answer arrives; it took 2 ms there
    assert vc.due(start + 2_000_000) == 0
    assert vc.virtual() == start + 2_000_000
    assert vc.hidden == 48_000_000
    # the program read its clock at +10 ms (the shim's high-water mark): no going back
    with open(tmp_path / "clock", "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<q", start + 10_000_000))
    now.now += 30_000_000
    assert vc.due(start + 3_000_000) == 0
    assert vc.virtual() == start + 10_000_000
    # a target ahead of virtual time is held
    assert vc.due(vc.virtual() + 7) == 7
    offset = vc.offset
    vc.close()
    assert not (tmp_path / "clock").exists()
    assert offset > 0


def test_offset_is_shared_through_the_file(tmp_path: Path) -> None:
    now = FakeClock(1_000_000_000, step=0)
    vc = VirtualClock(str(tmp_path / "clock"), now=now)
    now.now += 1000
    vc.due(vc.virtual() - 400)
    raw = (tmp_path / "clock").read_bytes()
    assert struct.unpack_from("<q", raw, 0)[0] == 400
    vc.close()


def test_timeline_without_a_clock_delivers_at_once() -> None:
    got: list[int] = []
    tl = Timeline(None, Clock(), ConnTiming(1, "tcp", "h", 1))
    tl.anchor(5, 10)
    tl.at(20, lambda: got.append(1))
    assert got == [1]


def test_timeline_holds_early_events_in_order() -> None:
    now = FakeClock(1_000_000_000, step=0)
    reactor = Clock()
    vc = VirtualClock(None, now=now)
    rec = ConnTiming(1, "tcp", "h", 1)
    tl = Timeline(vc, reactor, rec)
    v0 = vc.virtual()
    tl.anchor(v0, 5_000)  # the program acted at v0, the endpoint carried it out at 5000
    got: list[str] = []
    tl.at(5_000 + 3_000_000, lambda: got.append("a"))  # due at v0 + 3 ms: held
    tl.at(5_000 + 1_000, lambda: got.append("b"))  # earlier, but after "a" in order
    assert got == []
    now.now += 3_000_000
    reactor.advance(0.003)
    assert got == ["a", "b"]
    now.now += 10_000_000  # late event: delivered at once, 10 ms hidden
    tl.at(5_000 + 4_000_000, lambda: got.append("c"))
    assert got[-1] == "c" and rec.hidden_ns == 9_000_000


def test_timeline_shift_accounts_for_a_lookup() -> None:
    now = FakeClock(1_000_000_000, step=0)
    vc = VirtualClock(None, now=now)
    tl = Timeline(vc, Clock(), ConnTiming(1, "tcp", "h", 1))
    v0 = vc.virtual()
    tl.anchor(v0, 1_000)
    tl.shift(500)
    now.now += 10_000
    tl.at(1_000 + 700, lambda: None)
    assert vc.virtual() == v0 + 500 + 700


def test_timing_log_writes_json_lines(tmp_path: Path) -> None:
    log = TimingLog(str(tmp_path / "t.jsonl"))
    rec = log.new("tcp", "example", 443)
    rec.connect_start, rec.connected = 100, 350
    log.finished(rec)
    log.close()
    (line,) = (tmp_path / "t.jsonl").read_text().splitlines()
    obj = json.loads(line)
    assert obj["id"] == 1 and obj["connect_ns"] == 250 and obj["first_byte_ns"] is None
