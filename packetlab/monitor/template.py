"""Monitor modules in WebAssembly text from a few function bodies (for tests, examples and
``pktlab monitor new``).

`monitor_wat` writes the parts every monitor needs around the bodies you give: the
``monitor.memory`` import, the four ``env`` host functions, a bump ``malloc`` (that grows
the memory when it must) and a no-op ``free``, and each check with the ABI's parameter
names (``$sktid``, ``$time``, ``$pm`` ...; `packetlab.monitor.abi.CHECK_PARAMS`).
A body is WAT that leaves one i32 on the stack (the rv); result callbacks get ``$errid``.
"""

from __future__ import annotations

from collections.abc import Mapping

from packetlab.monitor import abi

__all__ = ["HEAP_BASE", "monitor_wat"]

HEAP_BASE = 65536  # malloc hands out memory from the second page up; page 0 is yours

_PRELUDE = """\
(module
  (import "monitor" "memory" (memory 2))
  (import "env" "read_vmem_region" (func $read_vmem_region (param i32 i32 i32) (result i32)))
  (import "env" "persistent_memory_flush" (func $persistent_memory_flush (result i32)))
  (import "env" "endpoint_debug_enabled" (func $endpoint_debug_enabled (result i32)))
  (import "env" "monitor_debug" (func $monitor_debug (param i32)))
  (global $heap (mut i32) (i32.const {heap}))
  (func $malloc (export "malloc") (param $n i32) (result i32) (local $p i32) (local $end i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7))
                             (i32.const -8)))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq (memory.grow (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535))
                                                     (i32.const 16))
                                          (memory.size)))
                    (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))
  (func (export "free") (param i32))
"""


def _params(kind: str, extra: tuple[str, ...] = ()) -> str:
    names = (*abi.CHECK_PARAMS[kind], *extra)
    types = (*abi.CHECKS[kind], *(abi.I32 for _ in extra))
    return " ".join(f"(param ${n} {t})" for n, t in zip(names, types, strict=True))


def monitor_wat(
    checks: Mapping[str, str],
    *,
    results: Mapping[str, str] | None = None,
    initialize: str | None = None,
    extra: str = "",
) -> str:
    """A whole monitor module. `checks` maps a kind (nopen, nclose, nsend, ndata, ncap) to
    its body; `results` maps a request kind to the body of its ``*_result`` callback (no
    value left on the stack); `initialize` is the body of ``initialize($info, $pm,
    $pmlen)`` (leaves the info length); `extra` is more module fields (globals, data)."""
    out = [_PRELUDE.format(heap=HEAP_BASE), extra]
    for kind, body in checks.items():
        name = abi.CHECK_PREFIX + kind
        out.append(f'  (func (export "{name}") {_params(kind)} (result i32)\n    {body})\n')
    for kind, body in (results or {}).items():
        name = abi.RESULT_PREFIX + kind + abi.RESULT_SUFFIX
        out.append(f'  (func (export "{name}") {_params(kind, ("errid",))}\n    {body})\n')
    if initialize is not None:
        out.append(
            '  (func (export "initialize") (param $info i32) (param $pm i32) (param $pmlen i32)'
            f" (result i32)\n    {initialize})\n"
        )
    out.append(")\n")
    return "".join(out)
