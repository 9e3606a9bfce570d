"""Running monitors under wasmtime (PROTOCOL.md §8.2): box and call.

* `compile_monitor` (`packetlab.monitor.load`, re-exported here) compiles a module once
  and checks its imports and exports against the ABI (`packetlab.monitor.abi`).
* A `Box` is one wasmtime store (one per session, as the reference's one store shared by
  all monitors): memory capped by the store limiter (`MonitorMemoryMax`), every call cut
  off by epoch interruption after `MonitorDeadlineMillsec`.
* An `Instance` is one instantiated monitor with its host memory, its host functions and
  its 256-byte persistent memory. Calls into it take the raw path
  (``wasmtime_func_call_unchecked`` through one ctypes prototype, ~1.5 µs instead of the
  ~40 µs of `wasmtime.Func.__call__`): that path does no type checks, so every function
  is checked against its ABI signature once, when the module is compiled.

The epoch ticks only while a box is open (`packetlab.monitor.engine.ticker`). A call's
start time is recorded in Python (one attribute store); the store's epoch-deadline
callback, which wasmtime runs at most once per tick while wasm code runs, traps the call
once it is older than the deadline. So the hot path has no extra ctypes call for the
deadline. A box of a session whose monitor time is capped cuts calls off at the burst
when that is shorter (`Box` `burst_ms`, `packetlab.endpoint.montime`): no call holds the
reactor longer than the session may save up, whatever the deadline.
"""

from __future__ import annotations

import ctypes
import re
import struct
import sys
import traceback
import weakref
from collections.abc import Callable, Sequence
from time import monotonic_ns as _now
from typing import Any, Protocol, TypeVar

import wasmtime
from wasmtime import _bindings as ffi

from packetlab.monitor import abi, wasi
from packetlab.monitor.abi import MonitorCrash, MonitorLoadError, Settings
from packetlab.monitor.engine import MAX_TICK_S, MIN_TICK_S, engine, ticker
from packetlab.monitor.load import Compiled, compile_monitor

__all__ = [
    "Box",
    "Compiled",
    "Host",
    "Instance",
    "MonitorCrash",
    "MonitorLoadError",
    "Settings",
    "compile_monitor",
    "engine",
]

SCRATCH_LEN = 64  # laddr[16] raddr[16] lport[2] rport[2] of a check, staged in wasm memory
MAX_TABLE_ELEMENTS = 100_000
MAX_DEBUG_LEN = 4096
MAX_DEBUG_LINES = 64  # monitor_debug lines logged per call; the rest are dropped


# ----------------------------------------------------------------------- raw calls

_c = ctypes
_VP = _c.c_void_p


def _proto(name: str, restype: Any, *argtypes: Any) -> Any:
    """`name` of the wasmtime C library with a prototype of plain pointers (no per-call
    type conversion of wrapper objects)."""
    addr = _c.cast(getattr(ffi.dll, name), _VP).value
    assert addr is not None, name
    return _c.CFUNCTYPE(restype, *argtypes)(addr)


def _fnptr(cb: Any) -> int:
    """The C address of a ctypes callback. (`ctypes.cast(cb, c_void_p)` would put `cb`
    into a reference cycle of its own, keeping it, its Python function and what that
    refers to, an instance and its store, alive until the cyclic GC runs.)"""
    addr = _VP.from_buffer(cb).value
    assert addr is not None
    return addr


