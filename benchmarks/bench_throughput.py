"""TCP pipe saturation through an endpoint against native iperf3 (the Marionette paper's
§5.2 and its C1/C2), on the namespace testbed.

Chain ``ep — r1 — tg`` with the r1-tg link shaped by tbf to each ``--rate``; a stock
``iperf3 -s`` in tg. Per round, in alternating order: ``pktlab run throughput`` inside ep
(the in-process endpoint; download: ndata masked, endpoint receive stamps, first MiB
ignored; upload: sends scheduled ahead, the head sent by a reflex when the server starts
its clock, ntags masked, the iperf3 server's receiver figure)
and native ``iperf3 -c`` inside ep against the same server. Downloads: tcpdump in ep
records the kernel receive times of both tools' data (what the endpoint's ndata stamps
are), and native's figure is the paper's (first MiB ignored) from that capture; iperf3's
own 0.1 s reports with the first MiB skipped and its whole-transfer figure are kept
beside it (``--no-capture``: the reports are the figure). Uploads: ``end.sum_received``,
the server's figure, as ours. Every run's stalls (where its stamps stopped) go into
``--json``. Reports means, C1 (|1 - mean PL / mean NT|, goal <= 2 %) and C2 (KS p >= 0.05).

Run as root from the repository root::

    .venv/bin/python -m benchmarks.bench_throughput --runs 20 --rate 100mbit --rate 1gbit
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import environment, fmt, markdown_table, write_json
from packetlab.cli.compare import SPECS, plot
from packetlab.measure.baselines import run_iperf3
from packetlab.measure.congruence import c1, c2
from packetlab.measure.throughput_capture import CaptureError, capture_result, receive_stamps
from packetlab.testbed import Shape, Testbed, chain

REPO = Path(__file__).resolve().parent.parent
# The shaped link, the same bottleneck for both tools (docs/congruence.md, "The link"):
# * the bucket: what tbf needs to hold the rate, 1 ms of traffic (its watchdog is an
#   hrtimer, so the man page's rate/HZ, 4 ms here, is not needed: 1 ms held 1 Gbit/s and
#   256 us did not), and at least 64 KiB: with 32 KiB (or 12.5 kB) at 100 Mbit/s every
#   PacketLab download failed ("no data past the skipped part"), with 64 KiB none did.
#   Native iperf3 counts the bucket's burst, the paper's method skips it with the first
#   MiB: 0.25 % of 25 MiB at 100 Mbit/s, 0.5 % at 1 Gbit/s.
BURST_MS = 1.0
MIN_BURST = 64 * 1024
# * the queue: 256 KiB (2.1 ms at 1 Gbit/s, 21 ms at 100 Mbit/s), many times the testbed's
#   sub-millisecond BDP, not the 50 ms (6 MB at 1 Gbit/s) in which a sender's surplus
#   vanished uncounted; 2 ms at 100 Mbit/s (25 kB) dropped thousands of packets per
#   download in BBR's start-up (host default) and cost up to 18 %.
QUEUE_BYTES = 256 * 1024
# * the same socket buffer limits for both tools (autotuning's ceilings, net.ipv4.tcp_*mem
#   max in ep and tg): native iperf3 parked up to 4 MiB in its send buffer and tg's 32 MiB
#   receive buffer held up to 11 MB unread when its last write returned and it sent
#   TEST_END, and the server counts only what it has read by then.
SNDBUF_MAX = 512 * 1024
RCVBUF_MAX = 1 << 20
LAST_RECORD: dict[str, object] = {}  # the last PacketLab record (server figure, chunks)
ERRORS: list[str] = []  # every failed PacketLab run's error, kept in --json
# tcpdump's ring hands packets over in blocks that retire after up to 1 s, and on a loaded
# machine tcpdump runs late: stopped a fixed 0.3 s after a transfer, it lost the tail of
# 4 of 6. So it is stopped once its file holds the whole transfer in sequence, or after
# this many seconds (the capture is then refused, as one that missed a packet is).
CAPTURE_WAIT = 10.0


class Capture:
    """tcpdump in ep, around one download: the kernel receive times of the data from the
    iperf3 server (nanosecond stamps, headers only)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.data = b""
        self.error: str | None = None

    def complete(self) -> bool:
        try:
            stamps = receive_stamps(self.data, 5201)
        except CaptureError:
            return False
        return stamps[-1][0] >= self.nbytes

    def result(self, server: str) -> dict[str, Any]:
        """The paper's figure and the stalls from the capture, or its error."""
        if self.error is None:
            try:
                r = capture_result(self.data, server=server, port=5201, total=self.nbytes)
                return {"mbit_s": r.mbit_s, "stall_ms": r.stall_ms, "stalls": r.stalls}
            except CaptureError as e:
                self.error = str(e)
        return {"error": self.error}


