"""Monitors on an endpoint session (PROTOCOL.md §8.1, §8.3-§8.5).

`MonitorHost` is process-wide: the monitor settings, the aux monitors of ``--monitor``
(compiled and checked at startup), a cache of compiled certificate monitors, and the
persistent-memory store. `MonitorHost.gate` wraps a session's `RequestGate` (certificate
limits, or none) in a `MonitorGate`:

* SETUP: ``cdata(hint="monitor", 0x01||wasm)`` is matched by SHA-256 against the digests of
  the controller's chain and compiled (ECRTBADHDAT otherwise), in the endpoint's
  `CompileWorker` thread when the host has one (then `program` returns a Deferred of the
  answer);
  ``start`` is refused with ECRTNOHDAT while a required digest is missing (the inner
  gate's check), then every monitor (cdata order, then the aux ones) is instantiated in
  one box and initialized; a load failure or a crash there answers
  ``result(ECTLMONUKN, monindx)`` and ends the session; else one
  ``linfo(name="monitor", aux=monindx in host byte order)`` per monitor follows the
  start result.
* Requests: monitors run first, in list order; the first non-zero rv wins (ECTLMONREJ with
  monindx and monerrid, the reason hidden for rv < 0; a crash is ECTLMONUKN with
  MonitorReportCrash 1, else ECTLMONREJ with monerrid 0). Then the inner gate's checks,
  the real handling, and every monitor's optional ``*_result`` callback (with the errid
  the controller gets: a socket error comes before a limit's ESKTPKTDENY).
* ndata: checked before delivery: nblock(rv) for 1 <= rv < 65535, nblock(low 16 bits)
  for rv < 0 (§8.5), a crash drops it (nblock(0) with MonitorReportCrash 1).
* Monitor time (`MonitorTime`, MonitorTimeMillsec): while the session's monitors have
  used up their share of the reactor, received chunks are dropped and counted (DROPSTAT,
  ndrop) without a check (a TCP socket stops reading instead: `ndata_wait`, §3.5's
  flow control), and checked requests are answered as a crash of the monitor
  that used it up (ECTLMONUKN, or ECTLMONREJ with monerrid 0), without entering it.
  No call runs past the burst (the box's cut-off) whatever its deadline, and the calls
  of one entry are charged with one clock read.
* Persistent memory: loaded when the monitor is instantiated, stored on
  ``persistent_memory_flush()`` and at session end.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from packetlab.endpoint.checks import (
    NDATA_DELIVER,
    NDATA_DROP,
    NDATA_DROP_COUNTED,
    NOPEN_LIMITS,
    RequestGate,
    socket_error,
)
from packetlab.endpoint.config import ConfigError, EndpointConfig
from packetlab.endpoint.memory import VirtualMemory
from packetlab.endpoint.montime import MonitorTime
from packetlab.endpoint.sockets import Skt
from packetlab.logbudget import LogBudget
from packetlab.monitor import abi
from packetlab.monitor.abi import MonitorCrash, MonitorLoadError, Settings
from packetlab.monitor.calls import nopen_args, nsend_args
from packetlab.monitor.persist import (
    PersistentMemory,
    PersistentMemoryError,
    aux_key,
    cert_key,
)
from packetlab.monitor.worker import CompileWorker, fired
from packetlab.ppks import Certificate, default_home
from packetlab.wire import codec
from packetlab.wire.constants import CDATA_HINT_MONITOR, PKTLAB_WASM, Status
from packetlab.wire.messages import Linfo, Message, Ncap, Nclose, Nopen, Nsend, Result

if TYPE_CHECKING:  # wasmtime loads only when a monitor is compiled (~12 MiB of RSS)
    from packetlab.monitor.runtime import Box, Compiled, Instance

__all__ = [
    "MAX_AUX",
    "MAX_MODULE",
    "MAX_SESSION_MODULES",
    "AuxMonitor",
    "MonitorGate",
    "MonitorHost",
    "settings_of",
]

log = Logger(namespace="pktendpoint.monitor")
MAX_AUX = 16
#: A certificate monitor's module, and all of a session's together, at most (bytes).
#: Compiling takes seconds per MiB of code (tens of seconds and ~1 GiB of RSS for a 1 MiB
#: single function on the loaded shared machine, docs/performance.md; in a worker thread
#: when the host has a `worker`, the session's requests waiting meanwhile) and compiled
#: code is several times the module; real monitors are a few KiB. Aux monitors (the
#: operator's own, compiled at startup) have no cap.
MAX_MODULE = 1 << 20
MAX_SESSION_MODULES = 8 << 20
CACHE = 32  # compiled certificate monitors kept between sessions
CACHE_BYTES = 16 << 20  # ... and their modules' bytes at most
#: How long a store waits for another process's lock on the persistent memory (s). A
#: flush runs inside a monitor call on the reactor thread, out of the deadline's reach.
STORE_TIMEOUT = 1.0
CRASH = abi.MONITOR_CRASH
PM_LEN = abi.PM_LEN
#: monitor_debug lines a session's monitors may log per DEBUG_WINDOW seconds
#: (MonitorEnableDebug 1); the rest are counted. Up to 64 lines of 4 KiB per call: a
#: monitor logging on every datagram wrote 250 MB of log for 1,000 datagrams.
DEBUG_LINES = 1200
DEBUG_WINDOW = 60.0
_monotonic = time.monotonic
_MONUKN = int(Status.ECTLMONUKN)
_MONREJ = int(Status.ECTLMONREJ)
_PKTDENY = int(Status.ESKTPKTDENY)
_LINFO_NAME = b"monitor"


def settings_of(cfg: EndpointConfig) -> Settings:
    return Settings(
        deadline_ms=cfg.monitor_deadline_ms,
        memory_max=cfg.monitor_memory_max,
        debug=cfg.monitor_debug,
        report_crash=cfg.monitor_report_crash,
        time_ms=cfg.monitor_time_ms,
        time_burst_ms=cfg.monitor_time_burst_ms,
    )


@dataclass(frozen=True)
class AuxMonitor:
    """An aux monitor: its module compiled, or why it cannot load (then every session's
    start answers ECTLMONUKN with its index, §1.3, §8.5)."""

    path: str
    compiled: Compiled | MonitorLoadError
    digest: bytes = b""  # SHA-256(0x01 || wasm); taken from `compiled` when it compiled

    def __post_init__(self) -> None:
        if not self.digest and not isinstance(self.compiled, MonitorLoadError):
            object.__setattr__(self, "digest", self.compiled.digest)


class MonitorHost:
    """The endpoint's monitors: settings, aux monitors, compiled-module cache, storage.

    With a `worker` (the endpoint's `CompileWorker`, shared with the reflexes),
    certificate monitors compile in its thread, one module at a time for the whole
    endpoint (`compile_later`); without one (tests, tools) on the caller's."""

    def __init__(
        self,
        settings: Settings,
        aux: Sequence[AuxMonitor] = (),
        persistent_path: str | None = None,
        worker: CompileWorker | None = None,
        clock: Callable[[], float] = _monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock  # what monitor calls cost is measured on it (MonitorTime)
        self.aux = list(aux)
        self.persistent_path = persistent_path or str(default_home() / "endpt.persistent.sqlite3")
        self.worker = worker
        self._store: PersistentMemory | None = None
        self._cache: OrderedDict[bytes, tuple[Compiled, int]] = OrderedDict()
        self._cache_bytes = 0

    @classmethod
    def from_config(cls, cfg: EndpointConfig, aux_paths: Sequence[str] = ()) -> MonitorHost:
        """Compile and check the aux monitors now. A file that cannot be read stops the
        daemon (`ConfigError`); a module that cannot load is logged now, and every
        session's start answers ``result(ECTLMONUKN, monindx)`` as the reference does
        (§1.3, §8.5). Without aux monitors wasmtime is not imported (~12 MiB of RSS an
        endpoint without monitors saves)."""
        if len(aux_paths) > MAX_AUX:
            raise ConfigError(f"at most {MAX_AUX} aux monitors, got {len(aux_paths)}")
        aux: list[AuxMonitor] = []
        for p in aux_paths:
            from packetlab.monitor.runtime import compile_monitor

            try:
                wasm = Path(p).read_bytes()
            except OSError as e:
                raise ConfigError(f"--monitor {p}: {e.strerror or e}") from None
            try:
                compiled = compile_monitor(wasm)
            except MonitorLoadError as e:
                log.error(
                    "aux monitor {path} cannot load, so every session's start will answer "
                    "ECTLMONUKN({i}): {e}",
                    path=p,
                    i=len(aux),
                    e=str(e),
                )
                aux.append(AuxMonitor(p, e, abi.digest(wasm)))
                continue
            for note in compiled.notes:
                log.warn("aux monitor {path}: {note}", path=p, note=note)
            aux.append(AuxMonitor(p, compiled))
        return cls(settings_of(cfg), aux, cfg.monitor_persistent_path)

    @property
    def store(self) -> PersistentMemory:
        """Opened on first use: an endpoint that never runs a monitor never creates it.
        Raises `PersistentMemoryError`."""
        if self._store is None:
            try:
                Path(self.persistent_path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise PersistentMemoryError(f"cannot create {self.persistent_path}: {e}") from None
            self._store = PersistentMemory(self.persistent_path, timeout=STORE_TIMEOUT)
            log.info("monitor persistent memory in {path}", path=self.persistent_path)
        return self._store

    def cached(self, digest: bytes) -> bool:
        return digest in self._cache

    def compile(self, wasm: bytes) -> Compiled:
        """Compile on this thread (or take it from the cache). Raises `MonitorLoadError`."""
        from packetlab.monitor.runtime import compile_monitor

        d = abi.digest(wasm)
        hit = self._cache.get(d)
        if hit is not None:
            self._cache.move_to_end(d)
            return hit[0]
        got = compile_monitor(wasm)
        self._keep(d, got, len(wasm))
        return got

    def _keep(self, d: bytes, got: Compiled, size: int) -> None:
        self._cache[d] = (got, size)
        self._cache_bytes += size
        while len(self._cache) > 1 and (
            len(self._cache) > CACHE or self._cache_bytes > CACHE_BYTES
        ):
            self._cache_bytes -= self._cache.popitem(last=False)[1][1]

    def compile_later(self, wasm: bytes) -> Deferred[Compiled]:
        """Compile in the worker's thread: a Deferred of the `Compiled` (errback
        `MonitorLoadError`), with the worker's guarantees (one module at a time, once for
        all the sessions waiting for it, cancelling forgets a waiter, a module that
        compiles anyway goes into the cache)."""
        assert self.worker is not None
        d = abi.digest(wasm)
        if d in self._cache:
            return fired(lambda: self.compile(wasm))
        from packetlab.monitor.runtime import compile_monitor

        return self.worker.submit(
            "monitor",
            d,
            len(wasm),
            lambda: compile_monitor(wasm),
            lambda got: self._keep(d, got, len(wasm)),
        )

    def gate(self, inner: RequestGate) -> RequestGate:
        """`inner` with monitors in front, or `inner` itself when no monitor can run
        (no aux monitor and no digest required by the chain): nothing on the hot path."""
        required: tuple[bytes, ...] = getattr(inner, "required_digests", ())
        if not self.aux and not required:
            return inner
        return MonitorGate(self, inner, required, getattr(inner, "certs", ()))


class MonitorGate:
    """The `RequestGate` of a session with monitors (see the module docstring)."""

    def __init__(
        self,
        host: MonitorHost,
        inner: RequestGate,
        required: Sequence[bytes],
        certs: Sequence[Certificate] = (),
    ) -> None:
        self.host = host
        self.inner = inner
        self.settings = host.settings
        self.required = frozenset(required)
        self.keys = _persistent_keys(certs)
        self.checks_ndata = inner.checks_ndata
        self.monitors: list[Instance] = []
        self.box: Box | None = None
        self._supplied: list[tuple[bytes, Compiled | MonitorLoadError]] = []
        self._supplied_bytes = 0
        self._memory: VirtualMemory | None = None
        self._sockets: Sequence[Skt | None] = ()
        self._nopen_error: Callable[[Nopen], Status | None] | None = None
        self._pm_keys: dict[Instance, bytes] = {}
        self._stored: dict[Instance, bytes] = {}  # the bytes last loaded or stored
        self._with_results: dict[str, list[tuple[int, Instance]]] = {}
        self._pending: Deferred[Compiled] | None = None  # a cdata's module compiling
        self._closed = False
        self._debug_log = LogBudget(lambda: _monotonic(), DEBUG_LINES, DEBUG_WINDOW)
        self._time: MonitorTime | None = None  # from start, unless MonitorTimeMillsec 0
        self._spender = 0  # monindx of the call that last used up the monitor time

    def attach(
        self,
        memory: VirtualMemory,
        sockets: Sequence[Skt | None] = (),
        nopen_error: Callable[[Nopen], Status | None] | None = None,
    ) -> None:
        """The session's vmem, read by read_vmem_region outside CURPKT, its sockets and
        its nopen socket checks (what a request a limit refuses is answered depends on
        them)."""
        self._memory = memory
        self._sockets = sockets
        self._nopen_error = nopen_error

    # -- SETUP -------------------------------------------------------------------------

    def program(self, hint: bytes, data: bytes) -> Status | Deferred[Status]:
        if hint != CDATA_HINT_MONITOR:
            return Status.ECRTBADHDAT  # no chain lists filter digests (§1.4 step 3)
        if not data or data[0] != PKTLAB_WASM:
            log.info("cdata monitor refused: not an encoded WASM program")
            return Status.ECRTBADHDAT
        d = abi.digest(data[1:])
        if d not in self.required:
            log.info("cdata monitor {d} refused: the chain does not list it", d=d.hex())
            return Status.ECRTBADHDAT
        if any(s == d for s, _ in self._supplied):
            return Status.SUCCESS  # the same program again: already loaded once
        size = len(data) - 1
        if size > MAX_MODULE:
            log.warn(
                "cdata monitor {d} refused: the module is {n} bytes (at most {max})",
                d=d.hex(),
                n=size,
                max=MAX_MODULE,
            )
            return Status.ECRTBADHDAT
        if self._supplied_bytes + size > MAX_SESSION_MODULES:
            log.warn(
                "cdata monitor {d} refused: the session's monitors would be {n} bytes in "
                "total (at most {max})",
                d=d.hex(),
                n=self._supplied_bytes + size,
                max=MAX_SESSION_MODULES,
            )
            return Status.ECRTBADHDAT
        self._supplied_bytes += size
        wasm = data[1:]
        if self.host.worker is None or self.host.cached(d):
            try:
                return self._loaded(d, self.host.compile(wasm))
            except MonitorLoadError as e:
                return self._loaded(d, e)
        # In a worker thread: the session answers when this fires, and handles no
        # request meanwhile (docs/monitors.md "Loading").
        pending = self._pending = self.host.compile_later(wasm)
        return pending.addCallbacks(
            lambda ok: self._loaded(d, ok),
            lambda f: self._loaded(d, f.trap(MonitorLoadError) and f.value),
        )

    def _loaded(self, d: bytes, got: Compiled | MonitorLoadError) -> Status:
        """The answer to a cdata whose module `got` compiled (or did not)."""
        self._pending = None
        compiled: Compiled | MonitorLoadError
        if isinstance(got, MonitorLoadError):
            if got.decode:  # not WebAssembly at all: the program cannot be decoded
                log.warn("cdata monitor {d} refused: {e}", d=d.hex(), e=str(got))
                return Status.ECRTBADHDAT
            # A load failure (memory shape, imports, exports) shows at start as in the
            # reference (§8.5): result(ECTLMONUKN, monindx).
            compiled = got
        else:
            for note in got.notes:
                log.warn("cdata monitor {d}: {note}", d=d.hex(), note=note)
            compiled = got
        self._supplied.append((d, compiled))
        supplied = getattr(self.inner, "supplied_digests", None)
        if supplied is not None:
            supplied.add(d)
        return Status.SUCCESS

    def start(self) -> tuple[Result | None, list[bytes]]:
        error, extra = self.inner.start()
        if error is not None:
            return error, extra
        entries = [(d, c, self.keys.get(d, aux_key(d))) for d, c in self._supplied]
        entries += [(a.digest, a.compiled, aux_key(a.digest)) for a in self.host.aux]
        if not entries:
            self._bypass()
            return None, extra
        from packetlab.monitor.runtime import Box

        # Capped monitor time: no call runs past the burst (the box's cut-off), whatever
        # the deadline: the longest the reactor is held (session 34).
        cap = self.settings.time_ms > 0
        box = self.box = Box(self.settings, round(self.settings.time_burst * 1000) if cap else 0)
        for idx, (d, compiled, key) in enumerate(entries):
            if isinstance(compiled, MonitorLoadError):  # not raised: aux ones are shared
                log.warn("monitor {i} ({d}) cannot load: {e}", i=idx, d=d.hex()[:16], e=compiled)
                return Result(_MONUKN, idx), []
            try:
                pm = self.host.store.load(key)
                inst = box.instantiate(compiled, self, pm)
            except MonitorLoadError as e:
                log.warn("monitor {i} ({d}) failed to load: {e}", i=idx, d=d.hex()[:16], e=str(e))
                return Result(_MONUKN, idx), []
            except PersistentMemoryError as e:
                # Run without its memory (zeros) and a counting monitor starts again from
                # nothing: refuse instead, as for a monitor that cannot load.
                log.error(
                    "monitor {i} ({d}) not started: its persistent memory is unavailable: {e}",
                    i=idx,
                    d=d.hex()[:16],
                    e=str(e),
                )
                return Result(_MONUKN, idx), []
            self._pm_keys[inst] = key
            self._stored[inst] = pm
            self.monitors.append(inst)
        frames = []
        for idx, inst in enumerate(self.monitors):
            try:
                info = inst.initialize()
            except MonitorCrash as e:
                log.warn("monitor {i}: initialize crashed: {e}", i=idx, e=str(e))
                return Result(_MONUKN, idx), []
            if inst.crashes:  # its free() of the info buffer
                _log_crash(idx, inst, "free")
            index = idx.to_bytes(2, sys.byteorder)  # host order, as the reference [QUIRK]
            frames.append(codec.encode(Linfo(name=_LINFO_NAME, aux=index, info=info)))
        for kind in abi.REQUESTS:
            self._with_results[kind] = [
                (i, m) for i, m in enumerate(self.monitors) if kind in m.compiled.results
            ]
        if not any(self._with_results.values()):
            self.done = self.inner.done  # type: ignore[method-assign]  # nothing to call
        self.checks_ndata = True
        ms = self.settings.time_ms
        if ms > 0:  # initialize is not counted (once per session), cut off as any call
            burst = self.settings.time_burst
            self._time = MonitorTime(self.host.clock, ms / 1000, burst, self._time_note)
        return None, extra + frames

    def _time_note(self, text: str) -> None:
        i = self._spender
        d = self.monitors[i].compiled.digest.hex()[:16] if i < len(self.monitors) else "?"
        log.warn("monitor {i} ({digest}): {text}", i=i, digest=d, text=text)

    def ndata_wait(self, stopped: bool = False) -> float:
        """Seconds until received data can be checked again (0: now, or no cap);
        `stopped`: a TCP socket stopped reading for it (the episode's log counts it)."""
        return 0.0 if self._time is None else self._time.wait(stopped)

    def _bypass(self) -> None:
        """No monitor runs in this session: the inner gate's methods straight through."""
        inner = self.inner
        self.check = inner.check  # type: ignore[method-assign]
        self.done = inner.done  # type: ignore[method-assign]
        self.check_ndata = inner.check_ndata  # type: ignore[method-assign]
        self.checks_ndata = inner.checks_ndata

    # -- requests ----------------------------------------------------------------------

    def check(self, msg: Message) -> Result | None:
        plan = _PLAN.get(type(msg))
        if plan is not None:
            kind, run = plan[0], plan[3]
            budget = self._time
            if budget is None:
                for idx, inst in enumerate(self.monitors):
                    rv = run(inst, msg)
                    if rv:
                        return self._rejected(idx, inst, kind, rv)
            else:
                t = budget.start()
                if t is None:  # not entered: as a crash of the monitor that spent it
                    budget.refuse()
                    return self._crash_answer(self._spender)
                for idx, inst in enumerate(self.monitors):
                    rv = run(inst, msg)
                    if rv:
                        self._charge(budget, idx, t)
                        return self._rejected(idx, inst, kind, rv)
                self._charge(budget, len(self.monitors) - 1, t)
        verdict = self.inner.check(msg)
        if verdict is not None and plan is not None:
            errid = verdict.errid
            if errid == _PKTDENY and isinstance(msg, Nsend | Ncap) and self._sockets:
                # The session answers a socket error before a limit's ESKTPKTDENY: the
                # callbacks see what the controller gets.
                err = socket_error(msg, self._sockets[msg.sktid])
                errid = errid if err is None else int(err)
            elif errid in NOPEN_LIMITS and type(msg) is Nopen and self._nopen_error:
                err = self._nopen_error(msg)
                errid = errid if err is None else int(err)
            self._results(msg, errid)
        return verdict

    def _rejected(self, idx: int, inst: Instance, kind: str, rv: int) -> Result:
        if rv >= CRASH:
            _log_crash(idx, inst, abi.CHECK_PREFIX + kind)
            return self._crash_answer(idx)
        return Result(_MONREJ, idx, rv if rv > 0 else 0)

    def _crash_answer(self, idx: int) -> Result:
        if self.settings.report_crash:
            return Result(_MONUKN, idx)
        return Result(_MONREJ, idx, 0)

    def _charge(self, budget: MonitorTime, idx: int, start: float) -> None:
        """Take the cost of the calls begun at `start`, one clock read for them all
        (session 34: one per call cost 0.3 µs each, 2.4 µs a request with 8 monitors).
        If they spent the time, monitor `idx` did: the one that crashed (a spinning
        call is cut off, and a crash ends the calls of a check), else the last one
        entered."""
        before = budget.tokens
        budget.spent(start)
        if before > 0.0 >= budget.tokens:
            self._spender = idx

    def done(self, msg: Message, errid: int) -> None:
        self.inner.done(msg, errid)
        self._results(msg, errid)

    def _results(self, msg: Message, errid: int) -> None:
        plan = _PLAN.get(type(msg))
        if plan is None:
            return
        kind, args_of, curpkt_of, _ = plan
        watchers = self._with_results.get(kind)
        if watchers:
            curpkt = curpkt_of(msg)
            budget = self._time
            # Called for a request already handled: not refused, but what they cost counts.
            t = 0.0
            if budget is not None:
                t = budget.clock()
            spender = watchers[-1][0]
            for idx, inst in watchers:
                crashes = inst.crashes
                inst.result(kind, args_of(inst, msg), errid, curpkt)
                if inst.crashes != crashes:
                    spender = idx  # cut off, if any was
                    _log_crash(idx, inst, abi.RESULT_PREFIX + kind + abi.RESULT_SUFFIX)
            if budget is not None:
                self._charge(budget, spender, t)

    def check_ndata(
        self, skt: Skt, data: bytes, time: int, raddr: bytes | None, rport: int | None
    ) -> int:
        budget = self._time
        t = 0.0
        if budget is not None:
            start = budget.start()
            if start is None:  # not entered: dropped and counted, as a full queue's
                budget.drop()
                return NDATA_DROP_COUNTED
            t = start
        for idx, inst in enumerate(self.monitors):
            rv = inst.check_ndata(skt.sktid, skt.family, skt.proto, time, raddr, rport, data)
            if rv:
                if budget is not None:
                    self._charge(budget, idx, t)
                if rv >= CRASH:
                    _log_crash(idx, inst, abi.CHECK_PREFIX + "ndata")
                    return 0 if self.settings.report_crash else NDATA_DROP
                return rv & 0xFFFF  # a negative rv: its low 16 bits (§8.5)
        if budget is not None:
            self._charge(budget, len(self.monitors) - 1, t)
        if self.inner.checks_ndata:
            return self.inner.check_ndata(skt, data, time, raddr, rport)
        return NDATA_DELIVER

    # -- host side of the instances ------------------------------------------------------

    def read_vmem(self, addr: int, length: int) -> bytes:
        if self._memory is None:
            return bytes(length)
        return self._memory.read(addr, length)

    def flush(self, instance: Instance) -> bool:
        """persistent_memory_flush(): store the bytes if they changed since the last
        load or store (a monitor flushing in a loop costs no commit each time). False
        (the monitor gets -1) when the store fails."""
        key = self._pm_keys.get(instance)
        if key is None:
            return True
        data = instance.persistent()
        if data == self._stored.get(instance):
            return True
        try:
            self.host.store.store(key, data)
        except PersistentMemoryError as e:
            idx = self.monitors.index(instance) if instance in self.monitors else -1
            log.error("monitor {i}: persistent_memory_flush failed: {e}", i=idx, e=str(e))
            return False
        self._stored[instance] = data
        return True

    def debug(self, instance: Instance, text: str) -> None:
        note = self._debug_log.allow()
        if note is None:
            return
        idx = self.monitors.index(instance) if instance in self.monitors else -1
        log.info("monitor {i} debug: {text}{note}", i=idx, text=text, note=note)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._time is not None:
            self._time.close()
        if self._pending is not None:  # the session ended while its module compiled
            self._pending.cancel()
            self._pending = None
        try:
            items = [
                (k, data)
                for inst, k in self._pm_keys.items()
                if (data := inst.persistent()) != self._stored.get(inst)
            ]
            try:
                self.host.store.store_many(items)
            except PersistentMemoryError as e:
                # The session must still close (the inner gate commits the accounting):
                # the bytes changed since the last flush are lost, as on a kill.
                log.error(
                    "could not store the persistent memory of {n} monitor(s) at session end: {e}",
                    n=len(items),
                    e=str(e),
                )
        finally:
            if self.box is not None:
                self.box.close()
            # Nothing of the box stays reachable from the gate (the session may hold it
            # in a cycle): its store and memories are freed now (Box.close).
            self.box = None
            self.monitors = []
            self._pm_keys = {}
            self._stored = {}
            self._with_results = {}
            self.inner.close()


def _log_crash(idx: int, inst: Instance, kind: str) -> None:
    # Every crash is counted; the log gets the 1st, 2nd, 4th, 8th... of each monitor.
    n = inst.crashes
    if n & (n - 1) == 0:
        log.warn(
            "monitor {i} ({digest}) crashed in {kind} ({n} crash(es) so far): {why}",
            i=idx,
            # which one: the digest the start-up line ("aux monitor FILE (DIGEST)") or the
            # certificate names
            digest=inst.compiled.digest.hex()[:16],
            kind=kind,
            n=n,
            why=inst.last_crash,
        )


def _persistent_keys(certs: Sequence[Certificate]) -> dict[bytes, bytes]:
    """digest -> AKI||serial||index of the first certificate (chain order) listing it."""
    keys: dict[bytes, bytes] = {}
    for cert in certs:
        digests = cert.limits.monitor_digests if cert.limits is not None else None
        for i, d in enumerate(digests or ()):
            keys.setdefault(d, cert_key(cert.authority_key_id, cert.serial_bytes, i))
    return keys


_Args = Callable[["Instance", Any], tuple[int, ...]]
_Plan = tuple[str, _Args, Callable[[Any], bytes], Callable[["Instance", Any], int]]


def _plan(kind: str, args_of: _Args, curpkt_of: Callable[[Any], bytes]) -> _Plan:
    def run(inst: Instance, m: Any) -> int:
        return inst.check(kind, args_of(inst, m), curpkt_of(m))

    return kind, args_of, curpkt_of, run


#: Per checked request type: (kind, its argument list, its CURPKT_DATA, the check call).
_PLAN: dict[type, _Plan] = {
    Nopen: _plan("nopen", nopen_args, lambda m: b""),
    Nclose: _plan("nclose", lambda inst, m: (m.sktid, inst.pm, PM_LEN), lambda m: b""),
    Nsend: ("nsend", nsend_args, lambda m: m.data, lambda inst, m: inst.check_nsend(m)),
    Ncap: _plan(
        "ncap",
        lambda inst, m: (m.sktid, m.family, m.proto, m.endtime, inst.pm, PM_LEN),
        lambda m: m.filter,
    ),
}
