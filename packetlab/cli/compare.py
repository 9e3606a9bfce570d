"""``pktlab compare MEASUREMENT ...``: congruence built in. Runs the PacketLab
measurement (through the in-process endpoint) and the native tool on the same target,
back to back in alternating order, `--runs` times, and reports the Marionette paper's
criteria (§3.2): C1 relative mean error, C2 two-sample KS test, C3 Jaccard index, each
with its verdict, optionally with a CDF plot like the paper's Figs 2-3.

Native tools: iperf3 (throughput), dig (dns), curl (http), iputils ping (ping), Butskoy
traceroute (traceroute), all from Debian (scripts/setup.sh). They run on this host, so the
endpoint is always the in-process one (no --listen).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packetlab.cli.exits import EXIT_OK
from packetlab.cli.link import Link, add_link_arguments, route_source, run_on_link
from packetlab.cli.run import RunError, check_ranges
from packetlab.cli.run_command import Progress, in_process_options
from packetlab.cli.run_host import check_raw_permission

if TYPE_CHECKING:
    from packetlab.controller.stop import StopSignal

EPILOG = """\
examples:
  pktlab compare throughput --server 10.77.2.2 --runs 20 --insecure-plaintext
  pktlab compare dns --server 127.0.0.1:5353 a.test www.test --runs 5
  pktlab compare http --cacert ca.pem --connect-to 127.0.0.1 https://localhost:8443/p/1
  pktlab compare ping 10.77.3.2 --runs 10 --json
  pktlab compare traceroute 10.77.3.2 --runs 5 --plot rtt.svg

C2 (throughput, ping, traceroute) needs scipy and --plot matplotlib: the analysis extra,
pip install 'packetlab[analysis]' (dns and http run without it).

Exit status: 0 when every criterion holds, 1 when one does not, 2 on errors, 130 after
Ctrl-C (the criteria of the runs done are printed). See docs/congruence.md.
"""

# Wrapped by hand, as the `run` commands' link group.
LINK_ABOUT = (
    "The endpoint runs in this process, beside the native tool. The link is TLS 1.3\n"
    "with the PPKS certificates of a `pktlab init` home unless --insecure-plaintext."
)
LISTEN_HELP = "not for compare (the native tool runs on this host, so the endpoint does too)"

Sample = dict[str, Any]  # {"values": [float], "items": [hashable], "record": {...}}


@dataclass
class Spec:
    """One measurement: how to run each side once, and which criteria apply."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    packetlab: Callable[[argparse.Namespace], Callable[[Any], Any]]  # args -> async(session)
    native: Callable[[argparse.Namespace], Callable[[], Sample]]
    unit: str = ""  # of the values (C1/C2)
    c1_bound: float | None = None  # None: no C1/C2 (a set measurement)
    raw: bool = False
    target: Callable[[argparse.Namespace], str | None] = lambda args: None
    # Where the native tool reads its send clock, when before the system call (a user-space
    # stamp: its RTTs include its own send path, ours start at the kernel's TX stamp)
    native_send: str | None = None


@dataclass(frozen=True)
class Failed:
    """A query or fetch that failed, as a C3 item: it matches only the other side's failure
    of the same `key` (both sides agreeing that a server is down is agreement), and its
    `reason` (not compared) is shown, so that a run where everything failed says so."""

    key: tuple[Hashable, ...]
    reason: str = field(compare=False)


def failed_items(items: list[Hashable]) -> list[Failed]:
    return [i for i in items if isinstance(i, Failed)]


# -- throughput ----------------------------------------------------------------------------------


def _tput_configure(p: argparse.ArgumentParser) -> None:
    from packetlab.cli.run_throughput import size

    p.add_argument("--server", required=True, metavar="HOST[:PORT]", help="iperf3 server")
    p.add_argument("--direction", choices=("download", "upload"), default="download",
                   help="the server sends (download) or receives (upload) [download]")  # fmt: skip
    p.add_argument("--bytes", type=size, default=25 << 20, metavar="N", help="per transfer [25M]")


def _tput_pl(args: argparse.Namespace) -> Callable[[Any], Any]:
    from packetlab.cli.run_throughput import split_host_port
    from packetlab.measure.throughput import throughput

    host, port = split_host_port(args.server, 5201)

    async def run(session: Any) -> Sample:
        r = await throughput(session, host, port, direction=args.direction, nbytes=args.bytes)
        if r.mbit_s is None:
            raise RunError(f"packetlab throughput: {r.error}")
        return {"values": [r.mbit_s], "items": [], "record": r.to_dict()}

    return run


