"""``pktlab run MEASUREMENT``: a measurement through a PacketLab endpoint.

Each measurement is a module of its own, imported only when it is the one asked for
(`MODULE_COMMANDS`): traceroute (`packetlab.cli.run_traceroute`) and ping
(`packetlab.cli.run_ping`), which share `packetlab.cli.run_measure`; dns, http,
throughput, ... (`packetlab.cli.run_NAME`, which share `packetlab.cli.run_command`).
This module is what all of them share: `RunError`, the option helpers (`Given`,
`check_ranges`, `in_range`, ...), `resolve_target`, and the dispatcher (`add_arguments`,
`run`, `main`).

By default the endpoint runs **in this process** (`packetlab.cli.link`): the
`pktendpoint` service is started in the same Twisted reactor as the controller and
connects to it over loopback with TLS, exporting the address this host would send from to
TARGET. It needs what an endpoint needs for raw sockets (root, or CAP_NET_RAW and
CAP_BPF). The timestamps are the endpoint's kernel stamps, so sharing the reactor with
the controller does not change an RTT. With ``--listen ADDR`` no endpoint is started: the
controller waits for one started elsewhere (TLS with the certificates of ``--home``).

Results are printed as they come (a progress line on stderr on a terminal); the first
Ctrl-C stops sending and prints what was gathered and the summary (exit 130), a second
one quits at once. `packetlab.cli.interrupt` and `packetlab.cli.report` do that.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from packetlab.cli.interrupt import quit_on_interrupt
from packetlab.cli.linkargs import RunError as RunError
from packetlab.cli.linkargs import add_link_arguments

T = TypeVar("T")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Sub-commands, each in its own module (packetlab.cli.run_NAME): an `add_parser(sub)`,
# and either a `run(args)` (traceroute, ping) or a `Command` (see run_command.py).
MODULE_COMMANDS = (
    "traceroute", "ping", "dns", "http", "throughput", "sendgap", "clocksync", "alias",
    "sslcert",
)  # fmt: skip
MEASUREMENTS = MODULE_COMMANDS

EPILOG = """\
examples:
  pktlab run traceroute 192.0.2.1                 # endpoint in this process (needs root)
  pktlab run traceroute -6 --max-ttl 16 example.net
  pktlab run ping -c 3 -i 0.2 127.0.0.1
  pktlab run traceroute --json 10.77.3.2          # one JSON object per probe
  pktlab run traceroute -n --mda 10.77.6.2        # every interface of every hop
  pktlab run traceroute -n --mda-lite -Q 500 10.77.6.2   # MDA-Lite, 500 probes at most
  pktlab run traceroute -n --mda-lite --multilevel 10.77.6.2   # and each hop's routers
  pktlab run traceroute --listen 127.0.0.1:20556 192.0.2.1    # TLS, ~/.pktlab (pktlab init)
      # then: twistd -n pktendpoint -c ~/.pktlab/endpt.conf --transproto raw,tcp,udp \\
      #           --ipv4 SRC 127.0.0.1:20556      (SRC: the endpoint's address to send from)
      # (an endpoint with --insecure-plaintext: give --insecure-plaintext here too)

