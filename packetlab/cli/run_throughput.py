"""``pktlab run throughput --server HOST[:PORT]``: TCP pipe saturation against a stock
iperf3 server (packetlab.measure.throughput)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from packetlab.cli import pcapout
from packetlab.cli import run_throughput_output as output
from packetlab.cli.run import Given, RunError, given
from packetlab.cli.run_command import Command, Emit, Experiment, Progress, Record
from packetlab.measure import iperf3

EPILOG = """\
examples:
  iperf3 -s &                                     # any stock iperf3 3.x server
  pktlab run throughput --server 127.0.0.1 --direction download
  pktlab run throughput --server 10.77.3.2:5201 --direction upload --bytes 2M --runs 5
  pktlab run throughput --server 10.77.3.2 --json --runs 10
  pktlab run throughput -c iperf.example -p 5202 -n 8M --direction upload   # iperf3's names
  pktlab run throughput -c 10.77.3.2 -t 2 -i 0.5 -P 2          # iperf3 -R -t 2 -i 0.5 -P 2
  pktlab run throughput -c 10.77.3.2 -u -b 20M -t 1 --direction upload   # iperf3 -u -b 20M
  pktlab run throughput -c 10.77.3.2 --bidir -b 5M -t 5 -O 1      # both ways, 1 s omitted
  pktlab run throughput -c 10.77.3.2 -k 50 --direction upload      # 50 blocks, as iperf3 -k
  pktlab run throughput -c 10.77.3.2 -t 2 -P 2 --pcap t.pcap       # packets cut to 64 bytes

An upload from the in-process endpoint is held to 12,500,000 bytes per 10 s (10 Mb/s)
unless its home's exppriv grants more (pktlab init --max-burst-rate-byte): see
docs/throughput.md, "Uploads over TLS above 10 Mb/s".

Download: the data socket's ndata are masked during the transfer; the rate comes from the
endpoint's receive stamps with the first 1 MiB ignored (the Marionette paper, §5.2).
Upload: sends scheduled ahead with ntags masked; the rate is the iperf3 server's receiver
figure (sender_mbit_s: the endpoint's ntag stamps, first 1 MiB ignored).
With -t/-k/-P/-u/-b/-i/-l: iperf3's test and lines, every figure from endpoint stamps
(ndata receive times, ntag send times); TEST_END and paced sends (-b, UDP) are scheduled
at the endpoint; the sender/receiver block pairs ours with the iperf3 server's.
mbit_s is 10^6 bit/s. See docs/throughput.md.

iperf3's output: -J (its document), -f, -T, --timestamps, --logfile, --get-server-output,
-V (any of them selects iperf3's test); -J beside native:
  pktlab run throughput -c 10.77.3.2 -t 2 -J                # iperf3 -c 10.77.3.2 -R -t 2 -J
  pktlab run throughput -c 10.77.3.2 -t 2 -f m -T run1 --timestamps --get-server-output
  pktlab run throughput -c 10.77.3.2 -t 2 -B 10.77.3.1 --connect-timeout 500

Refused, one line each, exit 2 (iperf3's socket options: PacketLab's nopen carries none):
-w N (SO_SNDBUF/SO_RCVBUF), -Z (sendfile), -C ALGO (TCP_CONGESTION), -M MSS (TCP_MAXSEG),
-N (TCP_NODELAY), -S TOS and --dscp N (IP_TOS), --fq-rate RATE (SO_MAX_PACING_RATE),
-L N (IPV6_FLOWLABEL_MGR), --dont-fragment (IP_MTU_DISCOVER), -A N (the endpoint's
process cannot be pinned to a CPU), -B ADDR%DEV and --bind-dev DEV (SO_BINDTODEVICE),
--snd-timeout MS (TCP_USER_TIMEOUT), --sctp (nopen opens TCP and UDP only).
With -R (the server alone sends) -Z, -C ALGO, -N, --fq-rate RATE and --dont-fragment are
told the server, as iperf3 tells it (they act on the sender); refused where we send.
-b RATE/BURST: iperf3's burst mode (BURST blocks back to back); --pacing-timer USEC is told
the server; --rcv-timeout MS: a receiving test fails when idle that long, as iperf3.
--username U --rsa-public-key-path K: iperf3's authtoken (password from $IPERF3_PASSWORD).
-I FILE: this process's PID in FILE while the command runs, as iperf3 -I; -d: the control
connection's states and JSON messages on stderr (ours, not iperf3's debug lines).
"""


def size_of(text: str, option: str = "-n") -> int:
    """A size like 25M, read as iperf3 3.12's unit_atoi reads it: the number `%lf` takes,
    times 2^10/2^20/2^30/2^40 for a k/m/g/t right after it, other text ignored (`25MB`,
    `25MiB` are 25M; `10Q` is 10, with a warning)."""
    return _whole(text, option, "expected a size like 25M")


def _whole(text: str, option: str, said: str) -> int:
    """`text` as iperf3's unit_atoi reads it, whole (C's cast: the fraction dropped), or
    ArgumentTypeError(said, and why): no number, or a NaN or infinite one, has no value
    in iperf3's C (`-n inf` was an OverflowError traceback until session 28; fuzz28's
    throughput_opts target); a negative one is left to the option's range check. A unit
    iperf3 does not know is ignored as iperf3 ignores it, with a warning (`ignored`)."""
    from packetlab.measure.throughput_cnum import SIZE_STEPS, unit_number

    try:
        read = unit_number(text, SIZE_STEPS, signed=True)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{said}, got {text!r}: {e}") from None
    ignored(option, text, read.value, read.ignored)
    return int(read.value)


def ignored(option: str, text: str, value: float, rest: str) -> None:
    """A warning on stderr when text after a number without a unit was ignored (`-b 10Q`,
    `-n 10 K`: iperf3 3.12 reads 10 and says nothing; a typo then runs a test at another
    rate or size, so we say which). A trailing space, `b` or `B` changes nothing."""
    if rest.strip() in ("", "b", "B"):
        return
    import sys

    sys.stderr.write(
        f"warning: {option} {text}: read as {value:g}, as iperf3 3.12 reads it ({rest!r} "
        "after the number is no unit: only k, m, g or t right after it is)\n"
    )
    sys.stderr.flush()


def size(text: str) -> int:
    """The paper's transfer size: 2M..4G (its first MiB is not timed)."""
    n = size_of(text, "--bytes")
    if not FIXED_MIN <= n <= 1 << 32:
        raise argparse.ArgumentTypeError(f"size must be 2M..4G, got {text}")
    return n


