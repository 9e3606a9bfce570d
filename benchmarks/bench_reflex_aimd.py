"""AIMD congestion control at the endpoint (a reflex) vs in the controller (docs/reflexes.md).

A namespace testbed ``ep - r1 - tg`` with the r1-tg link shaped by tbf (``--rate``,
``--tbf-latency-ms`` of queue). A UDP acker on ``tg`` echoes the first 12 bytes of
every datagram.
In ``ep`` a real ``twistd pktendpoint`` over TLS reaches its controller through
``benchmarks/delay_relay.py`` (``--ctl-delay-ms`` each way, well above the path RTT).
Two runs of ``--seconds`` each:

* **reflex**: ``examples/reflexes/aimd.c`` sends and reacts to each ack at the endpoint;
* **controller**: the same AIMD in the controller, one (slow) controller RTT away.

Reported per run: the rate acknowledged over the second half (wire bytes: payload plus
42 bytes of UDP, IP and Ethernet headers, which tbf counts) against the link rate, the
queueing delay the sender sees (smoothed RTT minus the minimum RTT, at the end and the
largest seen), window halvings and timeouts; and the bottleneck queue itself, sampled from
the tbf qdisc on r1 (``tc -s qdisc``, every ``--qdisc-every-ms``): backlog p50/p95/max in
bytes and packets, the share of samples at least half full, drops. Goal: the reflex
converges to the link rate within 10 % and keeps the queue bounded.

Needs root (network namespaces). Run from the repository root:
``python -m benchmarks.bench_reflex_aimd --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
AIMD = REPO / "examples" / "reflexes" / "aimd.c"
HEADERS = 42  # UDP 8 + IPv4 20 + Ethernet 14: what tbf counts beyond the payload
ACKER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    data, addr = s.recvfrom(2048)
    s.sendto(data[:12], addr)
"""


# ------------------------------------------------------------------ inside the ep namespace


def _state(data: bytes) -> dict[str, int]:
    names = ("cwnd_milli", "next", "high", "acks", "halvings", "timeouts", "minrtt_us",
             "srtt_us", "maxqueue_us")  # fmt: skip
    out = dict(zip(names, struct.unpack(">9I", data[:36]), strict=True))
    out["last_ack_ns"] = struct.unpack(">Q", data[44:52])[0]
    return out


