"""Result records for traceroute and ping, JSON-serialisable, and traceroute-style text.

The same records hold PacketLab results and native-tool results (`packetlab.measure.native`),
so the two can be compared field by field. Every result says where its timestamps came from
(``send_stamp``/``recv_stamp``, see `Stamp`), because an RTT from user-space clocks and one
from kernel timestamps are not the same measurement.

Addresses are strings (JSON-friendly); RTTs are microseconds as floats; absolute times are
``CLOCK_REALTIME`` nanoseconds, like every time in the PacketLab protocol.
"""

from __future__ import annotations

import bisect
import enum
import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from packetlab.measure.icmpext import EXTENSION_OFFSET, IcmpExt
from packetlab.measure.icmpext import decode as icmpext_decode
from packetlab.measure.icmpext import text as icmpext_text
from packetlab.measure.packets import IpTimestamps, SourceRoute
from packetlab.measure.replies import ICMP6_PORT_UNREACH, ICMP_PORT_UNREACH, Reply, ReplyKind

__all__ = [
    "PING_TIMING_MIN_SIZE",
    "Hop",
    "PingError",
    "PingReply",
    "PingResult",
    "RecordError",
    "RttStats",
    "Stamp",
    "TracerouteResult",
    "format_ping",
    "format_traceroute",
    "hop_annotation",
    "hops_by_ttl",
    "path_jaccard",
    "ping_line",
    "ping_pipe",
    "ping_statistics",
    "ping_time",
    "traceroute_header",
    "traceroute_jsonl",
    "traceroute_line",
]


class RecordError(ValueError):
    """A JSON object that is not a valid record."""


class Stamp(enum.StrEnum):
    """Where a send or receive timestamp was taken."""

    KERNEL = "kernel"  # SO_TIMESTAMP(NS) on receive; SO_TIMESTAMPING software TX on send
    USER_BEFORE_SEND = "user-before-send"  # gettimeofday()/clock_gettime() just before send()
    USER_AFTER_SEND = "user-after-send"  # just after send() returned (reference endpoint ntag)
    USER_AFTER_RECV = "user-after-recv"  # after recv() returned
    UNKNOWN = "unknown"


def rtt_us_between(send_ns: int, recv_ns: int) -> float:
    """Round-trip time in microseconds (ns resolution) from two absolute ns times."""
    return (recv_ns - send_ns) / 1000.0


@dataclass(frozen=True, slots=True)
class Hop:
    """One traceroute probe and its answer (``addr`` None: no answer in time)."""

    ttl: int
    addr: str | None
    rtt_us: float | None
    reply_type: str | None = None  # a ReplyKind value
    code: int | None = None  # ICMP code (None for TCP replies or unknown)
    probe_send_ns: int | None = None
    reply_recv_ns: int | None = None
    reply_ttl: int | None = None  # TTL/hop limit of the reply as received
    reply_ip_id: int | None = None  # IPv4 ID of the reply (alias resolution)
    mtu: int | None = None  # traceroute --mtu: the probe's new size, first at it (F=NUM)
    next_mtu: int | None = None  # the MTU a "fragmentation needed"/"too big" named (!F-N)
    # RFC 4884 extension objects of the reply (MPLS label stacks), scamper's JSON form
    # (`packetlab.measure.icmpext`); traceroute -e prints them
    icmpext: IcmpExt | None = None
    tcp_flags: int | None = None  # of a TCP reply (SYN-ACK, RST): traceroute -T -O info

    @classmethod
    def from_reply(
        cls,
        ttl: int,
        reply: Reply,
        *,
        probe_send_ns: int | None,
        reply_recv_ns: int | None,
        probe_len: int | None = None,
    ) -> Hop:
        """`probe_len`: the probe's IP length, which tells where traceroute looks for an
        extension structure (at 128 bytes into the quote when the quote is longer than the
        probe, else every 4 (IPv4) or 8 bytes from there)."""
        icmpext = None
        if reply.extension is not None:
            longer = probe_len is None or EXTENSION_OFFSET + len(reply.extension) > probe_len
            step = 0 if longer else (4 if reply.src.version == 4 else 8)
            icmpext = icmpext_decode(reply.extension, step=step)
        rtt = (
            rtt_us_between(probe_send_ns, reply_recv_ns)
            if probe_send_ns is not None and reply_recv_ns is not None
            else None
        )
        return cls(
            ttl=ttl,
            addr=str(reply.src),
            rtt_us=rtt,
            reply_type=str(reply.kind),
            code=reply.icmp_code,
            probe_send_ns=probe_send_ns,
            reply_recv_ns=reply_recv_ns,
            reply_ttl=reply.ttl,
            reply_ip_id=reply.ip_id,
            next_mtu=reply.mtu or None,
            icmpext=icmpext,
            tcp_flags=reply.tcp_flags,
        )

    @classmethod
    def timeout(cls, ttl: int, *, probe_send_ns: int | None = None) -> Hop:
        return cls(ttl=ttl, addr=None, rtt_us=None, probe_send_ns=probe_send_ns)

    def to_dict(self) -> dict[str, Any]:
        """The fields; `mtu`, `next_mtu` and `icmpext` only when set (traceroute --mtu, !F,
        extensions)."""
        out = asdict(self)
        for key in ("mtu", "next_mtu", "icmpext", "tcp_flags"):
            if out[key] is None:
                del out[key]
        if "icmpext" in out:
            out["icmpext"] = list(out["icmpext"])
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Hop:
        ext = obj.get("icmpext") if isinstance(obj, Mapping) else None
        if ext is not None:
            if not isinstance(ext, list) or not all(_icmpext_ok(o) for o in ext):
                raise RecordError(f"Hop.icmpext has the wrong form: {ext!r}")
            obj = {**obj, "icmpext": tuple(dict(o) for o in ext)}
        return _from_dict(cls, obj, required=("ttl", "addr", "rtt_us"), non_null=("ttl",))


