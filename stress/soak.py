#!/usr/bin/env python3
"""Soak a real ``twistd pktendpoint`` with a mixed workload and watch what it holds.

One controller session after another (the endpoint reconnects 0.05 s after each), each a
mix of memory reads and writes, a UDP exchange with an echo server, a TCP exchange with an
echo server, raw ICMP echoes with a capture (when run as root), a send queued for the far
future, and one of four endings (end, EOF, yield, a malformed frame). Every `--interval`
seconds the endpoint's RSS, open descriptors and CPU use are written to a CSV; at the end
a PNG plot and the RSS slope after warm-up (least squares, MB/hour) are written.

As root the whole run happens in a fresh network namespace (``unshare --net``), so the raw
capture on ``lo`` sees our packets only and nothing leaves the namespace.

    .venv/bin/python stress/soak.py --duration 3600 --out soak-out

See docs/reliability.md for the last results.
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# tests/integration first: its conftest (EndpointProcess, RawController) is the one meant,
# not tests/conftest.py (which shadowed it once that file existed: an ImportError at start)
sys.path[:0] = [str(REPO), str(REPO / "tests" / "integration"), str(REPO / "tests")]

import conftest  # noqa: E402
from _soak_parts import EchoTcp, TcpEcho, append_row, slope_per_hour, udp_echo  # noqa: E402
from conftest import EndpointProcess, RawController  # noqa: E402
from procstat import Sample, sample  # noqa: E402

from packetlab import wire  # noqa: E402
from packetlab.wire import vmem  # noqa: E402

FAR = (1 << 64) - 1
LO = b"\x7f\x00\x00\x01"
ANY = bytes(4)
_NETNS_ENV = "PKTLAB_SOAK_IN_NETNS"


def config(raw: bool) -> str:
    return (
        "BufMax 8388608\n"
        f"TransprotoSup {'tcp,udp,raw' if raw else 'tcp,udp'}\n"
        "VMemLocalAddrStrIPv4 127.0.0.1/8\n"
        "HostID pktendpoint-soak\n"
        "NoSubMode 1\n"
    )


# ---------------------------------------------------------------------- echo servers


# ------------------------------------------------------------------------- workload


@dataclass
class Counters:
    sessions: int = 0
    requests: int = 0
    udp_datagrams: int = 0
    tcp_bytes: int = 0
    raw_packets: int = 0
    captured: int = 0
    preemptions: int = 0
    errors: list[str] = field(default_factory=list)


def _drain_ndata(c: RawController, sktid: int, want: int, timeout: float) -> int:
    """Payload bytes of ndata on `sktid` until `want` bytes came or `timeout` passed."""
    got = 0
    deadline = time.monotonic() + timeout
    while got < want and (left := deadline - time.monotonic()) > 0:
        try:
            m = c.notification(wire.Ndata, lambda n: n.sktid == sktid, timeout=left)
        except TimeoutError:
            break
        got += len(m.data)
    return got


def one_session(
    c: RawController,
    n: int,
    udp_port: int,
    tcp_port: int,
    raw: bool,
    k: Counters,
    endings: tuple[int, ...] = (0, 1, 2, 3),
) -> None:
    c.start()
    k.requests += 1
    for region in (vmem.HOSTID, vmem.IP4NO, vmem.BUFMAX, vmem.BUFUSED, vmem.TIME):
        c.mread(region.addr, region.size)
    k.requests += 5
    c.mwrite(vmem.skt_addr(1, vmem.SKT_NOTIFMASK), b"\x00\x00")  # nothing held back
    k.requests += 1

    # UDP: 50 datagrams to the echo server, their echoes back as ndata.
    c.ok(wire.Nopen(sktid=1, family=4, proto=17, rbufsz=1 << 20, laddr=LO, lport=0))
    payload = (n.to_bytes(4, "big") * 128)[:512]
    for i in range(50):
        c.ok(
            wire.Nsend(
                sktid=1,
                family=4,
                proto=17,
                time=0,
                tag=i + 1,
                data=payload,
                raddr=LO,
                rport=udp_port,
            )
        )
    k.requests += 51
    k.udp_datagrams += _drain_ndata(c, 1, 50 * len(payload), 5.0) // len(payload)

    # TCP: 256 KiB through the echo server.
    c.ok(
        wire.Nopen(
            sktid=2, family=4, proto=6, rbufsz=1 << 20, laddr=ANY, lport=0, raddr=LO, rport=tcp_port
        )
    )
    c.notification(wire.Nstat, lambda m: m.sktid == 2)
    chunk = bytes(range(256)) * 256
    for _ in range(4):
        c.ok(wire.Nsend(sktid=2, family=4, proto=6, time=0, tag=0, data=chunk))
    k.requests += 5
    k.tcp_bytes += _drain_ndata(c, 2, 4 * len(chunk), 10.0)

    # Raw: ICMP echoes to ourselves, captured on lo (request and reply).
    if raw:
        from packetlab.controller.filters import tcpdump_filter
        from packetlab.measure.probes import echo_probe

        ident = n & 0xFFFF
        c.ok(wire.Nopen(sktid=3, family=4, proto=0, rbufsz=1 << 20, laddr=LO))
        prog = tcpdump_filter(f"icmp and icmp[4:2] == {ident}")
        c.ok(wire.Ncap(sktid=3, family=4, proto=0, endtime=FAR, filter=prog))
        for seq in range(10):
            probe = echo_probe("127.0.0.1", "127.0.0.1", ident=ident, seq=seq)
            c.ok(wire.Nsend(sktid=3, family=4, proto=0, time=0, tag=0, data=probe.packet))
        k.requests += 12
        k.raw_packets += 10
        got = 0
        deadline = time.monotonic() + 3.0
        while got < 20 and (left := deadline - time.monotonic()) > 0:
            try:
                c.notification(wire.Ndata, lambda m: m.sktid == 3, timeout=left)
            except TimeoutError:
                break
            got += 1
        k.captured += got

    # A send that never comes due, and a closed socket with one queued (defects 1, 2).
    c.ok(
        wire.Nsend(
            sktid=1, family=4, proto=17, time=FAR, tag=99, data=payload, raddr=LO, rport=udp_port
        )
    )
    c.ok(wire.Nclose(sktid=2))
    k.requests += 2

    ending = endings[n % len(endings)]
    if ending == 0:  # end is ECTLNOTSUP (§1.2): the EOF below ends the session
        c.send(wire.End())
        r = c.response()
        if r != wire.Result(wire.Status.ECTLNOTSUP):
            k.errors.append(f"session {n}: end answered {r!r}")
    elif ending == 1:
        c.ok(wire.Yield(rhint=0))
        c.closed_by_peer()
    elif ending == 2:
        c.send(b"\x28\x00\x00\x06" + bytes(6))  # mread of length 0: malformed
        r = c.response()
        if r != wire.Result(wire.Status.ECTLBADMSG):
            k.errors.append(f"session {n}: malformed frame answered {r!r}")
        c.closed_by_peer()
    k.requests += 1
    c.close()  # ending 3: EOF from the controller with everything still open
    k.sessions += 1


# ----------------------------------------------------------------------- pre-emption


class BrokerWorld:
    """`pktlab init` home, a real `twistd pktbroker`, a TLS controller and a `twistd
    pktendpoint --broker` subscribed to it: experiments arrive as publications."""

    def __init__(self, workdir: Path, broker_probe: Path | None = None) -> None:
        import broker_world
        import tls_world
        from broker_world import BrokerProcess, RawClient
        from tls_world import TLSController, TLSEndpoint, controller_chain, pktlab_init

        self.RawClient = RawClient
        self.home = pktlab_init(workdir / "home")
        if broker_probe is None:
            self.broker = BrokerProcess(self.home, workdir)
        else:  # probed too, without tracemalloc (it would slow the broker's start-up)
            traced = os.environ.pop("PKTLAB_TRACEMALLOC", None)
            broker_world.twistd = lambda: mallinfo_twistd(broker_probe)
            try:
                self.broker = BrokerProcess(self.home, workdir)
            finally:
                broker_world.twistd = conftest.twistd
                if traced is not None:
                    os.environ["PKTLAB_TRACEMALLOC"] = traced
        tls_world.twistd = conftest.twistd
        chain = controller_chain(self.home, workdir / "chain")
        self.ctl = TLSController(chain, self.home.key_path("k_xc"), workdir)
        try:
            self.ep = TLSEndpoint(self.home, f"--broker=127.0.0.1:{self.broker.sub_port}", workdir)
            self.ep.wait_log("Broker subscription finished", timeout=30)
        except BaseException:  # leave no daemon behind
            if hasattr(self, "ep"):
                self.ep.stop()
            self.ctl.close()
            self.broker.stop()
            raise
        self.proc = self.ep.proc
        self.pid = self.proc.pid
        assert self.broker.proc is not None
        self.broker_pid = self.broker.proc.pid

    def publish(self, sni: str, priority: int) -> Any:
        """pktxpmgr's publication: xcerts leaf first, then xpub, in lockstep."""
        from packetlab.ppks import key_id, raw_public_key

        home = self.home
        p = self.RawClient(
            self.broker.pub_port, home.cert_path("agent_xc_xc"), home.key_path("k_xc")
        )
        for name in ("pubcmd_exper_xc", "exppriv_eop_exper"):
            p.send(wire.Xcert(home.certificate(name).der))
            assert p.recv() == wire.Result(0)
        eop = home.public_key("k_eop")
        xd = f"exp_priority={priority};controller_addr={self.ctl.address};sni_key={sni};"
        p.send(wire.Xpub([key_id(eop)], raw_public_key(eop), xd.encode()))
        assert p.recv() == wire.Result(0)
        return p

    def stop(self) -> None:
        self.ep.stop()
        self.ctl.close()
        self.broker.stop()


