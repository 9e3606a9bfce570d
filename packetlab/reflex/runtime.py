"""Running reflexes under wasmtime: the monitors' runtime with the reflex ABI.

`compile_reflex` runs the monitors' load checks (memory import, known host functions,
`malloc`/`free`) with the reflex host-function table, then checks the reflex exports.
A `ReflexInstance` is a monitor `Instance` (same box: memory cap, deadline, raw calls)
with a context block (parameters and state) and a packet buffer in its memory, and the
reflex host functions. Sends and reports a call asks for are collected, bounded, and
handed to the endpoint after the call returns: nothing re-enters wasm or the session
while the reflex runs.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import wasmtime

from packetlab.monitor import runtime as mrt
from packetlab.monitor.abi import MonitorCrash, MonitorLoadError
from packetlab.monitor.load import (
    Compiled,
    check_alloc,
    check_imports,
    check_shape,
    load_module,
    sig_of,
)
from packetlab.monitor.runtime import Box, Instance
from packetlab.reflex import abi
from packetlab.reflex.sendqueue import QUEUE_LEN, SendQueue, shim_module

__all__ = ["Emit", "ReflexCompiled", "ReflexHost", "ReflexInstance", "compile_reflex"]

MAX_REPORTS = 16  # reports one call may make
_I64 = struct.Struct("<q")


@dataclass(frozen=True)
class ReflexCompiled(Compiled):
    exports: frozenset[str] = field(default_factory=frozenset)


def compile_reflex(wasm: bytes) -> ReflexCompiled:
    """Compile `wasm` and check it against the reflex ABI. Raises `MonitorLoadError`."""
    module = load_module(wasm)
    check_imports(module, abi.HOST_FUNCS)
    check_shape(wasm, "reflex")  # as a monitor: one table, no memory of its own
    exports = {
        e.name: sig_of(e.type) for e in module.exports if isinstance(e.type, wasmtime.FuncType)
    }
    check_alloc(exports)
    present = set()
    for name, (sig, required) in abi.EXPORTS.items():
        got = exports.get(name)
        if got is None:
            if required:
                raise MonitorLoadError(f"the module does not export {name} {sig}")
            continue
        if got != sig:
            raise MonitorLoadError(f"{name} has the wrong type (want {sig})")
        present.add(name)
    return ReflexCompiled(
        module, abi.digest(wasm), frozenset(), {}, False, (), exports=frozenset(present)
    )


class Emit(NamedTuple):
    """One send a reflex asked for (a tuple: made on every reflex_send, cheaply)."""

    sktid: int
    data: bytes
    raddr: bytes | None
    rport: int | None
    time: int
    tag: int


class ReflexHost(Protocol):
    """What a reflex asks of the endpoint (or of ``pktlab reflex test``)."""

    def read_vmem(self, addr: int, length: int) -> bytes: ...

    def flush(self, instance: Instance) -> None: ...

    def debug(self, instance: Instance, text: str) -> None: ...

    def now(self) -> int: ...

    def timer_at(self, instance: ReflexInstance, when_ns: int) -> None: ...


class ReflexInstance(Instance):
    """One reflex in a box (see the module docstring)."""

    HOST_FUNCS = abi.HOST_FUNCS

    def __init__(self, box: Box, compiled: ReflexCompiled, host: ReflexHost) -> None:
        super().__init__(box, compiled, host)
        self.rhost = host
        self.ctx = 0
        self.pkt = 0
        self.emits: list[Emit] = []
        self.reports: list[bytes] = []
        self.refused = 0  # sends/reports beyond the per-call bounds or with bad arguments
        self.timer_request: int | None = None  # reflex_timer_at of the last call
        self._raw: dict[str, Any] = {}
        self._pktview = memoryview(b"")
        self._shim: wasmtime.Instance | None = None  # env.reflex_send (sendqueue.py)
        self._sendq: SendQueue | None = None

    def setup(self, pm: bytes) -> None:
        super().setup(pm)
        try:
            self.ctx = self._alloc(abi.CTX_LEN)
            self.pkt = self._alloc(abi.PKT_BUF)
        except MonitorCrash as e:
            raise MonitorLoadError(f"malloc failed: {e}") from None
        self.write(self.ctx, bytes(abi.CTX_LEN))
        if self._shim is not None:  # the reflex imports reflex_send: give it its queue
            try:
                q = self._alloc(QUEUE_LEN)
            except MonitorCrash as e:
                raise MonitorLoadError(f"malloc failed: {e}") from None
            self._sendq = SendQueue(self._base, q)
            g = self._shim.exports(self.box.store)["queue"]
            assert isinstance(g, wasmtime.Global)
            g.set_value(self.box.store, wasmtime.Val.i32(q))
        self._pktview = memoryview(
            (ctypes.c_uint8 * abi.PKT_BUF).from_address(self._base + self.pkt)
        ).cast("B")
        compiled = self.compiled
        assert isinstance(compiled, ReflexCompiled)
        for name in compiled.exports:
            f = self._exports[name]
            assert isinstance(f, wasmtime.Func)
            self._raw[name] = mrt._Raw(f, abi.EXPORTS[name][0])
        self._packet = self._raw["reflex_packet"]

    def release(self) -> None:
        """Its box closed: as a monitor's (`Instance.release`), and its exports, the send
        queue's shim instance and the views into its memory let go too; a later
        `packet` is a crash, other calls answer 0 (absent)."""
        super().release()
        self._raw = {}
        self._packet = None
        self._shim = None
        self._sendq = None
        self._pktview = memoryview(bytearray(abi.PKT_BUF))

    def _host_func(self, name: str) -> wasmtime.Func:
        if name != "reflex_send":
            return super()._host_func(name)
        # The wasm shim (sendqueue.py), with the Python function for what it cannot queue.
        store = self.box.store
        slow = super()._host_func("reflex_send")
        try:
            self._shim = wasmtime.Instance(store, shim_module(store.engine), [self._memory, slow])
        except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
            raise MonitorLoadError(f"cannot link reflex_send: {e}") from None
        f = self._shim.exports(store)["reflex_send"]
        assert isinstance(f, wasmtime.Func)
        return f

    def _collect(self, q: SendQueue) -> None:
        """After a call: the queued sends first (every later one took the Python path)."""
        self.refused += q.refused()
        queued = q.take(Emit)
        if queued:
            self.emits[:0] = queued

    # -- calls ------------------------------------------------------------------------

    def has(self, name: str) -> bool:
        return name in self._raw

    def call(self, name: str, args: Sequence[int]) -> int:
        """Call an optional export (0 when absent). Raises `MonitorCrash`."""
        raw = self._raw.get(name)
        if raw is None:
            return 0
        return self._call(raw, args)

    def packet(
        self,
        sktid: int,
        family: int,
        proto: int,
        time: int,
        raddr: bytes | None,
        rport: int | None,
        data: bytes,
    ) -> int:
        """reflex_packet for one received packet: its flags. Raises `MonitorCrash`."""
        if self._packet is None:
            raise MonitorCrash("the reflex was detached")
        n = len(data)
        self._pktview[:n] = data
        self.curpkt = data
        if raddr is not None:
            a = len(raddr)
            self._scratch[:a] = raddr
            args = (sktid, family, proto, time, self.scratch, a, rport or 0, self.pkt, n, self.ctx)
        else:
            args = (sktid, family, proto, time, 0, 0, 0, self.pkt, n, self.ctx)
        return self._call(self._packet, args)

    def _call(self, raw: Any, args: Sequence[int]) -> int:
        """One export call with fresh emits and reports, the shim's queued sends collected
        after it."""
        self.emits = []
        self.reports = []
        q = self._sendq
        if q is None:
            return self.box.call(raw, args)
        q.reset()
        rv = self.box.call(raw, args)
        head = q.head
        if head[0] or head[1]:  # sends or refusals queued
            self._collect(q)
        return rv

    def ctx_bytes(self, offset: int, length: int) -> bytes:
        return self.read(self.ctx + offset, length)

    def set_params(self, offset: int, data: bytes) -> None:
        end = min(abi.PARAMS_LEN, offset + len(data))
        if offset < end:
            self.write(self.ctx + offset, data[: end - offset])

    # -- host functions -----------------------------------------------------------------

    def _h_reflex_send(self, args: Sequence[int]) -> int:
        sktid, ptr, n, raddr_ptr, alen, rport, time, tag = args
        q = self._sendq  # the shim's queued sends of this call count too
        if (
            len(self.emits) + (q.queued() if q is not None else 0) >= abi.MAX_EMITS
            or not 0 <= sktid < 256
            or n > 0xFFFF
            or alen not in (0, 4, 16)
            or not 0 <= tag <= 0xFFFF
            or not 0 <= rport <= 0xFFFF
        ):
            self.refused += 1
            return -1
        data = self.read(ptr, n)  # outside the memory: a trap (MonitorCrash)
        raddr = self.read(raddr_ptr, alen) if alen else None
        self.emits.append(Emit(sktid, data, raddr, rport if alen else None, max(0, time), tag))
        return 0

    def _h_reflex_report(self, args: Sequence[int]) -> int:
        ptr, n = args
        if len(self.reports) >= MAX_REPORTS or n > abi.MAX_REPORT:
            self.refused += 1
            return -1
        self.reports.append(self.read(ptr, n))
        return 0

    def _h_reflex_now(self, args: Sequence[int]) -> int:
        return self.rhost.now()

    def _h_reflex_timer_at(self, args: Sequence[int]) -> int:
        self.rhost.timer_at(self, max(0, args[0]))
        return 0
