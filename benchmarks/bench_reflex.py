"""Reaction time of a reflex vs the same logic in the controller (docs/reflexes.md).

A real ``twistd pktendpoint`` over TLS (PPKS chain from ``pktlab init --reflex``) reaches
this controller through ``benchmarks/delay_relay.py``, which delays every chunk by
``--delay-ms`` each way (a slow controller link; this kernel has no netem). A UDP client
here sends probes to the endpoint's UDP socket; the reply carries a checksum of the
probe (``examples/reflexes/udp_responder.c``). Rounds alternate:

* **reflex**: the responder reflex answers at the endpoint and passes each probe on;
  reaction = the reply's ntag (kernel TX stamp) - the probe's ndata (kernel RX stamp),
  both on the endpoint clock;
* **controller**: the controller gets the ndata, computes the same reply and sends it
  with an nsend (ntag: kernel TX stamp); reaction measured the same way.

Also reported: the round trip the client sees (probe sent -> reply received). Goal: the
reflex's reaction p50 <= 50 us, whatever the controller link's delay.

Run from the repository root: ``python -m benchmarks.bench_reflex --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.internet.protocol import DatagramProtocol

from benchmarks.common import environment, markdown_table, summarize, write_json
from benchmarks.reflex_world import SPLIT_CPUS, add_cpu_options, endpoint_under, split_cpus
from packetlab.controller import EndpointSession
from packetlab.monitor.build import build
from packetlab.reflex import abi
from packetlab.wire import Ndata, Ntag

REPO = Path(__file__).resolve().parent.parent
RESPONDER = REPO / "examples" / "reflexes" / "udp_responder.c"
PROBE = "benchmarks.bench_reflex_probe"


def reply_of(probe: bytes) -> bytes:
    """What udp_responder.c sends back: a checksum of the rest in the first 4 bytes."""
    s = 0
    for b in probe[4:]:
        s = (s * 31 + b) & 0xFFFFFFFF
    return struct.pack(">I", s) + probe[4:]


class Client(DatagramProtocol):
    """Sends probes and timestamps the replies (monotonic ns)."""

    def __init__(self) -> None:
        self.replies: dict[bytes, int] = {}
        self.waiters: dict[bytes, defer.Deferred[int]] = {}

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        now = time.monotonic_ns()
        d = self.waiters.pop(data, None)
        if d is not None:
            d.callback(now)

    def probe(self, reactor: Any, seq: int, port: int, timeout: float) -> defer.Deferred[int]:
        """Send probe `seq` (48 bytes: 4 for the checksum, the sequence number, the send
        time on CLOCK_REALTIME for --breakdown, padding)."""
        sent = time.clock_gettime_ns(time.CLOCK_REALTIME)
        payload = b"\0\0\0\0" + struct.pack(">IQ", seq, sent) + b"probe" * 6 + b"pr"
        d: defer.Deferred[int] = defer.Deferred()
        self.waiters[reply_of(payload)] = d
        self.transport.write(payload, ("127.0.0.1", port))  # type: ignore[union-attr]
        return d.addTimeout(timeout, reactor)


async def experiment(
    session: EndpointSession, reactor: Any, wasm: bytes, args: argparse.Namespace
) -> dict[str, Any]:
    client = Client()
    reactor.listenUDP(0, client, interface="127.0.0.1")
    sock = await session.nopen_udp(1, laddr="127.0.0.1")
    lport = int.from_bytes(await session.mread(0x20000000 + 0x400 + 0x30, 2), "big")
    out: dict[str, list[float]] = {
        "reflex_reaction_us": [], "reflex_rtt_us": [],
        "controller_reaction_us": [], "controller_rtt_us": [],
    }  # fmt: skip
    seq = 0
    for rnd in range(args.rounds):
        for mode in ("reflex", "controller"):
            reflex = None
            if mode == "reflex":
                reflex = await session.attach_reflex(sock, wasm, b"\x01")  # and pass on
            for _ in range(args.packets):
                seq += 1
                t0 = time.monotonic_ns()
                got = client.probe(reactor, seq, lport, 10.0)
                if mode == "reflex" and args.hot:
                    out["reflex_rtt_us"].append((await got - t0) / 1e3)
                    if args.gap_ms > 0:
                        await task.deferLater(reactor, args.gap_ms / 1e3)
                    continue  # the stamps are paired after the round
                if mode == "reflex":
                    t1 = await got
                    nd, nt = await _pair(sock)
                else:
                    nd = await _ndata(sock)
                    q = await session.nsend(
                        1, reply_of(nd.data), to=("127.0.0.1", _port(client)), ntag=True
                    )
                    assert q.ntag is not None
                    nt = await q.ntag
                    t1 = await got
                out[f"{mode}_reaction_us"].append((nt.time - nd.time) / 1e3)
                out[f"{mode}_rtt_us"].append((t1 - t0) / 1e3)
                await task.deferLater(reactor, args.gap_ms / 1e3)
            if reflex is not None and args.hot:
                for nd, nt in await _pairs(sock, args.packets):
                    out["reflex_reaction_us"].append((nt.time - nd.time) / 1e3)
            if reflex is not None:
                status = await reflex.status()
                assert status.sent == status.runs, status
                await reflex.detach()
        print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return {k: summarize(v) for k, v in out.items()}


def _port(client: Client) -> int:
    return int(client.transport.getHost().port)  # type: ignore[union-attr]


async def _pair(sock: Any) -> tuple[Ndata, Ntag]:
    nd: Ndata | None = None
    nt: Ntag | None = None
    while nd is None or nt is None:
        note = await sock.get(10.0)
        if isinstance(note, Ndata):
            nd = note
        elif isinstance(note, Ntag):
            nt = note
        elif note is None:
            raise RuntimeError("no ndata/ntag from the endpoint within 10 s")
    return nd, nt


async def _pairs(sock: Any, n: int) -> list[tuple[Ndata, Ntag]]:
    """The ndata and ntag of `n` probes sent back to back, paired in order."""
    nds: list[Ndata] = []
    nts: list[Ntag] = []
    while len(nds) < n or len(nts) < n:
        note = await sock.get(10.0)
        if isinstance(note, Ndata):
            nds.append(note)
        elif isinstance(note, Ntag):
            nts.append(note)
        elif note is None:
            raise RuntimeError(f"{len(nds)} ndata, {len(nts)} ntag of {n} within 10 s")
    return list(zip(nds, nts, strict=True))


async def _ndata(sock: Any) -> Ndata:
    while True:
        note = await sock.get(10.0)
        if isinstance(note, Ndata):
            return note
        if note is None:
            raise RuntimeError("no ndata within 10 s")


async def run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.reflex_world import run_experiment

    wasm = build(RESPONDER)

    async def exp(session: EndpointSession) -> dict[str, Any]:
        return await experiment(session, reactor, wasm, args)

    conf = f"BusyPollUs {args.busy_poll_us}\n" if args.busy_poll_us else ""
    if args.reflex_warm_us is not None:
        conf += f"ReflexWarmUs {args.reflex_warm_us}\n"
    pin = split_cpus() if args.split else []
    if not args.breakdown:
        return await run_experiment(
            reactor, exp, sources=[RESPONDER], conf=conf, ctl_delay_ms=args.delay_ms,
            endpoint_argv=endpoint_under(pin),
        )  # fmt: skip
    # The same endpoint with timing probes (benchmarks/bench_reflex_probe.py).
    with tempfile.TemporaryDirectory(prefix="bench-reflex-probe-") as tmp:
        probe = Path(tmp) / "probe.jsonl"
        res = await run_experiment(
            reactor, exp, sources=[RESPONDER], conf=conf, ctl_delay_ms=args.delay_ms,
            endpoint_argv=lambda a: [*pin, sys.executable, "-m", PROBE, str(probe), *a],
        )  # fmt: skip
        res["breakdown"] = breakdown(probe)
    return res


STEPS = (
    ("sent", "the client's sendto (its clock)"),
    ("idle", "reactor entered epoll_wait"),
    ("wake", "epoll_wait returned"),
    ("notice", "the spin's epoll saw it (spin read)"),
    ("doread", "socket doRead"),
    ("recv", "recvmsg returned, RX stamp parsed"),
    ("gate", "reflex gate"),
    ("wasm_in", "reflex_packet called"),
    ("host_in", "its reflex_send host call entered"),
    ("host_out", "its reflex_send host call returned"),
    ("wasm_out", "reflex_packet returned"),
    ("nsend", "its send enters the nsend path"),
    ("submit", "nsend checks passed"),
    ("sendmsg_in", "sendmsg called"),
    ("sendmsg_out", "sendmsg returned"),
    ("tx", "kernel TX stamp"),
    ("done", "reflex gate returned"),
    ("minflt", "page faults during the path (a count, not µs)"),
    ("gc", "garbage collections during the path (a count, not µs)"),
)
COUNTS = ("minflt", "gc")  # steps that count events: reported with their mean
# The reaction's own steps, in order (each one's increment over the one before it).
CHAIN = ("notice", "doread", "recv", "gate", "wasm_in", "host_in", "host_out", "wasm_out",
         "nsend", "submit", "sendmsg_in", "tx", "sendmsg_out")  # fmt: skip


def breakdown(path: Path) -> dict[str, dict[str, float]]:
    """Per step of the reflex's datagrams (bench_reflex_probe.py): µs after the kernel RX
    stamp (p10, p50, p90), and as ``+name`` the step's own time (after the step before)."""
    steps: dict[str, list[float]] = {name: [] for name, _ in STEPS}
    steps |= {"+" + name: [] for name in CHAIN}
    if not path.exists():
        raise RuntimeError(f"the probing endpoint wrote no {path.name}")
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if "wasm_in" not in rec or "tx" not in rec:
            continue  # a controller round's datagram
        if rec.get("notice", 0) < 0:
            del rec["notice"]  # read by the reactor, not by the spin
        for name, _ in STEPS:
            if name in rec:
                steps[name].append(rec[name] / (1 if name in COUNTS else 1e3))
        prev = 0
        for name in CHAIN:
            if name in rec:
                steps["+" + name].append((rec[name] - prev) / 1e3)
                prev = rec[name]
    out = {name: summarize(v) for name, v in steps.items() if v}
    for name in COUNTS:
        if steps[name]:
            out[name]["mean"] = sum(steps[name]) / len(steps[name])
    return out


