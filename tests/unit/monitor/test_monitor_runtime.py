"""The monitor runtime (PROTOCOL.md §8.2): ABI checks at load, the raw call path, the
deadline and the memory cap, and hostile modules."""

from __future__ import annotations

import random

import pytest
import wasmtime

from packetlab.monitor import abi
from packetlab.monitor.runtime import (
    Box,
    Instance,
    MonitorCrash,
    MonitorLoadError,
    Settings,
    compile_monitor,
)
from packetlab.monitor.template import monitor_wat

ALLOW = {kind: "(i32.const 0)" for kind in abi.CHECKS}


class Host:
    def __init__(self) -> None:
        self.flushed: list[bytes] = []
        self.debugged: list[str] = []

    def read_vmem(self, addr: int, length: int) -> bytes:
        return bytes((addr + i) & 0xFF for i in range(length))

    def flush(self, instance: Instance) -> None:
        self.flushed.append(instance.persistent())

    def debug(self, instance: Instance, text: str) -> None:
        self.debugged.append(text)


def wasm(wat: str) -> bytes:
    return bytes(wasmtime.wat2wasm(wat))


def load(wat: str, settings: Settings | None = None, pm: bytes = b"") -> Instance:
    box = Box(settings or Settings())
    return box.instantiate(compile_monitor(wasm(wat)), Host(), pm)


def refused(wat: str | bytes, match: str) -> None:
    with pytest.raises(MonitorLoadError, match=match):
        compile_monitor(wat if isinstance(wat, bytes) else wasm(wat))


NSEND = (1, 4, 17, 2**40 + 5, 7, 0, 0, 0, 0, 3)


def nsend_args(inst: Instance, time: int = 2**40 + 5) -> tuple[int, ...]:
    return (1, 4, 17, time, 7, 0, 0, 0, 0, 3, inst.pm, abi.PM_LEN)


# ------------------------------------------------------------------------- load checks


def test_digest_is_sha256_of_the_encoded_program() -> None:
    import hashlib

    w = wasm(monitor_wat(ALLOW))
    assert abi.digest(w) == hashlib.sha256(b"\x01" + w).digest()
    assert compile_monitor(w).digest == abi.digest(w)


def test_invalid_bytes_are_refused() -> None:
    refused(b"\x00asm\x01\x00\x00\x00garbage", "not a valid WebAssembly module")
    refused(b"", "not a valid WebAssembly module")


def test_an_empty_module_is_called_empty() -> None:
    """0 bytes (an aux monitor file truncated, a cdata with nothing after 0x01) were
    told to assemble their text first: `it does not begin with the binary magic \\0asm
    (text must be assembled first ...)`."""
    with pytest.raises(MonitorLoadError) as e:
        compile_monitor(b"")
    assert str(e.value) == "not a valid WebAssembly module: it is empty (0 bytes)"
    assert e.value.decode


@pytest.mark.parametrize(
    ("memory", "match"),
    [
        ("(memory 3)", "asks for 3 pages"),
        ("(memory 2 10)", "declares a maximum"),
        ("(memory 1 2)", "declares a maximum"),
    ],
)
def test_memory_import_shapes(memory: str, match: str) -> None:
    wat = monitor_wat(ALLOW).replace(
        '(import "monitor" "memory" (memory 2))', f'(import "monitor" "memory" {memory})'
    )
    refused(wat, match)


def test_smaller_memory_import_is_accepted() -> None:
    wat = monitor_wat(ALLOW).replace("(memory 2))", "(memory 1))")
    inst = load(wat)
    assert inst.memory_size() >= 2 * 65536  # the host memory is 2 pages all the same


def test_own_memory_is_refused() -> None:
    wat = (
        '(module (memory 2) (func (export "malloc") (param i32) (result i32) i32.const 0)'
        ' (func (export "free") (param i32)))'
    )
    refused(wat, "must import its memory as monitor.memory")


