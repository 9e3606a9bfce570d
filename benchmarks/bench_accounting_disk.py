"""Disk that the endpoint's accounting database takes (session 34, acct34): sessions of
metered sends as the endpoint meters them (`Accounting(prefetch=True)`, the send byte and
packet meters of `endpoint.limits`, a runtime reservation, release at the end), then the
size of the database and of its write-ahead log, the WAL's largest size seen between
sessions, and on which thread each COMMIT ran (the caller's, i.e. the reactor's, or the
worker's). Each version in its own process; ``--base PATH`` adds the code there.

    .venv/bin/python -m benchmarks.bench_accounting_disk --base .bench/base
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, os, sys, threading, time
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packetlab.endpoint.limits import PKT_CHUNK_MAX, QUOTA_CHUNK
from packetlab.ppks import Accounting, Counter, issue_certificate

db, sessions, sends, size, certs = sys.argv[1], *map(int, sys.argv[2:6])
LIMITS = "max_send_byte=10000000000000;max_send_pkt=1000000000;max_exp_period=10**15;"
LIMITS = LIMITS.replace("10**15", str(10**15))
eop, now = Ed25519PrivateKey.generate(), int(time.time())
chains = [[issue_certificate("exppriv", eop, Ed25519PrivateKey.generate(), now - 60,
                             now + 86400, limits=LIMITS)] for _ in range(certs)]
commits = {"caller": 0, "worker": 0}
main = threading.main_thread()
acct = Accounting(db, prefetch=True, lazy=True)
checkpoints = []  # seconds each (this version's own checkpoints; none in the base)
if hasattr(acct, "checkpoint"):
    plain = acct.checkpoint

    def timed():
        t = time.perf_counter()
        try:
            return plain()
        finally:
            checkpoints.append(time.perf_counter() - t)

    acct.checkpoint = timed

def trace(sql):
    if sql == "COMMIT":
        commits["caller" if threading.current_thread() is main else "worker"] += 1

def size_of(suffix):
    try:
        return os.path.getsize(db + suffix)
    except OSError:
        return 0

walmax, t0 = 0, time.perf_counter()
for i in range(sessions):
    b = acct.budget(chains[i % certs])
    if i == 0:
        acct._db.set_trace_callback(trace)
    send = b.meter(Counter.SEND_BYTE, QUOTA_CHUNK)
    pkts = b.meter(Counter.SEND_PKT, 64, max_chunk=PKT_CHUNK_MAX)
    runtime = b.meter(Counter.RUNTIME, 5 * 10**9)
    runtime.held += b.reserve(Counter.RUNTIME, 5 * 10**9, partial=True)
    for _ in range(sends):
        assert send.consume(size) and pkts.consume(1)
    for m in (send, pkts, runtime):
        m.release()
    walmax = max(walmax, size_of("-wal"))
acct._worker.submit(lambda: None).result()
checkpoints.sort()
print(json.dumps({"db": size_of(""), "wal": size_of("-wal"), "walmax": walmax,
                  "seconds": time.perf_counter() - t0, **commits,
                  "checkpoints": len(checkpoints), "ckpt_ms": 1e3 * sum(checkpoints),
                  "ckpt_p50_ms": 1e3 * checkpoints[len(checkpoints) // 2] if checkpoints else 0}))
acct.close()
"""


def run_one(repo: Path, sessions: int, sends: int, size: int, certs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-acct-disk-", dir=REPO / ".bench") as d:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, f"{d}/rlim.sqlite3", str(sessions), str(sends),
             str(size), str(certs)],
            env=dict(os.environ, PYTHONPATH=str(repo)),
            cwd=d, capture_output=True, text=True, check=True, timeout=1800,
        )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", help="a tree holding another version's packetlab/")
    p.add_argument("--cases", default="1x2000,10x2000,100x2000,1x200000",
                   help="SESSIONSxSENDS, comma-separated")  # fmt: skip
    p.add_argument("--size", type=int, default=1000, help="bytes a send (1000)")
    p.add_argument("--certs", type=int, default=10, help="exppriv certificates in turn (10)")
    args = p.parse_args()
    (REPO / ".bench").mkdir(exist_ok=True)
    versions = {"this": REPO, **({"base": Path(args.base).resolve()} if args.base else {})}
    print("| version | sessions x sends | database B | WAL B | WAL max B | commits caller / "
          "worker | checkpoints (ms in all, p50 ms) | s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        sessions, sends = map(int, case.split("x"))
        for name, repo in versions.items():
            r = run_one(repo, sessions, sends, args.size, args.certs)
            print(f"| {name} | {sessions} x {sends} | {r['db']:,} | {r['wal']:,} | "
                  f"{r['walmax']:,} | {r['caller']} / {r['worker']} | {r['checkpoints']} "
                  f"({r['ckpt_ms']:.0f}, {r['ckpt_p50_ms']:.2f}) | {r['seconds']:.1f} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
