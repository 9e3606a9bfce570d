"""Reflexes on an endpoint session over fakes (docs/reflexes.md)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, cast

import pytest
import wasmtime
from ep_fakes import LO4, T0, Rig, udp_open

from packetlab import wire
from packetlab.endpoint.checks import OpenGate, RequestGate
from packetlab.endpoint.limits import admit
from packetlab.endpoint.monitors import AuxMonitor, MonitorHost
from packetlab.endpoint.reflexes import ReflexGate, ReflexService
from packetlab.endpoint.session import Session
from packetlab.monitor import abi as mabi
from packetlab.monitor.build import build, find_clang
from packetlab.monitor.runtime import Settings, compile_monitor
from packetlab.monitor.template import monitor_wat
from packetlab.ppks import CertLimits, generate_private_key, issue_certificate
from packetlab.reflex import abi
from packetlab.reflex import wire as rw
from packetlab.reflex.template import reflex_wat
from packetlab.wire.constants import Status
from packetlab.wire.framer import Unknown

S = Status
FAR4 = bytes([192, 0, 2, 1])

# Echo the datagram to its sender, with the first byte replaced by 'R' (a computed reply).
ECHO = reflex_wat(
    """
    (i32.store8 (local.get $data) (i32.const 0x52))
    (drop (call $reflex_send (local.get $sktid) (local.get $data) (local.get $len)
       (local.get $raddr) (local.get $raddrlen) (local.get $rport) (i64.const 0) (i32.const 0)))
    (i32.load8_u (local.get $ctx))""",  # params[0] = the flags (1: pass on too)
    configure="(i32.store8 offset=1024 (local.get $ctx) (i32.const 0x43)) (i32.const 0)",
)
TRAP = reflex_wat("(unreachable)")
SPIN = reflex_wat("(loop $l (br $l)) (i32.const 0)")


def w(wat: str) -> bytes:
    return bytes(wasmtime.wat2wasm(wat))


def encoded(wasm: bytes) -> bytes:
    return mabi.encode(wasm)


def attach(sktid: int, wasm: bytes, params: bytes = b"", program: bool = True) -> Unknown:
    a = rw.Attach(sktid, abi.digest(wasm), params, encoded(wasm) if program else b"")
    f = a.frame()
    return Unknown(f[0], f[4:], 0)


def detach(sktid: int) -> Unknown:
    f = rw.detach_frame(sktid)
    return Unknown(f[0], f[4:], 0)


def make_rig(
    gate: RequestGate | None = None, enabled: bool = True, **settings: Any
) -> tuple[Rig, ReflexGate]:
    r = Rig()
    r.session = Session(r.config, r.net, r.scheduler, r.clock, gate=gate or OpenGate())  # type: ignore[arg-type]
    r.frames.clear()
    r.session.outbox.attach(r.frames.append)
    g = ReflexService(Settings(**settings), enabled).install(r.session)
    return r, g


def frames(r: Rig) -> list[Any]:
    """New frames: reference messages decoded, private ones as (type, decoded)."""
    out: list[Any] = []
    for f in r.frames[r._seen :]:
        if f[0] == rw.RREPORT:
            out.append(rw.Report.decode(f[4:]))
        elif f[0] == rw.RDETACHED:
            out.append(rw.Detached.decode(f[4:]))
        else:
            out.append(wire.decode_frame(f))
    r._seen = len(r.frames)
    return out


def send(r: Rig, *items: Any) -> list[Any]:
    for item in items:
        r.session.handle(item)
    return frames(r)


def opened(r: Rig, sktid: int = 1) -> None:
    assert send(r, wire.Start()) == [wire.Result(0)]
    assert send(r, udp_open(sktid)) == [wire.Result(0)]


def block(r: Rig, sktid: int) -> tuple[Any, ...]:
    (m,) = send(r, wire.Mread(rw.block_addr(sktid), 0x40))
    return struct.unpack(">B3xIIIIIH6x32s", m.data[:0x40])


# ---------------------------------------------------------------------- negotiation


def test_caps_record_in_vmem_and_zero_for_the_rest() -> None:
    r, _ = make_rig()
    opened(r)
    (m,) = send(r, wire.Mread(rw.CAPS, rw.CAPS_LEN))
    caps = rw.Caps.decode(m.data)
    assert caps is not None and caps.allowed
    assert (caps.params_len, caps.state_len, caps.max_emits) == (1024, 1024, abi.MAX_EMITS)
    (m,) = send(r, wire.Mread(rw.block_addr(3), 16))
    assert m.data == bytes(16)  # no reflex on socket 3


def test_reference_endpoint_zeros_mean_no_reflexes() -> None:
    assert rw.Caps.decode(bytes(16)) is None


def test_forbidden_by_the_operator() -> None:
    r, _ = make_rig(enabled=False)
    assert send(r, wire.Cdata(b"reflex", encoded(w(ECHO)))) == [wire.Result(int(S.ECRTBADHINT))]
    opened(r)
    (m,) = send(r, wire.Mread(rw.CAPS, rw.CAPS_LEN))
    caps = rw.Caps.decode(m.data)
    assert caps is not None and not caps.allowed
    assert send(r, attach(1, w(ECHO))) == [wire.Result(int(S.ECTLNOTSUP))]


def test_private_types_in_setup_and_unknown_ones_are_not_supported() -> None:
    r, _ = make_rig()
    assert send(r, attach(1, w(ECHO))) == [wire.Result(int(S.ECTLNOTSUP))]
    opened(r)
    assert send(r, Unknown(0x9F, b"", 0)) == [wire.Result(int(S.ECTLNOTSUP))]


@pytest.mark.parametrize(
    "body",
    [b"", b"\x01\x00" + bytes(31), b"\x01\x00" + bytes(32) + b"\x00\x09abc"],
    ids=["empty", "short", "paramlen-past-end"],
)
def test_malformed_attach_is_refused_and_the_session_goes_on(body: bytes) -> None:
    r, _ = make_rig()
    opened(r)
    assert send(r, Unknown(rw.RATTACH, body, 0)) == [wire.Result(int(S.ECTLBADMSG))]
    assert send(r, wire.Mread(rw.CAPS, 4))[0].data == b"PKRX"


# ---------------------------------------------------------------------- attach


def test_attach_errors() -> None:
    r, _ = make_rig()
    opened(r)
    echo = w(ECHO)
    assert send(r, attach(5, echo)) == [wire.Result(int(S.ESKTNOTOPEN))]
    bad = rw.Attach(1, bytes(32), b"", encoded(echo)).frame()  # digest does not match
    assert send(r, Unknown(bad[0], bad[4:], 0)) == [wire.Result(int(S.ECRTBADHDAT))]
    junk = rw.Attach(1, abi.digest(b"junk"), b"", encoded(b"junk")).frame()
    assert send(r, Unknown(junk[0], junk[4:], 0)) == [wire.Result(int(S.ECRTBADHDAT))]
    nopacket = w(monitor_wat({}))  # a monitor, not a reflex: no reflex_packet
    assert send(r, attach(1, nopacket)) == [wire.Result(int(S.ECRTBADHDAT))]
    assert send(r, attach(1, echo, program=False)) == [wire.Result(int(S.ECRTNOHDAT))]
    assert send(r, attach(1, echo)) == [wire.Result(0)]
    assert send(r, attach(1, echo)) == [wire.Result(int(S.ESKTINUSE))]


def test_cdata_preloads_a_reflex() -> None:
    r, _ = make_rig()
    echo = w(ECHO)
    assert send(r, wire.Cdata(b"reflex", encoded(echo))) == [wire.Result(0)]
    opened(r)
    assert send(r, attach(1, echo, program=False)) == [wire.Result(0)]


def test_without_reflexes_installed_the_reflex_hint_is_bad() -> None:
    r = Rig()
    assert r.send(wire.Cdata(b"reflex", b"\x01")) == [wire.Result(int(S.ECRTBADHINT))]
    r.started()
    r.session.handle(attach(1, w(ECHO)))
    assert r.new() == [wire.Result(int(S.ECTLNOTSUP))]


# ---------------------------------------------------------------------- packets


def test_echo_reflex_replies_at_once_and_consumes_the_packet() -> None:
    r, _ = make_rig()
    opened(r)
    assert send(r, attach(1, w(ECHO))) == [wire.Result(0)]
    r.session.udp_received(r.skt(1), b"hello", T0 + 5, FAR4, 4242)
    sent = r.io(1).sent
    assert [(p.data, p.dest) for p in sent] == [(b"Rello", ("192.0.2.1", 4242))]
    assert frames(r) == []  # consumed: no ndata
    runs, nsent, denied, passed = block(r, 1)[1:5]
    assert (runs, nsent, denied, passed) == (1, 1, 0, 0)


def test_pass_flag_delivers_the_ndata_too() -> None:
    r, _ = make_rig()
    opened(r)
    assert send(r, attach(1, w(ECHO), params=b"\x01")) == [wire.Result(0)]
    r.session.udp_received(r.skt(1), b"hello", T0 + 5, FAR4, 4242)
    (nd,) = frames(r)
    assert isinstance(nd, wire.Ndata) and nd.data == b"hello" and nd.time == T0 + 5
    assert len(r.io(1).sent) == 1


# ECHO with a tag (an ntag for the reply) and a report: the effects of one packet.
TAGGED = reflex_wat(
    """
    (i32.store8 (local.get $data) (i32.const 0x52))
    (drop (call $reflex_send (local.get $sktid) (local.get $data) (local.get $len)
       (local.get $raddr) (local.get $raddrlen) (local.get $rport) (i64.const 0) (i32.const 7)))
    (drop (call $reflex_report (local.get $data) (local.get $len)))
    (i32.const 1)"""
)


def test_a_passed_packets_ndata_comes_before_the_ntag_and_report_it_caused() -> None:
    # Before session 31 (order31) the reply's ntag and the report left inside the
    # reflex's call, ahead of the ndata of the probe they answer (5 of 5 over TLS).
    r, _ = make_rig()
    opened(r)
    assert send(r, attach(1, w(TAGGED))) == [wire.Result(0)]
    for i in range(3):
        r.session.udp_received(r.skt(1), b"probe%d" % i, T0 + 5 + i, FAR4, 4242)
        nd, nt, rep = frames(r)
        assert isinstance(nd, wire.Ndata) and nd.data == b"probe%d" % i
        assert isinstance(nt, wire.Ntag) and nt.tag == 7
        assert isinstance(rep, rw.Report) and rep.data == b"Rrobe%d" % i
    assert r.session.receiving.after_ndata == []


def test_params_written_by_mwrite_and_state_read_by_mread() -> None:
    r, _ = make_rig()
    opened(r)
    assert send(r, attach(1, w(ECHO))) == [wire.Result(0)]
    assert send(r, wire.Mwrite(rw.block_addr(1, rw.B_PARAMS), b"\x01")) == [wire.Result(0)]
    (m,) = send(r, wire.Mread(rw.block_addr(1, rw.B_STATE), 1))
    assert m.data == b"C"  # reflex_configure ran and wrote its state
    r.session.udp_received(r.skt(1), b"x", T0, FAR4, 1)
    assert [type(m).__name__ for m in frames(r)] == ["Ndata"]  # params[0] = 1: pass


def test_reflex_sends_pass_the_monitors(tmp_path: Path) -> None:
    deny = {k: "(i32.const 0)" for k in mabi.CHECKS} | {"nsend": "(i32.const 9)"}
    mon = compile_monitor(w(monitor_wat(deny)))
    h = MonitorHost(Settings(), [AuxMonitor("deny.wasm", mon)], str(tmp_path / "pm.sqlite3"))
    r, _ = make_rig(h.gate(OpenGate()))
    assert send(r, wire.Start())[0] == wire.Result(0)
    frames(r)
    assert send(r, udp_open(1)) == [wire.Result(0)]
    assert send(r, attach(1, w(ECHO))) == [wire.Result(0)]
    r.session.udp_received(r.skt(1), b"hello", T0, FAR4, 4242)
    assert r.io(1).sent == []
    _stat, runs, nsent, denied, _passed, _reports, lasterr = block(r, 1)[:7]
    assert (runs, nsent, denied, lasterr) == (1, 0, 1, int(S.ECTLMONREJ))
    assert frames(r) == []  # the controller hears nothing of the refused send


def cert_chain(limits: CertLimits) -> list[Any]:
    eop, exper, xc = (generate_private_key() for _ in range(3))
    return [
        issue_certificate("pubcmd", exper, xc, 0, 2**31 - 1),
        issue_certificate("exppriv", eop, exper, 0, 2**31 - 1, limits=limits),
    ]


def test_chain_lists_the_reflex_and_valid_dest_applies_to_its_sends() -> None:
    echo = w(ECHO)
    limits = CertLimits(reflex_digests=(abi.digest(echo),), valid_dest=(_net("127.0.0.0/8"),))
    gate = admit(cert_chain(limits), None, lambda: 1_700_000_000 * 10**9)
    r, g = make_rig(gate)
    assert g.listed == frozenset({abi.digest(echo)})
    opened(r)
    assert send(r, attach(1, w(TRAP))) == [wire.Result(int(S.ECRTBADHDAT))]  # not listed
    assert send(r, attach(1, echo)) == [wire.Result(0)]
    r.session.udp_received(r.skt(1), b"hello", T0, FAR4, 4242)  # 192.0.2.1: not valid
    r.session.udp_received(r.skt(1), b"hello", T0, LO4, 4242)
    assert [p.dest for p in r.io(1).sent] == [("127.0.0.1", 4242)]
    assert block(r, 1)[3:4] + block(r, 1)[6:7] == (1, int(S.ESKTPKTDENY))


def test_a_chain_without_reflex_limit_allows_none() -> None:
    gate = admit(cert_chain(CertLimits(max_send_pkt=10)), None, lambda: 1_700_000_000 * 10**9)
    r, g = make_rig(gate)
    assert g.listed == frozenset()
    opened(r)
    assert send(r, attach(1, w(ECHO))) == [wire.Result(int(S.ECRTBADHDAT))]


def _net(text: str) -> Any:
    import ipaddress

    return ipaddress.ip_network(text)


# ---------------------------------------------------------------------- failures


def test_trapping_reflex_is_detached_with_a_notification() -> None:
    r, _ = make_rig()
    opened(r)
    assert send(r, attach(1, w(TRAP))) == [wire.Result(0)]
    r.session.udp_received(r.skt(1), b"a", T0 + 1, FAR4, 1)
    det, nd = frames(r)
    assert isinstance(det, rw.Detached) and det.sktid == 1 and det.reason == rw.STAT_CRASHED
    assert "unreachable" in det.text
    assert isinstance(nd, wire.Ndata) and nd.data == b"a"  # the packet goes on
    r.session.udp_received(r.skt(1), b"b", T0 + 2, FAR4, 1)
    assert [m.data for m in frames(r)] == [b"b"]  # no reflex any more
    assert block(r, 1)[0] == rw.STAT_CRASHED
    assert send(r, attach(1, w(ECHO))) == [wire.Result(0)]  # may attach again


def test_slow_reflex_is_cut_off_and_detached() -> None:
    r, _ = make_rig(deadline_ms=5)
    opened(r)
    assert send(r, attach(1, w(SPIN))) == [wire.Result(0)]
    r.session.udp_received(r.skt(1), b"a", T0 + 1, FAR4, 1)
    det, _nd = frames(r)
    assert det.reason == rw.STAT_SLOW and "deadline" in det.text
    assert block(r, 1)[0] == rw.STAT_SLOW


def test_bad_pointer_in_send_is_a_crash() -> None:
    bad = reflex_wat(
        "(drop (call $reflex_send (local.get $sktid) (i32.const -16) (i32.const 64)"
        " (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 0) (i32.const 0))) (i32.const 0)"
    )
    r, _ = make_rig()
    opened(r)
    assert send(r, attach(1, w(bad))) == [wire.Result(0)]
    r.session.udp_received(r.skt(1), b"a", T0 + 1, FAR4, 1)
    det, _nd = frames(r)
    assert det.reason == rw.STAT_CRASHED and r.io(1).sent == []


def test_emits_per_call_are_bounded() -> None:
    flood = reflex_wat(
        """(local.set $len (i32.const 0))
        (block $done (loop $l
          (br_if $done (i32.ge_u (local.get $len) (i32.const 1000)))
          (drop (call $reflex_send (local.get $sktid) (local.get $data) (i32.const 1)
            (local.get $raddr) (local.get $raddrlen) (local.get $rport) (i64.const 0)
            (i32.const 0)))
          (local.set $len (i32.add (local.get $len) (i32.const 1)))
          (br $l)))
        (i32.const 0)"""
    )
    r, _ = make_rig()
    opened(r)
    assert send(r, attach(1, w(flood))) == [wire.Result(0)]
    r.session.udp_received(r.skt(1), b"a", T0 + 1, FAR4, 1)
    assert len(r.io(1).sent) == abi.MAX_EMITS


def test_sends_past_the_per_call_bound_are_counted_in_the_block() -> None:
    """A reflex asking for 100 sends a packet: 64 went out (`sent`), the 36 answered -1
    were counted nowhere the controller sees (neither `sent` nor `denied`; session 31).
    Now the block's REFUSED counter (0x01C) has them, and the 4 reports past 16 too."""
    flood = reflex_wat(
        """(local $i i32)
        (block $done (loop $l
          (br_if $done (i32.ge_u (local.get $i) (i32.const 100)))
          (drop (call $reflex_send (local.get $sktid) (local.get $data) (local.get $len)
            (local.get $raddr) (local.get $raddrlen) (local.get $rport) (i64.const 0)
            (i32.const 0)))
          (if (i32.lt_u (local.get $i) (i32.const 20))
            (then (drop (call $reflex_report (local.get $data) (local.get $len)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l)))
        (i32.const 0)"""
    )
    r, _ = make_rig()
    opened(r)
    assert send(r, attach(1, w(flood))) == [wire.Result(0)]
    for i in range(2):
        r.session.udp_received(r.skt(1), b"a", T0 + 1 + i, FAR4, 1)
    assert len([f for f in frames(r) if isinstance(f, rw.Report)]) == 2 * 16
    (m,) = send(r, wire.Mread(rw.block_addr(1), 0x40))
    head = rw.BLOCK_HEAD.unpack_from(m.data)
    runs, nsent, denied, reports, refused = head[1], head[2], head[3], head[5], head[7]
    assert (runs, nsent, denied, reports) == (2, 2 * abi.MAX_EMITS, 0, 2 * 16)
    assert refused == 2 * (100 - abi.MAX_EMITS) + 2 * (20 - 16)
    assert struct.unpack_from(">I", m.data, rw.B_REFUSED) == (refused,)