def _tput_nt(args: argparse.Namespace) -> Callable[[], Sample]:
    from packetlab.cli.run_throughput import split_host_port
    from packetlab.measure.baselines import run_iperf3

    host, port = split_host_port(args.server, 5201)

    def run() -> Sample:
        r = run_iperf3(host, port=port, direction=args.direction, nbytes=args.bytes)
        return {"values": [r.mbit_s], "items": [], "record": r.to_dict()}

    return run


# -- dns -----------------------------------------------------------------------------------------


def _dns_configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", metavar="NAME", nargs="+", help="names to ask (every --type each)")
    p.add_argument("-t", "--type", dest="types", action="append", metavar="TYPE",
                   help="query type, repeatable [A]")  # fmt: skip
    p.add_argument("--tcp", action="store_true", help="over TCP (dig +tcp) instead of UDP")
    p.add_argument("--server", required=True, metavar="ADDR[:PORT]", help="DNS server")


def _dns_items(r: Any) -> list[Hashable]:
    if r.error is not None:
        return [Failed((r.qname, r.qtype), str(r.error))]
    return [(r.qname, r.qtype, r.rcode, *a) for a in sorted(r.answer_set())] or [
        (r.qname, r.qtype, r.rcode)
    ]


def _dns_sample(results: list[Any]) -> Sample:
    """A run's C3 items (one per answer record, or per query without one) and its record:
    the queries asked, the answer records, the failures. A query's answers are several
    items, so the items were no count of queries: `failed queries PacketLab: 2 of 8` for
    6 queries (two answers to a.test), and `answers` counted the failures too."""
    items = [i for r in results for i in _dns_items(r)]
    answers = sum(len(r.answer_set()) for r in results if r.error is None)
    failed = sum(1 for r in results if r.error is not None)
    record = {"queries": len(results), "answers": answers, "failed": failed}
    return {"values": [], "items": items, "record": record}


def _dns_pl(args: argparse.Namespace) -> Callable[[Any], Any]:
    from packetlab.cli.run_dns_words import split_server
    from packetlab.measure.dns import dns_query

    server, port = split_server(args.server)

    async def run(session: Any) -> Sample:
        results = []
        for name in args.names:
            for t in args.types or ["A"]:
                r = await dns_query(session, name, t, server=server, port=port or 53, tcp=args.tcp)
                results.append(r)
        return _dns_sample(results)

    return run


def _dns_nt(args: argparse.Namespace) -> Callable[[], Sample]:
    from packetlab.cli.run_dns_words import split_server
    from packetlab.measure.baselines import run_dig
    from packetlab.measure.dns import parse_qtype

    server, port = split_server(args.server)

    def run() -> Sample:
        results = []
        for name in args.names:
            for t in args.types or ["A"]:
                results.append(
                    run_dig(name, parse_qtype(t), server=server, port=port or 53, tcp=args.tcp)
                )
        return _dns_sample(results)

    return run


# -- http ----------------------------------------------------------------------------------------


def _http_configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("urls", metavar="URL", nargs="+", help="http:// or https:// URLs to get")
    p.add_argument("--cacert", metavar="FILE",
                   help="CA certificates (PEM) to verify the servers with, as curl's "
                   "[the system's]")  # fmt: skip
    p.add_argument("-k", "--insecure", action="store_true",
                   help="do not verify the servers' certificates (curl -k)")  # fmt: skip
    p.add_argument("--connect-to", metavar="ADDR",
                   help="connect to ADDR whatever the URL's host (its name still sent: "
                   "SNI, Host)")  # fmt: skip


def _http_item(r: Any) -> Hashable:
    # the paper's (site, body) tuples
    if r.status is None:
        return Failed((r.url,), str(r.error or "no answer"))
    return (r.url, r.status, r.body_sha256)


def _http_pl(args: argparse.Namespace) -> Callable[[Any], Any]:
    from packetlab.measure.http import http_get

    if args.cacert is not None:  # before any run (was: OpenSSL's error list, at the first)
        try:
            open(args.cacert, "rb").close()
        except OSError as e:
            raise RunError(f"--cacert {args.cacert}: {e.strerror or e}") from None

    async def run(session: Any) -> Sample:
        items = []
        for url in args.urls:
            r = await http_get(session, url, connect_to=args.connect_to, cafile=args.cacert,
                               insecure=args.insecure)  # fmt: skip
            items.append(_http_item(r))
        return {"values": [], "items": items, "record": {"urls": len(items)}}

    return run


