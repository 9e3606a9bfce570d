"""What every example shares: the link options (--listen, --external, --home,
--insecure-plaintext, --timeout, -v), running the experiment on a local or an external
endpoint, and the Twisted entry point that turns errors into an exit status.

The examples import it as `_common` (run as `python examples/NAME.py`, their folder is
first on sys.path).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from twisted.internet import task
from twisted.logger import globalLogBeginner, textFileLogObserver

from packetlab.controller import EndpointSession, run_once
from packetlab.controller.local import demo_home, run_with_local_endpoint, tls_server

T = TypeVar("T")


def add_link_args(p: argparse.ArgumentParser, *, timeout: float = 30.0) -> None:
    """The options that choose the endpoint and the link; `timeout` is the default."""
    p.add_argument(
        "--listen",
        default="tcp:0:interface=127.0.0.1",
        help="controller listening address, a Twisted endpoint string (default: %(default)s)",
    )
    p.add_argument(
        "--external",
        action="store_true",
        help="do not start an endpoint; wait for one to connect to --listen",
    )
    p.add_argument("--timeout", type=float, default=timeout, help="seconds (default: %(default)s)")
    p.add_argument(
        "--home",
        help="PacketLab home made by `pktlab init` whose certificates the TLS link uses "
        "(default: a new temporary one)",
    )
    p.add_argument(
        "--insecure-plaintext",
        action="store_true",
        help="plain TCP instead of TLS (loopback development only)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log to stderr")


def announce(port: Any) -> None:
    addr = port.getHost()
    print(f"controller listening on {addr.host}:{addr.port}; waiting for an endpoint", flush=True)


def home_of(args: argparse.Namespace) -> Any:
    """--home (set up by `pktlab init` if needed), or None: run_with_local_endpoint then
    makes a temporary one and removes it afterwards. Says which link is used."""
    if args.insecure_plaintext:
        print("link: plain TCP (--insecure-plaintext)", flush=True)
        return None
    if args.home is None:
        print("link: TLS 1.3, PPKS certificates from a temporary `pktlab init` home", flush=True)
        return None
    home = demo_home(args.home)
    print(f"link: TLS 1.3, PPKS certificates from {home.root}", flush=True)
    return home


def listen_on(reactor: Any, args: argparse.Namespace) -> Any:
    """--external: where to listen; TLS unless --insecure-plaintext (default entry, so
    endpoints that send no SNI are served too)."""
    if args.insecure_plaintext:
        print("link: plain TCP (--insecure-plaintext)", flush=True)
        return args.listen
    home = demo_home(args.home)  # None: a new temporary home, kept (its path is printed)
    print(f"link: TLS 1.3, PPKS certificates from {home.root}", flush=True)
    from packetlab.tls import gen_snikey

    return tls_server(reactor, args.listen, home, gen_snikey())


async def run_experiment(
    reactor: Any,
    args: argparse.Namespace,
    experiment: Callable[[EndpointSession], Awaitable[T]],
) -> T:
    """The experiment's result, on an endpoint that connects to --listen (--external) or
    on a `twistd pktendpoint` child process started here."""
    result: T
    if args.external:
        result = await run_once(
            reactor,
            listen_on(reactor, args),
            experiment,
            timeout=args.timeout,
            on_listening=announce,
        )
    else:
        result = await run_with_local_endpoint(
            reactor,
            experiment,
            listen=args.listen,
            timeout=args.timeout,
            plaintext=args.insecure_plaintext,
            home=home_of(args),
        )
    return result


def react(
    main: Callable[[Any, argparse.Namespace], Awaitable[int]], args: argparse.Namespace
) -> None:
    """Run `main(reactor, args)`; exit with its status (an error: one line, status 1)."""
    if args.verbose:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])

    async def entry(reactor: Any) -> None:
        try:
            code = await main(reactor, args)
        except Exception as e:  # a readable line, not a traceback
            print(f"error: {e}", file=sys.stderr)
            code = 1
        if code:
            raise SystemExit(code)

    task.react(entry)
