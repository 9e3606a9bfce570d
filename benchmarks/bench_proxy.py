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

from benchmarks.common import environment, fmt, markdown_table, median, summarize, write_json

REPO = Path(__file__).resolve().parent.parent
SNIKEY = "benchsni"
CHUNK = 256 * 1024
MSG = 100  # bytes per request and per response in the latency check
PIN: tuple[int, int] | None = None  # --pin: the CPUs of source and sink


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


def _accept_or_register(mode: str, proxy_setup: int, ready: Any) -> socket.socket:
    if mode == "direct":
        lsock = socket.create_server(("127.0.0.1", 0))
        ready.send(lsock.getsockname()[1])
        raw, _ = lsock.accept()
        lsock.close()
        return raw
    raw = _register(proxy_setup)
    ready.send(0)
    return raw


def sink(home: Path, mode: str, proxy_setup: int, size: int, tls: bool, ready: Any,
         done: Any) -> None:  # fmt: skip
    if PIN:
        os.sched_setaffinity(0, {PIN[1]})
    raw = _accept_or_register(mode, proxy_setup, ready)
    conn: socket.socket
    if tls:
        conn = _server_ctx(home).wrap_socket(raw, server_side=True)
    else:
        conn, size = raw, size + len(_client_hello())
    cpu0 = cpu_self()
    total = 0
    buf = bytearray(CHUNK)
    while total < size and (n := conn.recv_into(buf)):
        total += n
    conn.sendall(b"ok")
    conn.close()
    done.send((total, cpu_self() - cpu0))


def source(port: int, size: int, tls: bool) -> float:
    """Seconds from connect to the sink's "ok" after all `size` bytes. Without TLS the
    source still sends a ClientHello first (the proxy routes by its SNI), then raw bytes."""
    data = os.urandom(CHUNK)
    cpus = os.sched_getaffinity(0)
    if PIN:
        os.sched_setaffinity(0, {PIN[0]})
    t0 = time.perf_counter()
    raw = socket.create_connection(("127.0.0.1", port))
    if tls:
        conn: Any = _client_ctx().wrap_socket(raw, server_hostname=SNIKEY)
    else:
        conn = raw
        conn.sendall(_client_hello())
    sent = 0
    while sent < size:
        conn.sendall(data)
        sent += len(data)
    assert conn.recv(2) == b"ok"
    elapsed = time.perf_counter() - t0
    conn.close()
    os.sched_setaffinity(0, cpus)
    return elapsed


