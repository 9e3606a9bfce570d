"""``pktlab run alias ADDR...``: MIDAR-style alias resolution (packetlab.measure.alias)."""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from packetlab.cli.run import RunError
from packetlab.cli.run_command import Command, Emit, Experiment, Progress, Record

EPILOG = """\
examples:
  pktlab run alias 10.77.3.10 10.77.3.11 10.77.3.12     # in-process endpoint (root)
  pktlab run alias --rounds 30 --json 192.0.2.1 192.0.2.9 198.51.100.7
  pktlab run alias --listen 10.77.1.1:20556 --endpoints 2 10.77.3.10 10.77.3.11
      # then two endpoints (raw sockets) connect: their clocks are synchronised and
      # their probes interleaved on one time axis

Every candidate gets an ICMP echo in turn, one global slot every --spacing ms, dealt
round-robin over (address, endpoint). Pairs whose merged IP-ID series passes the
monotonic bounds test are aliases. See docs/alias.md.
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", metavar="ADDR", nargs="+", help="candidate IPv4 addresses")
    p.add_argument("--rounds", type=int, default=10, metavar="N", help="probes per address [10]")
    p.add_argument("--spacing", type=float, default=2.0, metavar="MS",
                   help="ms between consecutive probes (all endpoints) [2]")  # fmt: skip
    p.add_argument("--wait", type=float, default=1.0, metavar="S", help="reply wait [1 s]")
    p.add_argument("--samples", action="store_true", help="also print every IP-ID sample")


def _targets(args: argparse.Namespace) -> list[str]:
    out = []
    for t in args.targets:
        try:
            a = ipaddress.ip_address(t)
        except ValueError:
            raise RunError(f"{t!r} is not an IP address") from None
        if a.version != 4:
            raise RunError(f"{t}: IPv6 has no IP-ID to compare; IPv4 only")
        out.append(str(a))
    if len(set(out)) < 2:
        raise RunError("give at least two different addresses")
    return out


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    from packetlab.measure.alias import alias_pairs, alias_sets, collect_ip_ids, velocity

    targets = _targets(args)
    if not 2 <= args.rounds <= 10_000 or not 0.05 <= args.spacing <= 10_000:
        raise RunError("--rounds must be 2..10000 and --spacing 0.05..10000 ms")

    async def run(sessions: Any) -> None:
        progress(f"alias: {len(targets)} addresses x {args.rounds} rounds")
        samples = await collect_ip_ids(
            sessions, targets, rounds=args.rounds, spacing=args.spacing / 1000, wait=args.wait
        )
        if args.samples:
            for s in samples:
                emit(s.to_dict())
        for t in targets:
            series = [(s.time_ns, s.ip_id) for s in samples if s.addr == t]
            v = velocity(series)
            emit({"type": "ipid-series", "addr": t, "samples": len(series),
                  "endpoints": len({s.endpoint for s in samples if s.addr == t}),
                  "usable": v is not None, "ids_per_s": v})  # fmt: skip
        pairs = alias_pairs(samples)
        for a, b in pairs:
            emit({"type": "alias", "a": a, "b": b})
        emit({"type": "alias-sets", "sets": alias_sets(pairs)})

    return run


def row(r: Record) -> str | None:
    t = r["type"]
    if t == "ipid-series":
        v = f"{r['ids_per_s']:.0f} IDs/s" if r["usable"] else "no usable counter"
        return f"# {r['addr']}: {r['samples']} samples from {r['endpoints']} endpoint(s), {v}"
    if t == "alias":
        return f"{r['a']} {r['b']}"
    if t == "alias-sets":
        return "\n".join("# router: " + " ".join(s) for s in r["sets"]) or None
    if t == "summary":
        return f"# {r['pairs']} alias pairs"
    return None


def summary(records: list[Record]) -> Record:
    return {"pairs": sum(1 for r in records if r["type"] == "alias")}


def budget(args: argparse.Namespace) -> float:
    return len(args.targets) * args.rounds * args.spacing / 1000 * 4 + args.wait + 15


COMMAND = Command(
    name="alias",
    help="MIDAR-style alias resolution (IP-ID monotonic bounds test)",
    description="Probe candidate IPv4 addresses with ICMP echo from one or more endpoints "
    "at synchronised, interleaved times and report the pairs whose IP-ID series could "
    "come from one shared counter (MIDAR's monotonic bounds test).",
    configure=configure,
    experiment=experiment,
    row=row,
    summary=summary,
    budget=budget,
    epilog=EPILOG,
    target=lambda args: args.targets[0],
    multi=True,
    raw=True,
)


def add_parser(sub: Any) -> None:
    from packetlab.cli.run_command import add_command

    add_command(sub, COMMAND)