def _http_nt(args: argparse.Namespace) -> Callable[[], Sample]:
    from packetlab.measure.baselines import run_curl

    def run() -> Sample:
        items = []
        with tempfile.TemporaryDirectory() as tmp:
            for url in args.urls:
                r = run_curl(url, Path(tmp) / "body", cacert=args.cacert, insecure=args.insecure,
                             connect_to=args.connect_to)  # fmt: skip
                items.append(_http_item(r))
        return {"values": [], "items": items, "record": {"urls": len(items)}}

    return run


# -- ping and traceroute -------------------------------------------------------------------------


def _ping_configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help="IP address to ping")
    p.add_argument("-c", "--count", type=int, default=5, metavar="N",
                   help="echo requests per run [5]")  # fmt: skip
    p.add_argument("-i", "--interval", type=float, default=0.2, metavar="S",
                   help="between echo requests [0.2 s]")  # fmt: skip


def _ping_pl(args: argparse.Namespace) -> Callable[[Any], Any]:
    from packetlab.measure.ping import ping

    async def run(session: Any) -> Sample:
        r = await ping(session, args.target, count=args.count, interval=args.interval,
                       src=route_source(_ip(args.target)))  # fmt: skip
        return {"values": r.rtts_us(), "items": [], "record": {"received": r.received}}

    return run


def _ping_nt(args: argparse.Namespace) -> Callable[[], Sample]:
    from packetlab.measure.native import run_ping

    def run() -> Sample:
        r = run_ping(args.target, count=args.count, interval=args.interval)
        return {"values": r.rtts_us(), "items": [], "record": {"received": r.received}}

    return run


def _trace_configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help="IP address to trace to")
    p.add_argument("-m", "--max-ttl", type=int, default=30, metavar="N",
                   help="the largest TTL probed [30]")  # fmt: skip


def _answered_path(r: Any) -> list[Hashable]:
    """The (TTL, address) pairs that answered, the paper's path set (§5.3, as
    `path_jaccard`): a silent hop on both sides is no agreement about the path (a
    `(ttl, None)` item made 20 silent hops count as 20 matches), and one silent on one
    side only counted twice against it."""
    return [(h.ttl, h.addr) for h in r.hops if h.addr is not None]


def _last_rtt(r: Any) -> list[float]:
    answered = [h.rtt_us for h in r.hops if h.addr is not None and h.rtt_us is not None]
    return answered[-1:] if r.reached else []


def _trace_pl(args: argparse.Namespace) -> Callable[[Any], Any]:
    from packetlab.measure.traceroute import traceroute

    async def run(session: Any) -> Sample:
        r = await traceroute(session, args.target, max_ttl=args.max_ttl, sport=20556,
                             src=route_source(_ip(args.target)))  # fmt: skip
        return {"values": _last_rtt(r), "items": _answered_path(r), "record": {"hops": len(r.hops)}}

    return run


def _trace_nt(args: argparse.Namespace) -> Callable[[], Sample]:
    from packetlab.measure.native import run_traceroute

    def run() -> Sample:
        r = run_traceroute(args.target, max_ttl=args.max_ttl, sport=20556)
        return {"values": _last_rtt(r), "items": _answered_path(r), "record": {"hops": len(r.hops)}}

    return run


def check_options(args: argparse.Namespace) -> None:
    """Each value in range, named as given, before the first run: `-c 0` was the library's
    `count must be 1..10000, got 0`, `-m 0` traceroute's `need 1 <= first_ttl <= max_ttl
    <= 255, got 1, 0`, `--runs 0` `--runs must be 1..10000` (without the value)."""
    from packetlab.measure.ping import MAX_COUNT

    checks: list[tuple[str, float, float, float]] = [("--runs", args.runs, 1, 10_000)]
    if args.measurement == "ping":
        checks += [("-c", args.count, 1, MAX_COUNT), ("-i", args.interval, 0, 60)]
    elif args.measurement == "traceroute":
        checks.append(("-m", args.max_ttl, 1, 255))
    check_ranges(*checks)


