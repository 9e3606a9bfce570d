"""What the session's monitor time (docs/monitors.md, "Monitor time") costs per checked
request, in this process: `MonitorGate.check` of an immediate UDP nsend with `k`
allow-all monitors (``examples/monitors/pass_all.wat`` as aux monitors), the accounting
on (``cap``: MonitorTimeMillsec 1000, which times every call but never refuses: this
loop is all monitor calls, so at 500 the cap would rightly refuse, and a refused
request is cheap) and off (``nocap``: 0), in alternating rounds; µs of this thread's CPU
time per request, medians.

No endpoint, TLS or socket: the gate alone, so the accounting's share is not lost in
the noise of a loaded machine (bench_monitor_spin measures the whole endpoint). With
``--baseline DIR`` a checkout of the code before a change is measured too, in a child
process of the same run (its `packetlab` first on the path).

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_monitor_time --monitors 1 4 8 --baseline /tmp/main
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parent.parent
PASS_ALL = REPO / "examples" / "monitors" / "pass_all.wat"


def per_request_us(k: int, time_ms: int, n: int, pm_path: str) -> float:
    """µs per `MonitorGate.check` of an nsend, `k` allow-all monitors, one round."""
    from packetlab import wire
    from packetlab.endpoint.checks import OpenGate
    from packetlab.endpoint.monitors import AuxMonitor, MonitorGate, MonitorHost
    from packetlab.monitor.build import build
    from packetlab.monitor.runtime import Settings, compile_monitor

    compiled = compile_monitor(build(PASS_ALL))
    aux = [AuxMonitor(f"m{i}.wasm", compiled) for i in range(k)]
    host = MonitorHost(Settings(time_ms=time_ms), aux, pm_path)
    gate = host.gate(OpenGate())
    assert isinstance(gate, MonitorGate)
    err, _ = gate.start()
    assert err is None, err
    msg = wire.Nsend(
        sktid=1, family=4, proto=17, tag=1, time=0, data=b"x" * 64, raddr=bytes(4), rport=9
    )
    check = gate.check
    try:
        for _ in range(1000):
            check(msg)
        t0 = time.thread_time()  # CPU time: not the time other processes ran meanwhile
        for _ in range(n):
            check(msg)
        return (time.thread_time() - t0) / n * 1e6
    finally:
        gate.close()


def measure(ks: list[int], rounds: int, n: int) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_monitor_time-") as tmp:
        pm = str(Path(tmp) / "pm.sqlite3")
        for k in ks:
            runs: dict[str, list[float]] = {"cap": [], "nocap": []}
            for _ in range(rounds):
                runs["cap"].append(per_request_us(k, 1000, n, pm))
                runs["nocap"].append(per_request_us(k, 0, n, pm))
            out[str(k)] = runs
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--monitors", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--rounds", type=int, default=15, help="alternating rounds [15]")
    ap.add_argument("--requests", type=int, default=20000, help="checks a round [20000]")
    ap.add_argument("--baseline", type=Path, help="a checkout of the code before a change")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the child
    args = ap.parse_args(argv)
    if args.json:
        import packetlab

        res = measure(args.monitors, args.rounds, args.requests)
        print(json.dumps({"where": packetlab.__file__, "res": res}))
        return 0
    sides = {"here": measure(args.monitors, args.rounds, args.requests)}
    if args.baseline is not None:
        env = dict(os.environ, PYTHONPATH=str(args.baseline.resolve()))
        argv2 = [sys.executable, __file__, "--json",
                 "--rounds", str(args.rounds), "--requests", str(args.requests),
                 "--monitors", *map(str, args.monitors)]  # fmt: skip
        # Run as a script (not -m from here, whose packetlab would come first on the path):
        # the baseline's packetlab, this checkout's benchmark.
        got = subprocess.run(argv2, env=env, check=True, capture_output=True)
        child = json.loads(got.stdout)
        where = Path(child["where"]).resolve()
        assert where.is_relative_to(args.baseline.resolve()), where  # not this checkout's
        sides["base"] = child["res"]
    print("| monitors | side | cap µs/request | nocap µs/request | cap - nocap (µs) | paired |")
    print("|---|---|---|---|---|---|")
    for k in args.monitors:
        for side, res in sides.items():
            cap, nocap = res[str(k)]["cap"], res[str(k)]["nocap"]
            ratio = median(c / n for c, n in zip(cap, nocap, strict=True))
            print(f"| {k} | {side} | {median(cap):.2f} | {median(nocap):.2f} | "
                  f"{median(cap) - median(nocap):.2f} | {ratio:.3f} |")  # fmt: skip
    load = os.getloadavg()
    print(f"\n{args.rounds} alternating rounds of {args.requests} checks; load average "
          f"{load[0]:.1f} / {load[1]:.1f} (1 / 5 min) at the end")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