def test_init_refusal_and_crash() -> None:
    r, _ = make_rig()
    opened(r)
    refuse = reflex_wat("(i32.const 0)", init="(i32.const 3)")
    assert send(r, attach(1, w(refuse))) == [wire.Result(int(S.EUNKFAULT))]
    crash = reflex_wat("(i32.const 0)", init="(unreachable)")
    res, det = send(r, attach(1, w(crash)))
    assert res == wire.Result(int(S.EUNKFAULT)) and det.reason == rw.STAT_CRASHED


# ---------------------------------------------------------------------- reports, timers


def test_reports_and_timers() -> None:
    wat = reflex_wat(
        "(drop (call $reflex_report (local.get $data) (local.get $len))) (i32.const 0)",
        init="(drop (call $reflex_timer_at (i64.add (call $reflex_now) (i64.const 1000))))"
        " (i32.const 0)",
        timer="(i32.store8 offset=1024 (local.get $ctx) (i32.const 0x54))"
        " (i32.store (i32.const 0) (i32.const 0x21))"
        " (drop (call $reflex_report (i32.const 0) (i32.const 1))) (i32.const 0)",
    )
    r, _ = make_rig()
    opened(r)
    assert send(r, attach(1, w(wat))) == [wire.Result(0)]
    r.session.udp_received(r.skt(1), b"rec", T0 + 1, FAR4, 1)
    (rep,) = frames(r)
    assert isinstance(rep, rw.Report) and rep.sktid == 1 and rep.data == b"rec"
    r.run_timer_to(r.clock.now + 10_000_000)
    (rep,) = frames(r)
    assert rep.data == b"!"
    (m,) = send(r, wire.Mread(rw.block_addr(1, rw.B_STATE), 1))
    assert m.data == b"T"


