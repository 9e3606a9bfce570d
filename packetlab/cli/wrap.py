"""``pktlab wrap [options] -- CMD ARGS...``: run an unmodified program with its TCP
connections, UDP datagrams and name lookups going out from a PacketLab endpoint.

By default the endpoint runs in this process (like ``pktlab run``) and connects to us over
loopback; with ``--listen ADDR`` we wait for an endpoint started elsewhere. CMD's stdin,
stdout and stderr are its own (nothing is copied or added on stdout); its exit status is
ours (125: pktlab wrap itself failed, 126/127: CMD cannot be run). See docs/wrap.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
from collections.abc import Sequence
from typing import Any

from packetlab.cli.link import Link, LinkError, add_link_arguments, run_on_link
from packetlab.hostport import HostPortError, host_port, port_number, split_host_port

EXIT_WRAP_FAILED = 125

EPILOG = """\
examples:
  pktlab wrap -- curl -s https://example.net/          # endpoint in this process
  pktlab wrap --timings t.jsonl -- python3 fetch.py     # endpoint-side times per connection
  pktlab wrap --fidelity -- curl -w '%{time_connect}\\n' -o /dev/null -s http://192.0.2.80/
  pktlab wrap --listen 20556 -- dig @192.0.2.53 example.net
      # then, where the endpoint runs (its endpt.conf from `pktlab init`, with DNS):
      #   twistd -n pktendpoint -c ~/.pktlab/endpt.conf --dns-ipv4 DNS CONTROLLER:20556

Interception: proxychains-ng (LD_PRELOAD, Debian package proxychains4) sends every TCP
connect and name lookup of CMD and its children to a SOCKS5 server bound to the endpoint
session; our libpktwrap.so sends their UDP datagrams through loopback relay ports to the
endpoint; --socks-env only sets ALL_PROXY (for SOCKS-aware tools). --fidelity makes CMD's
clocks show the endpoint's intervals instead of the controller link's delay.
Exit status: CMD's (128+N if signal N killed it); 125 if pktlab wrap failed, 126/127 if
CMD cannot be run. See docs/wrap.md.
"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and at most 86400 seconds, got {text}"
        )
    return value


def dns_server(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """ADDR, ADDR:PORT or [V6]:PORT (default port 53)."""
    try:  # as dig's @SERVER: `2001:db8::1:2` is one address
        host, port = split_host_port(text, reference=False)
    except HostPortError as e:  # `[::1]x` took port 53
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None
    number = 53 if port is None else port_number(port)
    if number is None:  # (`²` raised int's ValueError: argparse said `invalid dns_server`)
        raise argparse.ArgumentTypeError(f"bad port in {text!r}")
    return addr, number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run CMD with its network traffic going out from a PacketLab endpoint (in this "
        "process unless --listen is given). CMD's stdout and exit status pass through."
    )
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    # A usage error is wrap's own failure, 125 as env(1) and timeout(1) say theirs: 2
    # would read as CMD's own status.
    parser.usage_status = lambda words: EXIT_WRAP_FAILED  # type: ignore[attr-defined]
    add_link_arguments(parser)
    parser.add_argument(
        "--timings",
        metavar="FILE",
        help="write one JSON line per wrapped connection with the endpoint's times (DNS, "
        "connect, request sent, first and last byte; ns)",
    )
    parser.add_argument(
        "--fidelity",
        action="store_true",
        help="make CMD's clocks show the endpoint's intervals (hide the controller link's "
        "delay; preloads a clock shim)",
    )
    parser.add_argument(
        "--socks-env",
        action="store_true",
        help="do not preload proxychains: only point SOCKS-aware tools at the proxy "
        "(ALL_PROXY=socks5h://...)",
    )
    parser.add_argument(
        "--dns",
        type=dns_server,
        action="append",
        metavar="ADDR[:PORT]",
        help="DNS server the endpoint queries for CMD's names (repeatable; default: the "
        "endpoint's own; the in-process endpoint takes /etc/resolv.conf's)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=20.0,
        metavar="S",
        help="give up on an endpoint TCP connect after S seconds [default: 20]",
    )
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=None,
        metavar="S",
        help="with --listen: give up if no endpoint connected within S seconds [default: "
        "wait as long as it takes]",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- CMD ARGS...",
        help="the program to run and its arguments (its stdin, stdout, stderr and exit "
        "status are its own)",
    )


def resolv_conf_servers(path: str = "/etc/resolv.conf") -> list[str]:
    """The nameserver lines of resolv.conf (scope ids dropped)."""
    out: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        out.append(str(ipaddress.ip_address(parts[1].split("%", 1)[0])))
                    except ValueError:
                        continue
    except OSError:
        pass
    return out


def loopback_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """What the in-process endpoint exports: it stands for this host, so IPv6 as well when
    the host has it (without ::1 exported, every IPv6 connect failed ESKTNOPRFAM)."""
    import socket

    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ipaddress.ip_address("127.0.0.1")]
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        out.append(ipaddress.ip_address("::1"))
    except OSError:
        pass
    return out


