"""What `pktlab run` prints while a measurement runs and when it ends.

Each hop or reply is written the moment it is known, as the native tool would print it
(Butskoy traceroute, iputils ping) or as one JSON line (`"type": "hop"` / `"reply"`), and
the run ends with its summary: ping's statistics, or in JSON a `"type": "summary"` record
in the spirit of scamper's (start and stop times, stop reason, hop count, whether the
target was reached; sent, received, loss and RTT min/avg/max/mdev in µs).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from packetlab.cli.link import LinkError
from packetlab.cli.progress import Progress
from packetlab.measure.records import (
    PING_TIMING_MIN_SIZE,
    Hop,
    PingError,
    PingReply,
    PingResult,
    TracerouteResult,
    ping_line,
    ping_statistics,
    traceroute_header,
    traceroute_line,
)
from packetlab.measure.replies import ReplyKind

if TYPE_CHECKING:
    from packetlab.measure.mda import MdaHop, MdaResult
    from packetlab.measure.multilevel import MultilevelResult
    from packetlab.measure.packets import IpTimestamps, SourceRoute

__all__ = [
    "MdaReport",
    "PingReport",
    "TracerouteReport",
    "ping_elapsed_ms",
    "traceroute_stop_reason",
]


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True)


def traceroute_stop_reason(result: TracerouteResult, interrupted: bool) -> str:
    """scamper's names: COMPLETED (the target answered), UNREACH (a router said it cannot
    get there), HOPLIMIT (max TTL reached), INTERRUPTED."""
    if interrupted:
        return "INTERRUPTED"
    last = next((h for h in reversed(result.hops) if h.addr is not None), None)
    if last is not None and last.addr == result.dst:
        return "COMPLETED"
    if last is not None and last.reply_type == ReplyKind.DEST_UNREACHABLE:
        return "UNREACH"
    return "HOPLIMIT"


class _Report:
    def __init__(self, reactor: Any, as_json: bool, dst: str, name: str | None) -> None:
        self.as_json = as_json
        self.dst, self.name = dst, name if name and name != dst else None
        self.started = time.time()
        self.progress = Progress(reactor, self.describe)
        self.src: str | None = None
        # more fields of the --json summary (a source route's addresses: "gateways")
        self.summary_extra: dict[str, Any] = {}

    def describe(self) -> str:
        return f"{time.time() - self.started:.1f} s"

    def write(self, line: str, end: str = "\n") -> None:
        self.progress.write(line, end)

    def close(self) -> None:
        self.progress.stop()


class TracerouteReport(_Report):
    """Prints a TTL's line once its `queries` probes are settled (they come in order)."""

    def __init__(
        self,
        reactor: Any,
        as_json: bool,
        dst: str,
        *,
        name: str | None,
        max_ttl: int,
        queries: int,
        size: int,
        extensions: bool = False,
        back: bool = False,
        tcp_info: bool = False,
    ) -> None:
        super().__init__(reactor, as_json, dst, name)
        self.max_ttl, self.queries, self.size = max_ttl, queries, size
        self.extensions, self.back = extensions, back  # traceroute -e, --back
        self.tcp_info = tcp_info  # traceroute -T -O info
        self.pending: list[Hop] = []
        self.settled = 0
        # address -> name (None: none) once looked up, when names are shown (not -n)
        self.names: Mapping[str, str | None] | None = None
        # address -> AS path once looked up, with -A
        self.as_paths: Mapping[str, str] | None = None
        # -A with a whois server that does not resolve: its error, raised (as a LinkError)
        # at the first address the lines would print, after the line's start up to that
        # address (traceroute's get_as_path fails there: the header and ` 1  ADDR`)
        self.as_error: str | None = None

    def describe(self) -> str:
        return f"traceroute {self.dst}: {self.settled} probes settled, {super().describe()}"

    def start(self, src: str | None) -> None:
        self.src = src
        if not self.as_json:
            self.write(
                traceroute_header(self.dst, name=self.name, max_ttl=self.max_ttl, size=self.size)
            )

    def hop(self, hop: Hop) -> None:
        self.settled += 1
        if self.as_json:
            obj = hop.to_dict()
            obj.update(type="hop", dst=self.dst, src=self.src, tool="packetlab")
            if self.names is not None:
                obj["name"] = self.names.get(hop.addr) if hop.addr is not None else None
            if self.as_paths is not None:
                obj["as_path"] = self.as_paths.get(hop.addr) if hop.addr is not None else None
            self.write(_dumps(obj))
            return
        if self.pending and self.pending[0].ttl != hop.ttl:
            self._flush()
        self.pending.append(hop)
        if len(self.pending) >= self.queries:
            self._flush()

    def _flush(self) -> None:
        if self.pending and self.as_error is not None and any(h.addr for h in self.pending):
            mark = "\0"  # (an AS path no whois answer holds)
            line = traceroute_line(
                self.pending[0].ttl, self.pending, self.names,
                as_paths={h.addr: mark for h in self.pending if h.addr is not None},
            )  # fmt: skip
            self.pending = []
            self.write(line[: line.index(f" [{mark}]")], end="")
            raise LinkError(self.as_error)
        if self.pending:
            line = traceroute_line(
                self.pending[0].ttl,
                self.pending,
                self.names,
                extensions=self.extensions,
                back=self.back,
                tcp_info=self.tcp_info,
                as_paths=self.as_paths,
            )
            self.write(line)
            self.pending = []

    def finish(self, result: TracerouteResult, interrupted: bool) -> None:
        self._flush()
        self.close()
        if not self.as_json:
            return
        self.write(
            _dumps(
                {
                    "type": "summary",
                    "measurement": "traceroute",
                    "method": result.method,
                    "tool": "packetlab",
                    "dst": result.dst,
                    "name": self.name,
                    "src": result.src,
                    "start_time": round(self.started, 6),
                    "stop_time": round(time.time(), 6),
                    "stop_reason": traceroute_stop_reason(result, interrupted),
                    "hop_count": len({h.ttl for h in result.hops}),
                    "probe_count": len(result.hops),
                    "reached": result.reached,
                    "max_ttl": result.max_ttl,
                    "send_stamp": result.send_stamp,
                    "recv_stamp": result.recv_stamp,
                    **self.summary_extra,
                }
            )
        )


