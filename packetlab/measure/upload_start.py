"""The reflex that starts an upload when the iperf3 server starts its clock.

An iperf3 server starts its test clock when it sends TEST_START, after it has read the
data stream's cookie and set the stream up (0.4-1.0 ms here); native iperf3 writes its
first block once TEST_START/TEST_RUNNING arrive. The upload's sends are queued ahead
(scheduled nsends, the paper's method), so without this the data followed the cookie at
once and the server counted what came during its set-up, before its clock ran. A
controller that waits for TEST_START reacts a round trip late (1.2-3.4 ms measured);
this reflex, attached to the control socket, reacts at the endpoint: on the first
TEST_START or TEST_RUNNING byte it sends the transfer's head on the data socket, and the
rest, scheduled a little later, follows it (docs/throughput.md).

Parameters (little-endian): data sktid u8 at 0, first send's bytes u32 at 4 (small, so it
leaves at once), then a count u32 at 8 of sends of u32 bytes at 12, from the reflex's
timer set for at once (after the call, so the first send does not wait for their copies).
State byte 0: 1 once the first was sent, 2 once the rest was. The bytes are zeros from
page 0 of the reflex's memory (iperf3 counts them, it does not check them).
"""

from __future__ import annotations

import struct
from functools import cache

__all__ = ["MAX_SEND", "head_params", "head_reflex", "head_wat"]

#: The zero area in page 0 (the reflex's own; the host allocates from page 1 up).
ZEROS, MAX_SEND = 0x1000, 48 * 1024

_PACKET = """
    (if (i32.eqz (i32.or (i32.load8_u offset=1024 (local.get $ctx)) (i32.eqz (local.get $len))))
      (then
        ;; TEST_START (1) or TEST_RUNNING (2): the server's clock runs; not an error (-1, -2)
        (if (i32.le_u (i32.sub (i32.load8_u (local.get $data)) (i32.const 1)) (i32.const 1))
          (then
            (i32.store8 offset=1024 (local.get $ctx) (i32.const 1))
            (call $send (local.get $ctx) (i32.load offset=4 (local.get $ctx)))
            ;; the rest at once, but after this call: its sends are copied by the host
            ;; (larger than the send queue), and this one leaves before they are
            (drop (call $reflex_timer_at (call $reflex_now)))))))
    (i32.const 1)"""  # pass every packet on: the controller reads the states too

_TIMER = """
    (if (i32.eq (i32.load8_u offset=1024 (local.get $ctx)) (i32.const 1))
      (then
        (i32.store8 offset=1024 (local.get $ctx) (i32.const 2))
        (call $rest (local.get $ctx))))
    (i32.const 0)"""

_EXTRA = f"""
  (func $send (param $ctx i32) (param $size i32)
    (drop (call $reflex_send (i32.load8_u (local.get $ctx)) (i32.const {ZEROS})
      (local.get $size) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 0)
      (i32.const 0))))
  (func $rest (param $ctx i32) (local $n i32)
    (local.set $n (i32.load offset=8 (local.get $ctx)))
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $n)))
        (call $send (local.get $ctx) (i32.load offset=12 (local.get $ctx)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $more))))
"""


def head_wat() -> str:
    from packetlab.reflex.template import reflex_wat

    return reflex_wat(_PACKET, timer=_TIMER, extra=_EXTRA)


@cache
def head_reflex() -> bytes:
    """The reflex's wasm (compiled from its text once)."""
    import wasmtime

    return bytes(wasmtime.wat2wasm(head_wat()))


def head_params(data_sktid: int, first: int, count: int, size: int) -> bytes:
    if not (0 < first <= MAX_SEND and 0 < size <= MAX_SEND and 0 <= count <= 63):
        raise ValueError(f"head sends out of range: {first}, {count} x {size}")
    return struct.pack("<B3xIII", data_sktid, first, count, size)
