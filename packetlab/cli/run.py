"""``pktlab run traceroute|ping TARGET``: a measurement through a PacketLab endpoint.

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
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from packetlab.cli import NativeValueError
from packetlab.cli.exits import EXIT_NO_REPLY, EXIT_OK
from packetlab.cli.interrupt import quit_on_interrupt, run_reactor
from packetlab.cli.link import (
    Link,
    LinkError,
    add_link_arguments,
    route_source,
    run_on_link,
)

if TYPE_CHECKING:  # (imported where used: `run dns`, `http`... import this module too)
    from packetlab.cli.report import MdaReport, PingReport, TracerouteReport
    from packetlab.controller.stop import StopSignal
    from packetlab.measure.records import PingResult, TracerouteResult

T = TypeVar("T")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# traceroute --mda: the Paris method of each probe protocol (the flow is varied)
MDA_METHOD = {
    "udp": "udp-paris", "udp-paris": "udp-paris", "icmp": "icmp-paris",
    "icmp-paris": "icmp-paris", "tcp": "tcp",
}  # fmt: skip
# traceroute's methods whose probes are a flow each (a source port each), by option
FLOW_PER_PROBE = {"udp-fixed": "-U", "udplite": "-UL", "dccp": "-D"}

# Sub-commands in their own modules (packetlab.cli.run_NAME, see run_command.py).
MODULE_COMMANDS = ("dns", "http", "throughput", "sendgap", "clocksync", "alias")
MEASUREMENTS = ("traceroute", "ping", *MODULE_COMMANDS)

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

# `pktlab run traceroute --help`: the run examples without ping's, and one for each of
# traceroute's own options a researcher reaches for.
TRACEROUTE_EPILOG = EPILOG.replace("  pktlab run ping -c 3 -i 0.2 127.0.0.1\n", "").replace(
    "  pktlab run traceroute --listen",
    """\
  pktlab run traceroute -n -T -O ecn,info 10.77.3.2     # ECN SYNs; the target's <rst,ack>
  pktlab run traceroute -n -g 10.77.2.2 10.77.3.2       # loose source route via a gateway
  pktlab run traceroute -n -UL 10.77.3.2                # UDP-Lite probes (-D: DCCP)
  RA_SERVER=whois.radb.net pktlab run traceroute -A 10.77.3.2   # each hop's AS path
  pktlab run traceroute --listen""",
    1,
)


PING_EPILOG = """\
examples:
  pktlab run ping -c 3 -i 0.2 127.0.0.1
  pktlab run ping -q -c 1000 -i 0 127.0.0.1       # as fast as replies return: statistics only
  pktlab run ping --json -c 3 127.0.0.1           # JSON lines, then a summary
  pktlab run ping -c 2 -T tsandaddr 10.77.3.2     # IP timestamps: each reply's TS: lines
  pktlab run ping -c 2 10.77.2.2 10.77.3.2        # HOST TARGET: a loose source route (LSRR:)
  pktlab run ping --listen 127.0.0.1:20556 127.0.0.1    # TLS, ~/.pktlab (pktlab init)
      # then: twistd -n pktendpoint -c ~/.pktlab/endpt.conf --transproto raw,tcp,udp \\
      #           127.0.0.1:20556
      # (an endpoint with --insecure-plaintext: give --insecure-plaintext here too)