#: Below this -n the test is iperf3's (its lines; the paper's transfer skips its first MiB)
FIXED_MIN = 2 << 20


def nbytes(text: str) -> int:
    """-n as iperf3 takes it (K/M/G as 1024): 1 byte to 4G; below 2M iperf3's test runs
    instead of the paper's transfer (`timed`)."""
    n = size_of(text)
    if not 0 <= n <= 1 << 32:  # (0: none, as iperf3 3.12 reads -n 0; see timed_experiment)
        raise argparse.ArgumentTypeError(f"-n must be 0..4G bytes (0: none), got {text}")
    return n


def rate(text: str, option: str = "--fq-rate") -> float:
    """-b's RATE or --fq-rate (`iperf3.read_rate`), a warning for text iperf3 ignores."""
    from packetlab.measure.iperf3 import read_rate

    try:
        read = read_rate(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    ignored(option, text, read.value, read.ignored)
    return read.value


class RateBurst(argparse.Action):
    """iperf3's -b RATE[/BURST]: `bitrate` and `burst` (0 without a slash)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        from packetlab.measure.iperf3 import parse_rate_burst

        try:
            bitrate, burst = parse_rate_burst(str(values))
        except ValueError as e:
            raise argparse.ArgumentError(self, str(e)) from None
        rate(str(values).partition("/")[0], option or "-b")  # (its warning)
        namespace.bitrate, namespace.burst = bitrate, burst


def c_int(option: str) -> Any:
    """An argparse type for iperf3's whole-number options (-P, -O, -p, --cport), read by
    glibc's atoi as iperf3 3.12 reads them (`-P 2x`, `-P 2.7` are 2; `٢` is no digit):
    Python's int() took `٢` as 2 and refused `2x`. No digits at all (atoi's 0: native
    `-P abc` hung with no stream, `-O abc` ran without -O) is refused here."""

    def whole(text: str) -> int:
        from packetlab.measure.throughput_cnum import c_atoi_rest

        got = c_atoi_rest(text)
        if got is None:
            raise argparse.ArgumentTypeError(
                f"expected a whole number, got {text!r}: no number (iperf3 3.12's atoi reads 0)"
            )
        ignored(option, text, got[0], got[1])
        return got[0]

    whole.__name__ = option.lstrip("-")
    return whole


def c_seconds(option: str) -> Any:
    """An argparse type for -t and -i, read as C's strtod reads them (iperf3 3.12: -i by
    atof, -t by atoi: `-t 1.9` is 1 s there, 1.9 s here, as documented): `0.5s` is 0.5
    with a warning, `1e0` 1; no number, NaN or infinity refused."""

    def read(text: str) -> float:
        from packetlab.measure.throughput_cnum import c_scan

        got = c_scan(text)
        if got is None or not math.isfinite(got.value):
            why = "no number" if got is None else "not finite"
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}: {why}")
        ignored(option, text, got.value, got.rest)
        return got.value

    read.__name__ = option.lstrip("-")
    return read


def connect_timeout(text: str) -> int:
    """--connect-timeout MS: iperf3 3.12's unit_atoi (`1k` is 1024 ms)."""
    return _whole(text, "--connect-timeout", "expected milliseconds like 500")


def rcv_timeout(text: str) -> int:
    """--rcv-timeout: whole ms, 100..86400000, read by glibc's atoi as iperf3 3.12 reads
    it (`500ms` is 500, `٣00` and `abc` 0), in its words if out of range."""
    from packetlab.measure.throughput_cnum import c_atoi

    n = c_atoi(text)
    if not 100 <= n <= 86_400_000:
        raise argparse.ArgumentTypeError(
            f"receive timeout value is incorrect or not in range (100..86400000 ms), got "
            f"{text}, as iperf3"
        )
    return n


def pacing_timer(text: str) -> int:
    """--pacing-timer: µs, K/M as 1024 (iperf3's unit_atoi), 0 up to an int's top."""
    from packetlab.measure.iperf3 import MAX_PACING_TIMER

    n = length(text, "--pacing-timer")
    if not 0 <= n <= MAX_PACING_TIMER:
        raise argparse.ArgumentTypeError(
            f"--pacing-timer must be 0..{MAX_PACING_TIMER} µs, got {text}"
        )
    return n


def count(text: str) -> int:
    """iperf3's -k: a whole number of blocks, K/M/G/T as 1024 (its unit_atoi)."""
    n = _whole(text, "-k", "expected a block count like 100 or 1K")
    if n < 0:  # (0: none, as iperf3 3.12 reads -k 0; see timed_experiment)
        raise argparse.ArgumentTypeError(f"-k must be 0 (none) or more, got {text}")
    return n