def cpu_per_packet(n: int) -> dict[str, float]:
    """The endpoint's CPU time per received datagram, in µs (process time: what load does
    not change), over the unit tests' fake sockets, with certificate limits: plain ndata
    delivery, and the responder reflex answering (and passing it on)."""
    sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "unit" / "endpoint")]
    from ep_fakes import T0, Rig, udp_open

    from packetlab import wire
    from packetlab.endpoint.limits import admit
    from packetlab.endpoint.reflexes import ReflexService
    from packetlab.endpoint.session import Session
    from packetlab.monitor.abi import Settings, encode
    from packetlab.ppks import CertLimits, generate_private_key, issue_certificate
    from packetlab.reflex import wire as rw
    from packetlab.wire.framer import Unknown

    wasm = build(RESPONDER)
    eop, exper, xc = (generate_private_key() for _ in range(3))
    chain = [
        issue_certificate("pubcmd", exper, xc, 0, 2**31 - 1),
        issue_certificate("exppriv", eop, exper, 0, 2**31 - 1,
                          limits=CertLimits(reflex_digests=(abi.digest(wasm),))),
    ]  # fmt: skip
    out = {}
    for mode in ("ndata only", "reflex"):
        r = Rig()
        gate = admit(chain, None, lambda: 1_700_000_000 * 10**9)
        r.session = Session(r.config, r.net, r.scheduler, r.clock, gate=gate)
        r.session.outbox.attach(lambda f: None)
        ReflexService(Settings()).install(r.session)
        for item in (wire.Start(), udp_open(1)):
            r.session.handle(item)
        if mode == "reflex":
            f = rw.Attach(1, abi.digest(wasm), b"\x01", encode(wasm)).frame()
            r.session.handle(Unknown(f[0], f[4:], 0))
        skt, io_ = r.skt(1), r.io(1)
        data = bytes(4) + b"probe" * 8
        c = time.process_time_ns()
        for _ in range(n):
            r.session.udp_received(skt, data, T0, b"\x7f\0\0\1", 4242)
            io_.sent.clear()
        out[mode] = (time.process_time_ns() - c) / n / 1e3
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--packets", type=int, default=100, help="probes per round and mode [100]")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds [3]")
    p.add_argument("--delay-ms", type=float, default=5.0, help="controller link delay, each way")
    p.add_argument("--gap-ms", type=float, default=2.0, help="pause between probes [2]")
    p.add_argument("--json", type=Path, help="write the results here too")
    p.add_argument(
        "--pin",
        type=int,
        metavar="CPU",
        help="run everything on this CPU (no cross-CPU wake-up between client and endpoint)",
    )
    add_cpu_options(p)
    p.add_argument(
        "--reflex-warm-us",
        type=int,
        metavar="N",
        help="ReflexWarmUs N in endpt.conf: rehearse the reflex every N µs while "
        "busy-polling [endpoint default: 100; 0: off]",
    )
    p.add_argument(
        "--hot",
        action="store_true",
        help="reflex rounds: the next probe as soon as the reply came (plus --gap-ms), "
        "without waiting for the controller to hear of the last: the path runs hot",
    )
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="run the endpoint with timing probes and print where the reflex's reaction goes",
    )
    p.add_argument(
        "--cpu", type=int, metavar="N", help="only: CPU µs per packet over fakes, N packets"
    )
    args = p.parse_args(argv)
    if args.pin is not None and args.split:
        p.error("--pin and --split exclude each other")
    if args.pin is not None:  # the endpoint and the relay inherit it
        os.sched_setaffinity(0, {args.pin})
    if args.cpu:
        for mode, us in cpu_per_packet(args.cpu).items():
            print(f"{mode}: {us:.1f} µs CPU per packet")
        return 0

    async def go(reactor: Any) -> None:
        report(args, await run(reactor, args))

    task.react(lambda r: defer.ensureDeferred(go(r)))  # exits the process
    return 0


