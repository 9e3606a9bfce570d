"""scamper's warts trace record, for `pktlab run traceroute --warts` (`traceroute_warts`: a
whole file, list, cycle start, trace, cycle stop). Unanswered probes have no hop record
(as in scamper): the TTLs without one are the ``*`` lines of ``sc_warts2text``."""

from __future__ import annotations

import ipaddress
from typing import Any

from packetlab.measure.records_fields import Stamp
from packetlab.measure.records_traceroute import Hop, TracerouteResult
from packetlab.measure.replies import ReplyKind
from packetlab.measure.warts_format import (
    OBJ_TRACE,
    AddressTable,
    WartsError,
    cycle_start_object,
    cycle_stop_object,
    list_object,
    params,
    record,
    timeval,
    u8,
    u16,
    u32,
    whole_seconds,
)

# scamper's trace types, by our method names (udp-fixed: UDP with one destination port)
TRACE_TYPES = {
    "icmp": 0x01,
    "udp": 0x02,
    "udp-fixed": 0x02,
    "tcp": 0x03,
    "icmp-paris": 0x04,
    "udp-paris": 0x05,
    "tcp-ack": 0x06,
}
# scamper's stop reasons, by the names the --json summary uses (`scamper_stop`)
STOP_REASONS = {
    "COMPLETED": 0x01,
    "UNREACH": 0x02,
    "ICMP": 0x03,
    "HOPLIMIT": 0x07,
    "INTERRUPTED": 0x09,
}

# trace fields (flag ids) and hop fields this module writes
_T_LIST, _T_CYCLE, _T_START, _T_STOP_R, _T_STOP_D, _T_FLAGS = 1, 2, 5, 6, 7, 8
_T_ATTEMPTS, _T_HOPLIMIT, _T_TYPE, _T_PROBE_S, _T_SPORT, _T_DPORT = 9, 10, 11, 12, 13, 14
_T_FIRSTHOP, _T_TOS, _T_WAIT, _T_HOPCOUNT, _T_PROBEC, _T_SRC, _T_DST = 15, 16, 17, 19, 23, 26, 27
_H_PROBE_TTL, _H_REPLY_TTL, _H_FLAGS, _H_PROBE_ID, _H_RTT, _H_ICMP_TC = 2, 3, 4, 5, 6, 7
_H_PROBE_SIZE, _H_REPLY_IPID, _H_NHMTU, _H_TCP_FLAGS, _H_ADDR, _H_TX = 8, 10, 12, 15, 18, 19

# trace flags: every attempt sent whatever the answers (traceroute's queries; scamper -Q)
TRACE_FLAG_ALLATTEMPTS = 0x01
# hop flags: receive time from the socket (kernel), reply TTL known, a TCP reply
HOP_FLAG_SOCK_RX, HOP_FLAG_REPLY_TTL, HOP_FLAG_TCP = 0x01, 0x10, 0x20

# ICMP types of the reply kinds (IPv4, IPv6)
_ICMP_TYPE = {
    ReplyKind.TIME_EXCEEDED: (11, 3),
    ReplyKind.DEST_UNREACHABLE: (3, 1),
    ReplyKind.PACKET_TOO_BIG: (3, 2),  # IPv4: unreachable, code 4 (fragmentation needed)
    ReplyKind.PARAM_PROBLEM: (12, 4),
    ReplyKind.ECHO_REPLY: (0, 129),
}
# the errors past an unreachable that end a trace (`traceroute_probes.ends_trace`)
_OTHER_ENDS = (ReplyKind.PACKET_TOO_BIG, ReplyKind.PARAM_PROBLEM, ReplyKind.OTHER_ERROR)
_TCP_REPLIES = (ReplyKind.TCP_SYNACK, ReplyKind.TCP_RST)  # flags SYN|ACK, RST(|ACK)


