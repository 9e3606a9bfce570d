"""Reflexes on an endpoint session (docs/reflexes.md), sans-IO.

`ReflexService` is process-wide (ReflexEnable, the monitor settings reflexes run under,
a cache of compiled reflexes). `ReflexService.install(session)` puts a `ReflexGate` in
front of the session's request gate and a `ReflexMemory` in front of its vmem:

* the gate takes ``cdata(hint="reflex")`` in SETUP, answers the private requests
  (rattach, rdetach) in IDLE, and runs a socket's reflex on every packet the socket
  receives, after the monitors and the receive accounting passed it (`check_ndata`):
  the packet goes on to the controller only if the reflex asks (`PASS`);
* every send a reflex asks for goes through the session's own nsend path (monitors,
  valid_dest, quotas, burst windows, buffer budget, accounting), exactly as an nsend
  from the controller, after the reflex returned;
* a reflex that traps, breaks the ABI or passes the deadline is detached, with an
  ``rdetached`` notification; the packet then goes on to the controller;
* the vmem gets the CAPS record and one block per socket (status, counters, the
  parameters the controller writes and the state the reflex keeps).

Digests: a reflex runs only if a certificate of the controller's chain lists it in its
``reflex=`` limit; a session without a chain (``--insecure-plaintext``, no limits at all)
may run any reflex.

The hooks into the session are few and marked ``# reflex hook``: the private-type
dispatch and the "reflex" cdata hint (session.py), and `install` (tap.py, through
`packetlab.endpoint.reflexhook`, which loads this module on a session's first reflex request).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab.endpoint.checks import NDATA_DELIVER, NDATA_DROP, RequestGate
from packetlab.endpoint.config import EndpointConfig
from packetlab.endpoint.monitors import MAX_MODULE, MAX_SESSION_MODULES, settings_of
from packetlab.endpoint.sockets import Skt
from packetlab.logbudget import LogBudget
from packetlab.monitor.abi import MonitorCrash, MonitorLoadError, Settings
from packetlab.reflex import abi
from packetlab.reflex import wire as rw
from packetlab.wire.constants import PKTLAB_WASM, Proto, SocketState, Status
from packetlab.wire.framer import Unknown
from packetlab.wire.messages import Message, Nsend, Result

if TYPE_CHECKING:  # wasmtime loads only when a reflex is compiled
    from packetlab.endpoint.reflexwarm import Rehearsal, SpinReader
    from packetlab.endpoint.session import Session
    from packetlab.monitor.runtime import Box, Instance
    from packetlab.monitor.worker import CompileWorker
    from packetlab.reflex.runtime import ReflexCompiled, ReflexInstance

__all__ = ["ReflexGate", "ReflexMemory", "ReflexService", "submit_nsend"]

log = Logger(namespace="pktendpoint.reflex")
CACHE = 32
UDP = int(Proto.UDP)
MAX_OUTBOX_REPORTS = 10_000  # reports are dropped (counted) while the outbox is this long
_R = {s: struct.pack(">IH", 0x40 << 24 | 2, int(s)) for s in Status}
_OK = struct.pack(">I", 0x40 << 24)
_perf = time.perf_counter


class ReflexService:
    """The endpoint's reflex settings and compiled-module cache."""

    def __init__(
        self, settings: Settings, enabled: bool = True, worker: CompileWorker | None = None
    ) -> None:
        self.settings = settings
        self.enabled = enabled
        #: The endpoint's compile worker (shared with the monitors): a cdata's module not
        #: in the cache compiles in its thread. None (tests, tools): on the caller's.
        self.worker = worker
        self._cache: dict[bytes, ReflexCompiled] = {}
        #: While the endpoint busy-polls, attached UDP reflexes are rehearsed every
        #: `warm_every` s of its spin (`warm_on`, packetlab.endpoint.reflexwarm).
        self.warm_every = 0.0
        self.rehearsals: list[Rehearsal] = []
        self.reader: SpinReader | None = None  # set while the endpoint busy-polls
        self.rehearse_loopback = True  # the shadow's sends take a loopback socket's path
        self._due = 0.0

    @classmethod
    def from_config(cls, cfg: EndpointConfig, worker: CompileWorker | None = None) -> ReflexService:
        return cls(settings_of(cfg), cfg.reflex_enable, worker)

    def warm_on(self, spinner: Any, every_us: int) -> None:
        """Read attached UDP reflexes' sockets from `spinner`'s busy-poll spin (a
        `packetlab.endpoint.busypoll.SpinningPoller`; None: nothing) and rehearse them
        every `every_us` µs of it (0: never)."""
        if spinner is None:
            return
        from packetlab.endpoint.reflexwarm import SpinReader

        self.reader = SpinReader()
        self.warm_every = every_us / 1e6 if every_us > 0 else 0.0
        spinner.on_spin = self.spin

    def spin(self) -> bool:
        """One turn of the busy-poll spin: read the reflexes' sockets (True if one was
        read), else rehearse when due."""
        reader = self.reader
        if reader is not None and reader.poll():
            return True
        if self.rehearsals:
            now = _perf()
            if now >= self._due:
                self.rehearse()
                self._due = _perf() + self.warm_every
        return False

    def rehearse(self) -> None:
        """Run every live rehearsal once."""
        for r in self.rehearsals:
            try:
                r.run()
            except Exception as e:  # a shadow must never break the real endpoint
                log.info("reflex rehearsal stopped: {e!r}", e=e)
                r.ok = False

    def cached(self, digest: bytes) -> bool:
        return digest in self._cache

    def compile(self, wasm: bytes) -> ReflexCompiled:
        """Compile on this thread (or take it from the cache). Raises `MonitorLoadError`."""
        from packetlab.reflex.runtime import compile_reflex

        d = abi.digest(wasm)
        got = self._cache.get(d)
        if got is None:
            got = compile_reflex(wasm)
            self._keep(d, got)
        return got

    def _keep(self, d: bytes, got: ReflexCompiled) -> None:
        if d not in self._cache and len(self._cache) >= CACHE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[d] = got

    def compile_later(self, wasm: bytes) -> Deferred[ReflexCompiled]:
        """Compile in the endpoint's compile worker (shared with the monitors: one
        module at a time, once for every session waiting for it, cancelling forgets a
        waiter, a module that compiles anyway goes into the cache): a Deferred of the
        `ReflexCompiled` (errback `MonitorLoadError`)."""
        assert self.worker is not None
        from packetlab.reflex.runtime import compile_reflex

        d = abi.digest(wasm)
        return self.worker.submit(
            "reflex", d, len(wasm), lambda: compile_reflex(wasm), lambda got: self._keep(d, got)
        )

    def install(self, session: Session) -> ReflexGate:
        """Put reflexes in front of `session`'s gate and vmem (# reflex hook)."""
        gate = ReflexGate(self, session, session.gate)
        session.gate = session.receiving.gate = gate
        session.memory = ReflexMemory(session.memory, gate)  # type: ignore[assignment]
        session.extension = gate.request
        return gate


