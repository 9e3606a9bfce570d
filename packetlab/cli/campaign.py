"""``pktlab campaign MEASUREMENT ... --listen ADDR --endpoints N``: one measurement over
many endpoints at once. The controller waits for N endpoints (each connects by itself,
as endpoints do), then runs the `pktlab run` measurement on all of them concurrently,
every record tagged with the endpoint's hostid. Targets are replicated to every endpoint,
or dealt out among them with `--split`; `--sync-start S` starts every endpoint's run at
one moment S seconds after the last one connected.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import sys
from typing import Any

from packetlab.cli.exits import EXIT_NO_REPLY, EXIT_OK
from packetlab.cli.link import Link, add_link_arguments, listening_endpoint
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Command, Progress, Record, add_log_option

MEASUREMENTS = ("dns", "http", "throughput", "sendgap", "clocksync")

EPILOG = """\
examples:
  pktlab campaign dns --listen 20556 --endpoints 10 example.com example.net
  pktlab campaign http --listen 0.0.0.0:20556 --endpoints 3 --split --json \\
      https://a.example/ https://b.example/ https://c.example/
  pktlab campaign clocksync --listen 20556 --endpoints 5 --sync-start 1 --rounds 5
      # then start the endpoints (twistd pktendpoint ... CONTROLLER:20556)

Every record gets "endpoint" (the endpoint's HOSTID, or its address when it has none).
See docs/campaign.md.
"""


def command_of(name: str) -> Command:
    cmd: Command = importlib.import_module(f"packetlab.cli.run_{name}").COMMAND
    return cmd


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0].split("``: ", 1)[-1]
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="measurement", metavar="MEASUREMENT")
    sub.required = True
    for name in MEASUREMENTS:
        cmd = command_of(name)
        p = sub.add_parser(name, help=cmd.help, description=cmd.description, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        cmd.configure(p)
        p.add_argument("--endpoints", type=int, required=True, metavar="N",
                       help="wait for N endpoints, then measure from all of them")  # fmt: skip
        if cmd.split is not None:
            p.add_argument("--split", action="store_true",
                           help=f"deal the {cmd.split} out among the endpoints (default: "
                           "every endpoint gets all of them)")  # fmt: skip
        p.add_argument("--sync-start", type=float, default=None, metavar="S",
                       help="start every endpoint's run together, S s after the last "
                       "one connected")  # fmt: skip
        p.add_argument("--json", action="store_true", help="JSON lines")
        p.add_argument("--timeout", type=float, default=None, metavar="S",
                       help="give up waiting for the endpoints after S s")  # fmt: skip
        add_log_option(p)
        add_link_arguments(p)
        p.set_defaults(_command=cmd)


def deal(items: list[Any], n: int) -> list[list[Any]]:
    """Items dealt round-robin to n endpoints (an endpoint may get none)."""
    return [items[i::n] for i in range(n)]


async def campaign(reactor: Any, args: argparse.Namespace, emit: Any, progress: Progress) -> int:
    """Run the campaign; the number of endpoints that measured."""
    from twisted.internet.defer import Deferred, ensureDeferred, gatherResults

    from packetlab.controller import Controller, read_system_info
    from packetlab.measure.pool import SessionPool

    cmd: Command = args._command
    link = Link.from_args(args)
    if link.in_process:
        raise RunError("a campaign waits for endpoints: give --listen ADDR")
    n = args.endpoints
    if not 1 <= n <= 10_000:
        raise RunError("--endpoints must be 1..10000")
    pool = SessionPool(n, reactor)
    ctl: Controller[None] = Controller(pool.experiment, reactor=reactor, limit=n)
    where, _creds = listening_endpoint(reactor, link)
    port = await ctl.listen(where)
    h: Any = port.getHost()
    print(f"waiting for {n} endpoints on {h.host}:{h.port} ({link.describe()}) ...",
          file=sys.stderr)  # fmt: skip
    try:
        sessions = await pool.wait(args.timeout)
        names = []
        for s in sessions:
            info = await read_system_info(s)
            names.append(info.hostid or s.peer)
        per_args = []
        split = getattr(args, "split", False)
        parts = deal(list(getattr(args, cmd.split)), n) if split and cmd.split else None
        for i in range(n):
            a = copy.copy(args)
            if getattr(a, "pcap", None):  # one file per endpoint: FILE-HOSTID.pcap
                stem, dot, ext = str(a.pcap).rpartition(".")
                a.pcap = f"{stem}-{names[i]}.{ext}" if dot else f"{a.pcap}-{names[i]}"
            if parts is not None:
                assert cmd.split is not None
                setattr(a, cmd.split, parts[i])
            per_args.append(a)

        def tagged(name: str) -> Any:
            return lambda record: emit({**record, "endpoint": name})

        runs = []
        for s, a, name in zip(sessions, per_args, names, strict=True):
            if parts is not None and not getattr(a, cmd.split or ""):
                continue  # nothing dealt to this endpoint
            runs.append((cmd.experiment(a, tagged(name), progress), s))
        if args.sync_start is not None:
            d: Deferred[None] = Deferred()
            reactor.callLater(max(args.sync_start, 0.0), d.callback, None)
            await d
        await gatherResults([ensureDeferred(exp(s)) for exp, s in runs], consumeErrors=True)
        return len(runs)
    finally:
        pool.release()
        await ctl.stop()


def run(args: argparse.Namespace) -> int:
    from twisted.internet.defer import FirstError

    from packetlab.cli.interrupt import run_reactor

    cmd: Command = args._command
    records: list[Record] = []
    progress = Progress()

    def emit(record: Record) -> None:
        records.append(record)
        if args.json:
            line: str | None = json.dumps(record, sort_keys=True)
        else:
            row = cmd.row(record)
            line = (
                None
                if row is None
                else "\n".join(f"[{record['endpoint']}] {x}" for x in row.splitlines())
            )
        if line is not None:
            progress.write(line, sys.stdout)

    async def main(reactor: Any, stop: Any) -> int:
        progress.start(reactor, sys.stdout)
        try:
            endpoints = await campaign(reactor, args, emit, progress)
        except FirstError as e:  # one endpoint's run failed: its error, not the wrapper
            e.subFailure.raiseException()
        finally:
            progress.clear()
        failed = sum(1 for r in records if "error" in r)
        tags = sorted({str(r.get("endpoint")) for r in records})
        summary = {
            "type": "summary",
            "measurement": cmd.name,
            "endpoints": endpoints,
            "records": len(records),
            "errors": failed,
            "per_endpoint": {e: sum(1 for r in records if r.get("endpoint") == e) for e in tags},
        }
        text = f"# {endpoints} endpoints, {len(records)} records, {failed} errors"
        print(json.dumps(summary, sort_keys=True) if args.json else text, flush=True)
        return EXIT_NO_REPLY if failed else EXIT_OK

    return run_reactor(main, prog=f"pktlab campaign {cmd.name}", verbose=args.verbose)