def scamper_stop(result: TracerouteResult, interrupted: bool = False) -> tuple[str, int]:
    """scamper's stop reason (by the --json summary's name) and stop data: COMPLETED (the
    target answered), UNREACH and the code (a router's destination unreachable, IPv4's
    "fragmentation needed" too), ICMP and the ICMP type (another error that ended the
    trace: an IPv6 "packet too big", a parameter problem, a time exceeded in
    reassembly, an ICMPv6 type no one assigned: scamper's reason for an ICMP message
    that is not an unreachable, `icmp type N` in sc_wartsdump; it stops so on "packet
    too big" itself and ignores the others, where traceroute ends on them, as ours),
    HOPLIMIT (the last TTL probed), INTERRUPTED (scamper's HALTED). Session 26 (icmp26):
    a trace ended by `!<100-0>` was HOPLIMIT, its hop limit not reached."""
    if interrupted:
        return "INTERRUPTED", 0
    last = next((h for h in reversed(result.hops) if h.addr is not None), None)
    if last is None:
        return "HOPLIMIT", 0
    if last.addr == result.dst:
        return "COMPLETED", 0
    if last.reply_type == ReplyKind.DEST_UNREACHABLE:
        return "UNREACH", last.code or 0
    icmp = hop_icmp(last, ipaddress.ip_address(result.dst).version)
    if icmp is not None and (last.reply_type in _OTHER_ENDS or last.code):
        return "ICMP", icmp[0]  # (a time exceeded ends a trace only with a code past 0)
    return "HOPLIMIT", 0


def stop_reason(result: TracerouteResult, interrupted: bool = False) -> tuple[int, int]:
    """`scamper_stop` as warts stores it: the reason's number, the data."""
    name, data = scamper_stop(result, interrupted)
    return STOP_REASONS[name], data


def hop_icmp(hop: Hop, version: int) -> tuple[int, int] | None:
    """The ICMP type and code of a hop's reply as warts keeps them (None for a TCP reply
    or none): an unassigned ICMPv6 error's own type (`Hop.icmp_type`), which scamper
    itself never records (its ICMPv6 receive path drops such a type; session 26 wrote
    it so that sc_warts2json shows ``"icmp_type":100, "icmp_code":0``, where session 25
    wrote neither)."""
    kind, code = hop.reply_type, hop.code or 0
    if kind == ReplyKind.OTHER_ERROR and hop.icmp_type is not None:
        return hop.icmp_type, code
    if kind not in _ICMP_TYPE:
        return None
    v4, v6 = _ICMP_TYPE[ReplyKind(kind)]
    if kind == ReplyKind.PACKET_TOO_BIG and version == 4:
        code = 4
    return (v4 if version == 4 else v6), code


def _hop_fields(
    hop: Hop, attempt: int, version: int, result: TracerouteResult, table: AddressTable
) -> dict[int, bytes]:
    assert hop.addr is not None
    flags = 0
    fields: dict[int, bytes] = {_H_PROBE_TTL: u8(hop.ttl), _H_PROBE_ID: u8(attempt)}
    if result.recv_stamp == Stamp.KERNEL:
        flags |= HOP_FLAG_SOCK_RX
    if hop.reply_ttl is not None:
        flags |= HOP_FLAG_REPLY_TTL
        fields[_H_REPLY_TTL] = u8(hop.reply_ttl)
    kind = hop.reply_type
    if kind in _TCP_REPLIES:
        flags |= HOP_FLAG_TCP
        # a RST to a bare ACK (tcp-ack) has no ACK bit; to a SYN it acknowledges it
        rst = 0x04 if result.method == "tcp-ack" else 0x14
        fields[_H_TCP_FLAGS] = u8(rst if kind == ReplyKind.TCP_RST else 0x12)
    elif (icmp := hop_icmp(hop, version)) is not None:
        fields[_H_ICMP_TC] = u8(icmp[0]) + u8(icmp[1])
    fields[_H_FLAGS] = u8(flags)
    if hop.rtt_us is not None:
        fields[_H_RTT] = u32(max(0, round(hop.rtt_us)))
    size = hop.mtu or result.probe_size
    if size is not None:
        fields[_H_PROBE_SIZE] = u16(size)
    if hop.reply_ip_id is not None and version == 4:
        fields[_H_REPLY_IPID] = u16(hop.reply_ip_id)
    if hop.next_mtu:
        fields[_H_NHMTU] = u16(hop.next_mtu)
    fields[_H_ADDR] = table.encode(hop.addr)
    if hop.probe_send_ns is not None:
        fields[_H_TX] = timeval(hop.probe_send_ns)
    return fields