RTTs are endpoint times: reply kernel receive time (ndata) minus request send time (ntag;
a kernel TX timestamp on this project's endpoint). See docs/usability.md.
"""


class RunError(LinkError):
    """A problem worth one line on stderr (exit status 2)."""


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


def _positive(kind: type[T], what: str, lo: float, hi: float) -> Callable[[str], T]:
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


def _iputils_int(lo: int, hi: int) -> Callable[[str], int]:
    """A whole number in lo..hi, refused in iputils ping's words and status (1)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise NativeValueError(f"invalid argument: {text!r}") from None
        if not lo <= value <= hi:
            raise NativeValueError(
                f"invalid argument: {text!r}: out of range: {lo} <= value <= {hi}"
            )
        return value

    return parse


def _sendwait(text: str) -> float:
    """traceroute -z: seconds, or milliseconds when more than 10."""
    value = _positive(float, "-z", 0, 10_000)(text)
    return value / 1000 if value > 10 else value


def _wait(p: argparse.ArgumentParser, flag: str, what: str, default: float) -> None:
    p.add_argument(
        flag,
        "--wait",
        dest="wait",
        type=_positive(float, "--wait", 0.001, 60),
        default=default,
        metavar="S",
        help=f"seconds to wait for {what} [default: {default:g}]",
    )


class _TracerouteWait(argparse.Action):
    """traceroute -w MAX[,HERE[,NEAR]]: wait up to MAX s for a probe, or HERE times the RTT
    of an answer from the same hop, NEAR times that of a later hop (0: not)."""

    def __call__(self, parser: Any, ns: argparse.Namespace, text: Any, opt: Any = None) -> None:
        parts = str(text).split(",")
        if len(parts) > 3:
            raise argparse.ArgumentError(self, f"expected MAX[,HERE[,NEAR]], got {text!r}")
        try:
            got = [float(x) for x in parts]
        except ValueError:
            raise argparse.ArgumentError(self, f"expected a number, got {text!r}") from None
        if not 0.001 <= got[0] <= 60 or any(not 0 <= x <= 1000 for x in got[1:]):
            raise argparse.ArgumentError(
                self, f"must be 0.001..60 s (HERE, NEAR 0..1000), got {text}"
            )
        ns.wait = got[0]
        if len(got) > 1:
            ns.here = got[1]
        if len(got) > 2:
            ns.near = got[2]


class _Refused(argparse.Action):
    """An option of the native tool that cannot be had over a PacketLab endpoint (or is
    not built): a one-line error saying why, `help` naming it."""

    def __init__(self, *args: Any, why: str, **kw: Any) -> None:
        self.why = why
        kw["help"] = argparse.SUPPRESS
        super().__init__(*args, **kw)

    def __call__(self, parser: Any, ns: argparse.Namespace, value: Any, opt: Any = None) -> None:
        raise argparse.ArgumentError(self, self.why)


def _refuse(
    p: argparse.ArgumentParser, refused: Sequence[tuple[tuple[str, ...], str, bool]]
) -> None:
    """The native tool's options that cannot be had here: each a one-line error (exit 2)
    saying why, listed first in the epilog rather than in the usage."""
    for flags, why, arg in refused:
        p.add_argument(*flags, action=_Refused, why=why, nargs=None if arg else 0)
    listed = "".join(f"\n  {'/'.join(flags):<22}{why}" for flags, why, _ in refused)
    p.epilog = f"refused (a one-line error saying why):{listed}\n\n{p.epilog or ''}"


def _version(p: argparse.ArgumentParser, tool: str) -> None:
    from packetlab import __version__

    p.add_argument(
        "-V",
        action="version",
        version=f"pktlab run {tool} (packetlab {__version__})",
        help="print the version and exit",
    )


def _tos(text: str) -> int:
    """ping -Q: the TOS byte, decimal or 0x hex, in iputils' words when bad."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad TOS value: {text}") from None
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(
            f"the decimal value of TOS bits must be in range 0-255: {value}"
        )
    return value


def _timestamp_kind(text: str) -> str:
    """ping -T: the kind of timestamp option, in iputils' words when bad."""
    from packetlab.measure.packets import TIMESTAMP_KINDS

    if text not in TIMESTAMP_KINDS:
        raise argparse.ArgumentTypeError(f"invalid timestamp type: {text}")
    return text


def _ping_operands(args: argparse.Namespace, extra: list[str]) -> bool:
    """`pktlab run ping HOST -c 1 TARGET`: operands after an option are more hosts (the
    TARGET last), as ping's getopt permutes them (was `unrecognized arguments`)."""
    args.prespec.extend(extra)
    return True


def _traceroute_operands(args: argparse.Namespace, extra: list[str]) -> bool:
    """`pktlab run traceroute TARGET -n PACKETLEN`: the one operand after an option is
    PACKETLEN, as traceroute takes it (was `unrecognized arguments`); those after it are
    left in `extra`, the words of the error (traceroute's `Extra arg`)."""
    if args.packetlen is None and extra:
        args.packetlen = extra.pop(0)
    return not extra


def ping_hosts(args: argparse.Namespace) -> list[str]:
    """ping HOST... TARGET: the hosts before the target; `args.target` becomes the last
    one. With -T tsprespec they are its addresses (at most 4, as iputils), else a loose
    source route through them (at most 9, as iputils; not with -R or another -T: ping's
    usage). RunError, one line, for too many or a refused combination."""
    from packetlab.measure.packets import MAX_PING_ROUTE, MAX_PRESPEC

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


def _flow_label(text: str) -> int:
    """traceroute -l: an unsigned number (0x hex too), its low 20 bits as traceroute's."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an unsigned number, got {text}")
    return value & 0xFFFFF


class _Flood(argparse.Action):
    """ping -f: the flood display, and -i 0 unless -i is given (as iputils)."""

    def __call__(self, parser: Any, ns: argparse.Namespace, value: Any, opt: Any = None) -> None:
        ns.flood = True
        if not given(ns, "-i"):
            ns.interval = 0.0


def _common(p: argparse.ArgumentParser, src_flag: str | None = None) -> None:
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
        type=_positive(float, "--timeout", 1, 86400),
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
    if only in (None, "traceroute"):
        _add_traceroute(sub)
    if only in (None, "ping"):
        _add_ping(sub)
    for name in MODULE_COMMANDS:
        if only in (None, name):
            importlib.import_module(f"packetlab.cli.run_{name}").add_parser(sub)


def _add_traceroute(sub: Any) -> None:
    tr = sub.add_parser(
        "traceroute",
        help="traceroute (UDP, ICMP or TCP probes)",
        description="traceroute like Butskoy's `traceroute`: TTL-limited probes, 3 per hop "
        "(UDP to ports 33434+n with a 32-byte payload; -I ICMP echo; -T TCP SYN to port 80; "
        "-P tcp-ack bare ACKs) from the endpoint's raw socket, answers captured there. "
        "Every hop is probed at once (-N: at most N probes in flight); a silent hop is "
        "waited for --wait s, or 10 times the RTT of a later hop that answered. Stops at "
        "the target or --max-ttl. Each hop is printed as soon as it and the hops before it "
        "are known. --mda finds every path through per-flow load balancers.",
        epilog=TRACEROUTE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(tr, "-s")  # traceroute -s src_addr
    tr.add_argument(
        "packetlen",
        nargs="?",
        default=None,
        metavar="PACKETLEN",
        help="as traceroute's packetlen: the probes' total IP length in bytes (at least "
        "the headers, 28 for UDP/ICMP over IPv4, 48 over IPv6; at most 65000; TCP probes "
        "keep their 60/80; over the MTU, in IP fragments as traceroute's kernel sends them) "
        "[default: 60 (IPv4) / 80 (IPv6)]",
    )
    tr.add_argument(
        "-w",
        "--wait",
        action=_TracerouteWait,
        metavar="MAX[,HERE,NEAR]",
        help="as traceroute -w: wait for a probe's answer at most MAX s [5], or HERE times "
        "the RTT of an answer from the same hop [3], NEAR times that of a later hop [10] "
        "(0: not)",
    )
    tr.set_defaults(wait=5.0, here=3.0, near=10.0, _take_operands=_traceroute_operands)
    tr.add_argument(
        "-q",
        "--queries",
        type=_positive(int, "--queries", 1, 10),
        default=3,
        action=Given,
        metavar="N",
        help="probes per hop [default: 3, as traceroute]",
    )
    tr.add_argument(
        "-N",
        "--sim-queries",
        dest="squeries",
        type=_positive(int, "--sim-queries", 1, 1000),
        default=None,
        metavar="N",
        help="at most N probes in flight, the next sent as one is answered or given up "
        "on, as traceroute -N [default: all at once]",
    )
    proto = tr.add_mutually_exclusive_group()
    proto.add_argument(
        "-P",
        "--protocol",
        "--method",
        dest="protocol",
        type=str.lower,
        choices=["udp", "icmp", "tcp", "tcp-ack", "udp-paris", "icmp-paris"],
        default="udp",
        metavar="METHOD",
        help="probes: udp, icmp, tcp (SYN), or scamper's tcp-ack (bare ACKs), udp-paris, "
        "icmp-paris [default: udp]",
    )
    proto.add_argument(
        "-I", dest="protocol", action="store_const", const="icmp", help="ICMP echo probes"
    )
    proto.add_argument(
        "-T", dest="protocol", action="store_const", const="tcp", help="TCP SYN probes"
    )
    proto.add_argument(
        "-U",
        dest="protocol",
        action="store_const",
        const="udp-fixed",
        help="UDP probes to one port (-p, default 53), as traceroute -U (each probe from "
        "its own source port)",
    )
    proto.add_argument(
        "-UL",
        "--UL",
        dest="protocol",
        action="store_const",
        const="udplite",
        help="UDP-Lite probes to one port (-p, default 53), as traceroute -UL (-O "
        "coverage=NUM: the checksum coverage [8])",
    )
    proto.add_argument(
        "-D",
        "--dccp",
        dest="protocol",
        action="store_const",
        const="dccp",
        help="DCCP-Request probes to one port (-p, default 33434), as traceroute -D (-O "
        "service=NUM: the service code [1885957735])",
    )
    tr.add_argument(
        "-t",
        "--tos",
        default=None,
        metavar="TOS",
        help="the probes' TOS byte (IPv6: traffic class), 0..255, decimal or 0x hex, as "
        "traceroute -t [default: 0]",
    )
    tr.add_argument(
        "-F",
        "--dont-fragment",
        dest="dont_fragment",
        action="store_true",
        help="set DF in the probes (IPv4), as traceroute -F",
    )
    tr.add_argument(
        "--mtu",
        action="store_true",
        help="path MTU discovery, as traceroute --mtu: DF probes one at a time from "
        "PACKETLEN [65000] down to the MTU a router names (`F=NUM` at the hop where the "
        "size changed); implies -F and one probe in flight",
    )
    tr.add_argument(
        "--paris",
        action="store_true",
        help="Paris traceroute: every probe one flow (constant ports, or ICMP checksum), "
        "so a per-flow load balancer sends all of them one way (-P udp-paris/icmp-paris; "
        "TCP probes are one flow anyway; not with -U, -UL or -D, a source port each)",
    )
    tr.add_argument(
        "--mda",
        action="store_true",
        help="multipath detection (Paris traceroute's MDA, scamper's tracelb): vary the "
        "flow of Paris probes until every interface of each hop behind a per-flow load "
        "balancer is found with --confidence; prints each hop's interfaces",
    )
    tr.add_argument(
        "--confidence",
        type=_positive(float, "--confidence", 50, 99.9),
        default=95.0,
        metavar="PCT",
        help="with --mda: the chance of finding every next hop of an interface [default: 95]",
    )
    tr.add_argument(
        "--mda-lite",
        dest="mda_lite",
        action="store_true",
        help="MDA-Lite (Vermeulen et al., IMC 2018; implies --mda): load balancing taken as "
        "uniform (n(k) flows a hop, no node control), with a meshing test between two "
        "multi-interface hops that falls back to the full MDA there",
    )
    tr.add_argument(
        "--multilevel",
        action="store_true",
        help="with --mda or --mda-lite: Multilevel MDA-Lite's router-level view; the "
        "interfaces of each hop resolved into routers by alias resolution (IP-ID series "
        "through the flows that reached them, and ICMP echo; the monotonic bounds test, "
        "initial-TTL fingerprints, MPLS label stacks), printed after the trace, one line "
        "per hop",
    )
    tr.add_argument(
        "--mbt-rounds",
        dest="mbt_rounds",
        type=_positive(int, "--mbt-rounds", 1, 10),
        default=None,
        metavar="N",
        help="with --multilevel: at most N rounds of the monotonic bounds test; they stop "
        "earlier, once a round changes no hop's alias sets [default: 5]",
    )
    tr.add_argument(
        "-Q",
        "--maxprobec",
        dest="max_probes",
        type=_positive(int, "--maxprobec", 50, 65535),
        default=None,
        metavar="N",
        help="with --mda: send at most N probes in all, as scamper tracelb -Q; the trace "
        "ends there (stop reason MAXPROBEC) [default: 3000]",
    )
    tr.add_argument(
        "--gaplimit",
        dest="gaplimit",
        type=_positive(int, "--gaplimit", 1, 5),
        default=None,
        metavar="N",
        help="with --mda: N TTLs in a row without an answer end it, as scamper tracelb -g "
        "(-g is traceroute's gateway) [default: 3]",
    )
    tr.add_argument(
        "--attempts",
        dest="attempts",
        type=_positive(int, "--attempts", 1, 5),
        default=None,
        metavar="N",
        help="with --mda: probes of one flow and TTL before it counts as silent, as "
        "scamper tracelb -q (-q is traceroute's probes per hop) [default: 1; scamper's 2]",
    )
    tr.add_argument(
        "-W",
        "--wait-probe",
        dest="wait_probe",
        type=_positive(int, "--wait-probe", 0, 200),
        default=None,
        metavar="CS",
        help="with --mda: 1/100 s between two probes, as scamper tracelb -W [default: 0, "
        "each round's probes at once; scamper's 25]",
    )
    tr.add_argument(
        "-n",
        dest="numeric",
        action="store_true",
        help="print hop addresses only (no reverse DNS lookup of their names)",
    )
    tr.add_argument(
        "-l",
        "--flowlabel",
        dest="flow_label",
        type=_flow_label,
        default=0,
        metavar="FLOW_LABEL",
        help="the IPv6 probes' flow label, as traceroute -l (its low 20 bits; ignored "
        "over IPv4, as traceroute)",
    )
    tr.add_argument(
        "-i",
        "--interface",
        dest="interface",
        default=None,
        metavar="IFACE",
        help="probe from the in-process endpoint's address on IFACE (as ping -I IFNAME: "
        "its source address, not a device binding; -s wins if given; with --listen an "
        "error, the endpoint exporting addresses, not interfaces)",
    )
    tr.add_argument(
        "-g",
        "--gateway",
        dest="gateways",
        action="append",
        default=[],
        metavar="GATE",
        help="route the probes through GATE (a loose source route option, IPv4, as "
        "traceroute -g; repeated or comma-separated: at most 8; the routers on the way "
        "must accept source-routed packets)",
    )
    tr.add_argument(
        "-O",
        "--options",
        dest="module_options",
        action="append",
        default=[],
        metavar="OPTS",
        help="as traceroute -O for -T (its tcp module): the flags `syn` (default), `ack`, "
        "`fin`, `rst`, `psh`, `urg`, `ece`, `cwr`, or `flags=NUM`; `ecn` (SYN with ECE "
        "and CWR); the options `mss=NUM`, `sack`, `timestamps`, `window_scaling`, or "
        "`sysctl` (the in-process endpoint's host's net.ipv4.tcp_* settings, also the "
        "default without flags or options; Linux's defaults with --listen); `info` "
        "prints the flags of the target's TCP reply after its address (<syn,ack>, "
        "<rst,ack>); `reuse` changes nothing here. For -UL: `coverage=NUM` (the "
        "UDP-Lite checksum coverage [8]); for -D: `service=NUM` (the DCCP service code). "
        "Comma-separated or repeated",
    )
    _version(tr, "traceroute")
    _refuse(tr, (
        (("--fwmark",), "SO_MARK is not a PacketLab socket option", True),
        (("-r",), "SO_DONTROUTE is not a PacketLab socket option", False),
        (("-M", "--module"),
         "methods are -P udp|icmp|tcp|tcp-ack|udp-paris|icmp-paris, -UL, -D", True),
        (("-d", "--debug"), "SO_DEBUG is not a PacketLab socket option", False),
    ))  # fmt: skip
    tr.add_argument(
        "-A",
        "--as-path-lookups",
        dest="as_lookups",
        action="store_true",
        help="as traceroute -A: each hop address's AS path, [AS64500], from the whois "
        "server RA_SERVER (default whois.radb.net) on service RA_SERVICE (default nicname, "
        "tcp/43), asked from this host (not the endpoint), each address once, 5 s each",
    )
    tr.add_argument(
        "-e",
        "--extensions",
        action="store_true",
        help="show ICMP extensions (RFC 4884) after a hop's address, as traceroute -e: "
        "MPLS label stacks as <MPLS:L=label,E=exp,S=bottom,T=ttl/...>, other objects as "
        "<CLASS/TYPE:WORDS> (--json always carries them: `icmpext`, scamper's form)",
    )
    tr.add_argument(
        "--back",
        action="store_true",
        help="as traceroute --back: after a hop's address, '-N' when its reply came back "
        "over N hops (guessed from the reply's TTL: 64, 128 or 255 at the start), not as "
        "many as the probe went",
    )
    tr.add_argument(
        "--names",
        action="store_true",
        help="with --json, look up hop names too (JSON lines are addresses only by "
        "default, as scamper's, and never wait for DNS)",
    )
    tr.add_argument(
        "--sequential",
        action="store_true",
        help="one probe at a time, each waiting for its answer (the Marionette paper's "
        "method; a silent hop costs the whole --wait)",
    )
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
        help="probes S seconds apart on the endpoint's clock [default: 0, all at once]",
    )
    tr.add_argument(
        "-z",
        "--sendwait",
        dest="pace",
        type=_sendwait,
        metavar="S",
        help="as traceroute -z: probes S seconds apart, or S ms if S > 10 (= --pace)",
    )
    tr.add_argument(
        "-p",
        "--port",
        type=_positive(int, "--port", 1, 65535),
        default=None,
        metavar="PORT",
        help="UDP: destination port of the first probe, +1 per probe [default: 33434]; "
        "-U: the destination port [default: 53]; TCP: the destination port [default: 80]",
    )


def _add_ping(sub: Any) -> None:
    pg = sub.add_parser(
        "ping",
        help="ICMP echo",
        description="ICMP(v6) echo requests from the endpoint's raw socket, paced by the "
        "endpoint (scheduled nsend times), replies captured there. HOST... TARGET (IPv4, "
        "up to 9 hosts): a loose source route through the hosts, as ping's (each reply's "
        "`LSRR:` lines as ping prints them); with -T tsprespec, its addresses.",
        epilog=PING_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(pg, "-I")  # ping -I address (not an interface name)
    _wait(
        pg,
        "-W",
        "a reply after the last request when none came before it (else twice the largest "
        "RTT, at least -i, as ping -W)",
        10.0,
    )
    pg.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the header and the statistics (text output)",
    )
    pg.add_argument(
        "-w",
        "--deadline",
        type=_positive(float, "--deadline", 0.001, 86400),
        default=None,
        metavar="S",
        help="stop after S seconds whatever was sent, print the statistics (like ping -w)",
    )
    pg.add_argument(
        "-c",
        "--count",
        type=_iputils_int(1, 10_000),  # (ping: 1 <= value <= LLONG_MAX)
        default=None,
        metavar="N",
        help="echo requests to send [default: 5; with -w: as many as the deadline allows]",
    )
    pg.add_argument(
        "-n",
        dest="numeric",
        action="store_true",
        help="addresses only: no names for the replies' sources (as ping -n; a numeric "
        "TARGET implies it)",
    )
    pg.add_argument(
        "-i",
        "--interval",
        type=_positive(float, "--interval", 0, 60),
        action=Given,
        default=1.0,
        metavar="S",
        help="seconds between requests [default: 1; with -f: 0]",
    )
    pg.add_argument(
        "-f",
        "--flood",
        action=_Flood,
        nargs=0,
        default=False,
        help="flood display, as ping -f: a dot per request sent, a backspace per reply "
        "(E per ICMP error); implies -i 0 unless -i is given (the endpoint paces: at most "
        "256 unanswered)",
    )
    pg.add_argument(
        "-O",
        dest="outstanding",
        action="store_true",
        help="report a request still unanswered when the next one leaves: `no answer yet "
        "for icmp_seq=N`, as ping -O",
    )
    pg.add_argument(
        "-D",
        dest="timestamps",
        action="store_true",
        help="print [UNIXTIME.MICROS] before each line, as ping -D (the endpoint's kernel "
        "time of the reply, or of the request that found the one before unanswered)",
    )
    pg.add_argument(
        "-p",
        "--pattern",
        metavar="PATTERN",
        default=None,
        help="fill the payload with up to 16 bytes given in hex, repeated, as ping -p "
        "(prints `PATTERN: 0x...`)",
    )
    pg.add_argument(
        "-s",
        "--size",
        type=_iputils_int(0, 65527),  # (ping: ..INT_MAX; sends what fits)
        default=56,
        metavar="B",
        help="payload bytes [default: 56]; over the MTU, in IP fragments as ping's kernel "
        "sends them (IPv4 requests carry DF, as ping's)",
    )
    pg.add_argument(
        "-t",
        "--ttl",
        type=_positive(int, "--ttl", 1, 255),
        default=64,
        metavar="N",
        help="TTL / hop limit [default: 64]",
    )
    pg.add_argument(
        "-Q",
        dest="tos",
        type=_tos,
        default=0,
        metavar="TOS",
        help="the requests' TOS byte (IPv6: traffic class), decimal or 0x hex, as ping -Q",
    )
    pg.add_argument(
        "-M",
        dest="pmtudisc",
        choices=["do", "want", "dont"],
        default="want",
        metavar="PMTUDISC",
        help="as ping -M: want (default) DF set (IPv4), long requests in fragments once "
        "an MTU is known; dont: no DF, fragments; do: DF, never fragments (a router's "
        "`Frag needed` is an error line each time: the endpoint's kernel, not ours, keeps "
        "the path MTUs, so no `local error` as ping's after the first)",
    )
    pg.add_argument(
        "-R",
        dest="record_route",
        action="store_true",
        help="record route, as ping -R: IPv4 requests carry the option (the endpoint's raw "
        "socket sends it as given), the first reply's route as `RR:` lines, later ones "
        "`(same route)` when unchanged; ignored over IPv6, as ping",
    )
    pg.add_argument(
        "-T",
        dest="ip_timestamps",
        type=_timestamp_kind,
        default=None,
        metavar="tsonly|tsandaddr|tsprespec",
        help="IP timestamps, as ping -T: IPv4 requests carry the timestamp option (tsonly: "
        "times; tsandaddr: addresses and times; tsprespec ADDR... TARGET: the times of up "
        "to 4 hosts given before TARGET), each reply's as `TS:` lines as ping's; ignored "
        "over IPv6, as ping",
    )
    pg.add_argument("prespec", nargs="*", default=[], help=argparse.SUPPRESS)
    pg.set_defaults(_take_operands=_ping_operands)
    pg.add_argument(
        "-a",
        dest="audible",
        action="store_true",
        help="audible ping, as ping -a: a BEL at the end of each reply line",
    )
    pg.add_argument(
        "-l",
        dest="preload",
        type=_positive(int, "-l", 1, 65536),
        default=1,
        metavar="PRELOAD",
        help="send PRELOAD requests at once, then one per -i, as ping -l",
    )
    _version(pg, "ping")
    _refuse(pg, (
        (("-m",), "SO_MARK is not a PacketLab socket option", True),
        (("-r",), "SO_DONTROUTE is not a PacketLab socket option", False),
        (("-b",), "SO_BROADCAST is not a PacketLab socket option", False),
        (("-S",), "SO_SNDBUF is not a PacketLab socket option", True),
        (("-L",), "IP_MULTICAST_LOOP is not a PacketLab socket option", False),
        (("-U",), "the RTTs are the endpoint's kernel times already (no user-to-user mode)", False),
        (("-B",), "not needed: the source address never changes here", False),
    ))  # fmt: skip


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


def check_local_address(src: Address) -> None:
    """The in-process endpoint sends from this host: --src must be one of its addresses."""
    family = socket.AF_INET if src.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((str(src), 0))
        except OSError as e:
            raise RunError(
                f"--src {src} is not an address of this host ({e.strerror}), where the "
                "in-process endpoint runs: give one of its addresses, or use --listen and "
                "an endpoint that has it"
            ) from None


def interface_address(name: str, version: int, proc: str = "/proc/net/if_inet6") -> Address:
    """The IPv`version` address of this host's interface `name` (ping -I IFNAME with the
    in-process endpoint, which sends from this host): IPv4 by SIOCGIFADDR, IPv6 from
    `proc` (a global address before a link-local one). RunError when there is none."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        raise RunError(
            f"-I {name}: no such interface on this host, where the in-process endpoint "
            "runs (give an interface name or one of its addresses)"
        ) from None
    if version == 4:
        import fcntl
        import struct

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                got = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
            except OSError:
                raise RunError(f"-I {name}: the interface has no IPv4 address") from None
        return ipaddress.IPv4Address(got[20:24])
    found: list[ipaddress.IPv6Address] = []
    try:
        with open(proc, encoding="ascii") as f:
            for line in f:
                fields = line.split()
                if len(fields) == 6 and fields[5] == name:
                    found.append(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
    except OSError:
        pass
    if not found:
        raise RunError(f"-I {name}: the interface has no IPv6 address")
    return min(found, key=lambda a: a.is_link_local)


# -- running ---------------------------------------------------------------------------------------


def _experiment(
    args: argparse.Namespace,
    dst: Address,
    src: Address | None,
    stamp: str,
    report: TracerouteReport | PingReport | MdaReport,
    stop: StopSignal,
    local: bool = False,
    pattern: bytes | None = None,
    ifname: str | None = None,
    shape: tuple[int | None, int] = (None, 0),
) -> Callable[[Any], Awaitable[Any]]:
    """The measurement of `args` as a function of a session. `shape`: traceroute's
    packetlen and TOS, checked (`traceroute_shape`)."""
    from twisted.internet.defer import Deferred, DeferredList, succeed

    from packetlab.cli.report import MdaReport, PingReport, TracerouteReport
    from packetlab.controller import read_system_info
    from packetlab.measure.rdns import LocalNames, ReverseNames
    from packetlab.measure.traceroute import PARIS, TCP_METHODS, pick_source, traceroute

    failed: list[LinkError] = []  # an error a report raised as it printed (-A's server)

    async def source(session: Any) -> Address:
        if src is not None:
            return src
        info = await read_system_info(session)
        if ifname is not None:  # ping -I IFNAME: the endpoint exports no interface names
            from packetlab.measure.traceroute import MeasureError

            have = ", ".join(str(a) for a in info.addresses) or "none"
            raise MeasureError(
                f"-I {ifname}: the endpoint exports its addresses, not its interface names: "
                f"give one of its addresses (it has {have})"
            )
        return pick_source(info.addresses, dst)

    def resolver(session: Any) -> LocalNames | ReverseNames:
        """This host's resolver for an endpoint on this host (as the native tools), else
        the endpoint's."""
        return LocalNames(session.reactor) if local else ReverseNames(session)

    def named_hops(
        session: Any, addrs_of: Callable[[Any], list[Any]]
    ) -> tuple[Callable[[Any], None], Deferred[object]]:
        """An `on_hop` that prints hops in order, each once its addresses' names are looked
        up (not with -n), and the Deferred that fires when the last one is printed."""
        assert isinstance(report, TracerouteReport | MdaReport)
        names = resolver(session) if _names_wanted(args) else None
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
        frm = await source(session)
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
        frm = await source(session)
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

    async def echo(session: Any) -> PingResult:
        assert isinstance(report, PingReport)
        frm = await source(session)
        report.start(str(frm))
        if args.deadline is not None:  # -w: seconds of measuring, as ping -w
            session.reactor.callLater(args.deadline, stop.request, "deadline")
        from packetlab.measure.ping import ping  # (only here: traceroute need not load it)

        # iputils names replies (`NAME (ADDR)`) when the target was a name and not -n; the
        # lines stay in order, each printed once its name is known
        names = resolver(session) if _ping_names_wanted(args, dst) else None
        report.names = None if names is None else names.names
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
            stop=stop,
            linger_like_ping=True,
            answers_wanted=args.count if args.deadline is not None else None,
            # what this host's kernel would fragment a long request to (ping's)
            fragment_mtu=min(route_mtus(dst), default=None) if local and big else None,
            tos=args.tos,
            pmtudisc=args.pmtudisc,
            preload=args.preload,
            ident=report.ident,
            record_route=args.record_route,
            timestamps=args.ip_timestamps,
            prespec=args.prespec_addrs,
            route=args.route_addrs,
        )
        await shown
        return result

    if args.measurement == "traceroute":
        return tracelb if args.mda else trace
    return echo