@contextmanager
def capture(tb: Testbed, on: bool, nbytes: int) -> Iterator[Capture]:
    got = Capture(nbytes)
    if not on:
        yield got
        return
    with tempfile.TemporaryDirectory(prefix="bench-tp-cap-") as tmp:
        path = Path(tmp) / "cap.pcap"
        proc = tb.popen("ep", [
            "tcpdump", "-i", tb.iface("ep"), "-s", "128", "-B", "16384", "-U", "-n",
            "--time-stamp-precision=nano", "-w", str(path), "tcp and src port 5201",
        ], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stderr is not None
        proc.stderr.readline()  # "listening on ...": the capture is open
        try:
            yield got
        finally:
            deadline = time.monotonic() + CAPTURE_WAIT
            while time.monotonic() < deadline:  # -U: written packet by packet
                got.data = path.read_bytes() if path.exists() else b""
                if got.complete():
                    break
                time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            dropped = [ln for ln in err.splitlines() if "dropped by kernel" in ln]
            if dropped and not dropped[0].startswith("0 "):
                got.error = f"tcpdump: {dropped[0]}"
            got.data = path.read_bytes() if path.exists() else b""


def packetlab_run(
    tb: Testbed,
    server: str,
    direction: str,
    nbytes: int,
    spy: Path | None = None,
    *,
    home: Path | None = None,
) -> float | None:
    """One `pktlab run throughput` in ep; under py-spy (collapsed stacks into `spy`) if set."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    prefix: list[str] = []
    if spy is not None:
        spy.parent.mkdir(parents=True, exist_ok=True)
        py_spy = str(Path(sys.executable).with_name("py-spy"))
        prefix = [py_spy, "record", "-r", "500", "-f", "raw", "-o", str(spy), "--"]
    argv = [
        "ip", "netns", "exec", tb.netns_name("ep"), *prefix, sys.executable, "-m", "packetlab",
        "run", "throughput", "--json", "--server", server, "--direction", direction,
        "--bytes", str(nbytes),
        # plaintext: no certificates, no send window; TLS: a home whose exppriv grants one
        *(["--home", str(home)] if home else ["--insecure-plaintext"]),
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        print(f"pktlab run throughput failed: {out.stderr.strip()[-400:]}", file=sys.stderr)
        ERRORS.append(out.stderr.strip()[-400:])
        return None
    record = json.loads(lines[0])
    LAST_RECORD.clear()
    LAST_RECORD.update(record)
    if record.get("mbit_s") is None:  # reported, not fatal: the table says how many failed
        print(f"pktlab run throughput: {record.get('error')}", file=sys.stderr)
        ERRORS.append(str(record.get("error")))
        return None
    return float(record["mbit_s"])


def make_wire(tb: Testbed, *, sndbuf: int, rcvbuf: int) -> None:
    """Make the chain behave like a wire and give both tools the same TCP buffers.

    veth hands each packet to the backlog of the CPU that sent it; when the sender (or
    tbf's watchdog) moves between CPUs, two backlogs drain at once and tg sees the packets
    out of order: native iperf3's uploads had up to 450 spurious fast retransmits each
    (DSACKs, TCPSACKReorder; tbf and the veths dropped nothing). Steering every veth's
    receive processing to CPU 0 (RPS) keeps order, as a wire does.
    """
    for node in tb.topology.nodes:
        for iface in tb.interfaces(node):
            queue = f"/sys/class/net/{iface.name}/queues/rx-0/rps_cpus"
            tb.run(node, ["sh", "-c", f"echo 1 > {queue}"])
    # ep: uploads' send buffer, whoever sends; downloads' receive buffer, 8 MiB: what the
    # endpoint's SO_RCVBUFFORCE of 4 MiB for a bulk receive gives (the kernel doubles it).
    tb.ns("ep").set_sysctls({"net.ipv4.tcp_wmem": f"4096 16384 {sndbuf}",
                             "net.ipv4.tcp_rmem": f"4096 131072 {8 << 20}"})  # fmt: skip
    # tg: the iperf3 server both tools talk to.
    tb.ns("tg").set_sysctls({"net.ipv4.tcp_wmem": f"4096 16384 {sndbuf}",
                             "net.ipv4.tcp_rmem": f"4096 131072 {rcvbuf}"})  # fmt: skip


def tls_home() -> Path:
    """A `pktlab init` home whose exppriv grants 10 Gb/s over 10 s (docs/throughput.md)."""
    home = Path(tempfile.mkdtemp(prefix="bench-tp-")) / "home"
    subprocess.run(
        [sys.executable, "-m", "packetlab", "init", "--home", str(home),
         "--max-burst-rate-byte", "12500000000/10000000000"],
        check=True, capture_output=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    return home


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="rounds per rate and direction")
    ap.add_argument("--rate", action="append", help="tbf rate of the link [100mbit, 1gbit]")
    ap.add_argument("--bytes", type=int, default=25 << 20, help="bytes per transfer [25 MiB]")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--plots", type=Path, help="write a CDF plot per case into this directory")
    ap.add_argument(
        "--burst", type=int, metavar="BYTES",
        help="tbf bucket of the shaped link in bytes [--burst-ms of traffic]: native iperf3 "
        "averages over the whole transfer, the bucket's burst at veth speed included, while "
        "the paper's method ignores the first MiB, so a bucket of B bytes favours native by "
        "about B / --bytes",
    )  # fmt: skip
    ap.add_argument(
        "--burst-ms", type=float, default=BURST_MS,
        help=f"the bucket in ms of traffic at each rate [{BURST_MS:g}]",
    )  # fmt: skip
    ap.add_argument(
        "--queue", type=int, default=QUEUE_BYTES, metavar="BYTES",
        help=f"tbf queue at any rate: what would wait longer than this takes is dropped "
        f"[{QUEUE_BYTES}]",
    )  # fmt: skip
    ap.add_argument(
        "--sndbuf", type=int, default=SNDBUF_MAX, metavar="BYTES",
        help=f"TCP send buffer ceiling in ep and tg, both tools [{SNDBUF_MAX}]",
    )  # fmt: skip
    ap.add_argument(
        "--rcvbuf", type=int, default=RCVBUF_MAX, metavar="BYTES",
        help=f"TCP receive buffer ceiling of the iperf3 server in tg [{RCVBUF_MAX}]",
    )  # fmt: skip
    ap.add_argument(
        "--host-link", action="store_true",
        help="leave veth receive processing on any CPU and the hosts' TCP buffer limits as "
        "they are (the link before this fix: veth reorders, docs/congruence.md)",
    )  # fmt: skip
    ap.add_argument(
        "--direction", action="append", choices=("download", "upload"),
        help="only this direction (repeatable) [both]",
    )  # fmt: skip
    ap.add_argument(
        "--no-capture", action="store_true",
        help="downloads: no tcpdump in ep; native's figure is then iperf3's 0.1 s reports "
        "with the first MiB skipped (at 1 Gbit/s its first report ends ~12 MB in)",
    )  # fmt: skip
    ap.add_argument(
        "--tls", action="store_true",
        help="the endpoint over TLS (pktlab init's chains; uploads need a send-rate limit "
        "above 10 Mb/s: see docs/throughput.md) instead of --insecure-plaintext",
    )  # fmt: skip
    ap.add_argument(
        "--py-spy", type=Path, metavar="DIR",
        help="profile each PacketLab run with py-spy (pip install py-spy): collapsed stacks "
        "DIR/RATE-DIRECTION-N.txt",
    )  # fmt: skip
    args = ap.parse_args(argv)
    rates = args.rate or ["100mbit", "1gbit"]
    home = tls_home() if args.tls else None
    rows, figures = [], []
    for rate in rates:
        shape = Shape.parse(rate)
        burst = args.burst or max(MIN_BURST, int(shape.rate_bit / 8 * args.burst_ms / 1000))
        queue_ms = args.queue * 8 / shape.rate_bit * 1000
        shape = Shape(shape.rate_bit, burst_bytes=burst, latency_ms=queue_ms)
        with Testbed(chain(1, shape={2: shape})) as tb:
            if not args.host_link:
                make_wire(tb, sndbuf=args.sndbuf, rcvbuf=args.rcvbuf)
            tb.popen("tg", ["iperf3", "-s"], stdout=subprocess.DEVNULL)
            tb.wait_listening("tg", 5201)
            server = str(tb.addr("tg"))
            for direction in args.direction or ("download", "upload"):
                cap_on = direction == "download" and not args.no_capture
                pl: list[float] = []
                pl_runs: list[dict[str, Any]] = []  # each PL run: figure, server's, stalls
                nt: list[float] = []
                nt_runs: list[dict[str, Any]] = []  # each native run: its figures, stalls
                ERRORS.clear()
                loads: list[float] = []  # 1-min load average, every round (others' jobs)
                for i in range(args.runs):
                    loads.append(os.getloadavg()[0])
                    order = ("pl", "nt") if i % 2 == 0 else ("nt", "pl")
                    for who in order:
                        if who == "pl":
                            spy = None
                            if args.py_spy is not None:
                                spy = args.py_spy / f"{rate}-{direction}-{i}.txt"
                            with capture(tb, cap_on, args.bytes) as cap:
                                got_pl = packetlab_run(
                                    tb, server, direction, args.bytes, spy, home=home
                                )
                            run: dict[str, Any] = {"mbit_s": got_pl}
                            if got_pl is not None:
                                pl.append(got_pl)
                                run.update((k, LAST_RECORD.get(k)) for k in (
                                    "server_mbit_s", "sender_mbit_s", "chunks", "stall_ms",
                                    "stalls", "data_start", "setup_us"))  # fmt: skip
                            if cap_on:
                                run["capture"] = cap.result(server)
                            pl_runs.append(run)
                        else:
                            with capture(tb, cap_on, args.bytes) as cap:
                                got = run_iperf3(server, direction=direction,
                                                 nbytes=args.bytes,
                                                 netns=tb.netns_name("ep"))  # fmt: skip
                            assert got.mbit_s is not None
                            run = {"iperf3_mbit_s": got.mbit_s, "whole_mbit_s": got.whole_mbit_s,
                                   "iperf3_skip": got.skip}  # fmt: skip
                            figure: float | None = got.mbit_s
                            if cap_on:
                                run.update(cap.result(server))
                                figure = run.get("mbit_s")
                            run["mbit_s"] = figure
                            if figure is not None:
                                nt.append(figure)
                            nt_runs.append(run)
                v1, v2 = c1(pl, nt), c2(pl, nt)
                if args.plots:
                    args.plots.mkdir(parents=True, exist_ok=True)
                    plot(str(args.plots / f"throughput-{rate}-{direction}.png"),
                         SPECS["throughput"], f"{direction} at {rate}",
                         [{"values": pl}], [{"values": nt}])  # fmt: skip
                fig: dict[str, Any] = {
                    "rate": rate, "direction": direction, "pl": pl, "nt": nt,
                    "nt_method": "capture" if cap_on else (
                        "iperf3-intervals" if direction == "download" else "iperf3-server"),
                    "pl_runs": pl_runs, "nt_runs": nt_runs, "pl_errors": list(ERRORS),
                    "burst_bytes": burst, "queue_ms": queue_ms, "wire": not args.host_link,
                    "load": loads, "c1": v1.to_dict(), "c2": v2.to_dict(),
                }  # fmt: skip
                if direction == "download":  # against iperf3's own figures, for comparison
                    for name, key in (("iperf3", "iperf3_mbit_s"), ("whole", "whole_mbit_s")):
                        other = [r[key] for r in nt_runs if r.get(key) is not None]
                        if pl and other:
                            fig[f"c1_{name}"] = c1(pl, other).to_dict()
                            fig[f"c2_{name}"] = c2(pl, other).to_dict()
                    # cross-check: our transfers timed from the capture too (the ndata
                    # figure ran 0.02-0.14 % below it, median per case: docs/congruence.md)
                    pl_cap = [r["capture"]["mbit_s"] for r in pl_runs
                              if (r.get("capture") or {}).get("mbit_s") is not None]  # fmt: skip
                    if pl_cap and nt:
                        fig["c1_capture"] = c1(pl_cap, nt).to_dict()
                        fig["c2_capture"] = c2(pl_cap, nt).to_dict()
                figures.append(fig)
                rows.append([
                    rate, direction, f"{len(pl)}/{len(nt)}", fmt(v1.detail["mean_nt"]),
                    fmt(v1.detail["mean_pl"]), f"{v1.value * 100:.2f} %",
                    "yes" if v1.value <= 0.02 else "no", fmt(v2.detail["ks_d"], digits=3),
                    fmt(v2.value, digits=3), "yes" if v2.holds else "no",
                    f"{min(loads):.1f}-{max(loads):.1f}",
                ])  # fmt: skip
                print(rows[-1], file=sys.stderr)
    print(
        markdown_table(
            [
                "link",
                "direction",
                "n PL/NT",
                "NT Mbit/s",
                "PL Mbit/s",
                "C1 err",
                "C1 <= 2 %",
                "KS D",
                "KS p",
                "C2",
                "load",
            ],
            rows,
        )
    )
    if home is not None:
        shutil.rmtree(home.parent, ignore_errors=True)
    if args.json:
        write_json(args.json, {"environment": environment(), "results": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