class WrapError(Exception):
    """A problem worth one line on stderr (exit status 125)."""


def check_timings_path(path: str | None) -> None:
    """--timings FILE must be writable: said before any endpoint starts, with the option
    (it was `[Errno 2] No such file or directory: 'x'` once the endpoint had started)."""
    if path is None:
        return
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as e:
        raise WrapError(f"--timings {path}: {e.strerror or e}") from None


async def wrap_command(reactor: Any, args: argparse.Namespace) -> int:
    from twisted.internet.defer import CancelledError, Deferred

    from packetlab.wrap.launch import find_program, preload_ignored
    from packetlab.wrap.runner import WrapOptions, wrap
    from packetlab.wrap.shim import proxychains_lib

    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise WrapError("no command given (pktlab wrap [options] -- CMD ARGS...)")
    path = find_program(argv[0])  # 126/127 before any endpoint is started
    if not args.socks_env and preload_ignored(path):
        print(f"pktlab wrap: warning: {path} is set-user-ID or has file capabilities: the "
              "loader ignores LD_PRELOAD for it, so its traffic does not go through the "
              "endpoint", file=sys.stderr)  # fmt: skip
    if not args.socks_env:
        proxychains_lib()  # "not installed" before any endpoint is started
    check_timings_path(args.timings)
    link = Link.from_args(args)
    dns = list(args.dns or [])
    if not dns and link.in_process:
        # The in-process endpoint stands for this host: its resolver's servers.
        dns = [(ipaddress.ip_address(a), 53) for a in resolv_conf_servers()]
    opts = WrapOptions(
        timings=args.timings,
        fidelity=args.fidelity,
        socks_env=args.socks_env,
        dns=dns,
        connect_timeout=args.connect_timeout,
        detach=True,  # CMD's exit is ours, as natively; what it left goes on (docs/wrap.md)
        endpoint_times=args.timings is not None,  # two requests a connect less without
    )
    started: list[bool] = []

    async def experiment(session: Any) -> int:
        started.append(True)
        result = await wrap(session, argv, opts, reactor)
        if args.verbose and result.hidden_ns:
            print(
                f"pktlab wrap: {result.hidden_ns / 1e6:.3f} ms of controller-link delay "
                "hidden from the program's clock", file=sys.stderr,
            )  # fmt: skip
        return result.status

    def listening(port: Any) -> None:
        print(f"pktlab wrap: waiting for an endpoint on {host_port(port.getHost())} "
              f"({link.describe()}) ...", file=sys.stderr)  # fmt: skip

    def refused(text: str) -> None:
        print(f"pktlab wrap: {text}", file=sys.stderr)

    running: Deferred[int] = Deferred.fromCoroutine(
        run_on_link(
            reactor,
            link,
            experiment,
            addresses=loopback_addresses(),
            on_listening=listening,
            on_refusal=refused,
        )
    )
    if args.wait is not None:
        timer = reactor.callLater(args.wait, lambda: None if started else running.cancel())
        running.addBoth(lambda r: (timer.cancel() if timer.active() else None, r)[1])
    try:
        status: int = await running
    except CancelledError:
        raise WrapError(f"no endpoint connected within {args.wait:g} s") from None
    return status


def run(args: argparse.Namespace) -> int:
    from twisted.internet import reactor as global_reactor
    from twisted.internet.defer import Deferred
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from packetlab.controller import ControllerError
    from packetlab.wrap.launch import LaunchError
    from packetlab.wrap.shim import ShimError

    reactor: Any = global_reactor
    if args.verbose:
        globalLogBeginner.beginLoggingTo(
            [textFileLogObserver(sys.stderr)], redirectStandardIO=False
        )
    box: dict[str, Any] = {}

    async def main() -> None:
        try:
            box["status"] = await wrap_command(reactor, args)
        except LaunchError as e:
            box["error"], box["status"] = str(e), e.status
        except (WrapError, LinkError, ControllerError, ShimError, ValueError, OSError) as e:
            box["error"] = str(e) or type(e).__name__
        except Exception as e:  # a bug: keep the type in the message
            box["error"] = f"{type(e).__name__}: {e}"
        finally:
            reactor.callWhenRunning(reactor.stop)

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(main()))
    reactor.run(installSignalHandlers=True)
    if "status" not in box and "error" not in box:
        # The reactor's SIGTERM handler stopped it before CMD ran (waiting for an
        # endpoint): say so, with the shell's status for SIGTERM, not a silent 125.
        box["error"], box["status"] = "terminated before CMD ran", 128 + signal.SIGTERM
    if "error" in box:
        print(f"pktlab wrap: {box['error']}", file=sys.stderr)
    status: int = box.get("status", EXIT_WRAP_FAILED)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pktlab wrap")
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
