"""What every example shares: the link options of every controller-side command
(`packetlab.cli.link`: --listen, --home, --insecure-plaintext) plus --timeout and -v,
running the experiment on that link, and the entry point that turns errors into one line
and an exit status (no traceback for an expected error, 130 for Ctrl-C).

The examples import it as `_common` (run as `python examples/NAME.py`, their folder is
first on sys.path).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from packetlab.cli.interrupt import run_reactor
from packetlab.cli.link import Link, add_link_arguments, route_source, run_on_link
from packetlab.controller import EndpointSession, StopSignal
from packetlab.hostport import HostPortError, port_number, split_host_port

T = TypeVar("T")


def add_link_args(
    p: argparse.ArgumentParser, *, timeout: float = 30.0, beyond: str | None = None
) -> None:
    """The link options, --timeout (`timeout` is the default; `beyond`: what the example
    adds to it, said in the help) and -v."""
    add_link_arguments(p)
    more = "" if beyond is None else f", beyond {beyond}"
    p.add_argument(
        "--timeout", type=seconds, default=timeout, help=f"seconds{more} (default: %(default)s)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log to stderr")


def seconds(text: str) -> float:
    """A --timeout: a number of seconds above 0 (argparse's one-line error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text}")
    return value


def address_port(default: int | None) -> Callable[[str], tuple[str, int]]:
    """An argparse type for IP[:PORT], [IPv6]:PORT or a bare IPv6 address: (ip, port).
    `default` None: the port must be given."""

    def parse(text: str) -> tuple[str, int]:
        try:  # (`²` raised int's ValueError: argparse said `invalid parse value`)
            host, given = split_host_port(text, reference=False)
        except HostPortError as e:
            raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
        port = default if given is None else port_number(given)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: not an IP address (names are not resolved here)"
            ) from None
        if given is None and port is None:
            raise argparse.ArgumentTypeError(f"{text!r}: give the port, IP:PORT")
        if port is None:
            raise argparse.ArgumentTypeError(f"{text!r}: the port must be 1..65535")
        return host, port

    return parse


def number(kind: Callable[[str], float], low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: `kind` (int, float) within low..high, else a one-line error."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low <= value <= high:  # (nan too)
            span = "..".join(str(int(x)) if float(x).is_integer() else str(x) for x in (low, high))
            raise argparse.ArgumentTypeError(f"must be {span}, got {text}")
        return value

    return parse


def host_port(host: Any, port: int) -> str:
    """192.0.2.1:53, [2001:db8::1]:53."""
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def announce(port: Any) -> None:
    addr = port.getHost()
    print(f"controller listening on {addr.host}:{addr.port}; waiting for an endpoint", flush=True)


def exported_for(hosts: Sequence[str]) -> list[Any]:
    """The addresses an in-process endpoint exports to reach `hosts` (each host's route
    source; 127.0.0.1 for none)."""
    out: list[Any] = []
    for h in hosts:
        try:
            a = route_source(ipaddress.ip_address(h))
        except ValueError:
            continue
        if a not in out:
            out.append(a)
    return out or [ipaddress.IPv4Address("127.0.0.1")]


async def run_experiment(
    reactor: Any,
    args: argparse.Namespace,
    experiment: Callable[[EndpointSession], Awaitable[T]],
    *,
    targets: Sequence[str] = (),
) -> T:
    """The experiment's result, on an endpoint started in this process (exporting the
    source address toward `targets`) or, with --listen, on the first one that connects."""
    link = Link.from_args(args)
    print(f"link: {link.describe()}", flush=True)
    result: T = await run_on_link(
        reactor,
        link,
        experiment,
        addresses=exported_for(targets),
        timeout=args.timeout,
        on_listening=announce,
        on_refusal=lambda text: print(f"warning: {text}", file=sys.stderr, flush=True),
    )
    return result


def react(
    main: Callable[[Any, argparse.Namespace], Awaitable[int]], args: argparse.Namespace
) -> None:
    """Run `main(reactor, args)` and exit with its status, as `pktlab run` does: an
    expected error (a link, endpoint or argument problem) is one line and status 2;
    Ctrl-C exits 130 without a traceback."""
    prog = Path(sys.argv[0]).name
    sys.exit(
        run_reactor(lambda reactor, stop: main(reactor, args), prog=prog, verbose=args.verbose)
    )


def react_stoppable(
    main: Callable[[Any, argparse.Namespace, StopSignal], Awaitable[int]],
    args: argparse.Namespace,
) -> None:
    """`react` for a measurement that takes the `StopSignal` of the first Ctrl-C (or
    SIGTERM): it stops sending, waits briefly for what is in flight and `main` prints what
    it gathered; the status is then 130, as `pktlab run` ping's. (Before the measurement
    watches the signal, Ctrl-C ends the run at once, 130.)"""
    prog = Path(sys.argv[0]).name
    sys.exit(
        run_reactor(
            lambda reactor, stop: main(reactor, args, stop), prog=prog, verbose=args.verbose
        )
    )


if __name__ == "__main__":  # a module, but `python examples/_common.py` should say so
    sys.exit(
        f"{os.path.basename(sys.argv[0])}: a module the examples import, not an example: "
        "run examples/http_get.py, dns_query.py or udp_train.py (docs/controller.md)"
    )
