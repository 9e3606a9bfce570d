"""A capped session's burst cut-off is on time when another box holds the ticker
(review34). Real wasm spinning, the real POSIX timer: a box cutting calls off at 5 ms
(tick 1 ms) opened while another box (deadline 5 s, tick 20 ms) is open. Before, the
timer kept its 20 ms period: the spinning call ran 19.9 ms (median of 15) where alone it
ran 5.7 ms; now 5.8 ms (load 0.7). Compared as medians of the same run, not bounds."""

from __future__ import annotations

import statistics
import time

import pytest
import wasmtime

from packetlab.monitor import abi
from packetlab.monitor.runtime import Box, Compiled, Settings, compile_monitor
from packetlab.monitor.template import monitor_wat

pytestmark = pytest.mark.serial

ROUNDS = 11
BURST_MS = 5


class Host:
    def read_vmem(self, addr: int, length: int) -> bytes:
        return bytes(length)

    def flush(self, instance: object) -> None:
        pass

    def debug(self, instance: object, text: str) -> None:
        pass


def cut_off_ms(compiled: Compiled, other_first: bool) -> float:
    other = Box(Settings(deadline_ms=5000)) if other_first else None
    box = Box(Settings(deadline_ms=5000), burst_ms=BURST_MS)
    try:
        inst = box.instantiate(compiled, Host(), b"")
        t0 = time.monotonic()
        assert inst.check("nclose", (1, inst.pm, 256)) == abi.MONITOR_CRASH
        took = (time.monotonic() - t0) * 1000
        assert "ran past 5 ms" in inst.last_crash
        return took
    finally:
        box.close()
        if other is not None:
            other.close()


def test_the_burst_cut_off_is_on_time_beside_a_coarser_box() -> None:
    wat = monitor_wat({"nclose": "(loop (br 0)) (i32.const 0)"})
    compiled = compile_monitor(bytes(wasmtime.wat2wasm(wat)))
    alone, beside = [], []
    for _ in range(ROUNDS):  # alternating: the same load for both
        alone.append(cut_off_ms(compiled, False))
        beside.append(cut_off_ms(compiled, True))
    a, b = statistics.median(alone), statistics.median(beside)
    print(f"cut off at {BURST_MS} ms: alone {a:.1f} ms, beside a 20 ms-tick box {b:.1f} ms")
    # before: 3.5x (19.9 / 5.7 ms); a late tick adds up to 20 ms to every round
    assert b <= 2 * a + 2, (alone, beside)
