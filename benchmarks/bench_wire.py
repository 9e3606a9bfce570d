"""Wire codec throughput: decode+encode per second of the hot messages, fast path vs
construct, and Framer throughput on a stream of mixed frames.

Each figure is the median over several repeats of a timed loop (these machines stall for
milliseconds now and then; the median ignores that). The goal for the fast path is
>= 500,000 decode+encode per second for every hot message.

Run from the repository root: ``python -m benchmarks.bench_wire [--json PATH]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import environment, fmt, markdown_table, median, write_json
from packetlab import wire

GOAL = 500_000  # fast-path decode+encode per second, per hot message
PAYLOAD = bytes(range(64))

# The hot messages (wire.HOT_MESSAGES), with a 64-byte payload where the message has one.
SAMPLES: dict[str, wire.Message] = {
    "nsend (UDP v4, 64 B)": wire.Nsend(
        sktid=1, family=4, proto=17, time=1_700_000_000_000_000_000, tag=7,
        raddr=bytes([192, 0, 2, 53]), rport=53, data=PAYLOAD,
    ),
    "ndata (UDP v4, 64 B)": wire.Ndata(
        sktid=1, family=4, proto=17, time=1_700_000_000_000_000_000,
        raddr=bytes([192, 0, 2, 53]), rport=53, data=PAYLOAD,
    ),
    "ntag": wire.Ntag(sktid=1, tag=7, time=1_700_000_000_000_000_000),
    "result (SUCCESS)": wire.Result(),
    "mread": wire.Mread(addr=0x10010000, len=8),
    "mdata (64 B)": wire.Mdata(addr=0x20000000, data=PAYLOAD),
    "nstat (code)": wire.Nstat(sktid=1, family=4, proto=6, time=1_700_000_000_000_000_000, code=3),
}  # fmt: skip


def rate(loop: Callable[[int], None], number: int, repeats: int) -> tuple[float, list[float]]:
    """Median operations per second of `loop(number)` over `repeats` runs, and all runs."""
    loop(max(1, number // 10))  # warm up
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        loop(number)
        runs.append(number / ((time.perf_counter_ns() - t0) / 1e9))
    return median(runs), runs


def fast_loop(msg: wire.Message) -> Callable[[int], None]:
    body = wire.encode(msg)[wire.HEADER_LEN :]
    t, decode_body, encode = int(msg.TYPE), wire.decode_body, wire.encode

    def loop(n: int) -> None:
        for _ in range(n):
            encode(decode_body(t, body))

    return loop


def construct_loop(msg: wire.Message) -> Callable[[int], None]:
    body = wire.encode(msg)[wire.HEADER_LEN :]
    t, decode_body, encode = int(msg.TYPE), wire.construct_decode_body, wire.construct_encode

    def loop(n: int) -> None:
        for _ in range(n):
            encode(decode_body(t, body))

    return loop


def framer_loop(stream: bytes, chunk: int) -> Callable[[int], None]:
    chunks = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]

    def loop(n: int) -> None:
        for _ in range(n):
            framer = wire.Framer()
            for c in chunks:
                for _item in framer.feed(c):
                    pass

    return loop


def run(number: int, repeats: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for name, msg in SAMPLES.items():
        fast, fast_runs = rate(fast_loop(msg), number, repeats)
        slow, slow_runs = rate(construct_loop(msg), max(1, number // 50), repeats)
        frame = wire.encode(msg)
        rows.append(
            {
                "message": name,
                "frame_bytes": len(frame),
                "fast_per_s": fast,
                "construct_per_s": slow,
                "speedup": fast / slow,
                "goal_met": fast >= GOAL,
                "fast_runs": fast_runs,
                "construct_runs": slow_runs,
            }
        )
    mixed = [wire.encode(m) for m in SAMPLES.values()] * 1000
    stream = b"".join(mixed)
    framer = {}
    for chunk in (1500, 65536):
        per_s, runs = rate(framer_loop(stream, chunk), max(1, number // 20000), repeats)
        framer[str(chunk)] = {
            "frames_per_s": per_s * len(mixed),
            "mbytes_per_s": per_s * len(stream) / 1e6,
            "runs": runs,
        }
    return {
        "environment": environment(),
        "number": number,
        "repeats": repeats,
        "goal_per_s": GOAL,
        "codec": rows,
        "framer": {"frames": len(mixed), "stream_bytes": len(stream), "by_chunk": framer},
    }


def report(result: dict[str, Any]) -> str:
    codec = markdown_table(
        ["message", "frame (B)", "fast decode+encode/s", "construct decode+encode/s",
         "speedup", f"fast ≥ {GOAL:,}/s"],
        [
            [r["message"], r["frame_bytes"], f"{r['fast_per_s']:,.0f}",
             f"{r['construct_per_s']:,.0f}", f"{r['speedup']:.0f}x",
             "yes" if r["goal_met"] else "**no**"]
            for r in result["codec"]
        ],
    )  # fmt: skip
    fr = result["framer"]
    framer = markdown_table(
        ["feed chunk (B)", "frames/s", "MB/s"],
        [
            [chunk, f"{v['frames_per_s']:,.0f}", fmt(v["mbytes_per_s"], digits=1)]
            for chunk, v in fr["by_chunk"].items()
        ],
    )
    env = result["environment"]
    return (
        f"{codec}\n\nFramer, {fr['frames']:,} mixed frames of the messages above "
        f"({fr['stream_bytes']:,} bytes), decoded:\n\n{framer}\n\n"
        f"Medians of {result['repeats']} runs; Python {env['python']}, {env['cpus']} CPUs, "
        f"kernel {env['kernel']}, commit {env['commit']}, {env['utc']}."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=100_000, help="fast-path loop length")
    parser.add_argument("--repeats", type=int, default=7, help="runs per figure (median)")
    parser.add_argument("--json", metavar="PATH", help="also write all figures as JSON")
    args = parser.parse_args(argv)
    result = run(args.number, args.repeats)
    print(report(result))
    if args.json:
        write_json(args.json, result)
    return 0 if all(r["goal_met"] for r in result["codec"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
