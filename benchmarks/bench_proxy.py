"""Bulk TLS bytes through `twistd pktproxy` against the same transfer made directly.

Three processes per transfer, as in real use: a source (the "endpoint": TLS 1.3 client
with SNI, sends N bytes), a sink (the "manager": TLS 1.3 server that reads the N bytes and
answers "ok") and, in proxy mode, the real `twistd pktproxy` in
between. In proxy mode the sink first registers a backlog connection (TLS, xreg, the
PKTLAB preamble) and then runs its TLS server over that socket, so the TLS session is
end to end and the proxy only relays bytes. Direct and proxied transfers alternate in one
run; the headline is the median of the per-pair ratios. Goal: proxy >= 0.8x direct.
Source and sink run Python's ssl on blocking sockets by default (`tls`: the least CPU per
byte, so the proxy's share is the largest); `twisted` runs them on our links' own TLS
stack, `plain` sends raw bytes behind a ClientHello (context only). Each round also times
100-byte request/response round trips direct and through each relay (`--rtt`). Besides
MB/s: CPU seconds per GiB and wake-ups (voluntary context switches) per GiB of source,
sink and proxy.

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


def sleeps_self() -> int:
    """Voluntary context switches of this process so far: how often it blocked (and was
    woken again), the wake-ups a relay can add or save."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw


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
    cpu0, sleeps0 = cpu_self(), sleeps_self()
    total = 0
    buf = bytearray(CHUNK)
    while total < size and (n := conn.recv_into(buf)):
        total += n
    conn.sendall(b"ok")
    conn.close()
    done.send((total, cpu_self() - cpu0, sleeps_self() - sleeps0))


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


def _twisted_tls(home: Path, server: bool) -> Any:
    """The TLS contexts our endpoint and controller use (pyOpenSSL, PPKS, SNI)."""
    from packetlab.tls import (
        AuthMode,
        Credentials,
        PPKSClientCreator,
        PPKSServerOptions,
        ServerEntry,
    )

    if not server:
        return PPKSClientCreator(None, AuthMode.NO_VERIFY, snikey=SNIKEY)
    creds = Credentials.load([home / "certs/agent_xc_xc.cert"], home / "keys/k_xc")
    entry = ServerEntry(creds, AuthMode.NO_VERIFY, require_client_cert=False)
    return PPKSServerOptions({SNIKEY: entry})


def twisted_sink(home: Path, mode: str, proxy_setup: int, size: int, ready: Any,
                 done: Any) -> None:  # fmt: skip
    """`sink` as our stack does it: Twisted's TLSMemoryBIOProtocol over the raw socket."""
    raw = _accept_or_register(mode, proxy_setup, ready)
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol
    from twisted.protocols.tls import TLSMemoryBIOFactory

    cpu0, sleeps0 = cpu_self(), sleeps_self()

    class Sink(Protocol):
        total = 0

        def dataReceived(self, data: bytes) -> None:
            self.total += len(data)
            if self.total >= size:
                self.transport.write(b"ok")  # type: ignore[union-attr]
                self.transport.loseConnection()  # type: ignore[union-attr]

        def connectionLost(self, reason: Any = None) -> None:
            done.send((self.total, cpu_self() - cpu0, sleeps_self() - sleeps0))
            reactor.stop()

    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as our links do
    factory = TLSMemoryBIOFactory(_twisted_tls(home, True), False, Factory.forProtocol(Sink))
    reactor.adoptStreamConnection(raw.fileno(), socket.AF_INET, factory)  # type: ignore[attr-defined]
    raw.close()  # the reactor holds its own duplicate
    reactor.run()