def preempt_round(
    w: BrokerWorld, n: int, udp_port: int, tcp_port: int, raw: bool, k: Counters
) -> None:
    """A priority-1 experiment runs (a socket open, a far-future send queued); a
    priority-5 one pre-empts it (suspd), runs the mixed session and ends; the first is
    resumed (resumd) and answers what it was sent while suspended."""
    pa = w.publish(f"low{n}", 1)
    a = w.ctl.accept()
    try:
        a.start()
        a.mread(vmem.HOSTID.addr, vmem.HOSTID.size)
        a.ok(wire.Nopen(sktid=1, family=4, proto=17, rbufsz=1 << 16, laddr=LO, lport=0))
        far = wire.Nsend(
            sktid=1, family=4, proto=17, time=FAR, tag=7, data=bytes(512), raddr=LO, rport=9
        )
        a.ok(far)
        k.requests += 4
        pb = w.publish(f"high{n}", 5)
        try:
            got = a.recv()
            assert got == wire.Suspd(), f"expected suspd, got {got!r}"
            a.send(wire.Mread(addr=vmem.HOSTID.addr, len=vmem.HOSTID.size))  # held
            b = w.ctl.accept()
            one_session(b, n, udp_port, tcp_port, raw, k, endings=(0, 2, 3))
        finally:
            pb.close()
        got = a.recv(timeout=10)
        assert got == wire.Resumd(), f"expected resumd, got {got!r}"
        assert isinstance(a.response(), wire.Mdata)
        k.requests += 1
        k.preemptions += 1
    finally:
        a.close()
        pa.close()
        w.ctl.controllers.clear()


