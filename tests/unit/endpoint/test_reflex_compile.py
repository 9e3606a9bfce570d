"""Reflex modules compiled in the endpoint's compile worker, the one the certificate
monitors use (docs/reflexes.md "Loading"): a ``cdata(hint="reflex")`` is answered when
its module is compiled, no later request is handled before, answers stay in request
order, sessions that end meanwhile clean up, one module at a time for monitors and
reflexes together. The worker thread is a fake (`Jobs`): jobs run when the test says,
so a compile that would run on the reactor thread shows as an answer before any job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ep_fakes import Rig, udp_open
from test_ep_protocol import Transport, mread
from test_monitor_compile import Jobs, cdata
from test_monitor_gate import w as monitor_w
from test_reflex_gate import ECHO, encoded, w
from twisted.internet.testing import MemoryReactorClock

from packetlab import wire
from packetlab.endpoint.checks import OpenGate, RequestGate
from packetlab.endpoint.limits import admit
from packetlab.endpoint.monitors import MAX_MODULE, MonitorHost
from packetlab.endpoint.protocol import ControllerProtocol
from packetlab.endpoint.reflexhook import Reflexes
from packetlab.endpoint.session import Session
from packetlab.monitor import abi as mabi
from packetlab.monitor.runtime import Settings
from packetlab.monitor.worker import CompileWorker
from packetlab.ppks import CertLimits, generate_private_key, issue_certificate
from packetlab.reflex import abi
from packetlab.reflex import wire as rw
from packetlab.reflex.template import reflex_wat
from packetlab.wire.constants import Status

S = Status
OTHER = reflex_wat("(i32.const 1)")  # passes every packet on


def rcdata(wasm: bytes) -> wire.Cdata:
    return wire.Cdata(b"reflex", encoded(wasm))


class Endpoint:
    """What tap.py builds: one compile worker for the monitors and the reflexes."""

    def __init__(self, tmp_path: Path) -> None:
        self.jobs = Jobs()
        self.worker = CompileWorker(self.jobs)
        self.reflexes = Reflexes(Rig().config, self.worker)
        self.monitors = MonitorHost(Settings(), (), str(tmp_path / "pm.sqlite3"), self.worker)


class Conn:
    """A controller connection (StringTransport) to a session of `ep`; with `chain`
    (monitor digests, reflex digests) the controller's certificates list them."""

    def __init__(self, ep: Endpoint, chain: tuple[list[bytes], list[bytes]] | None = None) -> None:
        self.rig = rig = Rig()
        gate: RequestGate = OpenGate()
        if chain is not None:
            gate = ep.monitors.gate(admit(certs(*chain), None, lambda: 1))
        rig.session = Session(rig.config, rig.net, rig.scheduler, rig.clock, gate=gate)  # type: ignore[arg-type]
        rig.frames.clear()
        rig.session.outbox.attach(rig.frames.append)
        attach_to = getattr(gate, "attach", None)
        if attach_to is not None:
            attach_to(rig.session.memory, rig.session.sockets)
        ep.reflexes.install(rig.session)
        self.clock = MemoryReactorClock()
        self.proto = ControllerProtocol(lambda: rig.session, self.clock)
        self.transport = Transport()
        self.proto.makeConnection(self.transport)
        self.framer = wire.Framer()
        self.ended: list[Any] = []
        self.proto.done.addCallback(self.ended.append)

    def feed(self, *msgs: Any) -> None:
        self.proto.dataReceived(
            b"".join(m if isinstance(m, bytes) else wire.encode(m) for m in msgs)
        )

    def out(self) -> list[Any]:
        data = self.transport.value()
        self.transport.clear()
        return list(self.framer.feed(data))


def certs(monitors: list[bytes], reflexes: list[bytes]) -> list[Any]:
    eop, exper, xc = (generate_private_key() for _ in range(3))
    limits = CertLimits(monitor_digests=tuple(monitors), reflex_digests=tuple(reflexes))
    return [
        issue_certificate("pubcmd", exper, xc, 0, 2**31 - 1),
        issue_certificate("exppriv", eop, exper, 0, 2**31 - 1, limits=limits),
    ]


