"""What a monitor costs on the hot path: two real ``twistd pktendpoint`` processes over TLS
(PPKS chains from ``pktlab init``), one without monitors and one with the allow-all
monitor ``examples/monitors/pass_all.wat`` as an aux monitor (``-m``), measured in
alternating rounds in one run:

* immediate UDP nsends per second (64 B, 64 outstanding; each is checked by the monitor,
  which sees every nsend). Goal: the monitor costs ≤ 25 %.
* a TCP download delivered as ndata, MB/s (each ndata is checked). Goal: ≤ 15 %.
* the per-call cost of the runtime's raw call path next to wasmtime's ``Func.__call__``.

The controller side is this process (stdlib ssl, raw frames), as in bench_endpoint.py.
Run from the repository root: ``python -m benchmarks.bench_monitor --help``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from benchmarks.bench_endpoint import FrameReader, TLSSocket, bench_tcp, bench_udp
from benchmarks.common import environment, markdown_table, write_json
from packetlab import wire
from packetlab.cli.init import init_home
from packetlab.monitor.build import build
from packetlab.ppks import PktlabHome

REPO = Path(__file__).resolve().parent.parent
PASS_ALL = REPO / "examples" / "monitors" / "pass_all.wat"
T_RESULT = 0x40


class TLSEndpoint:
    """A twistd pktendpoint over TLS; `ctl` is the controller's TLS socket, `reader` its
    frame reader (the interface bench_endpoint's measurements use)."""

    def __init__(
        self, home: PktlabHome, workdir: Path, name: str, *args: str, repo: Path = REPO
    ) -> None:
        chain = [home.cert_path("pubcmd_exper_xc"), home.cert_path("exppriv_eop_exper")]
        bundle = workdir / f"bundle-{name}.pem"
        bundle.write_bytes(b"".join(p.read_bytes() for p in chain))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(str(bundle), str(home.key_path("k_xc")))
        ctx.verify_mode = ssl.CERT_NONE
        ctx.num_tickets = 0
        self.ctx = ctx
        self.listener = socket.create_server(("127.0.0.1", 0))
        port = self.listener.getsockname()[1]
        twistd = Path(sys.executable).with_name("twistd")
        argv = [
            str(twistd), "-n", "--pidfile=", f"--logfile={workdir / f'{name}.log'}",
            "pktendpoint", "-c", str(home.root / "endpt.conf"), "--ipv4", "127.0.0.1/8",
            "--set", "BufMax=16777216", "--set", f"RLimDBPath={workdir / f'{name}.rlim'}",
            "--set", f"MonitorPersistentPath={workdir / f'{name}.pm'}",
            "--reconnect-delay", "0.05", *args, f"127.0.0.1:{port}",
        ]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(repo))  # `repo`: a baseline checkout's code
        self.proc = subprocess.Popen(argv, env=env, cwd=workdir)
        self.listener.settimeout(30)
        self.ctl: Any = None
        self.reader: Any = None

    def session(self) -> None:
        """A new session (the endpoint reconnects after the last one ended)."""
        if self.ctl is not None:
            self.ctl.close()
        sock, _ = self.listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.ctl = TLSSocket(sock, self.ctx, True)  # a raw flow's link (bench_endpoint)
        self.reader = FrameReader(self.ctl)
        kind, _ = self.request(wire.Start())
        assert kind == T_RESULT

    def request(self, msg: wire.Message) -> tuple[int, bytes]:
        self.ctl.sendall(wire.encode(msg))
        while True:
            kind, body = self.reader.next()
            if kind == T_RESULT or kind == 0x41:
                return kind, body

    def cpu_ns(self) -> int:
        """CPU time the endpoint process has used so far, all threads (schedstat, ns)."""
        total = 0
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a thread that just ended
        return total

    def stop(self) -> None:
        if self.ctl is not None:
            self.ctl.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.listener.close()


