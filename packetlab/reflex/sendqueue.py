"""`reflex_send` without a Python call: a wasm shim that queues sends in the reflex's memory.

A host function written in Python costs a ctypes callback per call (the trampoline into
Python, argument unpacking, a frame): 5-8 µs hot, 10-15 µs cold, on every reflex reaction
(docs/reflexes.md, "Session 6"). The reflex's `env.reflex_send` import is instead a small
wasm function (this shim, instantiated in the reflex's own store, on its own memory) that
applies the host function's argument rules, copies the address and the data into a queue
area the host allocated in that memory (so the reflex may reuse its buffer after the call,
as with the Python function), and returns. After the reflex's call returns, `SendQueue.take`
reads the queued sends back and checks every record again (the queue lies in memory the
reflex can write: a record it forged is an ABI break, a crash). A send that does not fit
in the queue's data area goes to the Python host function (``env.reflex_send_slow``), and
so does every later send of the same call, which keeps the order.

Queue layout (little-endian, at the address the host allocated):

* header (16 bytes): count u32, refused u32, data bytes used u32, slow u32 (1: the rest
  of this call's sends take the Python path);
* `MAX_EMITS` records of 48 bytes: sktid, raddr*, raddrlen, data*, len, rport, tag (u32
  each), 4 bytes padding, time i64 (clamped at 0);
* `DATA_LEN` bytes of data area (each send's address, then its data).
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

import wasmtime

from packetlab.monitor.abi import MonitorCrash
from packetlab.reflex import abi

__all__ = ["DATA_LEN", "QUEUE_LEN", "SendQueue", "shim_module"]

HEAD = 16
REC = 48
RECS = HEAD + abi.MAX_EMITS * REC
DATA_LEN = 16384  # the data area: larger sends take the Python path
QUEUE_LEN = RECS + DATA_LEN
_REC = struct.Struct("<IIIIIII4xq")
_ZERO_HEAD = bytes(HEAD)
_ALENS = (0, 4, 16)

_WAT = f"""
(module
  (import "monitor" "memory" (memory 0))
  (import "env" "reflex_send_slow"
    (func $slow (param i32 i32 i32 i32 i32 i32 i64 i32) (result i32)))
  (global $q (export "queue") (mut i32) (i32.const 0))
  (func (export "reflex_send")
    (param $sktid i32) (param $ptr i32) (param $n i32) (param $raddr i32) (param $alen i32)
    (param $rport i32) (param $time i64) (param $tag i32) (result i32)
    (local $q i32) (local $count i32) (local $used i32) (local $dst i32) (local $rec i32)
    (local.set $q (global.get $q))
    (if (i32.eqz (local.get $q)) (then
      (return (call $slow (local.get $sktid) (local.get $ptr) (local.get $n)
        (local.get $raddr) (local.get $alen) (local.get $rport) (local.get $time)
        (local.get $tag)))))
    (if (i32.load offset=12 (local.get $q)) (then
      (return (call $slow (local.get $sktid) (local.get $ptr) (local.get $n)
        (local.get $raddr) (local.get $alen) (local.get $rport) (local.get $time)
        (local.get $tag)))))
    (local.set $count (i32.load (local.get $q)))
    ;; the host function's rules: bounded per call, valid ids, lengths, port and tag
    (if (i32.or
          (i32.or (i32.ge_u (local.get $count) (i32.const {abi.MAX_EMITS}))
                  (i32.ge_u (local.get $sktid) (i32.const 256)))
          (i32.or
            (i32.or (i32.gt_u (local.get $n) (i32.const 0xFFFF))
                    (i32.and (i32.ne (local.get $alen) (i32.const 0))
                      (i32.and (i32.ne (local.get $alen) (i32.const 4))
                               (i32.ne (local.get $alen) (i32.const 16)))))
            (i32.or (i32.gt_u (local.get $tag) (i32.const 0xFFFF))
                    (i32.gt_u (local.get $rport) (i32.const 0xFFFF)))))
      (then
        (i32.store offset=4 (local.get $q)
          (i32.add (i32.load offset=4 (local.get $q)) (i32.const 1)))
        (return (i32.const -1))))
    (local.set $used (i32.load offset=8 (local.get $q)))
    (if (i32.gt_u (i32.add (i32.add (local.get $used) (local.get $alen)) (local.get $n))
                  (i32.const {DATA_LEN}))
      (then
        (i32.store offset=12 (local.get $q) (i32.const 1))
        (return (call $slow (local.get $sktid) (local.get $ptr) (local.get $n)
          (local.get $raddr) (local.get $alen) (local.get $rport) (local.get $time)
          (local.get $tag)))))
    (local.set $dst (i32.add (i32.add (local.get $q) (i32.const {RECS})) (local.get $used)))
    ;; a source outside the memory traps: a crash, as the host function's read
    (if (local.get $alen) (then
      (memory.copy (local.get $dst) (local.get $raddr) (local.get $alen))))
    (memory.copy (i32.add (local.get $dst) (local.get $alen)) (local.get $ptr) (local.get $n))
    (local.set $rec (i32.add (i32.add (local.get $q) (i32.const {HEAD}))
                             (i32.mul (local.get $count) (i32.const {REC}))))
    (i32.store (local.get $rec) (local.get $sktid))
    (i32.store offset=4 (local.get $rec) (local.get $dst))
    (i32.store offset=8 (local.get $rec) (local.get $alen))
    (i32.store offset=12 (local.get $rec) (i32.add (local.get $dst) (local.get $alen)))
    (i32.store offset=16 (local.get $rec) (local.get $n))
    (i32.store offset=20 (local.get $rec) (local.get $rport))
    (i32.store offset=24 (local.get $rec) (local.get $tag))
    (i64.store offset=32 (local.get $rec)
      (select (local.get $time) (i64.const 0) (i64.gt_s (local.get $time) (i64.const 0))))
    (i32.store offset=8 (local.get $q)
      (i32.add (i32.add (local.get $used) (local.get $alen)) (local.get $n)))
    (i32.store (local.get $q) (i32.add (local.get $count) (i32.const 1)))
    (i32.const 0)))