def test_unknown_imports_are_refused() -> None:
    base = monitor_wat(ALLOW)
    refused(
        base.replace("(module", '(module (import "env" "launch" (func)) ', 1),
        "unknown host function env.launch",
    )
    refused(base.replace("(module", '(module (import "os" "system" (func)) ', 1), "os.system")
    bad = '(import "env" "read_vmem_region" (func $x (param i32) (result i32)))'
    refused(base.replace("(module", f"(module {bad}", 1), "wrong type")


def test_malloc_and_free_are_required() -> None:
    base = monitor_wat(ALLOW)
    refused(base.replace('(export "malloc")', ""), "does not export malloc")
    refused(
        base.replace('(func (export "free") (param i32))', '(func (export "free"))'),
        "wrongly typed free",
    )


def test_missing_and_mistyped_checks_are_noted_not_refused() -> None:
    checks = {"nsend": "(i32.const 0)"}
    wat = monitor_wat(checks).replace(
        ")\n", '  (func (export "check_pktlab_message_nclose") (result i32) i32.const 0)\n)', 1
    )
    c = compile_monitor(wasm(monitor_wat(checks)))
    assert c.checks == {"nsend"}
    assert any("nopen missing" in n for n in c.notes)
    assert wat  # the mistyped variant compiles too:
    wat2 = monitor_wat(checks) + ""
    wat2 = wat2[: wat2.rindex(")")] + (
        '(func (export "check_pktlab_message_nclose") (result i32) i32.const 0))'
    )
    c2 = compile_monitor(wasm(wat2))
    assert "nclose" not in c2.checks and any("nclose wrongly typed" in n for n in c2.notes)


def test_wasi_imports_are_stubbed() -> None:
    wat = monitor_wat(
        {"nsend": "(call $fd_write (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0))"}
    )
    wat = wat.replace(
        "(module",
        '(module (import "wasi_snapshot_preview1" "fd_write" '
        "(func $fd_write (param i32 i32 i32 i32) (result i32)))",
        1,
    )
    inst = load(wat)
    assert inst.check("nsend", nsend_args(inst)) == 0  # the stub returns 0


# ------------------------------------------------------------------------- calls


def test_raw_path_passes_every_argument_and_the_whole_64_bit_time() -> None:
    # Each check returns a hash of its arguments; the raw path must agree with wasmtime's
    # checked call for random values.
    bodies = {}
    for kind, names in abi.CHECK_PARAMS.items():
        acc = "(i32.const 0)"
        for n in names:
            v = f"(local.get ${n})"
            if n in ("time", "endtime"):
                v = f"(i32.xor (i32.wrap_i64 {v}) (i32.wrap_i64 (i64.shr_u {v} (i64.const 32))))"
            acc = f"(i32.add (i32.mul {acc} (i32.const 31)) {v})"
        bodies[kind] = f"(i32.and {acc} (i32.const 0xfff))"
    inst = load(monitor_wat(bodies))
    store = inst.box.store
    rng = random.Random(7)
    for kind, types in abi.CHECKS.items():
        func = inst._checks[kind].func
        for _ in range(20):
            args = [rng.getrandbits(63 if t == abi.I64 else 31) for t in types]
            assert inst.check(kind, args) == func(store, *args), kind


def test_rv_values_pass_through() -> None:
    for rv in (0, 1, 65534, 65535, 70000, -1, -3):
        inst = load(monitor_wat({"nclose": f"(i32.const {rv})"}))
        assert inst.check("nclose", (1, inst.pm, 256)) == rv


def test_trap_is_a_crash_and_the_instance_keeps_working() -> None:
    inst = load(
        monitor_wat(
            {
                "nclose": "(if (i32.eq (local.get $sktid) (i32.const 9))"
                " (then unreachable)) (i32.const 0)"
            }
        )
    )
    assert inst.check("nclose", (9, inst.pm, 256)) == abi.MONITOR_CRASH
    assert "unreachable" in inst.last_crash
    assert inst.check("nclose", (1, inst.pm, 256)) == 0
    assert inst.crashes == 1


