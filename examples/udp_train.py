#!/usr/bin/env python3
"""A scheduled UDP packet train through a PacketLab endpoint, with a send-time report.

With no arguments everything runs on loopback: a UDP sink, a controller on 127.0.0.1, and
a PacketLab endpoint in this process (the `twistd pktendpoint` service), linked over TLS.
The controller schedules N datagrams at fixed gaps on the endpoint's clock (each nsend
carries its send time), then compares the intended times with the endpoint's ntag send
times: per-packet offsets and gap statistics.

    python examples/udp_train.py
    python examples/udp_train.py --count 1000 --gap-us 100
    python examples/udp_train.py --target 192.0.2.9:9000 --listen tcp:20556

The first Ctrl-C stops the train: no more datagrams are scheduled, the send times of
those already due are awaited briefly, and the report of what was sent follows (exit
status 130); a second Ctrl-C quits at once.
"""

from __future__ import annotations

import _startup  # noqa: F401  (first: a Ctrl-C while starting is one line, 130)

# isort: split
import argparse
import socket
import struct
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from _common import (
    add_link_args,
    address_port,
    host_port,
    number,
    react_stoppable,
    run_experiment,
)
from twisted.internet import defer, task
from twisted.internet.protocol import DatagramProtocol

from packetlab.controller import EndpointSession, StopSignal, TrainReport, send_train
from packetlab.controller.train import ENDPOINT_COMMAND, HERE, late_note, lead_note


class Sink(DatagramProtocol):
    """Counts datagrams and remembers the sequence numbers (first 4 bytes) it saw."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.count = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.count += 1
        if len(data) >= 4:
            self.seen.add(struct.unpack(">I", data[:4])[0])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=number(int, 1, 1_000_000), default=100,
                   help="datagrams, 1..1000000 (default: %(default)s)")  # fmt: skip
    p.add_argument("--gap-us", type=number(float, 0, 1e7), default=1000.0,
                   help="gap in µs (default: %(default)s)")  # fmt: skip
    p.add_argument("--size", type=number(int, 4, 65507), default=64,
                   help="payload bytes, 4..65507 (default: %(default)s)")  # fmt: skip
    p.add_argument("--target", type=address_port(None),
                   help="IP:PORT to send to (default: a local sink)")  # fmt: skip
    p.add_argument("--rows", type=int, default=10, help="packets listed (default: %(default)s)")
    p.add_argument(
        "--lead-ms",
        type=number(float, 0, 60_000),
        help="first packet this long after the endpoint's current time (default: adapts "
        "to the measured cost of a request and the gap, so every nsend is queued before its "
        "packet is due; a wait over 1 s is said on stderr)",
    )
    add_link_args(p, timeout=60.0, beyond="the train's own length (count x gap)")
    return p.parse_args(argv)


def run_timeout(args: argparse.Namespace) -> float:
    """The whole run's limit (s): --timeout plus the train's own length. A train longer
    than --timeout (10000 x 10 ms: 100 s, default 60 s) ended in "no result within 60 s:
    the experiment did not end", exit 2, with nothing of what it had sent (session 32)."""
    return float(args.timeout + args.count * args.gap_us / 1e6)


def us(ns: float | int | None) -> str:
    return "-" if ns is None else f"{ns / 1e3:10.1f}"


