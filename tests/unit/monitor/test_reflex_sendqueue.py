"""`reflex_send` through the wasm shim and its queue (packetlab/reflex/sendqueue.py): the
same rules, order and copies as the Python host function, which still takes what the
queue cannot hold; a record the reflex forges in its own memory is a crash."""

from __future__ import annotations

from typing import Any

import pytest
import wasmtime
from testkit.reflexhost import NullHost

from packetlab.monitor.abi import MonitorCrash
from packetlab.monitor.runtime import Box, Settings
from packetlab.reflex import abi
from packetlab.reflex.runtime import Emit, ReflexInstance, compile_reflex
from packetlab.reflex.sendqueue import DATA_LEN, HEAD, QUEUE_LEN, shim_module
from packetlab.reflex.template import reflex_wat

RADDR = b"\xc0\x00\x02\x07"


def instance(packet: str, *, extra: str = "") -> ReflexInstance:
    wasm = bytes(wasmtime.wat2wasm(reflex_wat(packet, extra=extra)))
    inst = ReflexInstance(Box(Settings()), compile_reflex(wasm), NullHost())
    inst.setup(b"")
    return inst


def run(inst: ReflexInstance, data: bytes = b"hello") -> int:
    return inst.packet(1, 4, 17, 123, RADDR, 4242, data)


def send(n: str = "(local.get $len)", alen: str = "(local.get $raddrlen)", *,
         sktid: str = "(local.get $sktid)", ptr: str = "(local.get $data)",
         rport: str = "(local.get $rport)", time: str = "(i64.const 0)",
         tag: str = "(i32.const 1)") -> str:  # fmt: skip
    return f"(call $reflex_send {sktid} {ptr} {n} (local.get $raddr) {alen} {rport} {time} {tag})"


def test_a_send_is_queued_without_the_python_host_function() -> None:
    inst = instance(f"(drop {send()}) (i32.const 0)")
    assert inst._sendq is not None
    calls: list[Any] = []
    orig = inst._h_reflex_send

    def counted(args: Any) -> int:
        calls.append(args)
        return orig(args)

    inst._h_reflex_send = counted  # type: ignore[method-assign]
    assert run(inst) == 0
    assert inst.emits == [Emit(1, b"hello", RADDR, 4242, 0, 1)]
    assert calls == []  # the shim queued it: no Python call during the wasm call
    run(inst, b"again")  # the queue starts empty on every call
    assert inst.emits == [Emit(1, b"again", RADDR, 4242, 0, 1)]


def test_the_data_is_copied_at_the_call() -> None:
    # Send, then overwrite the buffer, then send again: two different datagrams.
    inst = instance(
        f"(drop {send()}) (i32.store8 (local.get $data) (i32.const 0x4a)) (drop {send()})"
        " (i32.const 0)"
    )
    run(inst)
    assert [e.data for e in inst.emits] == [b"hello", b"Jello"]


def test_the_host_functions_rules_refuse_the_same_sends() -> None:
    bad = [
        send(sktid="(i32.const 256)"),
        send(sktid="(i32.const -1)"),
        send(n="(i32.const 0x10000)"),
        send(alen="(i32.const 5)"),
        send(rport="(i32.const 0x10000)"),
        send(tag="(i32.const -1)"),
    ]
    total = "(i32.const 0)"
    for b in bad:
        total = f"(i32.add {total} {b})"
    inst = instance(f"(drop {send(time='(i64.const -5)')}) {total}")
    assert run(inst) == -6  # each refused here, with -1
    assert inst.refused == 6
    assert inst.emits == [Emit(1, b"hello", RADDR, 4242, 0, 1)]  # time clamped at 0
    no_addr = instance(f"(drop {send(alen='(i32.const 0)')}) (i32.const 0)")
    run(no_addr)
    assert no_addr.emits == [Emit(1, b"hello", None, None, 0, 1)]


def test_at_most_max_emits_per_call_fast_and_slow_together() -> None:
    # A 10 kB send fills most of the queue's data area: the next go the Python way.
    big = DATA_LEN - 4000
    loop = f"""(local.set $len (i32.const 0))
        (drop {send(n=f"(i32.const {big})")})
        (block $done (loop $l
          (br_if $done (i32.ge_u (local.get $len) (i32.const 100)))
          (drop {send(n="(i32.const 100)", tag="(local.get $len)")})
          (local.set $len (i32.add (local.get $len) (i32.const 1)))
          (br $l)))
        (i32.const 0)"""
    inst = instance(loop)
    run(inst, bytes(range(256)) * 64)
    assert len(inst.emits) == abi.MAX_EMITS
    assert [e.tag for e in inst.emits] == [1, *range(abi.MAX_EMITS - 1)]  # in order
    assert len(inst.emits[0].data) == big
    assert inst.refused == 100 + 1 - abi.MAX_EMITS
    # Some went through the queue, the rest through the Python function.
    assert inst._sendq is not None and inst._sendq.head[3] == 1


def test_a_pointer_outside_the_memory_is_a_crash() -> None:
    inst = instance(f"(drop {send(ptr='(i32.const -16)', n='(i32.const 64)')}) (i32.const 0)")
    with pytest.raises(MonitorCrash):
        run(inst)


def test_a_forged_queue_record_is_a_crash() -> None:
    # The reflex sends, then scribbles over its queue (it lies in the reflex's own memory;
    # the test module is told where, as a reflex could find it).
    q = '(global $q (export "q") (mut i32) (i32.const 0))'
    forgeries = [
        f"(i32.store (i32.add (global.get $q) (i32.const {HEAD + 16})) (i32.const 0x7fffffff))",
        "(i32.store (global.get $q) (i32.const 1000))",  # the count
        f"(i32.store (i32.add (global.get $q) (i32.const {HEAD})) (i32.const 999))",  # sktid
    ]
    for forge in forgeries:
        inst = instance(f"(drop {send()}) {forge} (i32.const 0)", extra=q)
        assert inst._sendq is not None
        g = inst._exports["q"]
        assert isinstance(g, wasmtime.Global)
        g.set_value(inst.box.store, wasmtime.Val.i32(inst._sendq.addr))
        with pytest.raises(MonitorCrash, match="send queue"):
            run(inst)


def test_the_shim_is_one_module_per_engine_and_the_queue_fits() -> None:
    inst = instance(f"(drop {send()}) (i32.const 0)")
    store = inst.box.store
    assert shim_module(store.engine) is shim_module(store.engine)
    assert inst._sendq is not None
    assert inst._sendq.addr + QUEUE_LEN <= inst.memory_size()
