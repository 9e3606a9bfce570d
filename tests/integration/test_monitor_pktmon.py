"""Monitors written for the reference's monitor builder (pktmon) and built unchanged with
`pktlab monitor build` (docs/monitors.md "Monitors written for pktmon"): our own sources
in pktmon's style under tests/integration/pktmon/, built with the real clang, checked
with `pktlab monitor test` and on a real `twistd pktendpoint` as aux monitors."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from conftest import DEFAULT_CONFIG, REPO, RawController

from packetlab import wire
from packetlab.monitor import abi
from packetlab.monitor.build import PKTMON_INCLUDE_DIR, find_clang
from packetlab.wire.constants import Status

pytestmark = pytest.mark.skipif(find_clang() is None, reason="clang/lld not installed")

SOURCES = Path(__file__).with_name("pktmon")
LO = ipaddress.IPv4Address("127.0.0.1").packed
MONREJ = int(Status.ECTLMONREJ)
ICMP = bytes.fromhex("4500001c00000000400100007f0000017f0000010800f7ff00000000")

# One message a line; the line number is the key of the expected rvs below.
MESSAGES = [
    {"type": "nopen", "sktid": 1, "family": 4, "proto": 0, "rbufsz": 65536, "laddr": "0.0.0.0"},
    {"type": "nopen", "sktid": 2, "family": 4, "proto": 6, "rbufsz": 65536, "laddr": "0.0.0.0",
     "lport": 0, "raddr": "192.0.2.80", "rport": 80},
    {"type": "nopen", "sktid": 3, "family": 4, "proto": 6, "rbufsz": 65536, "laddr": "0.0.0.0",
     "lport": 0, "raddr": "192.0.2.80", "rport": 22},
    {"type": "nopen", "sktid": 4, "family": 4, "proto": 17, "rbufsz": 4096, "laddr": "0.0.0.0",
     "lport": 0},
    {"type": "nsend", "sktid": 2, "family": 4, "proto": 6, "time": 0, "tag": 1,
     "data": b"GET / HTTP/1.0\r\n\r\n".hex()},
    {"type": "nsend", "sktid": 2, "family": 4, "proto": 6, "time": 0, "tag": 2,
     "data": b"SSH-2.0-x\r\n".hex()},
    {"type": "nsend", "sktid": 2, "family": 4, "proto": 6, "time": 0, "tag": 3,
     "data": b"DELETE /x HTTP/1.1\r\n\r\n".hex()},
    {"type": "nsend", "sktid": 4, "family": 4, "proto": 17, "time": 0, "tag": 4,
     "raddr": "192.0.2.53", "rport": 53, "data": "00"},
    {"type": "nsend", "sktid": 1, "family": 4, "proto": 0, "time": 0, "tag": 5,
     "data": ICMP.hex()},
    {"type": "ndata", "sktid": 2, "family": 4, "proto": 6, "time": 1,
     "data": b"HTTP/1.1 200 OK\r\n".hex()},
    {"type": "ndata", "sktid": 2, "family": 4, "proto": 6, "time": 1, "data": b"SSH-2.0".hex()},
    {"type": "ndata", "sktid": 4, "family": 4, "proto": 17, "time": 1, "raddr": "192.0.2.53",
     "rport": 53, "data": "00"},
    {"type": "ncap", "sktid": 2, "family": 4, "proto": 6, "endtime": 5, "filter": ""},
    {"type": "nclose", "sktid": 2},
    {"type": "mread", "addr": 0x10000000, "len": 1},
]  # fmt: skip


def pktlab(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "packetlab", *args],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


def build(name: str, tmp: Path) -> Path:
    out = tmp / f"{name}.wasm"
    digest = pktlab("monitor", "build", str(SOURCES / f"{name}.c"), "-o", str(out)).stdout
    assert digest.split()[0] == abi.digest(out.read_bytes()).hex()
    return out


def run_test(wasm: Path, lines: list[dict[str, Any]], tmp: Path, *extra: str) -> Any:
    msgs = tmp / "messages.jsonl"
    msgs.write_text("".join(json.dumps(m) + "\n" for m in lines))
    return pktlab("monitor", "test", str(wasm), "--messages", str(msgs), *extra)


def rows(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def rvs(proc: subprocess.CompletedProcess[str]) -> dict[int, int]:
    return {r["line"]: r["rv"] for r in rows(proc) if "rv" in r}


ALL = dict.fromkeys(range(1, 15), 0)


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("tcp_only", {1: 1, 2: 0, 3: 0, 4: 18, 5: 0, 6: 0, 7: 0, 8: 18, 9: 1, 10: 0, 11: 0,
                      12: 18, 13: 0, 14: 0}),
        ("http_only", {1: 1, 2: 0, 3: 2, 4: 18, 5: 0, 6: 3, 7: 0, 8: 18, 9: 1, 10: 0, 11: 4,
                       12: 18, 13: 7, 14: 0}),
        ("pass_all", ALL),
        ("raw_limit", ALL),
    ],
)  # fmt: skip
def test_pktmon_style_sources_build_unchanged_and_check(
    tmp_path: Path, name: str, want: dict[int, int]
) -> None:
    wasm = build(name, tmp_path)
    proc = run_test(wasm, MESSAGES, tmp_path)
    assert rvs(proc) == want
    assert rows(proc)[-1] == {"line": 15, "type": "mread", "verdict": "not checked"}
    assert "note:" not in proc.stderr  # every check exported with the ABI's types


def test_the_module_looks_like_pktmons(tmp_path: Path) -> None:
    """Imports monitor.memory and env host functions only; exports by name what the
    source defines (checks, malloc/free, initialize, *_result), nothing it leaves out."""
    engine = wasmtime.Engine()
    raw = wasmtime.Module(engine, build("raw_limit", tmp_path).read_bytes())
    tcp = wasmtime.Module(engine, build("tcp_only", tmp_path).read_bytes())
    http = wasmtime.Module(engine, build("http_only", tmp_path).read_bytes())
    checks = {abi.CHECK_PREFIX + k for k in abi.CHECKS}
    for module in (raw, tcp):
        imports = {(i.module, i.name) for i in module.imports}
        assert ("monitor", "memory") in imports
        assert {m for m, _ in imports} <= {"monitor", "env"}
        assert not any(isinstance(i.type, wasmtime.MemoryType) and i.module == "env"
                       for i in module.imports)  # fmt: skip
    raw_exports = {e.name for e in raw.exports}
    tcp_exports = {e.name for e in tcp.exports}
    assert checks | {"malloc", "free", "initialize"} <= raw_exports
    assert "pktlab_message_nopen_result" not in raw_exports
    assert checks | {"malloc", "free", "pktlab_message_nopen_result"} <= tcp_exports
    http_exports = {e.name for e in http.exports}
    assert checks | {"malloc", "free"} <= http_exports
    assert not {"initialize", "finalize", "pktlab_message_nopen_result"} & http_exports
    # what it calls, as undefined functions become imports under pktmon's import_func
    assert {i.name for i in raw.imports if i.module == "env"} == {
        "persistent_memory_flush", "endpoint_debug_enabled", "monitor_debug",
    }  # fmt: skip


def test_raw_limit_counts_in_persistent_memory_across_runs(tmp_path: Path) -> None:
    wasm = build("raw_limit", tmp_path)
    echo = {"type": "nsend", "sktid": 1, "family": 4, "proto": 0, "time": 0, "tag": 0,
            "data": ICMP.hex()}  # fmt: skip
    pm = tmp_path / "pm.bin"
    first = run_test(wasm, [echo] * 6, tmp_path, "--pm", str(pm), "--debug")
    assert rows(first)[0]["linfo"] == bytes(4).hex()
    assert list(rvs(first).values()) == [0] * 6
    assert "raw nsend 6 of 10" in first.stdout + first.stderr
    second = run_test(wasm, [echo] * 6, tmp_path, "--pm", str(pm))
    assert rows(second)[0]["linfo"] == (6).to_bytes(4, "little").hex()
    assert list(rvs(second).values()) == [0] * 4 + [10, 10]
    assert pm.read_bytes()[:4] == (10).to_bytes(4, "little")


def test_malloc_reuses_freed_memory_over_a_long_session(tmp_path: Path) -> None:
    """pass_all allocates ~250 KB (malloc, calloc, realloc) and frees it on every nsend;
    a bump allocator that never frees runs out of the 1 MiB MonitorMemoryMax from the
    seventh on (checked with one defined in the source)."""
    wasm = build("pass_all", tmp_path)
    sends = [
        {"type": "nsend", "sktid": 2, "family": 4, "proto": 6, "time": 0, "tag": i,
         "data": (b"x" * (100 + i % 50)).hex()}
        for i in range(300)
    ]  # fmt: skip
    proc = run_test(wasm, sends, tmp_path, "--memory-max", str(1 << 20))
    assert set(rvs(proc).values()) == {0}
    assert len(rvs(proc)) == 300


def test_malloc_calloc_realloc_free_never_overlap(tmp_path: Path) -> None:
    """alloc_stress: 20000 random operations per nopen over 64 live blocks, each filled
    with its own byte and checked (rv 2 = overwritten, as when a split block overlapped
    its remainder; 3 = calloc not zeroed; 9 = out of memory)."""
    wasm = build("alloc_stress", tmp_path)
    nopen = {"type": "nopen", "sktid": 1, "family": 4, "proto": 0, "rbufsz": 20000,
             "laddr": "0.0.0.0"}  # fmt: skip
    # a generous deadline: this measures no time, and the machine may be loaded
    proc = run_test(wasm, [nopen] * 3, tmp_path, "--deadline-ms", "30000")
    assert rvs(proc) == {1: 0, 2: 0, 3: 0}


def test_the_stack_is_pktmons_64k_and_an_overflow_traps(tmp_path: Path) -> None:
    """40 KB of locals worked under pktmon (wasm-ld's 64 KiB stack) and crashed here with
    our header's 16 KiB; 70 KB is past the stack: a trap, not the static data overwritten."""
    wasm = build("big_stack", tmp_path)
    proc = run_test(wasm, [{"type": "nclose", "sktid": n} for n in (1, 40, 60, 70)], tmp_path)
    got = rows(proc)[1:]
    assert [r["rv"] for r in got] == [0, 0, 0, 65535]
    assert "out of bounds memory access" in got[3]["why"]


def test_debug_formats_with_snprintf(tmp_path: Path) -> None:
    wasm = build("pass_all", tmp_path)
    proc = run_test(wasm, MESSAGES[1:2], tmp_path, "--debug")
    assert "nopen sktid=2 proto=0x6 rbufsz=65536 ok  |-0042|v4" in proc.stdout + proc.stderr


def test_a_libc_function_we_lack_is_a_clear_build_error(tmp_path: Path) -> None:
    src = tmp_path / "files.c"
    src.write_text(
        '#include "monitor_helper.h"\n#include "pktlab.h"\n'
        "void *fopen(const char *path, const char *mode);\n"
        "int32_t check_pktlab_message_nclose(uint8_t sktid, void *pm, uint32_t pmlen) {\n"
        '    return fopen("/etc/passwd", "r") != 0;\n}\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "packetlab", "monitor", "build", str(src), "-o",
         str(tmp_path / "files.wasm")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "undefined symbol: fopen" in proc.stderr
    assert 'docs/monitors.md "Monitors written for pktmon"' in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "files.wasm").exists()


def test_print_include_lists_the_pktmon_headers() -> None:
    names = {p.name for p in PKTMON_INCLUDE_DIR.iterdir()}
    assert {"monitor_helper.h", "pktlab.h", "string.h", "stdlib.h", "stdio.h"} <= names


def test_pktmon_monitors_on_a_real_endpoint(endpoint_factory: Any, tmp_path: Path) -> None:
    """As aux monitors (-m) of twistd pktendpoint: raw_limit first, tcp_only second. A raw
    nsend on a socket never opened is counted by raw_limit (monitors run before the
    endpoint's own checks, §8.5), then rejected by tcp_only (monindx 1, reason 1 + 0);
    the eleventh, across sessions, by raw_limit itself (monindx 0, reason 10). tcp_only's
    pktlab_message_nopen_result keeps the errid of the last nopen it let through, and its
    initialize reports it in the next session."""
    raw = build("raw_limit", tmp_path)
    tcp = build("tcp_only", tmp_path)
    config = DEFAULT_CONFIG + f"MonitorPersistentPath {tmp_path / 'pm.sqlite3'}\n"
    ep = endpoint_factory(config, args=["-m", str(raw), "-m", str(tcp)])

    def start(c: RawController) -> tuple[bytes, bytes]:
        c.send(wire.Start())
        assert c.response() == wire.Result(0)
        infos = [c.notification(wire.Linfo) for _ in range(2)]
        return infos[0].info, infos[1].info

    def raw_send(c: RawController, tag: int) -> wire.Message:
        return c.request(wire.Nsend(sktid=5, family=4, proto=0, time=0, tag=tag, data=ICMP))

    c = ep.accept()
    assert start(c) == (bytes(4), b"\0")
    for tag in range(6):
        assert raw_send(c, tag) == wire.Result(MONREJ, 1, 1)
    udp = wire.Nopen(sktid=1, family=4, proto=17, rbufsz=4096, laddr=LO, lport=0)
    assert c.request(udp) == wire.Result(MONREJ, 1, 18)
    tcp_listen = wire.Nopen(sktid=2, family=4, proto=6, rbufsz=4096, laddr=LO, lport=0)
    assert c.request(tcp_listen) == wire.Result(0)
    assert c.request(tcp_listen) == wire.Result(int(Status.ESKTINUSE))  # the result callback
    c.close()
    c2 = ep.accept()  # the next session: the count came back from persistent memory
    assert start(c2) == ((6).to_bytes(4, "little"), bytes([int(Status.ESKTINUSE)]))
    for tag in range(4):
        assert raw_send(c2, tag) == wire.Result(MONREJ, 1, 1)
    assert raw_send(c2, 10) == wire.Result(MONREJ, 0, 10)
