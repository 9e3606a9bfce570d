"""What hostile monitor modules cost the endpoint (docs/performance.md, "Monitors: hostile
modules"): the figures behind the load limits of docs/monitors.md.

* compile: seconds to compile modules of growing size (many functions, and one long
  function): the reactor is blocked that long, hence the 1 MiB cap on a certificate
  monitor (`packetlab.endpoint.monitors.MAX_MODULE`);
* own memories / tables: RSS of ten instances whose module defines 99 memories (each
  grown to 1 MiB and filled) or 99 tables (filled), checked with the load checks off,
  as they were before they refused such modules;
* repeated imports: instantiation time and RSS of a module importing fd_write 30,000
  times.

Each case runs in a fresh process (RSS is the process's resident set after the case).

    .venv/bin/python -m benchmarks.bench_monitor_hostile
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from benchmarks.common import help_requested

CASES = ("compile", "memories", "tables", "imports")


def _rss_mib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 // 2**20


def _case(name: str) -> dict[str, object]:
    import wasmtime

    from packetlab.monitor import abi, load
    from packetlab.monitor.runtime import Box, Settings, compile_monitor
    from packetlab.monitor.template import monitor_wat

    allow = {k: "(i32.const 0)" for k in abi.CHECKS}

    class Host:
        def read_vmem(self, addr: int, n: int) -> bytes:
            return bytes(n)

        def flush(self, inst: object) -> None:
            pass

        def debug(self, inst: object, text: str) -> None:
            pass

    def build(checks: dict[str, str], extra: str = "", imports: str = "") -> bytes:
        wat = monitor_wat(allow | checks, extra=extra)
        return bytes(wasmtime.wat2wasm(wat.replace("(module", f"(module {imports}", 1)))

    if name == "compile":
        out: dict[str, object] = {}
        for label, n, fns in (("1 function x 100k adds", 100_000, 1), ("1000 x 1000", 1000, 1000)):
            body = "(local.get $x)" + "(i32.add (i32.const 1))" * n + "(drop)"
            extra = "".join(f"(func $f{j} (param $x i32) {body})" for j in range(fns))
            wasm = build({}, extra)
            t = time.perf_counter()
            compile_monitor(wasm)
            out[label] = {"bytes": len(wasm), "compile_s": round(time.perf_counter() - t, 2)}
        return out
    if name in ("memories", "tables"):
        if name == "memories":
            extra = "".join(f"(memory $m{i} 1)" for i in range(99))
            body = "".join(
                f"(drop (memory.grow $m{i} (i32.const 15)))"
                f" (memory.fill $m{i} (i32.const 0) (i32.const 1) (i32.const 1048576))"
                for i in range(99)
            )
        else:
            extra = "".join(f"(table $t{i} 99000 funcref)" for i in range(99))
            extra += " (func $g) (elem declare func $g)"
            body = "".join(
                f"(table.fill $t{i} (i32.const 0) (ref.func $g) (i32.const 99000))"
                for i in range(99)
            )
        wasm = build({"nclose": body + " (i32.const 0)"}, extra)
        load._section_count = lambda wasm, section_id: 0  # the load checks off
        box = Box(Settings(deadline_ms=10_000))
        before = _rss_mib()
        for _ in range(10):
            inst = box.instantiate(compile_monitor(wasm), Host())
            inst.check("nclose", (1, inst.pm, abi.PM_LEN))
        return {"instances": 10, "rss_added_mib": _rss_mib() - before}
    assert name == "imports"
    sig = "(param i32 i32 i32 i32) (result i32)"
    imports = "".join(
        f'(import "wasi_snapshot_preview1" "fd_write" (func $w{i} {sig}))' for i in range(30_000)
    )
    wasm = build({}, imports=imports)
    compiled = compile_monitor(wasm)
    box = Box(Settings())
    before = _rss_mib()
    t = time.perf_counter()
    box.instantiate(compiled, Host())
    return {
        "bytes": len(wasm),
        "instantiate_s": round(time.perf_counter() - t, 2),
        "rss_added_mib": _rss_mib() - before,
    }


def main() -> None:
    if help_requested(sys.argv[1:], __doc__):  # (it ran the whole benchmark: 49 s, 1 GiB)
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        print(json.dumps(_case(sys.argv[2])))
        return
    for name in CASES:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_monitor_hostile", "--case", name],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        print(name, out.stdout.strip())


if __name__ == "__main__":
    main()