async def reflex_run(session: Any, reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    from twisted.internet import task

    from packetlab.monitor.build import build

    sock = await session.nopen_udp(1)
    params = (
        bytes(map(int, args.target.split(".")))
        + struct.pack(">HHII", args.port, args.size, 0, 200_000)
    )  # fmt: skip
    reflex = await session.attach_reflex(sock, build(AIMD), params)
    samples = []
    t_end = time.monotonic() + args.seconds
    while time.monotonic() < t_end:
        await task.deferLater(reactor, 0.25)
        samples.append(_state(await reflex.state(0, 52)))
    status = await reflex.status()
    await reflex.detach()
    return {"samples": samples, "denied": status.denied, "lasterr": status.lasterr}


async def controller_run(session: Any, reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    from packetlab.wire import Ndata

    sock = await session.nopen_udp(1)
    to = (args.target, args.port)
    st = {"cwnd_milli": 1000, "next": 0, "high": 0, "acks": 0, "halvings": 0, "timeouts": 0,
          "minrtt_us": 2**32 - 1, "srtt_us": 0, "maxqueue_us": 0, "last_ack_ns": 0}  # fmt: skip
    recover = 0
    failed: list[Any] = []

    def fill() -> None:
        cwnd = max(1, st["cwnd_milli"] // 1000)
        while st["next"] - st["high"] < cwnd:
            payload = struct.pack(">IQ", st["next"], time.time_ns()).ljust(args.size, b"\0")
            session.nsend(1, payload, to=to).addErrback(failed.append)
            st["next"] += 1

    fill()
    samples = []
    t_end = time.monotonic() + args.seconds
    next_sample = time.monotonic() + 0.25
    while time.monotonic() < t_end:
        note = await sock.get(0.2)
        if time.monotonic() >= next_sample:
            samples.append(dict(st))
            next_sample += 0.25
        if note is None:  # 200 ms without an ack: timeout
            st["cwnd_milli"] = 1000
            st["timeouts"] += 1
            st["high"] = recover = st["next"]
            fill()
            continue
        if not isinstance(note, Ndata) or len(note.data) < 12:
            continue
        seq, sent = struct.unpack(">IQ", note.data[:12])
        if seq + 1 <= st["high"]:
            continue
        if seq > st["high"] and seq >= recover:
            st["cwnd_milli"] = max(1000, st["cwnd_milli"] // 2)
            st["halvings"] += 1
            recover = st["next"]
        else:
            st["cwnd_milli"] += 1_000_000 // st["cwnd_milli"]
        st["high"] = seq + 1
        st["acks"] += 1
        st["last_ack_ns"] = note.time
        rtt = max(0, (note.time - sent) // 1000)
        st["minrtt_us"] = min(st["minrtt_us"], rtt)
        st["srtt_us"] = (st["srtt_us"] * 7 + rtt) // 8 if st["srtt_us"] else rtt
        st["maxqueue_us"] = max(st["maxqueue_us"], st["srtt_us"] - st["minrtt_us"])
        fill()
    return {"samples": samples, "denied": len(failed), "lasterr": 0}


def inside(args: argparse.Namespace) -> None:
    """Runs in the ep namespace: a TLS endpoint behind the delay relay, one run."""
    from benchmarks.reflex_world import inside, run_experiment

    run = reflex_run if args.mode == "reflex" else controller_run

    async def go(reactor: Any) -> dict[str, Any]:
        async def exp(session: Any) -> dict[str, Any]:
            return await run(session, reactor, args)

        return await run_experiment(
            reactor, exp, sources=[AIMD], ctl_delay_ms=args.ctl_delay_ms,
            timeout=args.seconds + 60,
        )  # fmt: skip

    inside(go)


# ------------------------------------------------------------------------------- outside


class QdiscSampler:
    """Reads the bottleneck's tbf counters (``tc -s -j qdisc show``) every `every_s` in a
    thread: the queue the sender builds, in bytes and packets, and the drops."""

    def __init__(self, netns: str, dev: str, every_s: float) -> None:
        self.argv = ["tc", "-n", netns, "-s", "-j", "qdisc", "show", "dev", dev]
        self.every_s = every_s
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qdisc-sampler", daemon=True)

    def read(self) -> dict[str, float]:
        out = subprocess.run(self.argv, capture_output=True, text=True, check=True).stdout
        q = next(q for q in json.loads(out) if q.get("kind") == "tbf")
        o = q["options"]  # rate in bytes/s, lat in µs: tbf's byte limit is rate * lat + burst
        return {"t": time.monotonic(), "backlog": q["backlog"], "qlen": q["qlen"],
                "drops": q["drops"], "packets": q["packets"],
                "limit": int(o["rate"] * o["lat"] / 1e6) + o["burst"]}  # fmt: skip

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.read())
            self._stop.wait(self.every_s)

    def __enter__(self) -> QdiscSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def sending(samples: list[dict[str, float]]) -> list[dict[str, float]]:
    """The samples while the sender kept tbf's queue busy: from the first with a backlog to
    the last. Around them the queue is empty for reasons that are no part of the sender:
    before, tbf may pass a stray packet (ARP, IPv6 neighbour discovery) up to ~1 s before
    the first data packet; after, it waits while the endpoint detaches and exits (0.2-1 s).
    Counting those (as "from the first packet on" did) set the half-full share by how long
    they lasted, not by the sender (test_reflex_aimd's flake at 0.95)."""
    busy = [i for i, s in enumerate(samples) if s["backlog"] > 0]
    return samples[busy[0] : busy[-1] + 1] if busy else []


def queue_summary(samples: list[dict[str, float]], packet_bytes: int) -> dict[str, Any]:
    """The tbf queue while the sender kept it busy (`sending`): p50/p95/max backlog (bytes,
    packets) against tbf's limit, the share of samples at least half full and the share
    full (no room for one more `packet_bytes` packet), drops and packets sent over the
    whole run."""
    from benchmarks.common import percentile

    first, last = samples[0], samples[-1]
    limit_bytes = int(first["limit"])
    busy = sending(samples)
    if not busy:
        return {"samples": 0}
    sent = last["packets"] - first["packets"]
    drops = last["drops"] - first["drops"]
    b = [s["backlog"] for s in busy]
    q = [s["qlen"] for s in busy]
    return {
        "samples": len(busy),
        "limit_bytes": limit_bytes,
        "backlog_p50": percentile(b, 50), "backlog_p95": percentile(b, 95), "backlog_max": max(b),
        "qlen_p95": percentile(q, 95), "qlen_max": max(q),
        "half_full": sum(1 for x in b if 2 * x >= limit_bytes) / len(b),
        "full": sum(1 for x in b if x + packet_bytes > limit_bytes) / len(b),
        "packets": sent, "drops": drops, "drop_share": drops / (sent + drops) if sent else 0.0,
    }  # fmt: skip


def summarize_run(res: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    s = res["samples"]
    mid, end = s[len(s) // 2], s[-1]
    dt = (end["last_ack_ns"] - mid["last_ack_ns"]) / 1e9
    acks = end["acks"] - mid["acks"]
    rate = acks * (args.size + HEADERS) * 8 / dt if dt > 0 else 0.0
    return {
        "rate_bit_s": rate,
        "of_link": rate / args.rate,
        "queue_end_ms": (end["srtt_us"] - end["minrtt_us"]) / 1e3,
        "queue_max_ms": end["maxqueue_us"] / 1e3,
        "min_rtt_ms": end["minrtt_us"] / 1e3,
        "halvings": end["halvings"],
        "timeouts": end["timeouts"],
        "acks": end["acks"],
        "denied": res["denied"],
    }


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.reflex_world import child_env, child_result
    from packetlab.testbed import Shape, chain, testbed

    name = f"rfx{os.getpid() % 100000}"
    out: dict[str, Any] = {}
    shape = Shape(args.rate, latency_ms=args.tbf_latency_ms)
    with testbed(chain(1, shape={2: shape}), name=name) as tb:
        env = child_env()
        tb.popen("tg", [sys.executable, "-c", ACKER, str(args.port)])
        dev = tb.iface("r1", "tg")  # the bottleneck: r1's tbf toward tg queues the data
        time.sleep(0.5)
        for mode in args.modes:
            print(f"{mode}: {args.seconds:g} s ...", file=sys.stderr, flush=True)
            proc = tb.popen(
                "ep",
                [sys.executable, "-m", "benchmarks.bench_reflex_aimd", "--inside",
                 "--mode", mode, "--target", str(tb.addr("tg")), "--port", str(args.port),
                 "--size", str(args.size), "--seconds", str(args.seconds),
                 "--ctl-delay-ms", str(args.ctl_delay_ms)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
            )  # fmt: skip
            with QdiscSampler(tb.netns_name("r1"), dev, args.qdisc_every_ms / 1e3) as q:
                res = child_result(proc, f"{mode} run", args.seconds + 120)
            queue = queue_summary(q.samples, args.size + HEADERS)
            out[mode] = summarize_run(res, args) | {"queue": queue}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=int, default=4_000_000, help="link rate, bit/s [4000000]")
    p.add_argument("--size", type=int, default=1000, help="payload bytes [1000]")
    p.add_argument("--seconds", type=float, default=8.0, help="per run [8]")
    p.add_argument(
        "--tbf-latency-ms", type=float, default=5.0, help="tbf queue bound (drop beyond) [5]"
    )
    p.add_argument("--ctl-delay-ms", type=float, default=10.0, help="controller link, each way")
    p.add_argument("--port", type=int, default=9400, help="the acker's UDP port on tg")
    p.add_argument("--modes", nargs="+", default=["reflex", "controller"])
    p.add_argument(
        "--qdisc-every-ms", type=float, default=20.0, help="tbf backlog sampling period [20]"
    )
    p.add_argument("--json", type=Path, help="write the results here too")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--target", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.inside:
        inside(args)
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    from benchmarks.common import environment, markdown_table, write_json

    res = run_all(args)
    print(f"link {args.rate / 1e6:g} Mbit/s (tbf, {args.tbf_latency_ms:g} ms queue), controller "
          f"link +{args.ctl_delay_ms:g} ms each way, over TLS")  # fmt: skip
    rows = [
        [m, f"{r['rate_bit_s'] / 1e6:.2f}", f"{100 * r['of_link']:.1f} %",
         f"{r['min_rtt_ms']:.2f}", f"{r['queue_end_ms']:.1f}", f"{r['queue_max_ms']:.1f}",
         r["halvings"], r["timeouts"], r["denied"]]
        for m, r in res.items()
    ]  # fmt: skip
    headers = ["AIMD in", "Mbit/s (2nd half)", "of link", "min RTT ms", "queue ms (end)",
               "queue ms (max)", "halvings", "timeouts", "refused sends"]  # fmt: skip
    print(markdown_table(headers, rows))
    limit = next(iter(res.values()))["queue"]["limit_bytes"]
    print(f"\nthe tbf queue while busy (tc -s qdisc, every {args.qdisc_every_ms:g} ms; limit "
          f"{limit} bytes; full: no room for one more packet):")  # fmt: skip
    rows = []
    for m, r in res.items():
        q = r["queue"]
        rows.append([
            m, q["samples"], f"{q['backlog_p50']:.0f}", f"{q['backlog_p95']:.0f}",
            f"{q['backlog_max']:.0f}", f"{q['qlen_p95']:.0f}", f"{q['qlen_max']:.0f}",
            f"{100 * q['half_full']:.1f} %", f"{100 * q['full']:.1f} %", q["drops"],
            f"{100 * q['drop_share']:.2f} %",
        ])  # fmt: skip
    headers = ["AIMD in", "samples", "backlog p50 B", "p95 B", "max B", "qlen p95", "qlen max",
               "≥ half full", "full", "drops", "of packets"]  # fmt: skip
    print(markdown_table(headers, rows))
    if args.json is not None:
        write_json(args.json, {"env": environment(), "args": vars(args) | {"json": None},
                               "results": res})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
