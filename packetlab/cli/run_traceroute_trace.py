"""``pktlab run traceroute``'s run: its experiment on a session (a traceroute, or an MDA
trace with --mda and its routers with --multilevel), the hops printed in order as their
names are looked up, the report, the default --timeout, the warts file and the exit
status. The parts it shares with ping are `packetlab.cli.run_measure`'s."""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from packetlab.cli.exits import EXIT_OK
from packetlab.cli.link import Link, LinkError
from packetlab.cli.run import Address, RunError, resolve_target
from packetlab.cli.run_host import interface_address, path_mtu, route_mtus
from packetlab.cli.run_measure import (
    on_link,
    resolver,
    run_with_warts,
    session_source,
    source_address,
    write_whole,
)
from packetlab.cli.run_traceroute_checks import (
    LINUX_TCP_SYSCTLS,
    MDA_METHOD,
    check_options,
    default_port,
    gateways,
    host_tcp_sysctl,
    tcp_flavor,
    traceroute_shape,
)

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from packetlab.cli.report_traceroute import MdaReport, TracerouteReport
    from packetlab.controller.stop import StopSignal
    from packetlab.measure.records_traceroute import TracerouteResult


def run_traceroute(args: argparse.Namespace) -> int:
    """The traceroute of `args` in the reactor: its lines, its summary, --warts; 0."""

    async def measured(reactor: Any, stop: StopSignal, warts: BinaryIO | None) -> int:
        from packetlab.cli.report_traceroute import MdaReport
        from packetlab.measure.records_traceroute import TracerouteResult

        result, report = await measure_traceroute(reactor, args, stop)
        interrupted = stop.requested and stop.reason == "interrupted"
        if isinstance(report, MdaReport):
            report.finish(result, interrupted)
            if warts is not None:
                write_tracelb_warts(warts, args, result, report.multilevel)
            return EXIT_OK
        assert isinstance(result, TracerouteResult)
        report.finish(result, interrupted)
        if warts is not None:
            write_warts(warts, args, result, interrupted)
        return EXIT_OK

    return run_with_warts(args, measured)


async def measure_traceroute(
    reactor: Any, args: argparse.Namespace, stop: StopSignal | None = None
) -> tuple[Any, TracerouteReport | MdaReport]:
    """Run the traceroute of `args`, printing as it goes; the result and its report
    (whose `finish` prints the summary)."""
    if stop is None:
        from packetlab.controller.stop import StopSignal

        stop = StopSignal()
    shape = check_options(args)
    link = Link.from_args(args)
    try:
        dst = resolve_target(args.target, args.family, like="traceroute")
    except RunError as e:  # (traceroute's second line after the resolver's)
        from packetlab.cli.run_traceroute_words import host_not_handled

        argc = getattr(args, "_host_argc", None)
        raise RunError(host_not_handled(e, args.target, argc)) from None
    args.gateway_addrs = gateways(args.gateways, dst)
    args.tcp_flavor = None
    if args.protocol == "tcp" or args.tcp_spec is not None:
        args.tcp_flavor = (
            tcp_flavor(args.tcp_spec, host_tcp_sysctl, path_mtu(dst), dst.version)
            if link.in_process
            else tcp_flavor(args.tcp_spec, LINUX_TCP_SYSCTLS.__getitem__, 1500, dst.version)
        )
    src, _ = source_address(args, link, dst)
    if args.src is None and args.interface is not None:
        if not link.in_process:  # (traceroute -i: the source address on IFACE)
            raise RunError(
                f"-i {args.interface}: an endpoint reached with --listen exports addresses, "
                "not interfaces: give one of them with -s"
            )
        src = interface_address(args.interface, dst.version, option="-i")
    signal = stop  # (narrowed, for the closures below)

    def report_for(frm: Address | None, ifname: str | None) -> TracerouteReport | MdaReport:
        return traceroute_report(reactor, args, dst)

    def experiment_for(
        frm: Address | None,
        stamp: str,
        report: TracerouteReport | MdaReport,
        local: bool,
        ifname: str | None,
    ) -> Callable[[Any], Awaitable[Any]]:
        return experiment(args, dst, frm, stamp, report, signal, local=local, shape=shape)

    return await on_link(
        reactor, args, link, dst, src, None, report_for, experiment_for,
        lambda: budget(args), lambda: _endpoint_extra(args),
    )  # fmt: skip