_call_unchecked = _proto("wasmtime_func_call_unchecked", _VP, _VP, _VP, _VP, _c.c_size_t, _VP)
_func_new_unchecked = _proto("wasmtime_func_new_unchecked", None, _VP, _VP, _VP, _VP, _VP, _VP)
_caller_context = _proto("wasmtime_caller_context", _VP, _VP)
_memory_data_size = _proto("wasmtime_memory_data_size", _c.c_size_t, _VP, _VP)
_trap_new = _proto("wasmtime_trap_new", _VP, _c.c_char_p, _c.c_size_t)
_error_new = _proto("wasmtime_error_new", _VP, _c.c_char_p)
_HOSTFN = _c.CFUNCTYPE(_c.c_size_t, _VP, _VP, _VP, _c.c_size_t)
_set_epoch_callback = _proto("wasmtime_store_epoch_deadline_callback", None, _VP, _VP, _VP, _VP)
_EPOCH_CB = _c.CFUNCTYPE(_c.c_size_t, _VP, _VP, _c.POINTER(_c.c_uint64), _c.POINTER(_c.c_uint8))
_SLOT = _c.sizeof(ffi.wasmtime_val_raw_t)  # 16
_RV = struct.Struct("<i")
_PORT = struct.Struct(">H")
_CRASH = abi.MONITOR_CRASH

_SLOT_FMT = {abi.I32: f"I{_SLOT - 4}x", abi.I64: f"Q{_SLOT - 8}x"}


def _layout(params: Sequence[str]) -> struct.Struct:
    return struct.Struct("<" + "".join(_SLOT_FMT[p] for p in params))


class _Raw:
    """One export called through the raw path: its slots buffer and argument layout."""

    __slots__ = ("buf", "buf_addr", "fn", "func", "n", "pack", "results")

    def __init__(self, func: wasmtime.Func, sig: abi.Sig) -> None:
        params, results = sig
        self.func = func  # keeps the wasmtime_func_t alive
        self.fn = _c.addressof(func._func)
        self.n = max(len(params), len(results), 1)
        self.buf = (_c.c_uint8 * (self.n * _SLOT))()
        self.buf_addr = _c.addressof(self.buf)
        self.pack = _layout(params).pack_into
        self.results = len(results)


# -------------------------------------------------------------------------- the box


class Host(Protocol):
    """What an instance asks of the endpoint (or of ``pktlab monitor test``)."""

    def read_vmem(self, addr: int, length: int) -> bytes:
        """`length` bytes of the vmem map outside CURPKT (§2.2), read-only."""
        ...

    def flush(self, instance: Instance) -> bool | None:
        """Store `instance.persistent()` (persistent_memory_flush). False when that
        failed: the monitor then gets -1 (the failure is the host's to log)."""

    def debug(self, instance: Instance, text: str) -> None:
        """monitor_debug(), when debugging is enabled."""


_I = TypeVar("_I", bound="Instance")


