"""The upload's start reflex (packetlab/measure/upload_start.py) in the reflex runtime: it
fires once, on the server's TEST_START or TEST_RUNNING byte and on nothing else, sends a
small first block in the call and the rest from its timer, all zeros on the data socket,
and passes every packet on to the controller."""

from __future__ import annotations

from typing import Any

import pytest
from testkit.reflexhost import NullHost

from packetlab.measure.upload_start import MAX_SEND, head_params, head_reflex
from packetlab.monitor.runtime import Box, Settings
from packetlab.reflex import abi
from packetlab.reflex.runtime import ReflexInstance, compile_reflex

CTL, DATA = 2, 3


def armed(first: int = 16384, count: int = 7, size: int = MAX_SEND) -> tuple[Any, NullHost]:
    host = NullHost(now=7)
    inst = ReflexInstance(Box(Settings()), compile_reflex(head_reflex()), host)
    inst.setup(b"")
    inst.set_params(0, head_params(DATA, first, count, size))
    return inst, host


def packet(inst: Any, data: bytes) -> int:
    return int(inst.packet(CTL, 4, 6, 1, None, None, data))


def sends(inst: Any) -> list[tuple[int, int, int, int]]:
    return [(e.sktid, len(e.data), e.time, e.tag) for e in inst.emits]


@pytest.mark.parametrize("state", [b"\x01", b"\x02", b"\x01\x02"])
def test_fires_once_on_test_start_or_running(state: bytes) -> None:
    inst, host = armed()
    assert packet(inst, state) == abi.PASS  # the controller reads the states too
    assert sends(inst) == [(DATA, 16384, 0, 0)]  # now, untagged
    assert host.timers == [7]  # the rest at once, after this call
    assert inst.call("reflex_timer", (7, inst.ctx)) == 0
    assert sends(inst) == [(DATA, MAX_SEND, 0, 0)] * 7
    assert all(not any(e.data) for e in inst.emits)  # zeros: iperf3 counts, never checks
    assert inst.call("reflex_timer", (8, inst.ctx)) == 0 and inst.emits == []
    assert packet(inst, b"\x02") == abi.PASS and inst.emits == []  # once
    assert host.timers == [7]


@pytest.mark.parametrize("data", [b"", b"\x0a", b"\x0d", b"\xff", b"\xfe", b"\x04"])
def test_nothing_else_starts_it(data: bytes) -> None:
    # CREATE_STREAMS, EXCHANGE_RESULTS, the server's errors (-1, -2), TEST_END, empty
    inst, host = armed()
    assert packet(inst, data) == abi.PASS
    assert inst.emits == [] and host.timers == []
    assert inst.call("reflex_timer", (7, inst.ctx)) == 0 and inst.emits == []
    packet(inst, b"\x01")  # still armed
    assert sends(inst) == [(DATA, 16384, 0, 0)]


def test_the_first_send_takes_the_queue_not_a_host_call() -> None:
    inst, _ = armed()
    calls: list[Any] = []
    slow = inst._h_reflex_send

    def counted(args: Any) -> int:
        calls.append(args)
        return int(slow(args))

    inst._h_reflex_send = counted
    packet(inst, b"\x01")
    assert len(inst.emits) == 1 and calls == []


def test_params_are_checked() -> None:
    assert len(head_params(DATA, 1, 0, 1)) == 16
    for bad in ((0, 7, MAX_SEND), (16384, 64, MAX_SEND), (16384, 7, MAX_SEND + 1)):
        with pytest.raises(ValueError):
            head_params(DATA, *bad)
