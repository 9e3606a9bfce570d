"""``pktlab run ping``'s run: its checks of HOST... TARGET and -p, its experiment on a
session (echo requests paced by the endpoint, each line printed in order once the names
it shows are looked up), the report, the default --timeout, the warts file and iputils'
exit status. The parts it shares with traceroute are `packetlab.cli.run_measure`'s."""

from __future__ import annotations

import argparse
import math
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from packetlab.cli.exits import EXIT_NO_REPLY, EXIT_OK
from packetlab.cli.link import Link
from packetlab.cli.run import Address, RunError, resolve_target
from packetlab.cli.run_host import route_mtus
from packetlab.cli.run_measure import (
    on_link,
    resolver,
    run_with_warts,
    session_source,
    source_address,
    write_whole,
)

if TYPE_CHECKING:
    from packetlab.cli.report_ping import PingReport
    from packetlab.controller.stop import StopSignal
    from packetlab.measure.records_ping import PingResult


def run_ping(args: argparse.Namespace) -> int:
    """The ping of `args` in the reactor: its lines, its statistics, --warts; iputils'
    exit status (`ping_exit`)."""

    async def measured(reactor: Any, stop: StopSignal, warts: BinaryIO | None) -> int:
        result, report = await measure_ping(reactor, args, stop)
        interrupted = stop.requested and stop.reason == "interrupted"
        report.finish(result, interrupted)
        hint = None if interrupted else source_route_hint(args, result)
        if hint is not None:
            print(f"pktlab run ping: {hint}", file=sys.stderr)
        if warts is not None:
            write_ping_warts(warts, args, result, interrupted)
        return ping_exit(args, result)

    return run_with_warts(args, measured)


async def measure_ping(
    reactor: Any, args: argparse.Namespace, stop: StopSignal | None = None
) -> tuple[PingResult, PingReport]:
    """Run the ping of `args`, printing as it goes; the result and its report (whose
    `finish` prints the statistics)."""
    if stop is None:
        from packetlab.controller.stop import StopSignal

        stop = StopSignal()
    args.prespec_addrs, args.route_addrs = [], []
    if args.record_route and args.ip_timestamps:
        raise RunError("only one of -T or -R may be used")  # (iputils' words)
    names = ping_hosts(args)
    if names and any(":" in h for h in [*names, args.target]):  # (ping: its usage)
        raise RunError(
            "HOST... TARGET is IPv4 only: an IPv6 source route (a type 0 routing "
            "header) is deprecated (RFC 5095)"
        )
    if names and args.family is None:
        args.family = 4  # (ping4_run: the target too)
    hosts = [str(resolve_target(h, 4)) for h in names]
    if args.ip_timestamps:
        args.prespec_addrs = hosts
    else:
        args.route_addrs = hosts
    if args.route_addrs and args.warts:  # (it wrote them as straight to TARGET)
        raise RunError(
            "--warts: scamper's ping records no source route (HOST... TARGET): the "
            "file would say the requests went straight to TARGET; --json has the hosts "
            "(summary `gateways`, each reply's `source_route`)"
        )
    pattern = None
    if args.pattern is not None:
        from packetlab.measure.ping import parse_pattern

        try:
            pattern = parse_pattern(args.pattern)
        except ValueError as e:
            raise RunError(str(e)) from None
    link = Link.from_args(args)
    dst = resolve_target(args.target, args.family, like="ping")
    src, ifname = source_address(args, link, dst, ifname_ok=True)
    signal = stop  # (narrowed, for the closures below)

    def report_for(frm: Address | None, name: str | None) -> PingReport:
        return ping_report(reactor, args, dst, pattern, frm, name)

    def experiment_for(
        frm: Address | None, stamp: str, report: PingReport, local: bool, name: str | None
    ) -> Callable[[Any], Awaitable[PingResult]]:
        return experiment(
            args, dst, frm, stamp, report, signal, local=local, pattern=pattern, ifname=name
        )

    return await on_link(
        reactor, args, link, dst, src, ifname, report_for, experiment_for,
        lambda: budget(args), lambda: [],
    )  # fmt: skip