# ---------------------------------------------------------------------- detaching


def test_detach_and_nclose() -> None:
    r, _ = make_rig()
    opened(r)
    assert send(r, detach(1)) == [wire.Result(int(S.ESKTNOTOPEN))]
    assert send(r, attach(1, w(ECHO))) == [wire.Result(0)]
    assert send(r, detach(1)) == [wire.Result(0)]
    assert block(r, 1)[0] == rw.STAT_DETACHED
    r.session.udp_received(r.skt(1), b"a", T0, FAR4, 1)
    assert len(frames(r)) == 1 and r.io(1).sent == []
    assert send(r, attach(1, w(ECHO))) == [wire.Result(0)]
    assert send(r, wire.Nclose(1)) == [wire.Result(0)]
    assert block(r, 1)[0] == rw.STAT_DETACHED  # its socket is gone
    assert send(r, udp_open(1)) == [wire.Result(0)]
    assert send(r, attach(1, w(ECHO))) == [wire.Result(0)]


def test_session_close_closes_the_reflexes() -> None:
    r, g = make_rig()
    opened(r)
    assert send(r, attach(1, w(ECHO))) == [wire.Result(0)]
    r.session.close()
    assert g.attached == {}


# ---------------------------------------------------------------------- AIMD example


def _aimd_state(r: Rig) -> tuple[int, ...]:
    (m,) = send(r, wire.Mread(rw.block_addr(1, rw.B_STATE), 36))
    return struct.unpack(">9I", m.data)