RTTs are endpoint times: reply kernel receive time (ndata) minus probe send time (ntag;
a kernel TX timestamp on this project's endpoint). See docs/traceroute.md.
"""


class Given(argparse.Action):
    """Stores an option's value (its `const` when it takes none) and notes that it was
    given, so that a check can tell it from its default (`given`): traceroute's `-q 3`
    beside `--mda`, iperf3's `-n` beside `-t` or `-R` beside `--bidir`."""

    def __init__(self, option_strings: Any, dest: str, const: Any = None, **kwargs: Any) -> None:
        if const is not None:
            kwargs["nargs"] = 0
        super().__init__(option_strings, dest, const=const, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
        namespace._given = set(getattr(namespace, "_given", ())) | set(self.option_strings)


def given(args: argparse.Namespace, option: str) -> bool:
    """Whether `option` (any of its spellings) was on the command line (`Given`)."""
    return option in getattr(args, "_given", ())


def check_ranges(*checks: tuple[str, float, float, float], unit: str = "") -> None:
    """RunError naming the first option whose value is outside its range (nan too):
    `--size must be 4..65000, got 70000`. Each check is (option, value, low, high)."""
    for name, value, low, high in checks:
        if not low <= value <= high:
            span = f"{_num(low)}..{_num(high)}" if high != float("inf") else f">= {_num(low)}"
            raise RunError(f"{name} must be {span}{unit}, got {_num(value)}")


def _num(value: float) -> str:
    """10000000, not 1e+07; 0.05; nan."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def in_range(kind: type[T], what: str, lo: float, hi: float) -> Callable[[str], T]:
    """A number of `kind` in lo..hi. (`what` names the option for the reader of the call;
    argparse itself prefixes the message with it.)"""

    def parse(text: str) -> T:
        try:
            value = kind(text)  # type: ignore[call-arg]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not lo <= value <= hi:  # type: ignore[operator]
            raise argparse.ArgumentTypeError(f"must be {lo:g}..{hi:g}, got {text}")
        return value

    return parse


class _Refused(argparse.Action):
    """An option of the native tool that cannot be had over a PacketLab endpoint (or is
    not built): a one-line error saying why, `help` naming it."""

    def __init__(self, *args: Any, why: str, **kw: Any) -> None:
        self.why = why
        kw["help"] = argparse.SUPPRESS
        super().__init__(*args, **kw)

    def __call__(self, parser: Any, ns: argparse.Namespace, value: Any, opt: Any = None) -> None:
        raise argparse.ArgumentError(self, self.why)


def refuse(
    p: argparse.ArgumentParser, refused: Sequence[tuple[tuple[str, ...], str, bool]]
) -> None:
    """The native tool's options that cannot be had here: each a one-line error (exit 2)
    saying why, listed first in the epilog rather than in the usage."""
    for flags, why, arg in refused:
        p.add_argument(*flags, action=_Refused, why=why, nargs=None if arg else 0)
    listed = "".join(f"\n  {'/'.join(flags):<22}{why}" for flags, why, _ in refused)
    p.epilog = f"refused (a one-line error saying why):{listed}\n\n{p.epilog or ''}"


def add_version(p: argparse.ArgumentParser, tool: str) -> None:
    """-V, as traceroute's and ping's: the version, and exit."""
    from packetlab import __version__

    p.add_argument(
        "-V",
        action="version",
        version=f"pktlab run {tool} (packetlab {__version__})",
        help="print the version and exit",
    )


def add_common(p: argparse.ArgumentParser, src_flag: str | None = None) -> None:
    """The options traceroute and ping share: TARGET, -4/-6, --json, --src (also
    `src_flag`: traceroute's -s, ping's -I, which takes an interface name too),
    --timeout, --warts, -v and the link's."""
    p.add_argument("target", metavar="TARGET", help="IPv4/IPv6 address or host name")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=4, help="use IPv4")
    fam.add_argument("-6", dest="family", action="store_const", const=6, help="use IPv6")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    p.add_argument(
        *([src_flag] if src_flag else []),
        "--src",
        metavar="ADDR" if src_flag != "-I" else "ADDR|IFNAME",
        help="source address (an address of the endpoint; default: the route's source "
        "address, or the endpoint's first exported address of the family with --listen)"
        + (
            "; ping -I IFNAME: the address of the in-process endpoint's interface IFNAME "
            "(an endpoint reached with --listen exports addresses only: give one of them)"
            if src_flag == "-I"
            else ""
        ),
    )
    p.add_argument(
        "--timeout",
        type=in_range(float, "--timeout", 1, 86400),
        default=None,
        metavar="S",
        help="give up after S seconds (default: the measurement's worst case + 30 s with "
        "the in-process endpoint, no limit with --listen)",
    )
    p.add_argument(
        "--warts",
        metavar="FILE",
        help="also write the measurement in scamper's warts format to FILE ('-': stdout, "
        "and the usual output to stderr), for sc_warts2json, sc_warts2text and scamper's "
        "other tools",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    add_link_arguments(p)


def resolve_target(target: str, family: int | None, like: str | None = None) -> Address:
    """An address literal, or the first address of a host name (of `family` if given).
    `like` "ping" or "traceroute": that tool's choice and words (`NAME: REASON`, as both
    print getaddrinfo's errors): iputils ping looks up every family and says `Address
    family for hostname not supported` when none is `family`'s; Butskoy traceroute takes
    the first IPv4 address when no family is given (its DEFAULT_AF)."""
    try:
        addr = ipaddress.ip_address(target)
    except ValueError:
        pass
    else:
        if family is not None and addr.version != family:
            if like is not None:
                raise RunError(f"{target}: Address family for hostname not supported")
            raise RunError(f"{target} is an IPv{addr.version} address, but -{family} was given")
        return addr
    asked = None if like == "ping" else family
    af = {4: socket.AF_INET, 6: socket.AF_INET6, None: socket.AF_UNSPEC}[asked]
    try:
        infos = socket.getaddrinfo(target, None, af, socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or e
        if like is not None and isinstance(e, UnicodeError):  # (Python's IDNA codec's)
            reason = "Name or service not known"  # what glibc says of such a name
        raise RunError(
            f"{target}: {reason}" if like is not None else f"cannot resolve {target!r}: {reason}"
        ) from None
    found = [ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos]
    if like == "ping" and family is not None:
        found = [a for a in found if a.version == family]
        if not found:
            raise RunError(f"{target}: Address family for hostname not supported")
    if like == "traceroute" and family is None:
        found.sort(key=lambda a: a.version != 4)  # (stable: the first IPv4 one first)
    if not found:
        raise RunError(f"cannot resolve {target!r}")
    return found[0]


def add_arguments(parser: argparse.ArgumentParser, only: str | None = None) -> None:
    """`pktlab run`'s parser; with `only` (a measurement's name, from the command line)
    the parser of that measurement alone: the others' modules, and the options and help
    texts of every other measurement, cost start-up time that a run does not need
    (docs/performance.md, pktlab run, Session 10)."""
    parser.description = (
        "Run a measurement through a PacketLab endpoint and print the result. The endpoint "
        "runs in this process unless --listen is given."
    )
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="measurement", metavar="MEASUREMENT")
    sub.required = True
    if only not in MEASUREMENTS:  # none, -h, or a typo: all of them, for help and errors
        only = None
    for name in MODULE_COMMANDS:
        if only in (None, name):
            importlib.import_module(f"packetlab.cli.run_{name}").add_parser(sub)


def startup_imports(args: argparse.Namespace) -> tuple[str, ...]:
    """The modules a measurement imports once it runs (the reactor and the controller;
    a traceroute's or ping's report and measurement; in-process, the endpoint):
    `packetlab.cli.main` imports them ahead, under its start-up GC rules
    (docs/performance.md, pktlab run, Session 11)."""
    names = ["twisted.internet.reactor", "packetlab.controller.listener"]
    if getattr(args, "_command", None) is not None:  # run dns, http...: run_NAME.py
        names.append("packetlab.cli.run_command")
    else:
        names.append("packetlab.measure.rdns")
        if args.measurement == "ping":
            names += ["packetlab.cli.run_ping_echo", "packetlab.cli.report_ping"]
            names.append("packetlab.measure.ping")
        else:
            names += ["packetlab.cli.run_traceroute_trace", "packetlab.cli.report_traceroute"]
            names.append("packetlab.measure.traceroute")
            if getattr(args, "mda", False):
                names.append("packetlab.measure.mda")
    if getattr(args, "listen", None) is None:
        names += [
            "packetlab.controller.local",
            "packetlab.endpoint.tap",
            "packetlab.cli.link_endpoint",
        ]
    return tuple(names)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "_command", None) is not None:  # a Command's measurement (run_NAME.py)
        rc: int = importlib.import_module("packetlab.cli.run_command").run_command(args)
        return rc
    rc = importlib.import_module(f"packetlab.cli.run_{args.measurement}").run(args)
    return rc


def build_parser() -> argparse.ArgumentParser:
    from packetlab.cli import _Parser

    parser = _Parser(prog="pktlab run")  # (as `pktlab run` builds it)
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quit_on_interrupt("pktlab run")
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