def test_missing_check_is_a_crash() -> None:
    inst = load(monitor_wat({"nclose": "(i32.const 0)"}))
    assert inst.check("nsend", nsend_args(inst)) == abi.MONITOR_CRASH
    assert "not exported" in inst.last_crash


def test_deadline_cuts_a_spinning_monitor_and_it_keeps_working() -> None:
    wat = monitor_wat(
        {
            "nclose": "(if (i32.eq (local.get $sktid) (i32.const 1))"
            " (then (loop (br 0)))) (i32.const 0)"
        }
    )
    inst = load(wat, Settings(deadline_ms=20))
    assert inst.check("nclose", (1, inst.pm, 256)) == abi.MONITOR_CRASH
    assert "deadline of 20 ms exceeded" in inst.last_crash
    assert inst.check("nclose", (2, inst.pm, 256)) == 0


def test_memory_cap_makes_grow_fail() -> None:
    # Grow by 64 pages (4 MiB): refused under a 1 MiB cap, allowed under 8 MiB.
    body = "(i32.eq (memory.grow (i32.const 64)) (i32.const -1))"
    small = load(monitor_wat({"nclose": body}), Settings(memory_max=1 << 20))
    assert small.check("nclose", (1, small.pm, 256)) == 1
    big = load(monitor_wat({"nclose": body}), Settings(memory_max=8 << 20))
    assert big.check("nclose", (1, big.pm, 256)) == 0


def test_memory_bomb_in_a_loop_stays_under_the_cap() -> None:
    body = "(loop (br_if 0 (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) (memory.size)"
    inst = load(monitor_wat({"nclose": body}), Settings(memory_max=1 << 20))
    assert inst.check("nclose", (1, inst.pm, 256)) == 16  # 1 MiB in 64 KiB pages


def test_huge_table_fails_to_instantiate() -> None:
    wat = monitor_wat(ALLOW, extra="  (table 100000000 funcref)\n")
    with pytest.raises(MonitorLoadError, match="instantiation failed"):
        load(wat)


def test_data_beyond_the_memory_fails_to_instantiate() -> None:
    wat = monitor_wat(ALLOW, extra='  (data (i32.const 200000) "x")\n')
    with pytest.raises(MonitorLoadError, match="instantiation failed"):
        load(wat)


def test_infinite_start_function_is_cut_off() -> None:
    wat = monitor_wat(ALLOW, extra="  (func $spin (loop (br 0)))\n  (start $spin)\n")
    with pytest.raises(MonitorLoadError, match="deadline"):
        load(wat, Settings(deadline_ms=20))


def test_initialize_gets_pm_and_returns_info() -> None:
    init = (
        "(i32.store8 (local.get $info) (i32.load8_u (local.get $pm)))"
        " (i32.store8 (i32.add (local.get $info) (i32.const 1)) (local.get $pmlen))"
        " (i32.const 2)"
    )
    inst = load(monitor_wat(ALLOW, initialize=init), pm=b"\x2a")
    assert inst.initialize() == bytes([0x2A, 0])  # pmlen 256 & 0xff


@pytest.mark.parametrize("claimed", ["0x10001", "-1"])
def test_initialize_that_claims_too_much_info_is_cut_to_info_max(claimed: str) -> None:
    """The reference truncates the info to PKTLAB_LINFO_INFO_MAX (pktmon README): a
    monitor written for it that returns more must not fail `start` here (it did: a
    crash, ECTLMONUKN and the session closed)."""
    init = f"(i32.store8 (local.get $info) (i32.const 0x2a)) (i32.const {claimed})"
    inst = load(monitor_wat(ALLOW, initialize=init))
    info = inst.initialize()
    assert len(info) == abi.INFO_MAX == 0x10000
    assert info[0] == 0x2A
    assert inst.crashes == 0


def test_infinite_initialize_is_cut_off() -> None:
    inst = load(
        monitor_wat(ALLOW, initialize="(loop (br 0)) (i32.const 0)"), Settings(deadline_ms=20)
    )
    with pytest.raises(MonitorCrash, match="deadline"):
        inst.initialize()