@pytest.mark.skipif(find_clang() is None, reason="clang/lld not installed")
def test_aimd_example_grows_halves_and_times_out() -> None:
    aimd = build(Path(__file__).resolve().parents[3] / "examples" / "reflexes" / "aimd.c")
    params = FAR4 + struct.pack(">HHII", 9000, 100, 0, 50_000)  # 100 B, no end, 50 ms RTO
    r, _ = make_rig()
    opened(r)
    assert send(r, attach(1, aimd, params)) == [wire.Result(0)]
    io = r.io(1)
    assert len(io.sent) == 1 and io.sent[0].dest == ("192.0.2.1", 9000)

    def ack(seq: int) -> None:
        pkt = next(p for p in io.sent if struct.unpack(">I", p.data[:4])[0] == seq)
        r.session.udp_received(r.skt(1), pkt.data[:12], T0, FAR4, 9000)

    ack(0)  # cwnd 1 -> 2: two more
    assert len(io.sent) == 3
    ack(1)
    ack(2)  # cwnd 2.5, 3.x: the window keeps filling
    cwnd, nxt, high, acks, halvings = _aimd_state(r)[:5]
    assert (cwnd, high, acks, halvings) == (2900, 3, 3, 0) and nxt - high == 2
    ack(nxt - 1)  # a gap: the packets between were lost
    cwnd2, _, high2, _, halvings2 = _aimd_state(r)[:5]
    assert halvings2 == 1 and cwnd2 == cwnd // 2 and high2 == nxt
    r.run_timer_to(r.clock.now + 10**9)  # no ack for a second: timeout, one packet again
    state = _aimd_state(r)
    assert state[0] == 1000 and state[5] == 1