# Butskoy's tcp module (-T -O): its flags, its switches, and its words with a value
TCP_FLAG_WORDS = {
    "fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20,
    "ece": 0x40, "cwr": 0x80,
}  # fmt: skip
TCP_SWITCHES = ("ecn", "sack", "timestamps", "window_scaling", "sysctl", "info", "reuse")
TCP_VALUE_WORDS = ("flags", "mss")
TCP_ABBREVIATED = ("flags", "timestamps", "window_scaling")  # CLIF_ABBREV: a prefix will do
TCP_SYSCTLS = ("ecn", "sack", "timestamps", "window_scaling")
LINUX_TCP_SYSCTLS = {"ecn": False, "sack": True, "timestamps": True, "window_scaling": True}


def _tcp_word(word: str) -> tuple[str, str | None]:
    """One -O word as (name, value or None), a prefix of an abbreviable name read as it."""
    name, eq, value = word.partition("=")
    known = (*TCP_FLAG_WORDS, *TCP_SWITCHES, *TCP_VALUE_WORDS)
    if name not in known:
        name = next((n for n in TCP_ABBREVIATED if name and n.startswith(name)), name)
    if name not in known:
        raise RunError(f"-O {word}: no such option of traceroute's tcp module")
    if name in TCP_VALUE_WORDS:
        if not eq:
            raise RunError(f"-O {word}: requires an argument: `{name}=NUM'")
        return name, value
    if eq:
        raise RunError(f"-O {word}: `{name}' takes no value")
    return name, None