def test_bogus_malloc_fails_the_load() -> None:
    wat = monitor_wat(ALLOW).replace("(local.get $p))", "(i32.const -16))", 1)
    with pytest.raises(MonitorLoadError, match="malloc failed"):
        load(wat)


def test_host_functions() -> None:
    extra = '  (data (i32.const 100) "hello\\00")\n'
    body = (
        "(drop (call $read_vmem_region (i32.const 1) (i32.const 200) (i32.const 3)))"
        " (drop (call $read_vmem_region (i32.const 0x10030000) (i32.const 210)"
        " (i32.const 2)))"
        " (call $monitor_debug (i32.const 100))"
        " (i32.store8 (local.get $pm) (i32.const 5))"
        " (drop (call $persistent_memory_flush))"
        " (i32.add (i32.add (i32.load8_u (i32.const 200)) (i32.load8_u (i32.const 202)))"
        " (i32.add (i32.load8_u (i32.const 211)) (call $endpoint_debug_enabled)))"
    )
    box = Box(Settings(debug=True))
    host = Host()
    inst = box.instantiate(compile_monitor(wasm(monitor_wat({"ncap": body}, extra=extra))), host)
    rv = inst.check("ncap", (1, 4, 0, 0, inst.pm, 256), b"\x00abc")
    # CURPKT_DATA[1..3] = "abc"; vmem 0x10030001 -> host's pattern 0x01; debug enabled: 1
    assert rv == ord("a") + ord("c") + 0x01 + 1
    assert host.debugged == ["hello"]
    assert host.flushed == [b"\x05" + bytes(255)]


def test_read_vmem_outside_the_monitor_memory_fails() -> None:
    body = "(call $read_vmem_region (i32.const 0) (i32.const 0xfffffff0) (i32.const 64))"
    inst = load(monitor_wat({"ncap": body}))
    assert inst.check("ncap", (1, 4, 0, 0, inst.pm, 256), b"abc") == -1


def test_debug_is_silent_when_disabled() -> None:
    host = Host()
    box = Box(Settings(debug=False))
    wat = monitor_wat(
        {"nclose": "(call $monitor_debug (i32.const 0)) (call $endpoint_debug_enabled)"}
    )
    inst = box.instantiate(compile_monitor(wasm(wat)), host)
    assert inst.check("nclose", (1, inst.pm, 256)) == 0
    assert host.debugged == []


def test_retarget_memory_import() -> None:
    from packetlab.monitor.build import retarget_memory_import

    src = monitor_wat(ALLOW).replace('(import "monitor" "memory"', '(import "env" "memory"')
    with pytest.raises(MonitorLoadError, match=r"env\.memory"):
        compile_monitor(wasm(src))
    fixed = retarget_memory_import(wasm(src))
    c = compile_monitor(fixed)
    assert c.checks == frozenset(abi.CHECKS)
    assert retarget_memory_import(fixed) == fixed  # nothing left to rename


def test_hot_paths_pass_the_same_arguments_as_the_generic_path() -> None:
    from packetlab.monitor.calls import ndata_args, nsend_args
    from packetlab.wire.messages import Nsend

    # rv = a hash of every argument and of the staged raddr/rport bytes
    def body(kind: str) -> str:
        acc = "(i32.const 7)"
        for n in abi.CHECK_PARAMS[kind]:
            v = f"(local.get ${n})"
            if n == "time":
                v = f"(i32.xor (i32.wrap_i64 {v}) (i32.wrap_i64 (i64.shr_u {v} (i64.const 32))))"
            elif n in ("raddr", "rport"):
                v = f"(if (result i32) {v} (then (i32.load {v})) (else (i32.const 5)))"
            acc = f"(i32.add (i32.mul {acc} (i32.const 31)) {v})"
        return f"(i32.and {acc} (i32.const 0xffff))"

    inst = load(monitor_wat({"nsend": body("nsend"), "ndata": body("ndata")}))
    lo = bytes([127, 0, 0, 1])
    for m in (
        Nsend(1, 4, 17, 2**40 + 3, 9, b"abc", lo, 53),
        Nsend(2, 6, 17, 5, 0, b"", bytes(range(16)), 65535),
        Nsend(3, 4, 6, 0, 1, b"xyz"),
    ):
        assert inst.check_nsend(m) == inst.check("nsend", nsend_args(inst, m), m.data)
        args = ndata_args(inst, m.sktid, m.family, m.proto, m.time, m.raddr, m.rport, 3)
        hot = inst.check_ndata(m.sktid, m.family, m.proto, m.time, m.raddr, m.rport, b"abc")
        assert hot == inst.check("ndata", args, b"abc")
    missing = load(monitor_wat({"nclose": "(i32.const 0)"}))
    assert missing.check_nsend(Nsend(1, 4, 6, 0, 0, b"x")) == abi.MONITOR_CRASH
    assert missing.check_ndata(1, 4, 6, 0, None, None, b"x") == abi.MONITOR_CRASH


