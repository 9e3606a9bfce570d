"""``pktlab run traceroute|ping TARGET``: a measurement through a PacketLab endpoint.

By default the endpoint runs **in this process**: the `pktendpoint` service
(`packetlab.endpoint.tap.makeService`) is started in the same Twisted reactor as the
controller and connects to it over loopback, exporting the address this host would send
from to TARGET. No second program, config file or certificate is needed; it needs what an
endpoint needs for raw sockets (root, or CAP_NET_RAW and CAP_BPF). The timestamps are the
endpoint's kernel stamps, so sharing the reactor with the controller does not change an RTT.

With ``--listen ADDR`` no endpoint is started: the controller waits for an endpoint
started elsewhere (``twistd -n pktendpoint --insecure-plaintext --transproto raw,tcp,udp
--ipv4 SRC HOST:PORT``) and runs the measurement on the first one that connects (plain TCP
only for now: no TLS listener).
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import json
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from packetlab.cli.link import (
    Link,
    LinkError,
    add_link_arguments,
    route_source,
    run_on_link,
)
from packetlab.measure.records import PingResult, Stamp, TracerouteResult

T = TypeVar("T")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

EXIT_OK, EXIT_NO_REPLY, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

# Sub-commands in their own modules (packetlab.cli.run_NAME, see run_command.py).
MODULE_COMMANDS = ("dns", "http", "throughput", "sendgap", "clocksync", "alias")

EPILOG = """\
examples:
  pktlab run traceroute 192.0.2.1                 # endpoint in this process (needs root)
  pktlab run traceroute -6 --max-ttl 16 example.net
  pktlab run ping -c 3 -i 0.2 127.0.0.1
  pktlab run traceroute --json 10.77.3.2          # one JSON object per hop
  pktlab run traceroute --listen 127.0.0.1:20556 192.0.2.1
      # then: twistd -n pktendpoint --insecure-plaintext --transproto raw,tcp,udp \\
      #           --ipv4 SRC 127.0.0.1:20556      (SRC: the endpoint's address to send from)