# the one -O word of traceroute's udplite and dccp modules: a number (its CLIF_set_uint:
# strtoul, any base; at most 32 bits), an abbreviation taken
MODULE_NUMBER_WORDS = {"udplite": "coverage", "dccp": "service"}


def _number_words(args: argparse.Namespace, words: list[str]) -> None:
    """-O coverage=NUM (-UL) or service=NUM (-D), as traceroute's modules read them; a
    RunError in traceroute's words for anything else."""
    want = MODULE_NUMBER_WORDS[args.protocol]
    for w in words:
        name, eq, value = w.partition("=")
        if not name or not want.startswith(name):
            raise RunError(f"-O {w}: no such option of traceroute's {args.protocol} module")
        if not eq:
            raise RunError(f"-O {w}: requires an argument: `{want}=NUM'")
        try:
            number = int(value, 0) if value.strip() else -1
        except ValueError:
            number = -1
        if not 0 <= number <= 0xFFFFFFFF:
            raise RunError(f"Cannot handle `{want}' keyword with arg `{value}'")
        if want == "coverage":
            args.coverage = min(number, 0xFFFF)  # (the kernel's limit, as traceroute's)
        else:
            args.service = number


def module_options(args: argparse.Namespace) -> None:
    """traceroute -O for -T (Butskoy's tcp module), read into ``args.tcp_spec`` (the
    flags, the switches asked, -O mss's value) for `tcp_flavor`, and ``args.tcp_info``.
    RunError (one line) for a word it has not or a bad value."""
    words = [w for opt in args.module_options for w in opt.split(",") if w]
    args.tcp_info, args.tcp_spec = False, None
    args.coverage, args.service = 8, None  # -UL's and -D's (traceroute's defaults)
    if args.protocol in MODULE_NUMBER_WORDS:
        _number_words(args, words)
        return
    if args.protocol not in ("tcp", "tcp-ack"):
        if words:
            method = {"udp-fixed": "udp (-U)"}.get(args.protocol, args.protocol)
            raise RunError(f"-O {','.join(words)}: the {method} method takes no options (-T does)")
        return
    flags, switches, mss, fixed = 0, set(), None, False
    for w in words:
        name, value = _tcp_word(w)
        if name in TCP_FLAG_WORDS:
            flags |= TCP_FLAG_WORDS[name]
        elif name == "flags":
            try:
                number = int(str(value), 0)
            except ValueError:
                raise RunError(f"-O {w}: expected a number (0x.. hex too)") from None
            flags, fixed = number & 0xFF, True
        elif name == "mss":
            if not str(value).isdigit() or not 0 <= int(str(value)) <= 0xFFFF:
                raise RunError(f"-O {w}: expected 0..65535")
            mss = int(str(value))
        else:
            switches.add(name)
    args.tcp_info = "info" in switches
    if args.protocol == "tcp-ack" and not (flags or fixed or switches - {"info", "reuse"}):
        return  # -P tcp-ack (scamper's bare ACKs): -O info only
    args.tcp_spec = (flags, fixed, frozenset(switches), mss)
    if (flags, fixed) == (0x10, False) and not switches - {"info", "reuse"}:
        args.protocol = "tcp-ack"  # (its name in --json and --warts: scamper's)
    elif args.protocol == "tcp-ack":
        args.protocol = "tcp"


