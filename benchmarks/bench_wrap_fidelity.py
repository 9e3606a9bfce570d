"""Timing fidelity of `pktlab wrap`: curl's own time_connect / time_starttransfer through
the wrapper (plain, and with --fidelity) against curl run natively at the endpoint.

Testbed chain ``ep — r1 — tg``: an HTTP server in tg; in ep a real ``twistd pktendpoint``
whose controller link goes through a delaying relay (benchmarks/delay_relay.py, DELAY ms
each way: the controller is "far" while the endpoint's own path to tg is a veth hop),
and `pktlab wrap --listen` as the controller. Native curl runs in ep too. The three
modes alternate, order rotated each round. Goal (issue 12): with --fidelity, the median
time_connect and time_starttransfer within 10 % (or 200 µs, whichever is larger) of
native; without it they show the controller link's inflation.

Run as root from the repository root::

    .venv/bin/python -m benchmarks.bench_wrap_fidelity --runs 50 --delay-ms 20 \\
        --json .bench/wrap_fidelity.json
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
from typing import Any

from benchmarks.common import environment, fmt, markdown_table, median, summarize, write_json
from packetlab.testbed import Testbed
from packetlab.testbed.topology import chain

REPO = Path(__file__).resolve().parents[1]
CTL_PORT, RELAY_PORT, HTTP_PORT = 20556, 20557, 8080  # inside the testbed's namespaces
MODES = ("native", "wrap", "wrap --fidelity")


def twistd() -> list[str]:
    exe = Path(sys.executable).with_name("twistd")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "twisted", "--help"]


def curl_cmd(url: str) -> list[str]:
    fmt_ = "%{time_connect} %{time_starttransfer}\\n"
    return ["curl", "-s", "-o", os.devnull, "-w", fmt_, url]


def run_mode(
    tb: Testbed, mode: str, url: str, timings: Path, prio: list[str]
) -> tuple[float, float, Any]:
    cmd = curl_cmd(url)
    if mode != "native":
        extra = ["--fidelity"] if mode.endswith("--fidelity") else []
        cmd = [sys.executable, "-m", "packetlab", "wrap", "--listen", f"127.0.0.1:{CTL_PORT}",
               "--insecure-plaintext", "--wait", "20", "--timings", str(timings), *extra,
               "--", *cmd]  # fmt: skip
    cmd = [*prio, *cmd]
    done = tb.run("ep", cmd, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{mode}: exit {done.returncode}: {done.stderr.strip()[-400:]}")
    connect, start = (float(x) for x in done.stdout.split())
    rec = None
    if mode != "native":
        lines = timings.read_text().splitlines()
        rec = json.loads(lines[-1]) if lines else None
    return connect * 1e6, start * 1e6, rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--delay-ms", type=float, default=20.0, help="controller link delay, each way")
    ap.add_argument(
        "--server-delay-ms",
        type=float,
        default=0.0,
        help="put the HTTP server behind a relay adding this delay each way (0: direct)",
    )
    ap.add_argument("--rt", action="store_true", help="run curl, wrap, endpoint, server SCHED_FIFO")
    ap.add_argument("--settle", type=float, default=0.5, help="seconds of quiet before a run")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    # --rt: every process of the measurement (curl, pktlab wrap, the endpoint, the server)
    # runs under SCHED_FIFO, so that on a shared machine neither side waits for a CPU.
    prio = ["chrt", "-f", "20"] if args.rt else []
    www = Path(tempfile.mkdtemp(prefix="wrapbench-"))
    (www / "page.html").write_bytes(b"<html>" + b"x" * 2000 + b"</html>\n")
    with Testbed(chain(1)) as tb:
        tb.up()
        tg = tb.addr("tg")
        # The server, directly on tg's address, or behind a relay adding --server-delay-ms
        # each way (a farther server: this kernel has no netem).
        far = args.server_delay_ms > 0
        bind = "127.0.0.1" if far else str(tg)
        tb.popen("tg", [*prio, sys.executable, "-m", "http.server", str(HTTP_PORT + far), "--bind",
                        bind, "--directory", str(www)], stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)  # fmt: skip
        if far:
            srv_relay = tb.popen("tg", [*prio, sys.executable, "-m", "benchmarks.delay_relay",
                                        str(HTTP_PORT), str(HTTP_PORT + 1),
                                        str(args.server_delay_ms), str(tg), "127.0.0.1"],
                                 cwd=REPO, stdout=subprocess.PIPE, text=True)  # fmt: skip
            srv_relay.stdout.readline()  # type: ignore[union-attr]
        relay = tb.popen("ep", [sys.executable, "-m", "benchmarks.delay_relay", str(RELAY_PORT),
                                str(CTL_PORT), str(args.delay_ms)], cwd=REPO,
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
        relay.stdout.readline()  # type: ignore[union-attr]
        tb.popen("ep", [*prio, *twistd(), "-n", "--pidfile=", "pktendpoint", "--insecure-plaintext",
                        "--config", os.devnull, "--transproto", "tcp,udp",
                        "--reconnect-delay", "0.05", "--retry-delay", "0.3",
                        f"127.0.0.1:{RELAY_PORT}"], cwd=REPO, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(1.0)
        url = f"http://{tg}:{HTTP_PORT}/page.html"
        tfile = www / "timings.jsonl"
        results: dict[str, dict[str, list[float]]] = {
            m: {"connect": [], "start": [], "ep_connect": [], "ep_handshake": [], "ep_first": []}
            for m in MODES
        }
        for i in range(-1, args.runs):  # round -1 warms up (page cache, imports)
            order = MODES[i % 3 :] + MODES[: i % 3]
            for mode in order:
                time.sleep(args.settle)  # let the previous run's processes finish exiting
                c, s, rec = run_mode(tb, mode, url, tfile, prio)
                if i < 0:
                    continue
                r = results[mode]
                r["connect"].append(c)
                r["start"].append(s)
                if rec is not None:
                    r["ep_connect"].append(rec["connect_ns"] / 1e3)
                    r["ep_handshake"].append(rec["handshake_ns"] / 1e3)
                    # curl's starttransfer counts from its start: connect + first byte
                    r["ep_first"].append((rec["connect_ns"] + rec["first_byte_ns"]) / 1e3)
            print(f"round {i + 1}/{args.runs}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    nat = results["native"]
    rows = []
    verdict: dict[str, Any] = {}
    for mode in MODES:
        r = results[mode]
        row: list[object] = [mode]
        for key in ("connect", "start"):
            med, ref = median(r[key]), median(nat[key])
            tol = max(0.1 * ref, 200.0)
            ok = abs(med - ref) <= tol
            row += [fmt(med, 1, 0), f"{med - ref:+.0f}", "yes" if ok else "no"]
            verdict[f"{mode}/{key}"] = {"median_us": med, "native_us": ref, "tolerance_us": tol,
                                        "within": ok, **summarize(r[key])}  # fmt: skip
        rows.append(row)
    print(f"controller link delay {args.delay_ms:g} ms each way, server relay delay "
          f"{args.server_delay_ms:g} ms each way, {args.runs} runs per mode, medians in µs "
          "(curl -w)\n")  # fmt: skip
    print(markdown_table(
        ["mode", "time_connect", "Δ native", "within goal", "time_starttransfer", "Δ native",
         "within goal"], rows))  # fmt: skip
    ep = results["wrap"]
    if ep["ep_connect"]:
        print(f"\nendpoint's own view (--timings, median, wrap runs): nopen to ESTABLISHED "
              f"{median(ep['ep_connect']):.0f} µs, connect() to ESTABLISHED "
              f"{median(ep['ep_handshake']):.0f} µs, nopen to first byte "
              f"{median(ep['ep_first']):.0f} µs")  # fmt: skip
    if args.json:
        out = {"environment": environment(), "delay_ms": args.delay_ms, "runs": args.runs,
               "server_delay_ms": args.server_delay_ms,
               "results": results, "verdict": verdict}  # fmt: skip
        write_json(args.json, out)


if __name__ == "__main__":
    main()
