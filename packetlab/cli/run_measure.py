"""What `pktlab run traceroute` and `pktlab run ping` share once their options are checked:
the address to send from, the link (the in-process endpoint, or one reached with
--listen) with the report printing as the run goes, the --warts file, and, in the
experiment, the endpoint's source address and the resolver of reply names.

Each measurement's own module (`run_traceroute_trace`, `run_ping_echo`) makes its report
and experiment and hands them to `on_link`; `run_with_warts` runs it in the reactor.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar

from packetlab.cli.interrupt import run_reactor
from packetlab.cli.link import BroadcastTarget, Link, route_source, run_on_link
from packetlab.cli.run import Address, RunError
from packetlab.cli.run_host import check_local_address, check_raw_permission, interface_address
from packetlab.hostport import host_port

if TYPE_CHECKING:
    from packetlab.cli.runclock import RunClock
    from packetlab.controller.stop import StopSignal
    from packetlab.measure.rdns import LocalNames, ReverseNames


class _Report(Protocol):
    as_json: bool
    clock: RunClock

    def close(self) -> None: ...


R = TypeVar("R", bound=_Report)
Experiment = Callable[[Any], Awaitable[Any]]


def source_address(
    args: argparse.Namespace, link: Link, dst: Address, *, ifname_ok: bool = False
) -> tuple[Address | None, str | None]:
    """--src as an address of `dst`'s family, or None when not given; with `ifname_ok`
    (ping -I IFNAME) a name that is not an address is an interface: its name, and its
    address for the in-process endpoint. RunError (one line) when it is neither."""
    src: Address | None = None
    ifname: str | None = None
    if args.src is not None:
        try:
            src = ipaddress.ip_address(args.src)
        except ValueError:
            if not ifname_ok:
                raise RunError(f"--src {args.src!r} is not an IP address") from None
            ifname = args.src
            if link.in_process:
                src = interface_address(ifname, dst.version)
        if src is not None and src.version != dst.version:
            raise RunError(f"--src {src} is IPv{src.version}, the target {dst} IPv{dst.version}")
    return src, ifname


async def on_link(
    reactor: Any,
    args: argparse.Namespace,
    link: Link,
    dst: Address,
    src: Address | None,
    ifname: str | None,
    report_for: Callable[[Address | None, str | None], R],
    experiment_for: Callable[[Address | None, str, R, bool, str | None], Experiment],
    budget: Callable[[], float],
    extra: Callable[[], list[str]],
) -> tuple[Any, R]:
    """Run the experiment on `link`, its report printing as it goes; the result and the
    report. `report_for(src, ifname)` makes the report; `experiment_for(src, stamp,
    report, local, ifname)` the experiment (`timed`); `budget()` is the default --timeout
    of the in-process endpoint and `extra()` more of its options."""
    from packetlab.measure.records_fields import Stamp

    prog = f"pktlab run {args.measurement}"

    def refused(text: str) -> None:
        print(f"{prog}: {text}", file=sys.stderr)

    if not link.in_process:

        def listening(port: Any) -> None:
            print(
                f"waiting for an endpoint on {host_port(port.getHost())} ({link.describe()}) ...",
                file=sys.stderr,
            )

        report = report_for(src, ifname)
        experiment = timed(report, experiment_for(src, Stamp.UNKNOWN, report, False, ifname))
        try:
            result: Any = await run_on_link(
                reactor,
                link,
                experiment,
                timeout=args.timeout,
                on_listening=listening,
                on_refusal=refused,
            )
        finally:
            report.close()
        return result, report
    check_raw_permission()
    if src is None:
        src = broadcast_in_words(args.measurement, dst)
    elif ifname is None:
        check_local_address(src)
    report = report_for(src if args.src else None, ifname)
    experiment = timed(report, experiment_for(src, Stamp.KERNEL, report, True, None))
    timeout = args.timeout if args.timeout is not None else budget()
    try:
        result = await run_on_link(
            reactor,
            link,
            experiment,
            addresses=[src],
            transproto="raw,tcp,udp",
            timeout=timeout,
            extra=extra(),
        )
    finally:
        report.close()
    return result, report


def timed(report: _Report, experiment: Experiment) -> Experiment:
    """`experiment`, with the report's clock read on the endpoint around it when the
    report has a --json summary (its times are then the endpoint's, as its records'
    stamps); the text has no such times (iputils, Butskoy's traceroute): no read."""
    return report.clock.around(experiment) if report.as_json else experiment


def broadcast_in_words(measurement: str, dst: Address) -> Address:
    """`route_source(dst)`; a broadcast target is refused in the native tool's words and
    exit status: iputils ping's question (2), traceroute's `connect: Permission denied` (1).
    Was `no route to 255.255.255.255: Permission denied` (session 32, ops32)."""
    try:
        return route_source(dst)
    except BroadcastTarget as e:
        if measurement == "ping":
            raise BroadcastTarget(
                f"Do you want to ping broadcast? {dst} is one, and ping -b's SO_BROADCAST "
                "is not a PacketLab socket option"
            ) from e
        broad = BroadcastTarget(f"connect: Permission denied ({dst} is a broadcast address)")
        broad.exit_status = 1
        raise broad from e


async def session_source(
    session: Any, src: Address | None, ifname: str | None, dst: Address
) -> Address:
    """The address the experiment sends from: `src`, else the endpoint's address for
    `dst` (an error with ping -I IFNAME, the endpoint exporting no interface names)."""
    from packetlab.controller import read_system_info
    from packetlab.measure.capture import MeasureError, pick_source

    if src is not None:
        return src
    info = await read_system_info(session)
    if ifname is not None:  # ping -I IFNAME: the endpoint exports no interface names
        have = ", ".join(str(a) for a in info.addresses) or "none"
        raise MeasureError(
            f"-I {ifname}: the endpoint exports its addresses, not its interface names: "
            f"give one of its addresses (it has {have})"
        )
    return pick_source(info.addresses, dst)


def resolver(session: Any, local: bool) -> LocalNames | ReverseNames:
    """This host's resolver for an endpoint on this host (as the native tools), else the
    endpoint's."""
    from packetlab.measure.rdns import LocalNames, ReverseNames

    return LocalNames(session.reactor) if local else ReverseNames(session)


def run_with_warts(
    args: argparse.Namespace,
    measured: Callable[[Any, StopSignal, BinaryIO | None], Awaitable[int]],
) -> int:
    """`measured(reactor, stop, warts)` in the reactor (Ctrl-C and errors as every pktlab
    run command: packetlab.cli.interrupt), with the --warts file open (`open_warts`) and
    closed after it; a file the run created and never wrote is removed."""

    async def main(reactor: Any, stop: StopSignal) -> int:
        path: str = getattr(args, "warts", None) or "-"
        new = path != "-" and not os.path.lexists(path)
        warts = open_warts(args)
        try:
            return await measured(reactor, stop, warts)
        finally:
            if warts is not None and warts is not sys.stdout.buffer:
                empty = warts.tell() == 0
                warts.close()
                if new and empty:  # the run failed before writing: leave no empty file
                    os.unlink(path)

    return run_reactor(
        main,
        prog=f"pktlab run {args.measurement}",
        verbose=args.verbose,
        error_status=lambda e: getattr(e, "exit_status", None),
    )


def open_warts(args: argparse.Namespace) -> BinaryIO | None:
    """--warts FILE opened before the run (for appending: a run that fails before its
    end leaves a file that was there as it was; `write_whole` replaces its content),
    stdout's bytes for '-'; RunError (one line) when it cannot be written."""
    path = getattr(args, "warts", None)
    if path is None:
        return None
    if path == "-":
        return sys.stdout.buffer
    try:
        return open(path, "ab")  # closed by run_with_warts
    except OSError as e:
        raise RunError(f"--warts {path}: cannot write it: {e.strerror or e}") from None


def write_whole(out: BinaryIO, data: bytes) -> None:
    """`data` as the whole content of `out` (a file opened for appending), or written to
    stdout."""
    if out is not sys.stdout.buffer:
        out.truncate(0)
    out.write(data)
    out.flush()