def test_a_timer_of_a_closed_socket_sends_nothing_on_its_successor() -> None:
    wat = reflex_wat(
        "(i32.const 0)",
        init="(drop (call $reflex_timer_at (i64.add (call $reflex_now) (i64.const 1000))))"
        " (i32.const 0)",
        timer="(i32.store (i32.const 16) (i32.const 0x0100007f))"  # 127.0.0.1
        " (drop (call $reflex_send (i32.const 1) (i32.const 0) (i32.const 1)"
        " (i32.const 16) (i32.const 4) (i32.const 9) (i64.const 0) (i32.const 0))) (i32.const 0)",
    )
    r, g = make_rig()
    opened(r)
    assert send(r, attach(1, w(wat))) == [wire.Result(0)]
    assert send(r, wire.Nclose(1)) == [wire.Result(0)]
    assert send(r, udp_open(1)) == [wire.Result(0)]  # a new socket with the same id
    r.run_timer_to(r.clock.now + 10_000_000)
    assert r.io(1).sent == [] and g.attached == {}


def test_memory_cap_holds_and_reports_are_bounded() -> None:
    bomb = reflex_wat(
        "(i32.store offset=1024 (local.get $ctx) (memory.grow (i32.const 1000)))"
        " (block $done (loop $l (br_if $done (i32.ge_u (local.get $len) (i32.const 100)))"
        " (drop (call $reflex_report (local.get $data) (i32.const 1)))"
        " (local.set $len (i32.add (local.get $len) (i32.const 1))) (br $l)))"
        " (i32.const 0)"
    )
    r, _ = make_rig(memory_max=1 << 20)
    opened(r)
    assert send(r, attach(1, w(bomb))) == [wire.Result(0)]
    r.session.udp_received(r.skt(1), b"a", T0, FAR4, 1)
    reports = frames(r)
    assert len(reports) == 16  # MAX_REPORTS per call; the rest refused
    (m,) = send(r, wire.Mread(rw.block_addr(1, rw.B_STATE), 4))
    assert m.data == b"\xff\xff\xff\xff"  # memory.grow past MonitorMemoryMax: -1
    assert block(r, 1)[0] == rw.STAT_RUNNING


