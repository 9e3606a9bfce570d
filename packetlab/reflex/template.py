"""Reflex modules in WebAssembly text from a few function bodies (tests, examples).

The monitors' prelude (``monitor.memory``, their host functions, a bump ``malloc``) plus
the reflex host functions (``$reflex_send``, ``$reflex_report``, ``$reflex_now``,
``$reflex_timer_at``) and the exports with the ABI's parameter names:
``reflex_packet($sktid $family $proto $time $raddr $raddrlen $rport $data $len $ctx)``,
``reflex_init($ctx $sktid)``, ``reflex_configure($ctx)``, ``reflex_timer($now $ctx)``.
Each body leaves one i32 on the stack.
"""

from __future__ import annotations

from packetlab.monitor.template import _PRELUDE, HEAP_BASE

__all__ = ["reflex_wat"]

_IMPORTS = """\
  (import "env" "reflex_send" (func $reflex_send
    (param i32 i32 i32 i32 i32 i32 i64 i32) (result i32)))
  (import "env" "reflex_report" (func $reflex_report (param i32 i32) (result i32)))
  (import "env" "reflex_now" (func $reflex_now (result i64)))
  (import "env" "reflex_timer_at" (func $reflex_timer_at (param i64) (result i32)))
"""

_PACKET = (
    "(param $sktid i32) (param $family i32) (param $proto i32) (param $time i64) "
    "(param $raddr i32) (param $raddrlen i32) (param $rport i32) (param $data i32) "
    "(param $len i32) (param $ctx i32)"
)


def reflex_wat(
    packet: str,
    *,
    init: str | None = None,
    configure: str | None = None,
    timer: str | None = None,
    extra: str = "",
) -> str:
    """A whole reflex module; `extra` is more module fields (globals, data, funcs)."""
    prelude = _PRELUDE.format(heap=HEAP_BASE)
    at = prelude.index("  (global $heap")
    out = [prelude[:at], _IMPORTS, prelude[at:], extra]
    out.append(f'  (func (export "reflex_packet") {_PACKET} (result i32)\n    {packet})\n')
    if init is not None:
        out.append(
            '  (func (export "reflex_init") (param $ctx i32) (param $sktid i32) (result i32)'
            f"\n    {init})\n"
        )
    if configure is not None:
        out.append(
            f'  (func (export "reflex_configure") (param $ctx i32) (result i32)\n    {configure})\n'
        )
    if timer is not None:
        out.append(
            '  (func (export "reflex_timer") (param $now i64) (param $ctx i32) (result i32)'
            f"\n    {timer})\n"
        )
    out.append(")\n")
    return "".join(out)