def tcp_flavor(
    spec: tuple[int, bool, frozenset[str], int | None] | None,
    sysctl: Callable[[str], bool],
    mtu: int | None,
    version: int = 4,
) -> Any:
    """The TCP probe Butskoy's tcp_init builds from -O's words (`module_options`'s
    `spec`): with no flag and no option word, the sender's sysctls (`sysctl(NAME)`:
    net.ipv4.tcp_NAME is 1) pick SACK, timestamps, window scaling and ECN (`sysctl` asks
    for them anyway); no flag: SYN (with ECE and CWR for ECN); the MSS option (SYN only)
    and the window from the path MTU `mtu` (576 if unknown or below, as traceroute's)."""
    from packetlab.measure.probes import TcpFlavor

    flags, fixed, switches, mss = spec or (0, False, frozenset(), None)
    use_sysctl = "sysctl" in switches or not (
        flags or fixed or switches & {"ecn", "sack", "timestamps", "window_scaling"}
    )
    on = set(switches)
    if use_sysctl:
        on |= {name for name in TCP_SYSCTLS if sysctl(name)}
    if not (flags or fixed):
        flags = 0x02 | (0xC0 if "ecn" in on else 0)
    path_mss = max(mtu or 0, 576) - (40 if version == 4 else 60)
    return TcpFlavor(
        flags, sack="sack" in on, timestamps="timestamps" in on,
        window_scaling="window_scaling" in on, mss=path_mss if mss is None else mss,
        window=(4 * path_mss) & 0xFFFF,
    )  # fmt: skip