def listed_digests(gate: Any) -> frozenset[bytes] | None:
    """The reflex digests the controller's chain lists, or None without a chain."""
    g = gate
    while g is not None:
        certs = getattr(g, "certs", None)
        if certs is not None:
            from packetlab.ppks.chainlimits import allowed_reflexes

            return allowed_reflexes(certs)  # the exppriv's grant, narrowed by delprivs
        g = getattr(g, "inner", None)
    return None


class Attached:
    """One socket's reflex and its counters."""

    __slots__ = (
        "box", "denied", "digest", "inst", "lasterr", "passed", "refused", "rehearsal", "reports",
        "runs", "sent", "skt", "stat", "timer",
    )  # fmt: skip

    def __init__(self, skt: Skt, digest: bytes, box: Box, inst: ReflexInstance) -> None:
        self.skt = skt
        self.digest = digest
        self.box = box
        self.inst = inst
        self.stat = rw.STAT_RUNNING
        self.runs = self.sent = self.denied = self.passed = self.reports = 0
        self.lasterr = 0
        self.refused = 0  # sends/reports answered -1 in the reflex (past the per-call bounds)
        self.timer: Any = None
        self.rehearsal: Rehearsal | None = None  # its shadow while the endpoint busy-polls


class _Snapshot:
    """What the vmem block of a detached reflex keeps showing."""

    __slots__ = ("ctx", "head")

    def __init__(self, head: bytes, ctx: bytes) -> None:
        self.head = head
        self.ctx = ctx