class Box:
    """One wasmtime store: the memory cap, the deadline, the instances of one session."""

    def __init__(self, settings: Settings, burst_ms: int = 0) -> None:
        self._open = False
        self.settings = settings
        self.store = wasmtime.Store(engine())
        self.store.set_limits(
            memory_size=max(settings.memory_max, abi.MEMORY_MIN_PAGES * 65536),
            table_elements=MAX_TABLE_ELEMENTS,
        )
        self.ctx = _c.cast(self.store._context(), _VP).value
        self.trap = _VP()
        self.trap_addr = _c.addressof(self.trap)
        cut_ms = settings.deadline_ms
        # what a call is cut off at, said in its crash
        self.cutoff = f"deadline of {settings.deadline_ms} ms exceeded".encode()
        if 0 < burst_ms < settings.deadline_ms:
            cut_ms = burst_ms
            self.cutoff = (
                f"ran past {burst_ms} ms, the most monitor time a session saves up "
                "(MonitorTimeBurstMillsec)"
            ).encode()
        self.deadline_ns = cut_ms * 1_000_000
        self.started = 0
        self.instances: list[Instance] = []
        self._epoch_cb = _EPOCH_CB(_deadline_callback(weakref.ref(self)))
        store_ptr = _c.cast(self.store.ptr(), _VP).value
        _set_epoch_callback(store_ptr, _fnptr(self._epoch_cb), None, None)
        self.store.set_epoch_deadline(1)
        self._tick = min(MAX_TICK_S, max(MIN_TICK_S, cut_ms / 5000))
        ticker.acquire(self._tick)
        self._open = True

    def call(self, raw: _Raw, args: Sequence[int]) -> int:
        """Call `raw` with `args`; its i32 result (0 if none). Raises `MonitorCrash`."""
        raw.pack(raw.buf, 0, *args)
        self.started = _now()
        err = _call_unchecked(self.ctx, raw.fn, raw.buf_addr, raw.n, self.trap_addr)
        if err or self.trap.value:
            raise MonitorCrash(self._failure(err))
        return _RV.unpack_from(raw.buf)[0] if raw.results else 0

    def _failure(self, err: int | None) -> str:
        if self.trap.value:
            ptr = _c.cast(_VP(self.trap.value), _c.POINTER(ffi.wasm_trap_t))
            self.trap.value = None
            trap = wasmtime.Trap._from_ptr(ptr)  # takes ownership
            text = trap.message
        else:
            e = wasmtime.WasmtimeError._from_ptr(  # takes ownership
                _c.cast(_VP(err), _c.POINTER(ffi.wasmtime_error_t))
            )
            text = str(e)
        return _summary(text)

    def instantiate(self, compiled: Compiled, host: Host, pm: bytes = b"") -> Instance:
        """A new instance of `compiled` in this box. Raises `MonitorLoadError`."""
        return self.adopt(Instance(self, compiled, host), pm)

    def adopt(self, inst: _I, pm: bytes = b"") -> _I:
        """Set up `inst`, made for this box (a monitor or a reflex), as one of its
        instances, released by `close`. Raises `MonitorLoadError`."""
        assert inst.box is self
        try:
            inst.setup(pm)
        except BaseException:
            inst.release()  # its callbacks must not keep the box (and the store) alive
            # Nor the frames of the error and of the errors it was raised in (a handler's
            # `except ... as e: raise ...` is a cycle, frame -> e -> traceback -> frame,
            # holding the instance and the store until the cyclic GC).
            err = sys.exc_info()[1]
            while err is not None:
                traceback.clear_frames(err.__traceback__)
                err = err.__context__
            raise
        self.instances.append(inst)
        return inst

    def close(self) -> None:
        """No call enters this box's monitors again (`Instance.release`). The store and
        the monitors' memories are freed as soon as the last reference to the box goes,
        not at the next full collection of the cyclic GC: the host functions' callbacks
        referred back to their instances, so every ended session's memories (up to 116
        x MonitorMemoryMax) stayed resident until then."""
        if self._open:
            self._open = False
            ticker.release(self._tick)
            for inst in self.instances:
                inst.release()
            self.instances.clear()

    def __del__(self) -> None:
        # The ticker only. In a garbage cycle finalizers run in any order: the store,
        # and with it the instances' memory, may be gone already (`Instance.release`
        # reads the persistent memory: a segfault, seen in the unit suite).
        if self._open:
            self._open = False
            ticker.release(self._tick)


def _deadline_callback(box_ref: weakref.ref[Box]) -> Callable[..., int]:
    """The store's epoch-deadline callback; through a weak reference, so the box (and its
    store) is not kept alive by a cycle through its own callback."""

    def on_deadline(ctx: Any, data: Any, delta: Any, kind: Any) -> int:
        # Runs inside wasm once the epoch passed the deadline (at most once per tick).
        box = box_ref()
        if box is None or _now() - box.started > box.deadline_ns:
            return int(_error_new(box.cutoff if box is not None else b"deadline exceeded") or 0)
        delta[0] = 1
        kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
        return 0

    return on_deadline


