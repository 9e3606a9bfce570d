"""Hop RTTs of our traceroute against Butskoy traceroute and scamper on the testbed.

Chain ``ep — r1 — r2 — tg`` (ICMP rate limits off, TX checksum offload off). Our traceroute
runs through a real ``twistd pktendpoint`` inside ep, driven by a controller in this
process (listening inside ep); traceroute and scamper run in ep with ``ip netns exec``.
The three alternate (order rotated each round, as in the Marionette paper §5.3), one probe
per hop, ``--sport 20556`` for ours and traceroute. Per hop we report each tool's median
RTT and the offsets ours - traceroute and ours - scamper (difference of the medians).
Optionally ``--ping N`` adds N echo requests from ours and from iputils ping per round.

Timestamps: ours = endpoint ntag (kernel software TX stamp) → ndata (kernel RX stamp);
traceroute and scamper = ``gettimeofday()`` before ``send()`` (user) → ``SO_TIMESTAMP``
(kernel). Goal: |offset| ≤ 10 µs. A capture on ep's link (`WireTap`, kernel stamps of each
probe leaving and its answer arriving) gives every tool's "wire" RTT too; a tool's RTT
minus the wire RTT of its own probes is what its timestamping adds.

Run as root from the repository root::

    .venv/bin/python -m benchmarks.bench_traceroute --runs 20 --json .bench/traceroute.json
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

from benchmarks.common import environment, fmt, markdown_table, median, percentile, write_json
from packetlab.controller import EndpointSession, run_once
from packetlab.controller.local import twistd_command
from packetlab.measure import native
from packetlab.measure.packets import ParseError
from packetlab.measure.ping import ping
from packetlab.measure.probes import probe_key
from packetlab.measure.records_ping import PingResult
from packetlab.measure.records_traceroute import TracerouteResult
from packetlab.measure.replies import parse_reply
from packetlab.measure.traceroute import traceroute
from packetlab.testbed import Testbed, chain

REPO = Path(__file__).resolve().parent.parent
SPORT = 20556
GOAL_US = 10.0
TOOLS = ("packetlab", "traceroute", "scamper")


@implementer(IStreamServerEndpoint)
class InNamespace:
    def __init__(self, tb: Testbed, node: str) -> None:
        self.tb, self.node = tb, node

    def listen(self, factory: Any) -> Any:
        with self.tb.enter(self.node):
            return TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)


ETH_P_ALL, PACKET_OUTGOING, SO_TIMESTAMPNS = 0x0003, 4, 35


class WireTap:
    """AF_PACKET capture on ep's link to r1 with kernel timestamps: the probe as it leaves
    (stamped where the driver takes it, like a software TX stamp) and the reply as it
    arrives (the same stamp the tools' SO_TIMESTAMP reads). It gives each tool's
    RTT "on the wire", which tells its send-side overhead apart from the path."""

    def __init__(self, tb: Testbed) -> None:
        with tb.enter("ep"):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind((tb.iface("ep", "r1"), 0))
        self.sock.setblocking(False)

    def packets(self) -> list[tuple[bytes, bool, int]]:
        """Everything captured since the last call: (IP packet, outgoing, kernel ns)."""
        out: list[tuple[bytes, bool, int]] = []
        while True:
            try:
                data, anc, _flags, addr = self.sock.recvmsg(65535, 64)
            except BlockingIOError:
                return out
            ns = 0
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    ns = sec * 1_000_000_000 + nsec
            out.append((data, addr[2] == PACKET_OUTGOING, ns))

    def hop_rtts(self) -> dict[int, float]:
        """TTL -> wire RTT (µs) of the UDP probes and their ICMP answers just captured."""
        sent: dict[Any, tuple[int, int]] = {}
        rtts: dict[int, float] = {}
        for data, outgoing, ns in self.packets():
            try:
                if outgoing:
                    ttl = data[7] if data[0] >> 4 == 6 else data[8]
                    sent[probe_key(data)] = (ttl, ns)
                else:
                    key = parse_reply(data).key
                    if key in sent:
                        ttl, t0 = sent.pop(key)
                        rtts[ttl] = (ns - t0) / 1000
            except (ParseError, IndexError):
                continue
        return rtts

    def close(self) -> None:
        self.sock.close()


def endpoint_config(tb: Testbed) -> str:
    ep = tb.interfaces("ep")[0]
    return (
        "TransprotoSup raw,tcp,udp\n"
        f"VMemLocalAddrStrIPv4 {ep.ipv4}\n"
        f"VMemLocalAddrStrIPv6 {ep.ipv6.ip}\n"
        "HostID bench-traceroute\nNoSubMode 1\n"
    )


async def rounds(
    tb: Testbed, session: EndpointSession, families: list[int], runs: int, pings: int
) -> dict[int, dict[str, list[Any]]]:
    ns = tb.netns_name("ep")
    out: dict[int, dict[str, list[Any]]] = {}
    tap = WireTap(tb)
    for family in families:
        dst = str(tb.addr("tg", family))
        got: dict[str, list[Any]] = {t: [] for t in (*TOOLS, "ping-ours", "ping")}
        for t in TOOLS:
            got[f"wire-{t}"] = []

        async def ours(got: dict[str, list[Any]] = got, dst: str = dst) -> None:
            got["packetlab"].append(await traceroute(session, dst, max_ttl=10, sport=SPORT))

        async def butskoy(got: dict[str, list[Any]] = got, dst: str = dst) -> None:
            tr = native.run_traceroute
            got["traceroute"].append(
                await threads.deferToThread(tr, dst, netns=ns, max_ttl=10, sport=SPORT)
            )

        async def scamper(got: dict[str, list[Any]] = got, dst: str = dst) -> None:
            sc = native.run_scamper
            got["scamper"].append(await threads.deferToThread(sc, dst, netns=ns, max_ttl=10))

        steps: list[tuple[str, Callable[[], Any]]] = [
            ("packetlab", ours), ("traceroute", butskoy), ("scamper", scamper),
        ]  # fmt: skip
        for i in range(runs):
            for name, step in steps[i % 3 :] + steps[: i % 3]:
                tap.packets()  # drop what came before
                await step()
                got[f"wire-{name}"].append(tap.hop_rtts())
            if pings:
                got["ping-ours"].append(await ping(session, dst, count=pings, interval=0.01))
                got["ping"].append(
                    await threads.deferToThread(
                        native.run_ping, dst, netns=ns, count=pings, interval=0.01
                    )
                )
            print(f"IPv{family}: round {i + 1}/{runs}", file=sys.stderr)
        out[family] = got
    tap.close()
    return out


def hop_rtts(results: list[TracerouteResult]) -> dict[int, list[float]]:
    per: dict[int, list[float]] = {}
    for r in results:
        for h in r.hops:
            if h.rtt_us is not None:
                per.setdefault(h.ttl, []).append(h.rtt_us)
    return per


def ping_rtts(results: list[PingResult]) -> list[float]:
    return [x for r in results for x in r.rtts_us()]


def report(data: dict[int, dict[str, list[Any]]]) -> tuple[str, dict[str, Any], bool]:
    rows = []
    summary: dict[str, Any] = {}
    ok = True
    for family, got in data.items():
        rtts = {t: hop_rtts(got[t]) for t in TOOLS}
        wire: dict[str, dict[int, list[float]]] = {}
        for t in TOOLS:
            per: dict[int, list[float]] = {}
            for run in got[f"wire-{t}"]:
                for ttl, v in run.items():
                    per.setdefault(ttl, []).append(v)
            wire[t] = per
        paths = {t: {tuple(r.path()) for r in got[t]} for t in TOOLS}
        same = len(paths["packetlab"] | paths["traceroute"] | paths["scamper"]) == 1
        for ttl in sorted(rtts["packetlab"]):
            med = {t: median(rtts[t][ttl]) if rtts[t].get(ttl) else None for t in TOOLS}
            p10_90 = {
                t: (percentile(rtts[t][ttl], 10), percentile(rtts[t][ttl], 90))
                for t in TOOLS
                if rtts[t].get(ttl)
            }
            ours = med["packetlab"]
            d_tr = None if ours is None or med["traceroute"] is None else ours - med["traceroute"]
            d_sc = None if ours is None or med["scamper"] is None else ours - med["scamper"]
            met = all(d is not None and abs(d) <= GOAL_US for d in (d_tr, d_sc))
            # each tool minus the wire RTT of its own probes: its send-side overhead
            over: dict[str, float | None] = {}
            for t in TOOLS:
                m = med[t]
                over[t] = m - median(wire[t][ttl]) if m is not None and wire[t].get(ttl) else None
            ok = ok and met
            rows.append(
                [
                    f"IPv{family}",
                    ttl,
                    *(fmt(med[t]) for t in TOOLS),
                    fmt(d_tr),
                    fmt(d_sc),
                    "yes" if met else "**no**",
                    " / ".join(fmt(over[t]) for t in TOOLS),
                ]
            )
            summary[f"v{family}_ttl{ttl}"] = {
                "median_us": med,
                "p10_p90_us": p10_90,
                "n": {t: len(rtts[t].get(ttl, [])) for t in TOOLS},
                "ours_minus_traceroute_us": d_tr,
                "ours_minus_scamper_us": d_sc,
                "wire_median_us": {
                    t: median(wire[t][ttl]) if wire[t].get(ttl) else None for t in TOOLS
                },
                "minus_wire_us": over,
            }
        summary[f"v{family}_paths_identical"] = same
        summary[f"v{family}_wire_rtts_us"] = {
            t: {str(k): v for k, v in wire[t].items()} for t in TOOLS
        }
        if got["ping"]:
            a, b = ping_rtts(got["ping-ours"]), ping_rtts(got["ping"])
            if a and b:
                summary[f"v{family}_ping"] = {
                    "ours_median_us": median(a),
                    "ping_median_us": median(b),
                    "n": [len(a), len(b)],
                }
    head = ["family", "hop", "ours (µs)", "traceroute (µs)", "scamper (µs)"]
    head += ["ours - traceroute", "ours - scamper", f"≤ {GOAL_US:g} µs"]
    head += ["minus wire RTT: ours / traceroute / scamper"]
    text = markdown_table(head, rows)
    for family in data:
        text += f"\n\nIPv{family}: all paths identical: {summary[f'v{family}_paths_identical']}"
        p = summary.get(f"v{family}_ping")
        if p:
            text += (
                f"; ping median ours {p['ours_median_us']:.1f} µs, iputils "
                f"{p['ping_median_us']:.1f} µs (n = {p['n'][0]}, {p['n'][1]})"
            )
    return text, summary, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="rounds per family [default: 20]")
    ap.add_argument("--family", type=int, choices=[4, 6], action="append", help="default both")
    ap.add_argument("--ping", type=int, default=0, metavar="N", help="echo requests per round")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces, raw sockets)", file=sys.stderr)
        return 2
    families = args.family or [4, 6]
    box: dict[str, Any] = {}

    async def go() -> None:
        with Testbed(chain(2)) as tb, tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "endpt.conf"
            conf.write_text(endpoint_config(tb))
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
            procs: list[subprocess.Popen[Any]] = []

            def start(port: Any) -> None:
                argv = [*twistd_command(), "-n", "--pidfile=", f"--logfile={tmp}/ep.log"]
                argv += ["pktendpoint", "-c", str(conf), "--insecure-plaintext"]
                argv += [f"127.0.0.1:{port.getHost().port}"]
                procs.append(tb.popen("ep", argv, cwd=tmp, env=env))

            async def experiment(session: EndpointSession) -> Any:
                return await rounds(tb, session, families, args.runs, args.ping)

            try:
                box["data"] = await run_once(
                    reactor, InNamespace(tb, "ep"), experiment, on_listening=start
                )
            finally:
                for p in procs:
                    p.terminate()
                    p.wait(10)

    def done(result: Any) -> None:
        if result is not None and hasattr(result, "printTraceback"):
            result.printTraceback()
        reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(go()).addBoth(done))
    reactor.run()
    if "data" not in box:
        return 2
    text, summary, ok = report(box["data"])
    print(text)
    cmd = "python -m benchmarks.bench_traceroute " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    if args.json:
        write_json(args.json, {"env": environment(), "command": cmd, "results": summary})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
