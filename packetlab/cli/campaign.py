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
    if getattr(a, "pcap", None):  # FILE-HOSTID.pcap: at least its directory, now
        where = os.path.dirname(a.pcap) or "."
        if not os.path.isdir(where) or not os.access(where, os.W_OK | os.X_OK):
            raise RunError(f"--pcap {a.pcap}: cannot write there ({where} is not a "
                           "writable directory)")  # fmt: skip
        a.pcap = None
    cmd.experiment(a, lambda record: None, Progress())


class TaggedProgress(Progress):
    """One endpoint's view of the campaign's progress line: its words prefixed with its
    name (`[ep2] dns 3/10: ...`), the Ctrl-C stop and the line itself shared."""

    def __init__(self, inner: Progress, name: str) -> None:
        self._inner, self._name = inner, name

    def __call__(self, text: str) -> None:
        self._inner(f"[{self._name}] {text}")

    def __getattr__(self, attr: str) -> Any:  # stop, stopping, write, note, ...
        return getattr(self._inner, attr)

    @property
    def stopping(self) -> bool:
        return self._inner.stopping


async def measure_on(
    reactor: Any,
    cmd: Command,
    runs: list[tuple[str, argparse.Namespace, Any]],
    emit: Any,
    progress: Progress,
    sync_start: float | None = None,
) -> None:
    """`cmd` on every (endpoint name, its args, its session) at once, each record tagged
    with the name. An endpoint whose run fails (it went away, it lacks raw sockets, ...)
    gets one `"type": "error"` record; the others go on."""
    from twisted.internet.defer import CancelledError, Deferred, gatherResults
    from twisted.internet.task import deferLater

    def tagged(name: str) -> Any:
        return lambda record: emit({**record, "endpoint": name})

    async def one(name: str, a: argparse.Namespace, session: Any) -> None:
        try:
            await cmd.experiment(a, tagged(name), TaggedProgress(progress, name))(session)
        except CancelledError:
            raise
        except Exception as e:  # this endpoint's failure, not the campaign's
            emit({"type": "error", "endpoint": name, "error": str(e) or type(e).__name__})

    if sync_start is not None:  # (deferLater: a Ctrl-C's cancel also cancels the timer)
        await deferLater(reactor, max(sync_start, 0.0))
    experiments = [one(name, a, s) for name, a, s in runs]
    await gatherResults([Deferred.fromCoroutine(e) for e in experiments], consumeErrors=True)


async def campaign(
    reactor: Any,
    args: argparse.Namespace,
    emit: Any,
    progress: Progress,
    counted: list[int] | None = None,
) -> int:
    """Run the campaign; the number of endpoints that measured (also in `counted[0]` as
    soon as they start: a run cut short still says how many)."""
    from packetlab.controller import Controller, read_system_info
    from packetlab.measure.pool import SessionPool, endpoint_names

    cmd: Command = args._command
    link = Link.from_args(args)
    if link.in_process:
        raise RunError("a campaign waits for endpoints: give --listen ADDR")
    n = args.endpoints
    if not 1 <= n <= 10_000:
        raise RunError("--endpoints must be 1..10000")
    check_options(cmd, args)
    pool = SessionPool(n, reactor)
    ctl: Controller[None] = Controller(pool.experiment, reactor=reactor, limit=n)
    where, _creds = listening_endpoint(reactor, link)
    port = await ctl.listen(where)
    h: Any = port.getHost()
    print(f"waiting for {n} endpoint{'s' if n > 1 else ''} on {h.host}:{h.port} "
          f"({link.describe()}) ...", file=sys.stderr)  # fmt: skip
    try:
        sessions = await pool.wait(args.timeout)
        hostids = []
        for s in sessions:
            try:
                hostids.append((await read_system_info(s)).hostid)
            except Exception:  # gone already: its run fails into its error record
                hostids.append("")
        names = endpoint_names(hostids, [str(s.peer) for s in sessions])
        split = getattr(args, "split", False)
        parts = deal(list(getattr(args, cmd.split)), n) if split and cmd.split else None
        runs = []
        for i, (s, name) in enumerate(zip(sessions, names, strict=True)):
            a = copy.copy(args)
            if getattr(a, "pcap", None):  # one file per endpoint: FILE-HOSTID.pcap
                stem, dot, ext = str(a.pcap).rpartition(".")
                a.pcap = f"{stem}-{name}.{ext}" if dot else f"{a.pcap}-{name}"
            if parts is not None:
                assert cmd.split is not None
                if not parts[i]:
                    continue  # nothing dealt to this endpoint
                setattr(a, cmd.split, parts[i])
            runs.append((name, a, s))
        if counted is not None:
            counted[0] = len(runs)
        progress.begin()  # from now on a Ctrl-C wraps the runs up (their records kept)
        await measure_on(reactor, cmd, runs, emit, progress, args.sync_start)
        return len(runs)
    finally:
        pool.release()
        await ctl.stop()


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def campaign_command(cmd: Command, endpoints: list[int]) -> Command:
    """`cmd` as `pktlab run` prints it, for a campaign: rows tagged `[HOSTID]`, an
    endpoint's error as its row, and the campaign's summary (`endpoints[0]`: how many
    measured)."""

    def row(record: Record) -> str | None:
        t = record["type"]
        if t == "summary":
            text = "# " + ", ".join(
                _count(record[k], k[:-1]) for k in ("endpoints", "records", "errors")
            )
            if record.get("stop_reason") in ("INTERRUPTED", "ERROR"):
                text += " (cut short)"
            return text
        shown = f"error: {record['error']}" if t == "error" else cmd.row(record)
        if shown is None:
            return None
        return "\n".join(f"[{record['endpoint']}] {x}" for x in shown.splitlines())

    def summary(records: list[Record]) -> Record:
        tags = sorted({str(r.get("endpoint")) for r in records})
        return {
            "endpoints": endpoints[0],
            "records": len(records),
            "per_endpoint": {e: sum(1 for r in records if r.get("endpoint") == e) for e in tags},
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
    endpoints = [0]
    shown = copy.copy(args)
    shown._command = campaign_command(cmd, endpoints)

    async def on_endpoints(reactor: Any, _a: Any, emit: Any, progress: Progress) -> None:
        await campaign(reactor, args, emit, progress, endpoints)

    async def main(reactor: Any, stop: Any) -> int:
        progress = Progress()
        progress.start(reactor, sys.stdout)
        return await measure(reactor, shown, stop, sys.stdout, progress=progress,
                             run=on_endpoints)  # fmt: skip

    return run_reactor(main, prog=f"pktlab campaign {cmd.name}", verbose=args.verbose)
