"""Broker mode: runs the experiments of the pool (PROTOCOL.md §1.4, §5.6;
BROKER-PROXY-OBSERVED.md §2).

For each experiment the pool starts, we connect to its `controller_addr` (default port
20556) with its `sni_key` as SNI, using the controller connect cycle of NoSub mode (3 s
timeout, a try every 1 s, given up after 5 s: then the xdescr is dropped, as the
reference does). The session is admitted under the controller chain's limits, and the
xdescr's `exp_priority` must not exceed the chain's `max_num_priority` (else the session
is refused and the xdescr dropped). Pre-emption suspends a running session in place and
resumes it later (`ControllerProtocol.suspend` / `resume`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab.clockstep import mark_wall, steady, steady_clock
from packetlab.endpoint.pool import Action, Experiment, ExperimentPool, PoolError, shown
from packetlab.endpoint.protocol import ControllerProtocol
from packetlab.endpoint.service import (
    CONNECT_GIVE_UP,
    CONNECT_RETRY,
    ControllerAddress,
    ControllerLink,
)
from packetlab.endpoint.session import Session, SessionEnd
from packetlab.logbudget import LogBudget
from packetlab.tls import peer_of

__all__ = ["BrokerModeService", "ExperimentRunner"]


class ExperimentRunner:
    log = Logger(namespace="pktendpoint")

    def __init__(
        self,
        reactor: Any,
        pool: ExperimentPool,
        link_for: Callable[[str | None], ControllerLink],
        make_session: Callable[..., Session],
        admission: Any = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.reactor = reactor
        self.pool = pool
        self.link_for = link_for
        self.make_session = make_session
        self.admission = admission
        self.clock_ns = clock_ns
        self.protocols: dict[int, ControllerProtocol] = {}  # by experiment seq
        self._connecting: dict[int, defer.Deferred[Any]] = {}
        self._wakeup: IDelayedCall | None = None
        self.stopped = False
        self.finished = 0
        # What a broker sends, refused: as many as it likes (a line each was a log that
        # grew as fast as the broker sent); 20 lines a minute, the rest counted and said.
        self.refusal_log = LogBudget(steady_clock(reactor))

    # ---------------------------------------------------------------- from the broker

    def notify(self, channel: bytes, xdescr: bytes) -> None:
        text = xdescr.decode("ascii", "replace")
        try:
            exp = self.pool.add(xdescr)
        except PoolError as e:  # cut short: a refused one may be 64 KiB of anything
            more = self.refusal_log.allow()
            if more is not None:
                self.log.warn(
                    "xdescr {x} refused: {why}{more}", x=shown(text, 200), why=str(e), more=more
                )
            return
        if exp is None:
            more = self.refusal_log.allow()
            if more is not None:
                self.log.warn(
                    "xdescr {x} is already in the pool; ignored{more}",
                    x=shown(text, 200),
                    more=more,
                )
            return
        self.log.info(
            "experiment #{seq} from the broker (channel {ch}): {x}",
            seq=exp.seq,
            ch=channel.hex() if len(channel) == 32 else channel.decode("ascii", "replace"),
            x=text,
        )
        self.kick()

    # ---------------------------------------------------------------- scheduling

    def kick(self) -> None:
        if self.stopped:
            return
        now = self.clock_ns()
        for action, exp in self.pool.schedule(now):
            if action is Action.START:
                self._start(exp)
            elif action is Action.SUSPEND:
                self.log.info("experiment #{seq} pre-empted: suspd", seq=exp.seq)
                proto = self.protocols.get(exp.seq)
                if proto is not None:
                    proto.suspend()
            else:
                self.log.info("experiment #{seq} resumed: resumd", seq=exp.seq)
                proto = self.protocols.get(exp.seq)
                if proto is not None:
                    proto.resume()
        if self._wakeup is not None and self._wakeup.active():
            self._wakeup.cancel()
        self._wakeup = None
        nxt = self.pool.next_wakeup(now)
        if nxt is not None:
            self._wakeup = mark_wall(self.reactor.callLater((nxt - now) / 1e9, self.kick))

    def _start(self, exp: Experiment) -> None:
        try:
            address = ControllerAddress.parse(exp.controller_addr)
        except ValueError as e:
            self.log.warn("experiment #{seq}: {why}; dropped", seq=exp.seq, why=str(e))
            self._ended(exp, None)
            return
        self.log.info(
            "experiment #{seq}: connecting to controller {addr} (sni_key {sni}, priority {p})",
            seq=exp.seq,
            addr=str(address),
            sni=exp.snikey,
            p=exp.priority,
        )
        self._attempt(exp, address, steady(self.reactor))

    def _attempt(self, exp: Experiment, address: ControllerAddress, started: float) -> None:
        if self.stopped:
            return

        def build() -> ControllerProtocol:
            proto = ControllerProtocol(lambda: self._session_for(proto, exp), self.reactor)
            return proto

        factory = Factory.forProtocol(build)
        factory.noisy = False
        try:
            endpoint = self.link_for(exp.snikey).endpoint(self.reactor, address)
        except Exception as e:  # e.g. an sni_key the TLS layer refuses
            self.log.warn("experiment #{seq}: {why}; dropped", seq=exp.seq, why=str(e))
            self._ended(exp, None)
            return
        d = endpoint.connect(factory)
        self._connecting[exp.seq] = d

        def failed(f: Failure) -> None:
            self._connecting.pop(exp.seq, None)
            if self.stopped or f.check(defer.CancelledError):
                return
            elapsed = steady(self.reactor) - started
            if elapsed + CONNECT_RETRY < CONNECT_GIVE_UP:
                self.reactor.callLater(CONNECT_RETRY, self._attempt, exp, address, started)
                return
            self.log.warn(
                "experiment #{seq}: gave up reaching {addr} ({why}); dropped",
                seq=exp.seq,
                addr=str(address),
                why=f.getErrorMessage(),
            )
            self._ended(exp, None)

        def connected(proto: ControllerProtocol) -> None:
            self._connecting.pop(exp.seq, None)
            self.protocols[exp.seq] = proto
            proto.done.addCallback(lambda end: self._ended(exp, end))

        d.addCallbacks(connected, failed)

    def _session_for(self, proto: ControllerProtocol, exp: Experiment) -> Session:
        if self.admission is None:
            return self.make_session()
        gate = self.admission.gate_for(peer_of(proto), priority=exp.priority)
        if gate is None:
            return self.make_session()
        session = self.make_session(gate)
        self.admission.watch(gate, proto, self.reactor)
        return session

    def _ended(self, exp: Experiment, end: SessionEnd | None) -> None:
        self.protocols.pop(exp.seq, None)
        rhint = end.rhint if end is not None else None
        self.finished += 1
        self.log.info(
            "experiment #{seq} over: {why}",
            seq=exp.seq,
            why=end.reason if end is not None else "not run",
        )
        self.pool.finished(exp, rhint)
        self.kick()

    def stop(self) -> defer.Deferred[None]:
        self.stopped = True
        if self._wakeup is not None and self._wakeup.active():
            self._wakeup.cancel()
        for d in list(self._connecting.values()):
            d.cancel()
        dones = []
        for proto in list(self.protocols.values()):
            dones.append(proto.done)
            proto.end_session()
        return defer.DeferredList(dones).addCallback(lambda _: None)


class BrokerModeService(service.MultiService):
    """The endpoint in broker mode: the subscription (a child service), the runner and
    the send scheduler; stopping ends the running sessions first."""

    def __init__(self, runner: ExperimentRunner, scheduler: Any = None) -> None:
        super().__init__()
        self.runner = runner
        self.scheduler = scheduler

    def startService(self) -> None:
        if self.scheduler is not None:
            self.scheduler.start()
        super().startService()

    def stopService(self) -> defer.Deferred[None]:
        d = defer.maybeDeferred(super().stopService)
        d.addCallback(lambda _: self.runner.stop())

        def done(_: object) -> None:
            if self.scheduler is not None:
                self.scheduler.stop()

        return d.addCallback(done)
