"""The process-wide wasmtime engine and its epoch ticker (PROTOCOL.md §8.2).

Monitors and reflexes compile against one engine (a module belongs to the engine that
compiled it). Call deadlines use epoch interruption: while at least one box is open,
`ticker` advances the engine's epoch every tick from a POSIX timer that calls wasmtime
directly (no Python, no GIL); `packetlab.monitor.runtime.Box` acquires and releases it.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import wasmtime
from wasmtime import _bindings as ffi

__all__ = ["MAX_TICK_S", "MIN_TICK_S", "engine", "ticker"]

# Epoch tick: a fifth of the deadline (20 ms for the default 100 ms, so a spinning call is
# cut off 100-120 ms after it began; the reference was seen at 110-120 ms), 1 ms at least.
# Each tick takes the GIL briefly, so fewer ticks cost the reactor less.
MAX_TICK_S = 0.020
MIN_TICK_S = 0.001

_c = ctypes
_VP = _c.c_void_p

_engine: wasmtime.Engine | None = None
_engine_lock = threading.Lock()


def engine() -> wasmtime.Engine:
    """The process-wide engine (compiled modules belong to it). Made under a lock: a
    certificate monitor compiles in a worker thread (`MonitorHost.compile_later`), and a
    second engine would own modules no store of the first can instantiate."""
    global _engine
    if _engine is not None:
        return _engine
    with _engine_lock:
        return _engine or _make_engine()


def _make_engine() -> wasmtime.Engine:
    global _engine
    cfg = wasmtime.Config()
    cfg.epoch_interruption = True
    # Memories never move, so an instance keeps its memory's base address (the host
    # writes arguments there on every call). Each 32-bit memory reserves 4 GiB of
    # address space anyway, so growth up to the cap needs no move.
    cfg.memory_may_move = False
    cfg.cranelift_opt_level = "speed"
    # No compile thread pool: twistd may fork (daemonize) after the aux monitors were
    # compiled, and a child would then queue compile jobs to threads it does not have.
    cfg.parallel_compilation = False
    # The proposals the reference's Wasmtime 23 leaves off by default, and a monitor
    # built as §8.1 says never uses: a module that needs one does not decode there
    # either. (The GC proposal would also give each monitor a second heap.)
    cfg.wasm_gc = False
    cfg.wasm_function_references = False
    cfg.wasm_exceptions = False
    _engine = wasmtime.Engine(cfg)
    return _engine


class _Sigevent(ctypes.Structure):
    # struct sigevent (glibc, 64 bytes) for SIGEV_THREAD: value, signo, notify, function,
    # attributes, padding.
    _fields_ = [
        ("value", ctypes.c_void_p),
        ("signo", ctypes.c_int),
        ("notify", ctypes.c_int),
        ("function", ctypes.c_void_p),
        ("attribute", ctypes.c_void_p),
        ("pad", ctypes.c_byte * 32),
    ]


class _Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("interval", _Timespec), ("value", _Timespec)]


_SIGEV_THREAD = 2
_CLOCK_MONOTONIC = 1


class _Ticker:
    """Advances the engine epoch every `tick_s` while at least one box is open.

    A POSIX timer with SIGEV_THREAD calls ``wasmtime_engine_increment_epoch(engine)``
    itself, from a libc thread: no Python code and no GIL, so the ticks never stall the
    reactor (a Python ticker thread must take the GIL for every tick, and on a loaded
    machine the reactor then waits for it to be scheduled). Where that timer cannot be
    made (not glibc), a Python thread ticks instead."""

    def __init__(self) -> None:
        self.tick_s = MAX_TICK_S
        self._users = 0
        self._ticks: list[float] = []  # the tick each open box asked for
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._timer: ctypes.c_void_p | None = None
        self._libc: Any = None

    def acquire(self, tick_s: float) -> None:
        with self._lock:
            self._ticks.append(tick_s)
            self._users += 1
            if self._users == 1:
                self.tick_s = tick_s
                if not self._start_timer():
                    self._stop = threading.Event()
                    t = threading.Thread(
                        target=self._run, args=(self._stop,), name="monitor-epoch", daemon=True
                    )
                    t.start()
            else:
                self._retick()

    def release(self, tick_s: float | None = None) -> None:
        """One box closed; `tick_s`: the tick it asked for (None: a user of old)."""
        with self._lock:
            if tick_s is not None and tick_s in self._ticks:
                self._ticks.remove(tick_s)
            elif self._ticks:
                self._ticks.remove(max(self._ticks))
            self._users -= 1
            if self._users == 0:
                self._ticks.clear()
                if self._timer is not None:
                    self._libc.timer_delete(self._timer)
                    self._timer = None
                if self._stop is not None:
                    self._stop.set()
                    self._stop = None
            else:
                self._retick()

    def _retick(self) -> None:
        """The finest tick of the boxes open, the POSIX timer re-armed when it changed
        (review34: its period was the first box's for as long as any box was open, so a
        capped session's short burst opened beside a reflex's box was cut off up to a
        whole 20 ms tick late; and a fine tick stayed after its box closed)."""
        tick_s = min(self._ticks) if self._ticks else self.tick_s
        if tick_s != self.tick_s:
            self.tick_s = tick_s
            if self._timer is not None:
                self._set_period(self._timer)

    def _start_timer(self) -> bool:
        try:
            libc = self._libc = self._libc or ctypes.CDLL(None, use_errno=True)
            func = _c.cast(ffi.dll.wasmtime_engine_increment_epoch, _VP).value
            ev = _Sigevent()
            ev.value = _c.cast(engine().ptr(), _VP).value
            ev.notify = _SIGEV_THREAD
            ev.function = func
            timer = _VP()
            libc.timer_create.argtypes = [_c.c_int, _c.c_void_p, _c.c_void_p]
            libc.timer_settime.argtypes = [_VP, _c.c_int, _c.c_void_p, _c.c_void_p]
            libc.timer_delete.argtypes = [_VP]
            if libc.timer_create(_CLOCK_MONOTONIC, _c.byref(ev), _c.byref(timer)) != 0:
                return False
            if not self._set_period(timer):
                libc.timer_delete(timer)
                return False
        except (OSError, AttributeError):
            return False
        self._timer = timer
        return True

    def _set_period(self, timer: Any) -> bool:
        """(Re)arm `timer` to fire every `tick_s`, the first tick one period from now."""
        ns = int(self.tick_s * 1e9)
        period = _Timespec(ns // 1_000_000_000, ns % 1_000_000_000)
        spec = _Itimerspec(period, period)
        return bool(self._libc.timer_settime(timer, 0, _c.byref(spec), None) == 0)

    def _run(self, stop: threading.Event) -> None:
        eng = engine()
        while not stop.wait(self.tick_s):
            eng.increment_epoch()


ticker = _Ticker()
