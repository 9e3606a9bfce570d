"""`stress/soak.py --system`: the whole system at once, not one endpoint.

A real `twistd pktbroker`, `twistd pktproxy`, two `twistd pktendpoint` in broker mode
(each its own accounting database; the experiment's exppriv certificate carries limits,
so every session is admitted, charged and recorded) and `pktlab xpmgr` in proxy mode
with publication and `-n` large, running a Python mlet that does a little of everything:
UDP sends echoed back, mreads, a TCP exchange, a cancelled mread, a far-future send closed
with `nclose`. Every `--interval` seconds each daemon's and the manager's RSS, open
descriptors, threads and CPU, the accounting databases' and logs' sizes go to a CSV; at
the end the slopes over the second half of the run (MiB/h, fds/h, threads/h, KiB/h).

An endpoint runs each publication once, and the broker gives one endpoint the same
xdescr bytes only once an hour (its delivery record). So besides the manager's own
publication, which stays open, the driver publishes the manager's xdescr anew every
`--round` seconds (its pub_end an hour ahead: new bytes each time) with the same
credentials and closes the previous one, and both endpoints run it again.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

MLET = '''\
"""soak32's mlet: UDP echoes, mreads, a TCP exchange, a cancelled call, an nclose."""
import sys
from packetlab.controller import tcp_exchange
from packetlab.wire import Ndata

FAR = (1 << 64) - 1

async def mlet(session, args):
    udp_port, tcp_port = int(args[0]), int(args[1])
    sock = await session.nopen_udp(1)
    for i in range(20):
        await session.nsend(1, b"%04d" % i * 64, to=("127.0.0.1", udp_port))
    got = 0
    while got < 20:
        note = await sock.get(timeout=3.0)
        if note is None:
            break
        if isinstance(note, Ndata):
            got += 1
    for _ in range(5):
        await session.mread(0, 8)
    slow = session.mread(0, 8)  # cancelled: its answer is dropped when it comes
    slow.cancel()
    slow.addErrback(lambda f: None)
    ex = await tcp_exchange(session, "127.0.0.1", tcp_port, b"y" * 32768, limit=32768)
    await session.nsend(1, b"never", time=FAR, to=("127.0.0.1", udp_port))
    await session.nclose(1)  # with the far-future send still queued
    print(f"udp {got}/20 tcp {len(ex.data)}")
    if got < 20 or len(ex.data) != 32768:
        sys.exit(1)
