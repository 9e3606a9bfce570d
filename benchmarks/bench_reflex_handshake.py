"""A TCP three-way handshake by a reflex over a raw socket (docs/reflexes.md), beside the
kernel's own connect().

A namespace testbed ``ep - r1 - tg``; a TCP server listens on ``tg`` and counts the
connections it accepts. In ``ep`` a real ``twistd pktendpoint`` over TLS (raw sockets
exported) runs ``examples/reflexes/tcp_handshake.c`` on a raw socket capturing the
server's segments: SYN out (ntag: kernel TX stamp), SYN-ACK in (kernel RX stamp), ACK
out at once (ntag). The handshake uses an address the endpoint exports but ep's kernel
does not own, so the kernel drops the SYN-ACK instead of answering it with a RST (native
SYN tools need a firewall rule for that). Reported: the SYN-ACK
RTT (SYN TX -> SYN-ACK RX), the ACK's reaction (SYN-ACK RX -> ACK TX), the options the
server offered, and the time a native ``connect()`` in ``ep`` takes.

Needs root. Run from the repository root: ``python -m benchmarks.bench_reflex_handshake``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HANDSHAKE = REPO / "examples" / "reflexes" / "tcp_handshake.c"
SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(128)
while True:
    c, a = s.accept()
    print("accepted", a[1], flush=True)
    c.close()
"""


def _record(data: bytes) -> dict[str, int]:
    rx, isn, win, mss, ws, sack, ts, flags = struct.unpack(">QIHHBBBB", data[:20])
    return {"synack_rx": rx, "server_isn": isn, "window": win, "mss": mss, "wscale": ws,
            "sack": sack, "timestamps": ts, "flags": flags}  # fmt: skip