def length(text: str, option: str = "-l") -> int:
    """iperf3's -l (and --pacing-timer): K/M/G/T as 1024 (its unit_atoi)."""
    return _whole(text, option, "expected a size like 1460 or 128K")


def timed(args: argparse.Namespace) -> bool:
    """Any of iperf3's -t/-k/-P/-u/-b/-i/-l/-O/--cport/--bidir, or -n below 2M: the
    iperf3-like test (measure.throughput_timed); without them the paper's fixed-size
    transfer (measure.throughput)."""
    return bool(
        args.bytes < FIXED_MIN
        or args.time is not None
        or args.blocks is not None
        or args.parallel != 1
        or args.udp
        or args.bitrate is not None
        or args.pacing_timer is not None
        or args.rcv_timeout is not None
        or args.interval is not None
        or args.length is not None
        or args.wide
        or args.omit
        or args.cport is not None
        or args.bidir
        or args.bind is not None
        or args.connect_timeout is not None
        or args.repeating_payload
        or args.username is not None
        or args.file is not None
        or args.debug is not None
        or any(getattr(args, attr, None) not in (None, False) for attr in SERVER_TOLD)
        or output.selected(args)
    )


class Unresolved(RunError):
    """--server's host has no address (of -4/-6's family): in iperf3's test a failed test
    in iperf3's words (`unable to connect to server: REASON`, -J's `error`, the log
    file's line), as native fails its connect; elsewhere a usage error as any RunError."""

    def __init__(self, text: str, reason: str, port: int) -> None:
        super().__init__(text)
        self.reason = reason  # getaddrinfo's words, as iperf3 prints them
        self.port = port


def split_host_port(
    text: str,
    default: int,
    port_option: int | None = None,
    *,
    option: str = "--server",
    family: int | None = None,
) -> tuple[str, int]:
    """HOST, HOST:PORT or [V6]:PORT (`port_option`, iperf3's -p, wins). A host name is
    resolved here, as iperf3 -c does (and ping/traceroute with the in-process endpoint),
    to `family` (4 or 6: iperf3's -4/-6) if given. `option` names the option in errors."""
    import ipaddress

    from packetlab.cli.run import resolve_target
    from packetlab.hostport import HostPortError
    from packetlab.hostport import split_host_port as split_text

    try:  # iperf3 -c's host: `2001:db8::1:2` is one address
        host, given = split_text(text, reference=False)
    except HostPortError as e:  # `[::1]x` took port 5201, `[name]` the name
        raise RunError(f"{option} {text}: {e}") from None
    port = default if given is None else _port_number(given)
    if port_option is not None:
        port = port_option
    if not host:
        raise RunError(f"{option} {text}: no host")
    if not 1 <= port <= 65535:  # (before the name is looked up: iperf3's parameter error)
        raise RunError(f"{option} {text}: bad port (1..65535)")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        try:
            host = str(resolve_target(host, family))
        except RunError as e:  # `cannot resolve 'NAME': REASON`
            reason = str(e).partition(": ")[2] or "Name or service not known"
            raise Unresolved(f"{option} {text}: {e}", reason, port) from None
    else:
        if family is not None and literal.version != family:
            raise Unresolved(
                f"{option} {text}: an IPv{literal.version} address, but -{family} was given "
                "(iperf3: Address family for hostname not supported)",
                "Address family for hostname not supported",
                port,
            )
    return host, port


def _port_number(text: str) -> int:
    """A port's ASCII digits as a number, -1 (out of range) for anything else: `isdigit`
    alone took `²` (then int's ValueError in Python's words), `٣` (port 3) and 5,000
    digits (int's digit limit) (fuzz28's throughput_opts target)."""
    from packetlab.hostport import port_number

    number = port_number(text)
    return -1 if number is None else number


def server_of(args: argparse.Namespace) -> tuple[str | None, int, str | None]:
    """--server's address and port, and None; in iperf3's test a host without an address
    gives (None, port, getaddrinfo's words) instead, a test that fails to connect."""
    try:
        host, port = split_host_port(args.server, 5201, args.port, family=args.family)
    except Unresolved as e:
        if not timed(args):
            raise
        return None, e.port, e.reason
    return host, port, None