def test_malformed_detach() -> None:
    r, _ = make_rig()
    opened(r)
    assert send(r, Unknown(rw.RDETACH, b"\x01\x02", 0)) == [wire.Result(int(S.ECTLBADMSG))]


def test_malformed_and_refused_reflex_requests_by_the_thousand_log_a_few_lines() -> None:
    """5,000 malformed rattach frames (4 bytes each) were 5,000 log lines; a controller
    that reads its answers could fill the endpoint's disk. 20 lines a minute now, the
    rest counted; every frame still gets its ECTLBADMSG."""
    from twisted.logger import ILogObserver, Logger, formatEvent

    r, g = make_rig()
    opened(r)
    lines: list[str] = []
    g.log = Logger(observer=cast(ILogObserver, lambda e: lines.append(formatEvent(e))))
    bad = Unknown(rw.RATTACH, b"abc", 0)
    refused = attach(1, w(ECHO))  # a digest no chain lists (below)
    g.listed = frozenset()
    got = send(r, *[bad] * 5000, *[refused] * 50)
    assert got[:5000] == [wire.Result(S.ECTLBADMSG)] * 5000
    assert got[5000:] == [wire.Result(S.ECRTBADHDAT)] * 50
    assert len(lines) == 20, lines[-3:]
    assert "malformed reflex request" in lines[0]
    assert "the next ones are counted, not logged" in lines[-1]


