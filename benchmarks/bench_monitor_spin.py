"""A monitor whose ndata check spins, and a peer sending it datagrams: what the session's
controller waits for an mread meanwhile, with and without a cap on the session's monitor
time (docs/monitors.md, "Monitor time"; docs/performance.md, "Monitors: a check that
spins"); and what the cap costs a well-behaved (allow-all) monitor.

Real ``twistd pktendpoint`` processes over TLS (`bench_monitor.TLSEndpoint`), in
alternating rounds of one run:

* spin: the aux monitor spins to its deadline (100 ms) on every datagram whose first byte
  is "s". A peer sends 16-byte "s" datagrams `--rate` a second for `--seconds` while the
  controller sends mreads one after the other: their latency (median, max). Endpoints:
  ``cap`` (MonitorTimeMillsec at its default), ``nocap`` (MonitorTimeMillsec 0, i.e. as
  before the cap), ``base`` (a checkout given by ``--baseline``, before the change).
* well: ``examples/monitors/pass_all.wat`` (``--monitors`` times) on ``cap`` and
  ``nocap`` (and ``base``):
  immediate UDP nsends a second, TCP ndata MB/s, and the endpoint's CPU per message
  (bench_monitor's measures); the ratios cap/nocap are paired per round.

Run from the repository root (~4 min with the defaults)::

    .venv/bin/python -m benchmarks.bench_monitor_spin --baseline /tmp/main-checkout
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from statistics import median
from typing import Any

import wasmtime

from benchmarks.bench_endpoint import bench_tcp, bench_udp
from benchmarks.bench_monitor import PASS_ALL, TLSEndpoint
from benchmarks.common import markdown_table
from packetlab import wire
from packetlab.cli.init import init_home
from packetlab.monitor import abi
from packetlab.monitor.build import build
from packetlab.monitor.template import monitor_wat
from packetlab.ppks import PktlabHome

T_RESULT, T_MDATA = 0x40, 0x41
LPORT = 0x20000000 + 0x400 + 0x30  # socket 1's local port in vmem
LO = bytes([127, 0, 0, 1])
SPIN_ON_S = {k: "(i32.const 0)" for k in abi.CHECKS} | {
    "ndata": "(drop (call $read_vmem_region (i32.const 0) (i32.const 300) (i32.const 1)))"
    " (if (i32.eq (i32.load8_u (i32.const 300)) (i32.const 115)) (then (loop (br 0))))"
    " (i32.const 0)"
}


def spin_round(ep: TLSEndpoint, rate: float, seconds: float) -> dict[str, float]:
    """One session: the peer's "s" datagrams at `rate` for `seconds`, mreads meanwhile."""
    ep.session()
    kind, body = ep.request(
        wire.Nopen(sktid=1, family=4, proto=17, rbufsz=1 << 20, laddr=LO, lport=0)
    )
    assert kind == T_RESULT and body == b"", body
    kind, body = ep.request(wire.Mread(addr=LPORT, len=2))
    assert kind == T_MDATA, kind
    lport = int.from_bytes(body[-2:], "big")
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send() -> None:
        t0 = time.monotonic()
        for i in range(int(rate * seconds)):
            left = t0 + i / rate - time.monotonic()
            if left > 0:
                time.sleep(left)  # the peer's pace
            peer.sendto(b"s" * 16, ("127.0.0.1", lport))

    sender = threading.Thread(target=send)
    lat: list[float] = []
    t0 = time.monotonic()
    sender.start()
    try:
        while sender.is_alive():
            t = time.monotonic()
            kind, _ = ep.request(wire.Mread(addr=LPORT, len=2))
            assert kind == T_MDATA, kind
            lat.append(time.monotonic() - t)
    finally:
        sender.join()
        peer.close()
    t = time.monotonic()
    ep.request(wire.Mread(addr=LPORT, len=2))  # the one sent after the last datagram
    last = time.monotonic() - t
    every = sorted([*lat, last])
    return {
        "median_ms": median(lat) * 1e3,
        "p99_ms": every[min(len(every) - 1, int(0.99 * len(every)))] * 1e3,
        "max_ms": every[-1] * 1e3,
        "mreads": len(lat),
        "after_s": time.monotonic() - t0,
    }


