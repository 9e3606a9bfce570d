"""scamper's warts binary format for a traceroute, an MDA run (tracelb), a ping and an
alias run (dealias): sans-IO, pure functions over the records.

Researchers process traceroute data with scamper's tools (``sc_warts2json``,
``sc_warts2text``, ``sc_wartsdump``, ``sc_analysis_dump``...), so `pktlab run traceroute
--warts FILE` writes what ``scamper -O warts`` writes for one ``trace``: a list record, a
cycle start, the trace object, a cycle stop.

The layout, as scamper writes it (all integers big-endian):

* every object: ``uint16 magic 0x1205``, ``uint16 type``, ``uint32 length`` of the body;
* a set of optional fields: flag bytes (7 flags each, low bit first, the high bit set when
  another flag byte follows; a lone 0 byte for none), then ``uint16`` length of the fields,
  then each field whose flag is set, in flag order;
* an address: ``uint8 length``, ``uint8 type`` (1 IPv4, 2 IPv6), the bytes; or, for one
  already written in the same object, ``0`` and a ``uint32`` index (0 the first written);
* a trace: its fields, ``uint16`` count of hop records, each hop's fields, and a ``uint16``
  0 that ends the (absent) optional sections (PMTUD, last-ditch, doubletree);
* a tracelb: its fields (the node and link counts among them), each node's fields, then
  each link's fields followed by its ``hopc`` probe sets (a count, then each probe's
  fields followed by its replies' fields);
* a dealias: its fields (the probe count among them), the method's fields (radargun: the
  probe definition count), each probe definition's fields, then each probe's fields
  followed by its replies' fields. No counts outside the fields.

Unanswered probes have no hop record (as in scamper): the TTLs without one are the ``*``
lines of ``sc_warts2text``. `read_warts` reads what this module writes (and scamper's
traces), for tests and for checking a file without scamper's tools.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from packetlab.measure.records import Hop, PingResult, Stamp, TracerouteResult
from packetlab.measure.replies import ReplyKind

if TYPE_CHECKING:
    from packetlab.measure.alias import ProbeRun
    from packetlab.measure.mda import MdaResult

__all__ = [
    "OBJ_CYCLE_START",
    "OBJ_CYCLE_STOP",
    "OBJ_DEALIAS",
    "OBJ_LIST",
    "OBJ_PING",
    "OBJ_TRACE",
    "OBJ_TRACELB",
    "STOP_REASONS",
    "TRACE_TYPES",
    "WARTS_MAGIC",
    "WartsError",
    "WartsObject",
    "alias_warts",
    "dealias_object",
    "ping_object",
    "ping_warts",
    "read_warts",
    "trace_object",
    "tracelb_object",
    "tracelb_warts",
    "traceroute_warts",
]

WARTS_MAGIC = 0x1205
OBJ_LIST, OBJ_CYCLE_START, OBJ_CYCLE_STOP, OBJ_TRACE, OBJ_PING, OBJ_DEALIAS = 1, 2, 4, 6, 7, 9
OBJ_TRACELB = 8

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
# scamper's stop reasons, by the names the --json summary uses (`traceroute_stop_reason`)
STOP_REASONS = {"COMPLETED": 0x01, "UNREACH": 0x02, "HOPLIMIT": 0x07, "INTERRUPTED": 0x09}

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

# field sizes for reading: bytes, "addr", or "str" (NUL-terminated)
_TRACE_SIZES: dict[int, int | str] = {
    1: 4, 2: 4, 3: 4, 4: 4, 5: 8, 6: 1, 7: 1, 8: 1, 9: 1, 10: 1, 11: 1, 12: 2, 13: 2, 14: 2,
    15: 1, 16: 1, 17: 1, 18: 1, 19: 2, 20: 1, 21: 1, 22: 1, 23: 2, 24: 1, 25: 1, 26: "addr",
    27: "addr", 28: 4, 29: 2, 30: "addr", 31: 1,
}  # fmt: skip
_HOP_SIZES: dict[int, int | str] = {
    1: 4, 2: 1, 3: 1, 4: 1, 5: 1, 6: 4, 7: 2, 8: 2, 9: 2, 10: 2, 11: 1, 12: 2, 13: 2, 14: 1,
    15: 1, 16: 1, 17: "ext", 18: "addr", 19: 8,
}  # fmt: skip
# ping: 24 (timestamp prespecification: a count, the addresses) and the replies' 13, 14
# (record route, timestamp options) read as lists
_PING_SIZES: dict[int, int | str] = {
    1: 4, 2: 4, 3: 4, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: "data", 10: 2, 11: 2, 12: 1, 13: 1,
    14: 2, 15: 2, 16: 1, 17: 2, 18: 2, 19: 4, 20: "addr", 21: "addr", 22: 1, 23: 1,
    24: "v4rr", 25: 2, 26: 2, 27: 1, 28: 4,
}  # fmt: skip
_PING_REPLY_SIZES: dict[int, int | str] = {
    1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 2, 8: 2, 9: 2, 10: 1, 11: 1, 12: "addr",
    13: "v4rr", 14: "v4ts", 15: 4, 16: 8, 17: 12,
}  # fmt: skip
_LIST_SIZES: dict[int, int | str] = {1: "str", 2: "str"}
_CYCLE_SIZES: dict[int, int | str] = {1: 4, 2: "str"}

# ICMP types of the reply kinds (IPv4, IPv6)
_ICMP_TYPE = {
    ReplyKind.TIME_EXCEEDED: (11, 3),
    ReplyKind.DEST_UNREACHABLE: (3, 1),
    ReplyKind.PACKET_TOO_BIG: (3, 2),  # IPv4: unreachable, code 4 (fragmentation needed)
    ReplyKind.PARAM_PROBLEM: (12, 4),
    ReplyKind.ECHO_REPLY: (0, 129),
}
_TCP_REPLIES = (ReplyKind.TCP_SYNACK, ReplyKind.TCP_RST)  # flags SYN|ACK, RST(|ACK)


class WartsError(ValueError):
    """Bytes that are not a warts file this module can read, or a record it cannot write."""


# -- writing ------------------------------------------------------------------------------------


def _u8(v: int) -> bytes:
    return struct.pack("!B", v & 0xFF)


def _u16(v: int) -> bytes:
    return struct.pack("!H", v & 0xFFFF)


def _u32(v: int) -> bytes:
    return struct.pack("!I", v & 0xFFFFFFFF)


def _timeval(ns: int) -> bytes:
    sec, rest = divmod(ns, 1_000_000_000)
    return struct.pack("!II", sec, rest // 1000)


def _whole_seconds(s: float) -> int:
    """A wait in the whole seconds of a warts byte: rounded up, so a wait under a second is
    1 and never 0, which scamper's tools read as "no wait"."""
    return min(255, max(0, math.ceil(s)))