def twisted_source(home: Path, port: int, size: int, result: Any) -> None:
    """`source` as our stack does it: Twisted TLS, written as a pull producer after the
    handshake. Sends (seconds, CPU seconds)."""
    from twisted.internet import reactor
    from twisted.internet.interfaces import IHandshakeListener
    from twisted.internet.protocol import ClientFactory, Protocol
    from twisted.protocols.tls import TLSMemoryBIOFactory
    from zope.interface import implementer

    data = os.urandom(CHUNK)
    t0, cpu0, sleeps0 = time.perf_counter(), cpu_self(), sleeps_self()

    @implementer(IHandshakeListener)
    class Source(Protocol):
        sent = 0
        got = b""

        def handshakeCompleted(self) -> None:
            self.transport.transport.setTcpNoDelay(True)  # type: ignore[union-attr]  # as our links
            self.transport.registerProducer(self, False)  # type: ignore[union-attr]

        def resumeProducing(self) -> None:
            self.transport.write(data)  # type: ignore[union-attr]
            self.sent += len(data)
            if self.sent >= size:
                self.transport.unregisterProducer()  # type: ignore[union-attr]

        def stopProducing(self) -> None:
            pass

        def dataReceived(self, data: bytes) -> None:
            self.got += data
            if self.got == b"ok":
                result.send((time.perf_counter() - t0, cpu_self() - cpu0,
                             sleeps_self() - sleeps0))  # fmt: skip
                self.transport.loseConnection()  # type: ignore[union-attr]

        def connectionLost(self, reason: Any = None) -> None:
            reactor.stop()

    factory = TLSMemoryBIOFactory(
        _twisted_tls(home, False), True, ClientFactory.forProtocol(Source)
    )
    reactor.connectTCP("127.0.0.1", port, factory)
    reactor.run()


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
             variant: str = "tls") -> tuple[float, float, float, int, int]:  # fmt: skip
    """MB/s of one transfer, the CPU seconds its source and its sink (its own process)
    spent on it, and how often each of them blocked. `variant`: tls (blocking sockets
    with Python's ssl: the least CPU per byte), twisted (our stack's TLS: Twisted +
    pyOpenSSL), plain (no TLS)."""
    ctx = mp.get_context("fork")
    ready_r, ready_w = ctx.Pipe(False)
    done_r, done_w = ctx.Pipe(False)
    if variant == "twisted":
        p = ctx.Process(target=twisted_sink, args=(home, mode, proxy[0], size, ready_w, done_w))
    else:
        p = ctx.Process(target=sink, args=(home, mode, proxy[0], size, variant == "tls",
                                           ready_w, done_w))  # fmt: skip
    p.start()
    port = ready_r.recv()
    port = port if mode == "direct" else proxy[1]
    if variant == "twisted":
        res_r, res_w = ctx.Pipe(False)
        q = ctx.Process(target=twisted_source, args=(home, port, size, res_w))
        q.start()
        seconds, cpu, src_sleeps = res_r.recv()
        q.join(10)
    else:
        cpu0, sleeps0 = cpu_self(), sleeps_self()
        seconds = source(port, size, variant == "tls")
        cpu, src_sleeps = cpu_self() - cpu0, sleeps_self() - sleeps0
    got, sink_cpu, sink_sleeps = done_r.recv()
    p.join(10)
    if got != size + (len(_client_hello()) if variant == "plain" else 0):
        raise SystemExit(f"{mode}: the sink got {got} of {size} bytes")
    return size / seconds / 1e6, cpu, sink_cpu, src_sleeps, sink_sleeps


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
    err = tmp / "pktproxy.stderr"  # a file, not a pipe: nothing to drain during the run
    with err.open("wb") as err_file:
        proc = subprocess.Popen(argv, cwd=tmp, env=env, stderr=err_file)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:  # refused (e.g. a --relay mode it does not offer): say why now
            why = err.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            raise SystemExit(f"pktproxy --relay {mode} exited at start: {why[0]}")
        text = log.read_text() if log.exists() else ""
        s = re.search(r"setup port listening on 127\.0\.0\.1:(\d+)", text)
        e = re.search(r"endpoints port listening on 127\.0\.0\.1:(\d+)", text)
        if s and e:
            return proc, int(s.group(1)), int(e.group(1))
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"pktproxy did not start:\n{log.read_text() if log.exists() else ''}")


