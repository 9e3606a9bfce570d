#!/usr/bin/env python3
"""The endpoint's RSS over hostile monitor sessions (docs/usability.md, session 20): a
real `twistd -n pktendpoint` over TLS, fed the hostile certificate monitors of
`tests/integration/test_monitors_hostile.py` by a real controller, one module per
session in turn (`--sessions`, 200), then `--wide` sessions (100) of 16 monitors that
each fill 1 MiB (MonitorMemoryMax), then (`--flood`, 1,000,000) a session whose monitor
rejects every received datagram, flooded over loopback while its controller reads
nothing (each rejection is an nblock; session 30). Prints the RSS range of each run, in
MiB.

    .venv/bin/python stress/monitor_rss.py
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "integration"), str(REPO / "tests")]

import test_monitors_hostile as hostile  # noqa: E402
from procstat import rss_kib  # noqa: E402
from tls_world import TLSController, TLSEndpoint, controller_chain, pktlab_init  # noqa: E402

from packetlab import wire  # noqa: E402
from packetlab.monitor import abi  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=200, help="hostile sessions [200]")
    ap.add_argument("--wide", type=int, default=100, help="sessions of 16 monitors [100]")
    ap.add_argument("--flood", type=int, default=1_000_000, help="datagrams rejected [1e6]")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="monitor_rss-") as d:
        tmp = Path(d)
        home = pktlab_init(tmp / "home")
        conf = home.root / "endpt.conf"
        conf.write_text(
            conf.read_text() + f"MonitorPersistentPath {tmp / 'pm.db'}\nMonitorReportCrash 1\n"
        )
        ctl = TLSController(controller_chain(home, tmp / "c0"), home.key_path("k_xc"), tmp)
        ep = TLSEndpoint(home, ctl.address, tmp)
        try:
            world = hostile.World(home, tmp, ctl, ep)
            mods = [m for m, _, _ in hostile.LOAD_CASES.values() if len(m) < (1 << 20)]
            mods += [hostile.HOSTILE, hostile.w({"nopen": hostile.GROW.format(k=1)})]
            rss = []
            for i in range(args.sessions):
                wasm = mods[i % len(mods)]
                c = world.session(wasm)
                c.send(wire.Cdata(b"monitor", abi.encode(wasm)), wire.Start())
                if c.response(timeout=60) == hostile.OK and c.response(timeout=60) == hostile.OK:
                    hostile.nopen(c, 10)
                c.close()
                rss.append(rss_kib(ep.proc.pid) / 1024)
            warm = rss[len(mods) :] or rss
            if rss:
                print(f"{args.sessions} hostile sessions: {min(warm):.0f}-{max(rss):.0f} MiB")
            wide = [hostile.w({"nopen": hostile.GROW.format(k=k + 1)}) for k in range(16)]
            rss = []
            for _ in range(args.wide):
                c = world.started(*wide)
                hostile.nopen(c, 1)
                c.close()
                rss.append(rss_kib(ep.proc.pid) / 1024)
            warm = rss[5:] or rss
            if rss:
                print(f"{args.wide} sessions of 16 x 1 MiB: {min(warm):.0f}-{max(rss):.0f} MiB")
            if args.flood:
                print(f"{args.flood} datagrams rejected: {flood(world, args.flood)}")
        finally:
            ep.stop()
            ctl.close()
    return 0


def flood(world: hostile.World, count: int) -> str:
    """RSS before and after `count` datagrams that the monitor rejects (nblock), sent
    while the controller reads nothing."""
    deny = hostile.w({"ndata": "(i32.const 1)"})
    c = world.started(deny)
    hostile.nopen(c, 1)
    lport = int.from_bytes(c.mread(0x20000000 + 0x400 + 0x30, 2), "big")
    me = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pid = world.ep.proc.pid
    before = rss_kib(pid) / 1024
    peak = before
    for i in range(count):
        me.sendto(b"x" * 16, ("127.0.0.1", lport))
        if i % 1000 == 0:
            time.sleep(0.001)  # the endpoint keeps up (the kernel would drop the rest)
        if i % 50_000 == 0:
            peak = max(peak, rss_kib(pid) / 1024)
    peak = max(peak, rss_kib(pid) / 1024)
    me.close()
    c.close()
    return f"{before:.0f} MiB before, {peak:.0f} MiB at most"


if __name__ == "__main__":
    sys.exit(main())