def _flags(ids: Iterable[int]) -> bytes:
    """The flag bytes of a set of field ids (1-based; 7 a byte, high bit: more follow)."""
    ids = sorted(set(ids))
    if not ids:
        return b"\x00"
    out = bytearray((ids[-1] + 6) // 7)
    for i in ids:
        out[(i - 1) // 7] |= 1 << ((i - 1) % 7)
    for k in range(len(out) - 1):
        out[k] |= 0x80
    return bytes(out)


def _params(fields: dict[int, bytes]) -> bytes:
    """Optional fields: their flags, the uint16 length of their bytes, the bytes in id order."""
    if not fields:
        return b"\x00"
    body = b"".join(fields[i] for i in sorted(fields))
    if len(body) > 0xFFFF:
        raise WartsError("warts fields longer than 65535 bytes")
    return _flags(fields) + _u16(len(body)) + body


def _string(text: str) -> bytes:
    raw = text.encode()
    if b"\x00" in raw:
        raise WartsError("a warts string cannot hold a NUL")
    return raw + b"\x00"


def _object(kind: int, body: bytes) -> bytes:
    return struct.pack("!HHI", WARTS_MAGIC, kind, len(body)) + body


class _Addresses:
    """An object's address table: the first use of an address writes it, later ones its index."""

    def __init__(self) -> None:
        self.ids: dict[bytes, int] = {}

    def encode(self, text: str) -> bytes:
        addr = ipaddress.ip_address(text)
        key = _u8(1 if addr.version == 4 else 2) + addr.packed
        known = self.ids.get(key)
        if known is not None:
            return b"\x00" + _u32(known)
        self.ids[key] = len(self.ids)
        return _u8(len(addr.packed)) + key


def list_object(list_id: int = 1, *, name: str = "default", human_id: int = 0) -> bytes:
    """A list record (file-local id `list_id`), described by its name as scamper does."""
    return _object(
        OBJ_LIST, _u32(list_id) + _u32(human_id) + _string(name) + _params({1: _string(name)})
    )


def cycle_start_object(
    start_s: int, *, cycle_id: int = 1, list_id: int = 1, human_id: int = 0, hostname: str = ""
) -> bytes:
    fields = {2: _string(hostname)} if hostname else {}
    body = _u32(cycle_id) + _u32(list_id) + _u32(human_id) + _u32(start_s) + _params(fields)
    return _object(OBJ_CYCLE_START, body)


def cycle_stop_object(stop_s: int, *, cycle_id: int = 1) -> bytes:
    return _object(OBJ_CYCLE_STOP, _u32(cycle_id) + _u32(stop_s) + _params({}))


def stop_reason(result: TracerouteResult, interrupted: bool = False) -> tuple[int, int]:
    """scamper's stop reason and stop data (the unreachable code for UNREACH), by the rule
    of the --json summary's ``stop_reason`` (`packetlab.cli.report.traceroute_stop_reason`)."""
    if interrupted:
        return STOP_REASONS["INTERRUPTED"], 0
    last = next((h for h in reversed(result.hops) if h.addr is not None), None)
    if last is not None and last.addr == result.dst:
        return STOP_REASONS["COMPLETED"], 0
    if last is not None and last.reply_type == ReplyKind.DEST_UNREACHABLE:
        return STOP_REASONS["UNREACH"], last.code or 0
    return STOP_REASONS["HOPLIMIT"], 0


def _hop_fields(
    hop: Hop, attempt: int, version: int, result: TracerouteResult, table: _Addresses
) -> dict[int, bytes]:
    assert hop.addr is not None
    flags = 0
    fields: dict[int, bytes] = {_H_PROBE_TTL: _u8(hop.ttl), _H_PROBE_ID: _u8(attempt)}
    if result.recv_stamp == Stamp.KERNEL:
        flags |= HOP_FLAG_SOCK_RX
    if hop.reply_ttl is not None:
        flags |= HOP_FLAG_REPLY_TTL
        fields[_H_REPLY_TTL] = _u8(hop.reply_ttl)
    kind = hop.reply_type
    if kind in _TCP_REPLIES:
        flags |= HOP_FLAG_TCP
        # a RST to a bare ACK (tcp-ack) has no ACK bit; to a SYN it acknowledges it
        rst = 0x04 if result.method == "tcp-ack" else 0x14
        fields[_H_TCP_FLAGS] = _u8(rst if kind == ReplyKind.TCP_RST else 0x12)
    elif kind in _ICMP_TYPE:
        v4, v6 = _ICMP_TYPE[ReplyKind(kind)]
        code = hop.code or 0
        if kind == ReplyKind.PACKET_TOO_BIG and version == 4:
            code = 4
        fields[_H_ICMP_TC] = _u8(v4 if version == 4 else v6) + _u8(code)
    fields[_H_FLAGS] = _u8(flags)
    if hop.rtt_us is not None:
        fields[_H_RTT] = _u32(max(0, round(hop.rtt_us)))
    size = hop.mtu or result.probe_size
    if size is not None:
        fields[_H_PROBE_SIZE] = _u16(size)
    if hop.reply_ip_id is not None and version == 4:
        fields[_H_REPLY_IPID] = _u16(hop.reply_ip_id)
    if hop.next_mtu:
        fields[_H_NHMTU] = _u16(hop.next_mtu)
    fields[_H_ADDR] = table.encode(hop.addr)
    if hop.probe_send_ns is not None:
        fields[_H_TX] = _timeval(hop.probe_send_ns)
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
    table = _Addresses()
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
        _T_LIST: _u32(list_id),
        _T_CYCLE: _u32(cycle_id),
        _T_START: _timeval(start_ns),
        _T_STOP_R: _u8(reason),
        _T_STOP_D: _u8(data),
        _T_FLAGS: _u8(TRACE_FLAG_ALLATTEMPTS),
        _T_ATTEMPTS: _u8(attempts if attempts is not None else per_ttl),
        _T_HOPLIMIT: _u8(result.max_ttl or 0),
        _T_TYPE: _u8(TRACE_TYPES[result.method]),
        _T_FIRSTHOP: _u8(first_ttl if first_ttl is not None else min(by_ttl, default=1)),
        _T_TOS: _u8(tos),
        _T_HOPCOUNT: _u16(hop_count),
        _T_PROBEC: _u16(len(result.hops)),
    }
    if result.probe_size is not None:
        fields[_T_PROBE_S] = _u16(result.probe_size)
    if sport is not None:
        fields[_T_SPORT] = _u16(sport)
    if dport is not None:
        fields[_T_DPORT] = _u16(dport)
    if wait_s is not None:
        fields[_T_WAIT] = _u8(_whole_seconds(wait_s))
    if result.src is not None:
        fields[_T_SRC] = table.encode(result.src)
    fields[_T_DST] = table.encode(result.dst)
    head = _params(fields)
    hops = [
        _params(_hop_fields(hop, attempt, version, result, table))
        for ttl in sorted(by_ttl)
        for attempt, hop in enumerate(by_ttl[ttl])
        if hop.addr is not None
    ]
    if len(hops) > 0xFFFF:
        raise WartsError("more than 65535 answered probes for one warts trace")
    return _object(OBJ_TRACE, head + _u16(len(hops)) + b"".join(hops) + _u16(0))


# ping fields and reply fields this module writes
_P_LIST, _P_CYCLE, _P_START, _P_STOP_R, _P_STOP_D = 1, 2, 5, 6, 7
_P_COUNT, _P_SIZE, _P_WAIT, _P_TTL, _P_SENT, _P_SRC, _P_DST, _P_TIMEOUT, _P_WAIT_US = (
    10,
    11,
    12,
    13,
    15,
    20,
    21,
    27,
    28,
)
_R_FLAGS, _R_TTL, _R_SIZE, _R_ICMP_TC, _R_RTT, _R_PROBE_ID, _R_ADDR, _R_TX = (
    2,
    3,
    4,
    5,
    6,
    7,
    12,
    16,
)
PING_STOP_COMPLETED, PING_STOP_HALTED = 0x01, 0x03
PING_REPLY_FLAG_REPLY_TTL = 0x01
# ping's flags8 (22): the IP option its requests carry (scamper -R, -T tsonly|tsandaddr)
_P_FLAGS8 = 22
PING_FLAGS8 = {"v4rr": 0x01, "tsonly": 0x08, "tsandaddr": 0x10}
_P_TSPS = 24  # ping -T tsprespec's addresses (scamper's probe_tsps; no flag)
_R_V4RR, _R_V4TS = 13, 14  # a reply's record route and timestamp options


_TS_OPTIONS = ("tsonly", "tsandaddr", "tsprespec")


def _v4rr(route: tuple[str, ...], table: _Addresses) -> bytes:
    """A reply's record route as scamper writes it: a count, the addresses."""
    return _u8(len(route)) + b"".join(table.encode(a) for a in route)


def _v4ts(entries: tuple[tuple[str | None, int | None], ...], table: _Addresses) -> bytes:
    """A reply's timestamp option as scamper writes it: the count of times, of addresses
    (0 with tsonly, else as many), the times, the addresses."""
    addrs = [a for a, _ in entries if a is not None]
    body = _u8(len(entries)) + _u8(len(entries) if addrs else 0)
    body += b"".join(_u32(t or 0) for _, t in entries)
    if addrs:
        body += b"".join(table.encode(a or "0.0.0.0") for a, _ in entries)
    return body


def _ping_reply(
    seq: int, addr: str, rtt_us: float | None, icmp: tuple[int, int], ttl: int | None,
    size: int | None, send_ns: int | None, table: _Addresses,
    route: tuple[str, ...] | None = None,
    stamps: tuple[tuple[str | None, int | None], ...] | None = None,
) -> dict[int, bytes]:  # fmt: skip
    fields: dict[int, bytes] = {_R_PROBE_ID: _u16(seq - 1), _R_ICMP_TC: bytes(icmp)}
    if ttl is not None:
        fields[_R_FLAGS] = _u8(PING_REPLY_FLAG_REPLY_TTL)
        fields[_R_TTL] = _u8(ttl)
    if size is not None:
        fields[_R_SIZE] = _u16(size)
    if rtt_us is not None:
        fields[_R_RTT] = _u32(max(0, round(rtt_us)))
    fields[_R_ADDR] = table.encode(addr)
    if route is not None:
        fields[_R_V4RR] = _v4rr(route, table)
    if stamps is not None:
        fields[_R_V4TS] = _v4ts(stamps, table)
    if send_ns:
        fields[_R_TX] = _timeval(send_ns)
    return fields


def ping_object(
    result: PingResult,
    *,
    list_id: int = 1,
    cycle_id: int = 1,
    count: int | None = None,
    size: int = 56,
    interval_s: float = 1.0,
    timeout_s: float | None = None,
    ttl: int | None = None,
    interrupted: bool = False,
    ip_option: str | None = None,
    options_len: int = 0,
    tsps: Sequence[str] = (),
) -> bytes:
    """The ping object of `result` (scamper's ``ping``, ICMP echo): its fields, then one
    reply record per reply (duplicates too) and per ICMP error, in request order;
    ``probe_id`` is ping's ``icmp_seq`` - 1 (scamper counts from 0). `size`: ping's -s
    (the ICMP data bytes); the records hold IP lengths, as scamper's. `ip_option`
    (``v4rr``, ``tsonly``, ``tsandaddr``: ping -R, -T) sets scamper's flag and writes
    each reply's option (``v4rr``, ``v4ts``); ``tsprespec`` with `tsps` (its hosts)
    writes scamper's ``probe_tsps`` and each reply's ``v4ts`` (no flag, as scamper's);
    `options_len`: the requests' IPv4 option bytes (in the probe size, as scamper's)."""
    version = ipaddress.ip_address(result.dst).version
    header = 8 + (20 if version == 4 else 40)
    table = _Addresses()
    start_ns = result.start_ns or min(
        (r.probe_send_ns for r in result.replies if r.probe_send_ns), default=0
    )
    wait_us = max(0, round(interval_s * 1_000_000))
    fields: dict[int, bytes] = {
        _P_LIST: _u32(list_id),
        _P_CYCLE: _u32(cycle_id),
        _P_START: _timeval(start_ns),
        _P_STOP_R: _u8(PING_STOP_HALTED if interrupted else PING_STOP_COMPLETED),
        _P_STOP_D: _u8(0),
        _P_COUNT: _u16(count if count is not None else result.sent),
        _P_SIZE: _u16(size + header + options_len),
        _P_WAIT: _u8(min(255, wait_us // 1_000_000)),
        _P_TTL: _u8(ttl if ttl is not None else 64),
        _P_SENT: _u16(result.sent),
    }
    if result.src is not None:
        fields[_P_SRC] = table.encode(result.src)
    fields[_P_DST] = table.encode(result.dst)
    if ip_option == "tsprespec" and tsps:
        fields[_P_TSPS] = _u8(len(tsps)) + b"".join(table.encode(a) for a in tsps)
    if ip_option in PING_FLAGS8:
        fields[_P_FLAGS8] = _u8(PING_FLAGS8[ip_option])
    if timeout_s is not None:
        fields[_P_TIMEOUT] = _u8(_whole_seconds(timeout_s))
    fields[_P_WAIT_US] = _u32(wait_us)
    echo = (0, 0) if version == 4 else (129, 0)
    # The records in file order first, then their fields: the address table numbers
    # addresses as they are written (a router's error before a reply would otherwise
    # name an address by an index the file defines only later).
    records: list[tuple[int, int, Callable[[], dict[int, bytes]]]] = []
    for r in result.replies:
        if r.addr is None or not 1 <= r.seq <= result.sent:
            continue
        ip_size = None if r.size is None else r.size + header - 8
        echoed = r.route is not None or r.ip_timestamps is not None or r.source_route is not None
        if ip_size is not None and echoed:  # (the reply's options, as the request's)
            ip_size += options_len
        route = r.route if ip_option == "v4rr" else None
        ts = r.ip_timestamps
        stamps = ts.entries if ts is not None and ip_option in _TS_OPTIONS else None
        got = functools.partial(
            _ping_reply, r.seq, r.addr, r.rtt_us, echo, r.ttl, ip_size, r.probe_send_ns, table,
            route, stamps,
        )  # fmt: skip
        records.append((r.seq, r.reply_recv_ns or 0, got))
    for e in result.errors:
        if not 1 <= e.seq <= result.sent or e.reply_type == "local-error":
            continue  # (a request ping's kernel refused, -M do: no reply to record)
        rtt = None
        if e.probe_send_ns is not None and e.reply_recv_ns is not None:
            rtt = (e.reply_recv_ns - e.probe_send_ns) / 1000
        icmp = (e.icmp_type, e.code)
        err = functools.partial(
            _ping_reply, e.seq, e.addr, rtt, icmp, None, None, e.probe_send_ns, table
        )
        records.append((e.seq, e.reply_recv_ns or 0, err))
    records.sort(key=lambda rec: (rec[0], rec[1]))
    body = b"".join(_params(rec[2]()) for rec in records)
    if len(records) > 0xFFFF:
        raise WartsError("more than 65535 replies for one warts ping")
    return _object(OBJ_PING, _params(fields) + _u16(len(records)) + body)


def ping_warts(
    result: PingResult, *, stop_s: int | None = None, hostname: str = "", **ping: Any
) -> bytes:
    """A whole warts file for one ping: list, cycle start, ping, cycle stop; `ping`:
    `ping_object`'s keywords (count, size, interval_s, timeout_s, ttl, interrupted)."""
    start_s = (result.start_ns or 0) // 1_000_000_000
    if stop_s is None:
        times = [r.reply_recv_ns or 0 for r in result.replies] + [start_s * 1_000_000_000]
        stop_s = max(times) // 1_000_000_000
    return (
        list_object()
        + cycle_start_object(start_s, hostname=hostname)
        + ping_object(result, **ping)
        + cycle_stop_object(stop_s)
    )


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


# dealias (radargun): the record's fields, the radargun's, a probe definition's, a probe's,
# a reply's (flag ids)
DEALIAS_RADARGUN = 3
PROBEDEF_METHODS = {"icmp-echo": 1, "tcp-ack": 2, "udp": 3, "indirect": 1}  # (echo, TTL)
PROBEDEF_TCP_SYN_SPORT = 6  # scamper's tcp-syn-sport (an MDA tcp flow's SYN, with a TTL)
TCP_SYN = 0x02
_D_LIST, _D_CYCLE, _D_START, _D_METHOD, _D_PROBEC = 1, 2, 3, 4, 6
_RG_DEFC, _RG_ROUNDS, _RG_WAIT_PROBE, _RG_WAIT_ROUND, _RG_WAIT_TIMEOUT = 1, 2, 3, 4, 5
_PD_ID, _PD_METHOD, _PD_TTL, _PD_PORTS, _PD_TCP_FLAGS, _PD_ICMP_ID, _PD_DST, _PD_SRC = (
    3, 4, 5, 7, 8, 9, 10, 11,
)  # fmt: skip
_PD_ICMP_CSUM = 14
_DP_DEF, _DP_TX, _DP_REPLYC, _DP_IPID, _DP_SEQ = 1, 2, 3, 4, 5
_DR_RX, _DR_IPID, _DR_TTL, _DR_ICMP_TC, _DR_Q_TTL, _DR_PROTO, _DR_TCP_FLAGS, _DR_SRC = (
    2, 3, 4, 5, 6, 8, 9, 10,
)  # fmt: skip
TCP_ACK, TCP_RST = 0x10, 0x04
_DEALIAS_SIZES: dict[int, int | str] = {1: 4, 2: 4, 3: 8, 4: 1, 5: 1, 6: 4, 7: 4}
_RADARGUN_SIZES: dict[int, int | str] = {1: 4, 2: 2, 3: 2, 4: 4, 5: 1, 6: 1}
_PROBEDEF_SIZES: dict[int, int | str] = {
    1: 4, 2: 4, 3: 4, 4: 1, 5: 1, 6: 1, 7: 4, 8: 1, 9: 2, 10: "addr", 11: "addr", 12: 2,
    13: 2, 14: 2,
}  # fmt: skip
_DPROBE_SIZES: dict[int, int | str] = {1: 4, 2: 8, 3: 2, 4: 2, 5: 4}
_DREPLY_SIZES: dict[int, int | str] = {
    1: 4, 2: 8, 3: 2, 4: 1, 5: 2, 6: 1, 7: "ext", 8: 1, 9: 1, 10: "addr", 11: 4, 12: 1, 13: 2,
}  # fmt: skip


def _flow_definition(p: Any) -> tuple[int, dict[int, bytes]]:
    """The method and fields of an indirect probe that is a Paris probe of a trace's flow
    (`--multilevel`'s): as its packet is, scamper's ``-P udp -F SPORT -d DPORT -t TTL``,
    ``-P tcp-syn-sport``, or ``-P icmp-echo -c CSUM`` (the flow in the ICMP checksum)."""
    packet = p.probe.packet
    proto, at = packet[9], (packet[0] & 0x0F) * 4
    key = p.probe.key
    if proto == 17:
        return PROBEDEF_METHODS["udp"], {_PD_PORTS: _u16(key.sport) + _u16(key.dport)}
    if proto == 6:
        return PROBEDEF_TCP_SYN_SPORT, {
            _PD_PORTS: _u16(key.sport) + _u16(key.dport), _PD_TCP_FLAGS: _u8(TCP_SYN),
        }  # fmt: skip
    return PROBEDEF_METHODS["icmp-echo"], {
        _PD_ICMP_ID: _u16(key.sport), _PD_ICMP_CSUM: packet[at + 2 : at + 4],
    }  # fmt: skip


def dealias_object(
    run: ProbeRun,
    *,
    list_id: int = 1,
    cycle_id: int = 1,
    start_ns: int | None = None,
    flows: bool = False,
) -> bytes:
    """scamper's dealias record (method radargun) of one probing run: the run's fields,
    one probe definition per (endpoint's source, target, method) in order of first use,
    then every probe sent, in send order, each with the reply that answered it (the
    reply's IP-ID, TTL, ICMP type and code or TCP flags). ``seq`` is the round; a UDP
    definition's source port is its first probe's (ours change per probe, as the key
    that matches replies). An indirect probe's definition is scamper's for ``-P icmp-echo
    -i DST -t TTL``: method icmp-echo, the destination beyond the router and the TTL;
    its replies are the router's time exceeded messages; with `flows` (IPv4) each is a
    Paris probe of a trace's flow (`--multilevel`'s), defined as its packet is
    (`_flow_definition`)."""
    table = _Addresses()
    defs: dict[tuple[str, str, str], int] = {}
    first: list[Any] = []
    for p in run.probes:
        key = (p.src, p.addr, p.method)
        if key not in defs:
            if p.method not in PROBEDEF_METHODS:
                raise WartsError(f"no warts dealias probe method for {p.method!r}")
            defs[key] = len(defs)
            first.append(p)
    if not defs:
        raise WartsError("a dealias record needs at least one probe")
    sent = [p for p in run.probes if p.tx_ns is not None]
    if start_ns is None:
        start_ns = min((p.tx_ns for p in sent if p.tx_ns is not None), default=0)
    fields: dict[int, bytes] = {
        _D_LIST: _u32(list_id),
        _D_CYCLE: _u32(cycle_id),
        _D_START: _timeval(start_ns),
        _D_METHOD: _u8(DEALIAS_RADARGUN),
    }
    if sent:
        fields[_D_PROBEC] = _u32(len(sent))
    wait_probe = min(0xFFFF, max(1, round(run.spacing * 1000)))
    per_round = len(defs)
    rg = {
        _RG_DEFC: _u32(len(defs)),
        _RG_ROUNDS: _u16(min(0xFFFF, run.rounds)),
        _RG_WAIT_PROBE: _u16(wait_probe),
        _RG_WAIT_ROUND: _u32(wait_probe * per_round),
        _RG_WAIT_TIMEOUT: _u8(_whole_seconds(run.wait)),
    }
    out = [_params(fields), _params(rg)]
    for i, p in enumerate(first):
        pd: dict[int, bytes] = {
            _PD_METHOD: _u8(PROBEDEF_METHODS[p.method]),
            _PD_TTL: _u8(p.probe.ttl),
        }
        if i:
            pd[_PD_ID] = _u32(i)
        key = p.probe.key
        if flows and p.method == "indirect" and p.probe.packet[0] >> 4 == 4:
            method, more = _flow_definition(p)
            pd[_PD_METHOD] = _u8(method)
            pd.update(more)
        elif p.method in ("icmp-echo", "indirect"):
            pd[_PD_ICMP_ID] = _u16(key.sport)
        else:
            pd[_PD_PORTS] = _u16(key.sport) + _u16(key.dport)
        if p.method == "tcp-ack":
            pd[_PD_TCP_FLAGS] = _u8(TCP_ACK)
        pd[_PD_DST] = table.encode(str(p.probe.dst))  # (indirect: beyond p.addr)
        pd[_PD_SRC] = table.encode(p.src)
        out.append(_params(pd))
    for p in sent:
        assert p.tx_ns is not None
        which = defs[(p.src, p.addr, p.method)]
        pf: dict[int, bytes] = {_DP_TX: _timeval(p.tx_ns)}
        if which:
            pf[_DP_DEF] = _u32(which)
        if p.reply is not None:
            pf[_DP_REPLYC] = _u16(1)
        if ipaddress.ip_address(p.addr).version == 4:
            pf[_DP_IPID] = _u16(p.probe.ip_id or 0)
        if p.seq:
            pf[_DP_SEQ] = _u32(p.seq)
        out.append(_params(pf))
        if p.reply is not None:
            out.append(_params(_dealias_reply(p, table)))
    return _object(OBJ_DEALIAS, b"".join(out))


def _dealias_reply(p: Any, table: _Addresses) -> dict[int, bytes]:
    r = p.reply
    fields: dict[int, bytes] = {_DR_TTL: _u8(r.ttl)}
    if p.rx_ns is not None:
        fields[_DR_RX] = _timeval(p.rx_ns)
    if r.ip_id:  # scamper leaves an ID of 0 out
        fields[_DR_IPID] = _u16(r.ip_id)
    if r.icmp_type is not None:
        fields[_DR_ICMP_TC] = _u8(r.icmp_type) + _u8(r.icmp_code or 0)
        fields[_DR_Q_TTL] = _u8(r.quoted_ttl or 0)
    else:  # TCP: the RST to a bare ACK
        fields[_DR_PROTO] = _u8(6)
        fields[_DR_TCP_FLAGS] = _u8(TCP_RST if r.kind == ReplyKind.TCP_RST else 0x12)
    fields[_DR_SRC] = table.encode(str(r.src))
    return fields


def alias_warts(
    runs: Iterable[ProbeRun], *, start_s: int, stop_s: int, hostname: str = ""
) -> bytes:
    """A whole warts file for an alias run: list, cycle start, one dealias record per
    probing run (a MIDAR stage's, or each discovery window's), cycle stop."""
    body = b"".join(dealias_object(run) for run in runs if run.probes)
    return (
        list_object()
        + cycle_start_object(start_s, hostname=hostname)
        + body
        + cycle_stop_object(stop_s)
    )


# tracelb: its types by our MDA methods (scamper's udp-sport, icmp-echo, tcp-sport), the
# record's fields, a node's, a link's, a probe set's, a probe's, a reply's (flag ids)
TRACELB_TYPES = {"udp-paris": 0x03, "icmp-paris": 0x02, "tcp": 0x04}
_LB_LIST, _LB_CYCLE, _LB_START, _LB_SPORT, _LB_DPORT, _LB_SIZE, _LB_TYPE = 1, 2, 5, 6, 7, 8, 9
_LB_FIRSTHOP, _LB_WAIT_TIMEOUT, _LB_WAIT_PROBE, _LB_ATTEMPTS, _LB_CONFIDENCE = 10, 11, 12, 13, 14
_LB_TOS, _LB_NODEC, _LB_LINKC, _LB_PROBEC, _LB_PROBECMAX, _LB_GAPLIMIT = 15, 16, 17, 18, 19, 20
_LB_SRC, _LB_DST = 21, 22
_LN_FLAGS, _LN_LINKC, _LN_QTTL, _LN_ADDR = 2, 3, 4, 5
LB_NODE_FLAG_QTTL = 0x01
_LL_FROM, _LL_TO, _LL_HOPC = 1, 2, 3
_LP_TX, _LP_FLOWID, _LP_TTL, _LP_ATTEMPT, _LP_RXC = 1, 2, 3, 4, 5
_LR_RX, _LR_IPID, _LR_TTL, _LR_FLAGS, _LR_ICMP_TC, _LR_TCP_FLAGS, _LR_Q_TTL, _LR_Q_TOS = (
    1, 2, 3, 4, 5, 6, 8, 9,
)  # fmt: skip
_LR_FROM = 11
LB_REPLY_FLAG_REPLY_TTL, LB_REPLY_FLAG_TCP = 0x01, 0x02
_TRACELB_SIZES: dict[int, int | str] = {
    1: 4, 2: 4, 3: 4, 4: 4, 5: 8, 6: 2, 7: 2, 8: 2, 9: 1, 10: 1, 11: 1, 12: 1, 13: 1, 14: 1,
    15: 1, 16: 2, 17: 2, 18: 4, 19: 4, 20: 1, 21: "addr", 22: "addr", 23: 4, 24: 1,
}  # fmt: skip
_LB_NODE_SIZES: dict[int, int | str] = {1: 4, 2: 1, 3: 2, 4: 1, 5: "addr", 6: "str"}
_LB_LINK_SIZES: dict[int, int | str] = {1: 2, 2: 2, 3: 1}
_LB_SET_SIZES: dict[int, int | str] = {1: 2}
_LB_PROBE_SIZES: dict[int, int | str] = {1: 8, 2: 2, 3: 1, 4: 1, 5: 2}
_LB_REPLY_SIZES: dict[int, int | str] = {
    1: 8, 2: 2, 3: 1, 4: 1, 5: 2, 6: 1, 7: "ext", 8: 1, 9: 1, 10: 4, 11: "addr",
}  # fmt: skip


def _tracelb_reply(p: Any, table: _Addresses) -> dict[int, bytes]:
    r = p.reply
    flags = LB_REPLY_FLAG_REPLY_TTL
    fields: dict[int, bytes] = {_LR_IPID: _u16(r.ip_id or 0), _LR_TTL: _u8(r.ttl)}
    if p.rx_ns is not None:
        fields[_LR_RX] = _timeval(p.rx_ns)
    if r.icmp_type is None:  # a TCP reply: SYN-ACK or RST (to our SYNs: with ACK)
        flags |= LB_REPLY_FLAG_TCP
        fields[_LR_TCP_FLAGS] = _u8(0x14 if r.kind == ReplyKind.TCP_RST else 0x12)
    else:
        fields[_LR_ICMP_TC] = _u8(r.icmp_type) + _u8(r.icmp_code or 0)
        fields[_LR_Q_TTL] = _u8(r.quoted_ttl or 0)
        fields[_LR_Q_TOS] = _u8(0)
    fields[_LR_FLAGS] = _u8(flags)
    fields[_LR_FROM] = table.encode(str(r.src))
    return fields


def _tracelb_links(
    result: MdaResult,
) -> tuple[dict[tuple[str, str | None, int], list[list[Any]]], set[str]]:
    """(A, B, hopc) -> the probe sets of the link from A to B, as scamper's tracelb joins
    them (`_flow_links` per flow, then `_clumps`), and the interfaces inside clumps: no
    nodes (scamper's nodes are where the flows through the node before converge; the
    interfaces of a load-balanced stretch between two are only its probe sets' replies)."""
    flows = _flows(result)
    per_flow = _flow_links(flows)
    links = _clumps(flows, per_flow, _roots(result, per_flow))
    kept = {a for a, _, _ in links} | {b for _, b, _ in links if b is not None}
    inner = ({a for a, _, _ in per_flow} | {b for _, b, _ in per_flow}) - kept
    return links, inner


def _flows(result: MdaResult) -> dict[int, dict[int, Any]]:
    """flow -> TTL -> its probe (of a probe sent again, --attempts, the answered one)."""
    by_flow: dict[int, dict[int, Any]] = {}
    for p in result.probes:
        at = by_flow.setdefault(p.flow, {})
        if p.ttl not in at or at[p.ttl].reply is None:
            at[p.ttl] = p
    return by_flow


def _flow_links(
    by_flow: dict[int, dict[int, Any]],
) -> dict[tuple[str, str, int], list[list[Any]]]:
    """(A, B, hopc) -> probe sets: for each flow, a probe answered by B at TTL t whose flow
    last answered from A at t - hopc, every TTL between probed and silent; set j holds
    such flows' probes at t - hopc + 1 + j."""
    links: dict[tuple[str, str, int], list[list[Any]]] = {}
    for flow_probes in by_flow.values():
        last: tuple[str, int] | None = None
        for ttl in sorted(flow_probes):
            p = flow_probes[ttl]
            if p.reply is None:
                continue
            here = str(p.reply.src)
            if last is not None:
                a, before = last
                between = [flow_probes.get(t) for t in range(before + 1, ttl)]
                if all(q is not None and q.reply is None for q in between):
                    sets = links.setdefault(
                        (a, here, ttl - before), [[] for _ in range(ttl - before)]
                    )
                    for j, q in enumerate([*between, p]):
                        sets[j].append(q)
            last = (here, ttl)
    return links


def _roots(result: MdaResult, links: dict[tuple[str, str, int], list[list[Any]]]) -> list[str]:
    """The interfaces no link leads to (the first hop's), in TTL order."""
    ends = {b for _, b, _ in links}
    return [a for hop in result.hops for a in hop.addrs if a not in ends]


def _clumps(
    by_flow: dict[int, dict[int, Any]],
    links: dict[tuple[str, str, int], list[list[Any]]],
    roots: list[str],
) -> dict[tuple[str, str | None, int], list[list[Any]]]:
    """scamper's clumps: where a node's flows go on to more than one (next interface,
    hopc) (a load balancer, or some flows silent), scamper follows those flows TTL by TTL
    until all that answer at one TTL answer from one interface, and writes one link to
    it, of a probe set per TTL (sc_warts2text: ``r1 -> (ra, rb) -> r2``). A stretch that
    does not converge before the run ends, or halts (`_clump`), is one link from the node
    without a far end (B None), as scamper writes a clump it did not finish; nothing
    past it is followed."""
    out: dict[tuple[str, str | None, int], list[list[Any]]] = {}
    todo, seen = list(roots), set(roots)
    while todo:
        a = todo.pop(0)
        mine: dict[tuple[str, str | None, int], list[list[Any]]]
        mine = {k: v for k, v in links.items() if k[0] == a}
        joined = _clump(by_flow, a) if len(mine) > 1 else None
        if joined is not None:
            mine = {(a, joined[0], len(joined[1])): joined[1]}
        out.update(mine)
        for _, b, _ in mine:
            if b is not None and b not in seen:
                seen.add(b)
                todo.append(b)
    return out


def _clump(by_flow: dict[int, dict[int, Any]], a: str) -> tuple[str | None, list[list[Any]]] | None:
    """(B, probe sets) of the clump from `a`: its flows' probes at each TTL past their
    answer from `a`, up to the first TTL where every answer is B. B is None for a
    **half-converged** clump, as scamper leaves it: the flows' probes end first (the run
    ended: its probe budget, -Q, or the hop limit) or, before they converge, some answer
    otherwise than time exceeded (the destination, an unreachable: scamper halts the
    clump there, its sets up to that TTL). None: no probe past `a` at all."""
    starts = {}  # flow -> the TTL it answered from a at
    for flow, probes in by_flow.items():
        at = [t for t, p in probes.items() if p.reply is not None and str(p.reply.src) == a]
        if at:
            starts[flow] = min(at)
    sets: list[list[Any]] = []
    for j in range(1, 256):
        here = [p for f, t in starts.items() if (p := by_flow[f].get(t + j)) is not None]
        here.sort(key=lambda p: (p.tx_ns is None, p.tx_ns or 0))  # send order, as scamper
        if not here:
            return (None, sets) if sets else None
        sets.append(here)
        answered = {None if p.reply is None else str(p.reply.src) for p in here}
        if len(answered) == 1 and None not in answered:  # scamper: one node, none silent
            return str(answered.pop()), sets
        if any(p.reply is not None and p.reply.kind is not ReplyKind.TIME_EXCEEDED
               for p in here):  # fmt: skip
            return None, sets  # scamper halts there: a link without a far end
    return None, sets


def tracelb_object(
    result: MdaResult,
    *,
    list_id: int = 1,
    cycle_id: int = 1,
    first_ttl: int = 1,
    wait_s: float = 2.0,
    gaplimit: int | None = None,
    probec_max: int | None = None,
    tos: int = 0,
) -> bytes:
    """scamper's tracelb record of an MDA run: a node per interface (in TTL order, as the
    --json hops list them) but those inside a clump, a link per link of the --json hops
    (A at TTL t - 1, B at t: hopc 1) with the probes at t whose flow answered from A at
    t - 1 and from B at t (its probe set), every probe with its reply; a flow silent at
    TTLs between A and B gives a link of hopc > 1 (as scamper's), a probe set per TTL.
    Where A's flows go on to several interfaces (a load balancer), one link of hopc > 1
    to the interface they converge on, as scamper's clump (`_clumps`). The probes before
    a flow's first answer are in no link. A probe sent again (--attempts) is in its set
    with its earlier tries, as scamper's (each with its `attempt`). `gaplimit` and
    `probec_max` default to the run's (`result.gaplimit`, `result.max_probes`)."""
    if result.method not in TRACELB_TYPES:
        raise WartsError(f"no warts tracelb type for method {result.method!r}")
    table = _Addresses()
    links, inner = _tracelb_links(result)
    nodes: list[str] = []
    for hop in result.hops:
        nodes += [a for a in hop.addrs if a not in nodes and a not in inner]
    index = {a: i for i, a in enumerate(nodes)}
    # (a half-converged link, without a far end, after the node's others)
    order = sorted(links, key=lambda k: (index[k[0]], index.get(k[1] or "", len(nodes)), k[2]))
    if len(nodes) > 0xFFFF or len(order) > 0xFFFF:
        raise WartsError("more than 65535 nodes or links for one warts tracelb")
    linkc = {a: 0 for a in nodes}
    for a, _, _ in order:
        linkc[a] += 1
    start_ns = result.start_ns or min((p.tx_ns for p in result.probes if p.tx_ns), default=0)
    fields: dict[int, bytes] = {
        _LB_LIST: _u32(list_id),
        _LB_CYCLE: _u32(cycle_id),
        _LB_START: _timeval(start_ns),
        _LB_SPORT: _u16(result.sport or 0),
        _LB_DPORT: _u16(result.dport or 0),
        _LB_SIZE: _u16(result.probe_size or 0),
        _LB_TYPE: _u8(TRACELB_TYPES[result.method]),
        _LB_FIRSTHOP: _u8(first_ttl),
        _LB_WAIT_TIMEOUT: _u8(_whole_seconds(wait_s)),
        _LB_WAIT_PROBE: _u8(result.wait_probe_cs),  # (0: ours go a round at once)
        _LB_ATTEMPTS: _u8(result.attempts),
        _LB_CONFIDENCE: _u8(round(result.confidence * 100)),
        _LB_TOS: _u8(tos),
        _LB_NODEC: _u16(len(nodes)),
        _LB_LINKC: _u16(len(order)),
        _LB_PROBEC: _u32(len(result.probes)),
        _LB_PROBECMAX: _u32(result.max_probes if probec_max is None else probec_max),
        _LB_GAPLIMIT: _u8(result.gaplimit if gaplimit is None else gaplimit),
    }
    if result.src is not None:
        fields[_LB_SRC] = table.encode(result.src)
    fields[_LB_DST] = table.encode(result.dst)
    out = [_params(fields)]
    q_ttl: dict[str, int] = {}  # the quoted TTL of the first reply from each (scamper's)
    for p in result.probes:
        if p.reply is not None and p.reply.quoted_ttl is not None:
            q_ttl.setdefault(str(p.reply.src), p.reply.quoted_ttl)
    tries: dict[tuple[int, int], list[Any]] = {}  # (flow, ttl) -> its probes, in order
    for p in result.probes:
        tries.setdefault((p.flow, p.ttl), []).append(p)
    for a in nodes:
        node = {_LN_FLAGS: _u8(0), _LN_LINKC: _u16(linkc[a]), _LN_ADDR: table.encode(a)}
        if a in q_ttl:
            node[_LN_FLAGS] = _u8(LB_NODE_FLAG_QTTL)
            node[_LN_QTTL] = _u8(q_ttl[a])
        out.append(_params(node))
    for a, b, hopc in order:
        link = {_LL_FROM: _u16(index[a]), _LL_HOPC: _u8(hopc)}
        if b is not None:  # (scamper's half-converged clump: no far end, no field)
            link[_LL_TO] = _u16(index[b])
        out.append(_params(link))
        for hop_set in links[(a, b, hopc)]:
            probes = [q for p in hop_set for q in tries.get((p.flow, p.ttl), [p])]
            probes = [p for p in probes if p.tx_ns is not None]
            out.append(_params({1: _u16(len(probes))}))
            for p in probes:
                assert p.tx_ns is not None
                probe = {
                    _LP_TX: _timeval(p.tx_ns),
                    _LP_FLOWID: _u16(p.flowid),
                    _LP_TTL: _u8(p.ttl),
                    _LP_ATTEMPT: _u8(p.attempt),
                    _LP_RXC: _u16(0 if p.reply is None else 1),
                }
                out.append(_params(probe))
                if p.reply is not None:
                    out.append(_params(_tracelb_reply(p, table)))
    return _object(OBJ_TRACELB, b"".join(out))


def tracelb_warts(
    result: MdaResult,
    *,
    stop_s: int | None = None,
    hostname: str = "",
    alias_runs: Iterable[ProbeRun] = (),
    **lb: Any,
) -> bytes:
    """A whole warts file for one MDA run: list, cycle start, tracelb, a dealias record
    (radargun) per probing run of `alias_runs` (`--multilevel`'s rounds: their indirect
    probes defined as the trace's flows they went by), cycle stop; `lb`:
    `tracelb_object`'s keywords (first_ttl, wait_s, gaplimit...)."""
    start_s = (result.start_ns or 0) // 1_000_000_000
    if stop_s is None:
        stop_s = max([start_s * 10**9] + [p.rx_ns or 0 for p in result.probes]) // 10**9
    return (
        list_object()
        + cycle_start_object(start_s, hostname=hostname)
        + tracelb_object(result, **lb)
        + b"".join(dealias_object(run, flows=True) for run in alias_runs if run.probes)
        + cycle_stop_object(stop_s)
    )


# -- reading ------------------------------------------------------------------------------------


@dataclass
class WartsObject:
    """One object read back: its type, fixed part and optional fields (by flag id; addresses
    as strings), and for a trace its hops' fields."""

    kind: int
    fixed: dict[str, Any] = field(default_factory=dict)
    fields: dict[int, Any] = field(default_factory=dict)
    hops: list[dict[int, Any]] = field(default_factory=list)
    # a dealias record: its method's fields, probe definitions, probes (each with its
    # replies' fields under key "replies"); a tracelb: its nodes (in `probedefs`) and
    # links (in `probes`: each link's probe sets under "sets", their probes under "probes")
    method: dict[int, Any] = field(default_factory=dict)
    probedefs: list[dict[int, Any]] = field(default_factory=list)
    probes: list[dict[Any, Any]] = field(default_factory=list)


class _Reader:
    def __init__(self, data: bytes, end: int, off: int) -> None:
        self.data, self.end, self.off = data, end, off
        self.addrs: list[str] = []

    def take(self, n: int) -> bytes:
        if self.off + n > self.end:
            raise WartsError(f"warts object truncated at byte {self.off}")
        out = self.data[self.off : self.off + n]
        self.off += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def string(self) -> str:
        nul = self.data.find(b"\x00", self.off, self.end)
        if nul < 0:
            raise WartsError("unterminated warts string")
        text = self.data[self.off : nul].decode(errors="replace")
        self.off = nul + 1
        return text

    def addr(self) -> str:
        size = self.uint(1)
        if size == 0:
            index = self.uint(4)
            if index >= len(self.addrs):
                raise WartsError(f"warts address index {index} before its address")
            return self.addrs[index]
        kind = self.uint(1)
        raw = self.take(size)
        if (kind, size) not in ((1, 4), (2, 16)):
            raise WartsError(f"warts address type {kind} of {size} bytes")
        text = str(ipaddress.ip_address(raw))
        self.addrs.append(text)
        return text

    def params(self, sizes: dict[int, int | str]) -> dict[int, Any]:
        flags = []
        while True:
            b = self.uint(1)
            flags.append(b & 0x7F)
            if not b & 0x80:
                break
        ids = [k * 7 + j + 1 for k, b in enumerate(flags) for j in range(7) if b >> j & 1]
        if not ids:
            return {}
        length = self.uint(2)
        stop = self.off + length
        out: dict[int, Any] = {}
        for i in ids:
            size = sizes.get(i)
            if size is None:  # a field this reader does not know: skip the rest
                break
            if size == "addr":
                out[i] = self.addr()
            elif size == "str":
                out[i] = self.string()
            elif size == "data":  # probe data: its length is field 8's
                out[i] = self.take(out.get(8, 0))
            elif size == "ext":
                out[i] = self.take(self.uint(2))
            elif size == "v4rr":  # a count, the addresses
                out[i] = [self.addr() for _ in range(self.uint(1))]
            elif size == "v4ts":  # counts of times and addresses, the times, the addresses
                tsc, ipc = self.uint(1), self.uint(1)
                times = [self.uint(4) for _ in range(tsc)]
                out[i] = (times, [self.addr() for _ in range(ipc)])
            else:
                assert isinstance(size, int)
                out[i] = self.uint(size) if size <= 4 else self.take(size)
        if self.off > stop:
            raise WartsError("warts fields longer than their length")
        self.off = stop
        return out


def read_warts(data: bytes) -> list[WartsObject]:
    """The objects of a warts file (list, cycle start/stop, trace, ping: a ping's reply
    records in `WartsObject.hops`; a radargun dealias; others' bodies skipped)."""
    out = []
    off = 0
    while off < len(data):
        if len(data) - off < 8:
            raise WartsError(f"{len(data) - off} stray bytes at the end")
        magic, kind, length = struct.unpack_from("!HHI", data, off)
        if magic != WARTS_MAGIC:
            raise WartsError(f"bad warts magic {magic:#06x} at byte {off}")
        end = off + 8 + length
        if end > len(data):
            raise WartsError(f"warts object at byte {off} runs past the end")
        r = _Reader(data, end, off + 8)
        obj = WartsObject(kind)
        if kind == OBJ_LIST:
            obj.fixed = {"id": r.uint(4), "human_id": r.uint(4), "name": r.string()}
            obj.fields = r.params(_LIST_SIZES)
        elif kind == OBJ_CYCLE_START:
            obj.fixed = {"id": r.uint(4), "list_id": r.uint(4), "human_id": r.uint(4)}
            obj.fixed["start"] = r.uint(4)
            obj.fields = r.params(_CYCLE_SIZES)
        elif kind == OBJ_CYCLE_STOP:
            obj.fixed = {"id": r.uint(4), "stop": r.uint(4)}
            obj.fields = r.params({})
        elif kind == OBJ_TRACE:
            obj.fields = r.params(_TRACE_SIZES)
            obj.hops = [r.params(_HOP_SIZES) for _ in range(r.uint(2))]
            obj.fixed = {"end": r.uint(2)}
        elif kind == OBJ_PING:
            obj.fields = r.params(_PING_SIZES)
            obj.hops = [r.params(_PING_REPLY_SIZES) for _ in range(r.uint(2))]
        elif kind == OBJ_TRACELB:
            obj.fields = r.params(_TRACELB_SIZES)
            obj.probedefs = [r.params(_LB_NODE_SIZES) for _ in range(obj.fields.get(16, 0))]
            for _ in range(obj.fields.get(17, 0)):
                link: dict[Any, Any] = r.params(_LB_LINK_SIZES)
                link["sets"] = []
                for _ in range(link.get(3, 0)):
                    ps: dict[Any, Any] = r.params(_LB_SET_SIZES)
                    ps["probes"] = []
                    for _ in range(ps.get(1, 0)):
                        lbp: dict[Any, Any] = r.params(_LB_PROBE_SIZES)
                        lbp["replies"] = [r.params(_LB_REPLY_SIZES) for _ in range(lbp.get(5, 0))]
                        ps["probes"].append(lbp)
                    link["sets"].append(ps)
                obj.probes.append(link)
        elif kind == OBJ_DEALIAS:
            obj.fields = r.params(_DEALIAS_SIZES)
            if obj.fields.get(4) == DEALIAS_RADARGUN:
                obj.method = r.params(_RADARGUN_SIZES)
                obj.probedefs = [r.params(_PROBEDEF_SIZES) for _ in range(obj.method.get(1, 0))]
                for _ in range(obj.fields.get(6, 0)):
                    probe: dict[Any, Any] = r.params(_DPROBE_SIZES)
                    probe["replies"] = [r.params(_DREPLY_SIZES) for _ in range(probe.get(3, 0))]
                    obj.probes.append(probe)
        out.append(obj)
        off = end
    return out