def typed_host(text: str) -> str:
    """The host of --server as typed (`localhost`, not the address it resolves to): iperf3
    prints `Connecting to host localhost, port 5201` and puts it in -J's `connecting_to`."""
    from packetlab.hostport import HostPortError
    from packetlab.hostport import split_host_port as split_text

    try:
        return split_text(text, reference=False)[0]
    except HostPortError:  # (split_host_port said why first)
        return text


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c", "--server", required=True, metavar="HOST[:PORT]",
        help="iperf3 server, address or name (port 5201), as iperf3 -c",
    )  # fmt: skip
    p.add_argument(
        "-p", "--port", type=c_int("-p"), metavar="PORT", help="server port, as iperf3 -p"
    )
    p.add_argument(
        "--direction",
        choices=("download", "upload"),
        default="download",
        help="download: server to endpoint (iperf3 -R); upload: endpoint to server (iperf3's "
        "default) [default: download]",
    )
    p.add_argument("-R", dest="direction", action=Given, const="download",
                   help="--direction download, as iperf3 -R (the server sends)")  # fmt: skip
    p.add_argument("-n", "--bytes", type=nbytes, default=25 << 20, metavar="N", action=Given,
                   help="bytes per transfer, e.g. 25M, as iperf3 -n (below 2M: iperf3's "
                   "test and lines, as with -P) [default: 25M, the paper's; with "
                   "-t/-P/-u/-b/-i/-l: -t 10 as iperf3]")  # fmt: skip
    p.add_argument("-t", "--time", type=c_seconds("-t"), default=None, metavar="S",
                   help="seconds to transmit for, as iperf3 -t (not with -n); the endpoint "
                   "ends the test at TEST_START + S; 0: until Ctrl-C, as iperf3 (here at "
                   "most 86400 s)")  # fmt: skip
    p.add_argument("-k", "--blockcount", dest="blocks", type=count, default=None, metavar="N",
                   help="blocks of -l bytes to send or receive (K/M/G: 1024), as iperf3 -k "
                   "(not with -t, -n); --bidir: the first direction to reach N ends the "
                   "test, as iperf3")  # fmt: skip
    p.add_argument("-P", "--parallel", type=c_int("-P"), default=1, metavar="N",
                   help="parallel streams (1..128), as iperf3 -P: per-stream and [SUM] "
                   "lines")  # fmt: skip
    p.add_argument("-u", "--udp", action="store_true",
                   help="UDP, as iperf3 -u: sends scheduled by the endpoint at -b; the "
                   "server's jitter, lost/total read back")  # fmt: skip
    p.add_argument("-b", "--bitrate", action=RateBurst, default=None, metavar="RATE[/BURST]",
                   help="bits/s per stream, e.g. 10M (K/M/G, 0: unlimited), as iperf3 -b "
                   "[UDP 1048576, iperf3's 1 Mbit/s; TCP unlimited]; paced by scheduled "
                   "sends; /BURST (1..1000): that many blocks back to back at a time, as "
                   "iperf3's burst mode")  # fmt: skip
    p.set_defaults(burst=0)
    p.add_argument("--pacing-timer", dest="pacing_timer", type=pacing_timer, default=None,
                   metavar="USEC",
                   help="told the server, which paces its sends (-R) with it, as iperf3 "
                   "[1000]; the endpoint's paced sends go at their scheduled times")  # fmt: skip
    p.add_argument("-i", "--interval", type=c_seconds("-i"), default=None, metavar="S",
                   help="report every S seconds (0.1..60; 0: one, the whole test), as "
                   "iperf3 -i, from endpoint stamps, each as soon as it is complete [1 with "
                   "-t/-P/-u/-b/-l, as iperf3]")  # fmt: skip
    p.add_argument("-l", "--length", type=length, default=None, metavar="N",
                   help="block (TCP, up to 1M) or datagram (UDP, 16..65507) size, as iperf3 "
                   "-l (0: the default) [128K; UDP the control connection's MSS]")  # fmt: skip
    p.add_argument("--rcv-timeout", dest="rcv_timeout", type=rcv_timeout, default=None,
                   metavar="MS",
                   help="receiving (-R, --bidir): the test fails once no data came for MS "
                   "ms, as iperf3 (`idle timeout for receiving data`) [none: --max-time "
                   "bounds the test]")  # fmt: skip
    p.add_argument("--udp-counters-64bit", dest="wide", action="store_true",
                   help="64-bit datagram counters, as iperf3")  # fmt: skip
    p.add_argument("-O", "--omit", type=c_int("-O"), default=0, metavar="N",
                   help="omit the first N seconds (0..60), as iperf3 -O: a pre-test of N s "
                   "before the -t seconds counted, its intervals marked (omitted)")  # fmt: skip
    p.add_argument("--bidir", action="store_true",
                   help="both ways at once, as iperf3 --bidir: -P streams from the endpoint "
                   "(TX-C) and -P to it (RX-C); with -t")  # fmt: skip
    p.add_argument("--cport", type=c_int("--cport"), default=None, metavar="PORT",
                   help="the data streams' local ports at the endpoint: PORT, PORT+1, ... "
                   "(as iperf3 3.12 --cport)")  # fmt: skip
    p.add_argument("-w", "--window", default=None, metavar="N",
                   help="socket buffer size, as iperf3 -w: refused, the endpoint's kernel "
                   "buffers cannot be set through PacketLab")  # fmt: skip
    # iperf3's socket options: refused in one line each (SOCKET_REFUSED), not unknown
    p.add_argument("-Z", "--zerocopy", action="store_true",
                   help="iperf3's zero-copy sends: with -R the server's (told), else "
                   "refused")  # fmt: skip
    p.add_argument("-C", "--congestion", default=None, metavar="ALGO",
                   help="TCP congestion control, as iperf3 -C: with -R the server's (told), "
                   "else refused")  # fmt: skip
    p.add_argument("-M", "--set-mss", dest="mss", default=None, metavar="MSS",
                   help="TCP maximum segment size, as iperf3 -M: refused")  # fmt: skip
    p.add_argument("-N", "--no-delay", dest="nodelay", action="store_true",
                   help="TCP_NODELAY, as iperf3 -N: with -R the server's (told), else "
                   "refused")  # fmt: skip
    p.add_argument("-S", "--tos", default=None, metavar="TOS",
                   help="IP type of service, as iperf3 -S: refused")  # fmt: skip
    p.add_argument("--fq-rate", dest="fq_rate", default=None, metavar="RATE",
                   help="fair-queuing pacing, as iperf3 --fq-rate: with -R the server's (told), "
                   "else refused")  # fmt: skip
    p.add_argument("--dscp", default=None, metavar="N",
                   help="IP DSCP, as iperf3 --dscp: refused")  # fmt: skip
    p.add_argument("-L", "--flowlabel", default=None, metavar="N",
                   help="IPv6 flow label, as iperf3 -L: refused")  # fmt: skip
    p.add_argument("--dont-fragment", dest="dont_fragment", action="store_true",
                   help="IPv4 Don't Fragment, as iperf3: with -R the server's (told), else "
                   "refused")  # fmt: skip
    p.add_argument("--snd-timeout", dest="snd_timeout", default=None, metavar="MS",
                   help="TCP_USER_TIMEOUT, as iperf3 --snd-timeout: refused")  # fmt: skip
    p.add_argument("--bind-dev", dest="bind_dev", default=None, metavar="DEV",
                   help="SO_BINDTODEVICE, as iperf3 --bind-dev: refused")  # fmt: skip
    p.add_argument("--sctp", action="store_true",
                   help="SCTP, as iperf3 --sctp: refused (nopen opens TCP or UDP)")  # fmt: skip
    p.add_argument("-A", "--affinity", default=None, metavar="N[,M]",
                   help="CPU affinity, as iperf3 -A: refused")  # fmt: skip
    p.add_argument("-F", "--file", default=None, metavar="NAME",
                   help="send the file's bytes in -l blocks (the test ends at its end, or "
                   "-t), or with -R write what came to it, as iperf3 -F (with -P each "
                   "stream from the file's start; not with --bidir)")  # fmt: skip
    p.add_argument("--username", default=None, metavar="NAME",
                   help="authenticate to the server, as iperf3 --username: the password from "
                   "$IPERF3_PASSWORD or asked on the terminal, encrypted with "
                   "--rsa-public-key-path")  # fmt: skip
    p.add_argument("--rsa-public-key-path", dest="rsa_public_key", default=None,
                   metavar="FILE",
                   help="the server's RSA public key (PEM) for --username, as iperf3")  # fmt: skip
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", "--version4", dest="family", action="store_const", const=4,
                     help="only IPv4: a name resolved to IPv4, as iperf3 -4")  # fmt: skip
    fam.add_argument("-6", "--version6", dest="family", action="store_const", const=6,
                     help="only IPv6, as iperf3 -6")  # fmt: skip
    # -4/-6 make argparse read every negative number as an option (`-t -1`, `-O -1`:
    # "expected one argument"); without the flag `-1` is a value the checks name
    # (`-O must be 0..60 s`), and -4/-6 themselves still match exactly first
    p._has_negative_number_optionals.clear()
    p.add_argument("-B", "--bind", default=None, metavar="ADDR",
                   help="the endpoint's local address for every connection (one of its "
                   "addresses: else one line naming them), as iperf3 -B")  # fmt: skip
    p.add_argument("--connect-timeout", dest="connect_timeout", type=connect_timeout, default=None,
                   metavar="MS",
                   help="give up on the control connection after MS ms, as iperf3 "
                   "[5000]")  # fmt: skip
    p.add_argument("--repeating-payload", dest="repeating_payload", action="store_true",
                   help="blocks of '0123456789...' instead of zeros, both ways (the "
                   "server is told), as iperf3")  # fmt: skip
    p.add_argument("-I", "--pidfile", default=None, metavar="FILE",
                   help="write this process's PID to FILE for the command's time (removed "
                   "at its end), as iperf3 -I")  # fmt: skip
    p.add_argument("-d", "--debug", nargs="?", const="4", default=None, metavar="LEVEL",
                   help="the control connection's states and JSON messages on stderr "
                   "(ours, not iperf3's debug lines; LEVEL taken and not used, as iperf3 "
                   "3.12 takes any)")  # fmt: skip
    output.add_options(p)
    p.add_argument("--runs", type=int, default=1, metavar="N", help="transfers [default: 1]")
    p.add_argument(
        "--max-time", type=float, default=60.0, metavar="S", help="seconds per transfer [60]"
    )
    p.add_argument(
        "--lead",
        type=float,
        default=None,
        metavar="S",
        help="upload: schedule the sends S s ahead [0.5 s + the data at 20 MB/s]",
    )
    pcapout.add_option(p)