def _icmpext_ok(obj: object) -> bool:
    if not isinstance(obj, Mapping):
        return False
    ints = [obj.get(k) for k in ("ie_cn", "ie_ct", "ie_dl")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
        return False
    labels = obj.get("mpls_labels")
    if labels is None:
        return isinstance(obj.get("ie_data", ""), str)
    keys = ("mpls_label", "mpls_exp", "mpls_s", "mpls_ttl")
    return isinstance(labels, list) and all(
        isinstance(m, Mapping) and all(isinstance(m.get(k), int) for k in keys) for m in labels
    )


@dataclass(frozen=True, slots=True)
class TracerouteResult:
    """A traceroute: the hops in probe order (several per TTL when more than one probe)."""

    dst: str
    hops: tuple[Hop, ...]
    src: str | None = None
    tool: str = "packetlab"  # "packetlab", "traceroute" (Butskoy), "scamper"
    method: str = "udp"
    max_ttl: int | None = None
    probe_size: int | None = None  # IP length of a probe, when known
    start_ns: int | None = None
    send_stamp: str = Stamp.UNKNOWN
    recv_stamp: str = Stamp.UNKNOWN

    @property
    def reached(self) -> bool:
        """Some probe was answered by the destination itself."""
        return any(h.addr == self.dst for h in self.hops)

    def path(self) -> list[tuple[int, str | None]]:
        """(ttl, address) per probe, in probe order; None for no answer."""
        return [(h.ttl, h.addr) for h in self.hops]

    def addresses_by_ttl(self) -> dict[int, frozenset[str]]:
        """Every TTL probed and the set of addresses that answered it (maybe empty)."""
        out: dict[int, set[str]] = {}
        for h in self.hops:
            bucket = out.setdefault(h.ttl, set())
            if h.addr is not None:
                bucket.add(h.addr)
        return {ttl: frozenset(addrs) for ttl, addrs in sorted(out.items())}

    def to_dict(self) -> dict[str, Any]:
        obj = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "hops"}
        obj["hops"] = [h.to_dict() for h in self.hops]
        return obj

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> TracerouteResult:
        hops = obj.get("hops")
        if not isinstance(hops, list):
            raise RecordError("traceroute result needs a list of hops")
        rest = {k: v for k, v in obj.items() if k != "hops"}
        parsed = tuple(Hop.from_dict(h) for h in hops)
        return _from_dict(
            cls, {**rest, "hops": parsed}, required=("dst",), non_null=_RESULT_NON_NULL
        )

    @classmethod
    def from_json(cls, text: str) -> TracerouteResult:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordError(f"not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise RecordError("a traceroute result is a JSON object")
        return cls.from_dict(obj)


def path_jaccard(a: Iterable[TracerouteResult], b: Iterable[TracerouteResult]) -> float:
    """Jaccard index of the (ttl, address) pairs seen by two sets of runs.

    The Marionette paper's path congruence (§5.3, criterion C3): aggregate every answered
    (hop count, hop address) pair over all runs of each implementation, then compare the two
    sets. 1.0 when both saw nothing.
    """
    sa = {(h.ttl, h.addr) for r in a for h in r.hops if h.addr is not None}
    sb = {(h.ttl, h.addr) for r in b for h in r.hops if h.addr is not None}
    union = sa | sb
    return 1.0 if not union else len(sa & sb) / len(union)


def traceroute_jsonl(result: TracerouteResult, *, meta: bool = False) -> str:
    """JSON lines, one object per hop (``ttl``, ``addr``, ``rtt_us``, ...).

    With ``meta``, each line also names ``dst``, ``src`` and ``tool``.
    """
    lines = []
    for hop in result.hops:
        obj = hop.to_dict()
        if meta:
            obj.update(dst=result.dst, src=result.src, tool=result.tool)
        lines.append(json.dumps(obj, sort_keys=True))
    return "".join(line + "\n" for line in lines)


# -- traceroute-style text --------------------------------------------------------------------

# Butskoy traceroute's annotations for ICMP destination unreachable codes (none: port
# unreachable, i.e. the destination was reached).
_V4_UNREACH_NOTE = {0: "!N", 1: "!H", 2: "!P", 5: "!S", 6: "!N", 7: "!H", 9: "!X", 10: "!X"}
_V4_UNREACH_NOTE |= {11: "!N", 12: "!H", 13: "!X", 14: "!V", 15: "!C"}
_V6_UNREACH_NOTE = {0: "!N", 1: "!X", 2: "!S", 3: "!H", 5: "!X", 6: "!X"}


def _other_error(hop: Hop, version: int) -> str | None:
    """traceroute's ``!<TYPE-CODE>`` for an ICMP error other than time exceeded in
    transit and destination unreachable (a parameter problem: a target without DCCP
    answers IPv6 probes so; a reassembly time exceeded); None for those two."""
    code = hop.code or 0
    if hop.reply_type == ReplyKind.PARAM_PROBLEM:
        return f"!<{12 if version == 4 else 4}-{code}>"
    if hop.reply_type == ReplyKind.TIME_EXCEEDED and code:
        return f"!<{11 if version == 4 else 3}-{code}>"
    return None


def hop_annotation(hop: Hop, *, version: int | None = None) -> str:
    """The ``!X`` note traceroute prints after an RTT ('' for none)."""
    if hop.reply_type == ReplyKind.PACKET_TOO_BIG:
        return f"!F-{hop.next_mtu}" if hop.next_mtu else "!F"
    v = version or (6 if hop.addr and ":" in hop.addr else 4)
    other = _other_error(hop, v)
    if other is not None:  # (traceroute's `!<TYPE-CODE>` for an error it has no name for)
        return other
    if hop.reply_type != ReplyKind.DEST_UNREACHABLE or hop.code is None:
        return ""
    if v == 4:
        if hop.code == ICMP_PORT_UNREACH:
            return ""
        if hop.code == 4:  # traceroute: with the next-hop MTU when the router gave it
            return f"!F-{hop.next_mtu}" if hop.next_mtu else "!F"
        return _V4_UNREACH_NOTE.get(hop.code, f"!<{hop.code}>")
    if hop.code == ICMP6_PORT_UNREACH:
        return ""
    return _V6_UNREACH_NOTE.get(hop.code, f"!<{hop.code}>")


def traceroute_header(
    dst: str, *, name: str | None = None, max_ttl: int | None = None, size: int | None = None
) -> str:
    """``traceroute to NAME (ADDR), 30 hops max, 60 byte packets`` (no newline)."""
    head = f"traceroute to {name or dst} ({dst})"
    if max_ttl is not None:
        head += f", {max_ttl} hops max"
    if size is not None:
        head += f", {size} byte packets"
    return head


def back_hops(reply_ttl: int) -> int:
    """traceroute --back: the hops the reply came back over, guessed from its TTL as
    traceroute does (the sender started from 64, 128 or 255, whichever is next)."""
    return (65 if reply_ttl <= 64 else 129 if reply_ttl <= 128 else 256) - reply_ttl


_TCP_FLAG_NAMES = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")


def tcp_flag_names(flags: int) -> str:
    """traceroute -T -O info's words for a reply's TCP flags: ``syn,ack``, ``rst,ack``."""
    return ",".join(name for bit, name in enumerate(_TCP_FLAG_NAMES) if flags >> bit & 1)


def traceroute_line(
    ttl: int,
    hops: Sequence[Hop],
    names: Mapping[str, str | None] | None = None,
    *,
    extensions: bool = False,
    back: bool = False,
    tcp_info: bool = False,
    as_paths: Mapping[str, str] | None = None,
) -> str:
    """One TTL's line like Butskoy's ``traceroute -n`` (no newline); with `names` (address
    -> PTR name or None) like plain ``traceroute``: ``name (addr)``, ``addr (addr)``.
    `as_paths` (address -> AS path): as traceroute -A, ``[AS64500]`` after the address.
    `extensions`: as traceroute -e, ``<MPLS:...>`` after the address; `back`: as
    traceroute --back, ``'-N'`` after it when the way back is N hops, not `ttl`. The
    address is shown again when it, its extensions (-e) or its way back (--back) differ
    from the last answer's. `tcp_info`: as traceroute -T -O info, the flags of the
    target's TCP reply (``<syn,ack>``) in the same place."""
    line = f"{ttl:2d} "
    last: tuple[str, str | None, int | None] | None = None
    for hop in hops:
        if hop.addr is None:
            line += " *"
            continue
        ext = icmpext_text(hop.icmpext) if extensions and hop.icmpext else None
        if ext is None and tcp_info and hop.tcp_flags is not None:
            ext = tcp_flag_names(hop.tcp_flags)
        seen = (hop.addr, ext, hop.reply_ttl if back else None)
        if seen != last:
            if names is None:
                line += f" {hop.addr}"
            else:
                line += f" {names.get(hop.addr) or hop.addr} ({hop.addr})"
            if as_paths is not None:
                line += f" [{as_paths.get(hop.addr, '*')}]"
            if ext is not None:
                line += f" <{ext}>"
            if back and hop.reply_ttl:
                hops_back = back_hops(hop.reply_ttl)
                if hops_back != ttl:
                    line += f" '-{hops_back}'"
            last = seen
        line += f"  {hop.rtt_us / 1000:.3f} ms" if hop.rtt_us is not None else "  ? ms"
        if hop.mtu is not None:
            line += f" F={hop.mtu}"
        note = hop_annotation(hop)
        if note:
            line += f" {note}"
    return line


def format_traceroute(result: TracerouteResult) -> str:
    """Text like Butskoy's ``traceroute -n``: a header line, then one line per TTL."""
    lines = [traceroute_header(result.dst, max_ttl=result.max_ttl, size=result.probe_size)]
    for ttl, hops in sorted(hops_by_ttl(result.hops).items()):
        lines.append(traceroute_line(ttl, hops))
    return "\n".join(lines) + "\n"


# -- ping ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PingReply:
    """One echo request and its reply (``addr`` None: lost)."""

    seq: int
    addr: str | None
    rtt_us: float | None
    ttl: int | None = None  # TTL/hop limit of the reply
    size: int | None = None  # bytes of ICMP message in the reply
    probe_send_ns: int | None = None
    reply_recv_ns: int | None = None
    dup: bool = False  # a second reply to the same request (ping's "(DUP!)")
    # ping -R: the addresses the reply's record route option holds (None: no option)
    route: tuple[str, ...] | None = None
    # ping -T: the reply's timestamp option as iputils reads it (None: no option)
    ip_timestamps: IpTimestamps | None = None
    # ping HOST... TARGET: the reply's source route option (None: none, or not asked)
    source_route: SourceRoute | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields; `route` only when the reply had a record route (ping -R),
        `ip_timestamps` (kind, entries [address or null, ms since midnight UT or null],
        unrecorded hops) only when it had a timestamp option (ping -T), `source_route`
        (strict, pointer, addresses) only when it had a source route (ping HOST...
        TARGET)."""
        out = asdict(self)
        for key in ("route", "ip_timestamps", "source_route"):
            if out[key] is None:
                del out[key]
        if "route" in out:
            out["route"] = list(out["route"])
        if "ip_timestamps" in out:
            ts = out["ip_timestamps"]
            ts["entries"] = [list(e) for e in ts["entries"]]
        if "source_route" in out:
            out["source_route"]["addresses"] = list(out["source_route"]["addresses"])
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> PingReply:
        route = obj.get("route") if isinstance(obj, Mapping) else None
        if route is not None:
            if not isinstance(route, list) or not all(isinstance(a, str) for a in route):
                raise RecordError(f"PingReply.route must be a list of addresses: {route!r}")
            obj = {**obj, "route": tuple(route)}
        ts = obj.get("ip_timestamps") if isinstance(obj, Mapping) else None
        if ts is not None:
            obj = {**obj, "ip_timestamps": _ip_timestamps(ts)}
        sr = obj.get("source_route") if isinstance(obj, Mapping) else None
        if sr is not None:
            obj = {**obj, "source_route": _source_route(sr)}
        return _from_dict(cls, obj, required=("seq", "addr", "rtt_us"), non_null=("seq",))


def _ip_timestamps(obj: Any) -> IpTimestamps:
    """PingReply.ip_timestamps from its JSON form; RecordError when malformed."""
    try:
        kind, entries, unrecorded = obj["kind"], obj["entries"], obj.get("unrecorded", 0)
        got = tuple((e[0], e[1]) for e in entries if len(e) == 2)
    except (TypeError, KeyError, IndexError):
        raise RecordError(f"PingReply.ip_timestamps is malformed: {obj!r}") from None
    ok = all((a is None or isinstance(a, str)) and (t is None or type(t) is int) for a, t in got)
    if type(kind) is not int or type(unrecorded) is not int or not ok or len(got) != len(entries):
        raise RecordError(f"PingReply.ip_timestamps is malformed: {obj!r}")
    return IpTimestamps(kind, got, unrecorded)


def _source_route(obj: Any) -> SourceRoute:
    try:
        strict, pointer, addresses = obj["strict"], obj["pointer"], obj["addresses"]
    except (TypeError, KeyError):
        raise RecordError(f"PingReply.source_route is malformed: {obj!r}") from None
    ok = isinstance(addresses, list) and all(isinstance(a, str) for a in addresses)
    if type(strict) is not bool or type(pointer) is not int or not ok:
        raise RecordError(f"PingReply.source_route is malformed: {obj!r}")
    return SourceRoute(strict, pointer, tuple(addresses))


@dataclass(frozen=True, slots=True)
class PingError:
    """An ICMP error for an echo request (a router's time exceeded or unreachable), which
    iputils ping prints as ``From ADDR icmp_seq=N Time to live exceeded`` and counts as
    ``+N errors``. ``mtu``: of a "fragmentation needed" / "packet too big"."""

    seq: int
    addr: str
    reply_type: str  # a ReplyKind value
    icmp_type: int
    code: int
    mtu: int | None = None
    probe_send_ns: int | None = None
    reply_recv_ns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> PingError:
        return _from_dict(
            cls,
            obj,
            required=("seq", "addr", "reply_type", "icmp_type", "code"),
            non_null=("seq", "addr", "reply_type", "icmp_type", "code"),
        )

    def describe(self) -> str:
        """iputils ping's words for it (ping_common/ping6_common pr_icmph)."""
        v6 = ":" in self.addr
        c = self.code
        if not v6:
            if self.icmp_type == 11:
                return {0: "Time to live exceeded", 1: "Frag reassembly time exceeded"}.get(
                    c, f"Time exceeded, Bad Code: {c}"
                )
            if self.icmp_type == 3:
                if c == 4:
                    return f"Frag needed and DF set (mtu = {self.mtu or 0})"
                return _V4_UNREACH_WORDS.get(c, f"Dest Unreachable, Bad Code: {c}")
            if self.icmp_type == 12:
                return "Parameter problem"
            return f"Bad ICMP type: {self.icmp_type}"
        if self.icmp_type == 3:
            words = {0: "Hop limit", 1: "Defragmentation failure"}.get(c, f"code {c}")
            return f"Time exceeded: {words}"
        if self.icmp_type == 1:
            words = _V6_UNREACH_WORDS.get(c, f"Unknown code {c}")
            return f"Destination unreachable: {words}"
        if self.icmp_type == 2:
            return f"Packet too big: mtu={self.mtu or 0}" + (f", code={c}" if c else "")
        if self.icmp_type == 4:
            return "Parameter problem"
        return f"Bad ICMP type: {self.icmp_type}"


_V4_UNREACH_WORDS = {
    0: "Destination Net Unreachable",
    1: "Destination Host Unreachable",
    2: "Destination Protocol Unreachable",
    3: "Destination Port Unreachable",
    5: "Source Route Failed",
    6: "Destination Net Unknown",
    7: "Destination Host Unknown",
    8: "Source Host Isolated",
    9: "Destination Net Prohibited",
    10: "Destination Host Prohibited",
    11: "Destination Net Unreachable for Type of Service",
    12: "Destination Host Unreachable for Type of Service",
    13: "Packet filtered",
    14: "Precedence Violation",
    15: "Precedence Cutoff",
}
_V6_UNREACH_WORDS = {
    0: "No route",
    1: "Administratively prohibited",
    2: "Beyond scope of source address",
    3: "Address unreachable",
    4: "Port unreachable",
}


@dataclass(frozen=True, slots=True)
class RttStats:
    min_us: float
    avg_us: float
    max_us: float
    mdev_us: float  # ping's "mdev": the population standard deviation


@dataclass(frozen=True, slots=True)
class PingResult:
    dst: str
    sent: int
    replies: tuple[PingReply, ...]  # answered probes; lost ones may be listed with addr None
    src: str | None = None
    tool: str = "packetlab"  # "packetlab" or "ping" (iputils)
    start_ns: int | None = None
    send_stamp: str = Stamp.UNKNOWN
    recv_stamp: str = Stamp.UNKNOWN
    errors: tuple[PingError, ...] = ()  # ICMP errors for the requests (not received)

    @property
    def received(self) -> int:
        return len({r.seq for r in self.replies if r.addr is not None})

    @property
    def loss(self) -> float:
        """Fraction of probes without a reply (0.0 when nothing was sent)."""
        return 0.0 if self.sent == 0 else max(0.0, 1.0 - self.received / self.sent)

    def rtts_us(self, *, duplicates: bool = False) -> list[float]:
        """The replies' RTTs, one per answered request (with `duplicates`, those of second
        replies too, as ping's text summary counts them)."""
        return [
            r.rtt_us
            for r in self.replies
            if r.addr is not None and r.rtt_us is not None and (duplicates or not r.dup)
        ]

    def stats(self) -> RttStats | None:
        rtts = self.rtts_us()
        if not rtts:
            return None
        avg = sum(rtts) / len(rtts)
        mdev = math.sqrt(sum((x - avg) ** 2 for x in rtts) / len(rtts))
        return RttStats(min(rtts), avg, max(rtts), mdev)

    def to_dict(self) -> dict[str, Any]:
        skip = ("replies", "errors")
        obj = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        obj["replies"] = [r.to_dict() for r in self.replies]
        obj["errors"] = [e.to_dict() for e in self.errors]
        return obj

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> PingResult:
        replies = obj.get("replies")
        if not isinstance(replies, list):
            raise RecordError("ping result needs a list of replies")
        errors = obj.get("errors", [])
        if not isinstance(errors, list):
            raise RecordError("ping result's errors must be a list")
        rest = {k: v for k, v in obj.items() if k not in ("replies", "errors")}
        parsed = tuple(PingReply.from_dict(r) for r in replies)
        errs = tuple(PingError.from_dict(e) for e in errors)
        return _from_dict(
            cls,
            {**rest, "replies": parsed, "errors": errs},
            required=("dst", "sent"),
            non_null=_RESULT_NON_NULL,
        )


def ping_time(rtt_us: float) -> str:
    """An RTT as iputils ping prints it after ``time=``: 3 decimals below 1 ms, 2 below
    10 ms, 1 below 100 ms, none above (``0.214 ms``, ``1.23 ms``, ``12.3 ms``, ``123 ms``),
    from whole microseconds as ping has them."""
    t = int(rtt_us)  # iputils: timeval difference, whole us
    if t >= 100000 - 50:
        return f"{(t + 500) // 1000} ms"
    if t >= 10000 - 5:
        return f"{(t + 50) // 1000}.{(t + 50) % 1000 // 100} ms"
    if t >= 1000:
        return f"{(t + 5) // 1000}.{(t + 5) % 1000 // 10:02d} ms"
    return f"{t // 1000}.{t % 1000:03d} ms"


#: iputils times a reply only when the payload holds its send time (a struct timeval)
PING_TIMING_MIN_SIZE = 16


def ping_line(
    r: PingReply, shown: str | None = None, *, timing: bool = True, ident: int | None = None
) -> str:
    """``64 bytes from ADDR: icmp_seq=N ttl=T time=X ms`` (no newline; r answered), with
    `shown` in place of ADDR if given (iputils: ``NAME (ADDR)`` when the target was a name);
    without `timing` no ``time=`` (iputils with a payload under 16 bytes); with `ident`
    ``ident=N`` after the sequence number (iputils -v)."""
    size = f"{r.size} bytes" if r.size is not None else "reply"
    ttl = f" ttl={r.ttl}" if r.ttl is not None else ""
    rtt = f" time={ping_time(r.rtt_us)}" if r.rtt_us is not None and timing else ""
    dup = " (DUP!)" if r.dup else ""
    idn = f" ident={ident}" if ident is not None else ""
    return f"{size} from {shown or r.addr}: icmp_seq={r.seq}{idn}{ttl}{rtt}{dup}"


def _float32(x: float) -> float:
    """x as a C float (iputils prints the loss percentage of a float with %g)."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


def _isqrt_like_ping(a: int) -> int:
    """iputils' llsqrt: Newton's integer square root (0 for a <= 0)."""
    if a <= 0:
        return 0
    prev, x = None, a
    while prev is None or x < prev:
        prev, x = x, (x + a // x) // 2
    return prev


def ping_statistics(
    result: PingResult,
    elapsed_ms: float | None = None,
    *,
    name: str | None = None,
    errors: int = 0,
    interval: float | None = None,
    timing: bool = True,
) -> list[str]:
    """iputils ping's closing lines: the title (`name`: the target as given), the counts
    (``+N duplicates``, ``+N errors``: ICMP errors for the requests; the loss with %g,
    ``33.3333%``), the RTT
    summary in whole microseconds as ping computes it, or an empty line when nothing was
    received (ping's closing newline); with `interval` 0 (flood-like) ping's ``ipg/ewma``.
    Without `timing` (a payload too small for ping's timestamp) no RTT summary, as ping."""
    counts = f"{result.sent} packets transmitted, {result.received} received"
    dups = sum(1 for r in result.replies if r.dup and r.addr is not None)
    if dups:
        counts += f", +{dups} duplicates"
    if errors:
        counts += f", +{errors} errors"
    if result.sent:
        loss = (result.sent - result.received) * 100.0 / result.sent
        counts += f", {_float32(loss):g}% packet loss"
        if elapsed_ms is not None:
            counts += f", time {elapsed_ms:.0f}ms"
    lines = [f"--- {name or result.dst} ping statistics ---", counts]
    rtts = [int(x) for x in result.rtts_us(duplicates=True)] if timing else []  # whole us
    parts = []
    if rtts:
        n, tsum = len(rtts), sum(rtts)
        tsum2 = sum(x * x for x in rtts)
        tmavg = tsum // n
        tmvar = (tsum2 - tsum * tsum // n) // n
        tmdev = _isqrt_like_ping(tmvar)
        parts.append(
            "rtt min/avg/max/mdev = "
            + "/".join(f"{v // 1000}.{v % 1000:03d}" for v in (min(rtts), tmavg, max(rtts), tmdev))
            + " ms"
        )
    pipe = ping_pipe(result)
    if pipe > 1:
        parts.append(f"pipe {pipe}")
    if result.received and interval == 0 and result.sent > 1 and elapsed_ms is not None:
        ipg = int(elapsed_ms * 1000) // (result.sent - 1)
        ewma = 0  # ping's smoothed RTT, x8, in arrival (here: sequence) order
        for x in rtts:
            ewma = x * 8 if ewma == 0 else ewma + x - ewma // 8
        parts.append(
            f"ipg/ewma {ipg // 1000}.{ipg % 1000:03d}/{ewma // 8000}.{ewma // 8 % 1000:03d} ms"
        )
    lines.append(", ".join(parts))  # (empty: the closing newline ping prints anyway)
    return lines


def ping_pipe(result: PingResult) -> int:
    """iputils' ``pipe``: the most requests outstanding when an answer (reply or ICMP
    error) came, i.e. requests sent by its arrival minus its sequence number plus one
    (0 without the send and arrival times)."""
    sends = sorted(r.probe_send_ns for r in result.replies if r.probe_send_ns is not None)
    arrivals = [(r.seq, r.reply_recv_ns) for r in result.replies if r.addr is not None]
    arrivals += [(e.seq, e.reply_recv_ns) for e in result.errors]
    pipe = 0
    for seq, recv_ns in arrivals:
        if recv_ns is not None and sends:
            pipe = max(pipe, bisect.bisect_right(sends, recv_ns) - seq + 1)
    return pipe


def format_ping(result: PingResult) -> str:
    """Text like iputils ``ping -n``: one line per reply, then the summary."""
    lines = [f"PING {result.dst} ({result.dst})"]
    lines += [ping_line(r) for r in result.replies if r.addr is not None]
    lines.append("")
    lines += ping_statistics(result)
    return "\n".join(lines) + "\n"


# -- helpers ----------------------------------------------------------------------------------


def _from_dict(
    cls: Any, obj: Mapping[str, Any], *, required: Sequence[str], non_null: Sequence[str] = ()
) -> Any:
    if not isinstance(obj, Mapping):
        raise RecordError(f"{cls.__name__} must be a JSON object, not {type(obj).__name__}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise RecordError(f"{cls.__name__} is missing {', '.join(missing)}")
    known = {f.name: f for f in fields(cls)}
    unknown = set(obj) - set(known)
    if unknown:
        raise RecordError(f"{cls.__name__} has unknown fields {', '.join(sorted(unknown))}")
    for name, value in obj.items():
        if value is None and name in non_null:
            raise RecordError(f"{cls.__name__}.{name} must not be null")
        _check_type(cls.__name__, name, value)
    return cls(**obj)


_INT_FIELDS = {
    "ttl",
    "tcp_flags",
    "code",
    "probe_send_ns",
    "reply_recv_ns",
    "reply_ttl",
    "reply_ip_id",
    "seq",
    "size",
    "sent",
    "max_ttl",
    "probe_size",
    "start_ns",
    "icmp_type",
    "mtu",
}
_FLOAT_FIELDS = {"rtt_us"}
_RESULT_NON_NULL = ("dst", "sent", "tool", "method", "send_stamp", "recv_stamp")
_STR_FIELDS = {"addr", "reply_type", "dst", "src", "tool", "method", "send_stamp", "recv_stamp"}


def _check_type(owner: str, name: str, value: object) -> None:
    if value is None:
        return
    if name in _INT_FIELDS:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif name in _FLOAT_FIELDS:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    elif name in _STR_FIELDS:
        ok = isinstance(value, str)
    else:
        ok = True  # hops/replies: checked by their own from_dict
    if not ok:
        raise RecordError(f"{owner}.{name} has the wrong type: {value!r}")


def hops_by_ttl(hops: Iterable[Hop]) -> dict[int, list[Hop]]:
    """Hops grouped by TTL, each group in probe order."""
    out: dict[int, list[Hop]] = {}
    for hop in hops:
        out.setdefault(hop.ttl, []).append(hop)
    return out
