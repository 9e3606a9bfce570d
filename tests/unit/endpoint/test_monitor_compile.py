"""Certificate monitors compiled in a worker thread (docs/monitors.md "Loading"): the
controller sees what an inline compile gives (answers in request order, no later request
handled before the cdata's answer), sessions that end meanwhile clean up, one compile at
a time, the cache. The worker thread is a fake: jobs run when the test says."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ep_fakes import Rig
from test_ep_protocol import Transport, mread
from test_monitor_gate import cert_chain, host, w
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from packetlab import wire
from packetlab.endpoint.limits import admit
from packetlab.endpoint.monitors import MonitorGate, MonitorHost
from packetlab.endpoint.protocol import SETUP_TIMEOUT, WAIT_BUFFER, ControllerProtocol
from packetlab.endpoint.session import Session
from packetlab.monitor import abi
from packetlab.monitor.worker import CompileWorker
from packetlab.wire import vmem
from packetlab.wire.constants import Status

S = Status
JUNK = b"\x00asm\x01\x00\x00\x00\xff"


class Jobs:
    """A thread runner whose jobs run (on this thread) when `run` is called."""

    def __init__(self) -> None:
        self.queued: list[tuple[Callable[[], Any], Deferred[Any]]] = []
        self.started = 0

    def __call__(self, fn: Callable[[], Any]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.queued.append((fn, d))
        self.started += 1
        return d

    def run(self) -> None:
        fn, d = self.queued.pop(0)
        try:
            got = fn()
        except Exception as e:
            d.errback(e)
        else:
            d.callback(got)


def session_rig(h: MonitorHost, *mods: bytes) -> Rig:
    """A session whose chain lists `mods`."""
    rig = Rig()
    gate = h.gate(admit(cert_chain([abi.digest(m) for m in mods]), None, lambda: 1))
    assert isinstance(gate, MonitorGate)
    rig.session = Session(rig.config, rig.net, rig.scheduler, rig.clock, gate=gate)  # type: ignore[arg-type]
    rig.frames.clear()
    rig.session.outbox.attach(rig.frames.append)
    gate.attach(rig.session.memory, rig.session.sockets)
    return rig


class Conn:
    """A controller connection (StringTransport) to a session whose chain lists `mods`."""

    def __init__(self, h: MonitorHost, *mods: bytes) -> None:
        self.rig = rig = session_rig(h, *mods)
        self.clock = MemoryReactorClock()
        self.proto = ControllerProtocol(lambda: rig.session, self.clock)
        self.transport = Transport()
        self.proto.makeConnection(self.transport)
        self.framer = wire.Framer()
        self.ended: list[Any] = []
        self.proto.done.addCallback(self.ended.append)

    def feed(self, *msgs: wire.Message) -> None:
        self.proto.dataReceived(b"".join(wire.encode(m) for m in msgs))

    def out(self) -> list[Any]:
        data = self.transport.value()
        self.transport.clear()
        return list(self.framer.feed(data))


def cdata(mod: bytes) -> wire.Cdata:
    return wire.Cdata(b"monitor", abi.encode(mod))


def threaded(tmp_path: Path) -> tuple[MonitorHost, Jobs]:
    h = host(tmp_path)
    h.worker = CompileWorker(jobs := Jobs())
    return h, jobs


def test_requests_after_a_compiling_cdata_wait_for_its_answer(tmp_path: Path) -> None:
    h, jobs = threaded(tmp_path)
    mod = w()
    c = Conn(h, mod)
    c.feed(cdata(mod), wire.Start(), mread(vmem.IP4NO))
    assert c.out() == []  # nothing answered, nothing after the cdata handled
    assert c.rig.session.phase.value == "setup"
    c.feed(mread(vmem.IP6NO))  # read on, not handled
    assert c.out() == []
    assert c.transport.producerState == "producing"  # a hang-up is still seen
    n = WAIT_BUFFER // len(wire.encode(mread())) + 1
    c.feed(*[mread(vmem.IP4NO)] * n)  # then, past WAIT_BUFFER bytes, the link pauses
    assert c.transport.producerState == "paused"
    assert c.out() == []
    jobs.run()
    out = c.out()
    assert out[:2] == [wire.Result(0), wire.Result(0)]  # cdata, then start
    assert [m.NAME for m in out[2:5]] == ["linfo", "mdata", "mdata"]
    assert len(out) == 5 + n
    assert c.transport.producerState == "producing"


def test_an_undecodable_module_is_refused_as_before(tmp_path: Path) -> None:
    h, jobs = threaded(tmp_path)
    good = w()
    c = Conn(h, JUNK, good)
    c.feed(cdata(JUNK), cdata(good), wire.Start())
    jobs.run()
    assert c.out() == [wire.Result(S.ECRTBADHDAT)]  # the next cdata compiles now
    jobs.run()
    assert c.out() == [wire.Result(0), wire.Result(S.ECRTNOHDAT)]  # JUNK still missing


def test_a_load_failure_still_shows_at_start(tmp_path: Path) -> None:
    h, jobs = threaded(tmp_path)
    bad = w(initialize="unreachable")
    c = Conn(h, bad)
    c.feed(cdata(bad), wire.Start())
    jobs.run()
    assert c.out() == [wire.Result(0), wire.Result(S.ECTLMONUKN, 0)]


def test_session_ending_while_its_module_compiles(tmp_path: Path) -> None:
    h, jobs = threaded(tmp_path)
    a, b = w(), w({"nopen": "(i32.const 3)"})
    one, two = Conn(h, a), Conn(h, b)
    one.feed(cdata(a))
    two.feed(cdata(b))
    assert jobs.started == 1  # one compile at a time for the whole endpoint
    one.proto.connectionLost()
    two.proto.connectionLost()
    assert one.rig.session.waiting is None and one.ended and two.ended
    jobs.run()  # a's compile ran on: it finishes into the cache, answers nobody
    assert one.out() == [] and two.out() == []
    assert jobs.started == 1  # b's was still queued: nobody waits for it any more
    assert h.cached(abi.digest(a)) and not h.cached(abi.digest(b))


def test_setup_window_passing_during_the_compile(tmp_path: Path) -> None:
    h, jobs = threaded(tmp_path)
    mod = w()
    c = Conn(h, mod)
    c.feed(cdata(mod), wire.Start())
    c.clock.advance(SETUP_TIMEOUT + 1)  # as a reactor blocked by an inline compile
    assert not c.transport.disconnecting
    jobs.run()  # the start read before the window ended is handled first
    assert [m.NAME for m in c.out()] == ["result", "result", "linfo"]
    assert not c.transport.disconnecting and c.rig.session.ended is None

    late = Conn(h, w({"nopen": "(i32.const 9)"}))
    late.feed(cdata(w({"nopen": "(i32.const 9)"})))
    late.clock.advance(SETUP_TIMEOUT + 1)
    jobs.run()
    assert late.out() == [wire.Result(0)]
    assert late.transport.disconnected  # no start came: the window ends now


def test_one_compile_per_module_and_the_cache(tmp_path: Path) -> None:
    h, jobs = threaded(tmp_path)
    mod = w({"nopen": "(i32.const 7)"})
    one, two = Conn(h, mod), Conn(h, mod)
    one.feed(cdata(mod))
    two.feed(cdata(mod))
    assert jobs.started == 1
    jobs.run()
    assert one.out() == [wire.Result(0)] and two.out() == [wire.Result(0)]
    three = Conn(h, mod)
    three.feed(cdata(mod), wire.Start())  # cached: answered at once, no job
    assert [m.NAME for m in three.out()] == ["result", "result", "linfo"]
    assert jobs.started == 1


def test_held_requests_in_the_session_keep_their_order(tmp_path: Path) -> None:
    """A driver that hands requests on while the cdata compiles gets them answered
    after it, in order (the protocol itself stops reading)."""
    h, jobs = threaded(tmp_path)
    a, b = w(), w({"nopen": "(i32.const 5)"})
    r = session_rig(h, a, b)
    got = r.send(cdata(a), cdata(b), wire.Start(), mread())
    assert got == []
    jobs.run()
    assert r.new() == [wire.Result(0)]  # b compiles now; start and mread wait again
    jobs.run()
    out = r.new()
    assert out[:2] == [wire.Result(0), wire.Result(0)]
    assert [m.NAME for m in out[2:]] == ["linfo", "linfo", "mdata"]


def test_an_unexpected_compile_failure_is_a_load_failure(tmp_path: Path) -> None:
    h, jobs = threaded(tmp_path)
    mod = w()
    c = Conn(h, mod)
    c.feed(cdata(mod), wire.Start())

    def fails() -> None:
        raise MemoryError("out of memory compiling")

    jobs.queued[0] = (fails, jobs.queued[0][1])
    jobs.run()
    assert c.out() == [wire.Result(0), wire.Result(S.ECTLMONUKN, 0)]
    assert not h.cached(abi.digest(mod))
