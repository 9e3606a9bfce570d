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
import dataclasses
import importlib
import os
import sys
from typing import Any

from packetlab.cli.campaign_run import Spares, Tally, measure_on
from packetlab.cli.link import Link, add_link_arguments, listen_on, listening_endpoint
from packetlab.cli.lost import Arrivals, lost_row
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Command, Progress, Record, add_log_option
from packetlab.hostport import host_port

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


# Wrapped by hand, as the `run` commands' link group.
LINK_ABOUT = (
    "The endpoints connect to --listen ADDR (required). The link is TLS 1.3 with the\n"
    "PPKS certificates of a `pktlab init` home unless --insecure-plaintext."
)
LISTEN_HELP = "listen on {forms} for the --endpoints N endpoints (required)"


def command_of(name: str) -> Command:
    cmd: Command = importlib.import_module(f"packetlab.cli.run_{name}").COMMAND
    return cmd


def add_arguments(parser: argparse.ArgumentParser) -> None:
    text = " ".join(__doc__.split("\n\n")[0].split("``: ", 1)[-1].split())
    parser.description = text[0].upper() + text[1:]
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
        p.add_argument("--replace", type=int, default=None, metavar="K",
                       help="replace up to K endpoints lost mid-campaign with endpoints "
                       "that connect beyond the N (spares, held until needed) [default: "
                       "N; 0: none, stop listening once the campaign starts]")  # fmt: skip
        p.add_argument("--json", action="store_true", help="JSON lines")
        p.add_argument("--timeout", type=float, default=None, metavar="S",
                       help="give up waiting for the endpoints after S s")  # fmt: skip
        add_log_option(p)
        add_link_arguments(p, about=LINK_ABOUT, listen=LISTEN_HELP)
        p.set_defaults(_command=cmd)


def deal(items: list[Any], n: int) -> list[list[Any]]:
    """Items dealt round-robin to n endpoints (an endpoint may get none)."""
    return [items[i::n] for i in range(n)]


def check_options(cmd: Command, args: argparse.Namespace) -> None:
    """The measurement's own options checked before waiting for endpoints (a bad
    --rounds is refused at once, not once every endpoint has connected): its experiment
    made once and dropped (no --pcap file made: those are per endpoint)."""
    a = copy.copy(args)
    if getattr(a, "pcap", None) == "-":  # (it made a file named `--HOSTID` each)
        raise RunError("--pcap -: a campaign writes one file per endpoint (FILE-HOSTID.pcap); "
                       "give a file name")  # fmt: skip
    if getattr(a, "pcap", None):  # FILE-HOSTID.pcap: at least its directory, now
        where = os.path.dirname(a.pcap) or "."
        if not os.path.isdir(where) or not os.access(where, os.W_OK | os.X_OK):
            raise RunError(f"--pcap {a.pcap}: cannot write there ({where} is not a "
                           "writable directory)")  # fmt: skip
        a.pcap = None
    cmd.experiment(a, lambda record: None, Progress())


async def campaign(
    reactor: Any,
    args: argparse.Namespace,
    emit: Any,
    progress: Progress,
    tally: Tally | None = None,
) -> int:
    """Run the campaign; the number of endpoints that measured (`tally` counts them as
    they start, and the ones lost and replaced: a run cut short still says how many)."""
    from packetlab.controller import Controller
    from packetlab.measure.pool import endpoint_name, endpoint_names

    cmd: Command = args._command
    link = Link.from_args(args)
    if link.in_process:
        raise RunError("a campaign waits for endpoints: give --listen ADDR")
    n = args.endpoints
    if not 1 <= n <= 10_000:
        raise RunError(f"--endpoints must be 1..10000, got {n}")
    replace = n if args.replace is None else args.replace
    if not 0 <= replace <= 10_000:
        raise RunError(f"--replace must be 0..10000, got {replace}")
    if args.timeout is not None and not args.timeout > 0:
        raise RunError(f"--timeout must be > 0, got {args.timeout:g}")
    if args.sync_start is not None and not 0 <= args.sync_start <= 86_400:
        raise RunError(f"--sync-start must be 0..86400, got {args.sync_start:g}")
    check_options(cmd, args)
    tally = Tally() if tally is None else tally
    tally.asked = n
    names: list[str] = []  # every name given so far

    def told(record: Record) -> None:
        """Gone while waiting for the start (or as a spare, not counted): told once."""
        tally.lost += 1
        emit(record)

    def here(latest: str) -> None:
        """On a terminal, while waiting: who has come (the runs' words replace it)."""
        progress(f"{len(arrivals.pool.waiting)} of {n} endpoints here (latest: {latest})")

    arrivals = Arrivals(n, reactor, told, spares=replace, here=here)
    pool, hostids = arrivals.pool, arrivals.hostids

    def name_of(session: Any) -> str:
        name = endpoint_name(hostids.get(session, ""), str(session.peer), names)
        names.append(name)
        return name

    ctl: Controller[None] = Controller(arrivals.arrive, reactor=reactor)
    where, _creds = listening_endpoint(reactor, link)
    port = await listen_on(ctl, where)
    print(f"waiting for {n} endpoint{'s' if n > 1 else ''} on {host_port(port.getHost())} "
          f"({link.describe()}) ...", file=sys.stderr)  # fmt: skip
    try:
        sessions = await pool.wait(args.timeout)
        arrivals.started = True
        tally.replaced = tally.lost  # each endpoint lost before the start: another came
        names += endpoint_names([hostids.get(s, "") for s in sessions],
                                [str(s.peer) for s in sessions])  # fmt: skip
        split = getattr(args, "split", False)
        parts = deal(list(getattr(args, cmd.split)), n) if split and cmd.split else None
        tally.split = cmd.split if parts is not None else None
        runs = []
        for i, (s, name) in enumerate(zip(sessions, names, strict=True)):
            a = copy.copy(args)
            if parts is not None:
                assert cmd.split is not None
                if not parts[i]:
                    continue  # nothing dealt to this endpoint
                setattr(a, cmd.split, parts[i])
            runs.append((name, a, s))
        if replace == 0:  # no spare wanted: later ones refused
            await ctl.stop_listening()
        spares = Spares(take=pool.take, name=name_of, hostid=lambda s: hostids.get(s, ""))
        progress.begin()  # from now on a Ctrl-C wraps the runs up (their records kept)
        await measure_on(reactor, cmd, runs, emit, progress, args.sync_start,
                         spares=spares, tally=tally)  # fmt: skip
        return len(runs)
    finally:
        pool.release()
        await ctl.stop()


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _share_words(record: Record) -> str:
    """`--split`: what an endpoint that failed or was lost leaves unmeasured."""
    if "share" not in record:
        return ""
    targets = ", ".join(record["share"])
    if record["type"] == "lost":  # (a spare may measure it yet: the summary says)
        return f"; its share: {targets}"
    if not record.get("records"):
        return f"; its share not measured: {targets}"
    return f"; its share not measured to the end: {targets}"


