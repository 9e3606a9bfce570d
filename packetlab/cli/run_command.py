"""What every record-printing `pktlab run` sub-command shares (dns, http, throughput, ...).

A sub-command module declares a `Command`: its options, an experiment that emits result
records (dicts with a "type") as they come, a one-line text form of a record, and a
summary. This module adds the link options (in-process endpoint by default, `--listen`),
runs the experiment, prints each record at once (a table row, or a JSON line with
`--json`) and ends with one `"type": "summary"` record (with start and stop times and a
stop reason, as the ping and traceroute summaries). Records go to stdout, progress
and diagnostics to stderr (the progress line only on a terminal).

The first Ctrl-C once a measurement runs: no new query, URL, run, ... is started
(`progress.stopping`), the one in flight gets `GRACE_S` to finish, then the run ends
with what it gathered and the summary (`stop_reason` INTERRUPTED), exit status 130.
What is still in flight then is cancelled; a command that `answers_cancel` (sendgap)
reports what it answers the cancel with (the part of a train that went out).
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from packetlab.cli.exits import EXIT_NO_REPLY, EXIT_OK
from packetlab.cli.link import (
    BroadcastTarget,
    Link,
    LinkError,
    add_link_arguments,
    listen_on,
    listening_endpoint,
    route_source,
    run_on_link,
)
from packetlab.cli.runclock import RunClock
from packetlab.hostport import host_port

if TYPE_CHECKING:
    from packetlab.controller.stop import StopSignal

Record = dict[str, Any]
Emit = Callable[[Record], None]
Experiment = Callable[[Any], Coroutine[Any, Any, None]]  # session -> None, emitting records

RESOLV_CONF = Path("/etc/resolv.conf")
GRACE_S = 1.0  # after the first Ctrl-C: how long the query/fetch/run in flight may finish
BUF_MAX = 256 << 20  # the in-process endpoint's BufMax: room for a masked bulk download


class Progress:
    """A measurement's status as it goes (`progress("dns 3/10: ...")`), drawn by
    `packetlab.cli.progress` on a terminal once a run takes over a second; record lines
    go through `write` so the two never mix. Before `start` (tests) it only remembers.

    `stopping` is true once the run was asked to wrap up (the first Ctrl-C): an
    experiment checks it before each new query, URL or run and returns when it is."""

    def __init__(self) -> None:
        self.text = ""
        self._line: Any = None
        self.stop: StopSignal | None = None
        self.on_begin: Callable[[], object] | None = None
        # the summary's start and stop: on the endpoint's clock once `begun` read it
        self.clock = RunClock()

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.requested

    def begin(self) -> None:
        """The experiment runs on its session(s): from now on a Ctrl-C wraps it up."""
        if self.on_begin is not None:
            self.on_begin()

    def start(self, reactor: Any, out: TextIO) -> None:
        from packetlab.cli.progress import Progress as Line

        self._line = Line(reactor, lambda: self.text, out=out)

    def __call__(self, text: str) -> None:
        self.text = text

    def write(self, line: str, out: TextIO) -> None:
        if self._line is not None:
            self._line.write(line)
        else:
            from packetlab.cli.progress import write_text

            write_text(out, line + "\n")
            out.flush()

    def note(self, text: str) -> None:
        """A diagnostic line on stderr (not a record), clear of the progress line."""
        if self._line is not None:
            self._line.note(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def clear(self) -> None:
        if self._line is not None:
            self._line.stop()
            self._line = None


@dataclass
class Command:
    """A measurement sub-command. `experiment(args, emit, progress)` returns the coroutine
    function run on the endpoint session; `row(record)` is its text form (None: not
    shown); `summary(records)` the fields of the final summary record; `budget(args)` the
    default --timeout (s) with the in-process endpoint; `target(args)` the address the
    in-process endpoint should send from a route to (None: loopback)."""

    name: str
    help: str
    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    experiment: Callable[[argparse.Namespace, Emit, Progress], Experiment]
    row: Callable[[Record], str | None]
    summary: Callable[[list[Record]], Record]
    budget: Callable[[argparse.Namespace], float]
    epilog: str = ""
    target: Callable[[argparse.Namespace], str | list[str] | None] = field(
        default=lambda args: None
    )
    header: str | None = None  # first line of the table
    multi: bool = False  # the experiment takes a list of sessions (--endpoints N)
    raw: bool = False  # the in-process endpoint needs raw sockets
    # ... and the measurement cannot do without them (`run alias`; `run dns` only
    # uses them for a closed port's ICMP): checked before the in-process endpoint starts
    raw_needed: bool = False
    # with no target, the in-process endpoint exports ::1 too (when this host has it): a
    # URL may name an IPv6 host (`run http http://[::1]:8080/`; it was ESKTNOPRFAM)
    both_families: bool = False
    split: str | None = None  # the args list `pktlab campaign --split` deals out (targets)
    # the text form chosen by the options (`dns +short`); None: `row`
    row_for: Callable[[argparse.Namespace], Callable[[Record], str | None]] | None = None
    # the exit status from the records and ours (0, or 1 when a record failed): `dns
    # --dig-exit-codes`; that of an error (None: ours, 2); that of a usage error argparse
    # refuses, from the words (`cli._Parser`)
    status: Callable[[argparse.Namespace, list[Record], int], int] | None = None
    error_status: Callable[[argparse.Namespace, BaseException], int | None] | None = None
    usage_status: Callable[[Sequence[str]], int] | None = None
    # the experiment answers the cancel at the grace's end at once with what it gathered
    # (the records it emits within the cancel are results: a sendgap train cut mid-way)
    answers_cancel: bool = False
    # its records' times are the endpoint's, and so are the summary's start and stop
    # (`packetlab.cli.runclock`); False: ours (`run alias` maps its stamps onto our clock)
    endpoint_clock: bool = True
    # the run needs the endpoint's clock from its start (`progress.clock.now()`,
    # `runclock.now_of`): before the endpoint answered anything (curl's --trace-time
    # `Trying` line, iperf3's authtoken, a TSIG signature); with an endpoint_clock, it is
    # read, and answered, before the experiment
    clock_first: Callable[[argparse.Namespace], bool] | None = None
    # the run prints times of the endpoint's clock, each once the endpoint answered (dig's
    # WHEN and +yaml's, iperf3's -J and --timestamps): it is read before the experiment,
    # pipelined, not waited for (its answer comes before any later request's; waiting
    # put a round trip before every default `run dns`)
    clock_read: Callable[[argparse.Namespace], bool] | None = None


def add_link_options(p: argparse.ArgumentParser) -> None:
    """--json, --timeout, -v, and the link options of every pktlab run command (cli/link)."""
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="give up after S seconds (default: the measurement's worst case + 30 s with "
        "the in-process endpoint, no limit with --listen)",
    )
    add_log_option(p)
    add_link_arguments(p)


def add_log_option(p: argparse.ArgumentParser) -> None:
    """-v: the link's log (the endpoint, the controller) to stderr; `--link-log` where the
    command's own -v means something else (`run http`: curl's verbose lines)."""
    if "-v" in p._option_string_actions:
        p.add_argument("--link-log", dest="verbose", action="store_true",
                       help="the link's log (the endpoint, the controller) to stderr")  # fmt: skip
    else:
        p.add_argument("-v", "--verbose", action="store_true", help="log to stderr")


def add_command(sub: Any, cmd: Command) -> argparse.ArgumentParser:
    """Register `cmd` under `pktlab run` (the one line each module adds to run.py)."""
    p: argparse.ArgumentParser = sub.add_parser(
        cmd.name,
        help=cmd.help,
        description=cmd.description,
        epilog=cmd.epilog or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.configure(p)
    add_link_options(p)
    if cmd.usage_status is not None:
        p.usage_status = cmd.usage_status  # type: ignore[attr-defined]
    if cmd.multi:
        p.add_argument(
            "--endpoints",
            type=int,
            default=1,
            metavar="N",
            help="with --listen: wait for N endpoints and measure from all of them [1]",
        )
    p.set_defaults(_command=cmd)
    return p


def resolv_conf_servers(path: Path = RESOLV_CONF) -> tuple[list[str], list[str]]:
    """(IPv4, IPv6) nameservers of resolv.conf; empty when it is missing."""
    from packetlab.measure.resolvconf import resolver_of  # (not measure.dns: no dnspython)

    try:
        text = path.read_text()
    except OSError:
        return [], []
    servers = [ipaddress.ip_address(a) for a in resolver_of(text)]
    return [str(a) for a in servers if a.version == 4], [str(a) for a in servers if a.version == 6]


def in_process_options(path: Path = RESOLV_CONF) -> list[str]:
    """pktendpoint options beyond run.py's: DNS servers from resolv.conf and a BufMax
    big enough for a bulk transfer held while its ndata are masked."""
    v4, v6 = resolv_conf_servers(path)
    out = ["--buf-max", str(BUF_MAX)]
    if v4:
        out += ["--dns-ipv4", ",".join(v4[:16])]
    if v6:
        out += ["--dns-ipv6", ",".join(v6[:16])]
    return out


def render(
    cmd: Command, record: Record, as_json: bool, args: argparse.Namespace | None = None
) -> str | None:
    if as_json:
        return json.dumps(record, sort_keys=True)
    if args is not None and cmd.row_for is not None:
        return cmd.row_for(args)(record)
    return cmd.row(record)


def begun(
    experiment: Any,
    progress: Progress,
    endpoint_clock: bool = True,
    first: bool = False,
    last: bool = True,
) -> Any:
    """`experiment`, telling `progress` when it starts on its session(s); on one session
    (not a list: --endpoints), with `endpoint_clock`, `progress.clock` reads the
    endpoint's clock around it (`first`: answered before it starts; `last`: read after
    it, for a --json summary)."""

    async def run(sessions: Any) -> None:
        progress.begin()
        if endpoint_clock and not isinstance(sessions, list):
            await progress.clock.around(experiment, first=first, last=last)(sessions)
        else:
            await experiment(sessions)

    return run


def clock_reads(cmd: Command, args: argparse.Namespace) -> tuple[bool, bool]:
    """Whether a run of `cmd` reads the endpoint's clock around its experiment, and
    whether the first read is answered before it starts (`begun`). The summary's times
    are printed with --json only: no read for the text but what it prints
    (`clock_read`) or needs from its start (`clock_first`)."""
    first = cmd.clock_first is not None and cmd.clock_first(args)
    read = cmd.clock_read is not None and cmd.clock_read(args)
    return cmd.endpoint_clock and (args.json or first or read), first


async def execute(reactor: Any, args: argparse.Namespace, emit: Emit, progress: Progress) -> None:
    """Run the command's experiment on the link of `args` (in-process endpoint or
    --listen), records to `emit`."""
    cmd: Command = args._command
    link = Link.from_args(args)
    timed, first = clock_reads(cmd, args)
    experiment = begun(cmd.experiment(args, emit, progress), progress, timed, first, args.json)
    if cmd.multi:
        many = experiment
        if not link.in_process and args.endpoints > 1:
            await _with_pool(reactor, link, args, many)
            return

        async def experiment(session: Any) -> None:
            await many([session])

    def refused(text: str) -> None:
        print(f"pktlab run {cmd.name}: {text}", file=sys.stderr)

    if not link.in_process:

        def listening(port: Any) -> None:
            print(f"waiting for an endpoint on {host_port(port.getHost())} ({link.describe()}) ...",
                  file=sys.stderr)  # fmt: skip

        await run_on_link(reactor, link, experiment, timeout=args.timeout,
                          on_listening=listening, on_refusal=refused)  # fmt: skip
        return
    if cmd.raw_needed:
        # (was `nopen failed: EUNKFAULT` once the first probe's socket was refused)
        from packetlab.cli.run_host import check_raw_permission

        check_raw_permission()
    target = cmd.target(args)
    srcs: list[Any] = []  # one a family: the first target's of it (run dns @v4 @v6)
    for each in [target] if isinstance(target, str) else target or []:
        addr = ipaddress.ip_address(each)
        src = addr if addr.is_loopback else route_source(addr)
        if addr.is_loopback:  # 127.255.255.255 went on to `0 of N sent`, exit 1
            try:
                route_source(addr)
            except BroadcastTarget:
                raise
            except LinkError:  # its address is the source, as before
                pass
        if all(s.version != src.version for s in srcs):
            srcs.append(src)
    srcs = srcs or [ipaddress.ip_address("127.0.0.1")]
    if target is None and cmd.both_families and _has_loopback_v6():
        srcs.append(ipaddress.ip_address("::1"))
    transproto = "raw,tcp,udp" if cmd.raw else "tcp,udp"
    timeout = args.timeout if args.timeout is not None else cmd.budget(args) + 30.0
    await run_on_link(reactor, link, experiment, addresses=srcs, transproto=transproto,
                      timeout=timeout, on_refusal=refused, extra=in_process_options())  # fmt: skip


def _has_loopback_v6() -> bool:
    """Whether ::1 can be bound here (IPv6 on, the loopback address configured)."""
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def _with_pool(
    reactor: Any, link: Link, args: argparse.Namespace, experiment: Experiment
) -> None:
    """--listen with --endpoints N: wait for N endpoints, run on all of them at once.

    As a campaign: each endpoint is read for its HOSTID first; one lost before the start
    (closed, cut, silent past the answer watchdog) is said once on stderr with its HOSTID
    and address, and its place waits for another. Once all N are here the listener closes
    (later endpoints are refused)."""
    from packetlab.cli.lost import Arrivals, lost_row
    from packetlab.controller import Controller

    prog = f"pktlab run {args._command.name}"

    def told(record: Record) -> None:
        print(f"{prog}: {lost_row(record)}; waiting for another endpoint", file=sys.stderr)

    arrivals = Arrivals(args.endpoints, reactor, told)
    pool = arrivals.pool
    ctl: Controller[None] = Controller(arrivals.arrive, reactor=reactor)
    where, _creds = listening_endpoint(reactor, link)
    port = await listen_on(ctl, where)
    where_at = host_port(port.getHost())
    print(f"waiting for {args.endpoints} endpoints on {where_at} ({link.describe()}) ...",
          file=sys.stderr)  # fmt: skip
    try:
        sessions = await pool.wait(args.timeout)
        arrivals.started = True
        await ctl.stop_listening()  # all here: later endpoints are refused
        await experiment(sessions)
    finally:
        pool.release()
        await ctl.stop()


async def measure(
    reactor: Any,
    args: argparse.Namespace,
    stop: StopSignal,
    out: TextIO,
    *,
    progress: Progress | None = None,
    run: Callable[[Any, argparse.Namespace, Emit, Progress], Coroutine[Any, Any, None]] = execute,
) -> int:
    """Run `args._command` through `run` (default: `execute`, on its link), printing each
    record as it comes, then the summary; the exit status (0, or 1 when a record failed).
    Once the experiment has begun, `stop` (the first Ctrl-C) stops it starting anything
    new and, `GRACE_S` later, cancels what is in flight; the summary still follows."""
    from twisted.internet.defer import CancelledError, Deferred

    cmd: Command = args._command
    records: list[Record] = []
    progress = Progress() if progress is None else progress
    progress.stop = stop
    args._clock = progress.clock  # the text forms' times (`runclock.now_of`)
    shown_header = [False]
    cut = [False]  # the run was cancelled: what its teardown emits is not a result
    # ... but what a measurement that `answers_cancel` emits within the cancel is (a
    # sendgap train cut mid-way: what went out before the cut)
    cutting = [False]

    def emit(record: Record) -> None:
        if cut[0] or (cutting[0] and not cmd.answers_cancel):
            return
        records.append(record)
        line = render(cmd, record, args.json, args)
        if line is None:
            return
        if not args.json and cmd.header and cmd.row_for is None and not shown_header[0]:
            progress.write(cmd.header, out)
            shown_header[0] = True
        progress.write(line, out)

    outcome: Deferred[None] = Deferred()  # the run's end, or the end of the grace
    watching: list[Deferred[str]] = []
    running: list[Deferred[None]] = []

    def settle(result: Any) -> None:
        if not outcome.called and not cutting[0]:
            outcome.callback(result)  # a Failure goes down the errback chain
        # after the grace: the cancelled run's late end (or error) is not a result

    def cut_short() -> None:
        # The query, fetch or transfer in flight had its grace: stop waiting for it. It is
        # cancelled too, but cancelling need not end it at once (some waits end only at
        # their timeout), so the result is not waited for.
        if not outcome.called:
            cutting[0] = True  # (the cancel's partial records come within it)
            running[0].cancel()
            cut[0] = True
            if not outcome.called:
                outcome.callback(None)

    def wrap_up(reason: str) -> None:
        if not outcome.called:
            timer = reactor.callLater(GRACE_S, cut_short)
            outcome.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])

    def watch() -> None:
        d = stop.when_requested()
        d.addCallbacks(wrap_up, lambda f: f.trap(CancelledError))
        watching.append(d)

    progress.on_begin = watch  # before the run starts (it may begin at once)
    running.append(Deferred.fromCoroutine(run(reactor, args, emit, progress)))
    running[0].addBoth(settle)
    try:
        await outcome
    except Exception as e:
        # The run failed once under way (--timeout, the endpoint gone): what it gathered
        # still gets its summary, then the error is the command's (one line, status 2).
        if watching and not isinstance(e, BrokenPipeError):
            cut[0] = True
            _summarise(cmd, records, progress.clock, "ERROR", args, out, error=str(e))
        raise
    finally:
        for d in watching:
            if not d.called:
                d.cancel()
        progress.clear()
    interrupted = stop.requested and stop.reason == "interrupted"
    reason = "INTERRUPTED" if interrupted else "COMPLETED"
    failed = _summarise(cmd, records, progress.clock, reason, args, out)
    code = EXIT_NO_REPLY if failed else EXIT_OK
    return code if cmd.status is None else cmd.status(args, records, code)


def _summarise(
    cmd: Command,
    records: list[Record],
    clock: RunClock,
    reason: str,
    args: argparse.Namespace,
    out: TextIO,
    error: str | None = None,
) -> int:
    """Print the summary record; the number of records that failed."""
    summary: Record = {
        "type": "summary",
        "measurement": cmd.name,
        "tool": "packetlab",
        **clock.fields(),
        "stop_reason": reason,
        **cmd.summary(records),
    }
    if error is not None:
        summary["error"] = error
    failed = sum(1 for r in records if "error" in r)
    summary.setdefault("errors", failed)
    line = render(cmd, summary, args.json, args)
    if line is not None:
        out.write(line + "\n")
    out.flush()
    return failed


def run_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run `args._command` in the global reactor (Ctrl-C and errors as every pktlab run
    command: packetlab.cli.interrupt); print records as they come, then the summary."""
    from packetlab.cli.interrupt import run_reactor

    stdout = sys.stdout if out is None else out
    cmd: Command = args._command

    async def main(reactor: Any, stop: StopSignal) -> int:
        progress = Progress()
        progress.start(reactor, stdout)
        return await measure(reactor, args, stop, stdout, progress=progress)

    error_status = None
    if cmd.error_status is not None:
        error_status = functools.partial(cmd.error_status, args)
    return run_reactor(main, prog=f"pktlab run {cmd.name}", verbose=args.verbose,
                       error_status=error_status)  # fmt: skip


def parse_args(cmd: Command, argv: Sequence[str]) -> argparse.Namespace:
    """Parse `argv` for `cmd` alone (tests and `python -m packetlab.cli.run_NAME`)."""
    from packetlab.cli import _Parser

    parser = _Parser(prog=f"pktlab run {cmd.name}")
    sub = parser.add_subparsers(dest="measurement")
    add_command(sub, cmd)
    return parser.parse_args([cmd.name, *argv])