# ------------------------------------------------------------ audit (session 9)


def test_memories_of_its_own_are_refused() -> None:
    # monitor.memory and 99 memories of its own, each capped at MonitorMemoryMax, would
    # let one monitor hold ~100 x MonitorMemoryMax (ten of them: +1000 MiB of RSS,
    # benchmarks/bench_monitor_hostile.py).
    one = monitor_wat(ALLOW, extra="  (memory $own 1)\n")
    refused(one, "defines 1 memory of its own")
    many = monitor_wat(ALLOW, extra="".join(f"  (memory $m{i} 0)\n" for i in range(99)))
    refused(many, "defines 99 memories of its own")


def test_a_decode_error_names_its_cause() -> None:
    # wasmtime's first line ("failed to parse WebAssembly module") does not say why.
    too_many = monitor_wat(ALLOW, extra="".join(f"  (memory $m{i} 0)\n" for i in range(101)))
    refused(too_many, "memories count exceeds limit of 100")


def test_repeated_imports_share_one_function_each() -> None:
    # A module may import the same function many times (~24,000 fit in 1 MiB): one host
    # function per import: 30,000 imports took 3.25 s and +54 MiB per instance.
    wasi = (
        '(import "wasi_snapshot_preview1" "fd_write"'
        " (func $w{i} (param i32 i32 i32 i32) (result i32)))"
    )
    env = '(import "env" "read_vmem_region" (func $r{i} (param i32 i32 i32) (result i32)))'
    imports = "".join(wasi.format(i=i) + env.format(i=i) for i in range(200))
    box = Box(Settings())
    c = compile_monitor(wasm(monitor_wat(ALLOW).replace("(module", f"(module {imports}", 1)))
    a = box.instantiate(c, Host())
    b = box.instantiate(c, Host())
    # per instance: its host memory, then 3 objects per function (env's and fd_write)
    assert len(a._keep) == len(b._keep) == 1 + 3 * 5


def wasi_monitor(imports: str, body: str) -> Instance:
    wat = monitor_wat({"nclose": body}).replace("(module", f"(module {imports}", 1)
    return load(wat)


_WASI = '(import "wasi_snapshot_preview1" "{name}" (func ${name} {sig}))'


def wasi_import(name: str) -> str:
    from packetlab.monitor import wasi

    params, results = wasi.FUNCS[name]
    sig = " ".join(f"(param {p})" for p in params) + " ".join(f" (result {r})" for r in results)
    return _WASI.format(name=name, sig=sig)