class _Capture:
    """Outbox stand-in for one reflex send: keeps the nsend's result frame, passes every
    later frame (an ntag of a send that went out at once) to the real outbox."""

    __slots__ = ("real", "result")

    def __init__(self, real: Any) -> None:
        self.real = real
        self.result: bytes | None = None

    def put(self, frame: bytes, skt: Skt | None = None, cost: int = 0) -> None:
        if self.result is None:
            self.result = frame
        else:
            self.real.put(frame, skt, cost)

    def __len__(self) -> int:
        return len(self.real)


class _Later:
    """Outbox stand-in while a reflex's sends and reports for a packet it passes on are
    made: keeps their frames until `flush`, once the packet's ndata is queued."""

    __slots__ = ("frames", "real")

    def __init__(self, real: Any) -> None:
        self.real = real
        self.frames: list[tuple[bytes, Skt | None, int]] = []

    def put(self, frame: bytes, skt: Skt | None = None, cost: int = 0) -> None:
        self.frames.append((frame, skt, cost))

    def __len__(self) -> int:
        return len(self.real) + len(self.frames)

    def flush(self) -> None:
        frames, self.frames = self.frames, []
        put = self.real.put
        for frame, skt, cost in frames:
            put(frame, skt, cost)


def submit_nsend(session: Session, msg: Nsend) -> int:
    """Run `msg` through the session's nsend path, as if the controller sent it; its errid
    (0: queued or sent). The result frame goes to the caller instead of the controller."""
    real = session.outbox
    cap = _Capture(real)
    session.outbox = cap  # type: ignore[assignment]
    try:
        session._nsend(msg)
    finally:
        session.outbox = real
    frame = cap.result
    if frame is None or len(frame) < 6:
        return 0
    return int.from_bytes(frame[4:6], "big")