def test_requests_after_a_reflex_cdata_wait_for_its_answer(tmp_path: Path) -> None:
    ep = Endpoint(tmp_path)
    echo = w(ECHO)
    c = Conn(ep)
    c.feed(rcdata(echo), wire.Start(), mread())
    assert ep.jobs.started == 1  # the module went to the worker ...
    assert c.out() == []  # ... and nothing is answered, nothing after the cdata handled
    assert c.rig.session.phase.value == "setup"
    assert c.transport.producerState == "producing"  # a hang-up is still seen
    ep.jobs.run()
    out = c.out()
    assert out[:2] == [wire.Result(0), wire.Result(0)]  # cdata, then start
    assert [m.NAME for m in out[2:]] == ["mdata"]
    c.feed(udp_open(1), rw.Attach(1, abi.digest(echo), b"", b"").frame())  # preloaded
    assert c.out() == [wire.Result(0), wire.Result(0)]
    assert c.rig.session.gate.attached  # type: ignore[attr-defined]


def test_a_reflex_that_cannot_load_is_refused_in_order(tmp_path: Path) -> None:
    ep = Endpoint(tmp_path)
    bad = b"\x00asm\x01\x00\x00\x00\xff"
    echo = w(ECHO)
    c = Conn(ep)
    c.feed(rcdata(bad), rcdata(echo), wire.Start())
    assert c.out() == []
    ep.jobs.run()
    assert c.out() == [wire.Result(S.ECRTBADHDAT)]  # the next cdata compiles now
    ep.jobs.run()
    assert c.out() == [wire.Result(0), wire.Result(0)]


def test_monitors_and_reflexes_share_the_worker_one_module_at_a_time(tmp_path: Path) -> None:
    ep = Endpoint(tmp_path)
    mon, echo = monitor_w(), w(ECHO)
    one = Conn(ep, ([mabi.digest(mon)], [abi.digest(echo)]))
    two = Conn(ep)
    one.feed(cdata(mon), rcdata(echo), wire.Start())
    two.feed(rcdata(echo), wire.Start())
    assert ep.jobs.started == 1  # the monitor compiles; the reflex waits its turn
    ep.jobs.run()
    assert one.out() == [wire.Result(0)]  # the monitor's cdata; the reflex's queued now
    assert two.out() == [] and ep.jobs.started == 2
    ep.jobs.run()  # one compile of echo for both sessions
    assert one.out()[:2] == [wire.Result(0), wire.Result(0)]
    assert two.out() == [wire.Result(0), wire.Result(0)]
    assert ep.jobs.started == 2
    three = Conn(ep)
    three.feed(rcdata(echo), wire.Start())  # cached: answered at once, no job
    assert three.out() == [wire.Result(0), wire.Result(0)]
    assert ep.jobs.started == 2


def test_session_ending_while_its_reflex_compiles(tmp_path: Path) -> None:
    ep = Endpoint(tmp_path)
    echo, other = w(ECHO), w(OTHER)
    one, two = Conn(ep), Conn(ep)
    one.feed(rcdata(echo), wire.Start())
    two.feed(rcdata(other), wire.Start())
    assert ep.jobs.started == 1
    one.proto.connectionLost()
    two.proto.connectionLost()
    assert one.rig.session.waiting is None and one.ended and two.ended
    ep.jobs.run()  # echo's compile ran on: it finishes into the cache, answers nobody
    assert one.out() == [] and two.out() == []
    assert ep.jobs.started == 1  # other's was still queued: nobody waits for it any more
    service = ep.reflexes.service
    assert service.cached(abi.digest(echo)) and not service.cached(abi.digest(other))


