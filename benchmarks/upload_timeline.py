"""Where an upload's data starts and ends against the iperf3 server's clock, from a
capture at the server: PacketLab (this checkout, or `--old REPO` for another one) and
native iperf3 alternating on the testbed of `bench_throughput` (docs/congruence.md,
"Session 7").

The server starts its clock when it sends TEST_START and stops it when it reads TEST_END,
and counts every byte it read in between, also bytes that came before its clock. tcpdump
in tg (nanosecond stamps, headers and 128 bytes) gives per run: the server's set-up (the
cookie's arrival to TEST_START), the first data byte's arrival after TEST_START (negative:
before it), the data bytes in before TEST_START, and TEST_START to TEST_END against the
server's reported seconds.

Run as root from the repository root::

    .venv/bin/python -m benchmarks.upload_timeline --runs 6 --rate 100mbit
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks import bench_throughput as bt
from benchmarks.common import markdown_table, median
from packetlab.measure.baselines import run_iperf3
from packetlab.measure.iperf3 import COOKIE_SIZE, State
from packetlab.measure.pcap import pcap_records
from packetlab.testbed import Shape, Testbed, chain

REPO = Path(__file__).resolve().parent.parent
PORT = 5201
_LINK_HEAD = {1: 14, 101: 0, 113: 16, 276: 20}


class Seg(NamedTuple):
    ns: int
    client: int  # the client's port
    to_server: bool
    seq: int
    syn: bool
    payload: bytes  # up to the snap length
    length: int


def segments(data: bytes) -> Iterator[Seg]:
    """The IPv4 TCP segments of a capture (port 5201 on one side)."""
    link, records = pcap_records(data)
    head = _LINK_HEAD[link]
    for ns, pkt in records:
        ip = pkt[head:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from(">H", ip, 2)[0]
        tcp = ip[ihl:]
        sport, dport, seq = struct.unpack_from(">HHI", tcp)
        off = (tcp[12] >> 4) * 4
        to_server = dport == PORT
        yield Seg(ns, sport if to_server else dport, to_server, seq, bool(tcp[13] & 0x02),
                  tcp[off:], total - ihl - off)  # fmt: skip


def timeline(data: bytes) -> dict[str, float]:
    """The server-side timeline of the one test in a capture (µs and bytes)."""
    conns: dict[int, list[Seg]] = {}
    for s in segments(data):
        conns.setdefault(s.client, []).append(s)
    sent = {c: sum(s.length for s in v if s.to_server) for c, v in conns.items()}
    data_port = max(sent, key=lambda c: sent[c])
    ctl = conns[min((c for c in conns if c != data_port), key=lambda c: abs(c - data_port))]

    def state_at(to_server: bool, state: State) -> int:
        want = struct.pack("b", state)
        return next(s.ns for s in ctl if s.to_server == to_server and s.length
                    and want in s.payload[:2])  # fmt: skip

    t_start, t_end = state_at(False, State.TEST_START), state_at(True, State.TEST_END)
    up = [s for s in conns[data_port] if s.to_server]
    isn = next(s.seq for s in up if s.syn)
    cookie_ns = next(s.ns for s in up if s.length)
    hi = before_start = 0
    first = None
    for s in up:
        if not s.length:
            continue
        hi = max(hi, (s.seq - isn - 1) % (1 << 32) + s.length)
        if first is None and hi > COOKIE_SIZE:
            first = s.ns
        if s.ns <= t_start:
            before_start = hi - COOKIE_SIZE
    assert first is not None
    return {
        "setup_us": (t_start - cookie_ns) / 1e3,
        "first_data_us": (first - t_start) / 1e3,
        "bytes_before_start": max(0, before_start),
        "wire_seconds": (t_end - t_start) / 1e9,
    }


def pktlab_upload(tb: Testbed, repo: Path, server: str, nbytes: int) -> dict[str, Any]:
    argv = ["ip", "netns", "exec", tb.netns_name("ep"), sys.executable, "-m", "packetlab",
            "run", "throughput", "--json", "--server", server, "--direction", "upload",
            "--bytes", str(nbytes), "--insecure-plaintext"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(repo))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=repo)
    record: dict[str, Any] = json.loads(out.stdout.splitlines()[0])
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=6, help="rounds (each tool once a round)")
    ap.add_argument("--rate", default="100mbit", help="tbf rate of the link [100mbit]")
    ap.add_argument("--bytes", type=int, default=25 << 20, help="bytes per upload [25 MiB]")
    ap.add_argument("--old", type=Path, help="also run the PacketLab of this checkout")
    ap.add_argument("--json", type=Path, help="write every run here")
    args = ap.parse_args(argv)
    shape = Shape.parse(args.rate)
    burst = max(bt.MIN_BURST, int(shape.rate_bit / 8 * bt.BURST_MS / 1000))
    shape = Shape(shape.rate_bit, burst_bytes=burst,
                  latency_ms=bt.QUEUE_BYTES * 8 / shape.rate_bit * 1000)  # fmt: skip
    tools = ["pl", "nt"] + (["old"] if args.old else [])
    runs: list[dict[str, Any]] = []
    with Testbed(chain(1, shape={2: shape})) as tb:
        bt.make_wire(tb, sndbuf=bt.SNDBUF_MAX, rcvbuf=bt.RCVBUF_MAX)
        tb.popen("tg", ["iperf3", "-s"], stdout=subprocess.DEVNULL)
        tb.wait_listening("tg", PORT)
        server = str(tb.addr("tg"))
        for i in range(args.runs):
            for who in tools[i % len(tools) :] + tools[: i % len(tools)]:  # rotate the order
                with tempfile.TemporaryDirectory(prefix="upload-timeline-") as tmp:
                    path = Path(tmp) / "tg.pcap"
                    cap = tb.popen("tg", [
                        "tcpdump", "-i", tb.iface("tg"), "-s", "128", "-B", "32768", "-U",
                        "-n", "--time-stamp-precision=nano", "-w", str(path),
                        f"tcp port {PORT}"], stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True)  # fmt: skip
                    assert cap.stderr is not None
                    cap.stderr.readline()  # listening
                    run: dict[str, Any] = {"tool": who, "load": os.getloadavg()[0]}
                    if who == "nt":
                        r = run_iperf3(server, direction="upload", nbytes=args.bytes,
                                       netns=tb.netns_name("ep"))  # fmt: skip
                        run.update(mbit_s=r.mbit_s, server_seconds=r.seconds)
                    else:
                        rec = pktlab_upload(tb, REPO if who == "pl" else args.old, server,
                                            args.bytes)  # fmt: skip
                        run.update(mbit_s=rec.get("mbit_s"), error=rec.get("error"),
                                   server_seconds=rec.get("server_seconds"),
                                   data_start=rec.get("data_start"))  # fmt: skip
                    # tcpdump's ring hands packets over in blocks that retire after up to
                    # 1 s: read until the test's TEST_END is in (bench_throughput.Capture)
                    deadline = time.monotonic() + bt.CAPTURE_WAIT
                    while True:
                        try:
                            run.update(timeline(path.read_bytes()))
                            break
                        except (StopIteration, ValueError, KeyError, AssertionError) as e:
                            if time.monotonic() > deadline:
                                run["capture_error"] = repr(e)
                                break
                        time.sleep(0.2)
                    cap.send_signal(signal.SIGINT)
                    cap.communicate(timeout=10)
                runs.append(run)
                print(json.dumps(run), file=sys.stderr)
    rows = []
    for who in tools:
        mine = [r for r in runs if r["tool"] == who and "first_data_us" in r]
        got = [r["mbit_s"] for r in runs if r["tool"] == who and r.get("mbit_s")]
        if not mine or not got:
            continue
        rows.append([who, len(got), f"{median(got):.3f}",
                     f"{median([r['setup_us'] for r in mine]):.0f}",
                     f"{median([r['first_data_us'] for r in mine]):.0f}",
                     f"{median([r['bytes_before_start'] for r in mine]):.0f}"])  # fmt: skip
    print(markdown_table(["tool", "n", "Mbit/s p50", "server set-up µs p50",
                          "first data after TEST_START µs p50",
                          "bytes before TEST_START p50"], rows))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