def call_cost(n: int = 20000) -> dict[str, float]:
    """µs per allow-all nsend check: the raw path vs wasmtime's Func.__call__."""
    from packetlab.monitor.runtime import Box, Settings, compile_monitor

    class Host:
        def read_vmem(self, addr: int, length: int) -> bytes:
            return bytes(length)

        def flush(self, instance: Any) -> None:
            pass

        def debug(self, instance: Any, text: str) -> None:
            pass

    box = Box(Settings())
    inst = box.instantiate(compile_monitor(build(PASS_ALL)), Host())
    args = (1, 4, 17, 0, 1, 4, inst.scratch, 2, inst.scratch + 4, 64, inst.pm, 256)
    t0 = time.perf_counter()
    for _ in range(n):
        inst.check("nsend", args)
    raw = (time.perf_counter() - t0) / n * 1e6
    func = inst._checks["nsend"].func
    store = box.store
    box.deadline_ns = 1 << 62  # Func.__call__ bypasses the box's deadline bookkeeping
    m = max(1, n // 10)
    t0 = time.perf_counter()
    for _ in range(m):
        func(store, *args)
    normal = (time.perf_counter() - t0) / m * 1e6
    box.close()
    return {"raw_us": raw, "func_call_us": normal}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="alternating rounds [7]")
    ap.add_argument("--udp-count", type=int, default=20_000, help="nsends per round")
    ap.add_argument("--tcp-bytes", type=int, default=512 << 20, help="bytes per round")
    ap.add_argument("--json", help="write all results to this JSON file")
    ap.add_argument(
        "--only", choices=("udp", "tcp"), help="measure only UDP nsend or only TCP ndata"
    )
    ap.add_argument(
        "--quick", action="store_true", help="3 rounds of 5,000 nsends and 128 MiB (~1 min)"
    )
    ap.add_argument(
        "--py-spy",
        metavar="DIR",
        help="record both endpoints with py-spy (pip install py-spy) into DIR/none.svg and "
        "DIR/monitor.svg (flame graphs of the whole run; --native for the C frames too)",
    )
    ap.add_argument("--native", action="store_true", help="with --py-spy: native frames too")
    ap.add_argument(
        "--spy-format",
        choices=("flamegraph", "raw", "speedscope"),
        default="flamegraph",
        help="with --py-spy: raw writes collapsed stacks (NAME.txt) to grep and diff",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.udp_count, args.tcp_bytes = 3, 5_000, 128 << 20
    # 64-byte nsends under the built-in 10 Mb/s / 10 s send window: keep each session's
    # total below it, or sends would be refused (docs/security.md).
    if args.udp_count * 64 * args.rounds > 12_000_000:
        ap.error("--udp-count * 64 * --rounds must stay below 12 MB (the default send window)")
    results: dict[str, Any] = {"environment": environment(), "call": call_cost()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = PktlabHome.at(work / "home")
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            init_home(home)
        wasm = work / "pass_all.wasm"
        wasm.write_bytes(build(PASS_ALL))
        eps = {
            "none": TLSEndpoint(home, work, "none"),
            "monitor": TLSEndpoint(home, work, "monitor", "-m", str(wasm)),
        }
        runs: dict[str, dict[str, list[float]]] = {
            k: {"udp": [], "tcp": [], "udp_cpu_us": [], "tcp_cpu_ns_per_kb": [], "ndata_kib": []}
            for k in eps
        }
        spies = _spy(eps, args.py_spy, args.native, args.spy_format) if args.py_spy else []
        try:
            for ep in eps.values():
                ep.session()
            for _ in range(args.rounds):
                for name, ep in eps.items():
                    if args.only == "tcp":
                        break
                    c0 = ep.cpu_ns()
                    r = bench_udp(ep, args.udp_count)  # type: ignore[arg-type]
                    cpu = ep.cpu_ns() - c0
                    assert not r["errors"], r
                    runs[name]["udp"].append(r["per_second"])
                    runs[name]["udp_cpu_us"].append(cpu / args.udp_count / 1e3)
                for name, ep in eps.items():
                    if args.only == "udp":
                        break
                    c0 = ep.cpu_ns()
                    r = bench_tcp(ep, args.tcp_bytes, 4 << 20, plain_client=False)  # type: ignore[arg-type]
                    cpu = ep.cpu_ns() - c0
                    assert r["bytes"] == r["expected"], r
                    runs[name]["tcp"].append(r["mb_per_s"])
                    runs[name]["tcp_cpu_ns_per_kb"].append(cpu / (r["bytes"] / 1024))
                    runs[name]["ndata_kib"].append(r["bytes"] / max(1, r["ndata_frames"]) / 1024)
        finally:
            for ep in eps.values():
                ep.stop()
            for spy in spies:
                spy.wait(60)
    results["runs"] = runs
    return report(results, runs, args)


def report(results: dict[str, Any], runs: dict[str, dict[str, list[float]]], args: Any) -> int:
    """Print the table (only what was measured); exit status 1 if a CPU-bound goal is missed."""
    med = {k: {m: median(v) for m, v in r.items() if v} for k, r in runs.items()}
    results["median"] = med

    # Two views of the cost, each the median over paired rounds (same moment, same load):
    # the wall-clock rates, and the endpoint's CPU time per message, which is what bounds
    # its rate and is far less disturbed by other load on the machine.
    def cost(m: str) -> float:
        pairs = zip(runs["monitor"][m], runs["none"][m], strict=True)
        return median(1 - mon / none for mon, none in pairs)

    def cpu_cost(m: str) -> float:
        pairs = zip(runs["monitor"][m], runs["none"][m], strict=True)
        return median(1 - none / mon for mon, none in pairs)  # rate lost if CPU-bound

    def met(x: float, goal: float) -> str:
        return "yes" if x <= goal else "no"

    rows: list[list[str]] = []
    costs: dict[str, float] = {}
    ok = True
    if runs["none"]["udp"]:
        udp_cost, udp_cpu = cost("udp"), cpu_cost("udp_cpu_us")
        costs |= {"udp": udp_cost, "udp_cpu": udp_cpu}
        ok &= udp_cpu <= 0.25
        rows += [
            ["UDP nsend/s, no monitor", f"{med['none']['udp']:,.0f}", "", ""],
            ["UDP nsend/s, one allow-all monitor", f"{med['monitor']['udp']:,.0f}", "", ""],
            ["  cost in rate (paired rounds)", f"{udp_cost:.1%}", "≤ 25 %", met(udp_cost, 0.25)],
            ["endpoint CPU per nsend, no monitor", f"{med['none']['udp_cpu_us']:.1f} µs", "", ""],
            ["endpoint CPU per nsend, monitor", f"{med['monitor']['udp_cpu_us']:.1f} µs", "", ""],
            ["  cost in CPU-bound rate", f"{udp_cpu:.1%}", "≤ 25 %", met(udp_cpu, 0.25)],
        ]  # fmt: skip
    if runs["none"]["tcp"]:
        tcp_cost, tcp_cpu = cost("tcp"), cpu_cost("tcp_cpu_ns_per_kb")
        costs |= {"tcp": tcp_cost, "tcp_cpu": tcp_cpu}
        ok &= tcp_cpu <= 0.15
        rows += [
            ["TCP ndata MB/s, no monitor", f"{med['none']['tcp']:,.0f}", "", ""],
            ["TCP ndata MB/s, one allow-all monitor", f"{med['monitor']['tcp']:,.0f}", "", ""],
            ["  cost in rate (paired rounds)", f"{tcp_cost:.1%}", "≤ 15 %", met(tcp_cost, 0.15)],
            ["endpoint CPU per KiB ndata, no monitor",
             f"{med['none']['tcp_cpu_ns_per_kb']:.0f} ns", "", ""],
            ["endpoint CPU per KiB ndata, monitor",
             f"{med['monitor']['tcp_cpu_ns_per_kb']:.0f} ns", "", ""],
            ["  cost in CPU-bound rate", f"{tcp_cpu:.1%}", "≤ 15 %", met(tcp_cpu, 0.15)],
            ["mean ndata size (none / monitor)",
             f"{med['none']['ndata_kib']:.1f} / {med['monitor']['ndata_kib']:.1f} KiB", "", ""],
        ]  # fmt: skip
    results["cost"] = costs
    rows += [
        ["one check, raw call path", f"{results['call']['raw_us']:.2f} µs", "", ""],
        ["one check, wasmtime Func.__call__", f"{results['call']['func_call_us']:.1f} µs", "", ""],
    ]  # fmt: skip
    print(markdown_table(["measure (TLS, medians)", "result", "goal", "met"], rows))
    env = results["environment"]
    load = os.getloadavg()[0]
    noisy = " (a loaded machine: noisy)" if load > 1.5 else ""
    print(f"\nPython {env['python']}, {env['cpus']} CPUs, kernel {env['kernel']}, "
          f"commit {env['commit']} ({env['utc']}); {args.rounds} alternating rounds; "
          f"load average {load:.1f} at the end{noisy}")  # fmt: skip
    if args.json:
        write_json(args.json, results)
    return 0 if ok else 1


def _spy(
    eps: dict[str, TLSEndpoint], out: str, native: bool, fmt: str
) -> list[subprocess.Popen[bytes]]:
    """py-spy recording each endpoint until it exits (DIR/NAME.svg, .txt or .json)."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        raise SystemExit("--py-spy needs py-spy in the venv: .venv/bin/pip install py-spy")
    Path(out).mkdir(parents=True, exist_ok=True)
    procs = []
    for name, ep in eps.items():
        ext = {"flamegraph": "svg", "raw": "txt", "speedscope": "json"}[fmt]
        argv = [str(spy), "record", "-r", "250", "-f", fmt, "-o", f"{out}/{name}.{ext}"]
        argv += ["-p", str(ep.proc.pid)]
        procs.append(subprocess.Popen([*argv, *(["--native"] if native else [])]))
    time.sleep(1)  # py-spy attaches before the first round
    return procs


if __name__ == "__main__":
    sys.exit(main())