# -------------------------------------------------------------------------- output


def mallinfo_twistd(probe: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).with_name("twistd_mallinfo.py")), str(probe)]


def probe_endpoint(pid: int, probe: Path, timeout: float = 300) -> None:
    """Between sessions: ask the endpoint (or the broker) (SIGUSR1) for its allocator
    figures and wait for them (with tracemalloc a dump takes seconds; a session
    meanwhile would time out)."""
    lines = probe.read_text().count("\n")
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while probe.read_text().count("\n") == lines and time.monotonic() < deadline:
        time.sleep(0.1)


def probe_summary(probe: Path, warmup_s: float) -> str:
    """The allocator's view after warm-up: a leak grows "in use" and the object count."""
    rows = [json.loads(line) for line in probe.read_text().splitlines() if line]
    rows = [r for r in rows if r["t_s"] >= warmup_s] or rows
    if not rows:
        return "probe: no readings"

    def span(key: str, scale: float = 1.0, fmt: str = ".1f") -> str:
        v = [r[key] / scale for r in rows if key in r]
        if not v:
            return "n/a"
        return f"{v[0]:{fmt}} -> {v[-1]:{fmt}} (min {min(v):{fmt}}, max {max(v):{fmt}})"

    return (
        f"probe after warm-up ({len(rows)} readings): heap in use {span('in_use_kib', 1024)} "
        f"MiB, free in heap {span('free_kib', 1024)} MiB, "
        f"Python objects {span('py_objects', fmt=',.0f')}"
    )