class ReflexGate:
    """The session's `RequestGate` with reflexes in front (see the module docstring)."""

    def __init__(self, service: ReflexService, session: Session, inner: RequestGate) -> None:
        self.service = service
        self.session = session
        self.inner = inner
        self.log = log  # a rehearsal's shadow gate logs nothing (reflexwarm.py)
        self.pass_verdict = NDATA_DELIVER  # a shadow's: NDATA_DROP (reflexwarm.py)
        self.listed = listed_digests(inner)
        if self.listed is not None:  # (twistd writes debug lines: "any" was one a session)
            log.debug("reflex digests the chain lists: {n}", n=len(self.listed))
        self.preloaded: dict[bytes, ReflexCompiled] = {}
        self._preloaded_bytes = 0  # modules preloaded by cdata: at most MAX_SESSION_MODULES
        self._pending: Deferred[ReflexCompiled] | None = None  # a cdata's module compiling
        self.attached: dict[Skt, Attached] = {}
        self.by_sktid: dict[int, Attached] = {}
        self.snapshots: dict[int, _Snapshot] = {}
        self.lost_reports = 0
        self._later = _Later(None)  # one for every packet passed on (`_after_passed`)
        # Refused requests, as many as the controller sends: a line each filled the log
        # (5,000 4-byte frames, 5,000 lines); 20 a minute, the rest counted.
        self.refusal_log = LogBudget(time.monotonic)
        self.checks_ndata = inner.checks_ndata
        # check and done only pass through: the inner gate's bound methods themselves (a
        # Python frame less on every nsend, a reflex's included).
        self.check = inner.check  # type: ignore[method-assign]
        self.done = inner.done  # type: ignore[method-assign]
        self.caps = rw.Caps(
            flags=rw.CAPS_ALLOWED if service.enabled else 0,
            params_len=abi.PARAMS_LEN,
            state_len=abi.STATE_LEN,
            max_emits=abi.MAX_EMITS,
        ).encode()

    # -- RequestGate ---------------------------------------------------------------------

    def _refresh(self) -> None:
        # Read by the session on every received chunk: a plain attribute.
        self.checks_ndata = bool(self.attached) or self.inner.checks_ndata

    def program(self, hint: bytes, data: bytes) -> Status | Deferred[Status]:
        if hint != rw.CDATA_HINT_REFLEX:
            return self.inner.program(hint, data)
        if not self.service.enabled:
            return Status.ECRTBADHINT  # as an endpoint without reflexes
        digest = abi.digest(data[1:]) if data else b""
        if digest in self.preloaded and data[0] == PKTLAB_WASM:
            return Status.SUCCESS  # the same program again: already loaded once
        size = max(len(data) - 1, 0)
        if self._preloaded_bytes + size > MAX_SESSION_MODULES:
            # Each preloaded module stays compiled for the session: bound them as the
            # monitors' (a chain that lists no digests would otherwise admit any number).
            log.warn(
                "reflex {d} refused: the session's preloaded reflexes would be {n} bytes "
                "in total (at most {max})",
                d=digest.hex()[:16],
                n=self._preloaded_bytes + size,
                max=MAX_SESSION_MODULES,
            )
            return Status.ECRTBADHDAT
        service = self.service
        if service.worker is None or not self._may_load(digest, data) or service.cached(digest):
            status, compiled = self._load(digest, data)
            if compiled is not None:
                self._preloaded(compiled, size)
            return status
        # In the compile worker's thread: the session answers when this fires and
        # handles no request meanwhile (docs/reflexes.md "Loading").
        pending = self._pending = service.compile_later(data[1:])
        return pending.addCallbacks(
            self._preloaded, self._refused, callbackArgs=(size,), errbackArgs=(digest,)
        )

    def _preloaded(self, compiled: ReflexCompiled, size: int) -> Status:
        self._pending = None
        if compiled.digest not in self.preloaded:
            self._preloaded_bytes += size
        self.preloaded[compiled.digest] = compiled
        return Status.SUCCESS

    def _refused(self, failure: Failure, digest: bytes) -> Status:
        """A module that failed to compile (a session that ended: passed on)."""
        self._pending = None
        failure.trap(MonitorLoadError)
        log.warn("reflex {d} refused: {e}", d=digest.hex()[:16], e=failure.getErrorMessage())
        return Status.ECRTBADHDAT

    def _attach_refused(self, failure: Failure, digest: bytes) -> None:
        # A rattach's answer: the session itself puts nothing.
        self.session.outbox.put(_R[self._refused(failure, digest)])

    def _attach_compiled(self, compiled: ReflexCompiled, msg: rw.Attach) -> None:
        self._pending = None
        if self.session.ended is None:
            self._attach(msg, compiled)  # checks the socket again: answered by now

    def start(self) -> tuple[Result | None, list[bytes]]:
        verdict = self.inner.start()
        self._refresh()
        return verdict

    def check(self, msg: Message) -> Result | None:
        return self.inner.check(msg)

    def done(self, msg: Message, errid: int) -> None:
        self.inner.done(msg, errid)

    def check_ndata(
        self, skt: Skt, data: bytes, time: int, raddr: bytes | None, rport: int | None
    ) -> int:
        inner = self.inner
        if inner.checks_ndata:
            verdict = inner.check_ndata(skt, data, time, raddr, rport)
            if verdict != NDATA_DELIVER:
                return verdict
        a = self.attached.get(skt)
        if a is None:
            return NDATA_DELIVER
        try:
            flags = a.inst.packet(skt.sktid, skt.family, skt.proto, time, raddr, rport, data)
        except MonitorCrash as e:
            self._fail(a, str(e))
            return NDATA_DELIVER
        a.runs += 1
        inst = a.inst
        if flags & abi.PASS and (inst.emits or inst.reports) and self.pass_verdict == NDATA_DELIVER:
            # The reply leaves now, but what the controller hears of it (ntag, rreport)
            # waits until the receive path has queued this packet's ndata: cause first.
            self._after_passed(a)
        else:
            self._after(a)
        if a.rehearsal is not None:  # after the sends: replayed by the busy-poll spin
            a.rehearsal.feed(data, time, raddr, rport)
        if flags & abi.PASS:
            a.passed += 1
            return self.pass_verdict
        return NDATA_DROP

    def close(self) -> None:
        if self._pending is not None:  # the session ended while its module compiled
            self._pending.cancel()
            self._pending = None
        for a in list(self.attached.values()):
            self._drop(a, rw.STAT_DETACHED)
        self.inner.close()

    # -- private requests ----------------------------------------------------------------

    def request(self, item: Unknown) -> None:
        """Answer one frame of an undefined type: ours in IDLE, else ECTLNOTSUP (§1.1)."""
        out = self.session.outbox
        idle = self.session.phase.value == "idle"
        if not idle or item.msgtype not in (rw.RATTACH, rw.RDETACH):
            out.put(_R[Status.ECTLNOTSUP])
            return
        try:
            if item.msgtype == rw.RATTACH:
                self._attach(rw.decode_attach(item.body))
            else:
                self._detach_request(rw.decode_detach(item.body))
        except rw.BadMessage as e:
            self._say_refused("malformed reflex request: {e}", e=str(e))
            out.put(_R[Status.ECTLBADMSG])

    def _say_refused(self, fmt: str, warn: bool = False, **kw: object) -> None:
        more = self.refusal_log.allow()
        if more is not None:
            (self.log.warn if warn else self.log.info)(fmt + "{more}", more=more, **kw)

    def _attach(self, msg: rw.Attach, compiled: ReflexCompiled | None = None) -> None:
        """Answer a rattach; `compiled`: its program, compiled meanwhile in the worker."""
        out = self.session.outbox
        if not self.service.enabled:
            return out.put(_R[Status.ECTLNOTSUP])
        if msg.flags or len(msg.params) > abi.PARAMS_LEN:
            return out.put(_R[Status.ECTLBADMSG])
        skt = self.session.sockets[msg.sktid]
        if skt is None or skt.state < SocketState.OPENING:
            return out.put(_R[Status.ESKTNOTOPEN])
        if skt in self.attached:
            return out.put(_R[Status.ESKTINUSE])
        old = self.by_sktid.get(msg.sktid)
        if old is not None:  # left by a socket closed since: its box goes now
            self._drop(old, rw.STAT_DETACHED)
        if compiled is not None:
            pass
        elif msg.program:
            service = self.service
            if (
                service.worker is not None
                and self._may_load(msg.digest, msg.program)
                and not service.cached(msg.digest)
            ):
                # In the compile worker's thread: the session handles no request until
                # this one is answered (docs/reflexes.md "Loading").
                pending = self._pending = service.compile_later(msg.program[1:])
                pending.addCallbacks(
                    self._attach_compiled,
                    self._attach_refused,
                    callbackArgs=(msg,),
                    errbackArgs=(msg.digest,),
                )
                self.session.wait_for(pending)
                return None
            status, compiled = self._load(msg.digest, msg.program)
            if compiled is None:
                return out.put(_R[status])
        else:
            compiled = self.preloaded.get(msg.digest)
            if compiled is None:
                return out.put(_R[Status.ECRTNOHDAT])
        from packetlab.monitor.runtime import Box
        from packetlab.reflex.runtime import ReflexInstance

        box = Box(self.service.settings)
        try:
            # The box's own instance: `Box.close` (detached, session ended) lets it go
            # at once, not at the cyclic GC's next full collection.
            inst = box.adopt(ReflexInstance(box, compiled, _Host(self)))
        except MonitorLoadError as e:
            box.close()
            self.log.warn("reflex {d} failed to load: {e}", d=msg.digest.hex()[:16], e=str(e))
            return out.put(_R[Status.ECRTBADHDAT])
        a = Attached(skt, msg.digest, box, inst)
        inst.set_params(0, msg.params)
        self.attached[skt] = a
        self.by_sktid[msg.sktid] = a
        self._refresh()
        self.snapshots.pop(msg.sktid, None)
        try:
            rv = inst.call("reflex_init", (inst.ctx, msg.sktid))
        except MonitorCrash as e:
            self._fail(a, f"reflex_init: {e}", answer=_R[Status.EUNKFAULT])
            return
        if rv:
            self._drop(a, rw.STAT_DETACHED)
            self.log.info("reflex on socket {s} refused to start (rv {rv})", s=msg.sktid, rv=rv)
            return out.put(_R[Status.EUNKFAULT])
        out.put(_OK)
        self.log.info("reflex {d} attached to socket {s}", d=msg.digest.hex()[:16], s=msg.sktid)
        service = self.service
        if skt.proto == UDP:
            if service.reader is not None:
                service.reader.add(skt.io)
            if service.warm_every > 0:
                self._rehearse(a, compiled, msg.params)
        self._after(a)

    def _rehearse(self, a: Attached, compiled: ReflexCompiled, params: bytes) -> None:
        from packetlab.endpoint.reflexwarm import Rehearsal

        try:
            r = Rehearsal(
                ReflexService(self.service.settings),
                compiled,
                a.skt,
                params,
                self.service.rehearse_loopback,
            )
        except Exception as e:  # the real reflex runs anyway, only colder
            log.info("no rehearsal for the reflex on socket {s}: {e!r}", s=a.skt.sktid, e=e)
            return
        if r.ok:
            a.rehearsal = r
            self.service.rehearsals.append(r)
        else:
            r.close()

    def _detach_request(self, sktid: int) -> None:
        a = self.by_sktid.get(sktid)
        if a is None or self.session.sockets[sktid] is not a.skt:
            if a is not None:
                self._drop(a, rw.STAT_DETACHED)
            return self.session.outbox.put(_R[Status.ESKTNOTOPEN])
        self._drop(a, rw.STAT_DETACHED)
        self.session.outbox.put(_OK)

    def _may_load(self, digest: bytes, program: bytes) -> bool:
        """`program` is an encoded module of this `digest` the chain lists, not too large."""
        return (
            bool(program)
            and program[0] == PKTLAB_WASM
            and len(program) - 1 <= MAX_MODULE
            and abi.digest(program[1:]) == digest
            and (self.listed is None or digest in self.listed)
        )

    def _load(self, digest: bytes, program: bytes) -> tuple[Status, ReflexCompiled | None]:
        """Check and compile `program` on this thread (or take it from the cache)."""
        if not program or program[0] != PKTLAB_WASM or abi.digest(program[1:]) != digest:
            return Status.ECRTBADHDAT, None
        if self.listed is not None and digest not in self.listed:
            self._say_refused("reflex {d} refused: the chain does not list it", d=digest.hex())
            return Status.ECRTBADHDAT, None
        if len(program) - 1 > MAX_MODULE:
            self._say_refused(
                "reflex {d} refused: the module is {n} bytes (at most {max})",
                warn=True,
                d=digest.hex()[:16],
                n=len(program) - 1,
                max=MAX_MODULE,
            )
            return Status.ECRTBADHDAT, None
        try:
            return Status.SUCCESS, self.service.compile(program[1:])
        except MonitorLoadError as e:
            log.warn("reflex {d} refused: {e}", d=digest.hex()[:16], e=str(e))
            return Status.ECRTBADHDAT, None

    # -- after a call: sends, reports, timer ------------------------------------------------

    def _after(self, a: Attached) -> None:
        inst = a.inst
        session = self.session
        if inst.refused:  # never reached the nsend path: counted here, or nowhere
            a.refused += inst.refused
            inst.refused = 0
        if inst.emits:
            emits, inst.emits = inst.emits, []
            for e in emits:
                target = session.sockets[e.sktid]
                if target is None:
                    errid = int(Status.ESKTNOTOPEN)
                else:
                    udp = target.proto == UDP
                    errid = submit_nsend(
                        session,
                        Nsend(
                            e.sktid, target.family, target.proto, e.time, e.tag, e.data,
                            e.raddr if udp else None, e.rport if udp else None,
                        ),
                    )  # fmt: skip
                if errid:
                    a.denied += 1
                    a.lasterr = errid
                else:
                    a.sent += 1
        if inst.reports:
            reports, inst.reports = inst.reports, []
            now = session.clock()
            for data in reports:
                if len(session.outbox) >= MAX_OUTBOX_REPORTS:
                    self.lost_reports += 1
                    continue
                a.reports += 1
                session.outbox.put(rw.Report(a.skt.sktid, now, data).frame())
        when = inst.timer_request
        if when is not None:
            inst.timer_request = None
            self._arm(a, when)

    def _after_passed(self, a: Attached) -> None:
        """`_after` with the frames it puts (an ntag of a send that went out at once,
        reports) kept back for the receive path to queue after the passed packet's ndata."""
        session = self.session
        sending = session.sending
        later = self._later
        real = later.real = session.outbox
        # Both routes to the outbox: the session's (reports, results) and the send path's
        # own reference (ntags).
        session.outbox = sending._outbox = later  # type: ignore[assignment]
        try:
            self._after(a)
        finally:
            session.outbox = sending._outbox = real
        if later.frames:
            session.receiving.after_ndata.append(later.flush)

    def _arm(self, a: Attached, when: int) -> None:
        key = ("reflex", a.skt.sktid)
        sched = self.session.scheduler
        sched.cancel_key(key)

        def fire() -> None:
            if self.attached.get(a.skt) is not a:
                return
            if self.session.sockets[a.skt.sktid] is not a.skt:  # its socket was closed
                self._drop(a, rw.STAT_DETACHED)
                return
            try:
                a.inst.call("reflex_timer", (self.session.clock(), a.inst.ctx))
            except MonitorCrash as e:
                self._fail(a, f"reflex_timer: {e}")
                return
            self._after(a)

        a.timer = key
        sched.schedule(when, fire, None, key)

    # -- detaching ------------------------------------------------------------------------

    def _fail(self, a: Attached, why: str, answer: bytes | None = None) -> None:
        slow = "deadline" in why
        stat = rw.STAT_SLOW if slow else rw.STAT_CRASHED
        self.log.warn("reflex on socket {s} detached: {why}", s=a.skt.sktid, why=why)
        self._drop(a, stat)
        if answer is not None:
            self.session.outbox.put(answer)
        note = rw.Detached(a.skt.sktid, self.session.clock(), stat, why)
        self.session.outbox.put(note.frame())

    def _drop(self, a: Attached, stat: int) -> None:
        if self.attached.get(a.skt) is a:
            del self.attached[a.skt]
        if self.by_sktid.get(a.skt.sktid) is a:
            del self.by_sktid[a.skt.sktid]
        self._refresh()
        if a.timer is not None:
            self.session.scheduler.cancel_key(a.timer)
            a.timer = None
        a.stat = stat
        if self.service.reader is not None:
            self.service.reader.remove(a.skt.io)
        r = a.rehearsal
        if r is not None:
            a.rehearsal = None
            if r in self.service.rehearsals:
                self.service.rehearsals.remove(r)
            r.close()
        try:
            ctx = a.inst.ctx_bytes(0, abi.CTX_LEN)
        except MonitorCrash:
            ctx = bytes(abi.CTX_LEN)
        self.snapshots[a.skt.sktid] = _Snapshot(_head(a), ctx)
        a.box.close()

    # -- vmem -----------------------------------------------------------------------------

    def block(self, sktid: int) -> bytes | None:
        """The socket's reflex block (0x1000 bytes), or None when it never had one."""
        a = self.by_sktid.get(sktid)
        if a is not None and self.session.sockets[sktid] is not a.skt:
            self._drop(a, rw.STAT_DETACHED)  # its socket was closed
            a = None
        if a is not None:
            head, ctx = _head(a), a.inst.ctx_bytes(0, abi.CTX_LEN)
        else:
            snap = self.snapshots.get(sktid)
            if snap is None:
                return None
            head, ctx = snap.head, snap.ctx
        out = bytearray(rw.BLOCK_STRIDE)
        out[: len(head)] = head
        out[rw.B_PARAMS : rw.B_PARAMS + abi.CTX_LEN] = ctx
        return bytes(out)

    def write_params(self, sktid: int, offset: int, data: bytes) -> None:
        a = self.by_sktid.get(sktid)
        if a is None or self.session.sockets[sktid] is not a.skt:
            return
        a.inst.set_params(offset, data)
        if a.rehearsal is not None:
            a.rehearsal.write_params(offset, data)
        try:
            a.inst.call("reflex_configure", (a.inst.ctx,))
        except MonitorCrash as e:
            self._fail(a, f"reflex_configure: {e}")
            return
        self._after(a)