async def handshakes(session: Any, reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    from packetlab.controller.filters import tcpdump_filter
    from packetlab.monitor.build import build
    from packetlab.wire import Ntag

    wasm = build(HANDSHAKE)
    sock = await session.nopen_raw(1, laddr=args.source_iface.split("/")[0])
    expr = f"tcp and src host {args.target} and src port {args.port}"
    await session.ncap(1, tcpdump_filter(expr), endtime=time.time_ns() + 600 * 10**9)
    out = []
    for i in range(args.count):
        sport = args.sport + i
        params = (
            socket.inet_aton(args.source) + socket.inet_aton(args.target)
            + struct.pack(">HHI", sport, args.port, 0x1000 * (i + 1))
        )  # fmt: skip
        reflex = await session.attach_reflex(sock, wasm, params)
        rep = await reflex.next_report().addTimeout(10, reactor)
        rec = _record(rep.data)
        tags: dict[int, int] = {}
        while len(tags) < 2:
            note = await sock.get(5.0)
            if note is None:
                break
            if isinstance(note, Ntag):
                tags[note.tag] = note.time
        await reflex.detach()
        rec |= {"sport": sport, "syn_tx": tags.get(1, 0), "ack_tx": tags.get(2, 0)}
        out.append(rec)
    return {"handshakes": out}


def native_connects(target: str, port: int, count: int) -> list[float]:
    """Microseconds per kernel connect() (user space: before the call -> after it)."""
    out = []
    for _ in range(count):
        s = socket.socket()
        t0 = time.perf_counter_ns()
        s.connect((target, port))
        out.append((time.perf_counter_ns() - t0) / 1e3)
        s.close()
    return out


def inside(args: argparse.Namespace) -> None:
    from benchmarks.reflex_world import endpoint_under, inside, run_experiment, split_cpus

    pin = split_cpus() if args.split else []

    async def go(reactor: Any) -> dict[str, Any]:
        async def exp(session: Any) -> dict[str, Any]:
            return await handshakes(session, reactor, args)

        conf = f"TransprotoSup raw,tcp,udp\nVMemLocalAddrStrIPv4 {args.source_iface}\n"
        if args.busy_poll_us:
            conf += f"BusyPollUs {args.busy_poll_us}\n"
        res = await run_experiment(
            reactor, exp, sources=[HANDSHAKE], conf=conf, timeout=120,
            endpoint_argv=endpoint_under(pin),
        )  # fmt: skip
        res["native_us"] = native_connects(args.target, args.port, args.count)
        return res

    inside(go)


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.reflex_world import child_env, child_result
    from packetlab.testbed import chain, testbed

    name = f"rhs{os.getpid() % 100000}"
    with testbed(chain(1), name=name) as tb:
        env = child_env()
        server = tb.popen(
            "tg", [sys.executable, "-c", SERVER, str(args.port)], stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        tb.wait_listening("tg", args.port)
        dev = tb.iface("ep")
        # The handshake's own address: exported by the endpoint, not configured in ep's
        # kernel (which would answer the SYN-ACK with a RST), reachable through a static
        # neighbour entry on r1. ep does not forward, so its kernel drops the replies
        # after the capture saw them.
        ep_if = tb.interfaces("ep")[0]
        own = ep_if.ipv4.network.network_address + 99
        mac = json.loads(tb.run("ep", ["ip", "-j", "link", "show", "dev", dev]).stdout)[0]
        tb.run("ep", ["sysctl", "-qw", "net.ipv4.ip_forward=0"])
        tb.run("r1", ["ip", "neigh", "replace", str(own), "lladdr", mac["address"], "dev",
                      tb.iface("r1", "ep"), "nud", "permanent"])  # fmt: skip
        proc = tb.popen(
            "ep",
            [sys.executable, "-m", "benchmarks.bench_reflex_handshake", "--inside",
             "--target", str(tb.addr("tg")), "--port", str(args.port),
             "--source", str(own), "--source-iface", f"{ep_if.ipv4},{own}/32",
             "--count", str(args.count), "--sport", str(args.sport),
             "--busy-poll-us", str(args.busy_poll_us), *(["--split"] if args.split else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
        )  # fmt: skip
        res = child_result(proc, "handshake run", 300)
        server.terminate()
        accepted_out, _ = server.communicate(timeout=10)
        accepted = [int(ln.split()[1]) for ln in accepted_out.splitlines() if ln.startswith("acc")]
        sports = {h["sport"] for h in res["handshakes"]}
        res["server_accepted_reflex"] = len(sports & set(accepted))
        return res


def main(argv: list[str] | None = None) -> int:
    from benchmarks.reflex_world import add_cpu_options

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=50, help="handshakes [50]")
    p.add_argument("--port", type=int, default=9480, help="the server's port on tg")
    p.add_argument("--sport", type=int, default=41000, help="first source port")
    add_cpu_options(p)
    p.add_argument("--json", type=Path, help="write the results here too")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--target", help=argparse.SUPPRESS)
    p.add_argument("--source", help=argparse.SUPPRESS)
    p.add_argument("--source-iface", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.inside:
        inside(args)
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces, raw sockets)", file=sys.stderr)
        return 2
    from benchmarks.common import environment, markdown_table, summarize, write_json

    res = run_all(args)
    hs = res["handshakes"]
    ok = [h for h in hs if h["flags"] & 0x12 == 0x12 and h["syn_tx"] and h["ack_tx"]]
    rtt = summarize([(h["synack_rx"] - h["syn_tx"]) / 1e3 for h in ok])
    ack = summarize([(h["ack_tx"] - h["synack_rx"]) / 1e3 for h in ok])
    nat = summarize(res["native_us"])
    first = ok[0] if ok else {}
    print(f"{len(ok)}/{len(hs)} handshakes completed by the reflex; the server accepted "
          f"{res['server_accepted_reflex']} of them; options offered: mss {first.get('mss')}, "
          f"wscale {first.get('wscale')}, sack {first.get('sack')}, "
          f"timestamps {first.get('timestamps')}")  # fmt: skip
    rows = [
        ["reflex: SYN TX → SYN-ACK RX (SYN-ACK RTT)", rtt["n"], *_p(rtt)],
        ["reflex: SYN-ACK RX → ACK TX", ack["n"], *_p(ack)],
        ["native connect() in ep (user space)", nat["n"], *_p(nat)],
    ]
    print(markdown_table(["µs", "n", "p10", "p50", "p90"], rows))
    summary = {
        "ok": len(ok),
        "n": len(hs),
        "synack_rtt_us": rtt,
        "ack_us": ack,
        "native_connect_us": nat,
        "accepted": res["server_accepted_reflex"],
        "options": {k: first.get(k) for k in ("mss", "wscale", "sack", "timestamps")},
    }
    if args.json is not None:
        write_json(args.json, {"env": environment(), "args": vars(args) | {"json": None},
                               "results": summary})  # fmt: skip
    return 0


def _p(s: dict[str, float]) -> list[str]:
    return [f"{s[k]:.1f}" if k in s else "-" for k in ("p10", "p50", "p90")]


if __name__ == "__main__":
    sys.exit(main())