'''

# What is sampled, per process: (csv column suffix, reader).
_KEYS = ("rss_kib", "fds", "threads", "cpu_s")


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "Threads:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


def take(pid: int) -> dict[str, float]:
    from procstat import cpu_seconds, open_fds

    st = _status(pid)
    return {
        "rss_kib": st["VmRSS"],
        "fds": open_fds(pid),
        "threads": st["Threads"],
        "cpu_s": cpu_seconds(pid),
    }


def _size(*paths: Path) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())


def _probed_xpmgr(workdir: Path, probe: Path, trace: int, after: float, make: Any) -> Any:
    """`make()` an XpmgrProc whose `python -m packetlab` is run by twistd_mallinfo.py."""
    import sys
    import types

    import pxworld

    launcher = workdir / "xpmgr-probed"
    wrapper = Path(__file__).with_name("twistd_mallinfo.py")
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{wrapper}" "{probe}" "$@"\n')
    launcher.chmod(0o755)
    env = dict(pxworld.ENV)
    real_sys = pxworld.sys
    pxworld.sys = types.SimpleNamespace(executable=str(launcher))  # type: ignore[assignment]
    if trace:
        pxworld.ENV |= {"PKTLAB_TRACEMALLOC": str(trace), "PKTLAB_TRACEMALLOC_BASE_S": str(after)}
    try:
        return make()
    finally:
        pxworld.sys = real_sys
        pxworld.ENV.clear()
        pxworld.ENV.update(env)


def probe_once(pid: int, probe: Path, timeout: float = 120) -> None:
    """SIGUSR1, then wait (bounded) for the row it appends."""
    import signal

    lines = probe.read_text().count("\n") if probe.exists() else 0
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe.exists() and probe.read_text().count("\n") > lines:
            return
        time.sleep(0.1)


class SystemWorld:
    """Broker, proxy, two broker-mode endpoints with accounting, xpmgr publishing."""

    def __init__(
        self, workdir: Path, udp_port: int, tcp_port: int, probe: Path | None = None,
        trace: int = 0, trace_after: float = 0,
    ) -> None:  # fmt: skip
        from broker_world import BrokerProcess, Identity
        from pxworld import EndpointProc, ProxyProc, XpmgrProc
        from tls_world import controller_chain, pktlab_init

        from packetlab.ppks import CertLimits
        from packetlab.ppks.cert import load_certificates

        self.workdir = workdir
        self.home = home = pktlab_init(workdir / "home")
        self.publications: list[Any] = []
        self.procs: list[Any] = []
        try:
            self.broker = BrokerProcess(home, workdir)
            self.procs.append(self.broker)
            # counters every 10 s, not the tests' 0.2 s (15 MB/h of log lines)
            self.proxy = ProxyProc(workdir, home.root, "--stats-interval", "10")
            self.procs.append(self.proxy)
            # limits on the exppriv certificate: admission charges and records each session
            limits = CertLimits(max_send_byte=1 << 50, max_send_pkt=1 << 40, max_recv_byte=1 << 50)
            chain = controller_chain(home, workdir / "chain", limits=limits)
            self.chain = [c.der for p in chain for c in load_certificates(p.read_bytes())]
            text = (home.root / "xpmgr.conf").read_text()
            text = text.replace(str(home.cert_path("exppriv_eop_exper")), str(chain[1]))
            assert str(chain[1]) in text, "xpmgr.conf names no exppriv_eop_exper"
            text = text.replace("EnableExpPublication 0", "").replace(
                "ExpExec 1::", "ExpExec 1:soak:"
            )
            conf = workdir / "xpmgr.conf"
            conf.write_text(
                text
                + "EnableExpPublication 1\nEnableProxyMode 1\n"
                + f"BrokerAddr 127.0.0.1:{self.broker.pub_port}\n"
                + f"PubAgentCertPath {home.cert_path('agent_xc_xc')}\n"
                + "PubPeriod 86400000000000\n"  # the manager stops when its publication ends
            )
            mlet = workdir / "soakmlet.py"
            mlet.write_text(MLET)
            argv = ([str(mlet), str(udp_port), str(tcp_port)], "-n", "1000000",
                    "-p", f"127.0.0.1:{self.proxy.endpoints}")  # fmt: skip
            addr = f"127.0.0.1:{self.proxy.setup}"
            if probe is None:
                self.xpmgr = XpmgrProc(workdir, conf, argv[0], *argv[1:], addr=addr)
            else:  # under stress/twistd_mallinfo.py: SIGUSR1 appends its figures to `probe`
                self.xpmgr = _probed_xpmgr(workdir, probe, trace, trace_after,
                                           lambda: XpmgrProc(workdir, conf, argv[0], *argv[1:],
                                                             addr=addr))  # fmt: skip
            self.procs.append(self.xpmgr)
            self.xpmgr.wait_log(r"published to", timeout=60)
            self.dbs: list[Path] = []
            self.endpoints = []
            for i in (1, 2):
                ident = Identity(home, workdir, f"ep{i}")
                db = workdir / f"ep{i}.rlim.sqlite3"
                self.dbs.append(db)
                ep = EndpointProc(workdir, home.root, None, "--broker",
                                  f"127.0.0.1:{self.broker.sub_port}", "--ipv4", "127.0.0.1/8",
                                  "--set", f"RLimDBPath={db}", *ident.endpoint_args())  # fmt: skip
                self.procs.append(ep)
                self.endpoints.append(ep)
        except BaseException:
            self.stop()
            raise

    def publish(self) -> None:
        """The manager's xdescr once more (pktxpmgr's xcerts then xpub, in lockstep);
        the previous one is closed, which ends it at the broker."""
        from broker_world import RawClient

        from packetlab import wire
        from packetlab.ppks import key_id, raw_public_key

        home = self.home
        p = RawClient(self.broker.pub_port, home.cert_path("agent_xc_xc"), home.key_path("k_xc"))
        try:
            for cert in self.chain:
                p.send(wire.Xcert(cert))
                assert p.recv() == wire.Result(0)
            eop = home.public_key("k_eop")
            # new bytes each time: the broker gives an endpoint the same bytes once an hour
            end = time.time_ns() + 3600 * 10**9
            xd = f"pub_end={end};controller_addr=127.0.0.1:{self.proxy.endpoints};sni_key=soak;"
            p.send(wire.Xpub([key_id(eop)], raw_public_key(eop), xd.encode()))
            assert p.recv() == wire.Result(0)
        except BaseException:
            p.close()
            raise
        self.publications.append(p)
        while len(self.publications) > 1:
            self.publications.pop(0).close()

    def pids(self) -> dict[str, int]:
        assert self.broker.proc is not None
        out = {"broker": self.broker.proc.pid, "proxy": self.proxy.proc.pid}
        out |= {f"ep{i}": ep.proc.pid for i, ep in enumerate(self.endpoints, 1)}
        out["xpmgr"] = self.xpmgr.proc.pid
        return out

    def logs(self) -> dict[str, Path]:
        out = {"broker": self.broker.logfile, "proxy": self.proxy.log}
        out |= {f"ep{i}": ep.log for i, ep in enumerate(self.endpoints, 1)}
        out["xpmgr"] = self.xpmgr.log
        return out

    def procs_in_order(self) -> list[Any]:
        return [self.broker.proc, self.proxy.proc, *(e.proc for e in self.endpoints),
                self.xpmgr.proc]  # fmt: skip

    def stop(self) -> None:
        for pub in self.publications:
            pub.close()
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # stop the rest whatever one did
                print(f"soak: stopping {p}: {e}", flush=True)


def run(args: Any) -> int:
    """The --system soak; `args` are soak.py's (duration, interval, out)."""
    import _soak_parts as soak_parts

    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "system.csv"
    stop = threading.Event()
    udp_sock, _ = soak_parts.udp_echo(stop)
    tcp = soak_parts.EchoTcp(("127.0.0.1", 0), soak_parts.TcpEcho)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    workdir = Path(tempfile.mkdtemp(prefix="pktlab-soak32-system-"))
    probe = args.out / "xpmgr-probe.jsonl" if args.probe else None
    if probe is not None:
        probe.write_text("")
    world = SystemWorld(workdir, udp_sock.getsockname()[1], tcp.server_address[1], probe,
                        args.tracemalloc, args.warmup)  # fmt: skip
    rows: list[dict[str, float]] = []
    errors: list[str] = []
    t0 = time.monotonic()
    next_pub = t0
    next_probe = 0.0
    rounds = 0
    try:
        while True:
            while time.monotonic() < t0 + len(rows) * args.interval:
                if time.monotonic() >= next_pub:
                    try:
                        world.publish()
                        rounds += 1
                    except (AssertionError, OSError, TimeoutError, EOFError) as e:
                        errors.append(f"publication {rounds}: {type(e).__name__}: {e}")
                    next_pub += args.round
                time.sleep(
                    max(0.0, min(next_pub, t0 + len(rows) * args.interval) - time.monotonic())
                )
            now = time.monotonic() - t0
            if probe is not None and rows and now >= next_probe:
                probe_once(world.xpmgr.proc.pid, probe)
                next_probe += args.probe
            row: dict[str, float] = {"t_s": round(now, 1)}
            for name, pid in world.pids().items():
                try:
                    row |= {f"{name}_{k}": v for k, v in take(pid).items()}
                except (OSError, KeyError) as e:  # KeyError: a zombie has no VmRSS
                    errors.append(f"{name} gone at {now:.0f} s: {e}")
            for name, log in world.logs().items():
                row[f"{name}_log_b"] = _size(log)
            for i, db in enumerate(world.dbs, 1):
                row[f"ep{i}_db_b"] = _size(db, db.with_name(db.name + "-wal"))
            res = world.xpmgr.result_lines()
            row["publications"] = rounds
            row["results"] = len(res)
            row["done"] = sum(r.get("status") == "done" for r in res)
            soak_parts.append_row(csv_path, rows, row)
            print(
                f"[{now:5.0f} s] publications {rounds} results {row['results']:.0f} "
                f"(done {row['done']:.0f})  "
                + "  ".join(
                    f"{n} {row.get(f'{n}_rss_kib', 0) / 1024:.1f}M/{row.get(f'{n}_fds', 0):.0f}fd"
                    for n in world.pids()
                ),
                flush=True,
            )
            procs = zip(world.pids(), world.procs_in_order(), strict=True)
            dead = [n for n, p in procs if p.poll() is not None]
            if dead:
                errors.append(f"exited: {dead} at {now:.0f} s")
                break
            if now >= args.duration:
                break
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    finally:
        world.stop()
        stop.set()
        tcp.shutdown()
        udp_sock.close()
    return report(rows, errors, world, args)


def report(rows: list[dict[str, float]], errors: list[str], world: SystemWorld, args: Any) -> int:
    import _soak_parts as soak_parts

    half = rows[-1]["t_s"] / 2
    res = world.xpmgr.result_lines()
    failed = [r for r in res if r.get("status") != "done"]
    print(f"\n{len(res)} results, {len(failed)} not done, {len(errors)} errors; "
          f"slopes over the second half (from {half:.0f} s):")  # fmt: skip
    names = list(world.pids())
    for n in names:
        first, last = rows[0], rows[-1]
        rss = soak_parts.slope_per_hour(rows, f"{n}_rss_kib", half)
        fds = soak_parts.slope_per_hour(rows, f"{n}_fds", half)
        thr = soak_parts.slope_per_hour(rows, f"{n}_threads", half)
        log = soak_parts.slope_per_hour(rows, f"{n}_log_b", half)
        cpu = (last[f"{n}_cpu_s"] - first[f"{n}_cpu_s"]) / max(1.0, last["t_s"] - first["t_s"])
        db = ""
        if f"{n}_db_b" in last:
            d = soak_parts.slope_per_hour(rows, f"{n}_db_b", half)
            a, b = first[f"{n}_db_b"] / 1024, last[f"{n}_db_b"] / 1024
            db = f"; db {a:.0f} -> {b:.0f} KiB ({(d or 0) / 1024:+.0f} KiB/h)"
        r0, r1 = first[f"{n}_rss_kib"] / 1024, last[f"{n}_rss_kib"] / 1024
        print(
            f"  {n:6s} RSS {r0:.1f} -> {r1:.1f} MiB ({(rss or 0) / 1024:+.2f} MiB/h); "
            f"fds {first[f'{n}_fds']:.0f} -> {last[f'{n}_fds']:.0f} "
            f"(max {max(r[f'{n}_fds'] for r in rows):.0f}, {fds or 0:+.1f}/h); threads "
            f"{first[f'{n}_threads']:.0f} -> {last[f'{n}_threads']:.0f} ({thr or 0:+.1f}/h); "
            f"log {last[f'{n}_log_b'] / 1024:.0f} KiB ({(log or 0) / 1024:+.0f} KiB/h); "
            f"CPU {100 * cpu:.1f} %{db}"
        )
    for e in (errors + [f"{r.get('status')}: {r.get('error')}" for r in failed])[:20]:
        print("  error:", e)
    print(f"wrote {args.out / 'system.csv'}; work directory {world.workdir}")
    return 1 if errors or failed else 0


if __name__ == "__main__":  # the same as `stress/soak.py --system ...` (run, not imported)
    import runpy
    import sys

    sys.argv.insert(1, "--system")
    runpy.run_path(str(Path(__file__).with_name("soak.py")), run_name="__main__")