def report(args: argparse.Namespace, res: dict[str, Any]) -> None:
    rows = []
    for mode in ("reflex", "controller"):
        rc, rtt = res[f"{mode}_reaction_us"], res[f"{mode}_rtt_us"]
        rows.append([
            mode, int(rc["n"]), f"{rc['p10']:.1f}", f"{rc['p50']:.1f}", f"{rc['p90']:.1f}",
            f"{rtt['p50']:.1f}", f"{rtt['p90']:.1f}",
        ])  # fmt: skip
    pinned = f", all on CPU {args.pin}" if args.pin is not None else ""
    if args.split:
        pinned = f", endpoint alone on CPU {SPLIT_CPUS[1]}, the rest on CPU {SPLIT_CPUS[0]}"
    poll = f"BusyPollUs {args.busy_poll_us}" if args.busy_poll_us else "no busy-poll"
    if args.busy_poll_us and args.reflex_warm_us is not None:
        poll += f", ReflexWarmUs {args.reflex_warm_us}"
    print(f"controller link: +{args.delay_ms:g} ms each way (delay relay), over TLS{pinned}; "
          f"{poll}: endpoint CPU {100 * res.get('endpoint_cpu', 0):.0f} % of one core")  # fmt: skip
    headers = [
        "logic in", "n", "reaction p10 µs", "reaction p50 µs", "reaction p90 µs",
        "client RTT p50 µs", "client RTT p90 µs",
    ]  # fmt: skip
    print(markdown_table(headers, rows))
    if "breakdown" in res:
        print("\nwhere the reflex's reaction goes (µs after the kernel RX stamp):")
        rows = []
        bd = res["breakdown"]
        for name, what in STEPS:
            st = bd.get(name)
            if st is not None:
                mean = f"{st['mean']:.2f}" if "mean" in st else ""
                own = bd.get("+" + name)
                rows.append([
                    name, what, *(f"{st[q]:.1f}" for q in ("p10", "p50", "p90")),
                    f"{own['p50']:.1f}" if own else "", mean,
                ])  # fmt: skip
        print(markdown_table(["step", "", "p10", "p50", "p90", "step p50", "mean (counts)"], rows))
    if args.json is not None:
        write_json(args.json, {"env": environment(), "args": vars(args) | {"json": None},
                               "results": res})  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