"""

_modules: dict[int, wasmtime.Module] = {}


def shim_module(engine: wasmtime.Engine) -> wasmtime.Module:
    """The shim, compiled once per engine."""
    m = _modules.get(id(engine))
    if m is None:
        m = _modules[id(engine)] = wasmtime.Module(engine, bytes(wasmtime.wat2wasm(_WAT)))
    return m


class SendQueue:
    """The host side of one reflex instance's queue (see the module docstring)."""

    __slots__ = ("addr", "end", "head", "view")

    def __init__(self, base: int, addr: int) -> None:
        """`base`: the memory's host address; `addr`: the queue's (QUEUE_LEN bytes)."""
        self.addr = addr
        self.end = addr + QUEUE_LEN
        raw = (ctypes.c_uint8 * QUEUE_LEN).from_address(base + addr)
        self.view = memoryview(raw).cast("B")
        self.head = self.view[:HEAD].cast("I")  # count, refused, used, slow

    def reset(self) -> None:
        """Before a call: empty."""
        self.view[:HEAD] = _ZERO_HEAD

    def queued(self) -> int:
        return int(self.head[0])

    def refused(self) -> int:
        return int(self.head[1])

    def take(self, make: Any) -> list[Any]:
        """The call's queued sends, in order, each as ``make(sktid, data, raddr, rport,
        time, tag)``. Raises `MonitorCrash` for a record the reflex overwrote (a copy is
        taken only from the queue's data area, whatever the record says)."""
        view = self.view
        n = self.head[0]
        if n > abi.MAX_EMITS:
            raise MonitorCrash("the reflex overwrote its send queue (count)")
        addr = self.addr
        out = []
        for off in range(HEAD, HEAD + REC * n, REC):
            sktid, a, alen, d, dlen, rport, tag, time = _REC.unpack_from(view, off)
            a -= addr
            d -= addr
            if (
                sktid > 255 or (dlen | rport | tag) > 0xFFFF or time < 0
                or alen not in _ALENS or a < RECS or d < RECS or d + dlen > QUEUE_LEN
            ):  # fmt: skip
                raise MonitorCrash("the reflex overwrote its send queue (a record)")
            data = bytes(view[d : d + dlen])
            if alen:
                out.append(make(sktid, data, bytes(view[a : a + alen]), rport, time, tag))
            else:
                out.append(make(sktid, data, None, None, time, tag))
        return out
