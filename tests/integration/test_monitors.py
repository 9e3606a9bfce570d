"""Monitors on a real `twistd pktendpoint` (PROTOCOL.md §8): aux monitors over loopback
plain TCP, certificate monitors delivered by cdata over TLS, persistent memory across
sessions and across kill -9."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import DEFAULT_CONFIG, REPO, RawController, twistd
from tls_world import (
    TLSController,
    TLSEndpoint,
    controller_chain,
    pktlab_init,
    udp_sink_on,
)
from wasmtime import wat2wasm

from packetlab import wire
from packetlab.monitor import abi
from packetlab.monitor.template import monitor_wat
from packetlab.ppks import CertLimits
from packetlab.reflex.template import reflex_wat
from packetlab.wire.constants import Status

S = Status
LO = ipaddress.IPv4Address("127.0.0.1").packed
ALLOW = {k: "(i32.const 0)" for k in abi.CHECKS}
MONREJ, MONUKN = int(S.ECTLMONREJ), int(S.ECTLMONUKN)
# Reject UDP sends whose destination port is odd; ndata of "blockme" -> nblock(77).
PORT_POLICY = {
    "nsend": "(i32.and (i32.load8_u (i32.add (local.get $rport) (i32.const 1))) (i32.const 1))",
    "ndata": "(drop (call $read_vmem_region (i32.const 0) (i32.const 300) (i32.const 1)))"
    " (select (i32.const 77) (i32.const 0) (i32.eq (i32.load8_u (i32.const 300)) (i32.const 98)))",
}
# Counts nclose requests in pm[0..4] and flushes each time; initialize reports the count.
COUNTER = {
    "nclose": "(i32.store (local.get $pm) (i32.add (i32.load (local.get $pm)) (i32.const 1)))"
    " (drop (call $persistent_memory_flush)) (i32.const 0)"
}
REPORT = "(i32.store (local.get $info) (i32.load (local.get $pm))) (i32.const 4)"


def module(tmp: Path, name: str, checks: dict[str, str], **kw: Any) -> Path:
    path = tmp / f"{name}.wasm"
    path.write_bytes(wat2wasm(monitor_wat(ALLOW | checks, **kw)))
    return path


def conf(tmp: Path, extra: str = "") -> str:
    return DEFAULT_CONFIG + f"MonitorPersistentPath {tmp / 'pm.sqlite3'}\n" + extra


def started(c: RawController, n: int) -> list[wire.Linfo]:
    c.send(wire.Start())
    assert c.response() == wire.Result(0)
    infos = [c.notification(wire.Linfo) for _ in range(n)]
    return infos


def udp_open(c: RawController, sktid: int = 1) -> None:
    c.ok(wire.Nopen(sktid=sktid, family=4, proto=17, rbufsz=1 << 20, laddr=LO, lport=0))


def nsend(sktid: int, port: int, data: bytes = b"x", tag: int = 0) -> wire.Nsend:
    return wire.Nsend(sktid=sktid, family=4, proto=17, time=0, tag=tag, data=data, raddr=LO,
                      rport=port)  # fmt: skip


def test_aux_monitors_on_a_real_endpoint(endpoint_factory: Any, tmp_path: Path) -> None:
    a = module(tmp_path, "a", {}, initialize="(i32.store8 (local.get $info) (i32.const 65))"
               " (i32.const 1)")  # fmt: skip
    b = module(tmp_path, "b", PORT_POLICY)
    ep = endpoint_factory(conf(tmp_path), args=["--monitor", str(a), "-m", str(b)])
    c = ep.accept()
    infos = started(c, 2)
    assert [(i.name, i.aux, i.info) for i in infos] == [
        (b"monitor", b"\x00\x00", b"A"),
        (b"monitor", b"\x01\x00", b""),  # aux index in host (little-endian) order
    ]
    udp_open(c)
    odd, odd_port = udp_sink_on(odd=True)
    even, even_port = udp_sink_on(odd=False)
    try:
        assert c.request(nsend(1, odd_port, tag=3)) == wire.Result(MONREJ, 1, 1)
        assert c.request(nsend(1, even_port, tag=4)) == wire.Result(0)
        assert c.notification(wire.Ntag).tag == 4  # no ntag for the rejected send
        assert even.recv(100) == b"x"
        with pytest.raises(TimeoutError):
            odd.recv(100)  # never sent
        # ndata: "blockme" -> nblock(77); anything else delivered
        me = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        lport = int.from_bytes(c.mread(0x20000000 + 0x400 + 0x30, 2), "big")
        me.sendto(b"blockme", ("127.0.0.1", lport))
        nb = c.notification(wire.Nblock)
        assert (nb.sktid, nb.monerrid) == (1, 77)
        me.sendto(b"fine", ("127.0.0.1", lport))
        assert c.notification(wire.Ndata).data == b"fine"
        me.close()
    finally:
        odd.close()
        even.close()


def test_spinning_monitor_costs_one_deadline_and_the_session_survives(
    endpoint_factory: Any, tmp_path: Path
) -> None:
    spin = module(tmp_path, "spin", {
        "nopen": "(if (i32.eq (local.get $sktid) (i32.const 1)) (then (loop (br 0))))"
                 " (i32.const 0)"
    })  # fmt: skip
    ep = endpoint_factory(conf(tmp_path, "MonitorReportCrash 1\n"), args=["-m", str(spin)])
    c = ep.accept()
    started(c, 1)
    t0 = time.monotonic()
    r = c.request(wire.Nopen(sktid=1, family=4, proto=17, rbufsz=4096, laddr=LO, lport=0))
    took = time.monotonic() - t0
    assert r == wire.Result(MONUKN, 0)
    assert took < 5  # cut off (the deadline is 100 ms; the machine may be loaded)
    udp_open(c, sktid=2)  # same session, same monitor instance
    assert "crashed in check_pktlab_message_nopen" in ep.output()


def test_bad_aux_monitor_refuses_every_start(endpoint_factory: Any, tmp_path: Path) -> None:
    # §1.3 / §8.5: an aux monitor that cannot load answers start with ECTLMONUKN(monindx)
    # and the session ends; the endpoint keeps running (it used to refuse to start).
    ok = module(tmp_path, "ok", {})
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(wat2wasm("(module (memory 2))"))
    ep = endpoint_factory(conf(tmp_path), args=["-m", str(ok), "-m", str(bad)])
    for _ in range(2):
        c = ep.accept()
        assert c.request(wire.Start()) == wire.Result(MONUKN, 1)
        assert c.closed_by_peer()
    # at start once, with what every start will answer (it was logged twice, session 30)
    at_start = [ln for ln in ep.output().splitlines() if "aux monitor" in ln and "cannot" in ln]
    assert len(at_start) == 1, at_start
    assert "every session's start will answer ECTLMONUKN(1)" in at_start[0]
    assert "must import its memory as monitor.memory" in at_start[0]


def test_unreadable_aux_monitor_stops_the_daemon(tmp_path: Path) -> None:
    missing = tmp_path / "missing.wasm"
    proc = subprocess.run(
        [*twistd(), "-n", "--pidfile=", "pktendpoint", "--insecure-plaintext", "-m", str(missing)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode != 0
    assert "missing.wasm" in proc.stdout + proc.stderr


def test_persistent_memory_survives_kill9(endpoint_factory: Any, tmp_path: Path) -> None:
    counter = module(tmp_path, "counter", COUNTER, initialize=REPORT)
    ep = endpoint_factory(conf(tmp_path), args=["-m", str(counter)])
    c = ep.accept()
    assert started(c, 1)[0].info == bytes(4)
    for _ in range(3):
        c.request(wire.Nclose(sktid=1))  # ESKTNOTOPEN; the monitor counts it first
    ep.proc.kill()  # kill -9 with the session open: only flushed bytes count
    ep.proc.wait(5)
    ep2 = endpoint_factory(conf(tmp_path), args=["-m", str(counter)])
    c2 = ep2.accept()
    assert started(c2, 1)[0].info == (3).to_bytes(4, "little")
    c2.request(wire.Nclose(sktid=1))
    c2.close()
    c3 = ep2.accept()  # the next session of the same endpoint
    assert started(c3, 1)[0].info == (4).to_bytes(4, "little")


# ------------------------------------------------------------- certificate monitors


@pytest.fixture
def tls_world(tmp_path: Path) -> Any:
    home = pktlab_init(tmp_path / "home")
    (home.root / "endpt.conf").write_text(
        (home.root / "endpt.conf").read_text() + f"MonitorPersistentPath {tmp_path / 'pm.db'}\n"
    )
    started_: list[Any] = []

    def start(limits: CertLimits, *args: str) -> tuple[TLSController, TLSEndpoint]:
        chain = controller_chain(home, tmp_path / f"c{len(started_)}", limits=limits)
        ctl = TLSController(chain, home.key_path("k_xc"), tmp_path)
        ep = TLSEndpoint(home, ctl.address, tmp_path, *args)
        started_.append((ctl, ep))
        return ctl, ep

    yield start
    for ctl, ep in started_:
        ep.stop()
        ctl.close()


def test_cert_monitors_over_tls(tls_world: Any, tmp_path: Path) -> None:
    a = bytes(wat2wasm(monitor_wat(ALLOW | {"nopen": "(i32.const 21)"})))
    b = bytes(wat2wasm(monitor_wat(ALLOW | COUNTER, initialize=REPORT)))
    other = bytes(wat2wasm(monitor_wat(ALLOW)))
    ctl, _ep = tls_world(CertLimits(monitor_digests=(abi.digest(b), abi.digest(a))))
    # Session 1: only one of the two programs: start refused, session closed.
    c = ctl.accept()
    assert c.request(wire.Cdata(b"monitor", abi.encode(a))) == wire.Result(0)
    assert c.request(wire.Cdata(b"monitor", abi.encode(other))).errid == S.ECRTBADHDAT
    assert c.request(wire.Start()) == wire.Result(int(S.ECRTNOHDAT))
    assert c.closed_by_peer()
    # Session 2: both, in the order b, a: b is monindx 0.
    for _ in range(2):
        c = ctl.accept()
        for prog in (b, a):
            assert c.request(wire.Cdata(b"monitor", abi.encode(prog))) == wire.Result(0)
        infos = started(c, 2)
        c.request(wire.Nclose(sktid=1))
        assert c.request(
            wire.Nopen(sktid=1, family=4, proto=17, rbufsz=4096, laddr=LO, lport=0)
        ) == wire.Result(MONREJ, 1, 21)
        c.close()
    # The second session saw the count of the first (keyed by the cert, not the digest).
    assert infos[0].info == (1).to_bytes(4, "little")


# nopen: sktid 1 -> -5 (hidden), 2 -> trap, 3 -> 1 if a 4 MiB grow fails (memory cap);
# ndata: first byte 'n' -> -3 (nblock fffd), 'c' -> trap (dropped without ReportCrash)
ROWS = {
    "nopen": "(if (result i32) (i32.eq (local.get $sktid) (i32.const 1)) (then (i32.const -5))"
    " (else (if (result i32) (i32.eq (local.get $sktid) (i32.const 2)) (then unreachable)"
    " (else (if (result i32) (i32.eq (local.get $sktid) (i32.const 3))"
    " (then (i32.eq (memory.grow (i32.const 64)) (i32.const -1))) (else (i32.const 0)))))))",
    "ndata": "(drop (call $read_vmem_region (i32.const 0) (i32.const 300) (i32.const 1)))"
    " (if (result i32) (i32.eq (i32.load8_u (i32.const 300)) (i32.const 110))"
    " (then (i32.const -3)) (else (if (result i32) (i32.eq (i32.load8_u (i32.const 300))"
    " (i32.const 99)) (then unreachable) (else (i32.const 0)))))",
}


def test_rows_without_report_crash(endpoint_factory: Any, tmp_path: Path) -> None:
    mon = module(tmp_path, "rows", ROWS)
    ep = endpoint_factory(conf(tmp_path), args=["-m", str(mon)])
    c = ep.accept()
    started(c, 1)

    def nopen(sktid: int) -> wire.Message:
        return c.request(wire.Nopen(sktid=sktid, family=4, proto=17, rbufsz=1 << 16, laddr=LO,
                                    lport=0))  # fmt: skip

    assert nopen(1) == wire.Result(MONREJ, 0, 0)  # negative: reason hidden
    assert nopen(2) == wire.Result(MONREJ, 0, 0)  # crash, MonitorReportCrash 0
    assert nopen(3) == wire.Result(MONREJ, 0, 1)  # grow refused by MonitorMemoryMax (1 MiB)
    assert nopen(4) == wire.Result(0)
    lport = int.from_bytes(c.mread(0x20000000 + 4 * 0x400 + 0x30, 2), "big")
    me = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for payload in (b"no", b"crash", b"ok"):
            me.sendto(payload, ("127.0.0.1", lport))
        nb = c.notification(wire.Nblock)
        assert (nb.sktid, nb.monerrid) == (4, 0xFFFD)
        assert c.notification(wire.Ndata).data == b"ok"  # the crash was dropped silently
    finally:
        me.close()


def test_trap_in_initialize_refuses_start(endpoint_factory: Any, tmp_path: Path) -> None:
    ok = module(tmp_path, "ok", {})
    bad = module(tmp_path, "bad", {}, initialize="unreachable")
    ep = endpoint_factory(conf(tmp_path), args=["-m", str(ok), "-m", str(bad)])
    c = ep.accept()
    assert c.request(wire.Start()) == wire.Result(MONUKN, 1)
    assert c.closed_by_peer()


def test_cdata_monitor_with_a_maximum_fails_start_over_tls(tls_world: Any) -> None:
    src = monitor_wat(ALLOW).replace('"memory" (memory 2))', '"memory" (memory 2 8))')
    bad = bytes(wat2wasm(src))
    ctl, _ep = tls_world(CertLimits(monitor_digests=(abi.digest(bad),)))
    c = ctl.accept()
    assert c.request(wire.Cdata(b"monitor", abi.encode(bad))) == wire.Result(0)
    assert c.request(wire.Start()) == wire.Result(MONUKN, 0)
    assert c.closed_by_peer()


def test_large_cdata_monitor_compiles_off_the_reactor_in_order(tls_world: Any) -> None:
    """A ~100 KB certificate monitor (one long function, a second or more to compile)
    compiles in the endpoint's thread pool; the start and mread sent right behind it are
    answered after its result, in order, on the same TLS link."""
    body = "(local.get $x)" + "(i32.add (i32.const 1))" * 35_000 + "(drop)"
    big = bytes(wat2wasm(monitor_wat(ALLOW, extra=f"(func $f0 (param $x i32) {body})")))
    assert len(big) > 100_000
    ctl, ep = tls_world(CertLimits(monitor_digests=(abi.digest(big),)))
    c = ctl.accept()
    c.send(wire.Cdata(b"monitor", abi.encode(big)), wire.Start(), wire.Mread(addr=0x20, len=1))
    got = [c.next(timeout=60) for _ in range(4)]
    assert got[:2] == [wire.Result(0), wire.Result(0)]
    assert [m.NAME for m in got[2:]] == ["linfo", "mdata"]
    c.close()
    assert "Traceback" not in ep.output()


def test_endpoint_serves_a_new_session_while_a_monitor_compiles(tls_world: Any) -> None:
    """Session 1 sends a ~300 KB monitor (one long function: seconds to compile) and
    hangs up; the endpoint reconnects at once and answers session 2 while that compile
    still runs in the worker thread (inline, the reactor was blocked for all of it, and
    session 2 only connected afterwards). Session 2's own cdata of the same module joins
    the running compile and is answered when it is done; start and mread follow in
    order."""
    body = "(local.get $x)" + "(i32.add (i32.const 1))" * 100_000 + "(drop)"
    big = bytes(wat2wasm(monitor_wat(ALLOW, extra=f"(func $f0 (param $x i32) {body})")))
    ctl, ep = tls_world(CertLimits(monitor_digests=(abi.digest(big),)))
    c = ctl.accept()
    c.send(wire.Cdata(b"monitor", abi.encode(big)))
    ep.wait_log("compiling monitor")
    c.close()
    c2 = ctl.accept()
    assert c2.request(wire.Cdata(b"bogus", b"")) == wire.Result(int(S.ECRTBADHINT))
    assert "took" not in ep.output()  # answered while the compile runs
    c2.send(wire.Cdata(b"monitor", abi.encode(big)), wire.Start(), wire.Mread(addr=0x20, len=1))
    got = [c2.next(timeout=120) for _ in range(4)]
    assert got[:2] == [wire.Result(0), wire.Result(0)]
    assert [m.NAME for m in got[2:]] == ["linfo", "mdata"]
    assert ep.output().count("compiling monitor") == 2  # the start line and "took"
    c2.close()


def test_a_reflex_compiles_in_the_worker_the_monitors_share(tls_world: Any) -> None:
    """A ~300 KB certificate monitor and a ~300 KB reflex (one long function each: seconds
    to compile) in one session's SETUP: both compile in the endpoint's one compile worker,
    the reflex after the monitor (one module at a time), and the answers come in request
    order: cdata, cdata, start, then the monitor's linfo and the mread's mdata."""
    body = "(local.get $x)" + "(i32.add (i32.const 1))" * 100_000 + "(drop)"
    extra = f"(func $f0 (param $x i32) {body})"
    mon = bytes(wat2wasm(monitor_wat(ALLOW, extra=extra)))
    rfx = bytes(wat2wasm(reflex_wat("(i32.const 1)", extra=extra)))
    limits = CertLimits(monitor_digests=(abi.digest(mon),), reflex_digests=(abi.digest(rfx),))
    ctl, ep = tls_world(limits)
    c = ctl.accept()
    c.send(
        wire.Cdata(b"monitor", abi.encode(mon)),
        wire.Cdata(b"reflex", abi.encode(rfx)),
        wire.Start(),
        wire.Mread(addr=0x20, len=1),
    )
    got = [c.next(timeout=120) for _ in range(5)]
    assert got[:3] == [wire.Result(0), wire.Result(0), wire.Result(0)]
    assert [m.NAME for m in got[3:]] == ["linfo", "mdata"]
    out = ep.output()
    lines = [ln for ln in out.splitlines() if "compiling " in ln]
    kinds = [("monitor" if "compiling monitor" in ln else "reflex", "took" in ln) for ln in lines]
    assert kinds == [
        ("monitor", False),
        ("monitor", True),
        ("reflex", False),
        ("reflex", True),
    ], lines  # one at a time: the reflex starts once the monitor is done
    c.close()
    assert "Traceback" not in out