def test_wasi_fd_write_to_stdout_writes_everything_nowhere() -> None:
    # wasi-libc's printf loops on fd_write until *nwritten covers its iovecs: a stub that
    # returns 0 without setting it leaves the stack's garbage there.
    body = (
        "(i32.store (i32.const 100) (i32.const 200)) (i32.store (i32.const 104) (i32.const 5))"
        " (i32.store (i32.const 108) (i32.const 300)) (i32.store (i32.const 112) (i32.const 7))"
        " (i32.store (i32.const 120) (i32.const 0xdead))"
        " (if (call $fd_write (local.get $sktid) (i32.const 100) (i32.const 2) (i32.const 120))"
        "  (then (return (i32.add (i32.const 1000)"
        "   (call $fd_write (local.get $sktid) (i32.const 100) (i32.const 2) (i32.const 120))))))"
        " (i32.load (i32.const 120))"
    )
    inst = wasi_monitor(wasi_import("fd_write"), body)
    assert inst.check("nclose", (1, inst.pm, 256)) == 12
    assert inst.check("nclose", (2, inst.pm, 256)) == 12
    assert inst.check("nclose", (3, inst.pm, 256)) == 1008  # EBADF: nothing else is open


def test_wasi_context_is_empty() -> None:
    imports = "".join(
        wasi_import(n)
        for n in ("fd_prestat_get", "environ_sizes_get", "clock_time_get", "random_get")
    )
    body = (
        "(i32.store (i32.const 100) (i32.const -1)) (i32.store (i32.const 104) (i32.const -1))"
        " (if (i32.eq (local.get $sktid) (i32.const 0))"
        "  (then (return (call $fd_prestat_get (i32.const 3) (i32.const 100)))))"
        " (if (i32.eq (local.get $sktid) (i32.const 1))"
        "  (then (drop (call $environ_sizes_get (i32.const 100) (i32.const 104)))"
        "   (return (i32.or (i32.load (i32.const 100)) (i32.load (i32.const 104))))))"
        " (if (i32.eq (local.get $sktid) (i32.const 2))"
        "  (then (return (call $random_get (i32.const 0x1fff0) (i32.const 32)))))"
        " (drop (call $clock_time_get (i32.const 1) (i64.const 0) (i32.const 100)))"
        " (i64.ne (i64.load (i32.const 100)) (i64.const 0))"
    )
    inst = wasi_monitor(imports, body)
    assert inst.check("nclose", (0, inst.pm, 256)) == 8  # no preopens: EBADF ends the scan
    assert inst.check("nclose", (1, inst.pm, 256)) == 0  # no environment
    assert inst.check("nclose", (2, inst.pm, 256)) == 21  # EFAULT past the memory
    assert inst.check("nclose", (3, inst.pm, 256)) == 1  # the clock runs


def test_wasi_proc_exit_ends_the_call_as_a_crash() -> None:
    inst = wasi_monitor(wasi_import("proc_exit"), "(call $proc_exit (i32.const 3)) (i32.const 0)")
    assert inst.check("nclose", (1, inst.pm, 256)) == abi.MONITOR_CRASH
    assert inst.last_crash == "proc_exit(3)"


def test_wasi_imports_must_be_preview1_functions_of_their_type() -> None:
    base = monitor_wat(ALLOW)
    bogus = '(import "wasi_snapshot_preview1" "launch_missiles" (func))'
    refused(base.replace("(module", f"(module {bogus}", 1), "WASI preview 1 does not define")
    wrong = '(import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32)))'
    refused(base.replace("(module", f"(module {wrong}", 1), "fd_write has the wrong type")


def test_debug_output_is_bounded_per_call() -> None:
    # With MonitorEnableDebug 1, a monitor_debug loop wrote a log line per iteration until
    # the deadline (tens of thousands of lines per request).
    from packetlab.monitor.runtime import MAX_DEBUG_LINES

    host = Host()
    box = Box(Settings(debug=True))
    body = (
        "(loop (call $monitor_debug (i32.const 0))"
        " (br_if 0 (i32.ne (local.tee $sktid (i32.add (local.get $sktid) (i32.const 1)))"
        " (i32.const 1000)))) (i32.const 0)"
    )
    inst = box.instantiate(compile_monitor(wasm(monitor_wat({"nclose": body}))), host)
    assert inst.check("nclose", (0, inst.pm, 256)) == 0
    assert len(host.debugged) == MAX_DEBUG_LINES + 1
    assert "dropped" in host.debugged[-1]
    assert inst.check("nclose", (999, inst.pm, 256)) == 0  # a new call may log again
    assert len(host.debugged) == MAX_DEBUG_LINES + 2