def slope_mb_per_hour(
    rows: list[dict[str, float]], warmup_s: float, key: str = "rss_kib"
) -> float | None:

    per_hour = slope_per_hour(rows, key, warmup_s)
    return None if per_hour is None else per_hour / 1024


def plot(rows: list[dict[str, float]], warmup_s: float, slope: float | None, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] / 60 for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].plot(t, [r["rss_kib"] / 1024 for r in rows], color="tab:blue", label="endpoint")
    if "broker_rss_kib" in rows[0]:
        b = slope_mb_per_hour(rows, warmup_s, "broker_rss_kib")
        label = "broker" + ("" if b is None else f" ({b:+.2f} MB/hour)")
        axes[0].plot(t, [r["broker_rss_kib"] / 1024 for r in rows], color="tab:purple", label=label)
    axes[0].set_ylabel("RSS (MiB)")
    axes[0].axvline(warmup_s / 60, color="grey", linestyle=":", label="end of warm-up")
    title = "pktendpoint soak"
    if slope is not None:
        title += f": RSS slope after warm-up {slope:+.2f} MB/hour"
    axes[0].set_title(title)
    axes[0].legend(loc="lower right")
    axes[1].plot(t, [r["fds"] for r in rows], color="tab:green", label="endpoint")
    if "broker_fds" in rows[0]:
        axes[1].plot(t, [r["broker_fds"] for r in rows], color="tab:purple", label="broker")
        axes[1].legend(loc="lower right")
    axes[1].set_ylabel("open fds")
    axes[2].plot(t, [r["cpu_pct"] for r in rows], color="tab:red")
    axes[2].set_ylabel("CPU (% of a core)")
    axes[2].set_xlabel("minutes")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=90)


# ---------------------------------------------------------------------------- main