def ping_hosts(args: argparse.Namespace) -> list[str]:
    """ping HOST... TARGET: the hosts before the target; `args.target` becomes the last
    one. With -T tsprespec they are its addresses (at most 4, as iputils), else a loose
    source route through them (at most 9, as iputils; not with -R or another -T: ping's
    usage). RunError, one line, for too many or a refused combination."""
    from packetlab.measure.packets_ip_options import MAX_PING_ROUTE, MAX_PRESPEC

    if args.measurement != "ping" or not args.prespec:
        return []
    hosts = [args.target, *args.prespec[:-1]]
    if args.record_route:
        raise RunError(
            f"{len(hosts) + 1} hosts given: a source route through all but the last (an "
            "LSRR option) is not with -R (ping: its usage); one TARGET with -R"
        )
    if args.ip_timestamps not in (None, "tsprespec"):
        raise RunError(
            f"{len(hosts) + 1} hosts given: -T {args.ip_timestamps} takes one TARGET (ping: "
            "its usage); HOST... TARGET with -T tsprespec or without -T (a source route)"
        )
    if args.ip_timestamps == "tsprespec" and len(hosts) > MAX_PRESPEC:
        raise RunError(
            f"-T tsprespec takes at most {MAX_PRESPEC} hosts before TARGET, not {len(hosts)}"
        )
    if len(hosts) > MAX_PING_ROUTE:
        raise RunError(
            f"a source route takes at most {MAX_PING_ROUTE} hosts before TARGET, not {len(hosts)}"
        )
    args.target = args.prespec[-1]
    return hosts


def experiment(
    args: argparse.Namespace,
    dst: Address,
    src: Address | None,
    stamp: str,
    report: PingReport,
    stop: StopSignal,
    local: bool = False,
    pattern: bytes | None = None,
    ifname: str | None = None,
) -> Callable[[Any], Awaitable[PingResult]]:
    """The ping of `args` as a function of a session."""
    from twisted.internet.defer import Deferred, DeferredList, succeed

    from packetlab.measure.ping import ping

    async def echo(session: Any) -> PingResult:
        frm = await session_source(session, src, ifname, dst)
        # iputils names replies (`NAME (ADDR)`) when the target was a name and not -n; the
        # lines stay in order, each printed once its name is known
        names = resolver(session, local) if _ping_names_wanted(args, dst) else None
        report.names = None if names is None else names.names
        if names is not None and dst.version == 6:  # ping6's header names the target too
            await names.lookup(str(dst))
        report.start(str(frm))
        shown: Deferred[object] = succeed(None)

        def in_order(show: Callable[[Any], None]) -> Callable[[Any], None]:
            def on(item: Any) -> None:
                if names is None:
                    show(item)
                    return
                named = DeferredList([names.lookup(a) for a in _addresses_shown(item)])
                shown.addCallback(lambda _: named).addCallback(lambda _: show(item))

            return on

        def after_shown(show: Callable[[int, int], None]) -> Callable[[int, int], None]:
            """`show(seq, ns)` after the lines before it (they may wait for names)."""

            def on(seq: int, ns: int) -> None:
                if names is None:
                    show(seq, ns)
                else:
                    shown.addCallback(lambda _: show(seq, ns))

            return on

        big = args.size + 8 + (20 if dst.version == 4 else 40) > 1280  # (else no need)
        print_error = in_order(report.error)

        def on_error(e: Any) -> None:
            print_error(e)
            if args.deadline is not None:  # iputils: with -w the first ICMP error ends it
                stop.request("error")

        result = await ping(
            session,
            dst,
            count=ping_count(args),
            interval=args.interval,
            wait=args.wait,
            size=args.size,
            pattern=pattern,
            ttl=args.ttl,
            src=frm,
            send_stamp=stamp,
            recv_stamp=stamp,
            on_reply=in_order(report.reply),
            on_error=on_error,
            on_sent=after_shown(report.sent) if args.flood else None,
            on_outstanding=after_shown(report.outstanding) if args.outstanding else None,
            on_notice=in_order(report.notice),
            stop=stop,
            linger_like_ping=True,
            answers_wanted=args.count if args.deadline is not None else None,
            # what this host's kernel would fragment a long request to (ping's)
            fragment_mtu=min(route_mtus(dst), default=None) if local and big else None,
            tos=args.tos,
            pmtudisc=args.pmtudisc,
            preload=args.preload,
            adaptive=args.adaptive,
            ident=report.ident,
            record_route=args.record_route,
            timestamps=args.ip_timestamps,
            prespec=args.prespec_addrs,
            route=args.route_addrs,
            # ping -w stops at its deadline (and at its first error) without a linger
            ends_at_once=frozenset({"deadline", "error"}),
            deadline=args.deadline,  # -w: from the first request's time, as ping's alarm
        )
        await shown
        return result

    return echo