def host_tcp_sysctl(name: str, proc: str = "/proc/sys/net/ipv4") -> bool:
    """net.ipv4.tcp_NAME of this host (its network namespace) is 1, as traceroute reads
    it (tcp_ecn's 2, "only when asked", is not)."""
    try:
        with open(f"{proc}/tcp_{name}", "rb") as f:
            return f.read(1) == b"1"
    except OSError:
        return False


def gateways(words: Sequence[str], dst: Address) -> list[str]:
    """traceroute -g's gateways (repeated or comma-separated), resolved: RunError, one
    line, in traceroute's words where it has them, past 8 or for an IPv6 target (its type
    0 routing header is deprecated, RFC 5095, and Linux no longer forwards it)."""
    from packetlab.measure.packets import MAX_GATEWAYS

    names = [g for w in words for g in w.split(",") if g]
    if not names:
        return []
    if dst.version != 4:
        raise RunError(
            "-g: source routing over IPv6 (a type 0 routing header) is deprecated (RFC 5095) "
            "and not built; -g takes IPv4 gateways"
        )
    if len(names) > MAX_GATEWAYS:
        raise RunError(f"Too many gateways specified. No more than {MAX_GATEWAYS}")
    return [str(resolve_target(g, 4)) for g in names]


def default_port(protocol: str) -> int:
    """traceroute's default destination port: 80 for TCP, 53 for -U and -UL, 33434 (+n)
    else (-D: 33434 for every probe)."""
    from packetlab.measure.traceroute import TCP_METHODS

    if protocol in TCP_METHODS:
        return 80
    return 53 if protocol in ("udp-fixed", "udplite") else 33434


def traceroute_shape(args: argparse.Namespace) -> tuple[int | None, int]:
    """traceroute's packetlen and -t TOS, checked: RunError (one line) when bad."""
    packetlen: int | None = None
    if args.packetlen is not None:
        try:
            packetlen = int(args.packetlen)
        except ValueError:
            raise RunError(f"bad packetlen {args.packetlen!r}: expected a number") from None
        if packetlen > 65000:  # traceroute's own words
            raise RunError(f"too big packetlen {packetlen} specified (at most 65000)")
        if packetlen < 0:
            raise RunError(f"bad packetlen {packetlen}: expected 0..65000")
    tos = 0
    if args.tos is not None:
        try:
            tos = int(args.tos, 0)
        except ValueError:
            raise RunError(f"-t {args.tos}: expected a TOS byte, 0..255 or 0x00..0xff") from None
        if not 0 <= tos <= 255:
            raise RunError(f"-t {args.tos}: the TOS byte is 0..255 (0x00..0xff)")
    return packetlen, tos


def route_mtus(dst: Address, sys_net: str = "/sys/class/net") -> tuple[int, ...]:
    """The MTUs of this host's way to `dst`, where the in-process endpoint's --mtu
    probes start shrinking: the interface's (`ip route get`, then `sys_net`/DEV/mtu; what
    traceroute starts from) and the path MTU the kernel cached from an earlier "too big"
    (a connected socket's IP_MTU), which a raw send cannot exceed either."""
    got = [m for m in (_device_mtu(dst, sys_net), _path_mtu(dst)) if m is not None]
    # (loopback's 65536: no packet is longer than 65535 bytes, so none needs cutting)
    return tuple(sorted({min(m, 0xFFFF) for m in got}, reverse=True))


def _path_mtu(dst: Address) -> int | None:
    af, level, opt = (
        (socket.AF_INET, socket.IPPROTO_IP, 14)  # IP_MTU
        if dst.version == 4
        else (socket.AF_INET6, socket.IPPROTO_IPV6, 24)  # IPV6_MTU
    )
    with socket.socket(af, socket.SOCK_DGRAM) as s:
        try:
            s.connect((str(dst), 33434))
            mtu = int(s.getsockopt(level, opt))
        except OSError:
            return None
    return mtu if mtu >= 68 else None


