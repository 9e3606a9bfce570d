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
import os
import sys
from collections.abc import Sequence
from typing import Any

from packetlab.cli.run import RunError, listen_description

EXIT_WRAP_FAILED = 125

EPILOG = """\
examples:
  pktlab wrap -- curl -s https://example.net/          # endpoint in this process
  pktlab wrap --timings t.jsonl -- python3 fetch.py     # endpoint-side times per connection
  pktlab wrap --fidelity -- curl -w '%{time_connect}\\n' -o /dev/null -s http://192.0.2.80/
  pktlab wrap --listen 127.0.0.1:20556 -- dig +tcp @192.0.2.53 example.net
      # then: twistd -n pktendpoint --insecure-plaintext --transproto tcp,udp \\
      #           --dns-ipv4 DNS 127.0.0.1:20556

Interception: proxychains-ng (LD_PRELOAD, Debian package proxychains4) sends every TCP
connect and name lookup of CMD and its children to a SOCKS5 server bound to the endpoint
session; --socks-env only sets ALL_PROXY (for SOCKS-aware tools). UDP goes through the
endpoint for SOCKS5 UDP ASSOCIATE clients only. --fidelity makes CMD's clocks show the
endpoint's intervals instead of the controller link's delay.
"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"must be 0..86400 seconds, got {text}")
    return value


def dns_server(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """ADDR, ADDR:PORT or [V6]:PORT (default port 53)."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}")
    return addr, int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run CMD with its network traffic going out from a PacketLab endpoint (in this "
        "process unless --listen is given). CMD's stdout and exit status pass through."
    )
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--listen",
        metavar="ADDR",
        help="do not start an endpoint: listen on ADDR (PORT, HOST:PORT, [V6]:PORT or a "
        "Twisted endpoint string) and wrap CMD through the first endpoint that connects",
    )
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
        default=30.0,
        metavar="S",
        help="seconds to wait for the endpoint to connect [default: 30]",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS...")


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


def endpoint_options(port: int, dns: Sequence[str]) -> list[str]:
    """pktendpoint options of the in-process endpoint: loopback controller at `port`,
    TCP and UDP, `dns` exported as its DNS servers; ~/.pktlab/endpt.conf is not read."""
    opts = ["--insecure-plaintext", "--config", os.devnull, "--transproto", "tcp,udp",
            "--host-id", "pktlab-wrap", "--reconnect-delay", "0.05"]  # fmt: skip
    v4 = [d for d in dns if ipaddress.ip_address(d).version == 4][:16]
    v6 = [d for d in dns if ipaddress.ip_address(d).version == 6][:16]
    if v4:
        opts += ["--dns-ipv4", ",".join(v4)]
    if v6:
        opts += ["--dns-ipv6", ",".join(v6)]
    return [*opts, f"127.0.0.1:{port}"]


async def _in_process(reactor: Any, experiment: Any, wait: float, dns: Sequence[str]) -> Any:
    from twisted.internet import defer
    from twisted.python import usage

    from packetlab.controller import Controller, ControllerError
    from packetlab.endpoint.tap import Options, makeService

    ctl: Controller[Any] = Controller(experiment, reactor=reactor, limit=1)
    port = await ctl.listen("tcp:0:interface=127.0.0.1")
    options = Options()
    try:
        host: Any = port.getHost()
        options.parseOptions(endpoint_options(host.port, dns))
    except usage.UsageError as e:
        await ctl.stop()
        raise RunError(f"cannot configure the in-process endpoint: {e}") from None
    service = makeService(options)
    service.startService()
    try:
        return await _outcome(reactor, ctl, wait, defer, ControllerError)
    finally:
        await ctl.stop()
        stopped = service.stopService()
        if stopped is not None:
            await stopped


async def _outcome(reactor: Any, ctl: Any, wait: float, defer: Any, error: Any) -> Any:
    d = ctl.next_outcome()
    timer = reactor.callLater(wait, lambda: None if ctl.accepted else d.cancel())
    try:
        outcome = await d
    except defer.CancelledError:
        raise error(f"no endpoint connected within {wait:g} s") from None
    finally:
        if timer.active():
            timer.cancel()
    return outcome.unwrap()


async def wrap_command(reactor: Any, args: argparse.Namespace) -> int:
    from packetlab.controller import Controller, ControllerError
    from packetlab.wrap.launch import find_program
    from packetlab.wrap.runner import WrapOptions, wrap

    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise RunError("no command given (pktlab wrap [options] -- CMD ARGS...)")
    find_program(argv[0])  # 126/127 before any endpoint is started
    opts = WrapOptions(
        timings=args.timings,
        fidelity=args.fidelity,
        socks_env=args.socks_env,
        dns=list(args.dns or []),
        connect_timeout=args.connect_timeout,
    )

    async def experiment(session: Any) -> int:
        result = await wrap(session, argv, opts, reactor)
        if args.verbose and result.hidden_ns:
            print(
                f"pktlab wrap: {result.hidden_ns / 1e6:.3f} ms of controller-link delay "
                "hidden from the program's clock", file=sys.stderr,
            )  # fmt: skip
        return result.status

    if args.listen is None:
        dns = [str(a) for a, _ in args.dns] if args.dns else resolv_conf_servers()
        status: int = await _in_process(reactor, experiment, args.wait, dns)
        return status
    from twisted.internet import defer

    where = listen_description(args.listen)
    ctl: Controller[int] = Controller(experiment, reactor=reactor, limit=1)
    port = await ctl.listen(where)
    h: Any = port.getHost()
    print(f"pktlab wrap: waiting for an endpoint on {h.host}:{h.port} ...", file=sys.stderr)
    try:
        status = await _outcome(reactor, ctl, args.wait, defer, ControllerError)
    finally:
        await ctl.stop()
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
        except (RunError, ControllerError, ShimError, ValueError, OSError) as e:
            box["error"] = str(e) or type(e).__name__
        except Exception as e:  # a bug: keep the type in the message
            box["error"] = f"{type(e).__name__}: {e}"
        finally:
            reactor.callWhenRunning(reactor.stop)

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(main()))
    reactor.run(installSignalHandlers=True)
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