class Instance:
    """One monitor running in a box."""

    #: Host functions by name (a reflex instance adds its own).
    HOST_FUNCS: dict[str, abi.Sig] = abi.HOST_FUNCS

    def __init__(self, box: Box, compiled: Compiled, host: Host) -> None:
        self.box = box
        self.compiled = compiled
        self.host = host
        self.curpkt = b""  # CURPKT_DATA: the message being checked
        self.pm = 0
        self.scratch = 0
        self.crashes = 0
        self.last_crash = ""
        self._debug_call = -1
        self._debug_lines = 0
        self._base = 0
        self._size = 0  # memory size last seen (a lower bound: memories only grow)
        self._mem_ptr = 0
        self._keep: list[Any] = []  # callbacks and funcs that must outlive the store
        self._checks: dict[str, _Raw] = {}
        self._results: dict[str, _Raw] = {}
        self._malloc: _Raw | None = None
        self._free: _Raw | None = None
        self._init: _Raw | None = None
        self._nsend: _Raw | None = None
        self._ndata: _Raw | None = None
        self._scratch = memoryview(b"")
        self._pm = memoryview(b"")
        self._exports: Any = None  # the instance's exports, once set up

    # -- setup ------------------------------------------------------------------------

    def setup(self, pm: bytes) -> None:
        box, store = self.box, self.box.store
        try:
            memory = wasmtime.Memory(store, wasmtime.MemoryType(wasmtime.Limits(2, None)))
        except wasmtime.WasmtimeError as e:
            raise MonitorLoadError(f"cannot make the host memory: {e}") from None
        self._keep.append(memory)
        self._memory = memory  # for what a subclass links to it (the reflex send queue)
        self._mem_ptr = _c.addressof(memory._memory)
        data = ffi.wasmtime_memory_data(store._context(), _c.byref(memory._memory))
        self._base = _c.cast(data, _VP).value or 0
        imports: list[Any] = []
        # A module may import one function many times: one function per name, not one
        # per import.
        funcs: dict[tuple[str, str], wasmtime.Func] = {}
        for imp in self.compiled.module.imports:
            if imp.module == abi.MEMORY_MODULE:
                imports.append(memory)
                continue
            key = (imp.module, imp.name or "")
            func = funcs.get(key)
            if func is None:
                if imp.module == abi.HOST_MODULE:
                    func = self._host_func(key[1])
                else:
                    func = self._wasi_func(key[1])
                funcs[key] = func
            imports.append(func)
        box.started = _now()
        try:
            instance = wasmtime.Instance(store, self.compiled.module, imports)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
            raise MonitorLoadError(f"instantiation failed: {_summary(str(e))}") from None
        exports = self._exports = instance.exports(store)

        def raw(name: str, sig: abi.Sig) -> _Raw:
            f = exports[name]
            assert isinstance(f, wasmtime.Func)
            return _Raw(f, sig)

        self._malloc = raw("malloc", abi.ALLOC["malloc"])
        self._free = raw("free", abi.ALLOC["free"])
        for kind in self.compiled.checks:
            self._checks[kind] = raw(abi.CHECK_PREFIX + kind, abi.check_sig(kind))
        self._nsend = self._checks.get("nsend")
        self._ndata = self._checks.get("ndata")
        for kind, sig in self.compiled.results.items():
            self._results[kind] = raw(abi.RESULT_PREFIX + kind + abi.RESULT_SUFFIX, sig)
        if self.compiled.has_initialize:
            self._init = raw("initialize", abi.INITIALIZE)
        try:
            self.pm = self._alloc(abi.PM_LEN)
            self.scratch = self._alloc(SCRATCH_LEN)
        except MonitorCrash as e:
            raise MonitorLoadError(f"malloc failed: {e}") from None
        # Views over the two host buffers: memories never move and never shrink, so they
        # stay valid, and a slice assignment is far cheaper than a ctypes memmove.
        self._scratch = memoryview(
            (_c.c_uint8 * SCRATCH_LEN).from_address(self._base + self.scratch)
        ).cast("B")
        self._pm = memoryview((_c.c_uint8 * abi.PM_LEN).from_address(self._base + self.pm)).cast(
            "B"
        )
        self.write(self.pm, pm[: abi.PM_LEN].ljust(abi.PM_LEN, b"\0"))

    def release(self) -> None:
        """Its box closed: every later check answers a crash without entering wasm,
        `persistent()` keeps answering, and the cycles through the host functions'
        callbacks are broken (docs/monitors.md "Safety")."""
        self._pm = memoryview(self._pm.tobytes())
        self._scratch = memoryview(bytearray(SCRATCH_LEN))
        self._checks = {}
        self._results = {}
        self._malloc = self._free = self._init = self._nsend = self._ndata = None
        self._keep = []
        self._exports = None

    def _alloc(self, n: int) -> int:
        """malloc(n) in the monitor, checked to lie inside its memory."""
        assert self._malloc is not None
        ptr = self.box.call(self._malloc, (n,)) & 0xFFFFFFFF
        if ptr == 0 or ptr + n > self.memory_size():
            raise MonitorCrash(f"malloc({n}) returned {ptr:#x}, outside the memory")
        return ptr

    def _host_func(self, name: str) -> wasmtime.Func:
        impl: Callable[[Sequence[int]], int | None] = getattr(self, "_h_" + name)
        return self._raw_func(name, self.HOST_FUNCS[name], impl)

    def _raw_func(
        self, name: str, sig: abi.Sig, impl: Callable[[Sequence[int]], int | None]
    ) -> wasmtime.Func:
        """A host function called by wasmtime without wrapper objects: `impl` gets the
        arguments as a tuple; an exception in it traps the call with its message."""
        params, results = sig
        layout = _layout(params)
        ret = _c.c_int64 if results == (abi.I64,) else _c.c_int32
        slots_t = _c.c_uint8 * (max(len(params), len(results), 1) * _SLOT)  # once, not per call

        def callback(env: int, caller: int, args: int, nargs: int) -> int:
            try:
                slots = slots_t.from_address(args)
                rv = impl(layout.unpack_from(slots) if params else ())
                if results:
                    ret.from_address(args).value = int(rv or 0)
                return 0
            except wasi.Exit as e:
                msg = str(e).encode()
                return int(_trap_new(msg, len(msg)) or 0)
            except Exception as e:  # a bug here must not unwind through wasm frames
                msg = f"host function {name} failed: {e!r}".encode()
                return int(_trap_new(msg, len(msg)) or 0)

        cb = _HOSTFN(callback)
        ft = wasmtime.FuncType([_valtype(p) for p in params], [_valtype(r) for r in results])
        func = ffi.wasmtime_func_t()
        _func_new_unchecked(
            self.box.ctx, _c.cast(ft.ptr(), _VP).value, _fnptr(cb), None, None,
            _c.addressof(func),
        )  # fmt: skip
        self._keep += [cb, ft, func]
        return wasmtime.Func._from_raw(func)

    def _wasi_func(self, name: str) -> wasmtime.Func:
        """`name` of an empty WASI context over this instance's memory (`wasi`)."""
        fn = wasi.make(name, wasi.Memory(self.read, self.write, self.memory_size))
        return self._raw_func(name, wasi.FUNCS[name], lambda args: fn(*args))

    # -- host functions (§8.2) ---------------------------------------------------------

    def _h_read_vmem_region(self, args: Sequence[int]) -> int:
        addr, buf, n = args
        if n == 0:
            return 0
        if buf + n > self.memory_size():
            return -1
        if addr < 0x1000000:  # CURPKT_DATA: the message being checked; zeros beyond it
            data = self.curpkt[addr : addr + n]
            if len(data) < n:
                data = data.ljust(n, b"\0")
        else:
            data = self.host.read_vmem(addr, n)
        self.write(buf, data)
        return 0

    def _h_persistent_memory_flush(self, args: Sequence[int]) -> int:
        return -1 if self.host.flush(self) is False else 0

    def _h_endpoint_debug_enabled(self, args: Sequence[int]) -> int:
        return 1 if self.box.settings.debug else 0

    def _h_monitor_debug(self, args: Sequence[int]) -> None:
        if not self.box.settings.debug:
            return
        ptr = args[0]
        size = self.memory_size()
        if ptr >= size:
            return
        # At most MAX_DEBUG_LINES per call (a call is known by its start time): a loop
        # must not write a log line per iteration until the deadline.
        if self._debug_call != self.box.started:
            self._debug_call, self._debug_lines = self.box.started, 0
        self._debug_lines += 1
        if self._debug_lines > MAX_DEBUG_LINES:
            if self._debug_lines == MAX_DEBUG_LINES + 1:
                self.host.debug(
                    self, f"(more than {MAX_DEBUG_LINES} lines: the rest of this call's dropped)"
                )
            return
        raw = _c.string_at(self._base + ptr, min(MAX_DEBUG_LEN, size - ptr))
        self.host.debug(self, raw.split(b"\0", 1)[0].decode("utf-8", "replace"))

    # -- memory -----------------------------------------------------------------------

    def memory_size(self) -> int:
        return int(_memory_data_size(self.box.ctx, self._mem_ptr))

    def _refresh_size(self) -> int:
        self._size = self.memory_size()
        return self._size

    def write(self, ptr: int, data: bytes) -> None:
        """Copy `data` to `ptr` (the caller has checked the range)."""
        _c.memmove(self._base + ptr, data, len(data))

    def read(self, ptr: int, n: int) -> bytes:
        # Memories never shrink: a range inside the size last seen needs no C call.
        if ptr + n > self._size and ptr + n > self._refresh_size():
            raise MonitorCrash(f"{n} bytes at {ptr:#x} are outside the monitor's memory")
        return _c.string_at(self._base + ptr, n)

    def stage(self, data: bytes) -> int:
        """Put a check's address/port bytes in the scratch buffer; its wasm address."""
        self._scratch[: len(data)] = data
        return self.scratch

    def persistent(self) -> bytes:
        """The 256 bytes of persistent memory, as the monitor left them."""
        return self._pm.tobytes()

    # -- calls ------------------------------------------------------------------------

    # The two hot checks, inlined: calls.nsend_args/ndata_args + check + Box.call in one
    # function each (the same arguments; tests hold the two paths equal).

    def check_nsend(self, m: Any) -> int:
        """rv of check_pktlab_message_nsend for the Nsend `m` (as `check`)."""
        raw = self._nsend
        data = m.data
        if raw is None:
            self.curpkt = data
            return self._crashed(f"{abi.CHECK_PREFIX}nsend is not exported")
        raddr = m.raddr
        if raddr is None or m.rport is None:
            raw.pack(raw.buf, 0, m.sktid, m.family, m.proto, m.time, m.tag, 0, 0, 0, 0,
                     len(data), self.pm, abi.PM_LEN)  # fmt: skip
        else:
            n = len(raddr)
            s = self.scratch
            sc = self._scratch
            sc[:n] = raddr
            sc[n : n + 2] = _PORT.pack(m.rport)
            raw.pack(raw.buf, 0, m.sktid, m.family, m.proto, m.time, m.tag, n, s, 2, s + n,
                     len(data), self.pm, abi.PM_LEN)  # fmt: skip
        self.curpkt = data
        box = self.box
        box.started = _now()
        err = _call_unchecked(box.ctx, raw.fn, raw.buf_addr, raw.n, box.trap_addr)
        if err or box.trap.value:
            return self._crashed(box._failure(err))
        rv: int = _RV.unpack_from(raw.buf)[0]
        if rv >= _CRASH:
            self._returned(rv)
        return rv

    def check_ndata(
        self,
        sktid: int,
        family: int,
        proto: int,
        time: int,
        raddr: bytes | None,
        rport: int | None,
        data: bytes,
    ) -> int:
        """rv of check_pktlab_message_ndata for received `data` (as `check`)."""
        raw = self._ndata
        if raw is None:
            self.curpkt = data
            return self._crashed(f"{abi.CHECK_PREFIX}ndata is not exported")
        if raddr is None or rport is None:
            raw.pack(raw.buf, 0, sktid, family, proto, time, 0, 0, 0, 0, len(data), self.pm,
                     abi.PM_LEN)  # fmt: skip
        else:
            n = len(raddr)
            s = self.scratch
            sc = self._scratch
            sc[:n] = raddr
            sc[n : n + 2] = _PORT.pack(rport)
            raw.pack(raw.buf, 0, sktid, family, proto, time, n, s, 2, s + n, len(data),
                     self.pm, abi.PM_LEN)  # fmt: skip
        self.curpkt = data
        box = self.box
        box.started = _now()
        err = _call_unchecked(box.ctx, raw.fn, raw.buf_addr, raw.n, box.trap_addr)
        if err or box.trap.value:
            return self._crashed(box._failure(err))
        rv: int = _RV.unpack_from(raw.buf)[0]
        if rv >= _CRASH:
            self._returned(rv)
        return rv

    def check(self, kind: str, args: Sequence[int], curpkt: bytes = b"") -> int:
        """rv of check_pktlab_message_<kind>; MONITOR_CRASH for a trap, a timeout or a
        missing export (§8.5)."""
        raw = self._checks.get(kind)
        self.curpkt = curpkt
        if raw is None:
            return self._crashed(f"{abi.CHECK_PREFIX}{kind} is not exported")
        try:
            rv = self.box.call(raw, args)
        except MonitorCrash as e:
            return self._crashed(str(e))
        if rv >= _CRASH:
            self._returned(rv)
        return rv

    def result(self, kind: str, args: Sequence[int], errid: int, curpkt: bytes = b"") -> None:
        """The optional pktlab_message_<kind>_result callback; a crash there is counted."""
        raw = self._results.get(kind)
        if raw is None:
            return
        self.curpkt = curpkt
        try:
            self.box.call(raw, (*args, errid))
        except MonitorCrash as e:
            self._crashed(str(e))

    def initialize(self) -> bytes:
        """Call initialize(info, pm, 256) if exported; the info bytes for linfo (§8.4).
        Raises `MonitorCrash`."""
        if self._init is None:
            return b""
        assert self._free is not None
        info = self._alloc(abi.INFO_MAX)
        n = self.box.call(self._init, (info, self.pm, abi.PM_LEN)) & 0xFFFFFFFF
        # More than the buffer holds: the reference sends the first INFO_MAX bytes
        # (pktmon README: "the sender will truncate ... to PKTLAB_LINFO_INFO_MAX").
        data = self.read(info, min(n, abi.INFO_MAX))
        try:
            self.box.call(self._free, (info,))
        except MonitorCrash as e:
            self._crashed(str(e))
        return data

    def _returned(self, rv: int) -> None:
        """A check returned >= 65535: a crash too (§8.3, §8.5), counted and explained."""
        self._crashed(f"returned {rv} (65535 or more is a crash)")

    def _crashed(self, why: str) -> int:
        self.crashes += 1
        self.last_crash = why
        return abi.MONITOR_CRASH


def _valtype(name: str) -> wasmtime.ValType:
    return wasmtime.ValType.i64() if name == abi.I64 else wasmtime.ValType.i32()


def _summary(text: str) -> str:
    """The cause of a wasmtime error in one line. Its text is a header ("error while
    executing at wasm backtrace:"), the backtrace frames, then "Caused by:" and the
    causes, numbered when there are several ("0: memory fault at wasm address ...",
    "1: wasm trap: out of bounds memory access"): the causes, joined."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "trap"
    if "Caused by:" in lines:
        causes = [_CAUSE_NO.sub("", ln) for ln in lines[lines.index("Caused by:") + 1 :]]
    else:
        causes = [ln for ln in lines if not (ln.startswith("error while") or _FRAME.match(ln))]
    return ("; ".join(ln for ln in causes if ln) or lines[0])[:200]


_CAUSE_NO = re.compile(r"^\d+:\s+")
_FRAME = re.compile(r"^\d+:\s+0x[0-9a-f]+ - ")