@pytest.mark.parametrize(
    ("extra", "body"),
    [
        ("(type $a (array (mut i64)))", "(drop (array.new_default $a (i32.const 8)))"),  # GC
        ("(tag $e)", "(throw $e)"),  # exception handling
        ("(type $f (func))", "(call_ref $f (ref.func $g))"),  # typed function references
    ],
)
def test_proposals_the_reference_runtime_lacks_are_refused(extra: str, body: str) -> None:
    # The reference runs Wasmtime 23 with its defaults: no GC, exceptions or typed function
    # references. wasmtime 50 enables them; a GC heap is one more allocation per monitor.
    extra += " (func $g (type $f)) (elem declare func $g)" if "ref.func" in body else ""
    wat = monitor_wat(ALLOW | {"nclose": f"{body} (i32.const 0)"}, extra=extra)
    refused(wat, "not a valid WebAssembly module")


def test_more_than_one_table_is_refused() -> None:
    # Each table may hold 100,000 elements: ten monitors filling 99 tables each held
    # +760 MiB (benchmarks/bench_monitor_hostile.py). C code has one table, or none.
    assert compile_monitor(wasm(monitor_wat(ALLOW, extra="  (table 10 funcref)\n")))
    two = monitor_wat(ALLOW, extra="  (table 1 funcref) (table 1 funcref)\n")
    refused(two, "defines 2 tables")


@pytest.mark.parametrize("rv", [65535, 70000, 0x7FFFFFFF])
def test_a_return_of_65535_or_more_counts_as_a_crash(rv: int) -> None:
    # §8.3/§8.5: a crash; it was returned as is but not counted, so the endpoint logged
    # it on every request with "0 crash(es)" and the previous crash's reason.
    inst = load(monitor_wat({"nclose": f"(i32.const {rv})", "nsend": f"(i32.const {rv})"}))
    assert inst.check("nclose", (1, inst.pm, 256)) == rv
    assert inst.crashes == 1 and inst.last_crash == f"returned {rv} (65535 or more is a crash)"

    class Nsend:
        sktid, family, proto, time, tag, data, raddr, rport = 1, 4, 6, 0, 0, b"", None, None

    assert inst.check_nsend(Nsend) == rv and inst.crashes == 2
    assert inst.check_ndata(1, 4, 6, 0, None, None, b"") == abi.MONITOR_CRASH  # not exported


def test_a_memory_fault_is_named_not_summarised_as_caused_by() -> None:
    """wasmtime's report of an out-of-bounds load ends in numbered "Caused by:" lines;
    the summary (a crash's `why`, an rdetached text) was the bare "Caused by:"."""
    from packetlab.monitor.runtime import _summary

    text = (
        "error while executing at wasm backtrace:\n"
        "    0:    0x193 - <unknown>!<wasm function 10>\n\n"
        "Caused by:\n"
        "    0: memory fault at wasm address 0x7ffffff0 in linear memory of size 0x30000\n"
        "    1: wasm trap: out of bounds memory access\n"
    )
    assert _summary(text) == (
        "memory fault at wasm address 0x7ffffff0 in linear memory of size 0x30000; "
        "wasm trap: out of bounds memory access"
    )
    assert _summary("deadline of 100 ms exceeded") == "deadline of 100 ms exceeded"


# ------------------------------------------------------------- session 20 (mon20)