def _head(a: Attached) -> bytes:
    return rw.BLOCK_HEAD.pack(
        a.stat, a.runs & 0xFFFFFFFF, a.sent & 0xFFFFFFFF, a.denied & 0xFFFFFFFF,
        a.passed & 0xFFFFFFFF, a.reports & 0xFFFFFFFF, a.lasterr, a.refused & 0xFFFFFFFF,
        a.digest,
    )  # fmt: skip


class _Host:
    """The endpoint side of a reflex instance."""

    def __init__(self, gate: ReflexGate) -> None:
        self.gate = gate

    def read_vmem(self, addr: int, length: int) -> bytes:
        return self.gate.session.memory.read(addr, length)

    def flush(self, instance: Instance) -> None:
        pass  # reflexes have no persistent memory

    def debug(self, instance: Instance, text: str) -> None:
        self.gate.log.info("reflex debug: {text}", text=text)

    def now(self) -> int:
        return self.gate.session.clock()

    def timer_at(self, instance: ReflexInstance, when_ns: int) -> None:
        instance.timer_request = when_ns  # armed after the call returns


class ReflexMemory:
    """The session's vmem with the reflex region (CAPS and the socket blocks) mapped."""

    __slots__ = ("gate", "inner")

    def __init__(self, inner: Any, gate: ReflexGate) -> None:
        self.inner = inner
        self.gate = gate

    def read(self, addr: int, length: int) -> bytes:
        end = addr + length
        if end <= rw.CAPS or addr >= rw.REGION_END:
            return bytes(self.inner.read(addr, length))
        out = bytearray(self.inner.read(addr, length))
        for base, data in self._regions(addr, end):
            lo, hi = max(addr, base), min(end, base + len(data))
            if lo < hi:
                out[lo - addr : hi - addr] = data[lo - base : hi - base]
        return bytes(out)

    def _regions(self, addr: int, end: int) -> Iterable[tuple[int, bytes]]:
        yield rw.CAPS, self.gate.caps
        if end > rw.BLOCK_BASE and addr < rw.REGION_END:
            first = max(0, (addr - rw.BLOCK_BASE) // rw.BLOCK_STRIDE)
            last = min(255, (end - 1 - rw.BLOCK_BASE) // rw.BLOCK_STRIDE)
            for sktid in range(first, last + 1):
                block = self.gate.block(sktid)
                if block is not None:
                    yield rw.block_addr(sktid), block

    def write(self, addr: int, data: bytes) -> None:
        self.inner.write(addr, data)
        end = addr + len(data)
        if end <= rw.BLOCK_BASE or addr >= rw.REGION_END:
            return
        first = max(0, (addr - rw.BLOCK_BASE) // rw.BLOCK_STRIDE)
        last = min(255, (end - 1 - rw.BLOCK_BASE) // rw.BLOCK_STRIDE)
        for sktid in range(first, last + 1):
            lo = max(addr, rw.block_addr(sktid, rw.B_PARAMS))
            hi = min(end, rw.block_addr(sktid, rw.B_PARAMS + abi.PARAMS_LEN))
            if lo < hi:
                off = lo - rw.block_addr(sktid, rw.B_PARAMS)
                self.gate.write_params(sktid, off, data[lo - addr : hi - addr])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