def report(rep: TrainReport, rows: int, sink: Sink | None, *, remote: bool = False) -> int:
    """Print the report; `remote`: the endpoint is another process (--listen)."""
    gap = rep.gap
    print(
        f"UDP train to {host_port(rep.raddr, rep.rport)}: {rep.count} datagrams, "
        f"gap {gap / 1e3:g} µs, sent {rep.sent_count}"
    )
    if rep.stopped:
        print(f"  stopped early: {rep.count - rep.sent_count} datagrams not sent")
    elif rep.sent_count < rep.count:  # why, once (an endpoint killed mid-train said nothing)
        n = rep.count - rep.sent_count
        print(f"  not sent: {n} datagram{'s' * (n != 1)} ({unsent_reasons(rep)})")
    if rep.queued_ahead is not None:
        ahead = rep.queued_ahead / 1e6
        print(
            f"  lead {rep.lead / 1e6:.1f} ms: "
            + (
                f"every nsend was queued at least {ahead:.1f} ms before its packet was due"
                if ahead >= 0
                else f"an nsend was queued {-ahead:.1f} ms AFTER its packet was due"
            )
        )
    if rep.queue_cost is not None:  # what the lead had to cover (it counts ~2-10x that)
        first = min(rep.count, rep.window)
        print(
            f"  the first {first} nsends took {rep.queue_cost * first / 1e6:.1f} ms to queue "
            f"({rep.queue_cost / 1e3:.1f} µs each)"
        )
    print(f"  {'#':>4}  {'intended µs':>11}  {'sent µs':>10}  {'offset µs':>10}  {'gap µs':>10}")
    t0 = rep.intended[0]
    prev: int | None = None
    for i in range(min(rows, rep.count)):
        sent = rep.sent[i]
        off = None if sent is None else sent - rep.intended[i]
        g = None if sent is None or prev is None else sent - prev
        rel = None if sent is None else sent - t0
        err = f"  {rep.errors[i]}" if rep.errors[i] else ""
        print(f"  {i:>4}  {us(rep.intended[i] - t0):>11}  {us(rel)}  {us(off)}  {us(g)}{err}")
        prev = sent
    if rep.count > rows:
        print(f"  ... ({rep.count - rows} more)")
    s = rep.summary()
    for key, label in (
        ("offset", "send offset (sent - intended)"),
        ("actual_gap", "actual gap"),
        ("abs_gap_error", "|gap error|"),
    ):
        q: Any = s[key]
        if q:
            print(
                f"  {label:<30} p50 {q['p50'] / 1e3:.1f} µs  p90 {q['p90'] / 1e3:.1f} µs  "
                f"p99 {q['p99'] / 1e3:.1f} µs  max {q['max'] / 1e3:.1f} µs"
            )
    note = late_note(rep, where=ENDPOINT_COMMAND if remote else HERE)
    if note is not None:
        print(f"  note: {note}")
    if sink is not None:
        print(f"  sink received {len(sink.seen)} of {rep.count} datagrams")
    return 0 if rep.sent_count == rep.count else 1


# what an nsend's error means to whoever ran the train
REASONS = {
    "ESKTPKTDENY": "refused by a certificate limit, an operator's rate cap or a monitor: "
    "the endpoint's log says which",
}


def unsent_reasons(rep: TrainReport) -> str:
    """The reasons of the packets not sent, most frequent first: "no ntag x829"."""
    why = Counter(e or "no ntag" for e, t in zip(rep.errors, rep.sent, strict=True) if t is None)
    return "; ".join(
        f"{e} x{n}" + (f": {REASONS[e]}" if e in REASONS else "") for e, n in why.most_common()
    )


async def main(reactor: Any, args: argparse.Namespace, stop: StopSignal | None = None) -> int:
    sink: Sink | None = None
    udp: Any = None
    if args.target is None:
        sink = Sink()
        udp = reactor.listenUDP(0, sink, interface="127.0.0.1")
        # The sink reads between the scheduler's 2 ms slices: room for a whole train
        # (each datagram takes ~1 KiB of buffer; the kernel caps this at rmem_max).
        udp.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        host, port = "127.0.0.1", udp.getHost().port
    else:
        host, port = args.target
    gap = round(args.gap_us * 1000)

    def on_lead(lead: int) -> None:  # a long wait for the first packet gets a word
        note = lead_note(lead, args.count)
        if note is not None:
            print(f"{Path(sys.argv[0]).name}: {note}", file=sys.stderr, flush=True)

    async def experiment(session: EndpointSession) -> TrainReport:
        lead = None if args.lead_ms is None else round(args.lead_ms * 1e6)
        return await send_train(
            session, host, port, args.count, gap, size=args.size, lead=lead, stop=stop,
            on_lead=on_lead,
        )  # fmt: skip

    args.timeout = run_timeout(args)  # (run_experiment's limit: the train's length too)
    try:
        rep = await run_experiment(reactor, args, experiment, targets=[host])
        if sink is not None:  # let the last datagrams land
            await task.deferLater(reactor, 0.2)
    finally:
        if udp is not None:
            await defer.maybeDeferred(udp.stopListening)
    return report(rep, args.rows, sink, remote=args.listen is not None)


def run(argv: list[str] | None = None) -> None:
    react_stoppable(main, parse_args(argv))


if __name__ == "__main__":
    run()