def one_line(text: str) -> str:
    """A native tool's error (its command and stderr) as one line: the first and the
    last of its lines (dig: the command, then `;; no servers could be reached`)."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return " ".join(lines[:1] + (["...", lines[-1]] if len(lines) > 1 else []))


def _server_host(text: str) -> str:
    from packetlab.cli.run_throughput import split_host_port

    return split_host_port(text, 5201)[0]


def _ip(text: str) -> Any:
    import ipaddress

    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise RunError(f"{text!r} is not an IP address") from None


SPECS: dict[str, Spec] = {
    "throughput": Spec("TCP throughput vs iperf3 (C1, C2)", _tput_configure, _tput_pl,
                       _tput_nt, "Mbit/s", 0.06, target=lambda a: _server_host(a.server)),
    "dns": Spec("DNS answers vs dig (C3)", _dns_configure, _dns_pl, _dns_nt),
    "http": Spec("HTTP(S) bodies vs curl (C3)", _http_configure, _http_pl, _http_nt),
    "ping": Spec("echo RTTs vs iputils ping (C1, C2)", _ping_configure, _ping_pl, _ping_nt,
                 "us", 0.10, raw=True, target=lambda a: a.target,
                 native_send="ping reads the clock before sendmsg()"),
    "traceroute": Spec("paths (C3) and last-hop RTTs (C1, C2) vs traceroute", _trace_configure,
                       _trace_pl, _trace_nt, "us", 0.10, raw=True, target=lambda a: a.target,
                       native_send="traceroute reads the clock before send()"),
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    import textwrap

    # the docstring's first paragraph, refilled (its first line was cut where the module
    # name stood: `Congruence built in. Runs the PacketLab` alone on a line)
    about = " ".join(__doc__.split("\n\n")[0].split("``: ", 1)[-1].split())
    parser.description = textwrap.fill(about[:1].upper() + about[1:], width=88)
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="measurement", metavar="MEASUREMENT")
    sub.required = True
    for name, spec in SPECS.items():
        p = sub.add_parser(name, help=spec.help, description=spec.help, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        spec.configure(p)
        p.add_argument("--runs", type=int, default=10, metavar="N", help="runs per side [10]")
        p.add_argument("--json", action="store_true", help="JSON lines")
        p.add_argument("--plot", metavar="FILE",
                       help="CDF plot of both sides' values (.png, .svg or .pdf; not for "
                       "dns, http)")  # fmt: skip
        p.add_argument("--timeout", type=float, default=None, metavar="S",
                       help="give up after S s [120 s a run, + 30 s]")  # fmt: skip
        p.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
        add_link_arguments(p, about=LINK_ABOUT, listen=LISTEN_HELP)


# -- running -------------------------------------------------------------------------------------


def criteria(spec: Spec, pl: list[Sample], nt: list[Sample]) -> dict[str, Any]:
    """The summary's c1, c2_p, c3 and a verdict per criterion (None where it does not
    apply)."""
    from packetlab.measure.congruence import c1, c2, c3

    out: dict[str, Any] = {"c1": None, "c1_holds": None, "c2_p": None, "c2_holds": None,
                           "ks_d": None, "c3": None, "c3_holds": None,
                           "runs_pl": len(pl), "runs_nt": len(nt)}  # fmt: skip
    if spec.c1_bound is not None:
        # A NaN or infinite value is no measurement: left out and counted (it made C1
        # `nan`, FAILS with no reason, and an `inf` passed the KS test as a rank)
        every_a = [v for s in pl for v in s["values"]]
        every_b = [v for s in nt for v in s["values"]]
        a = [v for v in every_a if math.isfinite(v)]
        b = [v for v in every_b if math.isfinite(v)]
        out.update(n_pl=len(a), n_nt=len(b), c1_bound=spec.c1_bound,
                   nonfinite_pl=len(every_a) - len(a),
                   nonfinite_nt=len(every_b) - len(b))  # fmt: skip
        if a and b:
            try:
                v1 = c1(a, b, spec.c1_bound)
            except ValueError as e:  # a native mean of 0: no ratio to take. It was an
                # internal error, and every run's figures were lost with it.
                out.update(c1_holds=False, c1_error=str(e))
            else:
                out.update(c1=v1.value, c1_holds=v1.holds)
            v2 = c2(a, b)
            # C2 with too few values to ever reject "holds" whatever they are: no verdict
            c2_holds = v2.holds if v2.detail["can_reject"] else None
            out.update(mean_pl=statistics.fmean(a), mean_nt=statistics.fmean(b),
                       c2_p=v2.value, c2_holds=c2_holds, ks_d=v2.detail["ks_d"],
                       c2_min_p=v2.detail["min_p"])  # fmt: skip
            if spec.native_send is not None:
                out.update(send_stamp_offset(out))
        else:  # nothing answered one side: the criteria cannot be shown to hold
            out.update(c1_holds=False, c2_holds=False)
    items_pl = [i for s in pl for i in s["items"]]
    items_nt = [i for s in nt for i in s["items"]]
    if items_pl or items_nt:
        bad_pl, bad_nt = failed_items(items_pl), failed_items(items_nt)
        out.update(items_pl=len(items_pl), items_nt=len(items_nt), failed_items_pl=len(bad_pl),
                   failed_items_nt=len(bad_nt), asked_pl=_asked(pl), asked_nt=_asked(nt),
                   failure_pl=bad_pl[0].reason if bad_pl else None,
                   failure_nt=bad_nt[0].reason if bad_nt else None)  # fmt: skip
        if len(bad_pl) == len(items_pl) and len(bad_nt) == len(items_nt):
            # Every query or fetch failed on both sides (a server down, a URL that is no
            # URL): the sets agree, Jaccard 1.0, but nothing was measured. It said
            # "holds" and exited 0 with no word of the failures.
            out.update(c3_holds=False, c3_nothing=True)
        else:
            v3 = c3(items_pl, items_nt)
            out.update(c3=v3.value, c3_holds=v3.holds, only_pl=v3.detail["only_pl"],
                       only_nt=v3.detail["only_nt"])  # fmt: skip
    return out


# The largest native-above-PacketLab mean offset `compare` puts down to where the native
# tool stamps its sends: ping's own send path (its clock read before sendmsg() to the
# device) measured 17-29 us on loopback at load 7, 16-18 us on chain(2) (session 24); 100
# leaves room for load. A larger gap, or PacketLab above native, is no stamp offset.
STAMP_OFFSET_MAX_US = 100.0


def send_stamp_offset(out: dict[str, Any]) -> dict[str, Any]:
    """`native_above_us` (native mean minus ours) and `stamp_offset`: whether C1 or C2
    failed by no more than the native tool's send path can add. On loopback `compare ping`
    printed a bare `FAILS` (means 16.2 against 28.9 us): both tools are right, ping's RTT
    starts before its sendmsg(), ours at the kernel's TX stamp, and at RTTs of microseconds
    that offset is over C1's 10 % (the paper's bound, set for RTTs of milliseconds)."""
    above = out["mean_nt"] - out["mean_pl"]
    failed = out["c1_holds"] is False or out["c2_holds"] is False
    return {"native_above_us": above,
            "stamp_offset": failed and 0 < above <= STAMP_OFFSET_MAX_US}  # fmt: skip


def _asked(samples: list[Sample]) -> int:
    """The queries or fetches a side made: a DNS query is as many C3 items as answers."""
    return sum(s["record"].get("queries", len(s["items"])) for s in samples)


# What a C3 item of each set measurement is, for the table's words
ITEM_WORDS = {"dns": "queries", "http": "fetches"}


PLOT_FORMATS = ("png", "svg", "pdf")


def check_plot(path: str, spec: Spec, name: str) -> None:
    """--plot FILE checked before the runs (which may take an hour): a set measurement
    has no values to plot, the format must be one matplotlib writes here, and FILE must be
    writable (it is made now, as --pcap's)."""
    if spec.c1_bound is None:
        raise RunError(f"--plot: {name} compares sets (C3), it has no values to plot")
    ext = path.rpartition(".")[2].lower() if "." in Path(path).name else ""
    if ext not in PLOT_FORMATS:
        raise RunError(f"--plot {path}: give a .png, .svg or .pdf file")
    try:
        open(path, "ab").close()
    except OSError as e:
        raise RunError(f"--plot {path}: cannot write it: {e.strerror or e}") from None


def check_extra(spec: Spec, plot: str | None) -> None:
    """scipy (C2) and matplotlib (--plot) are the `analysis` extra, which an endpoint
    install leaves out: said before the runs, in one line, rather than as a traceback
    after them (the runs' figures lost with it). dns and http (C3 only) need neither."""
    from packetlab.extras import ANALYSIS, MissingExtra, require

    needs = ["scipy.stats"] if spec.c1_bound is not None else []
    if plot:
        needs.append("matplotlib")
    try:
        require(ANALYSIS, *needs)
    except MissingExtra as e:
        raise RunError(str(e)) from None


def ecdf_steps(xs: list[float], right: float) -> tuple[list[float], list[float]]:
    """The points of a sorted sample's empirical CDF for a `where="post"` step: from 0 at
    its first value (drawn from 1/n, a sample of 3 lost its first step, its line starting
    at 0.33 on an axis that began there too), held at 1 up to `right` (the other side's
    largest value), as the paper's Figs 2-3 draw them."""
    n = len(xs)
    return [xs[0], *xs, max(right, xs[-1])], [0.0, *((i + 1) / n for i in range(n)), 1.0]


def plot(path: str, spec: Spec, name: str, pl: list[Sample], nt: list[Sample]) -> None:
    """Empirical CDFs of both sides' values, like the paper's Figs 2-3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    sides = [
        (label, sorted(v for s in side for v in s["values"] if math.isfinite(v)), style)
        for label, side, style in (("PacketLab", pl, "-"), ("native", nt, "--"))
    ]
    right = max((xs[-1] for _, xs, _ in sides if xs), default=0.0)
    for label, xs, style in sides:
        if xs:
            x, y = ecdf_steps(xs, right)
            ax.step(x, y, style, where="post", label=label)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"{name} ({spec.unit})")
    ax.set_ylabel("CDF")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


async def alternate(
    name: str,
    runs: int,
    packetlab: Callable[[], Awaitable[Sample]],
    native: Callable[[], Awaitable[Sample]],
    stop: StopSignal,
    progress: Callable[[str], object],
    emit: Callable[[dict[str, Any]], object],
    pl: list[Sample],
    nt: list[Sample],
    failed: dict[str, list[str]] | None = None,
) -> None:
    """`runs` runs a side, back to back in alternating order (PL, NT, NT, PL, ...), each
    sample into `pl` or `nt` and emitted. Once `stop` is requested (Ctrl-C) no run starts,
    and the one in flight, if it fails, was cut by the same Ctrl-C (the native tool gets
    the terminal's SIGINT too): it is dropped, the runs done stay.

    A side's first run that fails ends the comparison (its error: the tool missing, the
    server down, ...); a later one (a transfer reset, a tool timing out once) is a
    `compare-run` record with `error`, left out of the criteria and counted in
    `failed[side]`, and the runs go on: an hour of runs is not lost to one of them."""
    failed = {"packetlab": [], "native": []} if failed is None else failed
    for i in range(runs):
        for who in ("packetlab", "native") if i % 2 == 0 else ("native", "packetlab"):
            if stop.requested:
                return
            progress(f"{name} run {i + 1}/{runs}: {who}")
            side = pl if who == "packetlab" else nt
            try:
                s = await (packetlab() if who == "packetlab" else native())
            except Exception as e:
                if stop.requested:
                    return
                if not side and not failed.setdefault(who, []):
                    raise
                failed[who].append(one_line(str(e) or type(e).__name__))
                emit({"type": "compare-run", "measurement": name, "run": i + 1,
                      "impl": who, "error": failed[who][-1]})  # fmt: skip
                continue
            side.append(s)
            emit({"type": "compare-run", "measurement": name, "run": i + 1, "impl": who,
                  "values": s["values"], "items": len(s["items"]),
                  **{k: v for k, v in s["record"].items() if k != "type"}})  # fmt: skip


def shown(
    value: float, holds: bool | None, agrees: Callable[[float], bool], digits: int = 3
) -> str:
    """`value` to `digits` decimals, or to as many more as it takes for the printed number
    to be on the side of the printed bound that the verdict says: p 0.0496 printed as
    `0.050  >= 0.05  FAILS`, a Jaccard 0.8996 as `0.900  >= 0.9  FAILS` (`agrees(x)`: does
    x, read back, satisfy the criterion)."""
    text = f"{value:.{digits}f}"
    while holds is not None and math.isfinite(value) and agrees(float(text)) != holds:
        if digits >= 17:  # (cannot happen: 17 decimals read back as the value itself)
            break
        digits += 1
        text = f"{value:.{digits}f}"
    return f"{text:>8}"


def run_failures(failed: dict[str, list[str]]) -> dict[str, Any]:
    """The summary's count of each side's failed runs, and the first one's error: the
    table said only `failed runs  PacketLab 1, native 0 (left out; see their --json
    records)`, so a text run (an hour of them) had to be run again to learn why (an
    upload refused by the endpoint's send window, say)."""
    pl, nt = failed["packetlab"], failed["native"]
    return {"failed_pl": len(pl), "failed_nt": len(nt),
            "failure_run_pl": pl[0] if pl else None,
            "failure_run_nt": nt[0] if nt else None}  # fmt: skip


def stamp_note(spec: Spec, summary: dict[str, Any]) -> list[str]:
    """Why C1/C2 failed when the native tool's send stamp explains it (`stamp_offset`)."""
    import textwrap

    above, bound = summary["native_above_us"], summary["c1_bound"]
    pct = round(bound * 100)
    text = (
        f"native {above:.1f} us above PacketLab: {spec.native_send}, PacketLab's endpoint "
        "takes the kernel's TX stamp at the device, so native RTTs include its own send path"
    )
    if summary["c1_holds"] is False:
        text += (
            f". An offset of {above:.1f} us is under C1's {pct} % only at RTTs of "
            f"{above / bound:.0f} us or more (the paper set {pct} % for RTTs of milliseconds)"
        )
    else:  # C2 alone: on a path without jitter KS tells the two apart by the offset alone
        text += (
            ", and on a path without jitter the KS test tells the two apart by that offset "
            "alone (as the paper's low-variance VPs, its Fig. 3)"
        )
    text += ": see docs/congruence.md, Latency"
    return textwrap.wrap(text, width=88, initial_indent="  note         ",
                         subsequent_indent=" " * 15)  # fmt: skip


def table(name: str, spec: Spec, summary: dict[str, Any]) -> str:
    def verdict(v: bool | None) -> str:
        return "-" if v is None else ("holds" if v else "FAILS")

    done = (summary.get("runs_pl", summary["runs"]), summary.get("runs_nt", summary["runs"]))
    runs = "run" if done == (1, 1) else "runs"
    head = f"{done[0]} {runs} per side" if done[0] == done[1] else f"{done[0]} and {done[1]} runs"
    cut = summary.get("stop_reason") == "INTERRUPTED"
    rows = [f"{name}: {head}, alternating" + (f" (interrupted; {summary['runs']} planned)"
                                                if cut else "")]  # fmt: skip
    if summary.get("failed_pl") or summary.get("failed_nt"):
        rows.append(f"  failed runs  PacketLab {summary['failed_pl']}, native "
                    f"{summary['failed_nt']} (left out; see their --json records)")  # fmt: skip
        for who, side in (("PacketLab", "pl"), ("native", "nt")):
            if summary.get(f"failure_run_{side}"):
                rows.append(f"    the first {who} one: {summary[f'failure_run_{side}']}")
    if summary.get("nonfinite_pl") or summary.get("nonfinite_nt"):
        rows.append(f"  left out     PacketLab {summary['nonfinite_pl']}, native "
                    f"{summary['nonfinite_nt']} values not finite (NaN, inf)")  # fmt: skip
    if summary.get("c2_p") is not None:
        rows.append(f"  means        PacketLab {summary['mean_pl']:.3f} {spec.unit}, "
                    f"native {summary['mean_nt']:.3f} {spec.unit} "
                    f"({summary['n_pl']} and {summary['n_nt']} values)")  # fmt: skip
        pct = round(summary["c1_bound"] * 100)
        if summary["c1"] is not None:
            c1_text = shown(summary["c1"] * 100, summary["c1_holds"], lambda x: x <= pct)
            rows.append(f"  C1 |1-PL/NT| {c1_text} %   <= {pct} %   "
                        f"{verdict(summary['c1_holds'])}")  # fmt: skip
        else:
            rows.append(f"  C1 |1-PL/NT|   cannot be computed ({summary['c1_error']})   "
                        f"{verdict(summary['c1_holds'])}")  # fmt: skip
        note = f"D {summary['ks_d']:.3f}"
        if summary["c2_holds"] is None:
            note += (f"; too few values: the test cannot go below p "
                     f"{summary['c2_min_p']:.3f}, no verdict")  # fmt: skip
        p_text = shown(summary["c2_p"], summary["c2_holds"], lambda x: x >= 0.05)
        rows.append(f"  C2 KS p      {p_text}     >= 0.05   "
                    f"{verdict(summary['c2_holds'])} ({note})")  # fmt: skip
        if summary.get("stamp_offset"):
            rows += stamp_note(spec, summary)
    elif summary.get("n_pl") is not None:
        rows.append(f"  C1, C2       no values to compare (PacketLab {summary['n_pl']}, "
                    f"native {summary['n_nt']}: nothing answered)   FAILS")  # fmt: skip
    if summary.get("failed_items_pl") or summary.get("failed_items_nt"):
        what = ITEM_WORDS.get(name, "items")
        for who, side in (("PacketLab", "pl"), ("native", "nt")):
            bad, why = summary[f"failed_items_{side}"], summary[f"failure_{side}"]
            of = summary.get(f"asked_{side}", summary[f"items_{side}"])
            if bad:
                rows.append(f"  failed {what:<7} {who}: {bad} of {of} ({why})")
    if summary.get("c3_nothing"):
        rows.append(f"  C3 Jaccard   nothing to compare: every one of the "
                    f"{ITEM_WORDS.get(name, 'items')} failed on both sides   FAILS")  # fmt: skip
    if summary["c3"] is not None:
        c3_text = shown(summary["c3"], summary["c3_holds"], lambda x: x >= 0.9)
        rows.append(f"  C3 Jaccard   {c3_text}     >= 0.9    "
                    f"{verdict(summary['c3_holds'])} (only PacketLab {summary['only_pl']}, "
                    f"only native {summary['only_nt']})")  # fmt: skip
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    from twisted.internet.threads import deferToThread

    from packetlab.cli.interrupt import run_reactor
    from packetlab.measure.native import NativeToolError

    name = args.measurement
    spec = SPECS[name]
    pl: list[Sample] = []
    nt: list[Sample] = []
    failed: dict[str, list[str]] = {"packetlab": [], "native": []}
    progress = Progress()

    def emit(rec: dict[str, Any]) -> None:
        if args.json:
            progress.write(json.dumps(rec, sort_keys=True), sys.stdout)

    async def main(reactor: Any, stop: Any) -> int:
        if args.listen is not None:
            raise RunError("compare runs the native tool on this host, so the endpoint "
                           "must be the in-process one: drop --listen")  # fmt: skip
        check_options(args)
        if args.plot:
            check_plot(args.plot, spec, name)
        check_extra(spec, args.plot)
        link = Link.from_args(args)
        packetlab, native = spec.packetlab(args), spec.native(args)

        async def experiment(session: Any) -> None:
            await alternate(name, args.runs, lambda: packetlab(session),
                            lambda: deferToThread(native), stop, progress, emit,
                            pl, nt, failed)  # fmt: skip

        if spec.raw:  # (was `nopen failed: EUNKFAULT` once its first probe was refused)
            check_raw_permission(listen=False)  # compare's endpoint is always in-process
        target = spec.target(args)
        src = route_source(_ip(target)) if target is not None else _ip("127.0.0.1")
        timeout = args.timeout if args.timeout is not None else args.runs * 120.0 + 30
        progress.start(reactor, sys.stdout)
        watching = stop.when_requested()  # the first Ctrl-C ends the run in flight's turn
        watching.addErrback(lambda f: None)
        try:
            await run_on_link(reactor, link, experiment, addresses=[src],
                              transproto="raw,tcp,udp" if spec.raw else "tcp,udp",
                              timeout=timeout, extra=in_process_options())  # fmt: skip
        except NativeToolError as e:  # (not installed, timed out, failed): one line
            raise RunError(one_line(str(e))) from None
        finally:
            watching.cancel()
            progress.clear()
        reason = "INTERRUPTED" if stop.requested else "COMPLETED"
        summary = {"type": "summary", "measurement": name, "runs": args.runs,
                   "stop_reason": reason, **criteria(spec, pl, nt),
                   **run_failures(failed)}  # fmt: skip
        if args.json:
            emit(summary)
        else:
            print(table(name, spec, summary), flush=True)
        if args.plot:  # after the figures: a plot that fails loses none of them
            plot(args.plot, spec, name, pl, nt)
        held = [summary[k] for k in ("c1_holds", "c2_holds", "c3_holds") if summary[k] is not None]
        return EXIT_OK if all(held) else 1

    return run_reactor(main, prog=f"pktlab compare {name}", verbose=args.verbose)