def _client_hello() -> bytes:
    """A real TLS ClientHello with SNI=SNIKEY (what the proxy routes on), as bytes."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = _client_ctx().wrap_bio(inc, out, server_hostname=SNIKEY)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def transfer(home: Path, mode: str, size: int, proxy: tuple[int, int],
             tls: bool = True) -> tuple[float, float, float]:  # fmt: skip
    """MB/s of one transfer, and the CPU seconds its source and its sink (its own
    process) spent on it."""
    ctx = mp.get_context("fork")
    ready_r, ready_w = ctx.Pipe(False)
    done_r, done_w = ctx.Pipe(False)
    p = ctx.Process(target=sink, args=(home, mode, proxy[0], size, tls, ready_w, done_w))
    p.start()
    port = ready_r.recv()
    cpu0 = cpu_self()
    seconds = source(port if mode == "direct" else proxy[1], size, tls)
    cpu = cpu_self() - cpu0
    got, sink_cpu = done_r.recv()
    p.join(10)
    if got != size + (0 if tls else len(_client_hello())):
        raise SystemExit(f"{mode}: the sink got {got} of {size} bytes")
    return size / seconds / 1e6, cpu, sink_cpu


def start_proxy(home: Path, tmp: Path, relay: str) -> tuple[subprocess.Popen[bytes], int, int]:
    """`relay` is MODE[+VAR=VALUE...]: the proxy's --relay and its environment (e.g.
    copy+PYTHONPATH=/tmp/old, an older tree of the code, for an A/B in one run)."""
    mode, *assignments = relay.split("+")
    env = dict(os.environ)
    env.update(a.partition("=")[::2] for a in assignments)
    tmp.mkdir(exist_ok=True)
    log = tmp / "pktproxy.log"
    twistd = Path(sys.executable).with_name("twistd")
    argv = [str(twistd), "-n", "--pidfile=", f"--logfile={log}", "pktproxy", "--home", str(home),
            "--setup", "tcp:0:interface=127.0.0.1", "--endpoints", "tcp:0:interface=127.0.0.1",
            "--stats-interval", "0", "--relay", mode]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=tmp, env=env)
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


def echo(home: Path, mode: str, proxy_setup: int, ready: Any) -> None:
    """The sink of the latency test: TLS server echoing every message until EOF."""
    raw = _accept_or_register(mode, proxy_setup, ready)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = _server_ctx(home).wrap_socket(raw, server_side=True)
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.close()


def round_trips(home: Path, mode: str, count: int, proxy: tuple[int, int]) -> list[float]:
    """Microseconds per request/response of MSG bytes over TLS, `count` of them."""
    ctx = mp.get_context("fork")
    ready_r, ready_w = ctx.Pipe(False)
    p = ctx.Process(target=echo, args=(home, mode, proxy[0], ready_w))
    p.start()
    port = ready_r.recv()
    raw = socket.create_connection(("127.0.0.1", port if mode == "direct" else proxy[1]))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = _client_ctx().wrap_socket(raw, server_hostname=SNIKEY)
    msg = os.urandom(MSG)
    rtts = []
    for _ in range(count):
        t0 = time.perf_counter()
        conn.sendall(msg)
        got = 0
        while got < MSG:
            got += len(conn.recv(MSG - got))
        rtts.append((time.perf_counter() - t0) * 1e6)
    conn.close()
    p.join(10)
    return rtts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512, help="MiB per transfer (default 512)")
    ap.add_argument("--runs", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--relay", default="copy",
                    help="comma list of the proxy's --relay modes to compare, one proxy "
                         "each, every round runs direct then each (default copy; e.g. "
                         "copy,splice,python; MODE+VAR=VALUE also sets the proxy's "
                         "environment, e.g. copy+PYTHONPATH=/tmp/old runs an older tree of "
                         "the code for an A/B)")  # fmt: skip
    ap.add_argument("--no-splice", action="store_true", help="same as --relay python")
    ap.add_argument(
        "--plain",
        action="store_true",
        help="also time plain bytes (no TLS; context only, the goal is over TLS)",
    )
    ap.add_argument("--rtt", type=int, default=2000, metavar="N",
                    help=f"request/response round trips of {MSG} bytes per round for the "
                         "latency check (default 2000; 0: none)")  # fmt: skip
    ap.add_argument("--pin", metavar="SRC,SINK",
                    help="diagnostic: run source and sink on these CPUs (e.g. 0,1); the "
                         "proxy stays unpinned")  # fmt: skip
    ap.add_argument("--json", help="write the results as JSON to this file")
    args = ap.parse_args(argv)
    global PIN
    if args.pin:
        src_cpu, sink_cpu = (int(c) for c in args.pin.split(","))
        PIN = (src_cpu, sink_cpu)
    relays = ["python"] if args.no_splice else args.relay.split(",")
    variants = ["tls", "plain"] if args.plain else ["tls"]
    size = args.size << 20
    gib = size / 2**30
    keys = ("direct", "proxy", "ratio", "proxy_cpu", "cpu_ratio", "src_cpu_direct",
            "sink_cpu_direct", "src_cpu", "sink_cpu")  # fmt: skip
    res: dict[str, dict[str, dict[str, list[float]]]]
    res = {v: {r: {k: [] for k in keys} for r in relays} for v in variants}
    rtt: dict[str, list[float]] = {r: [] for r in ["direct", *relays]}
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as d:
        tmp = Path(d)
        subprocess.run([sys.executable, "-m", "packetlab", "init", "--home", str(tmp / "home")],
                       check=True, capture_output=True)  # fmt: skip
        home = tmp / "home"
        proxies = {r: start_proxy(home, tmp / f"proxy{i}", r) for i, r in enumerate(relays)}
        try:
            for i in range(args.runs):
                for v in variants:
                    tls = v == "tls"
                    a, a_src, a_sink = transfer(home, "direct", size, (0, 0), tls)
                    line = [f"run {i + 1} {v}: direct {a:.0f} MB/s"]
                    for r, (proc, setup, endpoints) in proxies.items():
                        cpu0 = cpu_seconds(proc.pid)
                        b, b_src, b_sink = transfer(home, "proxy", size, (setup, endpoints), tls)
                        pcpu = cpu_seconds(proc.pid) - cpu0
                        cpu = {"src_cpu_direct": a_src, "sink_cpu_direct": a_sink,
                               "src_cpu": b_src, "sink_cpu": b_sink, "proxy_cpu": pcpu}  # fmt: skip
                        g = {k: c / gib for k, c in cpu.items()}
                        # CPU of the whole transfer, direct / through the proxy: the rate
                        # the proxy leaves when the CPUs are the limit (load disturbs it
                        # far less)
                        cpu_ratio = (a_src + a_sink) / (b_src + b_sink + pcpu)
                        sample = {"direct": a, "proxy": b, "ratio": b / a, **g,
                                  "cpu_ratio": cpu_ratio}  # fmt: skip
                        for k, val in sample.items():
                            res[v][r][k].append(val)
                        line.append(
                            f"{r} {b:.0f} MB/s (x{b / a:.2f}, CPU x{sample['cpu_ratio']:.2f}; "
                            f"s/GiB source {g['src_cpu_direct']:.2f}->{g['src_cpu']:.2f}, sink "
                            f"{g['sink_cpu_direct']:.2f}->{g['sink_cpu']:.2f}, proxy "
                            f"{g['proxy_cpu']:.2f})"
                        )
                    print(", ".join(line), flush=True)
                if args.rtt:
                    rtt["direct"] += round_trips(home, "direct", args.rtt, (0, 0))
                    for r, (_, setup, endpoints) in proxies.items():
                        rtt[r] += round_trips(home, "proxy", args.rtt, (setup, endpoints))
        finally:
            for proc, _, _ in proxies.values():
                proc.terminate()
                proc.wait(10)
    ok = True
    for v in variants:
        rows = [
            (r, fmt(median(x["direct"]), 1, 0), fmt(median(x["proxy"]), 1, 0),
             f"{median(x['ratio']):.2f} ({min(x['ratio']):.2f}-{max(x['ratio']):.2f})",
             f"{median(x['src_cpu_direct']):.2f} / {median(x['src_cpu']):.2f}",
             f"{median(x['sink_cpu_direct']):.2f} / {median(x['sink_cpu']):.2f}",
             fmt(median(x["proxy_cpu"])), fmt(median(x["cpu_ratio"])))
            for r, x in res[v].items()
        ]  # fmt: skip
        print(f"\n{v}:")
        print(markdown_table(["relay", "direct MB/s", "through pktproxy MB/s", "ratio (min-max)",
                              "source CPU s/GiB direct / proxied",
                              "sink CPU s/GiB direct / proxied", "proxy CPU s/GiB",
                              "CPU ratio"], rows))  # fmt: skip
    if args.rtt:
        print(f"\nround trip of {MSG} bytes over TLS, microseconds ({args.rtt} x {args.runs}):")
        print(markdown_table(["path", "p10", "median", "p90", "p99"],
                             [(r, *(fmt(summarize(v)[f"p{q}"], 1, 0) for q in (10, 50, 90, 99)))
                              for r, v in rtt.items()]))  # fmt: skip
    for r, x in res["tls"].items():
        ratio = median(x["ratio"])
        ok &= ratio >= 0.8
        verdict = "met" if ratio >= 0.8 else "MISSED"
        print(f"{r}: TLS ratio median {ratio:.2f} (goal >= 0.80: {verdict}), "
              f"CPU ratio {median(x['cpu_ratio']):.2f}")  # fmt: skip
    if args.json:
        write_json(args.json, {"environment": environment(), "size_mib": args.size,
                               "relays": res["tls"], "variants": res, "rtt_us": rtt})  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
