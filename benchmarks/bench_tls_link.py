"""The endpoint's CPU per message over TLS, with the Python record layer and with pyOpenSSL
sealing and opening the records: two ``twistd pktendpoint`` processes of this checkout
(``PACKETLAB_TLS_RECORDS=python`` and ``=openssl``), driven in turn by the raw-frame
controller of ``benchmarks/bench_endpoint.py`` (immediate UDP nsends, mread round trips,
a TCP download delivered as ndata), round after round.

Besides the rates it reports the endpoint's **CPU time** per message (user + system, from
``/proc/PID/stat``), which a machine loaded by other jobs disturbs far less than the rates:
on a shared 2-CPU machine the rate mostly says who got the CPU. Paired ratios (python /
openssl) per round, medians.

Run from the repository root: ``python -m benchmarks.bench_tls_link --help``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.bench_endpoint import Endpoint, bench_mread, bench_tcp, bench_udp
from benchmarks.common import environment, markdown_table, median, write_json

PATHS = ("python", "openssl")
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def measure(ep: Endpoint, what: str, args: Any) -> dict[str, float]:
    before = cpu_seconds(ep.proc.pid)
    if what == "udp":
        r = bench_udp(ep, args.udp_count)
        n, rate = args.udp_count, r["per_second"]
    elif what == "mread":
        r = bench_mread(ep, args.mread_count)
        n, rate = args.mread_count, r["p50_us"]
    else:
        r = bench_tcp(ep, args.tcp_bytes, 4 << 20, plain_client=False)
        n, rate = args.tcp_bytes / 1e6, r["mb_per_s"]
    cpu = cpu_seconds(ep.proc.pid) - before
    return {"figure": rate, "cpu_us_per": cpu / n * 1e6}


UNITS = {
    "udp": ("nsend/s", "CPU µs per nsend"),
    "mread": ("p50 µs", "CPU µs per mread"),
    "tcp": ("MB/s", "CPU µs per MB"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--udp-count", type=int, default=60_000)
    ap.add_argument("--mread-count", type=int, default=10_000)
    ap.add_argument("--tcp-bytes", type=int, default=500_000_000)
    ap.add_argument("--only", action="append", choices=list(UNITS), help="measures (default: all)")
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)
    only = args.only or list(UNITS)
    env = environment()  # load average before the run
    rounds: dict[str, dict[str, list[dict[str, float]]]] = {p: {} for p in PATHS}
    with tempfile.TemporaryDirectory() as tmp:
        eps = {}
        try:
            for path in PATHS:
                workdir = Path(tmp) / path
                workdir.mkdir()
                eps[path] = Endpoint(workdir, env={"PACKETLAB_TLS_RECORDS": path})
            for rnd in range(args.rounds):
                for what in only:
                    for path in PATHS if rnd % 2 == 0 else PATHS[::-1]:
                        r = measure(eps[path], what, args)
                        rounds[path].setdefault(what, []).append(r)
                print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            for ep in eps.values():
                ep.stop()
    rows = []
    summary: dict[str, Any] = {}
    for what in only:
        py, ossl = rounds["python"][what], rounds["openssl"][what]
        fig_ratio = median(a["figure"] / b["figure"] for a, b in zip(py, ossl, strict=True))
        cpu_ratio = median(a["cpu_us_per"] / b["cpu_us_per"] for a, b in zip(py, ossl, strict=True))
        unit, cpu_unit = UNITS[what]
        summary[what] = {
            "python": py,
            "openssl": ossl,
            "figure_ratio": fig_ratio,
            "cpu_ratio": cpu_ratio,
        }
        rows.append([
            f"{what}: {unit}",
            f"{median(a['figure'] for a in py):,.1f}",
            f"{median(b['figure'] for b in ossl):,.1f}",
            f"{fig_ratio:.2f}",
        ])  # fmt: skip
        rows.append([
            f"{what}: {cpu_unit}",
            f"{median(a['cpu_us_per'] for a in py):,.1f}",
            f"{median(b['cpu_us_per'] for b in ossl):,.1f}",
            f"{cpu_ratio:.2f}",
        ])  # fmt: skip
    print(f"our endpoint over TLS 1.3, medians of {args.rounds} rounds; ratio: median of paired")
    print(markdown_table(["measure", "Python records", "pyOpenSSL records", "ratio"], rows))
    env["loadavg_1min_after"] = after = round(os.getloadavg()[0], 2)
    print(f"\ncommit {env['commit']}, load average {env['loadavg_1min']} → {after}")
    if args.json:
        write_json(args.json, {"environment": env, "results": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