WINDOW_REFUSED = (
    "-w {}: not supported: iperf3 sets SO_SNDBUF/SO_RCVBUF on its sockets, and PacketLab "
    "cannot set the endpoint's kernel socket buffers (nopen takes only rbufsz, the "
    "endpoint's receive budget for the controller, not a kernel buffer; there is no socket "
    "option request)"
)


# iperf3's options that set a socket option on its data sockets: (attribute, the option
# as written, what iperf3 sets). PacketLab's nopen carries no socket options, so each is
# refused in one line, as -w is, rather than run without it.
SOCKETS = "PacketLab cannot set it on the endpoint's sockets"
SOCKET_OPTIONS = (
    ("zerocopy", "-Z", "sends with sendfile() (zero copy) from its own process",
     "PacketLab cannot choose how the endpoint copies the bytes of an nsend"),
    ("congestion", "-C {}", "sets TCP_CONGESTION on its sockets", SOCKETS),
    ("mss", "-M {}", "sets TCP_MAXSEG on its sockets", SOCKETS),
    ("nodelay", "-N", "sets TCP_NODELAY on its sockets", SOCKETS),
    ("tos", "-S {}", "sets IP_TOS (IPV6_TCLASS) on its sockets", SOCKETS),
    ("fq_rate", "--fq-rate {}", "sets SO_MAX_PACING_RATE on its sockets", SOCKETS),
    ("dscp", "--dscp {}", "sets IP_TOS (IPV6_TCLASS) to the DSCP on its sockets", SOCKETS),
    ("flowlabel", "-L {}", "sets IPV6_FLOWLABEL_MGR and IPV6_FLOWINFO_SEND on its sockets",
     SOCKETS),
    ("dont_fragment", "--dont-fragment", "sets IP_MTU_DISCOVER (IP_PMTUDISC_DO) on its "
     "sockets", SOCKETS),
    ("snd_timeout", "--snd-timeout {}", "sets TCP_USER_TIMEOUT on its sockets", SOCKETS),
    ("bind_dev", "--bind-dev {}", "sets SO_BINDTODEVICE on its sockets", SOCKETS),
)  # fmt: skip
#: --sctp: not a socket option (the protocol), refused in the same way
SCTP_REFUSED = "--sctp: not supported: PacketLab's nopen opens TCP and UDP sockets only"
#: -A: not a socket option (iperf3 places its own process), refused in the same way
AFFINITY_REFUSED = (
    "-A {}: not supported: iperf3 pins its own process to a CPU (sched_setaffinity), and "
    "PacketLab has no request that places the endpoint's process or threads"
)
SOCKET_REFUSED = (
    "{}: not supported: iperf3 {}, and {} (nopen takes only the protocol, the addresses "
    "and rbufsz; there is no socket option request)"
)


