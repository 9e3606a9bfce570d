"""``pktlab run ping [HOST...] TARGET``: ping's options, as iputils ping names them, and
its operands, taken after options too as ping's getopt takes them (`add_parser`); the
run itself is `packetlab.cli.run_ping_echo` (imported when it runs, not for --help or a
usage error)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from packetlab.cli import NativeValueError
from packetlab.cli.run import Given, add_common, add_version, given, in_range, refuse

if TYPE_CHECKING:
    from packetlab.cli.report_ping import PingReport
    from packetlab.controller.stop import StopSignal

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


def _wait(p: argparse.ArgumentParser, flag: str, what: str, default: float) -> None:
    p.add_argument(
        flag,
        "--wait",
        dest="wait",
        type=in_range(float, "--wait", 0.001, 60),
        default=default,
        metavar="S",
        help=f"seconds to wait for {what} [default: {default:g}]",
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
    from packetlab.measure.packets_ip_options import TIMESTAMP_KINDS

    if text not in TIMESTAMP_KINDS:
        raise argparse.ArgumentTypeError(f"invalid timestamp type: {text}")
    return text


def _ping_operands(args: argparse.Namespace, extra: list[str]) -> bool:
    """`pktlab run ping HOST -c 1 TARGET`: operands after an option are more hosts (the
    TARGET last), as ping's getopt permutes them (was `unrecognized arguments`)."""
    args.prespec.extend(extra)
    return True


class _Flood(argparse.Action):
    """ping -f: the flood display, and -i 0 unless -i is given (as iputils)."""

    def __call__(self, parser: Any, ns: argparse.Namespace, value: Any, opt: Any = None) -> None:
        ns.flood = True
        if not given(ns, "-i"):
            ns.interval = 0.0


def add_parser(sub: Any) -> None:
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
    add_common(pg, "-I")  # ping -I address (not an interface name)
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
        type=in_range(float, "--deadline", 0.001, 86400),
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
        type=in_range(float, "--interval", 0, 60),
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
        "-A",
        dest="adaptive",
        action="store_true",
        help="adaptive ping, as ping -A (root's): the interval is the smoothed RTT in whole "
        "ms (-i before the first reply), -l requests (1) each interval; under 0.5 ms of "
        "RTT the next as a reply comes, or 10 ms after the last; the statistics end with "
        "ipg/ewma",
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
        type=in_range(int, "--ttl", 1, 255),
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
        type=in_range(int, "-l", 1, 65536),
        default=1,
        metavar="PRELOAD",
        help="send PRELOAD requests at once, then one per -i, as ping -l [1]",
    )
    pg.add_argument(
        "-e",
        dest="ident",
        type=in_range(int, "-e", 0, 0xFFFF),
        default=None,
        metavar="ID",
        help="the requests' ICMP identifier, as ping -e [default: random]",
    )
    pg.add_argument(
        "-B",
        dest="sticky",
        action="store_true",
        help="sticky source address, as ping -B: the header says `from SRC :` (the source "
        "never changes here: the endpoint sends every request from one address)",
    )
    add_version(pg, "ping")
    refuse(pg, (
        (("-m",), "SO_MARK is not a PacketLab socket option", True),
        (("-r",), "SO_DONTROUTE is not a PacketLab socket option", False),
        (("-b",), "SO_BROADCAST is not a PacketLab socket option", False),
        (("-S",), "SO_SNDBUF is not a PacketLab socket option", True),
        (("-L",), "IP_MULTICAST_LOOP is not a PacketLab socket option", False),
        (("-U",), "the RTTs are the endpoint's kernel times already (no user-to-user mode)", False),
    ))  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """The ping of `args`, in the reactor; iputils' exit status."""
    from packetlab.cli.run_ping_echo import run_ping

    return run_ping(args)


async def measure(
    reactor: Any, args: argparse.Namespace, stop: StopSignal | None = None
) -> tuple[Any, PingReport]:
    """Run the ping of `args`, printing as it goes; the result and its report (whose
    `finish` prints the statistics)."""
    from packetlab.cli.run_ping_echo import measure_ping

    return await measure_ping(reactor, args, stop)
