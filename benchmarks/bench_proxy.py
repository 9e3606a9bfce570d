"""Bulk TLS bytes through `twistd pktproxy` against the same transfer made directly.

Three processes per transfer, as in real use: a source (the "endpoint": TLS 1.3 client
with SNI, sends N bytes), a sink (the "manager": TLS 1.3 server that reads the N bytes and
answers "ok") and, in proxy mode, the real `twistd pktproxy` in
between. In proxy mode the sink first registers a backlog connection (TLS, xreg, the
PKTLAB preamble) and then runs its TLS server over that socket, so the TLS session is
end to end and the proxy only relays bytes. Direct and proxied transfers alternate in one
run; the headline is the median of the per-pair ratios. Goal: proxy >= 0.8x direct.

Run from the repository root: ``python -m benchmarks.bench_proxy --help``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import environment, fmt, markdown_table, median, write_json

REPO = Path(__file__).resolve().parent.parent
SNIKEY = "benchsni"
CHUNK = 256 * 1024


def _server_ctx(home: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(home / "certs/agent_xc_xc.cert", home / "keys/k_xc")
    return ctx


def _client_ctx() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the PPKS check is not what is measured here
    return ctx


def _register(port: int) -> socket.socket:
    """A backlog connection for SNIKEY, blocking, as pktlab xpmgr makes one."""
    from packetlab import wire
    from packetlab.tls import AuthMode, PPKSClientCreator
    from packetlab.tls.handoff import TLSHandoff

    sock = socket.create_connection(("127.0.0.1", port))
    tls = TLSHandoff(PPKSClientCreator(None, AuthMode.AGENT).clientConnectionForTLS(None),  # type: ignore[arg-type]
                     is_client=True)  # fmt: skip
    sock.sendall(tls.start())
    framer = wire.Framer()
    while True:
        step = tls.receive(sock.recv(65536))
        out = step.out
        if step.handshake_done:
            out += tls.send(wire.encode(wire.Xreg(SNIKEY.encode())))
        if out:
            sock.sendall(out)
        if list(framer.feed(step.data)):
            sock.sendall(tls.close())
            break
    pre = b""
    while len(pre) < 6:
        pre += sock.recv(6 - len(pre))
    assert pre == b"PKTLAB", pre
    sock.sendall(pre)
    return sock


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sink(home: Path, mode: str, proxy_setup: int, size: int, ready: Any, done: Any) -> None:
    if mode == "direct":
        lsock = socket.create_server(("127.0.0.1", 0))
        ready.send(lsock.getsockname()[1])
        raw, _ = lsock.accept()
        lsock.close()
    else:
        raw = _register(proxy_setup)
        ready.send(0)
    conn = _server_ctx(home).wrap_socket(raw, server_side=True)
    cpu0 = cpu_self()
    total = 0
    buf = bytearray(CHUNK)
    while total < size and (n := conn.recv_into(buf)):
        total += n
    conn.sendall(b"ok")
    conn.close()
    done.send((total, cpu_self() - cpu0))


def source(port: int, size: int) -> float:
    """Seconds from connect to the sink's "ok" after all `size` bytes."""
    data = os.urandom(CHUNK)
    t0 = time.perf_counter()
    raw = socket.create_connection(("127.0.0.1", port))
    conn = _client_ctx().wrap_socket(raw, server_hostname=SNIKEY)
    sent = 0
    while sent < size:
        conn.sendall(data)
        sent += len(data)
    assert conn.recv(2) == b"ok"
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def transfer(home: Path, mode: str, size: int, proxy: tuple[int, int]) -> tuple[float, float]:
    """MB/s of one transfer, and the CPU seconds its source and sink spent on it (the sink
    runs in its own process)."""
    ctx = mp.get_context("fork")
    ready_r, ready_w = ctx.Pipe(False)
    done_r, done_w = ctx.Pipe(False)
    p = ctx.Process(target=sink, args=(home, mode, proxy[0], size, ready_w, done_w))
    p.start()
    port = ready_r.recv()
    cpu0 = cpu_self()
    seconds = source(port if mode == "direct" else proxy[1], size)
    cpu = cpu_self() - cpu0
    got, sink_cpu = done_r.recv()
    p.join(10)
    if got != size:
        raise SystemExit(f"{mode}: the sink got {got} of {size} bytes")
    return size / seconds / 1e6, cpu + sink_cpu


