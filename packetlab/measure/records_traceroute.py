"""Traceroute records (`Hop`, `TracerouteResult`), their JSON and JSON lines, and their
text as Butskoy traceroute prints it (`traceroute_line`, `format_traceroute`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from packetlab.measure.icmpext import EXTENSION_OFFSET, IcmpExt
from packetlab.measure.icmpext import decode as icmpext_decode
from packetlab.measure.icmpext import text as icmpext_text
from packetlab.measure.records_fields import (
    RESULT_NON_NULL,
    RecordError,
    Stamp,
    record_from_dict,
    rtt_us_between,
)
from packetlab.measure.replies import ICMP6_PORT_UNREACH, ICMP_PORT_UNREACH, Reply, ReplyKind

__all__ = [
    "Hop",
    "TracerouteResult",
    "back_hops",
    "format_traceroute",
    "hop_annotation",
    "hops_by_ttl",
    "path_jaccard",
    "tcp_flag_names",
    "traceroute_header",
    "traceroute_jsonl",
    "traceroute_line",
]


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
    # the ICMP type of an error no one assigned (reply_type "other-error", `!<TYPE-CODE>`);
    # None for every other reply, whose type reply_type tells
    icmp_type: int | None = None

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
            next_mtu=reply.mtu,  # (0 kept: traceroute prints a router's 0 as `!F-0`)
            icmpext=icmpext,
            tcp_flags=reply.tcp_flags,
            icmp_type=reply.icmp_type if reply.kind is ReplyKind.OTHER_ERROR else None,
        )

    @classmethod
    def timeout(cls, ttl: int, *, probe_send_ns: int | None = None) -> Hop:
        return cls(ttl=ttl, addr=None, rtt_us=None, probe_send_ns=probe_send_ns)

    @classmethod
    def refused(cls, ttl: int, mtu: int | None) -> Hop:
        """A DF probe the endpoint's own kernel refused as longer than `mtu` (its route's
        or a path MTU it learnt): no address, as traceroute -F shows its socket's local
        EMSGSIZE (`*  0.183 ms !F-1500`). RTT 0: the probe never left (traceroute's is the
        time until it read the error from its queue). `mtu` None: not known (an endpoint
        reached with --listen), shown `!F`."""
        kind = str(ReplyKind.PACKET_TOO_BIG)
        return cls(ttl=ttl, addr=None, rtt_us=0.0, reply_type=kind, next_mtu=mtu)

    def to_dict(self) -> dict[str, Any]:
        """The fields; `mtu`, `next_mtu`, `icmpext`, `tcp_flags` and `icmp_type` only when
        set (traceroute --mtu, !F, extensions, TCP replies, an unassigned ICMPv6 error)."""
        out = asdict(self)
        for key in ("mtu", "next_mtu", "icmpext", "tcp_flags", "icmp_type"):
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
        return record_from_dict(cls, obj, required=("ttl", "addr", "rtt_us"), non_null=("ttl",))


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
        return record_from_dict(
            cls, {**rest, "hops": parsed}, required=("dst",), non_null=RESULT_NON_NULL
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
# unreachable, i.e. the destination was reached); any other code is `!<CODE>`. Checked
# against traceroute 2.1.2 code by code (tests/integration/icmp_responder.py): IPv4's 8
# (source host isolated) is `!N`; IPv6's 2 (beyond scope) is `!H`, its 5 and 6 (source
# policy, reject route) have no name there.
_V4_UNREACH_NOTE = {0: "!N", 1: "!H", 2: "!P", 5: "!S", 6: "!N", 7: "!H", 8: "!N", 9: "!X"}
_V4_UNREACH_NOTE |= {10: "!X", 11: "!N", 12: "!H", 13: "!X", 14: "!V", 15: "!C"}
_V6_UNREACH_NOTE = {0: "!N", 1: "!X", 2: "!H", 3: "!H"}


def _other_error(hop: Hop, version: int) -> str | None:
    """traceroute's ``!<TYPE-CODE>`` for an ICMP error other than time exceeded in
    transit and destination unreachable (a parameter problem: a target without DCCP
    answers IPv6 probes so; a reassembly time exceeded; an ICMPv6 error of a type no one
    assigned, which Linux passes on); None for those two."""
    code = hop.code or 0
    if hop.reply_type == ReplyKind.OTHER_ERROR:  # (its type is kept for this: 0..127)
        return f"!<{hop.icmp_type if hop.icmp_type is not None else '?'}-{code}>"
    if hop.reply_type == ReplyKind.PARAM_PROBLEM:
        return f"!<{12 if version == 4 else 4}-{code}>"
    if hop.reply_type == ReplyKind.TIME_EXCEEDED and code:
        return f"!<{11 if version == 4 else 3}-{code}>"
    return None


def _frag_note(hop: Hop) -> str:
    """`!F-MTU` with the MTU the router gave, 0 too (traceroute prints the kernel's
    ee_info, which is the ICMP's field as it came); `!F` when it is not known (a record
    of an older run, or read back without it)."""
    return "!F" if hop.next_mtu is None else f"!F-{hop.next_mtu}"


def hop_annotation(hop: Hop, *, version: int | None = None) -> str:
    """The ``!X`` note traceroute prints after an RTT ('' for none)."""
    if hop.reply_type == ReplyKind.PACKET_TOO_BIG:
        return _frag_note(hop)
    v = version or (6 if hop.addr and ":" in hop.addr else 4)
    other = _other_error(hop, v)
    if other is not None:  # (traceroute's `!<TYPE-CODE>` for an error it has no name for)
        return other
    if hop.reply_type != ReplyKind.DEST_UNREACHABLE or hop.code is None:
        return ""
    if v == 4:
        if hop.code == ICMP_PORT_UNREACH:
            return ""
        if hop.code == 4:
            return _frag_note(hop)
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
            if hop.reply_type is not None:  # refused by the endpoint's kernel (`Hop.refused`)
                line += f"  {(hop.rtt_us or 0.0) / 1000:.3f} ms {hop_annotation(hop)}"
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
        # (traceroute 2.1.2 keeps one note per probe: an error's `!` note overwrites the
        # `F=NUM` --mtu left there, so `!F-300` alone where the probe had shrunk to 300)
        note = hop_annotation(hop) or (f"F={hop.mtu}" if hop.mtu is not None else "")
        if note:
            line += f" {note}"
    return line


def format_traceroute(result: TracerouteResult) -> str:
    """Text like Butskoy's ``traceroute -n``: a header line, then one line per TTL."""
    lines = [traceroute_header(result.dst, max_ttl=result.max_ttl, size=result.probe_size)]
    for ttl, hops in sorted(hops_by_ttl(result.hops).items()):
        lines.append(traceroute_line(ttl, hops))
    return "\n".join(lines) + "\n"


def hops_by_ttl(hops: Iterable[Hop]) -> dict[int, list[Hop]]:
    """Hops grouped by TTL, each group in probe order."""
    out: dict[int, list[Hop]] = {}
    for hop in hops:
        out.setdefault(hop.ttl, []).append(hop)
    return out