def well_round(ep: TLSEndpoint, udp_count: int, tcp_bytes: int) -> dict[str, float]:
    c0 = ep.cpu_ns()
    r = bench_udp(ep, udp_count)  # type: ignore[arg-type]
    udp_cpu = (ep.cpu_ns() - c0) / udp_count / 1e3
    assert not r["errors"], r
    c0 = ep.cpu_ns()
    t = bench_tcp(ep, tcp_bytes, 4 << 20, plain_client=False)  # type: ignore[arg-type]
    tcp_cpu = (ep.cpu_ns() - c0) / (t["bytes"] / 1024)
    assert t["bytes"] == t["expected"], t
    return {"udp": r["per_second"], "udp_cpu_us": udp_cpu, "tcp": t["mb_per_s"],
            "tcp_cpu_ns_per_kb": tcp_cpu}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds [3]")
    ap.add_argument("--rate", type=float, default=20, help="the peer's datagrams/s [20]")
    ap.add_argument("--seconds", type=float, default=3.0, help="the peer sends so long [3]")
    ap.add_argument("--udp-count", type=int, default=5000, help="well: nsends a round [5000]")
    ap.add_argument("--tcp-bytes", type=int, default=64 << 20, help="well: TCP bytes [64 MiB]")
    ap.add_argument("--only", choices=("spin", "well"), help="one of the two parts")
    ap.add_argument("--monitors", type=int, default=1, help="well: allow-all monitors [1]")
    ap.add_argument("--baseline", type=Path, help="a checkout of the code before the change")
    ap.add_argument("--deadline-ms", type=int, help="MonitorDeadlineMillsec of every endpoint")
    ap.add_argument(
        "--variants",
        default="cap,nocap,base",
        help="endpoints to run, of cap,nocap,base [all; base with --baseline]",
    )
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_monitor_spin-") as tmp:
        work = Path(tmp)
        home = PktlabHome.at(work / "home")
        with contextlib.redirect_stdout(io.StringIO()):
            init_home(home)
        spin = work / "spin.wasm"
        spin.write_bytes(wasmtime.wat2wasm(monitor_wat(SPIN_ON_S)))
        allow = work / "pass_all.wasm"
        allow.write_bytes(build(PASS_ALL))
        parts = [p for p in ("spin", "well") if args.only in (None, p)]
        rows: list[list[str]] = []
        for part in parts:
            mons = ["-m", str(spin)] if part == "spin" else ["-m", str(allow)] * args.monitors
            variants: dict[str, tuple[list[str], Path | None]] = {
                "cap": ([], None),
                "nocap": (["--set", "MonitorTimeMillsec=0"], None),
            }
            if args.baseline is not None:
                variants["base"] = ([], args.baseline.resolve())
            wanted = args.variants.split(",")
            variants = {k: v for k, v in variants.items() if k in wanted}
            if args.deadline_ms is not None:
                deadline = ["--set", f"MonitorDeadlineMillsec={args.deadline_ms}"]
                variants = {k: (deadline + x, r) for k, (x, r) in variants.items()}
            eps = {}
            for name, (extra, repo) in variants.items():
                kw = {"repo": repo} if repo is not None else {}
                eps[name] = TLSEndpoint(home, work, f"{part}-{name}", *mons, *extra, **kw)
            runs: dict[str, list[dict[str, float]]] = {k: [] for k in eps}
            try:
                if part == "well":
                    for ep in eps.values():
                        ep.session()
                for _ in range(args.rounds):
                    for name, ep in eps.items():
                        if part == "spin":
                            runs[name].append(spin_round(ep, args.rate, args.seconds))
                        else:
                            runs[name].append(well_round(ep, args.udp_count, args.tcp_bytes))
            finally:
                for ep in eps.values():
                    ep.stop()
            rows += _rows(part, runs, args)
    print(markdown_table(["measure (TLS, medians over rounds)", "cap", "nocap", "base"], rows))
    load = os.getloadavg()
    print(f"\n{args.rounds} alternating rounds; load average {load[0]:.1f} / {load[1]:.1f} "
          f"(1 / 5 min) at the end")  # fmt: skip
    return 0


def _rows(part: str, runs: dict[str, list[dict[str, float]]], args: Any) -> list[list[str]]:
    def med(name: str, key: str) -> float:
        return median(r[key] for r in runs[name]) if runs.get(name) else float("nan")

    def row(label: str, key: str, fmt: str) -> list[str]:
        return [label] + [
            format(med(n, key), fmt) if n in runs else "" for n in ("cap", "nocap", "base")
        ]

    def worst(label: str, key: str) -> list[str]:
        return [label] + [
            format(max(r[key] for r in runs[n]), ",.0f") if runs.get(n) else ""
            for n in ("cap", "nocap", "base")
        ]

    if part == "spin":
        what = f"peer {args.rate:g} datagrams/s for {args.seconds:g} s at a spinning check"
        if args.deadline_ms is not None:
            what += f", MonitorDeadlineMillsec {args.deadline_ms}"
        return [
            [what, "", "", ""],
            row("  mread latency, median (ms)", "median_ms", ",.1f"),
            row("  mread latency, p99 (ms)", "p99_ms", ",.0f"),
            row("  mread latency, max (ms)", "max_ms", ",.0f"),
            worst("  mread latency, max of all rounds (ms)", "max_ms"),
            row("  mreads answered while it sent", "mreads", ",.0f"),
            row("  until the mread after the last datagram (s)", "after_s", ".1f"),
        ]

    def paired(key: str) -> str:
        if not (runs.get("cap") and runs.get("nocap")):
            return ""
        pairs = zip(runs["cap"], runs["nocap"], strict=True)
        return f"{median(c[key] / n[key] for c, n in pairs):.3f}"

    return [
        [f"{args.monitors} allow-all monitor(s) (pass_all.wat)", "", "", ""],
        row("  UDP nsend/s", "udp", ",.0f"),
        row("  endpoint CPU per nsend (µs)", "udp_cpu_us", ".1f"),
        row("  TCP ndata MB/s", "tcp", ",.0f"),
        row("  endpoint CPU per KiB of ndata (ns)", "tcp_cpu_ns_per_kb", ",.0f"),
        ["  cap / nocap, paired: nsend/s, CPU per nsend", paired("udp"), paired("udp_cpu_us"), ""],
        ["  cap / nocap, paired: MB/s, CPU per KiB", paired("tcp"),
         paired("tcp_cpu_ns_per_kb"), ""],
    ]  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