#: The socket options iperf3 also tells its server (`iperf3.ServerSockopts`): with -R,
#: where the server alone sends, telling it is all they do (session 27, iperf27); refused
#: where the endpoint sends (upload, --bidir), with this said after the reason
SERVER_TOLD = frozenset({"zerocopy", "congestion", "nodelay", "fq_rate", "dont_fragment"})
SERVER_TOLD_NOTE = "; with -R, where the server alone sends, the server is told, as iperf3 tells it"


def receives_only(args: argparse.Namespace) -> bool:
    """The endpoint only receives (-R, our default direction; not --bidir)."""
    return getattr(args, "direction", None) == "download" and not getattr(args, "bidir", False)


def zero_tos(value: str) -> bool:
    """-S 0 (0x0, 00), --dscp 0 (cs0): iperf3 3.12 sets IP_TOS only when it is not 0, and
    tells the server no TOS, so the test is the default one; accepted, as native's
    (session 28; was `-S 0: not supported`)."""
    try:
        return int(value, 0) == 0
    except (TypeError, ValueError):
        return str(value).lower() == "cs0"


def refused(args: argparse.Namespace) -> str | None:
    """The one-line refusal of the first iperf3 socket option given (-w, -Z, -C, -M,
    -N, -S, --fq-rate), or None."""
    if getattr(args, "window", None) is not None:
        return WINDOW_REFUSED.format(args.window)
    for attr, flag, what, cannot in SOCKET_OPTIONS:
        value = getattr(args, attr, None)
        if value in (None, False) or (attr in ("tos", "dscp") and zero_tos(value)):
            continue
        if attr not in SERVER_TOLD:
            return SOCKET_REFUSED.format(flag.format(value), what, cannot)
        if not receives_only(args):
            return SOCKET_REFUSED.format(flag.format(value), what, cannot) + SERVER_TOLD_NOTE
    if getattr(args, "affinity", None) is not None:
        return AFFINITY_REFUSED.format(args.affinity)
    if getattr(args, "sctp", False):
        return SCTP_REFUSED
    return None


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    run = _experiment(args, emit, progress)
    path = getattr(args, "pidfile", None)
    return run if path is None else pidfile_kept(run, path)


def _experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    from packetlab.measure.throughput import throughput

    host, port, unresolved = server_of(args)
    why = refused(args) or output.check(args)
    if why is not None:
        raise RunError(why)
    if getattr(args, "logfile", None) is not None:
        try:  # before anything is sent, as iperf3 opens it at its start
            renderer(args).logged()
        except OSError as e:  # iperf3 3.12's words (it exits 1; ours 2, before a test)
            raise RunError(f"error - unable to open log file: {e.strerror or e}") from None
    if not 1 <= args.runs <= 10_000:
        raise RunError("--runs must be 1..10000")
    if timed(args):
        return timed_experiment(args, host, port, emit, progress, unresolved)
    assert host is not None  # (server_of: an unresolved host only in iperf3's test)
    recorder = pcapout.recorder_for(args)  # all runs in one file (every byte: mind the size)

    async def run(session: Any) -> None:
        for i in range(args.runs):
            if progress.stopping:  # Ctrl-C: no new transfer
                return

            def show(done: int, total: int, i: int = i) -> None:
                progress(f"{args.direction} {i + 1}/{args.runs}: {done >> 20}/{total >> 20} MiB")

            r = await throughput(
                session,
                host,
                port,
                direction=args.direction,
                nbytes=args.bytes,
                timeout=args.max_time,
                lead=args.lead,
                progress=show,
                recorder=recorder,
            )
            emit(r.to_dict())

    return pcapout.recording(args, recorder, run)


def pidfile_kept(run: Experiment, path: str) -> Experiment:
    """`run` with -I's file written now (its options checked, nothing sent yet: iperf3
    writes it before it connects) and removed when the run ends, however it ends."""
    from packetlab.cli.run_throughput_pidfile import PidFile

    pid = PidFile(path)
    pid.create()

    async def kept(session: Any) -> None:
        try:
            await run(session)
        finally:
            pid.remove()

    return kept


def bind(args: argparse.Namespace, host: str) -> str | None:
    """-B's address (checked against the endpoint's addresses when the test starts)."""
    import ipaddress

    if args.bind is None:
        return None
    addr, _, dev = args.bind.partition("%")
    if dev:
        raise RunError(
            f"-B {args.bind}: the %{dev} part is iperf3's --bind-dev (SO_BINDTODEVICE), a "
            "socket option PacketLab cannot set on the endpoint's sockets"
        )
    try:
        local = ipaddress.ip_address(addr)
    except ValueError:
        raise RunError(f"-B {args.bind}: not an IP address (the endpoint's own)") from None
    if local.version != ipaddress.ip_address(host).version:
        raise RunError(f"-B {args.bind}: an IPv{local.version} address, but the server {host} "
                       f"is IPv{ipaddress.ip_address(host).version}")  # fmt: skip
    return str(local)