def _reexec_in_netns(argv: list[str]) -> int:
    unshare = shutil.which("unshare")
    ip = shutil.which("ip")
    if unshare is None or ip is None:
        print("soak: unshare/ip not found: running in the current namespace", file=sys.stderr)
        return -1
    env = dict(os.environ, **{_NETNS_ENV: "1"})
    script = f'{ip} link set lo up && exec "$@"'
    cmd = [unshare, "--net", "--", "sh", "-c", script, "soak", sys.executable, *argv]
    return subprocess.call(cmd, env=env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=3600, help="seconds to run [3600]")
    ap.add_argument("--interval", type=float, default=10, help="seconds between samples [10]")
    ap.add_argument(
        "--warmup", type=float, default=600, help="seconds excluded from the slope [600]"
    )
    ap.add_argument("--pause", type=float, default=0.1, help="seconds between sessions [0.1]")
    ap.add_argument("--out", type=Path, default=Path("soak-out"), help="output directory")
    ap.add_argument("--no-raw", action="store_true", help="no raw sockets and captures")
    ap.add_argument("--no-netns", action="store_true", help="stay in the current namespace")
    ap.add_argument(
        "--preempt",
        action="store_true",
        help="broker mode: every session is a priority-5 experiment pre-empting a running "
        "priority-1 one (real pktbroker, endpoint over TLS; raw off)",
    )
    ap.add_argument(
        "--probe",
        type=float,
        default=0,
        metavar="SECONDS",
        help="run the endpoint under stress/twistd_mallinfo.py and write its allocator "
        "figures to OUT/probe.jsonl every SECONDS [0: off]",
    )
    ap.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="with --probe: trace allocations (FRAMES deep); each probe names what grew "
        "since the end of warm-up [0: off]",
    )
    ap.add_argument(
        "--system",
        action="store_true",
        help="the whole system: broker, proxy, two broker-mode endpoints with accounting "
        "and pktlab xpmgr running a Python mlet, on loopback (stress/soak_system.py); "
        "--probe and --tracemalloc then probe the manager",
    )
    ap.add_argument(
        "--round",
        type=float,
        default=3.0,
        help="with --system: seconds between the driver's publications, each run by both "
        "endpoints through the proxy and the manager's mlet; sets the pace [3]",
    )
    args = ap.parse_args()
    # SIGTERM (kill, timeout) must still stop the endpoint and write the plot.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.system:
        import soak_system

        return soak_system.run(args)

    root = os.geteuid() == 0
    if root and not args.no_netns and not os.environ.get(_NETNS_ENV):
        rc = _reexec_in_netns([str(Path(__file__).resolve()), *sys.argv[1:]])
        if rc >= 0:
            return rc
    raw = root and not args.no_raw
    args.out = args.out.resolve()  # the daemons run in their own directory
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = args.out / "soak.csv", args.out / "soak.png"

    stop = threading.Event()
    udp_sock, _ = udp_echo(stop)
    tcp = EchoTcp(("127.0.0.1", 0), TcpEcho)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    udp_port, tcp_port = udp_sock.getsockname()[1], tcp.server_address[1]

    workdir = Path(tempfile.mkdtemp(prefix="pktlab-soak-"))
    probe = args.out / "probe.jsonl"
    broker_probe = args.out / "broker-probe.jsonl"
    if args.probe:
        probe.write_text("")
        broker_probe.write_text("")
        conftest.twistd = lambda: mallinfo_twistd(probe)
        if args.tracemalloc:
            os.environ["PKTLAB_TRACEMALLOC"] = str(args.tracemalloc)
            os.environ["PKTLAB_TRACEMALLOC_BASE_S"] = str(args.warmup)
    if args.preempt:
        raw = False
        world = BrokerWorld(workdir, broker_probe if args.probe else None)
        ep: Any = world
    else:
        ep = EndpointProcess(workdir, config(raw), args=["--reconnect-delay", "0.05"])
    k = Counters()
    rows: list[dict[str, float]] = []
    t0 = time.monotonic()
    last: Sample | None = None

    def take() -> None:
        nonlocal last
        s = sample(ep.pid)
        cpu = 0.0 if last is None else 100 * (s.cpu_s - last.cpu_s) / (s.at - last.at)
        last = s
        row = {
            "t_s": round(s.at - t0, 1),
            "rss_kib": s.rss_kib,
            "fds": s.fds,
            "cpu_pct": round(cpu, 1),
            "sessions": k.sessions,
            "requests": k.requests,
            "preemptions": k.preemptions,
        }
        if args.preempt:  # the broker too: it sees every publication and subscription
            b = sample(world.broker_pid)
            row |= {"broker_rss_kib": b.rss_kib, "broker_fds": b.fds}

        append_row(csv_path, rows, row)
        print(
            f"[{row['t_s']:7.0f} s] rss {s.rss_kib / 1024:6.1f} MiB  fds {s.fds:3d}  "
            f"cpu {cpu:5.1f} %  sessions {k.sessions}  pre-emptions {k.preemptions}  "
            f"errors {len(k.errors)}"
            + (
                f"  broker rss {row['broker_rss_kib'] / 1024:6.1f} MiB fds {row['broker_fds']}"
                if args.preempt
                else ""
            ),
            flush=True,
        )

    try:
        n = 0
        next_sample = next_probe = time.monotonic()
        while time.monotonic() - t0 < args.duration:
            if n and time.monotonic() >= next_sample:  # from the first session's end on
                take()
                next_sample += args.interval
            if args.probe and n and time.monotonic() >= next_probe:
                probe_endpoint(ep.pid, probe)
                if args.preempt:
                    probe_endpoint(world.broker_pid, broker_probe)
                next_probe += args.probe
            if ep.proc.poll() is not None:
                k.errors.append(f"endpoint exited with {ep.proc.returncode}")
                break
            if args.preempt:
                try:
                    preempt_round(world, n, udp_port, tcp_port, raw, k)
                except (AssertionError, TimeoutError, EOFError, OSError) as e:
                    k.errors.append(f"round {n}: {type(e).__name__}: {e}")
            else:
                c = ep.accept()
                try:
                    one_session(c, n, udp_port, tcp_port, raw, k)
                except (AssertionError, TimeoutError, EOFError, OSError) as e:
                    k.errors.append(f"session {n}: {type(e).__name__}: {e}")
                    c.close()
                ep.controllers.clear()
            n += 1
            time.sleep(args.pause)
        take()
    except KeyboardInterrupt:
        print("interrupted: stopping and writing what was sampled", flush=True)
    finally:
        stop.set()
        ep.stop()
        tcp.shutdown()
        udp_sock.close()

    slope = slope_mb_per_hour(rows, args.warmup)
    plot(rows, args.warmup, slope, png_path)
    first, final = rows[0], rows[-1]
    after = [r for r in rows if r["t_s"] >= args.warmup] or rows
    print(
        f"\n{k.sessions} sessions, {k.requests} requests, {k.udp_datagrams} UDP datagrams "
        f"echoed, {k.tcp_bytes / 2**20:.0f} MiB TCP echoed, {k.raw_packets} raw sends, "
        f"{k.captured} packets captured, {k.preemptions} pre-emptions, "
        f"{len(k.errors)} errors\n"
        f"RSS {first['rss_kib'] / 1024:.1f} MiB at start, {after[0]['rss_kib'] / 1024:.1f} MiB "
        f"after warm-up, {final['rss_kib'] / 1024:.1f} MiB at the end "
        f"(max {max(r['rss_kib'] for r in rows) / 1024:.1f}); fds {first['fds']} -> "
        f"{final['fds']} (max {max(r['fds'] for r in rows)}); slope after "
        f"{args.warmup:.0f} s: {'n/a' if slope is None else f'{slope:+.2f} MB/hour'}\n"
        f"wrote {csv_path} and {png_path}"
    )
    if args.preempt:
        b = slope_mb_per_hour(rows, args.warmup, "broker_rss_kib")
        kib = [r["broker_rss_kib"] for r in rows]
        print(
            f"broker RSS {kib[0] / 1024:.1f} MiB at start, {after[0]['broker_rss_kib'] / 1024:.1f} "
            f"MiB after warm-up, {kib[-1] / 1024:.1f} MiB at the end (max {max(kib) / 1024:.1f}); "
            f"fds {first['broker_fds']} -> {final['broker_fds']}; slope after "
            f"{args.warmup:.0f} s: {'n/a' if b is None else f'{b:+.2f} MB/hour'}"
        )
    if args.probe:
        print(probe_summary(probe, args.warmup))
        if args.preempt:
            print("broker", probe_summary(broker_probe, args.warmup))
    for err in k.errors[:20]:
        print("  error:", err)
    return 1 if k.errors else 0


if __name__ == "__main__":
    sys.exit(main())