def sleeps(pid: int) -> int:
    """Voluntary context switches of a process's main thread (the reactor's)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^voluntary_ctxt_switches:\s*(\d+)", text, re.M).group(1))  # type: ignore[union-attr]


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
    ap.add_argument("--variants", default="tls",
                    help="comma list of what source and sink run, each timed direct and "
                         "through every relay: tls (Python's ssl on blocking sockets: the "
                         "least CPU per byte, the headline), twisted (our endpoint's and "
                         "controller's TLS stack: Twisted + pyOpenSSL), plain (no TLS, "
                         "context only); default tls")  # fmt: skip
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
    if len(set(relays)) != len(relays):
        ap.error(f"--relay: a mode given twice ({args.relay})")
    variants = args.variants.split(",")
    if not set(variants) <= {"tls", "twisted", "plain"}:
        ap.error(f"--variants: {args.variants!r} (tls, twisted, plain)")
    size = args.size << 20
    gib = size / 2**30
    keys = ("direct", "proxy", "ratio", "proxy_cpu", "cpu_ratio", "src_cpu_direct",
            "sink_cpu_direct", "src_cpu", "sink_cpu", "src_sleeps_direct", "sink_sleeps_direct",
            "src_sleeps", "sink_sleeps", "proxy_sleeps")  # fmt: skip
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
                    a, a_src, a_sink, *a_sleeps = transfer(home, "direct", size, (0, 0), v)
                    line = [f"run {i + 1} {v}: direct {a:.0f} MB/s"]
                    for r, (proc, setup, endpoints) in proxies.items():
                        cpu0, sleeps0 = cpu_seconds(proc.pid), sleeps(proc.pid)
                        b, b_src, b_sink, *b_sleeps = transfer(home, "proxy", size,
                                                               (setup, endpoints), v)  # fmt: skip
                        pcpu = cpu_seconds(proc.pid) - cpu0
                        # blocked-and-woken per GiB: source, sink (direct, proxied), proxy
                        wakes = (*a_sleeps, *b_sleeps, sleeps(proc.pid) - sleeps0)
                        w = {k: n / gib for k, n in zip(("src_sleeps_direct",
                             "sink_sleeps_direct", "src_sleeps", "sink_sleeps", "proxy_sleeps"),
                             wakes, strict=True)}  # fmt: skip
                        cpu = {"src_cpu_direct": a_src, "sink_cpu_direct": a_sink,
                               "src_cpu": b_src, "sink_cpu": b_sink, "proxy_cpu": pcpu}  # fmt: skip
                        g = {k: c / gib for k, c in cpu.items()}
                        # CPU of the whole transfer, direct / through the proxy: the rate
                        # the proxy leaves when the CPUs are the limit (load disturbs it
                        # far less)
                        cpu_ratio = (a_src + a_sink) / (b_src + b_sink + pcpu)
                        sample = {"direct": a, "proxy": b, "ratio": b / a, **g, **w,
                                  "cpu_ratio": cpu_ratio}  # fmt: skip
                        for k, val in sample.items():
                            res[v][r][k].append(val)
                        line.append(
                            f"{r} {b:.0f} MB/s (x{b / a:.2f}, CPU x{sample['cpu_ratio']:.2f}; "
                            f"s/GiB source {g['src_cpu_direct']:.2f}->{g['src_cpu']:.2f}, sink "
                            f"{g['sink_cpu_direct']:.2f}->{g['sink_cpu']:.2f}, proxy "
                            f"{g['proxy_cpu']:.2f}; wake-ups/GiB source "
                            f"{w['src_sleeps_direct']:.0f}->{w['src_sleeps']:.0f}, sink "
                            f"{w['sink_sleeps_direct']:.0f}->{w['sink_sleeps']:.0f}, proxy "
                            f"{w['proxy_sleeps']:.0f})"
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
             fmt(median(x["proxy_cpu"])), fmt(median(x["cpu_ratio"])),
             f"{median(x['src_sleeps_direct']):.0f} / {median(x['src_sleeps']):.0f}",
             f"{median(x['sink_sleeps_direct']):.0f} / {median(x['sink_sleeps']):.0f}",
             f"{median(x['proxy_sleeps']):.0f}")
            for r, x in res[v].items()
        ]  # fmt: skip
        print(f"\n{v}:")
        print(markdown_table(["relay", "direct MB/s", "through pktproxy MB/s", "ratio (min-max)",
                              "source CPU s/GiB direct / proxied",
                              "sink CPU s/GiB direct / proxied", "proxy CPU s/GiB",
                              "CPU ratio", "source wake-ups/GiB direct / proxied",
                              "sink wake-ups/GiB direct / proxied", "proxy wake-ups/GiB"],
                             rows))  # fmt: skip
    if args.rtt:
        print(f"\nround trip of {MSG} bytes over TLS, microseconds ({args.rtt} x {args.runs}):")
        print(markdown_table(["path", "p10", "median", "p90", "p99"],
                             [(r, *(fmt(summarize(v)[f"p{q}"], 1, 0) for q in (10, 50, 90, 99)))
                              for r, v in rtt.items()]))  # fmt: skip
    for v in (v for v in variants if v != "plain"):  # the goal is over TLS
        for r, x in res[v].items():
            ratio = median(x["ratio"])
            ok &= ratio >= 0.8
            verdict = "met" if ratio >= 0.8 else "MISSED"
            print(f"{v} {r}: ratio median {ratio:.2f} (goal >= 0.80: {verdict}), "
                  f"CPU ratio {median(x['cpu_ratio']):.2f}")  # fmt: skip
    if args.json:
        write_json(args.json, {"environment": environment(), "size_mib": args.size,
                               "variants": res, "rtt_us": rtt})  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