def ping_elapsed_ms(result: PingResult) -> float:
    """iputils' ``time`` in the statistics: from the first request sent to the last one
    (ms; 0 when fewer than two went), not the program's start-up."""
    sent = [r.probe_send_ns for r in result.replies if r.probe_send_ns is not None]
    sent += [e.probe_send_ns for e in result.errors if e.probe_send_ns is not None]
    if result.start_ns is not None:
        sent.append(result.start_ns)
    return (max(sent) - min(sent)) / 1e6 if sent else 0.0


def timestamp_lines(ts: IpTimestamps, shown: Callable[[str], str]) -> str:
    """ping -T's `TS:` lines for a reply's timestamps, as iputils' pr_options prints
    them: the first time `absolute`, the others relative to the one before; a time with
    the high bit set `not-standard`; `Unrecorded hops: N` when the option was full."""
    out = "\nTS: "
    std = nonstd = 0
    for addr, stamp in ts.entries:
        if addr is not None:
            out += f"\t{shown(addr)}"
        if stamp is None:
            break
        if stamp & 0x80000000:
            value = stamp & 0x7FFFFFFF
            out += (
                f"\t{value} absolute not-standard"
                if nonstd == 0
                else f"\t{value - nonstd} not-standard"
            )
            nonstd = value
        else:
            out += f"\t{stamp} absolute" if std == 0 else f"\t{stamp - std}"
            std = stamp
        out += "\n"
    if ts.unrecorded:
        out += f"Unrecorded hops: {ts.unrecorded}\n"
    return out


def source_route_lines(sr: SourceRoute, shown: Callable[[str], str]) -> str:
    """A reply's `LSRR:` (or `SSRR:`) lines as iputils' pr_options prints them: its
    words (`SourceRoute.as_iputils_prints`), one a line."""
    kind = "S" if sr.strict else "L"
    return f"\n{kind}SRR: " + "".join(f"\t{shown(w)}\n" for w in sr.as_iputils_prints())