def trace_object(
    result: TracerouteResult,
    *,
    list_id: int = 1,
    cycle_id: int = 1,
    attempts: int | None = None,
    first_ttl: int | None = None,
    wait_s: float | None = None,
    sport: int | None = None,
    dport: int | None = None,
    tos: int = 0,
    interrupted: bool = False,
) -> bytes:
    """The trace object of `result` (scamper's ``trace``): its fields, then one hop record
    per answered probe, by TTL then in probe order (``probe_id``: the probe's place among
    that TTL's probes, 0 first)."""
    version = ipaddress.ip_address(result.dst).version
    table = AddressTable()
    by_ttl: dict[int, list[Hop]] = {}
    for hop in result.hops:
        by_ttl.setdefault(hop.ttl, []).append(hop)
    if result.method not in TRACE_TYPES:
        raise WartsError(f"no warts trace type for method {result.method!r}")
    reason, data = stop_reason(result, interrupted)
    start_ns = result.start_ns
    if start_ns is None:
        start_ns = min((h.probe_send_ns for h in result.hops if h.probe_send_ns), default=0)
    hop_count = max(by_ttl, default=0)
    per_ttl = max((len(v) for v in by_ttl.values()), default=0)
    fields: dict[int, bytes] = {
        _T_LIST: u32(list_id),
        _T_CYCLE: u32(cycle_id),
        _T_START: timeval(start_ns),
        _T_STOP_R: u8(reason),
        _T_STOP_D: u8(data),
        _T_FLAGS: u8(TRACE_FLAG_ALLATTEMPTS),
        _T_ATTEMPTS: u8(attempts if attempts is not None else per_ttl),
        _T_HOPLIMIT: u8(result.max_ttl or 0),
        _T_TYPE: u8(TRACE_TYPES[result.method]),
        _T_FIRSTHOP: u8(first_ttl if first_ttl is not None else min(by_ttl, default=1)),
        _T_TOS: u8(tos),
        _T_HOPCOUNT: u16(hop_count),
        _T_PROBEC: u16(len(result.hops)),
    }
    if result.probe_size is not None:
        fields[_T_PROBE_S] = u16(result.probe_size)
    if sport is not None:
        fields[_T_SPORT] = u16(sport)
    if dport is not None:
        fields[_T_DPORT] = u16(dport)
    if wait_s is not None:
        fields[_T_WAIT] = u8(whole_seconds(wait_s))
    if result.src is not None:
        fields[_T_SRC] = table.encode(result.src)
    fields[_T_DST] = table.encode(result.dst)
    head = params(fields)
    hops = [
        params(_hop_fields(hop, attempt, version, result, table))
        for ttl in sorted(by_ttl)
        for attempt, hop in enumerate(by_ttl[ttl])
        if hop.addr is not None
    ]
    if len(hops) > 0xFFFF:
        raise WartsError("more than 65535 answered probes for one warts trace")
    return record(OBJ_TRACE, head + u16(len(hops)) + b"".join(hops) + u16(0))


def traceroute_warts(
    result: TracerouteResult,
    *,
    stop_s: int | None = None,
    hostname: str = "",
    list_name: str = "default",
    **trace: Any,
) -> bytes:
    """A whole warts file for one traceroute: list, cycle start, trace, cycle stop.
    `stop_s`: the cycle's end (Unix seconds; default the last reply or probe); `trace`:
    `trace_object`'s keywords (attempts, first_ttl, wait_s, sport, dport, interrupted...)."""
    times = [h.reply_recv_ns or h.probe_send_ns or 0 for h in result.hops]
    start_s = (result.start_ns or min((t for t in times if t), default=0)) // 1_000_000_000
    if stop_s is None:
        stop_s = max([*times, start_s * 1_000_000_000]) // 1_000_000_000
    return (
        list_object(name=list_name)
        + cycle_start_object(start_s, hostname=hostname)
        + trace_object(result, **trace)
        + cycle_stop_object(stop_s)
    )