def ping_report(
    reactor: Any,
    args: argparse.Namespace,
    dst: Address,
    pattern: bytes | None = None,
    src: Address | None = None,
    ifname: str | None = None,
) -> PingReport:
    """The report of the ping to `dst`, printing as it goes."""
    from packetlab.cli.report_ping import PingReport

    name = None if args.target == str(dst) else args.target
    ping_report = PingReport(
        reactor, args.json, str(dst), name=name, count=args.count or ping_count(args),
        size=args.size, quiet=args.quiet, interval=0.0 if args.adaptive else args.interval,
        flood=args.flood,
        timestamps=args.timestamps, pattern=pattern,
        source=None if src is None else (str(src), ifname or ""),
        verbose=args.verbose,
        options=40 if (args.record_route or args.ip_timestamps or args.route_addrs)
        and dst.version == 4 else 0,
        audible=args.audible,
        sticky=args.sticky,
        preload=args.preload,
    )  # fmt: skip
    if args.ident is not None:  # (-e; else the report's random one)
        ping_report.ident = args.ident
    if args.route_addrs:  # (HOST... TARGET: the requests' way)
        ping_report.summary_extra["gateways"] = list(args.route_addrs)
    if args.warts == "-":
        ping_report.progress.out = sys.stderr
    return ping_report


def budget(args: argparse.Namespace) -> float:
    """Default --timeout of the in-process run: the ping's own worst case + 30 s."""
    # (-i 0 goes as fast as replies come back: allow 10 ms a request for that)
    count = ping_count(args)
    work = (count - 1) * args.interval + args.wait + count * 0.01
    return work + 30.0


def ping_count(args: argparse.Namespace) -> int:
    """Requests to send at most: -c; with -w as many as fit in the deadline (ping -w sends
    until the deadline, or with -c until -c are answered), else 5."""
    from packetlab.measure.ping import MAX_COUNT

    if args.deadline is None:
        return 5 if args.count is None else int(args.count)
    if args.interval == 0 or args.adaptive:  # (-A: as fast as the replies come)
        return MAX_COUNT
    # ping's deadline alarm comes before a request due at it: those due strictly before
    # (`ping -w 2` sends 2, `-w 2 -i 0.5` 4); the slack keeps 0.9/0.3 at 3, not 4
    return min(MAX_COUNT, max(1, math.ceil(args.deadline / args.interval - 1e-9)))


def _addresses_shown(item: Any) -> list[str]:
    """The addresses a ping line names: the reply's source, a redirect's gateway, and
    those of its -R route and -T timestamps (each named as iputils' pr_addr names them)."""
    got = dict.fromkeys([item.addr, *(getattr(item, "route", None) or ())])
    if getattr(item, "gateway", None) is not None:  # a redirect's (ping names it too)
        got[item.gateway] = None
    ts = getattr(item, "ip_timestamps", None)
    got.update(dict.fromkeys(a for a, _ in (ts.entries if ts else ()) if a is not None))
    return list(got)