class PingReport(_Report):
    def __init__(
        self,
        reactor: Any,
        as_json: bool,
        dst: str,
        *,
        name: str | None,
        count: int,
        size: int,
        quiet: bool = False,
        interval: float | None = None,
        flood: bool = False,
        timestamps: bool = False,
        pattern: bytes | None = None,
        source: tuple[str, str] | None = None,
        verbose: bool = False,
        options: int = 0,
        audible: bool = False,
    ) -> None:
        super().__init__(reactor, as_json, dst, name)
        # bytes of IPv4 options in the requests (-R, -T: 40), in the header's sizes as ping's
        self.options = options
        self.audible = audible  # ping -a: a BEL after each reply line
        self.last_route: tuple[str, ...] | None = None  # -R: `(same route)` after it
        # iputils -v: the identifier in each reply line (chosen here, so it is known)
        self.verbose = verbose
        self.ident = random.randrange(1, 0x10000)
        self.count, self.size, self.quiet, self.interval = count, size, quiet, interval
        # iputils -f (a dot per request, a backspace per reply), -D (`[UNIXTIME]` before
        # each line), -p (the `PATTERN:` line), -I (`from ADDR IFNAME:` in the header)
        self.flood, self.timestamps, self.pattern = flood, timestamps, pattern
        self.source = source
        self.received = 0
        self.errors = 0
        self.last_seq = 0
        # address -> name (None: none) once looked up, when names are shown (a target given
        # by name, not -n: iputils then prints `NAME (ADDR)`)
        self.names: Mapping[str, str | None] | None = None

    def shown(self, addr: str) -> str:
        """`addr` as iputils prints a reply's source: ``NAME (ADDR)`` if it has a name."""
        name = None if self.names is None else self.names.get(addr)
        return f"{name} ({addr})" if name and name != addr else addr

    def describe(self) -> str:
        return f"ping {self.dst}: {self.received} of {self.count} answered, {super().describe()}"

    def start(self, src: str | None) -> None:
        self.src = src
        if self.as_json:
            return
        if self.verbose:  # iputils -v: what getaddrinfo gave
            family = "AF_INET6" if ":" in self.dst else "AF_INET"
            self.write(f"ai->ai_family: {family}, ai->ai_canonname: '{self.name or self.dst}'")
        if self.pattern is not None and not self.quiet:
            self.write(f"PATTERN: 0x{self.pattern.hex()}")
        who = f"{self.name or self.dst} ({self.dst})"
        frm = "" if self.source is None else f" from {self.source[0]} {self.source[1]}:"
        if ":" in self.dst:  # iputils: "PING ::1(::1) 56 data bytes"
            self.write(f"PING {self.name or self.dst}({self.dst}){frm} {self.size} data bytes")
        else:
            total = self.size + 28 + self.options
            self.write(f"PING {who}{frm} {self.size}({total}) bytes of data.")

    def _line(self, line: str, at_ns: int | None) -> None:
        """A text line, after `[SECONDS.MICROS] ` with -D (the endpoint's time `at_ns`)."""
        if self.timestamps and at_ns is not None:
            line = f"[{at_ns // 1_000_000_000}.{at_ns // 1000 % 1_000_000:06d}] {line}"
        self.write(line)

    def sent(self, seq: int, send_ns: int) -> None:
        """A request left: ping -f's dot."""
        if self.flood and not self.quiet and not self.as_json:
            self.write(".", end="")

    def outstanding(self, seq: int, at_ns: int) -> None:
        """Request `seq` had no reply when the next one left: iputils -O's line (also with
        -q, as ping)."""
        if not self.as_json:
            self._line(f"no answer yet for icmp_seq={seq}", at_ns)

    def reply(self, r: PingReply) -> None:
        self.received += 0 if r.dup else 1
        if self.as_json:
            self._json(r)
        elif self.flood:
            if not self.quiet:
                self.write("\b \b", end="")
        elif not self.quiet:
            shown = self.shown(r.addr) if r.addr is not None else None
            line = ping_line(
                r,
                shown,
                timing=self.size >= PING_TIMING_MIN_SIZE,
                ident=self.ident if self.verbose else None,
            )
            if self.audible:  # (before -R's lines, as iputils')
                line += "\a"
            if r.route is not None:  # ping -R, as iputils' pr_options prints it
                if r.route == self.last_route:
                    line += "\t(same route)"
                else:
                    self.last_route = r.route
                    line += "\nRR: " + "".join(f"\t{self.shown(a)}\n" for a in r.route)
            if r.ip_timestamps is not None:  # ping -T
                line += timestamp_lines(r.ip_timestamps, self.shown)
            if r.source_route is not None:  # ping HOST... TARGET
                line += source_route_lines(r.source_route, self.shown)
            self._line(line, r.reply_recv_ns)

    def error(self, e: PingError) -> None:
        """A router's ICMP error for a request: iputils' ``From ADDR icmp_seq=N ...``."""
        self.errors += 1
        if self.as_json:
            obj = e.to_dict()
            obj.update(type="error", dst=self.dst, src=self.src, tool="packetlab")
            self.write(_dumps(obj))
        elif self.flood:
            if not self.quiet:
                self.write("\bE", end="")
        elif e.reply_type == "local-error":  # -M do, as ping's: on stderr
            print(f"pktlab run ping: local error: message too long, mtu={e.mtu}", file=sys.stderr)
        elif not self.quiet:
            line = f"From {self.shown(e.addr)} icmp_seq={e.seq} {e.describe()}"
            self._line(line, e.reply_recv_ns)

    def _json(self, r: PingReply) -> None:
        obj = r.to_dict()
        obj.update(type="reply", dst=self.dst, src=self.src, tool="packetlab")
        self.write(_dumps(obj))

    def finish(self, result: PingResult, interrupted: bool) -> None:
        self.close()
        if not self.as_json:
            self.write("")
            for line in ping_statistics(
                result,
                ping_elapsed_ms(result),
                name=self.name,
                errors=len(result.errors),
                interval=0.0 if self.flood else self.interval,  # ipg/ewma: -i 0 or -f
                timing=self.size >= PING_TIMING_MIN_SIZE,
            ):
                self.write(line)
            return
        for r in result.replies:
            if r.addr is None:
                self._json(r)
        stats = result.stats()
        summary: dict[str, Any] = {
            "type": "summary",
            "measurement": "ping",
            "tool": "packetlab",
            "dst": result.dst,
            "name": self.name,
            "src": result.src,
            "start_time": round(self.started, 6),
            "stop_time": round(time.time(), 6),
            "stop_reason": "INTERRUPTED" if interrupted else "COMPLETED",
            "sent": result.sent,
            "received": result.received,
            "errors": len(result.errors),
            "loss": round(result.loss, 6),
            "send_stamp": result.send_stamp,
            "recv_stamp": result.recv_stamp,
            **self.summary_extra,
        }
        for key in ("min", "avg", "max", "mdev"):
            summary[f"rtt_{key}_us"] = (
                None if stats is None else round(getattr(stats, f"{key}_us"), 3)
            )
        self.write(_dumps(summary))