def start_proxy(home: Path, tmp: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int, int]:
    tmp.mkdir(exist_ok=True)
    log = tmp / "pktproxy.log"
    twistd = Path(sys.executable).with_name("twistd")
    argv = [str(twistd), "-n", "--pidfile=", f"--logfile={log}", "pktproxy", "--home", str(home),
            "--setup", "tcp:0:interface=127.0.0.1", "--endpoints", "tcp:0:interface=127.0.0.1",
            "--stats-interval", "0", *extra]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=tmp)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        s = re.search(r"setup port listening on 127\.0\.0\.1:(\d+)", text)
        e = re.search(r"endpoints port listening on 127\.0\.0\.1:(\d+)", text)
        if s and e:
            return proc, int(s.group(1)), int(e.group(1))
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"pktproxy did not start:\n{log.read_text() if log.exists() else ''}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (robust where throughput is not: on a loaded machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512, help="MiB per transfer (default 512)")
    ap.add_argument("--runs", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--relay", default="copy",
                    help="comma list of the proxy's --relay modes to compare, one proxy "
                         "each, every round runs direct then each (default copy; e.g. "
                         "copy,splice,python)")  # fmt: skip
    ap.add_argument("--no-splice", action="store_true", help="same as --relay python")
    ap.add_argument("--json", help="write the results as JSON to this file")
    args = ap.parse_args(argv)
    relays = ["python"] if args.no_splice else args.relay.split(",")
    size = args.size << 20
    gib = size / 2**30
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as d:
        tmp = Path(d)
        subprocess.run([sys.executable, "-m", "packetlab", "init", "--home", str(tmp / "home")],
                       check=True, capture_output=True)  # fmt: skip
        home = tmp / "home"
        proxies = {r: start_proxy(home, tmp / r, "--relay", r) for r in relays}
        res: dict[str, dict[str, list[float]]] = {
            r: {k: [] for k in ("direct", "proxy", "ratio", "proxy_cpu", "cpu_ratio")}
            for r in relays
        }
        try:
            for i in range(args.runs):
                a, a_cpu = transfer(home, "direct", size, (0, 0))
                line = [f"run {i + 1}: direct {a:.0f} MB/s"]
                for r, (proc, setup, endpoints) in proxies.items():
                    cpu0 = cpu_seconds(proc.pid)
                    b, b_cpu = transfer(home, "proxy", size, (setup, endpoints))
                    pcpu = cpu_seconds(proc.pid) - cpu0
                    x = res[r]
                    x["direct"].append(a)
                    x["proxy"].append(b)
                    x["ratio"].append(b / a)
                    x["proxy_cpu"].append(pcpu / gib)
                    # CPU of the whole transfer, direct / through the proxy: the rate the
                    # proxy leaves when the CPUs are the limit (load disturbs it far less)
                    x["cpu_ratio"].append(a_cpu / (b_cpu + pcpu))
                    line.append(f"{r} {b:.0f} MB/s (x{b / a:.2f}, proxy {pcpu / gib:.2f} s/GiB, "
                                f"CPU x{x['cpu_ratio'][-1]:.2f})")  # fmt: skip
                print(", ".join(line), flush=True)
        finally:
            for proc, _, _ in proxies.values():
                proc.terminate()
                proc.wait(10)
    rows = [
        (r, fmt(median(x["direct"]), 1, 0), fmt(median(x["proxy"]), 1, 0),
         f"{median(x['ratio']):.2f} ({min(x['ratio']):.2f}-{max(x['ratio']):.2f})",
         fmt(median(x["proxy_cpu"])), fmt(median(x["cpu_ratio"])))
        for r, x in res.items()
    ]  # fmt: skip
    print()
    print(markdown_table(["relay", "direct MB/s", "through pktproxy MB/s", "ratio (min-max)",
                          "proxy CPU s/GiB", "CPU ratio"], rows))  # fmt: skip
    ok = True
    for r, x in res.items():
        ratio = median(x["ratio"])
        ok &= ratio >= 0.8
        verdict = "met" if ratio >= 0.8 else "MISSED"
        print(f"{r}: ratio median {ratio:.2f} (goal >= 0.80: {verdict}), "
              f"CPU ratio {median(x['cpu_ratio']):.2f}")  # fmt: skip
    if args.json:
        write_json(args.json, {"environment": environment(), "size_mib": args.size,
                               "relays": res})  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