def campaign_command(cmd: Command, tally: Tally) -> Command:
    """`cmd` as `pktlab run` prints it, for a campaign: rows tagged `[NAME]`, an endpoint's
    error, loss and replacement as its rows, and the campaign's summary (`tally`: the
    endpoints asked for, used, lost and replaced)."""
    # The table's column names, tagged as the rows are, once, before the first of the
    # measurement's rows (http's; none before session 32: `[lab1]  404  335  0.593 ...`
    # said nothing of its columns). Not before an endpoint's error or loss: with -w the
    # rows print nothing, and the header would head no table.
    headed = [cmd.header is None or cmd.row_for is not None]

    def row(record: Record) -> str | None:
        t = record["type"]
        if t == "summary":
            text = (f"# {_count(record['asked'], 'endpoint')} asked, {record['used']} used, "
                    f"{record['lost']} lost, {record['replaced']} replaced; "
                    f"{_count(record['records'], 'record')}, "
                    f"{_count(record['errors'], 'error')}")  # fmt: skip
            if record.get("partial"):
                text += f"; partial: {', '.join(record['partial'])}"
            if record.get("incomplete"):
                shares = "; ".join(f"{who} ({', '.join(t)})"
                                   for who, t in record["incomplete"].items())  # fmt: skip
                text += f"; split incomplete: {shares}"
            if record.get("stop_reason") in ("INTERRUPTED", "ERROR"):
                text += " (cut short)"
            return text
        if t == "error":
            shown: str | None = f"error: {record['error']}" + _share_words(record)
        elif t == "lost":
            shown = lost_row(record) + _share_words(record)
        elif t == "replaced":
            shown = f"replaces {record['replaces']} ({record['address']})"
        else:
            shown = cmd.row(record)
        if shown is None:
            return None
        tagged = "\n".join(f"[{record['endpoint']}] {x}" for x in shown.splitlines())
        if t not in ("error", "lost", "replaced") and not headed[0]:
            headed[0] = True
            return f"[endpoint] {cmd.header}\n{tagged}"
        return tagged

    def summary(records: list[Record]) -> Record:
        tags = sorted({str(r.get("endpoint")) for r in records})
        return {
            "endpoints": tally.used,
            "asked": tally.asked,
            "used": tally.used,
            "lost": tally.lost,
            "replaced": tally.replaced,
            "partial": sorted(tally.partial),
            **({"incomplete": dict(sorted(tally.incomplete.items()))} if tally.split else {}),
            "records": len(records),
            "per_endpoint": {e: sum(1 for r in records if r.get("endpoint") == e) for e in tags},
            **({"endpoint_clocks": dict(sorted(tally.clocks.items()))} if tally.clocks else {}),
        }

    return dataclasses.replace(cmd, row=row, summary=summary, header=None, row_for=None,
                               status=None)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Records as they come (JSON lines, or the measurement's rows tagged `[HOSTID]`),
    then the summary; Ctrl-C and errors as `pktlab run` (run_command.measure): the first
    Ctrl-C lets the runs in flight finish within a grace and prints what they gathered."""
    from packetlab.cli.interrupt import run_reactor
    from packetlab.cli.run_command import measure

    cmd: Command = args._command
    tally = Tally(asked=args.endpoints)
    shown = copy.copy(args)
    shown._command = campaign_command(cmd, tally)

    async def on_endpoints(reactor: Any, _a: Any, emit: Any, progress: Progress) -> None:
        await campaign(reactor, args, emit, progress, tally)

    async def main(reactor: Any, stop: Any) -> int:
        progress = Progress()
        progress.start(reactor, sys.stdout)
        return await measure(reactor, shown, stop, sys.stdout, progress=progress,
                             run=on_endpoints)  # fmt: skip

    return run_reactor(main, prog=f"pktlab campaign {cmd.name}", verbose=args.verbose)
