"""Compiling a monitor and checking it against the ABI (PROTOCOL.md §8.2, §8.5).

`compile_monitor` compiles a module once with the shared engine and checks its imports
and exports against `packetlab.monitor.abi`; a shape the reference refuses is a
`MonitorLoadError` naming the rule. Calls later take wasmtime's unchecked raw path, so
every export's type is checked here, once. Reflexes reuse `load_module`,
`check_imports`, `check_shape` and `check_alloc` with their own host-function table.
"""

from __future__ import annotations

from dataclasses import dataclass

import wasmtime

from packetlab.monitor import abi, wasi
from packetlab.monitor.abi import MonitorLoadError
from packetlab.monitor.engine import engine

__all__ = [
    "Compiled",
    "check_alloc",
    "check_imports",
    "check_shape",
    "compile_monitor",
    "defined_memories",
    "load_module",
    "sig_of",
]


def sig_of(ft: wasmtime.FuncType) -> abi.Sig:
    return tuple(str(t) for t in ft.params), tuple(str(t) for t in ft.results)


@dataclass(frozen=True)
class Compiled:
    """A module that passed the ABI checks; reusable across boxes."""

    module: wasmtime.Module
    digest: bytes
    checks: frozenset[str]  # kinds with a correctly typed check export
    results: dict[str, abi.Sig]  # kinds with a `*_result` callback, and its type
    has_initialize: bool
    notes: tuple[str, ...] = ()  # what is missing or ignored (for the operator's log)


def compile_monitor(wasm: bytes) -> Compiled:
    """Compile `wasm` and check it against the ABI. Raises `MonitorLoadError`."""
    module = load_module(wasm)
    check_imports(module, abi.HOST_FUNCS)
    check_shape(wasm)
    exports = {
        e.name: sig_of(e.type) for e in module.exports if isinstance(e.type, wasmtime.FuncType)
    }
    check_alloc(exports)
    notes: list[str] = []
    checks = set()
    for kind in abi.CHECKS:
        name = abi.CHECK_PREFIX + kind
        got = exports.get(name)
        if got == abi.check_sig(kind):
            checks.add(kind)
        else:
            notes.append(f"{name} {'missing' if got is None else 'wrongly typed'} (crash if used)")
    results: dict[str, abi.Sig] = {}
    for kind in abi.REQUESTS:
        name = abi.RESULT_PREFIX + kind + abi.RESULT_SUFFIX
        got = exports.get(name)
        if got is not None:
            if got in abi.result_sigs(kind):
                results[kind] = got
            else:
                notes.append(f"{name} wrongly typed: ignored")
    init = exports.get("initialize")
    if init is not None and init != abi.INITIALIZE:
        raise MonitorLoadError(f"initialize has the wrong type (want {abi.INITIALIZE})")
    return Compiled(
        module, abi.digest(wasm), frozenset(checks), results, init is not None, tuple(notes)
    )


_MAGIC = b"\0asm"


def check_shape(wasm: bytes, kind: str = "monitor") -> None:
    """At most one table and no memory of its own (monitors and reflexes share this;
    `wasm` has passed `load_module`). Raises `MonitorLoadError`."""
    tables = _section_count(wasm, _TABLE_SECTION)
    if tables > 1:
        # Each table may grow to MAX_TABLE_ELEMENTS (runtime.py): with up to 100 tables,
        # one program could hold 100 times that. C code has one (the indirect function
        # table).
        raise MonitorLoadError(
            f"the module defines {tables} tables; a {kind} may have one (its function table)"
        )
    own = defined_memories(wasm)
    if own:
        # Each memory is capped at MonitorMemoryMax; with up to 100 of its own (the
        # multi-memory proposal) one program could hold 100 times the cap.
        raise MonitorLoadError(
            f"the module defines {own} {'memory' if own == 1 else 'memories'} of its own; "
            f"a {kind} has one memory, the imported monitor.memory"
        )


def load_module(wasm: bytes) -> wasmtime.Module:
    """Compile `wasm` with the engine. Raises `MonitorLoadError` (decode=True).

    Only the binary format: `wasmtime.Module` would parse anything else as WebAssembly
    text, which the reference's `wasmtime_module_new` refuses, and whose bytes the
    section checks here (tables, own memories) cannot read."""
    if not wasm:  # a truncated file or an empty cdata: no text to assemble either
        raise MonitorLoadError("not a valid WebAssembly module: it is empty (0 bytes)", decode=True)
    if wasm[:4] != _MAGIC:
        raise MonitorLoadError(
            "not a valid WebAssembly module: it does not begin with the binary magic "
            "\\0asm (text must be assembled first: pktlab monitor build FILE.wat)",
            decode=True,
        )
    try:
        return wasmtime.Module(engine(), wasm)
    except wasmtime.WasmtimeError as e:
        raise MonitorLoadError(
            f"not a valid WebAssembly module: {_cause(str(e))}", decode=True
        ) from None


