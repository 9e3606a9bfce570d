"""Hostile WebAssembly monitors against a real `twistd -n pktendpoint` over TLS, delivered
as certificate monitors (`cdata`) by a real controller whose chain lists each one
(PROTOCOL.md §8; docs/monitors.md "Safety"; docs/usability.md, session 20).

Each module gets its documented answer byte for byte, a log line that says why, and
neither crashes nor wedges the endpoint (the next session is served); a crash never lets
a request or a packet through that the monitor did not allow (fail closed); and the
endpoint's memory stays flat over hundreds of hostile sessions.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import RawController
from procstat import rss_kib
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
from packetlab.ppks import Accounting, CertLimits, Counter, PktlabHome, load_certificates
from packetlab.wire.constants import Status

S = Status
LO = ipaddress.IPv4Address("127.0.0.1").packed
ALLOW = {k: "(i32.const 0)" for k in abi.CHECKS}
OK = wire.Result(0)
BADHDAT = wire.Result(int(S.ECRTBADHDAT))
MONREJ, MONUKN = int(S.ECTLMONREJ), int(S.ECTLMONUKN)


def w(checks: dict[str, str] | None = None, **kw: Any) -> bytes:
    return bytes(wat2wasm(monitor_wat(ALLOW | (checks or {}), **kw)))


def patched(old: str, new: str) -> bytes:
    src = monitor_wat(ALLOW)
    assert old in src
    return bytes(wat2wasm(src.replace(old, new)))


@dataclass
class World:
    """One endpoint (MonitorReportCrash 1, so a crash is told apart from a rejection)
    and one controller whose chain is issued anew per session to list that session's
    monitors (ssl.SSLContext.load_cert_chain applies to the next handshake)."""

    home: PktlabHome
    tmp: Path
    ctl: TLSController
    ep: TLSEndpoint
    n: int = 0

    chain: list[Path] = field(default_factory=list)  # the last session's

    def session(self, *wasms: bytes, **limits_kw: Any) -> RawController:
        self.n += 1
        digests = tuple(abi.digest(m) for m in wasms)
        limits = CertLimits(monitor_digests=digests, **limits_kw)
        out = self.tmp / f"c{self.n}"
        chain = self.chain = controller_chain(
            self.home, out, limits=limits if wasms or limits_kw else None
        )
        bundle = out / "bundle.pem"
        bundle.write_bytes(b"".join(p.read_bytes() for p in chain))
        self.ctl.ctx.load_cert_chain(str(bundle), str(self.home.key_path("k_xc")))
        return self.ctl.accept(timeout=60)

    def started(self, *wasms: bytes, **limits_kw: Any) -> RawController:
        c = self.session(*wasms, **limits_kw)
        c.send(*[wire.Cdata(b"monitor", abi.encode(m)) for m in wasms], wire.Start())
        got = [c.response(timeout=60) for _ in range(len(wasms) + 1)]
        assert got == [OK] * (len(wasms) + 1), got
        for _ in wasms:
            c.notification(wire.Linfo, timeout=30)
        return c

    def alive(self) -> None:
        """The endpoint runs and serves a new session (nothing wedged)."""
        assert self.ep.proc.poll() is None, self.ep.output()[-3000:]
        c = self.started()
        assert c.request(wire.Mread(addr=0x20, len=1), timeout=30).NAME == "mdata"
        c.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("hostile")
    home = pktlab_init(tmp / "home")
    conf = home.root / "endpt.conf"
    conf.write_text(
        conf.read_text() + f"MonitorPersistentPath {tmp / 'pm.db'}\nMonitorReportCrash 1\n"
    )
    ctl = TLSController(controller_chain(home, tmp / "c0"), home.key_path("k_xc"), tmp)
    ep = TLSEndpoint(home, ctl.address, tmp)
    yield World(home, tmp, ctl, ep)
    ep.stop()
    ctl.close()
    assert "Traceback" not in ep.output()


# ------------------------------------------------------------------ refused at load

SPIN = "(loop (br 0))"
OVERSIZED = w(extra=f'(data "{"x" * ((1 << 20) + 1)}")')
LOAD_CASES: dict[str, tuple[bytes, wire.Result | None, str]] = {
    # name: (module, start's answer (None: the cdata is refused), a line of the log)
    "not wasm": (b"hello, not wasm", None, "not a valid WebAssembly module"),
    "empty": (b"", None, "not a valid WebAssembly module: it is empty (0 bytes)"),
    "truncated": (w()[:-7], None, "unexpected end"),
    "webassembly text": (monitor_wat(ALLOW).encode(), None, "binary magic"),
    "over 1 MiB": (OVERSIZED, None, f"is {len(OVERSIZED)} bytes (at most 1048576)"),
    "unknown import": (
        patched('"monitor_debug"', '"launch_missiles"'),
        wire.Result(MONUKN, 0),
        "imports unknown host function env.launch_missiles",
    ),
    "wrong signature": (
        patched("(func $monitor_debug (param i32))", "(func $monitor_debug (param i64))"),
        wire.Result(MONUKN, 0),
        "import env.monitor_debug has the wrong type",
    ),
    "huge initial memory": (
        patched('"memory" (memory 2))', '"memory" (memory 65536))'),
        wire.Result(MONUKN, 0),
        "monitor.memory asks for 65536 pages",
    ),
    "memories of its own": (
        w(extra="(memory $own 1) (memory $own2 1)"),
        wire.Result(MONUKN, 0),
        "defines 2 memories of its own",
    ),
    "huge data segment": (
        w(extra=f'(data (i32.const 100000) "{"A" * 40000}")'),
        wire.Result(MONUKN, 0),
        "instantiation failed: wasm trap: out of bounds memory access",
    ),
    "huge table": (
        w(extra="(table 200000 funcref)"),
        wire.Result(MONUKN, 0),
        "table minimum size of 200000 elements exceeds table limits",
    ),
    "start function loops": (
        w(extra=f"(func $s {SPIN}) (start $s)"),
        wire.Result(MONUKN, 0),
        "instantiation failed: deadline of 100 ms exceeded",
    ),
    "initialize loops": (
        w(initialize=f"{SPIN} (i32.const 0)"),
        wire.Result(MONUKN, 0),
        "initialize crashed: deadline of 100 ms exceeded",
    ),
    "initialize traps": (
        w(initialize="(i32.load (i32.const -4))"),
        wire.Result(MONUKN, 0),
        "initialize crashed: memory fault at wasm address 0xfffffffc",
    ),
}


@pytest.mark.parametrize("name", list(LOAD_CASES))
def test_a_module_that_cannot_load_gets_its_answer(world: World, name: str) -> None:
    wasm, start, line = LOAD_CASES[name]
    c = world.session(wasm)
    answer = c.request(wire.Cdata(b"monitor", abi.encode(wasm)), timeout=60)
    if start is None:  # §8.1: not a program this endpoint can decode (or too big)
        assert answer == BADHDAT
        # start is then refused: a digest the chain requires is missing
        assert c.request(wire.Start(), timeout=30) == wire.Result(int(S.ECRTNOHDAT))
    else:  # §8.5: a load failure answers start with ECTLMONUKN(monindx), then closes
        assert answer == OK
        assert c.request(wire.Start(), timeout=30) == start
    assert c.closed_by_peer(timeout=30)
    world.ep.wait_log(line)
    world.alive()


# --------------------------------------------------------------- hostile at run time

# nopen, by sktid: what the monitor does, and (ReportCrash 1) what the controller gets.
NOPEN_ROWS: dict[int, tuple[str, wire.Result]] = {
    1: (f"{SPIN} (i32.const 0)", wire.Result(MONUKN, 0)),  # past the deadline
    2: ("(i32.load (i32.const -4))", wire.Result(MONUKN, 0)),  # out of bounds
    3: ("(call $deep (i32.const 0))", wire.Result(MONUKN, 0)),  # stack exhausted
    4: ("(i32.const 65535)", wire.Result(MONUKN, 0)),  # >= 65535 is a crash
    5: ("(i32.const 0x7fffffff)", wire.Result(MONUKN, 0)),
    6: ("(i32.const -65536)", wire.Result(MONREJ, 0, 0)),  # negative: reason hidden
    7: ("(i32.const 0x80000000)", wire.Result(MONREJ, 0, 0)),
    # An ABI call with a buffer outside the memory is refused (-1), not a crash: 99.
    8: (
        "(i32.add (call $read_vmem_region (i32.const 0) (i32.const -16) (i32.const 256))"
        " (i32.const 100))",
        wire.Result(MONREJ, 0, 99),
    ),
    # Lengths and addresses at the ends of the u32 range: refused (-1), or read as
    # zeros (0): 49.
    9: (
        "(i32.add (i32.add (call $read_vmem_region (i32.const -1) (i32.const 0)"
        " (i32.const -1)) (call $read_vmem_region (i32.const -1) (i32.const 0)"
        " (i32.const 65536))) (i32.const 50))",
        wire.Result(MONREJ, 0, 49),
    ),
    # memory.grow in a loop stops at MonitorMemoryMax (1 MiB = 16 pages); rv = pages
    10: (
        "(block (loop (br_if 1 (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))"
        " (br 0))) (memory.size)",
        wire.Result(MONREJ, 0, 16),
    ),
    11: ("(i32.sub (i32.const 0) (memory.grow (i32.const 65535)))", wire.Result(MONREJ, 0, 1)),
}
NOPEN = " ".join(
    f"(if (i32.eq (local.get $sktid) (i32.const {k})) (then (return {body})))"
    for k, (body, _) in NOPEN_ROWS.items()
) + " (call $monitor_debug (i32.const -1)) (i32.const 0)"  # fmt: skip
HOSTILE = w(
    {
        "nopen": NOPEN,
        "nclose": "unreachable",
        # a UDP send to an odd port traps; to an even one it is allowed
        "nsend": "(if (i32.and (i32.load8_u (i32.add (local.get $rport) (i32.const 1)))"
        " (i32.const 1)) (then unreachable)) (i32.const 0)",
        # received "t..." traps, "r..." returns 65535, "m..." -65536, the rest pass
        "ndata": "(drop (call $read_vmem_region (i32.const 0) (i32.const 300) (i32.const 1)))"
        " (if (i32.eq (i32.load8_u (i32.const 300)) (i32.const 116)) (then unreachable))"
        " (if (i32.eq (i32.load8_u (i32.const 300)) (i32.const 114))"
        " (then (return (i32.const 65535))))"
        " (if (i32.eq (i32.load8_u (i32.const 300)) (i32.const 109))"
        " (then (return (i32.const -65536)))) (i32.const 0)",
        "ncap": "(call $deep (i32.const 0))",
    },
    results={"nopen": "(drop (i32.div_u (i32.const 1) (i32.const 0)))"},
    extra="(func $deep (param i32) (result i32) (call $deep (local.get 0)))",
)


def nopen(c: RawController, sktid: int) -> wire.Message:
    m = wire.Nopen(sktid=sktid, family=4, proto=17, rbufsz=1 << 16, laddr=LO, lport=0)
    return c.request(m, timeout=30)


def udp_send(sktid: int, port: int) -> wire.Nsend:
    return wire.Nsend(sktid=sktid, family=4, proto=17, time=0, tag=port & 0xFFFF, data=b"x",
                      raddr=LO, rport=port)  # fmt: skip


def test_hostile_checks_get_their_answers_and_fail_closed(world: World) -> None:
    c = world.started(HOSTILE)
    for sktid, (_, want) in NOPEN_ROWS.items():
        assert nopen(c, sktid) == want, sktid
    assert nopen(c, 20) == OK  # the same instance still works; its _result traps
    # nclose traps: the socket stays open (the controller is told ECTLMONUKN)
    assert c.request(wire.Nclose(sktid=20), timeout=30) == wire.Result(MONUKN, 0)
    cap = wire.Ncap(sktid=20, family=4, proto=17, endtime=0, filter=bytes(12))
    assert c.request(cap, timeout=30) == wire.Result(MONUKN, 0)
    odd, odd_port = udp_sink_on(odd=True)
    even, even_port = udp_sink_on(odd=False)
    me = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        send = {p: udp_send(20, p) for p in (odd_port, even_port)}
        assert c.request(send[odd_port], timeout=30) == wire.Result(MONUKN, 0)
        assert c.request(send[even_port], timeout=30) == OK
        assert c.notification(wire.Ntag, timeout=30).tag == even_port & 0xFFFF
        assert even.recv(100) == b"x"
        with pytest.raises(TimeoutError):
            odd.recv(100)  # the send the monitor crashed on never left
        # ndata: a crash (a trap, 65535) is nblock(0) with ReportCrash 1; -65536 is an
        # nblock with its low 16 bits (0 too). Nothing the monitor refused is delivered.
        lport = int.from_bytes(c.mread(0x20000000 + 20 * 0x400 + 0x30, 2), "big")
        for payload in (b"trap", b"rv65535", b"minus", b"fine"):
            me.sendto(payload, ("127.0.0.1", lport))
        blocks = [c.notification(wire.Nblock, timeout=30) for _ in range(3)]
        assert [(b.sktid, b.monerrid) for b in blocks] == [(20, 0)] * 3
        assert c.notification(wire.Ndata, timeout=30).data == b"fine"
        assert not [m for m in c.quiet(0.3) if isinstance(m, wire.Ndata)]
    finally:
        for s in (odd, even, me):
            s.close()
    c.close()
    # Crashes are counted per monitor; the log gets the 1st, 2nd, 4th, 8th... each with
    # the hook and the cause in one line.
    out = world.ep.wait_log("(8 crash(es) so far)")
    assert "check_pktlab_message_nopen (1 crash(es) so far): deadline of 100 ms exceeded" in out
    assert (
        "check_pktlab_message_nopen (2 crash(es) so far): memory fault at wasm address"
        " 0xfffffffc in linear memory of size 0x20000; wasm trap: out of bounds memory access"
    ) in out
    assert "check_pktlab_message_nopen (4 crash(es) so far): returned 65535 (65535 or more" in out
    assert "check_pktlab_message_ncap (8 crash(es) so far): wasm trap: call stack exhausted" in out
    world.alive()


# ------------------------------------------------------- traps in the other hooks

FREE = '(func (export "free") (param i32))'
MALLOC_TRAPS = bytes(
    wat2wasm(
        monitor_wat(ALLOW).replace(
            "(local.set $p (global.get $heap))", "unreachable (local.set $p (global.get $heap))"
        )
    )
)
TRAP = "(drop (i32.div_u (i32.const 1) (i32.const 0)))"
FREE_AND_RESULTS_TRAP = bytes(
    wat2wasm(
        monitor_wat(
            ALLOW,
            initialize="(i32.store8 (local.get $info) (i32.const 33)) (i32.const 1)",
            results={k: TRAP for k in abi.REQUESTS},
        ).replace(FREE, '(func (export "free") (param i32) unreachable)')
    )
)


def test_a_trap_in_malloc_free_or_a_result_callback(world: World) -> None:
    """The hooks the host calls besides the checks: a malloc that traps when the host
    places the persistent memory is a load failure (start answers ECTLMONUKN(0) and the
    session ends); a free that traps after initialize, or any *_result callback that
    traps, is a logged crash that changes no answer."""
    c = world.session(MALLOC_TRAPS)
    assert c.request(wire.Cdata(b"monitor", abi.encode(MALLOC_TRAPS)), timeout=60) == OK
    assert c.request(wire.Start(), timeout=30) == wire.Result(MONUKN, 0)
    assert c.closed_by_peer(timeout=30)
    world.ep.wait_log("failed to load: malloc failed: wasm trap: wasm `unreachable`")

    c = world.session(FREE_AND_RESULTS_TRAP)
    c.send(wire.Cdata(b"monitor", abi.encode(FREE_AND_RESULTS_TRAP)), wire.Start())
    assert [c.response(timeout=60) for _ in range(2)] == [OK, OK]
    assert c.notification(wire.Linfo, timeout=30).info == b"!"
    sink, port = udp_sink_on(odd=False)
    try:
        assert nopen(c, 1) == OK
        assert c.request(udp_send(1, port), timeout=30) == OK
        assert c.notification(wire.Ntag, timeout=30).tag == port & 0xFFFF
        assert sink.recv(100) == b"x"
        cap = wire.Ncap(sktid=1, family=4, proto=17, endtime=0, filter=bytes(12))
        answer = c.request(cap, timeout=30)  # the endpoint's own (no monitor's errid)
        assert isinstance(answer, wire.Result) and answer.errid not in (MONREJ, MONUKN)
        assert c.request(wire.Nclose(sktid=1), timeout=30) == OK
        assert c.request(wire.Nclose(sktid=1), timeout=30) == wire.Result(int(S.ESKTNOTOPEN))
        assert nopen(c, 2) == OK
        assert c.request(wire.Nclose(sktid=2), timeout=30) == OK
    finally:
        sink.close()
    c.close()
    # Crashes 1 (free), 2 (nopen_result), 4 (ncap_result) and 8 (nclose_result) are
    # logged (1st, 2nd, 4th, 8th...), with the hook and the trap.
    out = world.ep.wait_log("(8 crash(es) so far)")
    lines = [ln for ln in out.splitlines() if abi.digest(FREE_AND_RESULTS_TRAP).hex()[:16] in ln]
    hooks = ["free", "pktlab_message_nopen_result", "pktlab_message_ncap_result",
             "pktlab_message_nclose_result"]  # fmt: skip
    for n, hook in zip((1, 2, 4, 8), hooks, strict=True):
        assert any(f"crashed in {hook} ({n} crash(es) so far): wasm trap" in ln for ln in lines)
    world.alive()


# ------------------------------------------------------------------------ accounting

# nsend: 500 bytes allowed, 1500 rejected (reason 5), 777 trap, 778 spin past the deadline
SEND_POLICY = w(
    {
        "nsend": "(if (i32.eq (local.get $len) (i32.const 777)) (then unreachable))"
        f" (if (i32.eq (local.get $len) (i32.const 778)) (then {SPIN}))"
        " (select (i32.const 5) (i32.const 0) (i32.gt_u (local.get $len) (i32.const 1000)))",
    },
    results={"nsend": "(drop (i32.div_u (i32.const 1) (i32.const 0)))"},  # traps after
)


def test_accounting_keeps_what_a_hostile_monitor_let_out_and_nothing_else(world: World) -> None:
    """§4.5 accounting behind a monitor that rejects, traps and spins on nsends, and
    traps in every nsend_result: what went out is debited to the certificate at session
    end, exactly; what the monitor stopped is not."""
    quota = 100_000
    c = world.started(SEND_POLICY, max_send_byte=quota)
    chain = world.chain
    sink, port = udp_sink_on(odd=False)
    try:
        assert nopen(c, 1) == OK
        sizes = [500, 1500, 777, 500, 778, 500]
        want = [OK, wire.Result(MONREJ, 0, 5), wire.Result(MONUKN, 0), OK,
                wire.Result(MONUKN, 0), OK]  # fmt: skip
        for n, expect in zip(sizes, want, strict=True):
            m = wire.Nsend(sktid=1, family=4, proto=17, time=0, tag=n, data=b"x" * n,
                           raddr=LO, rport=port)  # fmt: skip
            assert c.request(m, timeout=30) == expect, n
        got = sorted(len(sink.recv(2000)) for _ in range(3))
        assert got == [500] * 3
        sessions_over = world.ep.output().count("session over")
        c.close()
        deadline = time.monotonic() + 30
        while world.ep.output().count("session over") == sessions_over:
            assert time.monotonic() < deadline, world.ep.output()[-3000:]
            time.sleep(0.05)
    finally:
        sink.close()
    certs = [load_certificates(p.read_bytes())[0] for p in chain]
    with Accounting(world.home.root / "endpt.rlim.sqlite3") as acct:
        assert acct.budget(certs).remaining(Counter.SEND_BYTE) == quota - 3 * 500
    world.alive()


# --------------------------------------------------------------------------- memory

GROW = (
    "(block (loop (br_if 1 (i32.eq (memory.grow (i32.const 1)) (i32.const -1))) (br 0)))"
    " (memory.fill (i32.const 0) (i32.const {k}) (i32.mul (memory.size) (i32.const 65536)))"
    " (i32.const 0)"
)


def test_memory_of_ended_sessions_is_freed_at_once(world: World) -> None:
    """16 monitors per session, each growing to MonitorMemoryMax (1 MiB) and writing all
    of it: 16 MiB live per session. The endpoint's RSS stays flat over 40 sessions. (Each
    session's store used to stay resident until the cyclic GC ran: RSS swung by up to
    ~170 MiB, 106 -> 282 MiB.)"""
    mods = [w({"nopen": GROW.format(k=k + 1)}) for k in range(16)]
    pid = world.ep.proc.pid
    samples = []
    for _ in range(40):
        c = world.started(*mods)
        try:  # closed also on a failure: a session left open held up the next test's
            got = nopen(c, 1)
        finally:
            c.close()
        if got != OK:
            # The deadline is wall-clock time (epoch ticks): on a loaded machine (CI at
            # load 15) a monitor descheduled mid-grow can pass its 100 ms. The session's
            # stores are freed the same way, which is what this test measures.
            assert isinstance(got, wire.Result) and got.errid == MONUKN, got
            assert "deadline of 100 ms exceeded" in world.ep.output()[-20000:], got
        samples.append(rss_kib(pid))
    base = samples[4]  # after the compile cache and the allocator warmed up
    assert max(samples[5:]) - base < 48 * 1024, samples


def test_rss_is_flat_over_200_hostile_submissions(world: World) -> None:
    """Every module above in turn, 200 sessions in all; the endpoint's RSS after the
    first round is the baseline."""
    mods = [m for m, _, _ in LOAD_CASES.values() if len(m) < (1 << 20)]
    mods += [HOSTILE, w({"nopen": GROW.format(k=1)})]
    pid = world.ep.proc.pid
    samples = []
    for i in range(200):
        wasm = mods[i % len(mods)]
        c = world.session(wasm)
        try:
            c.send(wire.Cdata(b"monitor", abi.encode(wasm)), wire.Start())
            if c.response(timeout=60) == OK and c.response(timeout=60) == OK:
                want = wire.Result(MONREJ, 0, 16) if wasm is HOSTILE else OK
                assert nopen(c, 10) == want
        finally:
            c.close()
        samples.append(rss_kib(pid))
    base = samples[len(mods)]
    assert max(samples) - base < 24 * 1024, samples
    world.alive()


FINALIZED_AFTER_ITS_STORE = """
from wasmtime import wat2wasm
from packetlab.monitor import abi
from packetlab.monitor.runtime import Box, Settings, compile_monitor
from packetlab.monitor.template import monitor_wat

class Host:
    def read_vmem(self, addr, n): return bytes(n)
    def flush(self, inst): return True
    def debug(self, inst, text): pass

wasm = bytes(wat2wasm(monitor_wat({k: "(i32.const 0)" for k in abi.CHECKS})))
box = Box(Settings())
inst = box.instantiate(compile_monitor(wasm), Host())
box.store.close()  # a garbage cycle may finalize the store first
box.__del__()
print("ok")
"""


def test_a_box_finalized_after_its_store_does_not_crash() -> None:
    """The cyclic GC finalizes a garbage cycle's objects in any order. A box whose store
    was finalized first read its monitors' persistent memory in `__del__` (from the
    unmapped linear memory): a segfault, twice in six unit-suite runs during session 20.
    In a child process, since the old code kills it."""
    proc = subprocess.run(
        [sys.executable, "-c", FINALIZED_AFTER_ITS_STORE],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, "ok\n"), proc.stderr[-2000:]