def _ping_names_wanted(args: argparse.Namespace, dst: Address) -> bool:
    """iputils looks up the name of each reply's source when the target was given as a
    name (a numeric target implies -n), in text output, not with -n."""
    return not args.numeric and not args.json and args.target != str(dst)


def write_ping_warts(
    out: BinaryIO, args: argparse.Namespace, result: PingResult, interrupted: bool
) -> None:
    """`result` as a warts file (list, cycle, ping, cycle stop) with the run's options.
    The cycle stops at the last request or reply: on the endpoint's clock, as every other
    time in the file (ours was 600 s off with the endpoint's clock 10 min ahead)."""
    from packetlab.measure.warts_ping import ping_warts

    option, options = ping_ip_options(args, result.dst)
    data = ping_warts(
        result,
        hostname=socket.gethostname() if Link.from_args(args).in_process else "",
        count=args.count or ping_count(args),
        size=args.size,
        interval_s=args.interval,
        timeout_s=args.wait,
        ttl=args.ttl,
        interrupted=interrupted,
        ip_option=option,
        options_len=len(options),
        tsps=getattr(args, "prespec_addrs", ()),
    )
    write_whole(out, data)


def ping_ip_options(args: argparse.Namespace, dst: str) -> tuple[str | None, bytes]:
    """The IPv4 option of the run's requests, as warts names it (``v4rr``, ``tsonly``,
    ``tsandaddr``, ``tsprespec``; None for a source route, which scamper's ping cannot
    record: refused with --warts), and its bytes (their length is in the probe size)."""
    from packetlab.measure import packets_ip_options as ipopts

    if ":" in dst:  # (ignored over IPv6, as ping)
        return None, b""
    if args.record_route:
        return "v4rr", ipopts.record_route_option()
    if args.ip_timestamps is not None:
        kind = ipopts.TIMESTAMP_KINDS[args.ip_timestamps]
        option = ipopts.timestamp_option(kind, getattr(args, "prespec_addrs", ()))
        return args.ip_timestamps, option
    if getattr(args, "route_addrs", None):
        route = ipopts.loose_source_route(
            args.route_addrs, dst, target_listed=False, most=ipopts.MAX_PING_ROUTE
        )
        return None, route[1]
    return None, b""


def source_route_hint(args: argparse.Namespace, result: PingResult) -> str | None:
    """ping HOST... TARGET that got nothing back (not even an error): one line on why it
    may be, as no native tool says it (iputils fails earlier, `record route: Operation not
    permitted`): Linux drops a source-routed packet to one of its own addresses, and
    every host on the way must accept source routing."""
    hosts = getattr(args, "route_addrs", None)
    if not hosts or result.received or result.errors or not result.sent:
        return None
    import ipaddress

    first = hosts[0]
    if ipaddress.ip_address(first).is_loopback or first == result.src:
        return (
            f"no reply: the requests are source-routed to {first}, an address of the "
            "endpoint's own host, and Linux drops a source-routed packet for a local address"
        )
    if args.ttl < 64:  # (-t: a router's error then quotes a host, not TARGET: not shown)
        return None
    return (
        "no reply: the requests are source-routed (an LSRR option); every host on the way "
        "and the target must accept source routing (net.ipv4.conf.*.accept_source_route, "
        "off by default on Linux), else they drop them"
    )


def ping_exit(args: argparse.Namespace, result: PingResult) -> int:
    """iputils' exit status: 1 when nothing was received, or with -w (and -c) fewer
    replies than -c asked for; else 0."""
    if result.received == 0:
        return EXIT_NO_REPLY
    if args.deadline is not None and args.count is not None and result.received < args.count:
        return EXIT_NO_REPLY
    return EXIT_OK