class MdaReport(_Report):
    """`traceroute --mda`: one line (or `"type": "mda-hop"` JSON line) per TTL with every
    interface found there, then a summary like scamper's tracelb record."""

    def __init__(
        self,
        reactor: Any,
        as_json: bool,
        dst: str,
        *,
        name: str | None,
        max_ttl: int,
        method: str,
        confidence: float,
        lite: bool = False,
    ) -> None:
        super().__init__(reactor, as_json, dst, name)
        self.max_ttl, self.method, self.confidence = max_ttl, method, confidence
        self.lite = lite
        self.ttls = 0
        self.multilevel: MultilevelResult | None = None
        self.names: Mapping[str, str | None] | None = None

    def describe(self) -> str:
        return f"traceroute --mda {self.dst}: {self.ttls} hops done, {super().describe()}"

    def start(self, src: str | None) -> None:
        self.src = src
        if not self.as_json:
            self.write(
                f"tracelb to {self.name or self.dst} ({self.dst}), {self.max_ttl} hops max, "
                f"{self.method}, confidence {self.confidence * 100:g}%"
                + (", MDA-Lite" if self.lite else "")
            )

    def hop(self, hop: MdaHop) -> None:
        self.ttls += 1
        if self.as_json:
            obj = hop.to_dict()
            obj.update(type="mda-hop", dst=self.dst, src=self.src, tool="packetlab")
            if self.names is not None:
                obj["names"] = [self.names.get(a) for a in hop.addrs]
            self.write(_dumps(obj))
            return
        shown = [a if self.names is None else f"{self.names.get(a) or a} ({a})" for a in hop.addrs]
        self.write(f"{hop.ttl:2d}  " + ("  ".join(shown) if shown else "*"))

    def routers(self, ml: MultilevelResult) -> None:
        """--multilevel: each hop's routers (JSON: an `mda-routers` line a hop)."""
        from packetlab.measure.multilevel import format_routers

        self.multilevel = ml
        if self.as_json:
            for h in ml.hops:
                obj = h.to_dict()
                addrs = [a for r in h.routers for a in r]
                obj.update(type="mda-routers", dst=self.dst, src=self.src, tool="packetlab",
                           methods={a: ml.methods.get(a) for a in addrs},
                           fingerprints={a: list(ml.fingerprints.get(a, (None, None)))
                                         for a in addrs},
                           mpls={a: [list(st) for st in ml.mpls[a]]
                                 for a in addrs if a in ml.mpls})  # fmt: skip
                self.write(_dumps(obj))
            return
        if not ml.hops:  # (a header over nothing, "0 probes", was all it said)
            self.write(
                "routers (Multilevel MDA-Lite): no hop has several interfaces, none to resolve"
            )
            return
        rounds = f"{ml.rounds} round{'s' if ml.rounds != 1 else ''}"
        if not ml.stable:
            rounds += f", the sets still changing at --mbt-rounds {ml.max_rounds}"
        labels = ", MPLS label stacks" if ml.mpls else ""
        self.write(
            f"routers (Multilevel MDA-Lite: alias resolution by the monotonic bounds test "
            f"on IP-IDs{labels}, {rounds}, {ml.probes} probes)"
        )
        for h in ml.hops:
            self.write(format_routers(h))

    def finish(self, result: MdaResult, interrupted: bool) -> None:
        self.close()
        if not self.as_json:
            return
        nodes = {a for h in result.hops for a in h.addrs}
        links = {(h.ttl, link) for h in result.hops for link in h.links if link[0] is not None}
        last = next((h for h in reversed(result.hops) if h.addrs), None)
        reason = "COMPLETED" if result.reached else "HOPLIMIT"
        if interrupted:
            reason = "INTERRUPTED"
        elif result.stop_reason == "MAXPROBEC":  # the probe budget (-Q) ran out
            reason = "MAXPROBEC"
        elif not result.reached and last is not None and last.ttl < result.hops[-1].ttl:
            reason = "GAPLIMIT"
        self.write(
            _dumps(
                {
                    "type": "summary",
                    "measurement": "tracelb",
                    "method": result.method,
                    "confidence": result.confidence,
                    "tool": "packetlab",
                    "dst": result.dst,
                    "name": self.name,
                    "src": result.src,
                    "start_time": round(self.started, 6),
                    "stop_time": round(time.time(), 6),
                    "stop_reason": reason,
                    "hop_count": len(result.hops),
                    "node_count": len(nodes),
                    "link_count": len(links),
                    "probe_count": result.probe_count,
                    "reached": result.reached,
                    "max_ttl": self.max_ttl,
                    # scamper's tracelb limits (-Q, -g, -q, -W) and which algorithm
                    "probec_max": result.max_probes,
                    "gaplimit": result.gaplimit,
                    "attempts": result.attempts,
                    "wait_probe": result.wait_probe_cs,
                    "algorithm": result.algorithm,
                    **(
                        {"meshed": [h.ttl for h in result.hops if h.meshed]}
                        if result.algorithm == "mda-lite"
                        else {}
                    ),
                    **(
                        {
                            "router_count": sum(len(h.routers) for h in ml.hops),
                            "alias_probe_count": ml.probes,
                            "alias_rounds": ml.rounds,
                            "alias_sets_stable": ml.stable,
                        }
                        if (ml := self.multilevel) is not None
                        else {}
                    ),
                }
            )
        )