def _cause(text: str) -> str:
    """wasmtime's error in one line: its first line and the last "Caused by" line (the
    first alone, "failed to parse WebAssembly module", does not say why)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "invalid module"
    first, last = lines[0], lines[-1]
    return (first if last == first or last == "Caused by:" else f"{first}: {last}")[:300]


def _leb(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 at `pos`: (value, position after it)."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


_TABLE_SECTION = 4
_MEMORY_SECTION = 5


def defined_memories(wasm: bytes) -> int:
    """How many memories the module defines itself (not imported)."""
    return _section_count(wasm, _MEMORY_SECTION)


def _section_count(wasm: bytes, section_id: int) -> int:
    """The entry count of a vector section (0 when absent). `wasm` has passed wasmtime's
    validation, so the layout is sound."""
    pos = 8  # magic and version
    while pos < len(wasm):
        section = wasm[pos]
        size, pos = _leb(wasm, pos + 1)
        if section == section_id:
            return _leb(wasm, pos)[0]
        pos += size
    return 0


class NoMemoryImport(MonitorLoadError):
    """No `monitor.memory` import, with the fix in the module's source language: the one
    fix said was the C linker's `--import-memory=monitor,memory`, also to a WAT author
    (session 31)."""

    FIX = {
        ".c": "link with --import-memory=monitor,memory",
        ".wat": 'add (import "monitor" "memory" (memory 2)) to the module',
    }

    def __init__(self, source_suffix: str = "") -> None:
        fix = self.FIX.get(source_suffix.lower()) or "; ".join(
            f"{lang.upper()[1:]}: {how}" for lang, how in self.FIX.items()
        )
        super().__init__(f"the module must import its memory as monitor.memory ({fix})")


def check_imports(module: wasmtime.Module, host_funcs: dict[str, abi.Sig]) -> None:
    """The memory import and only known, correctly typed host functions (monitors and
    reflexes share this; `host_funcs` is the table of the kind of program)."""
    has_memory = False
    for imp in module.imports:
        where = f"{imp.module}.{imp.name}"
        ty = imp.type
        if imp.module == abi.MEMORY_MODULE and imp.name == abi.MEMORY_NAME:
            if not isinstance(ty, wasmtime.MemoryType):
                raise MonitorLoadError(f"import {where} must be a memory")
            _check_memory(ty)
            has_memory = True
        elif isinstance(ty, wasmtime.MemoryType):  # env.memory: lld's name without =monitor
            raise MonitorLoadError(
                f"imports its memory as {where}; the host's is monitor.memory "
                f'(import "monitor" "memory" (memory 2))'
            )
        elif imp.module == abi.HOST_MODULE:
            want = host_funcs.get(imp.name or "")
            if want is None:
                raise MonitorLoadError(f"imports unknown host function {where}")
            if not isinstance(ty, wasmtime.FuncType) or sig_of(ty) != want:
                raise MonitorLoadError(f"import {where} has the wrong type (want {want})")
        elif imp.module == abi.WASI_MODULE:
            want = wasi.FUNCS.get(imp.name or "")
            if want is None:
                raise MonitorLoadError(f"imports {where}, which WASI preview 1 does not define")
            if not isinstance(ty, wasmtime.FuncType) or sig_of(ty) != want:
                raise MonitorLoadError(f"import {where} has the wrong type (want {want})")
        else:
            raise MonitorLoadError(f"imports {where}, which the host does not provide")
    if not has_memory:
        raise NoMemoryImport()


def check_alloc(exports: dict[str, abi.Sig]) -> None:
    """`malloc` and `free` exported with the ABI's types."""
    for name, want in abi.ALLOC.items():
        if exports.get(name) != want:
            what = "does not export" if name not in exports else "exports a wrongly typed"
            raise MonitorLoadError(f"the module {what} {name} {want}")


def _check_memory(ty: wasmtime.MemoryType) -> None:
    # The host memory is 2 pages with no maximum; wasmtime refuses other shapes too, but
    # the operator deserves to know which rule a module broke (§8.5).
    lim = ty.limits
    if ty.is_64 or getattr(ty, "is_shared", False):
        raise MonitorLoadError("monitor.memory must be a 32-bit unshared memory")
    if lim.min > abi.MEMORY_MIN_PAGES:
        raise MonitorLoadError(
            f"monitor.memory asks for {lim.min} pages; the host memory has "
            f"{abi.MEMORY_MIN_PAGES} (grow it at run time instead)"
        )
    if lim.max is not None:
        raise MonitorLoadError("monitor.memory declares a maximum; the host memory has none")
