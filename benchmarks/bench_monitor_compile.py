"""How long compiling a certificate monitor (or a reflex) stalls the endpoint's reactor
(docs/performance.md, "Monitors: compiling off the reactor"): a module just under the
1 MiB cap (one long function, the slow shape) compiled by `MonitorHost` on the reactor
thread ("inline", as before session 9) and in the reactor's thread pool ("thread",
`compile_later` through a `CompileWorker` with ``deferToThread`` as the endpoint does),
while a 5 ms LoopingCall measures how late the reactor runs it; "idle" compiles nothing
for 10 s (the machine's own noise). With ``--reflex`` the module is a reflex of the same
size and shape compiled by `ReflexService` ("inline": `compile`, what a reflex cdata or
rattach did before session 10; "thread": `compile_later`). Each case runs in a fresh
process (fresh engine, empty cache), the cases alternating; medians over the rounds;
peak RSS is the process's.

    .venv/bin/python -m benchmarks.bench_monitor_compile [rounds] [--reflex]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.common import help_requested

TICK = 0.005


def _module(reflex: bool = False) -> bytes:
    import wasmtime

    from packetlab.monitor import abi
    from packetlab.monitor.template import monitor_wat
    from packetlab.reflex.template import reflex_wat

    n = 345_000  # ~1,035,000 bytes: just under MAX_MODULE
    body = "(local.get $x)" + "(i32.add (i32.const 1))" * n + "(drop)"
    extra = f"(func $f0 (param $x i32) {body})"
    if reflex:
        wat = reflex_wat("(i32.const 0)", extra=extra)
    else:
        wat = monitor_wat({k: "(i32.const 0)" for k in abi.CHECKS}, extra=extra)
    return bytes(wasmtime.wat2wasm(wat))


def _case(mode: str, reflex: bool = False) -> dict[str, float]:
    from twisted.internet import reactor, task
    from twisted.internet.threads import deferToThread

    from packetlab.endpoint.monitors import MAX_MODULE, MonitorHost
    from packetlab.endpoint.reflexes import ReflexService
    from packetlab.monitor.abi import Settings
    from packetlab.monitor.engine import engine
    from packetlab.monitor.worker import CompileWorker

    wasm = _module(reflex)
    assert len(wasm) <= MAX_MODULE, len(wasm)
    engine()
    worker = CompileWorker(deferToThread) if mode == "thread" else None
    host: MonitorHost | ReflexService
    if reflex:
        host = ReflexService(Settings(), True, worker)
    else:
        host = MonitorHost(Settings(), (), tempfile.mktemp(), worker)
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
    args = sys.argv[1:]
    if help_requested(args, __doc__):
        return
    reflex = "--reflex" in args
    args = [a for a in args if a != "--reflex"]
    if len(args) > 1 and args[0] == "--case":
        print(json.dumps(_case(args[1], reflex)))
        return
    rounds = int(args[0]) if args else 3
    got: dict[str, list[dict[str, float]]] = {"idle": [], "inline": [], "thread": []}
    for _ in range(rounds):
        for mode in got:
            cmd = [sys.executable, "-m", "benchmarks.bench_monitor_compile", "--case", mode]
            res = subprocess.run(
                cmd + (["--reflex"] if reflex else []), capture_output=True, text=True, check=True
            )
            got[mode].append(json.loads(res.stdout.splitlines()[-1]))
    kind = "reflex" if reflex else "monitor"
    print(f"{kind} module: {int(got['inline'][0]['bytes'])} bytes; {rounds} rounds, medians")
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