def test_webassembly_text_is_not_a_module() -> None:
    # wasmtime.Module parses bytes that do not begin with \0asm as WebAssembly text; the
    # reference (wasmtime_module_new) takes the binary format only. As text, a module
    # with two tables and two memories of its own passed the section checks, which read
    # the bytes as binary (it compiled and ran: one monitor could hold 3x its cap).
    text = monitor_wat(ALLOW, extra="(memory 2) (memory 2) (table 1 funcref) (table 1 funcref)")
    refused(text.encode(), r"does not begin with the binary magic \\0asm")
    refused(monitor_wat(ALLOW).encode(), "binary magic")
    refused(b"hello", "binary magic")


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (
            "(i32.load (i32.const -4))",
            "memory fault at wasm address 0xfffffffc in linear memory of size 0x20000; "
            "wasm trap: out of bounds memory access",
        ),
        ("(call $deep (i32.const 0))", "wasm trap: call stack exhausted"),
        ("(i32.div_u (i32.const 1) (i32.const 0))", "wasm trap: integer divide by zero"),
        ("(call_indirect (result i32) (i32.const 5))", "out of bounds table access"),
    ],
)
def test_a_trap_is_explained_in_one_line(body: str, cause: str) -> None:
    # The out-of-bounds access (the commonest trap) was logged as "Caused by:": its
    # causes are numbered ("0: memory fault ...", "1: wasm trap: ...").
    deep = "(func $deep (param i32) (result i32) (call $deep (local.get 0)))"
    inst = load(monitor_wat(ALLOW | {"nclose": body}, extra=f"(table 1 funcref) {deep}"))
    assert inst.check("nclose", (1, inst.pm, 256)) == abi.MONITOR_CRASH
    assert inst.last_crash.endswith(cause), inst.last_crash
    assert "\n" not in inst.last_crash and "Caused by" not in inst.last_crash


def test_a_closed_box_is_freed_without_the_cyclic_gc() -> None:
    # Host-function callbacks referred back to their instance (and ctypes.cast put each
    # callback into a cycle of its own), so a closed box's store, with every monitor's
    # memory, stayed resident until the next full collection of the cyclic GC.
    import gc
    import weakref

    wat = monitor_wat(ALLOW).replace(
        "(global $heap",
        '(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32)'
        " (result i32))) (global $heap",
    )
    compiled = compile_monitor(wasm(wat))
    gc.disable()
    try:
        box = Box(Settings())
        inst = box.instantiate(compiled, Host(), b"\x07")
        store = weakref.ref(box.store)
        box.close()
        # A closed box's monitors never run again: each check is a crash (fail closed),
        # and the persistent memory still reads.
        assert inst.check("nclose", (1, inst.pm, 256)) == abi.MONITOR_CRASH
        assert inst.check_nsend(_Nsend()) == abi.MONITOR_CRASH
        assert inst.persistent()[:2] == b"\x07\x00"
        del box, inst
        assert store() is None
    finally:
        gc.enable()


class _Nsend:
    sktid, family, proto, time, tag, data, raddr, rport = 1, 4, 17, 0, 0, b"x", None, None


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("(memory $a 1) (memory $b 1)", "defines 2 memories of its own; a reflex"),
        ("(table 1 funcref) (table 1 funcref)", "defines 2 tables; a reflex may have one"),
    ],
)
def test_a_reflex_has_the_shape_checks_of_a_monitor(extra: str, match: str) -> None:
    # Reflexes load through the same loader but skipped these two checks: a reflex with
    # 100 memories of its own could hold 100 times MonitorMemoryMax.
    from packetlab.reflex.runtime import compile_reflex
    from packetlab.reflex.template import reflex_wat

    with pytest.raises(MonitorLoadError, match=match):
        compile_reflex(wasm(reflex_wat("(i32.const 1)", extra=extra)))


def test_a_module_that_fails_to_instantiate_does_not_keep_the_store() -> None:
    # Its host functions were made (and referred back to it) before the start function
    # ran: it kept the box and the store, with what the start function had grown, until
    # the cyclic GC ran.
    import gc
    import weakref

    start = "(func $s (drop (memory.grow (i32.const 14))) (loop (br 0))) (start $s)"
    compiled = compile_monitor(wasm(monitor_wat(ALLOW, extra=start)))
    gc.disable()
    try:
        box = Box(Settings(deadline_ms=20))
        store = weakref.ref(box.store)
        with pytest.raises(MonitorLoadError, match="deadline"):
            box.instantiate(compiled, Host())
        box.close()
        del box
        assert store() is None
    finally:
        gc.enable()
