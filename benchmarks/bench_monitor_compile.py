"""How long compiling a certificate monitor stalls the endpoint's reactor
(docs/performance.md, "Monitors"): a module just under the 1 MiB cap (one long function,
the slow shape) compiled by `MonitorHost` on the reactor thread ("inline", as before
session 9) and in the reactor's thread pool ("thread", `compile_later` with
``deferToThread`` as the endpoint does), while a 5 ms LoopingCall measures how late the
reactor runs it; "idle" compiles nothing for 10 s (the machine's own noise). Each case
runs in a fresh process (fresh engine, empty cache), the cases alternating; medians over
the rounds; peak RSS is the process's.

    .venv/bin/python -m benchmarks.bench_monitor_compile [rounds]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

TICK = 0.005


def _module() -> bytes:
    import wasmtime

    from packetlab.monitor import abi
    from packetlab.monitor.template import monitor_wat

    allow = {k: "(i32.const 0)" for k in abi.CHECKS}
    n = 345_000  # ~1,035,000 bytes: just under MAX_MODULE
    body = "(local.get $x)" + "(i32.add (i32.const 1))" * n + "(drop)"
    wat = monitor_wat(allow, extra=f"(func $f0 (param $x i32) {body})")
    return bytes(wasmtime.wat2wasm(wat))


def _case(mode: str) -> dict[str, float]:
    from twisted.internet import reactor, task
    from twisted.internet.threads import deferToThread

    from packetlab.endpoint.monitors import MAX_MODULE, MonitorHost
    from packetlab.monitor.runtime import Settings, engine

    wasm = _module()
    assert len(wasm) <= MAX_MODULE, len(wasm)
    engine()
    host = MonitorHost(
        Settings(), (), tempfile.mktemp(), deferToThread if mode == "thread" else None
    )
    late: list[float] = []
    last = [0.0]
    out: dict[str, float] = {"bytes": len(wasm)}

    def tick() -> None:
        now = time.monotonic()
        if last[0]:
            late.append(now - last[0] - TICK)
        last[0] = now

    loop = task.LoopingCall(tick)
    loop.start(TICK)

    def done(_: object, t0: float) -> None:
        out["compile_s"] = time.monotonic() - t0
        reactor.callLater(0.05, reactor.stop)  # type: ignore[attr-defined]

    def go() -> None:
        late.clear()
        t0 = time.monotonic()
        if mode == "thread":
            host.compile_later(wasm).addCallback(done, t0)
        elif mode == "idle":
            reactor.callLater(10, done, None, t0)  # type: ignore[attr-defined]
        else:
            host.compile(wasm)
            done(None, t0)

    reactor.callLater(0.1, go)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    import resource

    out["max_late_ms"] = max(late) * 1e3
    out["ticks"] = len(late)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--case":
        print(json.dumps(_case(sys.argv[2])))
        return
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    got: dict[str, list[dict[str, float]]] = {"idle": [], "inline": [], "thread": []}
    for _ in range(rounds):
        for mode in got:
            res = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_monitor_compile", "--case", mode],
                capture_output=True,
                text=True,
                check=True,
            )
            got[mode].append(json.loads(res.stdout.splitlines()[-1]))
    print(f"module: {int(got['inline'][0]['bytes'])} bytes; {rounds} rounds, medians")
    for mode, runs in got.items():
        late = statistics.median(r["max_late_ms"] for r in runs)
        comp = statistics.median(r["compile_s"] for r in runs)  # idle: the 10 s wait
        rss = statistics.median(r["peak_rss_mib"] for r in runs)
        each = ", ".join(f"{r['max_late_ms']:.0f}" for r in runs)
        print(
            f"{mode:7s} compile {comp:6.2f} s   reactor's longest stall {late:8.1f} ms"
            f" ({each})   peak RSS {rss:.0f} MiB"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