def test_an_attach_carrying_its_program_waits_for_its_compile_too(tmp_path: Path) -> None:
    """rattach with the program (IDLE, the controller API's default) compiles in the
    worker as well; the requests after it wait, the answers stay in order."""
    ep = Endpoint(tmp_path)
    echo = w(ECHO)
    c = Conn(ep)
    c.feed(wire.Start(), udp_open(1))
    assert c.out() == [wire.Result(0), wire.Result(0)]
    c.feed(rw.Attach(1, abi.digest(echo), b"", encoded(echo)).frame(), mread(), wire.Nclose(1))
    assert ep.jobs.started == 1 and c.out() == []
    ep.jobs.run()
    out = c.out()
    assert [m.NAME for m in out] == ["result", "mdata", "result"]  # rattach, mread, nclose
    assert out[0] == wire.Result(0) == out[2]
    c.feed(rw.Attach(1, abi.digest(echo), b"", encoded(echo)).frame())  # cached now
    assert ep.jobs.started == 1


def test_an_attach_whose_program_cannot_load(tmp_path: Path) -> None:
    ep = Endpoint(tmp_path)
    bad = reflex_wat("(i32.const 0)").replace('(export "reflex_packet")', "")
    wasm = w(bad)
    c = Conn(ep)
    c.feed(wire.Start(), udp_open(1))
    c.out()
    c.feed(rw.Attach(1, abi.digest(wasm), b"", encoded(wasm)).frame(), mread())
    assert c.out() == []
    ep.jobs.run()
    out = c.out()
    assert out[0] == wire.Result(S.ECRTBADHDAT) and [m.NAME for m in out] == ["result", "mdata"]


def test_session_ending_while_an_attachs_program_compiles(tmp_path: Path) -> None:
    ep = Endpoint(tmp_path)
    echo = w(ECHO)
    c = Conn(ep)
    c.feed(wire.Start(), udp_open(1))
    c.out()
    c.feed(rw.Attach(1, abi.digest(echo), b"", encoded(echo)).frame())
    c.proto.connectionLost()
    assert c.rig.session.waiting is None and c.ended
    ep.jobs.run()
    assert c.out() == [] and ep.reflexes.service.cached(abi.digest(echo))


def test_a_module_over_the_cap_is_refused_before_any_compile(tmp_path: Path) -> None:
    """As for monitors (MAX_MODULE): a larger module would hold the shared worker (and
    ~1 GiB of RSS per MiB) for everyone's monitors and reflexes."""
    ep = Endpoint(tmp_path)
    big = b"\x00asm\x01\x00\x00\x00" + bytes(MAX_MODULE)
    c = Conn(ep)
    c.feed(rcdata(big), wire.Start(), udp_open(1))
    c.feed(rw.Attach(1, abi.digest(big), b"", encoded(big)).frame())
    bad, ok = wire.Result(S.ECRTBADHDAT), wire.Result(0)
    assert c.out() == [bad, ok, ok, bad]  # cdata, start, nopen, rattach
    assert ep.jobs.started == 0


def test_preloaded_reflexes_are_bounded_per_session(tmp_path: Path, monkeypatch: Any) -> None:
    """A chain that lists no reflex digests admits any module: the modules a session
    preloads (each kept compiled until it ends) are bounded in total as the monitors'
    (MAX_SESSION_MODULES), the same module twice counted once, the refusal before any
    compile."""
    import packetlab.endpoint.reflexes as reflexes

    ep = Endpoint(tmp_path)
    echo, other, third = w(ECHO), w(OTHER), w(reflex_wat("(i32.const 2)"))
    cap = len(echo) + len(other) + len(third) - 1
    monkeypatch.setattr(reflexes, "MAX_SESSION_MODULES", cap, raising=False)
    c = Conn(ep)
    c.feed(rcdata(echo))
    ep.jobs.run()
    c.feed(rcdata(echo), rcdata(other))
    ep.jobs.run()
    assert c.out() == [wire.Result(0)] * 3
    started = ep.jobs.started
    c.feed(rcdata(third), wire.Start())
    assert c.out() == [wire.Result(S.ECRTBADHDAT), wire.Result(0)]
    assert ep.jobs.started == started  # refused before the worker saw it
    assert c.rig.session.gate.preloaded.keys() == {abi.digest(echo), abi.digest(other)}  # type: ignore[attr-defined]