# ---------------------------------------------------------------------- freeing the store


@pytest.mark.parametrize("how", ["rdetach", "crash", "nclose", "session end"])
def test_a_detached_reflexs_store_is_freed_without_the_cyclic_gc(how: str) -> None:
    """A reflex's box (its wasmtime store, with the reflex's memory) waited for the cyclic
    GC after it was detached or its session ended: the instance was not the box's, so
    `Box.close` did not break the cycles through its host functions (session 20, ep20)."""
    import gc
    import weakref

    gc.collect()
    gc.disable()
    try:
        r, g = make_rig()
        opened(r)
        assert send(r, attach(1, w(TRAP if how == "crash" else ECHO))) == [wire.Result(0)]
        a = g.attached[r.skt(1)]
        store, inst = weakref.ref(a.box.store), weakref.ref(a.inst)
        del a
        if how == "rdetach":
            assert send(r, detach(1)) == [wire.Result(0)]
        elif how == "crash":
            r.session.udp_received(r.skt(1), b"a", T0 + 1, FAR4, 1)
            assert isinstance(frames(r)[0], rw.Detached)
        elif how == "nclose":
            assert send(r, wire.Nclose(1)) == [wire.Result(0)]
            assert block(r, 1)[0] == rw.STAT_DETACHED
        else:
            r.session.close()
        assert g.attached == {} and g.by_sktid == {}
        assert inst() is None and store() is None
    finally:
        gc.enable()


def test_a_reflex_that_fails_to_load_does_not_keep_its_store() -> None:
    import gc
    import weakref

    from packetlab.monitor import runtime as mrt

    boxes: list[weakref.ref[Any]] = []
    real = mrt.Box

    class Spy(real):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            boxes.append(weakref.ref(self.store))

    gc.collect()
    gc.disable()
    try:
        r, _ = make_rig()
        opened(r)
        bad = reflex_wat("(i32.const 0)", extra="(func $s unreachable) (start $s)")
        mp = pytest.MonkeyPatch()
        mp.setattr(mrt, "Box", Spy)
        try:
            assert send(r, attach(1, w(bad))) == [wire.Result(int(S.ECRTBADHDAT))]
        finally:
            mp.undo()
        assert len(boxes) == 1 and boxes[0]() is None
    finally:
        gc.enable()