def server_sockopts(args: argparse.Namespace) -> iperf3.ServerSockopts:
    """-N, --fq-rate, -C, -Z, --dont-fragment for the server (`refused` let them through
    with -R only). --fq-rate is read as iperf3 reads it (bits/s, K/M/G/T 10^3 steps)."""
    fq = 0
    if args.fq_rate is not None:
        try:
            fq = int(rate(args.fq_rate, "--fq-rate"))
        except argparse.ArgumentTypeError as e:
            raise RunError(f"--fq-rate: {e}") from None
    return iperf3.ServerSockopts(
        nodelay=args.nodelay, fq_rate=fq, congestion=args.congestion,
        zerocopy=args.zerocopy, dont_fragment=args.dont_fragment,
    )  # fmt: skip


def authtoken(args: argparse.Namespace) -> Callable[[float], str] | None:
    """--username's token as iperf3 3.12 builds it, for the time given (s): the password
    from $IPERF3_PASSWORD or asked on the terminal, the key from --rsa-public-key-path,
    both read (and the key checked) now. iperf3 stamps it with its host's clock as it
    sends its parameters, and the server refuses one more than 10 s off its own clock:
    each test makes its own, on the endpoint's clock (`runclock`; one made at the start
    was refused to a second run of -t 12, and to every run with our clock 600 s off)."""
    import os
    import sys
    import time

    if args.username is None and args.rsa_public_key is None:
        return None
    password = os.environ.get("IPERF3_PASSWORD")
    if password is None and args.username is not None and sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
    if args.username is None or password is None or args.rsa_public_key is None:
        raise RunError(
            "--username needs a username, a password ($IPERF3_PASSWORD, or asked on a "
            "terminal) and --rsa-public-key-path, as iperf3"
        )
    try:
        with open(args.rsa_public_key, "rb") as f:
            pem = f.read(1 << 16)
        iperf3.authtoken(args.username, password, pem, int(time.time()))  # (the key checked)
    except (OSError, ValueError, TypeError) as e:
        raise RunError(
            f"--rsa-public-key-path {args.rsa_public_key}: not a valid RSA public key ({e})"
        ) from None
    user, secret = args.username, password
    return lambda now: iperf3.authtoken(user, secret, pem, int(now))


def timed_experiment(
    args: argparse.Namespace,
    host: str | None,
    port: int,
    emit: Emit,
    progress: Progress,
    unresolved: str | None = None,
) -> Experiment:
    """iperf3's test; `host` None: --server had no address (`unresolved` getaddrinfo's
    words), each run a test that failed to connect, as native's (exit 1, `-J`'s document
    with its `error`, the line in --logfile's file; was a usage error, exit 2, nothing on
    stdout for a script reading -J)."""
    from packetlab.cli.run_throughput_rows import pace_warning
    from packetlab.measure.throughput_timed import TimedResult, TimedSpec, timed_test

    # -n 0, -k 0: no limit, as iperf3 3.12 reads them (its test runs -t's 10 s, and `-n 0
    # -t 1` is no second end condition); they were refused here until session 29
    nbytes = args.bytes if given(args, "--bytes") and args.bytes else None
    args.blocks = args.blocks or None
    if args.bidir and given(args, "-R"):
        raise RunError("-R and --bidir: cannot be both reverse and bidirectional, as iperf3")
    if sum(x is not None for x in (args.time, nbytes, args.blocks)) > 1:
        raise RunError("only one test end condition (-t, -n, -k) may be specified, as iperf3")
    if args.lead is not None:
        raise RunError(
            "--lead is not used with -t/-k/-P/-u/-b/-i/-l: their paced sends are queued "
            "0.5 s ahead as the test goes, unpaced ones as the endpoint takes them"
        )
    spec = TimedSpec(
        direction=args.direction, seconds=args.time, nbytes=nbytes, blocks=args.blocks,
        streams=args.parallel,
        udp=args.udp, bitrate=args.bitrate, length=args.length,
        interval=1.0 if args.interval is None else args.interval,
        wide=args.wide, omit=args.omit, cport=args.cport, bidir=args.bidir,
        extra_data=args.extra_data, server_output=args.server_output, title=args.title,
        repeating_payload=args.repeating_payload,
        bind=None if host is None else bind(args, host),
        connect_timeout=None if args.connect_timeout is None else args.connect_timeout / 1e3,
        file=args.file, burst=args.burst,
        rcv_timeout=None if args.rcv_timeout is None else args.rcv_timeout / 1e3,
        pacing_timer=iperf3.DEFAULT_PACING_TIMER if args.pacing_timer is None
        else args.pacing_timer,
        fd_offset=1 if args.logfile is not None else 0,  # iperf3's `[  6]` with --logfile
        debug=None if args.debug is None else debug_line,
        server_sockopts=server_sockopts(args),
    )  # fmt: skip
    try:
        spec.check()
    except ValueError as e:
        raise RunError(str(e)) from None

    recorder = pcapout.recorder_for(args)  # all runs in one file, payloads cut short
    token = authtoken(args)  # (each test's own, on the endpoint's clock)

    named = typed_host(args.server)
    paced = argparse.Namespace(warned=None)  # -b's rate not met (pace_warning): said once

    def connected(r: Record) -> None:
        r["host"] = named  # as typed: its line and -J say it, as iperf3's
        warning = udp_mss_warning(r)
        if warning is not None:  # iperf3: on stderr, whatever -J, --logfile or -T say
            import sys

            sys.stderr.write(warning + "\n")
            sys.stderr.flush()
        emit(r)

    async def run(session: Any) -> None:
        for i in range(args.runs):
            if progress.stopping:
                return

            if host is None:  # iperf3's connect fails: its words, a failed test's record
                failed = TimedResult(spec, named, port)
                failed.error = f"cannot resolve {named!r}: {unresolved}"
                failed.native_error = f"unable to connect to server: {unresolved}"
                emit({**failed.to_dict(), "host": named})
                continue

            def show(text: str, i: int = i) -> None:
                progress(f"{args.direction} {i + 1}/{args.runs}: {text}")

            if token is not None:
                spec.authtoken = token(progress.clock.now())
            r = await timed_test(
                session, host, port, spec=spec, on_interval=emit, progress=show,
                timeout=(spec.seconds or 0) + args.max_time,
                stopping=lambda: progress.stopping,  # Ctrl-C: the totals so far, as iperf3
                on_connected=connected, recorder=recorder,
            )  # fmt: skip
            record = {**r.to_dict(), "host": named}
            warnings = [congestion_warning(record, spec.server_sockopts.congestion)]
            if not paced.warned:  # (once a command, not each run)
                paced.warned = pace_warning(record)
                warnings.append(paced.warned)
            for warning in filter(None, warnings):
                import sys

                sys.stderr.write(warning + "\n")
                sys.stderr.flush()
            emit(record)

    return pcapout.recording(args, recorder, run)