def experiment(
    args: argparse.Namespace,
    dst: Address,
    src: Address | None,
    stamp: str,
    report: TracerouteReport | MdaReport,
    stop: StopSignal,
    local: bool = False,
    shape: tuple[int | None, int] = (None, 0),
) -> Callable[[Any], Awaitable[Any]]:
    """The traceroute of `args` (an MDA trace with --mda) as a function of a session.
    `shape`: traceroute's packetlen and TOS, checked (`traceroute_shape`)."""
    from twisted.internet.defer import DeferredList, succeed

    from packetlab.cli.report_traceroute import MdaReport, TracerouteReport
    from packetlab.measure.traceroute import traceroute
    from packetlab.measure.traceroute_probes import PARIS, TCP_METHODS

    failed: list[LinkError] = []  # an error a report raised as it printed (-A's server)

    def named_hops(
        session: Any, addrs_of: Callable[[Any], list[Any]]
    ) -> tuple[Callable[[Any], None], Deferred[object]]:
        """An `on_hop` that prints hops in order, each once its addresses' names are looked
        up (not with -n), and the Deferred that fires when the last one is printed."""
        assert isinstance(report, TracerouteReport | MdaReport)
        names = resolver(session, local) if _names_wanted(args) else None
        report.names = None if names is None else names.names
        shown: Deferred[object] = succeed(None)
        paths = None
        if getattr(args, "as_whois", None) is not None and isinstance(report, TracerouteReport):
            from packetlab.measure.aspath import AsPaths

            paths = AsPaths(session.reactor, *args.as_whois)  # (from this host, as names)
            report.as_paths = paths.paths
        if getattr(args, "as_whois_error", None) and isinstance(report, TracerouteReport):
            report.as_error = args.as_whois_error

        def show(hop: Any) -> None:
            """The hop to the report; an error it raises (-A's whois server) stops the run
            and is raised when the run returns."""
            if failed:
                return
            try:
                report.hop(hop)
            except LinkError as e:
                failed.append(e)
                stop.request("error")

        def on_hop(hop: Any) -> None:
            if names is None and paths is None:
                show(hop)
                return
            looked: list[Deferred[Any]] = []
            for a in addrs_of(hop):
                if names is not None:
                    looked.append(names.lookup(a))
                if paths is not None:
                    looked.append(paths.lookup(a))
            named = DeferredList(looked)
            shown.addCallback(lambda _: named).addCallback(lambda _: show(hop))

        return on_hop, shown

    async def trace(session: Any) -> TracerouteResult:
        assert isinstance(report, TracerouteReport)
        frm = await session_source(session, src, None, dst)
        report.start(str(frm))
        on_hop, shown = named_hops(session, lambda hop: [] if hop.addr is None else [hop.addr])
        result = await traceroute(
            session,
            dst,
            first_ttl=args.first_ttl,
            max_ttl=args.max_ttl,
            wait=args.wait,
            sport=args.sport,
            base_port=args.port or default_port(args.protocol),
            method=PARIS[args.protocol] if args.paris and args.protocol in PARIS else args.protocol,
            src=frm,
            pace=None if args.sequential else (args.pace or 0.0),
            packetlen=shape[0],
            tos=shape[1],
            dont_fragment=args.dont_fragment,
            mtu_discovery=args.mtu,
            mtu_hints=route_mtus(dst) if local and args.mtu else (),
            # what this host's kernel would fragment a long probe to (traceroute's)
            fragment_mtu=min(route_mtus(dst), default=None) if local and shape[0] else None,
            queries=args.queries,
            squeries=args.squeries,
            send_stamp=stamp,
            recv_stamp=stamp,
            on_hop=on_hop,
            stop=stop,
            here=args.here,
            near=args.near,
            flow_label=args.flow_label,
            tcp=args.tcp_flavor,
            gateways=args.gateway_addrs,
            coverage=getattr(args, "coverage", 8),  # (-O's, `module_options`)
            **({} if getattr(args, "service", None) is None else {"service": args.service}),
        )
        await shown
        if failed:
            raise failed[0]
        return result

    async def tracelb(session: Any) -> Any:
        from packetlab.measure.mda import mda_trace

        assert isinstance(report, MdaReport)
        frm = await session_source(session, src, None, dst)
        report.start(str(frm))
        on_hop, shown = named_hops(session, lambda hop: hop.addrs)
        result = await mda_trace(
            session,
            dst,
            first_ttl=args.first_ttl,
            max_ttl=args.max_ttl,
            wait=args.wait,
            confidence=args.confidence / 100,
            method=MDA_METHOD[args.protocol],
            sport=args.sport,
            base_port=args.port or (80 if args.protocol in TCP_METHODS else 33434),
            src=frm,
            on_hop=on_hop,
            stop=stop,
            lite=args.mda_lite,
            gaplimit=args.gaplimit or 3,
            attempts=args.attempts or 1,
            max_probes=args.max_probes or 3000,
            wait_probe=(args.wait_probe or 0) / 100,
        )
        await shown
        if args.multilevel and not stop.requested:
            from packetlab.measure.multilevel import ROUNDS_DEFAULT, resolve_routers

            report.routers(
                await resolve_routers(session, result, rounds=args.mbt_rounds or ROUNDS_DEFAULT)
            )
        return result

    return tracelb if args.mda else trace