def _device_mtu(dst: Address, sys_net: str) -> int | None:
    import subprocess

    try:
        out = subprocess.run(
            ["ip", "-o", f"-{dst.version}", "route", "get", str(dst)],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.split()  # fmt: skip
        dev = out[out.index("dev") + 1]
        with open(f"{sys_net}/{dev}/mtu", encoding="ascii") as f:
            mtu = int(f.read())
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None
    return mtu if mtu >= 68 else None


def ping_count(args: argparse.Namespace) -> int:
    """Requests to send at most: -c; with -w as many as fit in the deadline (ping -w sends
    until the deadline, or with -c until -c are answered), else 5."""
    from packetlab.measure.ping import MAX_COUNT

    if args.deadline is None:
        return 5 if args.count is None else int(args.count)
    if args.interval == 0:
        return MAX_COUNT
    return min(MAX_COUNT, int(args.deadline / args.interval) + 1)


def _addresses_shown(item: Any) -> list[str]:
    """The addresses a ping line names: the reply's source, and those of its -R route and
    -T timestamps (each named as iputils' pr_addr names them)."""
    got = dict.fromkeys([item.addr, *(getattr(item, "route", None) or ())])
    ts = getattr(item, "ip_timestamps", None)
    got.update(dict.fromkeys(a for a, _ in (ts.entries if ts else ()) if a is not None))
    return list(got)


def _ping_names_wanted(args: argparse.Namespace, dst: Address) -> bool:
    """iputils looks up the name of each reply's source when the target was given as a
    name (a numeric target implies -n), in text output, not with -n."""
    return not args.numeric and not args.json and args.target != str(dst)


def _names_wanted(args: argparse.Namespace) -> bool:
    """Hop names: in text unless -n (as traceroute), in JSON with --names."""
    return not args.numeric and (not args.json or args.names)


def _endpoint_extra(args: argparse.Namespace) -> list[str]:
    """More in-process endpoint options: this host's DNS servers, to name the hops."""
    if args.measurement != "traceroute" or not _names_wanted(args):
        return []
    from packetlab.cli.run_command import resolv_conf_servers

    v4, v6 = resolv_conf_servers()
    out = []
    if v4:
        out += ["--dns-ipv4", ",".join(v4[:16])]
    if v6:
        out += ["--dns-ipv6", ",".join(v6[:16])]
    return out


MDA_LIMITS = (
    ("max_probes", "--maxprobec"), ("gaplimit", "--gaplimit"), ("attempts", "--attempts"),
    ("wait_probe", "--wait-probe"),
)  # fmt: skip


def mda_limits(args: argparse.Namespace) -> None:
    """--mda-lite implies --mda; scamper's tracelb limits are for --mda only, and
    traceroute's -q is not one of them."""
    if getattr(args, "mda_lite", False):
        args.mda = True
    if args.mda and given(args, "-q"):
        raise RunError(
            f"-q: {mda_flag(args)} sends as many probes per hop as its stopping rule needs "
            "(set --confidence; --attempts resends a silent probe)"
        )
    if getattr(args, "multilevel", False) and not args.mda:
        raise RunError("--multilevel resolves the interfaces --mda finds into routers: "
                       "add --mda or --mda-lite")  # fmt: skip
    if getattr(args, "mbt_rounds", None) is not None and not args.multilevel:
        raise RunError("--mbt-rounds bounds --multilevel's alias resolution: add --multilevel")
    limits = [flag for dest, flag in MDA_LIMITS if getattr(args, dest, None) is not None]
    if limits and not args.mda:
        raise RunError(f"{limits[0]} is a limit of --mda (scamper's tracelb): add --mda")


def mda_flag(args: argparse.Namespace) -> str:
    """The multipath option the user typed, for its errors: --mda-lite implies --mda,
    but an error about it names --mda-lite."""
    return "--mda-lite" if getattr(args, "mda_lite", False) else "--mda"


def _budget(args: argparse.Namespace) -> float:
    """Default --timeout of the in-process run: the measurement's own worst case + 30 s."""
    if args.measurement == "traceroute":
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
            work = -(-n // args.squeries) * args.wait + args.wait
        else:
            work = n * pace + args.wait
    else:  # (-i 0 goes as fast as replies come back: allow 10 ms a request for that)
        count = ping_count(args)
        work = (count - 1) * args.interval + args.wait + count * 0.01
    return work + 30.0


def _report(
    reactor: Any,
    args: argparse.Namespace,
    dst: Address,
    pattern: bytes | None = None,
    src: Address | None = None,
    ifname: str | None = None,
) -> TracerouteReport | PingReport | MdaReport:
    from packetlab.cli.report import MdaReport, PingReport, TracerouteReport

    name = None if args.target == str(dst) else args.target
    if args.measurement == "traceroute" and args.mda:
        mda_report = MdaReport(
            reactor, args.json, str(dst), name=name, max_ttl=args.max_ttl,
            method=MDA_METHOD[args.protocol], confidence=args.confidence / 100,
            lite=args.mda_lite,
        )  # fmt: skip
        if args.warts == "-":  # the warts bytes go to stdout: the lines to stderr
            mda_report.progress.out = sys.stderr
        return mda_report
    if args.measurement == "traceroute":
        # Butskoy's probes: UDP or ICMP header + 32 bytes (or up to packetlen; --mtu:
        # 65000 to begin with); a TCP SYN with its 20 bytes of options (MSS, SACK,
        # timestamps, window scale); a bare ACK
        from packetlab.measure.traceroute import MAX_PACKET_LEN, probe_length

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
    ping_report = PingReport(
        reactor, args.json, str(dst), name=name, count=args.count or ping_count(args),
        size=args.size, quiet=args.quiet, interval=args.interval, flood=args.flood,
        timestamps=args.timestamps, pattern=pattern,
        source=None if src is None else (str(src), ifname or ""),
        verbose=args.verbose,
        options=40 if (args.record_route or args.ip_timestamps or args.route_addrs)
        and dst.version == 4 else 0,
        audible=args.audible,
    )  # fmt: skip
    if args.route_addrs:  # (HOST... TARGET: the requests' way)
        ping_report.summary_extra["gateways"] = list(args.route_addrs)
    if args.warts == "-":
        ping_report.progress.out = sys.stderr
    return ping_report


async def measure(
    reactor: Any, args: argparse.Namespace, stop: StopSignal | None = None
) -> tuple[Any, TracerouteReport | PingReport | MdaReport]:
    """Run the measurement of `args`, printing as it goes; the result and its report
    (whose `finish` prints the summary)."""
    from packetlab.measure.records import Stamp

    if stop is None:
        from packetlab.controller.stop import StopSignal

        stop = StopSignal()
    if args.measurement == "traceroute" and args.first_ttl > args.max_ttl:
        raise RunError(f"--first-ttl {args.first_ttl} is above --max-ttl {args.max_ttl}")
    if args.measurement == "traceroute":
        mda_limits(args)
    if args.measurement == "traceroute" and args.mda and args.protocol not in MDA_METHOD:
        raise RunError(
            f"{mda_flag(args)} varies the flow of udp, icmp or tcp probes, not {args.protocol}"
        )
    if args.measurement == "traceroute" and args.mda and (args.sequential or args.squeries):
        raise RunError(
            f"{mda_flag(args)} sends its own rounds of probes: not with --sequential or -N"
        )
    if args.measurement == "traceroute" and args.paris and args.protocol in FLOW_PER_PROBE:
        # (it was ignored: each probe kept its own source port)
        raise RunError(
            f"--paris: {FLOW_PER_PROBE[args.protocol]} probes come each from a source port "
            "of its own, as traceroute's (a flow each): for one flow, -P udp-paris"
        )
    if args.measurement == "traceroute" and args.mda and args.pace:
        # (they were ignored: tracelb's own pacing is scamper's -W)
        raise RunError(
            f"{mda_flag(args)} paces its probes with -W/--wait-probe CS (1/100 s, as scamper "
            "tracelb -W): not with --pace or -z"
        )
    if args.measurement == "traceroute":
        module_options(args)
        if args.mda and (args.extensions or args.back or args.tcp_info):
            raise RunError(
                f"{mda_flag(args)} prints each hop's interfaces: not with -e, --back or -O info"
            )
        if args.mda and (args.tcp_spec or args.gateways):
            raise RunError(
                f"{mda_flag(args)} sends its own probes: not with -g or -O's flags and options"
            )
    shape = traceroute_shape(args) if args.measurement == "traceroute" else (None, 0)
    if (
        args.measurement == "traceroute"
        and args.mda
        and (args.mtu or args.packetlen or args.tos or args.dont_fragment)
    ):
        raise RunError(
            f"{mda_flag(args)} sends its own probes: not with PACKETLEN, -t, -F or --mtu"
        )
    if args.measurement == "traceroute" and args.warts and args.gateways:
        # (it wrote a trace to TARGET as if the probes had gone there straight)
        raise RunError(
            "--warts: scamper's trace records no source route (-g): the file would say "
            "the probes went straight to TARGET; --json has the gateways (summary "
            "`gateways`)"
        )
    if args.measurement == "traceroute" and args.warts and args.protocol in ("udplite", "dccp"):
        raise RunError(f"--warts: scamper has no {args.protocol} trace method (-UL, -D)")
    if args.measurement == "traceroute" and args.mda and args.as_lookups:
        raise RunError(f"{mda_flag(args)} prints each hop's interfaces: not with -A")
    args.as_whois = None
    if args.measurement == "traceroute" and args.as_lookups:
        from packetlab.measure.aspath import AsLookupError, resolve_server, whois_server

        try:  # (as traceroute's getaddrinfo; its message, exit 2)
            args.as_whois = resolve_server(*whois_server())
        except AsLookupError as e:
            if args.json:
                raise RunError(str(e)) from None
            # traceroute stops at the first address it prints (the header and ` 1  ADDR`
            # first): so do the lines (`TracerouteReport.as_error`)
            args.as_whois_error = str(e)
    if args.measurement == "traceroute" and args.squeries and (args.sequential or args.pace):
        raise RunError("-N sends each probe as a place frees up: not with --sequential or --pace")
    args.prespec_addrs, args.route_addrs = [], []
    if args.measurement == "ping":
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
    if args.measurement == "ping" and args.pattern is not None:
        from packetlab.measure.ping import parse_pattern

        try:
            pattern = parse_pattern(args.pattern)
        except ValueError as e:
            raise RunError(str(e)) from None
    link = Link.from_args(args)
    dst = resolve_target(args.target, args.family)
    if args.measurement == "traceroute":
        args.gateway_addrs = gateways(args.gateways, dst)
        args.tcp_flavor = None
        if args.protocol == "tcp" or args.tcp_spec is not None:
            args.tcp_flavor = (
                tcp_flavor(args.tcp_spec, host_tcp_sysctl, _path_mtu(dst), dst.version)
                if link.in_process
                else tcp_flavor(args.tcp_spec, LINUX_TCP_SYSCTLS.__getitem__, 1500, dst.version)
            )
    src: Address | None = None
    ifname: str | None = None  # ping -I IFNAME
    if args.src is not None:
        try:
            src = ipaddress.ip_address(args.src)
        except ValueError:
            if args.measurement != "ping":
                raise RunError(f"--src {args.src!r} is not an IP address") from None
            ifname = args.src
            if link.in_process:
                src = interface_address(ifname, dst.version)
        if src is not None and src.version != dst.version:
            raise RunError(f"--src {src} is IPv{src.version}, the target {dst} IPv{dst.version}")
    elif args.measurement == "traceroute" and args.interface is not None:
        if not link.in_process:  # (traceroute -i: the source address on IFACE)
            raise RunError(
                f"-i {args.interface}: an endpoint reached with --listen exports addresses, "
                "not interfaces: give one of them with -s"
            )
        src = interface_address(args.interface, dst.version)
    prog = f"pktlab run {args.measurement}"

    def refused(text: str) -> None:
        print(f"{prog}: {text}", file=sys.stderr)

    if not link.in_process:

        def listening(port: Any) -> None:
            h = port.getHost()
            print(
                f"waiting for an endpoint on {h.host}:{h.port} ({link.describe()}) ...",
                file=sys.stderr,
            )

        report = _report(reactor, args, dst, pattern, src, ifname)
        experiment = _experiment(
            args, dst, src, Stamp.UNKNOWN, report, stop, pattern=pattern, ifname=ifname,
            shape=shape,
        )  # fmt: skip
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
        src = route_source(dst)
    elif ifname is None:
        check_local_address(src)
    report = _report(reactor, args, dst, pattern, src if args.src else None, ifname)
    experiment = _experiment(
        args, dst, src, Stamp.KERNEL, report, stop, local=True, pattern=pattern, shape=shape
    )
    timeout = args.timeout if args.timeout is not None else _budget(args)
    try:
        result = await run_on_link(
            reactor,
            link,
            experiment,
            addresses=[src],
            transproto="raw,tcp,udp",
            timeout=timeout,
            extra=_endpoint_extra(args),
        )
    finally:
        report.close()
    return result, report


def startup_imports(args: argparse.Namespace) -> tuple[str, ...]:
    """The modules a measurement imports once it runs (the reactor and the controller;
    a traceroute's or ping's report and measurement; in-process, the endpoint):
    `packetlab.cli.main` imports them ahead, under its start-up GC rules
    (docs/performance.md, pktlab run, Session 11)."""
    names = ["twisted.internet.reactor", "packetlab.controller.listener"]
    if getattr(args, "_command", None) is not None:  # run dns, http...: run_NAME.py
        names.append("packetlab.cli.run_command")
    else:
        names += ["packetlab.cli.report", "packetlab.measure.rdns"]
        names.append("packetlab.measure.traceroute")  # (ping's experiment imports it too)
        if args.measurement == "ping":
            names.append("packetlab.measure.ping")
        elif getattr(args, "mda", False):
            names.append("packetlab.measure.mda")
    if getattr(args, "listen", None) is None:
        names += ["packetlab.controller.local", "packetlab.endpoint.tap"]
    return tuple(names)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "_command", None) is not None:  # a module's measurement (run_NAME.py)
        rc: int = importlib.import_module("packetlab.cli.run_command").run_command(args)
        return rc

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

    async def measured(reactor: Any, stop: StopSignal, warts: BinaryIO | None) -> int:
        from packetlab.cli.report import MdaReport, PingReport, TracerouteReport
        from packetlab.measure.records import PingResult, TracerouteResult

        result, report = await measure(reactor, args, stop)
        interrupted = stop.requested and stop.reason == "interrupted"
        if isinstance(report, MdaReport):
            report.finish(result, interrupted)
            if warts is not None:
                write_tracelb_warts(warts, args, result, report.multilevel)
            return EXIT_OK
        if isinstance(report, TracerouteReport):
            assert isinstance(result, TracerouteResult)
            report.finish(result, interrupted)
            if warts is not None:
                write_warts(warts, args, result, interrupted)
            return EXIT_OK
        assert isinstance(report, PingReport) and isinstance(result, PingResult)
        report.finish(result, interrupted)
        hint = None if interrupted else source_route_hint(args, result)
        if hint is not None:
            print(f"pktlab run ping: {hint}", file=sys.stderr)
        if warts is not None:
            write_ping_warts(warts, args, result, interrupted)
        return ping_exit(args, result)

    return run_reactor(main, prog=f"pktlab run {args.measurement}", verbose=args.verbose)


def open_warts(args: argparse.Namespace) -> BinaryIO | None:
    """--warts FILE opened before the run (for appending: a run that fails before its
    end leaves a file that was there as it was; `write_warts` replaces its content),
    stdout's bytes for '-'; RunError (one line) when it cannot be written."""
    path = getattr(args, "warts", None)
    if path is None:
        return None
    if path == "-":
        return sys.stdout.buffer
    try:
        return open(path, "ab")  # closed by run's main
    except OSError as e:
        raise RunError(f"--warts {path}: cannot write it: {e.strerror or e}") from None


def _replace(out: BinaryIO, data: bytes) -> None:
    """`data` as the whole content of `out` (a file opened for appending), or written to
    stdout."""
    if out is not sys.stdout.buffer:
        out.truncate(0)
    out.write(data)
    out.flush()


def write_warts(
    out: BinaryIO, args: argparse.Namespace, result: TracerouteResult, interrupted: bool
) -> None:
    """`result` as a warts file (list, cycle, trace, cycle stop) with the run's options."""
    import time

    from packetlab.measure.warts import traceroute_warts

    local = Link.from_args(args).in_process
    data = traceroute_warts(
        result,
        stop_s=int(time.time()),
        hostname=socket.gethostname() if local else "",
        attempts=args.queries,
        first_ttl=args.first_ttl,
        wait_s=args.wait,
        sport=args.sport,
        dport=args.port or default_port(args.protocol),
        tos=traceroute_shape(args)[1],
        interrupted=interrupted,
    )
    _replace(out, data)


def write_tracelb_warts(
    out: BinaryIO, args: argparse.Namespace, result: Any, multilevel: Any = None
) -> None:
    """An --mda `result` as a warts file (list, cycle, tracelb, cycle stop); with
    --multilevel's result, its probing rounds as dealias records after the tracelb, and
    a note on stderr that the routers they make are not in it (warts has no record of
    them)."""
    import time

    from packetlab.measure.warts import tracelb_warts

    runs = [] if multilevel is None else multilevel.runs
    data = tracelb_warts(
        result,
        stop_s=int(time.time()),
        hostname=socket.gethostname() if Link.from_args(args).in_process else "",
        first_ttl=args.first_ttl,
        wait_s=args.wait,
        tos=traceroute_shape(args)[1],
        alias_runs=runs,
    )
    _replace(out, data)
    if multilevel is not None:
        print(
            f"pktlab run traceroute: --warts holds the trace (tracelb) and the "
            f"{len(runs)} alias probing round{'s' if len(runs) != 1 else ''} (dealias "
            "radargun records); not the routers they make, which no warts record holds "
            "(they are in the text and --json)",
            file=sys.stderr,
        )


def write_ping_warts(
    out: BinaryIO, args: argparse.Namespace, result: PingResult, interrupted: bool
) -> None:
    """`result` as a warts file (list, cycle, ping, cycle stop) with the run's options."""
    import time

    from packetlab.measure.warts import ping_warts

    option, options = ping_ip_options(args, result.dst)
    data = ping_warts(
        result,
        stop_s=int(time.time()),
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
    _replace(out, data)


def ping_ip_options(args: argparse.Namespace, dst: str) -> tuple[str | None, bytes]:
    """The IPv4 option of the run's requests, as warts names it (``v4rr``, ``tsonly``,
    ``tsandaddr``, ``tsprespec``; None for a source route, which scamper's ping cannot
    record: refused with --warts), and its bytes (their length is in the probe size)."""
    from packetlab.measure import packets

    if ":" in dst:  # (ignored over IPv6, as ping)
        return None, b""
    if args.record_route:
        return "v4rr", packets.record_route_option()
    if args.ip_timestamps is not None:
        kind = packets.TIMESTAMP_KINDS[args.ip_timestamps]
        option = packets.timestamp_option(kind, getattr(args, "prespec_addrs", ()))
        return args.ip_timestamps, option
    if getattr(args, "route_addrs", None):
        route = packets.loose_source_route(
            args.route_addrs, dst, target_listed=False, most=packets.MAX_PING_ROUTE
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