def congestion_warning(r: Record, asked: str | None) -> str | None:
    """-R -C ALGO: an iperf3 3.12 server that cannot set ALGO runs the test with its
    default and says so only in its results (`congestion_used`); native's client fails
    first on its own host (`unable to set TCP_CONGESTION: Supplied congestion control
    algorithm not supported on this host`), ours sets nothing on the endpoint, so the
    test ran: a warning, on stderr, that the server did not use it."""
    used = r.get("server_info", {}).get("congestion_used")
    if asked is None or used is None or used == asked:
        return None
    return f"warning: -C {asked}: the server used {used} (its host lacks {asked}, or refused it)"


def debug_line(text: str) -> None:
    """-d's line on stderr (iperf3 prints its own debug lines on stdout; ours stay off the
    output, so -J's document and the text parse as without -d)."""
    import sys

    sys.stderr.write(f"{output.PROG}: debug: {text}\n")
    sys.stderr.flush()


def udp_mss_warning(r: Record) -> str | None:
    """iperf3 3.12's warning when a UDP test's -l exceeds the control connection's MSS
    (the endpoint's TCP_INFO here; none when it is not known, as iperf3's 0)."""
    mss, block = r.get("tcp_mss") or 0, r.get("length") or 0
    if r.get("protocol") != "udp" or mss <= 0 or block <= mss:
        return None
    return (
        f"warning: UDP block size {block} exceeds TCP MSS {mss}, may result in "
        "fragmentation / drops"
    )


#: iperf3's text lines (run_throughput_rows), loaded with the first record shown
_TEXT = ("connected_rows", "interval_rows", "timed_rows", "verbose_congestion", "starting_test",
         "LATE_SHARE", "BIDIR_NOTE")  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _TEXT:
        from packetlab.cli import run_throughput_rows

        return getattr(run_throughput_rows, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def row(r: Record) -> str | None:
    """A record's text (iperf3's lines, or the fixed-size transfer's row)."""
    from packetlab.cli.run_throughput_rows import row

    return row(r)


def summary(records: list[Record]) -> Record:
    got = [r for r in records if r["type"] == "throughput"]
    rates = [r["mbit_s"] for r in got if r.get("mbit_s") is not None]
    return {
        "runs": len(got),
        "ok": len(rates),
        "mbit_s_mean": sum(rates) / len(rates) if rates else None,
        "mbit_s_min": min(rates) if rates else None,
        "mbit_s_max": max(rates) if rates else None,
    }


def budget(args: argparse.Namespace) -> float:
    from packetlab.measure.throughput_spec import FOREVER_S

    seconds = FOREVER_S if args.time == 0 else args.time or 0  # -t 0: until Ctrl-C
    return args.runs * (seconds + args.max_time + 20)


def renderer(args: argparse.Namespace) -> Any:
    """The text of each record, with iperf3's output options (-J, -f, -T, --logfile...)."""
    from packetlab.cli import run_throughput_rows as text

    rows = output.Rows(text.connected_rows, text.interval_rows, text.timed_rows, text.row)
    return output.renderer(args, rows)


def clock_first(args: argparse.Namespace) -> bool:
    """The endpoint's clock from the run's start: each test's --username token, made
    before its first request (`Command.clock_first`). -J's and --timestamps' times are
    of records the endpoint answered: read, not waited for (`output.prints_times`)."""
    return args.username is not None


COMMAND = Command(
    name="throughput",
    help="TCP throughput against an iperf3 server (paper §5.2)",
    description="Download or upload N bytes over one TCP connection between the endpoint "
    "and a stock iperf3 server, timed with endpoint stamps, notifications held back "
    "during the transfer.",
    configure=configure,
    experiment=experiment,
    row=row,
    summary=summary,
    budget=budget,
    epilog=EPILOG,
    target=lambda args: server_of(args)[0],  # (None: the in-process endpoint's default)
    row_for=renderer,
    clock_first=clock_first,
    clock_read=output.prints_times,
)


def add_parser(sub: Any) -> None:
    from packetlab.cli.run_command import add_command

    add_command(sub, COMMAND)
