"""What `pktlab run traceroute` prints as it goes: a line per TTL once its probes are
settled, as Butskoy's traceroute prints it, or a JSON line per probe (`TracerouteReport`);
with --mda a line per TTL with every interface found there (`MdaReport`); and the --json
summary in the spirit of scamper's trace and tracelb records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from packetlab.cli.link import LinkError
from packetlab.cli.report import Report, dumps
from packetlab.measure.records_traceroute import (
    Hop,
    TracerouteResult,
    traceroute_header,
    traceroute_line,
)
from packetlab.measure.warts_trace import scamper_stop

if TYPE_CHECKING:
    from packetlab.measure.mda import MdaHop, MdaResult
    from packetlab.measure.multilevel import MultilevelResult

__all__ = ["MdaReport", "TracerouteReport", "traceroute_stop_reason"]


def traceroute_stop_reason(result: TracerouteResult, interrupted: bool) -> str:
    """scamper's names (`warts_trace.scamper_stop`, the --warts trace's too): COMPLETED
    (the target answered), UNREACH (a router said it cannot get there), ICMP (another
    ICMP error ended it, e.g. `!<100-0>`), HOPLIMIT (max TTL reached), INTERRUPTED."""
    return scamper_stop(result, interrupted)[0]


class TracerouteReport(Report):
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
            self.write(dumps(obj))
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
            dumps(
                {
                    "type": "summary",
                    "measurement": "traceroute",
                    "method": result.method,
                    "tool": "packetlab",
                    "dst": result.dst,
                    "name": self.name,
                    "src": result.src,
                    **self.clock.fields(),
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


class MdaReport(Report):
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
            self.write(dumps(obj))
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
                self.write(dumps(obj))
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
            dumps(
                {
                    "type": "summary",
                    "measurement": "tracelb",
                    "method": result.method,
                    "confidence": result.confidence,
                    "tool": "packetlab",
                    "dst": result.dst,
                    "name": self.name,
                    "src": result.src,
                    **self.clock.fields(),
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
