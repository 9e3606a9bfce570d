"""What `pktlab run ping` prints as it goes, as iputils ping prints it: the header, a line
per reply or ICMP error (with its -R route, -T timestamps or source route), -f's dots,
-O's unanswered requests, then the statistics; or a JSON line per reply and a summary
(`PingReport`)."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from packetlab.cli.report import Report, dumps
from packetlab.measure.packets import (
    IPOPT_EOL,
    IPOPT_LSRR,
    IPOPT_NOP,
    IPOPT_RR,
    IPOPT_SSRR,
    IPOPT_TS,
)
from packetlab.measure.packets_ip_options import ip_timestamps, recorded_route, source_route
from packetlab.measure.records_ping import (
    PING_TIMING_MIN_SIZE,
    PingError,
    PingReply,
    PingResult,
    ping_line,
    ping_statistics,
)

if TYPE_CHECKING:
    from packetlab.measure.packets_ip_options import IpTimestamps, SourceRoute
    from packetlab.measure.ping_notice import PingNotice

__all__ = ["PingReport", "ping_elapsed_ms", "source_route_lines", "timestamp_lines"]


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


class PingReport(Report):
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
        sticky: bool = False,
        preload: int = 1,
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
        self.sticky = sticky  # -B: `from SRC :` in the header, the source the run took
        self.preload = preload  # -l: the statistics' `pipe` counts its burst as ping's
        self.dots = 0  # -f: the dots on the line not yet taken back (requests unanswered)
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
        source = self.source
        if source is None and self.sticky and src is not None:
            source = (src, "")  # (iputils prints it for -B as for -I ADDR)
        frm = "" if source is None else f" from {source[0]} {source[1]}:"
        if ":" in self.dst:  # iputils: "PING ::1(::1) 56 data bytes", "PING h(h (ADDR)) ..."
            there = self.shown(self.dst)  # (ping6's pr_addr: the name too, unless -n)
            self.write(f"PING {self.name or self.dst}({there}){frm} {self.size} data bytes")
        else:
            total = self.size + 28 + self.options
            self.write(f"PING {who}{frm} {self.size}({total}) bytes of data.")

    def _line(self, line: str, at_ns: int | None, end: str = "\n") -> None:
        """A text line, after `[SECONDS.MICROS] ` with -D (the endpoint's time `at_ns`)."""
        if self.timestamps and at_ns is not None:
            line = f"[{at_ns // 1_000_000_000}.{at_ns // 1000 % 1_000_000:06d}] {line}"
        self.write(line, end)

    def _option_lines(self, options: bytes) -> str:
        """IPv4 `options` as iputils' pr_options prints them after -v's dump of a quoted
        header: `\\nNOP` for each NOP, an option's lines as a reply's (`RR:` or, the
        same route as the last one printed, replies' too, `\\t(same route)`; `TS:`,
        `LSRR:`), `\\nunknown option N` (hex) for another; up to an EOL or a malformed
        length, as it walks them."""
        out, at = "", 0
        while at < len(options) and options[at] != IPOPT_EOL:
            if options[at] == IPOPT_NOP:
                out, at = out + "\nNOP", at + 1
                continue
            if at + 1 >= len(options) or not 2 <= options[at + 1] <= len(options) - at:
                break
            option = options[at : at + options[at + 1]]
            at += len(option)
            if option[0] == IPOPT_RR:
                out += self._route_lines(recorded_route(option))
            elif option[0] == IPOPT_TS:
                stamps = ip_timestamps(option)
                out += timestamp_lines(stamps, self.shown) if stamps is not None else ""
            elif option[0] in (IPOPT_LSRR, IPOPT_SSRR):
                sr = source_route(option)
                out += source_route_lines(sr, self.shown) if sr is not None else ""
            else:
                out += f"\nunknown option {option[0]:x}"
        return out

    def _route_lines(self, route: tuple[str, ...] | None) -> str:
        """ping -R's `RR:` lines, or `\\t(same route)` (iputils keeps the last route it
        printed, a reply's or a quoted request's)."""
        if not route:
            return ""
        if route == self.last_route:
            return "\t(same route)"
        self.last_route = route
        return "\nRR: " + "".join(f"\t{self.shown(a)}\n" for a in route)

    def sent(self, seq: int, send_ns: int) -> None:
        """A request left: ping -f's dot."""
        if self.flood and not self.quiet and not self.as_json:
            self.dots += 1
            self.write(".", end="")

    def _flood_error(self) -> str:
        """-f's mark for an error: ping's `\bE` turns its only outstanding dot into an
        E; with several dots out (the endpoint sends ahead) the first of them becomes the
        E and the rest are written again, so the line ends as ping's, E's before dots
        (a bare `\bE` would write each E over the last: `...` then `..E`, not `EEE`)."""
        dots, self.dots = self.dots, max(0, self.dots - 1)
        if dots <= 1:
            return "\bE"
        return "\b" * dots + "E" + "." * (dots - 1)

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
                self.dots = max(0, self.dots - 1)
                self.write("\b \b", end="")
        elif not self.quiet:
            shown = self.shown(r.addr) if r.addr is not None else None
            # shorter than the request: iputils' `(truncated)` line, nothing after it (no
            # time, BEL or options: its gather_statistics returns there)
            truncated = r.size is not None and r.size < self.size + 8
            line = ping_line(
                r,
                shown,
                timing=self.size >= PING_TIMING_MIN_SIZE,
                ident=self.ident if self.verbose else None,
                truncated=truncated,
            )
            if truncated:
                self._line(line, r.reply_recv_ns)
                return
            if self.audible:  # (before -R's lines, as iputils')
                line += "\a"
            if r.route is not None:  # ping -R, as iputils' pr_options prints it
                line += self._route_lines(r.route)
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
            self.write(dumps(obj))
        elif self.flood:
            if not self.quiet:
                self.write(self._flood_error(), end="")
        elif e.reply_type == "local-error":  # -M do, as ping's: on stderr
            sep = ": " if ":" in e.addr else "="  # (ping6's words: `mtu: 1500`)
            words = f"local error: message too long, mtu{sep}{e.mtu}"
            if e.mtu is None:  # (--listen: the endpoint's MTU is not known here)
                words = "local error: message too long (the endpoint's MTU is not known here)"
            print(f"pktlab run ping: {words}", file=sys.stderr)
        elif not self.quiet:
            line = f"From {self.shown(e.addr)} icmp_seq={e.seq} {e.describe()}"
            self._line(line, e.reply_recv_ns)

    def notice(self, n: PingNotice) -> None:
        """A source quench or redirect about a request: iputils' ``From ADDR: icmp_seq=N
        Source Quench`` (a colon after the address), with -v the IP header it quotes;
        counted nowhere; not with -q or -f. With -v, any message of a type past 31:
        ``From ADDR: Bad ICMP type: 40`` (not in --json)."""
        if n.seq is None:  # a type past 31: iputils -v's line only (with -q too), not -f
            if self.verbose and not self.flood and not self.as_json:
                self._line(f"From {self.shown(n.addr)}: {n.describe()}", n.reply_recv_ns)
            return
        if self.as_json:
            obj = n.to_dict()
            obj.update(type="notice", dst=self.dst, src=self.src, tool="packetlab")
            self.write(dumps(obj))
        elif not self.quiet and not self.flood:
            line = f"From {self.shown(n.addr)}: icmp_seq={n.seq} {n.describe(self.shown)}"
            if self.verbose and n.quoted:  # iputils -v: the quoted header, pr_iph's
                line += "\n" + n.header_dump() + "\n" + self._option_lines(n.quoted_options())
                # iputils prints nothing after pr_options: a line its options left open
                # (`NOP`, `(same route)`) runs into what comes next, as there
                if line.endswith("\n"):
                    line = line[:-1]
                else:
                    self._line(line, n.reply_recv_ns, end="")
                    return
            self._line(line, n.reply_recv_ns)

    def _json(self, r: PingReply) -> None:
        obj = r.to_dict()
        obj.update(type="reply", dst=self.dst, src=self.src, tool="packetlab")
        self.write(dumps(obj))

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
                preload=self.preload,
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
            **self.clock.fields(),
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
        self.write(dumps(summary))
