"""Reflexes loaded on a session's first reflex request (`packetlab.endpoint.reflexhook`):
until then the session behaves as with the real gate installed, then the real gate takes
over (docs/reflexes.md; idle RSS, docs/performance.md)."""

from __future__ import annotations

from typing import Any

import pytest
from ep_fakes import T0, Rig, udp_open
from test_reflex_gate import ECHO, FAR4, attach, encoded, frames, send, w

from packetlab import wire
from packetlab.endpoint.checks import NDATA_DELIVER, OpenGate
from packetlab.endpoint.reflexes import ReflexGate, ReflexMemory, ReflexService
from packetlab.endpoint.reflexhook import Reflexes, caps_record
from packetlab.endpoint.session import Session
from packetlab.reflex import wire as rw
from packetlab.wire.constants import Status
from packetlab.wire.framer import Unknown


def rig(reflexes: Reflexes | None = None, gate: Any = None, **cfg: Any) -> tuple[Rig, Reflexes]:
    r = Rig(**cfg)
    r.session = Session(r.config, r.net, r.scheduler, r.clock, gate=gate or OpenGate())  # type: ignore[arg-type]
    r.frames.clear()
    r.session.outbox.attach(r.frames.append)
    reflexes = reflexes if reflexes is not None else Reflexes(r.config)
    reflexes.install(r.session)
    return r, reflexes


def real_rig(**cfg: Any) -> Rig:
    r = Rig(**cfg)
    r.session = Session(r.config, r.net, r.scheduler, r.clock, gate=OpenGate())  # type: ignore[arg-type]
    r.frames.clear()
    r.session.outbox.attach(r.frames.append)
    ReflexService.from_config(r.config).install(r.session)
    return r


def opened(r: Rig) -> None:
    assert send(r, wire.Start()) == [wire.Result(0)]
    assert send(r, udp_open(1)) == [wire.Result(0)]


@pytest.mark.parametrize("enabled", [True, False])
def test_caps_record_is_the_real_gates(enabled: bool) -> None:
    r = real_rig(reflex_enable=enabled)
    assert isinstance(r.session.gate, ReflexGate)
    assert caps_record(enabled) == r.session.gate.caps


READS = [
    (rw.CAPS, rw.CAPS_LEN),
    (rw.CAPS - 8, 12),
    (rw.CAPS + 10, 20),
    (rw.CAPS - 4, 64),
    (rw.CAPS + rw.CAPS_LEN, 8),
    (rw.block_addr(1), 64),
    (rw.block_addr(1, rw.B_PARAMS), 8),
    (wire.vmem.HOSTID.addr, wire.vmem.HOSTID.size),
]


def test_an_unused_session_reads_and_writes_vmem_as_with_the_real_gate() -> None:
    (dormant, reflexes), real = rig(), real_rig()
    for r in (dormant, real):
        opened(r)
        send(r, wire.Mwrite(rw.block_addr(1, rw.B_PARAMS), b"\x01\x02"))
        send(r, wire.Mwrite(rw.CAPS, b"\xff" * 4))  # CAPS reads the same after a write
    for addr, length in READS:
        assert send(dormant, wire.Mread(addr, length)) == send(real, wire.Mread(addr, length))
    assert not reflexes.loaded
    assert not isinstance(dormant.session.gate, ReflexGate)
    assert not isinstance(dormant.session.memory, ReflexMemory)


def test_an_unused_session_passes_everything_to_the_inner_gate() -> None:
    (r, reflexes), real = rig(), real_rig()
    for x in (r, real):
        assert send(x, wire.Cdata(b"monitor", b"\x01")) == [wire.Result(int(Status.ECRTBADHDAT))]
        opened(x)
        assert send(x, wire.Nsend(1, 4, 17, 0, 0, b"hi", FAR4, 9)) == [wire.Result(0)]
        x.session.udp_received(x.skt(1), b"in", T0, FAR4, 9)
        assert [type(m).__name__ for m in frames(x)] == ["Ndata"]
    assert not reflexes.loaded


def test_check_ndata_asks_the_inner_gate_only_when_it_checks() -> None:
    class Counting(OpenGate):
        checks_ndata = True

        def check_ndata(self, *args: Any) -> int:
            return 7

    r, _ = rig(gate=Counting())
    opened(r)
    assert r.session.gate.checks_ndata
    assert r.session.gate.check_ndata(r.skt(1), b"", 0, None, None) == 7
    plain, _ = rig()
    opened(plain)
    assert not plain.session.gate.checks_ndata
    assert plain.session.gate.check_ndata(plain.skt(1), b"", 0, None, None) == NDATA_DELIVER


def test_a_reflex_cdata_loads_the_reflexes_and_the_real_gate_answers_it() -> None:
    r, reflexes = rig()
    echo = w(ECHO)
    assert send(r, wire.Cdata(b"reflex", encoded(echo))) == [wire.Result(0)]
    assert reflexes.loaded and isinstance(r.session.gate, ReflexGate)
    assert isinstance(r.session.memory, ReflexMemory)
    opened(r)
    assert send(r, attach(1, echo, program=False)) == [wire.Result(0)]  # preloaded
    r.session.udp_received(r.skt(1), b"hello", T0 + 5, FAR4, 4242)
    assert [p.data for p in r.io(1).sent] == [b"Rello"]
    (m,) = send(r, wire.Mread(rw.CAPS, rw.CAPS_LEN))
    assert m.data == caps_record(True)


def test_an_attach_in_idle_loads_them_and_the_next_session_gets_the_real_gate() -> None:
    r, reflexes = rig()
    opened(r)
    assert not reflexes.loaded
    assert send(r, attach(1, w(ECHO))) == [wire.Result(0)]
    assert reflexes.loaded and isinstance(r.session.gate, ReflexGate)
    r.session.udp_received(r.skt(1), b"hello", T0 + 5, FAR4, 4242)
    assert [p.data for p in r.io(1).sent] == [b"Rello"]
    nxt, _ = rig(reflexes)
    assert isinstance(nxt.session.gate, ReflexGate)


def test_an_unknown_private_frame_is_answered_as_before() -> None:
    (r, reflexes), real = rig(), real_rig()
    for x in (r, real):
        assert send(x, Unknown(0x9F, b"", 0)) == [wire.Result(int(Status.ECTLNOTSUP))]
    assert reflexes.loaded  # a private-use frame is the extension's to answer


def test_reflexes_forbidden_by_the_operator_still_refuse() -> None:
    r, _ = rig(reflex_enable=False)
    assert send(r, wire.Cdata(b"reflex", b"\x01")) == [wire.Result(int(Status.ECRTBADHINT))]
    opened(r)
    (m,) = send(r, wire.Mread(rw.CAPS, rw.CAPS_LEN))
    caps = rw.Caps.decode(m.data)
    assert caps is not None and not caps.allowed


def test_closing_an_unused_session_closes_the_inner_gate() -> None:
    closed: list[bool] = []

    class Closing(OpenGate):
        def close(self) -> None:
            closed.append(True)

    r, _ = rig(gate=Closing())
    r.session.gate.close()
    assert closed == [True]


def test_warming_loads_them_only_with_a_spinner() -> None:
    reflexes = Reflexes(Rig().config)
    reflexes.warm_on(None, 100)
    assert not reflexes.loaded

    class Spinner:
        on_spin: Any = None

    spinner = Spinner()
    reflexes.warm_on(spinner, 100)
    assert reflexes.loaded and spinner.on_spin == reflexes.service.spin
