"""``pktlab run traceroute TARGET``: traceroute's options, as Butskoy's traceroute and
scamper name them (`add_parser`); the run itself is `packetlab.cli.run_traceroute_trace`
(imported when it runs, not for --help or a usage error), its options checked by
`packetlab.cli.run_traceroute_checks`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from packetlab.cli import run_traceroute_words as words
from packetlab.cli.run import EPILOG, Given, add_common, add_version, in_range, refuse

if TYPE_CHECKING:
    from packetlab.cli.report_traceroute import MdaReport, TracerouteReport
    from packetlab.controller.stop import StopSignal

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


# traceroute -M NAME: Butskoy's modules, by the method each is here (-U is its `udp`)
TRACEROUTE_MODULES = {
    "default": "udp", "udp": "udp-fixed", "icmp": "icmp", "tcp": "tcp", "udplite": "udplite",
    "dccp": "dccp",
}  # fmt: skip
METHODS_HERE = "methods are -P udp|icmp|tcp|tcp-ack|udp-paris|icmp-paris, -UL, -D"


def _module(text: str) -> str:
    """-M NAME (any case, as traceroute's): the method of traceroute's module NAME."""
    name = text.lower()
    if name in TRACEROUTE_MODULES:
        return TRACEROUTE_MODULES[name]
    if name == "raw":
        raise argparse.ArgumentTypeError(
            f"raw (IP packets of any protocol, -P NUM) is not built here: {METHODS_HERE}"
        )
    if name == "tcpconn":
        raise argparse.ArgumentTypeError(
            f"tcpconn (a connect() per probe, its TTL set by setsockopt) is not a PacketLab "
            f"socket's: -T sends the same SYNs from a raw socket; {METHODS_HERE}"
        )
    raise argparse.ArgumentTypeError(f"Unknown traceroute module {text}")


class _TracerouteWait(argparse.Action):
    """traceroute -w MAX[,HERE[,NEAR]]: wait up to MAX s for a probe, or HERE times the RTT
    of an answer from the same hop, NEAR times that of a later hop (0: not; either not
    given is 0, as traceroute's: its 5,3,10 only without -w). The value is read by
    `run_traceroute_words.wait_spec`."""

    def __call__(self, parser: Any, ns: argparse.Namespace, got: Any, opt: Any = None) -> None:
        ns.wait, ns.here, ns.near = got


def _traceroute_operands(args: argparse.Namespace, extra: list[str]) -> bool:
    """`pktlab run traceroute TARGET -n PACKETLEN`: the one operand after an option is
    PACKETLEN, as traceroute takes it (was `unrecognized arguments`); those after it are
    left in `extra`, the words of the error (traceroute's `Extra arg`)."""
    if args.packetlen is None and extra:
        args.packetlen = extra.pop(0)
    return not extra


def _flow_label(text: str) -> int:
    """traceroute -l: an unsigned number (0x hex too), its low 20 bits as traceroute's."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an unsigned number, got {text}")
    return value & 0xFFFFF


def add_parser(sub: Any) -> None:
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
    add_common(tr, "-s")  # traceroute -s src_addr
    tr.read_words = words.check_words  # (cli._Parser's hook: traceroute's words first)
    # traceroute's long names of options ours calls otherwise (--max-hops, --icmp, --tcp
    # and --udp are with their options; --first, --gateway, --interface... are prefixes
    # of ours, which argparse takes)
    tr.add_argument("--source", dest="src", metavar="ADDR", help="= -s, as traceroute's")
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
        type=words.wait_spec(tr, ("-w", "--wait")),
        metavar="MAX[,HERE,NEAR]",
        help="as traceroute -w: wait for a probe's answer at most MAX s [5], or HERE times "
        "the RTT of an answer from the same hop [3], NEAR times that of a later hop [10] "
        "(0: not)",
    )
    tr.set_defaults(wait=5.0, here=3.0, near=10.0, _take_operands=_traceroute_operands)
    tr.add_argument(
        "-q",
        "--queries",
        type=words.count(tr, ("-q", "--queries"), 1, 10, "no more than 10 probes per hop"),
        default=3,
        action=Given,
        metavar="N",
        help="probes per hop [default: 3, as traceroute]",
    )
    tr.add_argument(
        "-N",
        "--sim-queries",
        dest="squeries",
        type=in_range(int, "--sim-queries", 1, 1000),
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
        "-I", "--icmp", dest="protocol", action="store_const", const="icmp",
        help="ICMP echo probes",
    )  # fmt: skip
    proto.add_argument(
        "-T", "--tcp", dest="protocol", action="store_const", const="tcp",
        help="TCP SYN probes",
    )  # fmt: skip
    proto.add_argument(
        "-U",
        "--udp",
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
    proto.add_argument(
        "-M",
        "--module",
        dest="protocol",
        type=_module,
        metavar="NAME",
        help="traceroute's module NAME: default (= -P udp), udp (= -U), icmp (= -I), tcp "
        "(= -T), udplite (= -UL), dccp (= -D); not raw or tcpconn",
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
        type=in_range(float, "--confidence", 50, 99.9),
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
        type=in_range(int, "--mbt-rounds", 1, 10),
        default=None,
        metavar="N",
        help="with --multilevel: at most N rounds of the monotonic bounds test; they stop "
        "earlier, once a round changes no hop's alias sets [default: 5]",
    )
    tr.add_argument(
        "-Q",
        "--maxprobec",
        dest="max_probes",
        type=in_range(int, "--maxprobec", 50, 65535),
        default=None,
        metavar="N",
        help="with --mda: send at most N probes in all, as scamper tracelb -Q; the trace "
        "ends there (stop reason MAXPROBEC) [default: 3000]",
    )
    tr.add_argument(
        "--gaplimit",
        dest="gaplimit",
        type=in_range(int, "--gaplimit", 1, 5),
        default=None,
        metavar="N",
        help="with --mda: N TTLs in a row without an answer end it, as scamper tracelb -g "
        "(-g is traceroute's gateway) [default: 3]",
    )
    tr.add_argument(
        "--attempts",
        dest="attempts",
        type=in_range(int, "--attempts", 1, 5),
        default=None,
        metavar="N",
        help="with --mda: probes of one flow and TTL before it counts as silent, as "
        "scamper tracelb -q (-q is traceroute's probes per hop) [default: 1; scamper's 2]",
    )
    tr.add_argument(
        "-W",
        "--wait-probe",
        dest="wait_probe",
        type=in_range(int, "--wait-probe", 0, 200),
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
    add_version(tr, "traceroute")
    tr.add_argument(  # (traceroute's long name of -V)
        "--version",
        action="version",
        version=tr._option_string_actions["-V"].version,
        help="= -V",
    )
    refuse(tr, (
        (("--fwmark",), "SO_MARK is not a PacketLab socket option", True),
        (("-r",), "SO_DONTROUTE is not a PacketLab socket option", False),
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
        type=words.count(tr, ("-f", "--first-ttl"), 1, 255, "first hop out of range"),
        default=1,
        metavar="N",
        help="TTL of the first probe [default: 1]",
    )
    tr.add_argument(
        "-m",
        "--max-ttl",
        "--max-hops",
        type=words.max_ttl(tr, ("-m", "--max-ttl", "--max-hops")),
        default=30,
        metavar="N",
        help="largest TTL [default: 30]",
    )
    tr.add_argument(
        "--sport",
        type=in_range(int, "--sport", 1, 65535),
        default=None,
        metavar="PORT",
        help="source port of the probes (default: random; the paper used 20556); as "
        "traceroute's, one probe at a time (-N 1), a silent one waited the whole -w MAX",
    )
    tr.add_argument(
        "--pace",
        type=in_range(float, "--pace", 0, 10),
        default=None,
        metavar="S",
        help="probes S seconds apart on the endpoint's clock [default: 0, all at once]",
    )
    tr.add_argument(
        "-z",
        "--sendwait",
        dest="pace",
        type=words.sendwait(tr, ("-z", "--sendwait")),
        metavar="S",
        help="as traceroute -z: probes S seconds apart, or S ms from 10 on (= --pace)",
    )
    tr.add_argument(
        "-p",
        "--port",
        type=in_range(int, "--port", 1, 65535),
        default=None,
        metavar="PORT",
        help="UDP: destination port of the first probe, +1 per probe [default: 33434]; "
        "-U: the destination port [default: 53]; TCP: the destination port [default: 80]",
    )


def run(args: argparse.Namespace) -> int:
    """The traceroute of `args`, in the reactor; 0."""
    from packetlab.cli.run_traceroute_trace import run_traceroute

    return run_traceroute(args)


async def measure(
    reactor: Any, args: argparse.Namespace, stop: StopSignal | None = None
) -> tuple[Any, TracerouteReport | MdaReport]:
    """Run the traceroute of `args`, printing as it goes; the result and its report
    (whose `finish` prints the summary)."""
    from packetlab.cli.run_traceroute_trace import measure_traceroute

    return await measure_traceroute(reactor, args, stop)
