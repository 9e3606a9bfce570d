"""`pktlab run http -T` memory against the file's size, and `-Z` wall time, on loopback.

    .venv/bin/python benchmarks/bench_http_upload.py [--runs 3]

-T: a 16 MiB and a 256 MiB file PUT to a local server that reads and discards the body
(in-process endpoint), the peak RSS of the whole `pktlab run http` process
(/usr/bin/time -f %M) and its wall time, medians over the runs, curl 7.88's beside it.
The body is read 64 KiB at a time with at most 8 chunks awaiting their ntag, so the
peak should not grow with the file.

-Z: 8 URLs each answered after 0.2 s, one after the other and with -Z
--parallel-immediate (HTTP/1.1: a connection each), wall time medians (start-up
included), curl's beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_PUT(self) -> None:
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            left -= len(self.rfile.read(min(left, 1 << 20)))
        self.reply()

    def do_GET(self) -> None:
        time.sleep(0.2)
        self.reply()

    def reply(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def timed(cmd: list[str]) -> tuple[float, int]:
    """(wall s, peak RSS KiB) of `cmd`."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.monotonic()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, env=env,
                         timeout=600, check=True)  # fmt: skip
    return time.monotonic() - start, int(out.stderr.decode().strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    runs = p.parse_args().runs
    ThreadingHTTPServer.request_queue_size = 64  # 5 would drop the 6th SYN (a 1 s resend)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as d:
        # a home whose certificate grants 1 Gb/s over 10 s: the built-in window (10 Mb/s,
        # 12,500,000 bytes per 10 s) refuses the 256 MiB upload, as it should
        home = str(Path(d) / "home")
        subprocess.run([sys.executable, "-m", "packetlab", "init", "--home", home,
                        "--max-burst-rate-byte", "1250000000/10000000000"], check=True,
                       capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip
        ours = [sys.executable, "-m", "packetlab", "run", "http", "--home", home,
                "--connect-to", "127.0.0.1", "-s", "--max-time", "300", "-o", "/dev/null",
                "-w", ""]  # fmt: skip
        bench(ours, url, d, runs)
    server.shutdown()


def bench(ours: list[str], url: str, d: str, runs: int) -> None:
    print("| file | ours: peak RSS MiB | ours: wall s | curl: peak RSS MiB | curl: wall s |")
    print("| --- | --- | --- | --- | --- |")
    for mib in (16, 256):
        f = Path(d) / f"f{mib}"
        with open(f, "wb") as out:
            for _ in range(mib):
                out.write(os.urandom(1 << 20))
        rows: dict[str, list[tuple[float, int]]] = {"ours": [], "curl": []}
        for _ in range(runs):  # A/B interleaved
            rows["ours"].append(timed([*ours, "-T", str(f), f"{url}/up/"]))
            rows["curl"].append(timed(["curl", "-s", "-o", "/dev/null", "-T", str(f),
                                       f"{url}/up/"]))  # fmt: skip
        cells = []
        for who in ("ours", "curl"):
            cells += [f"{statistics.median(r[1] for r in rows[who]) / 1024:.1f}",
                      f"{statistics.median(r[0] for r in rows[who]):.2f}"]  # fmt: skip
        print(f"| {mib} MiB | " + " | ".join(cells) + " |")
    urls = [f"{url}/d/{i}" for i in range(8)]
    null = ["-o", "/dev/null"] * len(urls)
    seq, par, cseq, cpar = [], [], [], []
    for _ in range(runs):
        seq.append(timed([*ours[:-4], *null, *urls])[0])
        par.append(timed([*ours[:-4], "-Z", "--parallel-immediate", *null, *urls])[0])
        cseq.append(timed(["curl", "-s", *null, *urls])[0])
        cpar.append(timed(["curl", "-s", "-Z", "--parallel-immediate", *null, *urls])[0])
    m = statistics.median
    print(f"\n8 URLs of 0.2 s (medians of {runs}): ours one after the other {m(seq):.2f} s, "
          f"-Z --parallel-immediate {m(par):.2f} s; curl {m(cseq):.2f} s, the same "
          f"{m(cpar):.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