RTTs are endpoint times: reply kernel receive time (ndata) minus probe send time (ntag;
a kernel TX timestamp on this project's endpoint). See docs/traceroute.md.
"""


class RunError(LinkError):
    """A problem worth one line on stderr (exit status 2)."""


def _positive(kind: type[T], what: str, lo: float, hi: float) -> Callable[[str], T]:
    def parse(text: str) -> T:
        try:
            value = kind(text)  # type: ignore[call-arg]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: expected a number, got {text!r}") from None
        if not lo <= value <= hi:  # type: ignore[operator]
            raise argparse.ArgumentTypeError(f"{what}: must be {lo:g}..{hi:g}, got {text}")
        return value

    return parse


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help="IPv4/IPv6 address or host name")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=4, help="use IPv4")
    fam.add_argument("-6", dest="family", action="store_const", const=6, help="use IPv6")
    p.add_argument(
        "--wait",
        type=_positive(float, "--wait", 0.001, 60),
        default=2.0,
        metavar="S",
        help="seconds to wait for a reply (ping: after the last request) [default: 2]",
    )
    p.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    p.add_argument(
        "--src",
        metavar="ADDR",
        help="source address (an address of the endpoint; default: the route's source "
        "address, or the endpoint's first exported address of the family with --listen)",
    )
    p.add_argument(
        "--timeout",
        type=_positive(float, "--timeout", 1, 86400),
        default=None,
        metavar="S",
        help="give up after S seconds (default: the measurement's worst case + 30 s with "
        "the in-process endpoint, no limit with --listen)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    add_link_arguments(p)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run a measurement through a PacketLab endpoint and print the result. The endpoint "
        "runs in this process unless --listen is given."
    )
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="measurement", metavar="MEASUREMENT")
    sub.required = True
    tr = sub.add_parser(
        "traceroute",
        help="UDP traceroute, one probe per hop",
        description="UDP traceroute like Butskoy's `traceroute -n -q 1`: one TTL-limited "
        "UDP probe per hop (ports 33434+n, 32-byte payload) from the endpoint's raw "
        "socket, ICMP answers captured there. Stops at the target or --max-ttl.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(tr)
    tr.add_argument(
        "-f",
        "--first-ttl",
        type=_positive(int, "--first-ttl", 1, 255),
        default=1,
        metavar="N",
        help="TTL of the first probe [default: 1]",
    )
    tr.add_argument(
        "-m",
        "--max-ttl",
        type=_positive(int, "--max-ttl", 1, 255),
        default=30,
        metavar="N",
        help="largest TTL [default: 30]",
    )
    tr.add_argument(
        "--sport",
        type=_positive(int, "--sport", 1, 65535),
        default=None,
        metavar="PORT",
        help="UDP source port of the probes (default: random; the paper used 20556)",
    )
    tr.add_argument(
        "--pace",
        type=_positive(float, "--pace", 0, 10),
        default=None,
        metavar="S",
        help="send every TTL at once, S seconds apart on the endpoint's clock, instead of "
        "one probe at a time (faster through a distant endpoint)",
    )
    tr.add_argument(
        "-p",
        "--port",
        type=_positive(int, "--port", 1, 65535),
        default=33434,
        metavar="PORT",
        help="destination port of the first probe, +1 per probe [default: 33434]",
    )
    pg = sub.add_parser(
        "ping",
        help="ICMP echo",
        description="ICMP(v6) echo requests from the endpoint's raw socket, paced by the "
        "endpoint (scheduled nsend times), replies captured there.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(pg)
    pg.add_argument(
        "-c",
        "--count",
        type=_positive(int, "--count", 1, 10_000),
        default=5,
        metavar="N",
        help="echo requests to send [default: 5]",
    )
    pg.add_argument(
        "-i",
        "--interval",
        type=_positive(float, "--interval", 0, 60),
        default=1.0,
        metavar="S",
        help="seconds between requests [default: 1]",
    )
    pg.add_argument(
        "-s",
        "--size",
        type=_positive(int, "--size", 0, 65000),
        default=56,
        metavar="B",
        help="payload bytes [default: 56]",
    )
    pg.add_argument(
        "-t",
        "--ttl",
        type=_positive(int, "--ttl", 1, 255),
        default=64,
        metavar="N",
        help="TTL / hop limit [default: 64]",
    )
    for name in MODULE_COMMANDS:
        importlib.import_module(f"packetlab.cli.run_{name}").add_parser(sub)


# -- targets and addresses ---------------------------------------------------------------------


def resolve_target(target: str, family: int | None) -> Address:
    """An address literal, or the first address of a host name (of `family` if given)."""
    try:
        addr = ipaddress.ip_address(target)
    except ValueError:
        pass
    else:
        if family is not None and addr.version != family:
            raise RunError(f"{target} is an IPv{addr.version} address, but -{family} was given")
        return addr
    af = {4: socket.AF_INET, 6: socket.AF_INET6, None: socket.AF_UNSPEC}[family]
    try:
        infos = socket.getaddrinfo(target, None, af, socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as e:
        raise RunError(f"cannot resolve {target!r}: {getattr(e, 'strerror', None) or e}") from None
    if not infos:
        raise RunError(f"cannot resolve {target!r}")
    return ipaddress.ip_address(str(infos[0][4][0]).split("%", 1)[0])


def check_raw_permission() -> None:
    """The in-process endpoint needs raw sockets; say so before starting anything."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
    except PermissionError:
        raise RunError(
            "the in-process endpoint needs raw sockets: run as root (or give this Python "
            "CAP_NET_RAW and CAP_BPF), or use --listen and an endpoint that has them"
        ) from None


# -- running ---------------------------------------------------------------------------------------


def _experiment(args: argparse.Namespace, dst: Address, src: Address | None, stamp: str) -> Any:
    from packetlab.measure.ping import ping
    from packetlab.measure.traceroute import traceroute

    if args.measurement == "traceroute":

        async def trace(session: Any) -> TracerouteResult:
            return await traceroute(
                session,
                dst,
                first_ttl=args.first_ttl,
                max_ttl=args.max_ttl,
                wait=args.wait,
                sport=args.sport,
                base_port=args.port,
                src=src,
                pace=args.pace,
                send_stamp=stamp,
                recv_stamp=stamp,
            )

        return trace

    async def echo(session: Any) -> PingResult:
        return await ping(
            session,
            dst,
            count=args.count,
            interval=args.interval,
            wait=args.wait,
            size=args.size,
            ttl=args.ttl,
            src=src,
            send_stamp=stamp,
            recv_stamp=stamp,
        )

    return echo


def _budget(args: argparse.Namespace) -> float:
    """Default --timeout of the in-process run: the measurement's own worst case + 30 s."""
    if args.measurement == "traceroute":
        n = args.max_ttl - args.first_ttl + 1
        work = n * (args.wait + 0.5) if args.pace is None else n * args.pace + args.wait
    else:
        work = (args.count - 1) * args.interval + args.wait
    return work + 30.0


async def measure(reactor: Any, args: argparse.Namespace) -> TracerouteResult | PingResult:
    if args.measurement == "traceroute" and args.first_ttl > args.max_ttl:
        raise RunError(f"--first-ttl {args.first_ttl} is above --max-ttl {args.max_ttl}")
    link = Link.from_args(args)
    dst = resolve_target(args.target, args.family)
    src: Address | None = None
    if args.src is not None:
        try:
            src = ipaddress.ip_address(args.src)
        except ValueError:
            raise RunError(f"--src {args.src!r} is not an IP address") from None
        if src.version != dst.version:
            raise RunError(f"--src {src} is IPv{src.version}, the target {dst} IPv{dst.version}")

    def refused(text: str) -> None:
        print(f"pktlab run {args.measurement}: {text}", file=sys.stderr)

    if not link.in_process:

        def listening(port: Any) -> None:
            h = port.getHost()
            print(
                f"waiting for an endpoint on {h.host}:{h.port} ({link.describe()}) ...",
                file=sys.stderr,
            )

        experiment = _experiment(args, dst, src, Stamp.UNKNOWN)
        result: TracerouteResult | PingResult = await run_on_link(
            reactor,
            link,
            experiment,
            timeout=args.timeout,
            on_listening=listening,
            on_refusal=refused,
        )
        return result
    check_raw_permission()
    if src is None:
        src = route_source(dst)
    experiment = _experiment(args, dst, src, Stamp.KERNEL)
    timeout = args.timeout if args.timeout is not None else _budget(args)
    result = await run_on_link(
        reactor,
        link,
        experiment,
        addresses=[src],
        transproto="raw,tcp,udp",
        timeout=timeout,
        on_refusal=refused,
    )
    return result


def render(result: TracerouteResult | PingResult, as_json: bool) -> str:
    from packetlab.measure.records import format_ping, format_traceroute, traceroute_jsonl

    if isinstance(result, TracerouteResult):
        return traceroute_jsonl(result, meta=True) if as_json else format_traceroute(result)
    if not as_json:
        return format_ping(result)
    lines = []
    for r in result.replies:
        obj = r.to_dict()
        obj.update(dst=result.dst, src=result.src, tool=result.tool)
        lines.append(json.dumps(obj, sort_keys=True) + "\n")
    return "".join(lines)


def run(args: argparse.Namespace) -> int:
    from twisted.internet import reactor as global_reactor
    from twisted.internet.defer import Deferred
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from packetlab.controller import ControllerError

    if getattr(args, "_command", None) is not None:
        rc: int = importlib.import_module("packetlab.cli.run_command").run_command(args)
        return rc
    reactor: Any = global_reactor
    if args.verbose:
        globalLogBeginner.beginLoggingTo(
            [textFileLogObserver(sys.stderr)], redirectStandardIO=False
        )
    box: dict[str, Any] = {}

    async def main() -> None:
        try:
            box["result"] = await measure(reactor, args)
        except (RunError, ControllerError, ValueError, OSError) as e:
            box["error"] = str(e) or type(e).__name__
        except Exception as e:  # a bug: keep the type in the message
            box["error"] = f"{type(e).__name__}: {e}"
        finally:
            reactor.callWhenRunning(reactor.stop)

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(main()))
    reactor.run(installSignalHandlers=True)
    if "error" in box:
        print(f"pktlab run {args.measurement}: {box['error']}", file=sys.stderr)
        return EXIT_ERROR
    if "result" not in box:  # the reactor was stopped under us (SIGINT, SIGTERM)
        print(f"pktlab run {args.measurement}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    result = box["result"]
    sys.stdout.write(render(result, args.json))
    sys.stdout.flush()
    if isinstance(result, PingResult) and result.received == 0:
        return EXIT_NO_REPLY
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pktlab run")
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
