"""Monitors on an endpoint session over fakes: every row of PROTOCOL.md §8.3 and §8.5."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from ep_fakes import LO4, Rig, tcp_open, udp_open, udp_send

from packetlab import wire
from packetlab.endpoint.checks import OpenGate, RequestGate
from packetlab.endpoint.config import EndpointConfig, parse_config
from packetlab.endpoint.limits import admit
from packetlab.endpoint.monitors import AuxMonitor, MonitorGate, MonitorHost
from packetlab.endpoint.session import Session
from packetlab.monitor import abi
from packetlab.monitor.persist import PersistentMemory, cert_key
from packetlab.monitor.runtime import Settings, compile_monitor
from packetlab.monitor.template import monitor_wat
from packetlab.ppks import CertLimits, generate_private_key, issue_certificate
from packetlab.wire.constants import Status

S = Status
ALLOW = {k: "(i32.const 0)" for k in abi.CHECKS}
MONREJ, MONUKN = int(S.ECTLMONREJ), int(S.ECTLMONUKN)


def w(checks: dict[str, str] | None = None, **kw: Any) -> bytes:
    return bytes(wasmtime.wat2wasm(monitor_wat(ALLOW | (checks or {}), **kw)))


def host(tmp_path: Path, *aux: bytes, **settings: Any) -> MonitorHost:
    mons = [AuxMonitor(f"aux{i}.wasm", compile_monitor(m)) for i, m in enumerate(aux)]
    return MonitorHost(Settings(**settings), mons, str(tmp_path / "pm.sqlite3"))


def rig(gate: RequestGate) -> Rig:
    r = Rig()
    r.session = Session(r.config, r.net, r.scheduler, r.clock, gate=gate)  # type: ignore[arg-type]
    r.frames.clear()
    r.session.outbox.attach(r.frames.append)
    if isinstance(gate, MonitorGate):
        gate.attach(r.session.memory, r.session.sockets, r.session.nopen_error)
    return r


def aux_rig(tmp_path: Path, *aux: bytes, **settings: Any) -> Rig:
    return rig(host(tmp_path, *aux, **settings).gate(OpenGate()))


def started(r: Rig, n: int) -> list[Any]:
    """Start; the start result and then one linfo per monitor."""
    out = r.send(wire.Start())
    assert out[0] == wire.Result(0), out
    assert [m.NAME for m in out[1:]] == ["linfo"] * n
    return out[1:]


def reject(rv: int) -> dict[str, str]:
    return {k: f"(i32.const {rv})" for k in abi.CHECKS}


# ---------------------------------------------------------------------- start, linfo


def test_no_monitor_leaves_the_gate_alone(tmp_path: Path) -> None:
    inner = OpenGate()
    assert host(tmp_path).gate(inner) is inner


def test_linfo_per_monitor_after_start_with_host_order_index(tmp_path: Path) -> None:
    init = "(i32.store8 (local.get $info) (i32.const 0x41)) (i32.const 1)"
    r = aux_rig(tmp_path, w(), w(initialize=init), w())
    infos = started(r, 3)
    assert [m.aux for m in infos] == [i.to_bytes(2, sys.byteorder) for i in range(3)]
    assert [m.name for m in infos] == [b"monitor"] * 3
    assert [m.info for m in infos] == [b"", b"A", b""]


def test_allow_all_lets_requests_through(tmp_path: Path) -> None:
    r = aux_rig(tmp_path, w())
    started(r, 1)
    assert r.send(udp_open()) == [wire.Result(0)]
    assert r.send(udp_send(tag=0)) == [wire.Result(0)]
    assert len(r.io(1).sent) == 1


# ---------------------------------------------------------------------- requests


def test_reject_with_reason_and_list_order(tmp_path: Path) -> None:
    r = aux_rig(tmp_path, w(), w({"nopen": "(i32.const 5)"}), w(reject(9)))
    started(r, 3)
    assert r.send(udp_open()) == [wire.Result(MONREJ, 1, 5)]  # the first non-zero wins
    assert r.session.sockets[1] is None  # a rejected socket stays FREE


def test_negative_rv_hides_the_reason(tmp_path: Path) -> None:
    r = aux_rig(tmp_path, w(reject(-7)))
    started(r, 1)
    assert r.send(udp_open()) == [wire.Result(MONREJ, 0, 0)]


@pytest.mark.parametrize("report", [False, True])
@pytest.mark.parametrize("how", ["trap", "big", "missing"])
def test_crash_answers_per_report_crash(tmp_path: Path, report: bool, how: str) -> None:
    bodies = {"trap": {"nopen": "unreachable"}, "big": {"nopen": "(i32.const 65535)"}}
    mod = w(bodies.get(how, {}))
    if how == "missing":
        mod = bytes(wasmtime.wat2wasm(monitor_wat({"nsend": "(i32.const 0)"})))
    r = aux_rig(tmp_path, w(), mod, report_crash=report)
    started(r, 2)
    want = wire.Result(MONUKN, 1) if report else wire.Result(MONREJ, 1, 0)
    assert r.send(udp_open()) == [want]
    assert r.session.sockets[1] is None


def test_monitors_run_before_the_endpoints_own_checks(tmp_path: Path) -> None:
    r = aux_rig(
        tmp_path,
        w({"nopen": "(i32.eq (local.get $sktid) (i32.const 1))", "nclose": "(i32.const 3)"}),
    )
    started(r, 1)
    assert r.send(udp_open(sktid=2)) == [wire.Result(0)]
    # sktid 1 free but rejected; family 6 (not configured) still gets the monitor's answer
    assert r.send(udp_open(sktid=1)) == [wire.Result(MONREJ, 0, 1)]
    bad_family = wire.Nopen(sktid=1, family=6, proto=17, rbufsz=1, laddr=bytes(16), lport=0)
    assert r.send(bad_family) == [wire.Result(MONREJ, 0, 1)]
    assert r.send(wire.Nclose(sktid=2)) == [wire.Result(MONREJ, 0, 3)]
    assert r.session.sockets[2] is not None  # a rejected nclose leaves the socket OPEN


def test_rejected_nsend_is_never_sent_and_gets_no_ntag(tmp_path: Path) -> None:
    # Reject UDP sends to port 53 (rport bytes 0x00 0x35 at the rport pointer).
    body = "(i32.eq (i32.load8_u (i32.add (local.get $rport) (i32.const 1))) (i32.const 53))"
    r = aux_rig(tmp_path, w({"nsend": body}))
    started(r, 1)
    assert r.send(udp_open()) == [wire.Result(0)]
    assert r.send(udp_send(tag=5)) == [wire.Result(MONREJ, 0, 1)]
    assert r.io(1).sent == []
    other = wire.Nsend(sktid=1, family=4, proto=17, time=0, tag=6, data=b"x", raddr=LO4, rport=54)
    out = r.send(other)
    assert out[0] == wire.Result(0)
    assert len(r.io(1).sent) == 1
    assert [m.tag for m in out if isinstance(m, wire.Ntag)] == [6]


def test_check_arguments_and_curpkt(tmp_path: Path) -> None:
    # nsend: reason = payload byte 2 (read through CURPKT_DATA) + 256 * (time >> 40)
    body = (
        "(drop (call $read_vmem_region (i32.const 2) (i32.const 300) (i32.const 1)))"
        " (i32.add (i32.load8_u (i32.const 300))"
        " (i32.shl (i32.wrap_i64 (i64.shr_u (local.get $time) (i64.const 40)))"
        " (i32.const 8)))"
    )
    r = aux_rig(tmp_path, w({"nsend": body}))
    started(r, 1)
    r.send(udp_open())
    msg = udp_send(data=b"ab\x07d", time=3 << 40)
    assert r.send(msg) == [wire.Result(MONREJ, 0, 7 + 3 * 256)]


def test_tcp_nopen_arguments(tmp_path: Path) -> None:
    # reason = raddrlen * 1000 + rport (low byte) + laddrlen
    body = (
        "(i32.add (i32.add (i32.mul (local.get $raddrlen) (i32.const 1000))"
        " (i32.load8_u (i32.add (local.get $rport) (i32.const 1))))"
        " (i32.add (local.get $laddrlen) (local.get $lportlen)))"
    )
    r = aux_rig(tmp_path, w({"nopen": body}))
    started(r, 1)
    assert r.send(tcp_open(rport=80)) == [wire.Result(MONREJ, 0, 4000 + 80 + 4 + 2)]


def test_result_callbacks_get_the_errid(tmp_path: Path) -> None:
    # Each callback stores its errid in pm[sktid]; a rejecting monitor's request never
    # reaches the real handling, so no callback then.
    store = "(i32.store8 (i32.add (local.get $pm) (local.get $sktid)) (local.get $errid))"
    mod = w(results={"nopen": store, "nclose": store})
    h = host(tmp_path, mod)
    r = rig(h.gate(OpenGate()))
    started(r, 1)
    r.send(udp_open(sktid=1))
    r.send(udp_open(sktid=1))  # ESKTINUSE
    r.send(wire.Nclose(sktid=9))  # ESKTNOTOPEN
    gate = r.session.gate
    assert isinstance(gate, MonitorGate)
    pm = gate.monitors[0].persistent()
    assert pm[1] == int(S.ESKTINUSE) and pm[9] == int(S.ESKTNOTOPEN)


class DenyingSends(OpenGate):
    """A limits gate that denies every nsend (ESKTPKTDENY)."""

    def check(self, msg: Any) -> wire.Result | None:
        return wire.Result(int(S.ESKTPKTDENY)) if isinstance(msg, wire.Nsend) else None


def test_result_callbacks_see_the_socket_error_before_a_limits_deny(tmp_path: Path) -> None:
    # The limits say ESKTPKTDENY, but the session answers a send on a free socket
    # ESKTNOTOPEN and one of the wrong family/proto ESKTNOMATCH: the callbacks see that.
    store = "(i32.store8 (i32.add (local.get $pm) (local.get $sktid)) (local.get $errid))"
    h = host(tmp_path, w(results={"nsend": store}))
    r = rig(h.gate(DenyingSends()))
    started(r, 1)
    r.send(udp_open(sktid=1))
    mismatch = wire.Nsend(sktid=1, family=4, proto=6, time=0, tag=1, data=b"x")
    got = r.send(udp_send(sktid=1), udp_send(sktid=5), mismatch)
    assert [m.errid for m in got] == [S.ESKTPKTDENY, S.ESKTNOTOPEN, S.ESKTNOMATCH]
    gate = r.session.gate
    assert isinstance(gate, MonitorGate)
    pm = gate.monitors[0].persistent()
    assert pm[5] == int(S.ESKTNOTOPEN)
    assert pm[1] == int(S.ESKTNOMATCH)  # the last send on socket 1
    r.send(udp_send(sktid=1))
    assert gate.monitors[0].persistent()[1] == int(S.ESKTPKTDENY)


class DenyingOpens(OpenGate):
    """A limits gate whose max_socket_count is 1: the nopens after the first are ENORES."""

    def __init__(self) -> None:
        self.opened = 0

    def check(self, msg: Any) -> wire.Result | None:
        if isinstance(msg, wire.Nopen) and self.opened >= 1:
            return wire.Result(int(S.ENORES))
        return None

    def done(self, msg: Any, errid: int) -> None:
        self.opened += isinstance(msg, wire.Nopen) and errid == 0


def test_nopen_result_callbacks_see_the_socket_error_before_a_limits_deny(
    tmp_path: Path,
) -> None:
    # The limits say ENORES, but the session answers an nopen on a sktid in use
    # ESKTINUSE and one of a protocol not offered (raw) ESKTNOPROTO: the callbacks see
    # what the controller gets.
    store = "(i32.store8 (i32.add (local.get $pm) (local.get $sktid)) (local.get $errid))"
    h = host(tmp_path, w(results={"nopen": store}))
    r = rig(h.gate(DenyingOpens()))
    started(r, 1)
    raw = wire.Nopen(sktid=2, family=4, proto=0, rbufsz=1, laddr=bytes(4))
    got = r.send(udp_open(sktid=1), udp_open(sktid=1), raw, udp_open(sktid=3))
    assert [m.errid for m in got] == [0, S.ESKTINUSE, S.ESKTNOPROTO, S.ENORES]
    gate = r.session.gate
    assert isinstance(gate, MonitorGate)
    pm = gate.monitors[0].persistent()
    assert (pm[1], pm[2], pm[3]) == (int(S.ESKTINUSE), int(S.ESKTNOPROTO), int(S.ENORES))


# ---------------------------------------------------------------------- ndata


def ndata_rig(tmp_path: Path, rv: str, report: bool = False) -> Rig:
    r = aux_rig(tmp_path, w({"ndata": rv}), report_crash=report)
    started(r, 1)
    assert r.send(udp_open()) == [wire.Result(0)]
    return r


@pytest.mark.parametrize(
    ("rv", "report", "want"),
    [
        ("(i32.const 0)", False, "ndata"),
        ("(i32.const 7)", False, 7),
        ("(i32.const -3)", False, 0xFFFD),  # §8.5: low 16 bits, not silent
        ("unreachable", False, None),  # crash: dropped silently
        ("unreachable", True, 0),  # crash with ReportCrash: nblock(0)
        ("(i32.const 70000)", True, 0),
    ],
)
def test_ndata_verdicts(tmp_path: Path, rv: str, report: bool, want: Any) -> None:
    r = ndata_rig(tmp_path, rv, report)
    r.session.udp_received(r.skt(1), b"hello", 123, LO4, 53)
    out = r.new()
    if want == "ndata":
        assert [m.NAME for m in out] == ["ndata"]
    elif want is None:
        assert out == []
    else:
        assert out == [wire.Nblock(sktid=1, family=4, proto=17, monerrid=want, time=123)]


def test_ndata_sees_the_payload_and_source(tmp_path: Path) -> None:
    body = (
        "(drop (call $read_vmem_region (i32.const 0) (i32.const 300) (i32.const 1)))"
        " (i32.add (i32.load8_u (i32.const 300)) (i32.load8_u (local.get $raddr)))"
    )
    r = ndata_rig(tmp_path, body)
    r.session.udp_received(r.skt(1), b"\x05rest", 9, LO4, 53)
    assert r.new()[0] == wire.Nblock(sktid=1, family=4, proto=17, monerrid=5 + 127, time=9)


# ---------------------------------------------------------------------- load failures


@pytest.mark.parametrize(
    "init",
    ["unreachable", "(loop (br 0)) (i32.const 0)"],
)
def test_initialize_failure_answers_monukn_and_ends(tmp_path: Path, init: str) -> None:
    r = aux_rig(tmp_path, w(), w(initialize=init), deadline_ms=20)
    assert r.send(wire.Start()) == [wire.Result(MONUKN, 1)]
    assert r.session.ended is not None


def test_initialize_claiming_more_info_than_the_buffer_starts_with_the_info_cut(
    tmp_path: Path,
) -> None:
    """The reference truncates initialize's info to PKTLAB_LINFO_INFO_MAX (pktmon
    README): start succeeds, the linfo carries 0x10000 bytes (it was ECTLMONUKN)."""
    r = aux_rig(tmp_path, w(), w(initialize="(i32.const 0x20000)"))
    out = r.send(wire.Start())
    assert out[0] == wire.Result(0)
    assert [m.NAME for m in out[1:]] == ["linfo", "linfo"]
    assert len(out[2].info) == 0x10000
    assert r.session.ended is None


def test_instantiation_failure_answers_monukn(tmp_path: Path) -> None:
    r = aux_rig(tmp_path, w(extra='  (data (i32.const 300000) "x")\n'))
    assert r.send(wire.Start()) == [wire.Result(MONUKN, 0)]
    assert r.session.ended is not None


def test_deadline_keeps_the_session_and_the_monitor(tmp_path: Path) -> None:
    spin = "(if (i32.eq (local.get $sktid) (i32.const 1)) (then (loop (br 0)))) (i32.const 0)"
    # A second of monitor time saved up: a spin stretched past two deadlines by a loaded
    # machine must not spend it (the next request would be refused: not this test's
    # subject, `test_monitor_time.py`'s).
    r = aux_rig(tmp_path, w({"nopen": spin}), deadline_ms=20, report_crash=True, time_burst_ms=1000)
    started(r, 1)
    assert r.send(udp_open(sktid=1)) == [wire.Result(MONUKN, 0)]
    assert r.send(udp_open(sktid=2)) == [wire.Result(0)]


# ---------------------------------------------------------------------- certificates


def cert_chain(digests: list[bytes]) -> list[Any]:
    eop, exper, xc = (generate_private_key() for _ in range(3))
    limits = CertLimits(monitor_digests=tuple(digests))
    return [
        issue_certificate("pubcmd", exper, xc, 0, 2**31 - 1),
        issue_certificate("exppriv", eop, exper, 0, 2**31 - 1, limits=limits),
    ]


def cert_rig(h: MonitorHost, certs: list[Any]) -> Rig:
    return rig(h.gate(admit(certs, None, lambda: 1_700_000_000 * 10**9)))


def test_cdata_matched_against_the_chain(tmp_path: Path) -> None:
    a, b, other = w(), w(reject(4)), w(reject(5))
    certs = cert_chain([abi.digest(a), abi.digest(b)])
    h = host(tmp_path, w())  # plus one aux monitor, after the cert ones
    r = cert_rig(h, certs)
    bad = [
        wire.Cdata(b"monitor", abi.encode(other)),  # not in the chain
        wire.Cdata(b"monitor", b"\x00" + a),  # not a WASM program
        wire.Cdata(b"filter", b"\x00"),  # no filter digests in any chain
        wire.Cdata(b"bogus", b""),
    ]
    got = [r.send(m)[0].errid for m in bad]
    assert got == [S.ECRTBADHDAT, S.ECRTBADHDAT, S.ECRTBADHDAT, S.ECRTBADHINT]
    assert r.send(wire.Cdata(b"monitor", abi.encode(b))) == [wire.Result(0)]
    assert r.send(wire.Cdata(b"monitor", abi.encode(a))) == [wire.Result(0)]
    started(r, 3)
    # cdata order: b is monitor 0 and rejects first
    assert r.send(udp_open()) == [wire.Result(MONREJ, 0, 4)]


def test_start_refused_while_a_digest_is_missing(tmp_path: Path) -> None:
    a, b = w(), w(reject(3))
    r = cert_rig(host(tmp_path), cert_chain([abi.digest(a), abi.digest(b)]))
    assert r.send(wire.Cdata(b"monitor", abi.encode(a))) == [wire.Result(0)]
    assert r.send(wire.Start()) == [wire.Result(int(S.ECRTNOHDAT))]
    assert r.session.ended is not None


def test_cdata_load_failure_answers_start_with_monukn(tmp_path: Path) -> None:
    bad = w(initialize="unreachable")
    r = cert_rig(host(tmp_path), cert_chain([abi.digest(bad)]))
    assert r.send(wire.Cdata(b"monitor", abi.encode(bad))) == [wire.Result(0)]
    assert r.send(wire.Start()) == [wire.Result(MONUKN, 0)]


def test_uncompilable_cdata_is_refused(tmp_path: Path) -> None:
    junk = b"\x00asm\x01\x00\x00\x00\xff"
    r = cert_rig(host(tmp_path), cert_chain([abi.digest(junk)]))
    assert r.send(wire.Cdata(b"monitor", abi.encode(junk)))[0].errid == S.ECRTBADHDAT


# ---------------------------------------------------------------------- persistent memory

COUNTER = (
    "(i32.store (local.get $pm) (i32.add (i32.load (local.get $pm)) (i32.const 1))) (i32.const 0)"
)
FLUSHING = (
    "(i32.store (local.get $pm) (i32.add (i32.load (local.get $pm)) (i32.const 1)))"
    " (drop (call $persistent_memory_flush)) (i32.const 0)"
)


def test_cert_monitor_memory_persists_under_the_reference_key(tmp_path: Path) -> None:
    first, mod = w(), w({"nclose": COUNTER})
    certs = cert_chain([abi.digest(first), abi.digest(mod)])
    h = host(tmp_path)
    for _ in range(3):
        r = cert_rig(h, certs)
        r.send(wire.Cdata(b"monitor", abi.encode(first)), wire.Cdata(b"monitor", abi.encode(mod)))
        started(r, 2)
        r.send(wire.Nclose(sktid=1), wire.Nclose(sktid=1))
        r.session.close()
    exppriv = certs[1]
    key = cert_key(exppriv.authority_key_id, exppriv.serial_bytes, 1)
    assert key[-2:] == (1).to_bytes(2, sys.byteorder)
    assert PersistentMemory(tmp_path / "pm.sqlite3").load(key)[:4] == (6).to_bytes(4, "little")


def test_aux_memory_is_keyed_by_digest_and_trimmed(tmp_path: Path) -> None:
    mod = w({"nclose": FLUSHING})
    h = host(tmp_path, mod)
    r = rig(h.gate(OpenGate()))
    started(r, 1)
    r.send(wire.Nclose(sktid=1))
    # flushed by the monitor itself, before the session ends
    pm = PersistentMemory(tmp_path / "pm.sqlite3")
    assert pm.load(abi.digest(mod))[:1] == b"\x01"
    raw = pm._db.execute("SELECT data FROM pm").fetchall()
    assert [bytes(x[0]) for x in raw] == [b"\x01"]  # trailing zeros trimmed
    r.session.close()
    r2 = rig(h.gate(OpenGate()))
    started(r2, 1)
    r2.send(wire.Nclose(sktid=1))
    assert pm.load(abi.digest(mod))[:1] == b"\x02"


def test_config_keys() -> None:
    cfg = parse_config(
        [
            "MonitorReportCrash 1",
            "MonitorDeadlineMillsec 250",
            "MonitorMemoryMax 4096",
            "MonitorEnableDebug 1",
            "MonitorPersistentPath /x/pm.db",
        ]
    )
    assert cfg.monitor_report_crash and cfg.monitor_debug
    assert cfg.monitor_deadline_ms == 250 and cfg.monitor_persistent_path == "/x/pm.db"
    assert cfg.monitor_memory_max == 131072 and "below the minimum" in cfg.warnings[0]
    assert EndpointConfig().monitor_deadline_ms == 100


@pytest.mark.parametrize(
    "memory",
    ["(memory 3)", "(memory 2 4)"],  # §8.5: more than 2 pages, or any maximum
)
def test_cdata_with_a_bad_memory_shape_fails_at_start(tmp_path: Path, memory: str) -> None:
    src = monitor_wat(ALLOW).replace('"memory" (memory 2))', f'"memory" {memory})')
    bad = bytes(wasmtime.wat2wasm(src))
    good = w()
    r = cert_rig(host(tmp_path), cert_chain([abi.digest(good), abi.digest(bad)]))
    assert r.send(wire.Cdata(b"monitor", abi.encode(good))) == [wire.Result(0)]
    assert r.send(wire.Cdata(b"monitor", abi.encode(bad))) == [wire.Result(0)]
    assert r.send(wire.Start()) == [wire.Result(MONUKN, 1)]
    assert r.session.ended is not None


# ---------------------------------------------------------------------- audit (session 9)


class ClosingGate(OpenGate):
    """OpenGate that records its close (the certificate gate commits accounting there)."""

    closed = False

    def close(self) -> None:
        self.closed = True


def messages(events: Sequence[Any]) -> str:
    from twisted.logger import formatEvent

    return "\n".join(formatEvent(e) for e in events)


def locked(path: Path) -> Any:
    """A second connection holding the write lock of the store at `path`."""
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    return db


def test_unusable_persistent_store_refuses_start(tmp_path: Path) -> None:
    from twisted.logger import capturedLogs

    (tmp_path / "f").write_text("a file, not a directory")
    h = MonitorHost(
        Settings(), [AuxMonitor("a.wasm", compile_monitor(w()))], str(tmp_path / "f" / "pm")
    )
    r = rig(h.gate(OpenGate()))
    with capturedLogs() as events:
        assert r.send(wire.Start()) == [wire.Result(MONUKN, 0)]
    assert r.session.ended is not None
    assert "persistent memory" in messages(events)
    r.session.close()  # nothing to store, nothing raised


def test_store_failure_at_session_end_is_logged_and_the_session_still_closes(
    tmp_path: Path,
) -> None:
    from twisted.logger import capturedLogs

    h = host(tmp_path, w({"nclose": COUNTER}))
    h._store = PersistentMemory(tmp_path / "pm.sqlite3", timeout=0)
    inner = ClosingGate()
    r = rig(h.gate(inner))
    hooked: list[bool] = []
    r.session.close_hooks.append(lambda: hooked.append(True))
    started(r, 1)
    r.send(wire.Nclose(sktid=1))
    db = locked(tmp_path / "pm.sqlite3")
    with capturedLogs() as events:
        r.session.close()  # must not raise
    db.rollback()
    assert inner.closed and hooked == [True]
    assert "could not store" in messages(events)


def test_flush_failure_returns_minus_one_to_the_monitor(tmp_path: Path) -> None:
    from twisted.logger import capturedLogs

    body = f"{COUNTER} (drop) (i32.add (call $persistent_memory_flush) (i32.const 10))"
    h = host(tmp_path, w({"nclose": body}))
    h._store = PersistentMemory(tmp_path / "pm.sqlite3", timeout=0)
    r = rig(h.gate(OpenGate()))
    started(r, 1)
    assert r.send(wire.Nclose(sktid=1)) == [wire.Result(MONREJ, 0, 10)]  # flush gave 0
    db = locked(tmp_path / "pm.sqlite3")
    with capturedLogs() as events:
        assert r.send(wire.Nclose(sktid=1)) == [wire.Result(MONREJ, 0, 9)]  # -1, no trap
    db.rollback()
    assert "persistent_memory_flush failed" in messages(events)


def test_flush_of_unchanged_memory_writes_nothing(tmp_path: Path) -> None:
    # A monitor flushing in a loop must not make the endpoint commit (fsync) each time.
    spin = (
        "(i32.store8 (local.get $pm) (i32.const 1))"
        " (loop (drop (call $persistent_memory_flush))"
        "  (br_if 0 (i32.ne (local.tee $sktid (i32.add (local.get $sktid) (i32.const 1)))"
        "   (i32.const 200))))"
        " (i32.const 0)"
    )
    h = host(tmp_path, w({"nclose": spin}))
    r = rig(h.gate(OpenGate()))
    started(r, 1)
    before = h.store._db.total_changes
    assert r.send(wire.Nclose(sktid=0)) == [wire.Result(int(S.ESKTNOTOPEN))]
    assert h.store._db.total_changes - before == 1
    r.session.close()  # unchanged since the flush: no write either
    assert h.store._db.total_changes - before == 1
    assert h.store.load(abi.digest(w({"nclose": spin})))[:1] == b"\x01"


def test_result_callback_crash_is_logged(tmp_path: Path) -> None:
    from twisted.logger import capturedLogs

    r = aux_rig(tmp_path, w(results={"nopen": "unreachable"}))
    started(r, 1)
    with capturedLogs() as events:
        assert r.send(udp_open()) == [wire.Result(0)]
    text = messages(events)
    digest = abi.digest(w(results={"nopen": "unreachable"})).hex()[:16]
    assert f"monitor 0 ({digest}) crashed in pktlab_message_nopen_result" in text
    assert "unreachable" in text


def padded(module: bytes, size: int, tag: int = 0) -> bytes:
    """`module` grown to `size` bytes by a custom section (still a valid module)."""
    name = b"pad%d" % tag
    payload_len = size - len(module) - 1 - len(name) - 1 - 5
    body = bytes([len(name)]) + name + bytes(payload_len)
    n = len(body)
    leb = bytes([(n & 0x7F) | 0x80, (n >> 7 & 0x7F) | 0x80, (n >> 14 & 0x7F) | 0x80,
                 (n >> 21 & 0x7F) | 0x80, n >> 28])  # fmt: skip
    out = module + b"\x00" + leb + body
    assert len(out) == size
    compile_monitor(out)  # valid
    return out


def test_oversized_cdata_monitor_is_refused(tmp_path: Path) -> None:
    # Compiling blocks the reactor (5-10 s per MiB of code measured here): a module over
    # MAX_MODULE is refused before it is compiled.
    from twisted.logger import capturedLogs

    from packetlab.endpoint.monitors import MAX_MODULE

    big, ok = padded(w(), MAX_MODULE + 1), padded(w(), MAX_MODULE, 1)
    r = cert_rig(host(tmp_path), cert_chain([abi.digest(big), abi.digest(ok)]))
    with capturedLogs() as events:
        assert r.send(wire.Cdata(b"monitor", abi.encode(big))) == [wire.Result(S.ECRTBADHDAT)]
    assert f"{MAX_MODULE + 1} bytes" in messages(events)
    assert r.send(wire.Cdata(b"monitor", abi.encode(ok))) == [wire.Result(0)]


def test_cdata_monitors_of_a_session_are_capped_in_total(tmp_path: Path) -> None:
    from twisted.logger import capturedLogs

    from packetlab.endpoint.monitors import MAX_MODULE, MAX_SESSION_MODULES

    n = MAX_SESSION_MODULES // MAX_MODULE
    mods = [padded(w(), MAX_MODULE, i) for i in range(n + 1)]
    r = cert_rig(host(tmp_path), cert_chain([abi.digest(m) for m in mods]))
    for m in mods[:n]:
        assert r.send(wire.Cdata(b"monitor", abi.encode(m))) == [wire.Result(0)]
    assert r.send(wire.Cdata(b"monitor", abi.encode(mods[0]))) == [wire.Result(0)]  # again
    with capturedLogs() as events:
        last = r.send(wire.Cdata(b"monitor", abi.encode(mods[n])))
    assert last == [wire.Result(S.ECRTBADHDAT)]
    assert "in total" in messages(events)


def test_compiled_cache_is_bounded_in_bytes(tmp_path: Path) -> None:
    from packetlab.endpoint.monitors import CACHE_BYTES, MAX_MODULE

    h = host(tmp_path)
    n = CACHE_BYTES // MAX_MODULE + 4
    for i in range(n):
        h.compile(padded(w(), MAX_MODULE, i))
    assert len(h._cache) == CACHE_BYTES // MAX_MODULE
    assert h._cache_bytes <= CACHE_BYTES


def test_cdata_monitor_notes_are_logged(tmp_path: Path) -> None:
    # A certificate monitor without some checks loads (each crashes when needed, §8.5):
    # the operator learns it at cdata, as for an aux monitor at startup.
    from twisted.logger import capturedLogs

    partial = bytes(wasmtime.wat2wasm(monitor_wat({"nsend": "(i32.const 0)"})))
    r = cert_rig(host(tmp_path), cert_chain([abi.digest(partial)]))
    with capturedLogs() as events:
        assert r.send(wire.Cdata(b"monitor", abi.encode(partial))) == [wire.Result(0)]
    text = messages(events)
    assert f"cdata monitor {abi.digest(partial).hex()}" in text
    assert "check_pktlab_message_nopen missing (crash if used)" in text


def test_store_waits_for_a_lock_at_most_a_second(tmp_path: Path) -> None:
    # A flush runs inside a monitor call on the reactor thread, where the deadline cannot
    # reach: SQLite's busy wait (30 s by default here) would stall the endpoint that long
    # while another process holds the lock.
    from packetlab.endpoint.monitors import STORE_TIMEOUT

    h = host(tmp_path, w())
    assert STORE_TIMEOUT <= 1.0
    assert h.store.timeout == STORE_TIMEOUT


@pytest.mark.parametrize(
    ("module", "why"),
    [
        (bytes(wasmtime.wat2wasm("(module (memory 2))")), "must import its memory"),
        (b"\x00asm\x01\x00\x00\x00junk", "not a valid WebAssembly module"),
    ],
)
def test_aux_monitor_that_cannot_load_refuses_every_start(
    tmp_path: Path, module: bytes, why: str
) -> None:
    # §1.3: ECTLMONUKN is the answer when "aux monitors failed to load at start"; §8.5:
    # load failures answer start with result(ECTLMONUKN, monindx), then the session ends.
    # (The endpoint runs; it used to refuse to start.)
    from twisted.logger import capturedLogs

    good, bad = tmp_path / "good.wasm", tmp_path / "bad.wasm"
    good.write_bytes(w())
    bad.write_bytes(module)
    cfg = EndpointConfig()
    cfg.monitor_persistent_path = str(tmp_path / "pm.sqlite3")
    with capturedLogs() as events:
        h = MonitorHost.from_config(cfg, [str(good), str(bad)])
    assert f"aux monitor {bad}" in messages(events) and why in messages(events)
    assert h.aux[1].digest == abi.digest(module)
    for _ in range(2):
        r = rig(h.gate(OpenGate()))
        with capturedLogs() as events:
            assert r.send(wire.Start()) == [wire.Result(MONUKN, 1)]
        assert why in messages(events)
        assert r.session.ended is not None
        r.session.close()


def test_sixteen_crashing_monitors_keep_the_session_and_a_bounded_log(tmp_path: Path) -> None:
    # Monitor k fails on nclose(sktid=k), each its own way; every answer names the right
    # monitor, the session goes on, and the log gets the 1st, 2nd, 4th... crash of each.
    from twisted.logger import capturedLogs

    ways = [
        "unreachable",
        "(i32.const 65535)",
        "(i32.const 0x7fffffff)",
        "(drop (i32.div_u (i32.const 1) (i32.const 0))) (i32.const 0)",
        "(drop (i32.load (i32.const -1))) (i32.const 0)",
        "(loop (br 0)) (i32.const 0)",
    ]
    mods = []
    for k in range(16):
        fail = ways[k % len(ways)]
        body = f"(if (result i32) (i32.eq (local.get $sktid) (i32.const {k}))"
        body += f" (then {fail}) (else (i32.const 0)))"
        mods.append(w({"nclose": body}, extra=f"  (global i32 (i32.const {k}))\n"))
    # 50 ms: with 5, a load spike stalling a monitor that returns at once timed it out.
    # No cap on monitor time: 16 spins of 50 ms in a second would spend it (then the
    # answers name the monitor that spent it; test_monitor_time_*).
    r = aux_rig(tmp_path, *mods, deadline_ms=50, time_ms=0)
    started(r, 16)
    with capturedLogs() as events:
        for _ in range(8):
            for k in range(16):
                assert r.send(wire.Nclose(sktid=k)) == [wire.Result(MONREJ, k, 0)], k
    assert r.send(wire.Nclose(sktid=16)) == [wire.Result(int(S.ESKTNOTOPEN))]
    crash_lines = [e for e in events if "crashed in" in messages([e])]
    # (A returned 65535 was not counted as a crash: logged on every request, "0 crashes".)
    assert sorted(e["n"] for e in crash_lines) == sorted([1, 2, 4, 8] * 16) and all(
        e["why"] for e in crash_lines
    )
    assert r.session.ended is None


def test_session_end_frees_the_monitors_store_at_once(tmp_path: Path) -> None:
    # The gate kept its box (and instances in its maps) after close, and the session
    # holds the gate in a cycle: every ended session's store, with each monitor's memory
    # (up to MonitorMemoryMax), stayed resident until the cyclic GC ran (16 monitors of
    # 1 MiB: RSS swung by ~170 MiB on a real endpoint, docs/usability.md session 20).
    import gc
    import weakref

    grow = "(drop (memory.grow (i32.const 14))) (i32.const 0)"
    r = aux_rig(tmp_path, w({"nopen": grow}), w({"nclose": COUNTER}))
    started(r, 2)
    gate = r.session.gate
    assert isinstance(gate, MonitorGate) and gate.box is not None
    store = weakref.ref(gate.box.store)
    gc.disable()
    try:
        r.send(wire.Nclose(sktid=1))
        r.session.close()
        assert store() is None  # the session and its gate are still alive here
    finally:
        gc.enable()


def test_debug_lines_of_a_session_are_budgeted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MonitorEnableDebug 1, monitor_debug was bounded per call only (64 lines of
    4 KiB): a monitor logging on every received datagram wrote 250 MB of log (260 rotated
    files) for 1,000 datagrams of 1 byte on a real endpoint (session 30). A session's
    monitors now log at most DEBUG_LINES lines per DEBUG_WINDOW seconds; the last line
    let through says so, and the next one after the window how many were left out."""
    from twisted.logger import capturedLogs

    from packetlab.endpoint import monitors

    now = [1000.0]
    monkeypatch.setattr(monitors, "DEBUG_LINES", 20, raising=False)
    monkeypatch.setattr(monitors, "_monotonic", lambda: now[0], raising=False)
    five = " ".join(["(call $monitor_debug (i32.const 0))"] * 5) + " (i32.const 0)"
    mod = w({"nopen": five}, extra='(data (i32.const 0) "hello\\00")')
    r = aux_rig(tmp_path, mod, debug=True)
    started(r, 1)
    with capturedLogs() as events:
        for sktid in range(1, 11):  # 50 lines asked for
            assert r.send(udp_open(sktid=sktid)) == [wire.Result(0)]
    lines = [ln for ln in messages(events).splitlines() if "debug: hello" in ln]
    assert len(lines) == 20
    assert lines[-1].endswith("[20 such lines in 60 s: the next ones are counted, not logged, "
                              "until 60 s have passed]")  # fmt: skip
    now[0] += 60
    with capturedLogs() as events:
        assert r.send(udp_open(sktid=11)) == [wire.Result(0)]
    lines = [ln for ln in messages(events).splitlines() if "debug: hello" in ln]
    assert len(lines) == 5 and lines[0].endswith("[30 not logged before this one]")