def traceroute_report(
    reactor: Any, args: argparse.Namespace, dst: Address
) -> TracerouteReport | MdaReport:
    """The report of the traceroute (--mda: the MDA trace) to `dst`, printing as it goes."""
    from packetlab.cli.report_traceroute import MdaReport, TracerouteReport

    name = None if args.target == str(dst) else args.target
    if args.mda:
        mda_report = MdaReport(
            reactor, args.json, str(dst), name=name, max_ttl=args.max_ttl,
            method=MDA_METHOD[args.protocol], confidence=args.confidence / 100,
            lite=args.mda_lite,
        )  # fmt: skip
        if args.warts == "-":  # the warts bytes go to stdout: the lines to stderr
            mda_report.progress.out = sys.stderr
        return mda_report
    # Butskoy's probes: UDP or ICMP header + 32 bytes (or up to packetlen; --mtu:
    # 65000 to begin with); a TCP SYN with its 20 bytes of options (MSS, SACK,
    # timestamps, window scale); a bare ACK
    from packetlab.measure.traceroute_probes import MAX_PACKET_LEN, probe_length

    packetlen = traceroute_shape(args)[0]
    if args.mtu and packetlen is None:
        packetlen = MAX_PACKET_LEN
    route = len(args.gateway_addrs) * 4 + 8 if args.gateway_addrs else 0  # NOP, LSRR
    size = probe_length(args.protocol, dst.version, packetlen, args.tcp_flavor, route)
    report = TracerouteReport(
        reactor, args.json, str(dst), name=name, max_ttl=args.max_ttl,
        queries=args.queries, size=size, extensions=args.extensions, back=args.back,
        tcp_info=getattr(args, "tcp_info", False),
    )  # fmt: skip
    if args.gateway_addrs:  # (-g: the JSON says the probes' way, warts cannot)
        report.summary_extra["gateways"] = list(args.gateway_addrs)
    if args.warts == "-":  # the warts bytes go to stdout: the lines to stderr
        report.progress.out = sys.stderr
    return report


def budget(args: argparse.Namespace) -> float:
    """Default --timeout of the in-process run: the traceroute's own worst case + 30 s."""
    n = (args.max_ttl - args.first_ttl + 1) * args.queries
    pace = args.pace or 0.0
    if args.mda:  # rounds of probes: a few per TTL, each at most one --wait a try
        work = (args.max_ttl - args.first_ttl + 1) * 6 * args.wait * (args.attempts or 1)
        work += (args.max_probes or 3000) * (args.wait_probe or 0) / 100
        if getattr(args, "multilevel", False):  # rounds of IP-IDs, 10 s each at most
            work += 10.0 * (args.mbt_rounds or 5)
    elif args.sequential or args.mtu:  # (--mtu: and a resend per size, a dozen at most)
        work = (n + (16 if args.mtu else 0)) * (args.wait + 0.5)
    elif args.squeries:
        work = -(-n // args.squeries) * args.wait + args.wait + n * pace
    else:
        work = n * pace + args.wait
    return work + 30.0


def _names_wanted(args: argparse.Namespace) -> bool:
    """Hop names: in text unless -n (as traceroute), in JSON with --names."""
    return not args.numeric and (not args.json or args.names)


def _endpoint_extra(args: argparse.Namespace) -> list[str]:
    """More in-process endpoint options: this host's DNS servers, to name the hops."""
    if not _names_wanted(args):
        return []
    from packetlab.cli.run_command import resolv_conf_servers

    v4, v6 = resolv_conf_servers()
    out = []
    if v4:
        out += ["--dns-ipv4", ",".join(v4[:16])]
    if v6:
        out += ["--dns-ipv6", ",".join(v6[:16])]
    return out


def write_warts(
    out: BinaryIO, args: argparse.Namespace, result: TracerouteResult, interrupted: bool
) -> None:
    """`result` as a warts file (list, cycle, trace, cycle stop) with the run's options.
    The cycle stops at the last probe or reply: on the endpoint's clock, as every other
    time in the file (ours was 600 s off with the endpoint's clock 10 min ahead)."""
    from packetlab.measure.warts_trace import traceroute_warts

    local = Link.from_args(args).in_process
    data = traceroute_warts(
        result,
        hostname=socket.gethostname() if local else "",
        attempts=args.queries,
        first_ttl=args.first_ttl,
        wait_s=args.wait,
        sport=args.sport,
        dport=args.port or default_port(args.protocol),
        tos=traceroute_shape(args)[1],
        interrupted=interrupted,
    )
    write_whole(out, data)


def write_tracelb_warts(
    out: BinaryIO, args: argparse.Namespace, result: Any, multilevel: Any = None
) -> None:
    """An --mda `result` as a warts file (list, cycle, tracelb, cycle stop); with
    --multilevel's result, its probing rounds as dealias records after the tracelb, and
    a note on stderr that the routers they make are not in it (warts has no record of
    them). The cycle stops at the last reply, on the endpoint's clock (see write_warts)."""
    from packetlab.measure.warts_tracelb import tracelb_warts

    runs = [] if multilevel is None else multilevel.runs
    data = tracelb_warts(
        result,
        hostname=socket.gethostname() if Link.from_args(args).in_process else "",
        first_ttl=args.first_ttl,
        wait_s=args.wait,
        tos=traceroute_shape(args)[1],
        alias_runs=runs,
    )
    write_whole(out, data)
    if multilevel is not None:
        print(
            f"pktlab run traceroute: --warts holds the trace (tracelb) and the "
            f"{len(runs)} alias probing round{'s' if len(runs) != 1 else ''} (dealias "
            "radargun records); not the routers they make, which no warts record holds "
            "(they are in the text and --json)",
            file=sys.stderr,
        )
