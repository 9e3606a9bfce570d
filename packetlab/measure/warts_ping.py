"""scamper's warts ping record, for `pktlab run ping --warts` (`ping_warts`: a whole file,
list, cycle start, ping, cycle stop): the requests, each reply (its record route or
timestamp option with -R / -T) and ICMP error."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

from packetlab.measure.records_ping import PingResult
from packetlab.measure.warts_format import (
    OBJ_PING,
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


def _v4rr(route: tuple[str, ...], table: AddressTable) -> bytes:
    """A reply's record route as scamper writes it: a count, the addresses."""
    return u8(len(route)) + b"".join(table.encode(a) for a in route)


def _v4ts(entries: tuple[tuple[str | None, int | None], ...], table: AddressTable) -> bytes:
    """A reply's timestamp option as scamper writes it: the count of times, of addresses
    (0 with tsonly, else as many), the times, the addresses."""
    addrs = [a for a, _ in entries if a is not None]
    body = u8(len(entries)) + u8(len(entries) if addrs else 0)
    body += b"".join(u32(t or 0) for _, t in entries)
    if addrs:
        body += b"".join(table.encode(a or "0.0.0.0") for a, _ in entries)
    return body


def _ping_reply(
    seq: int, addr: str, rtt_us: float | None, icmp: tuple[int, int], ttl: int | None,
    size: int | None, send_ns: int | None, table: AddressTable,
    route: tuple[str, ...] | None = None,
    stamps: tuple[tuple[str | None, int | None], ...] | None = None,
) -> dict[int, bytes]:  # fmt: skip
    fields: dict[int, bytes] = {_R_PROBE_ID: u16(seq - 1), _R_ICMP_TC: bytes(icmp)}
    if ttl is not None:
        fields[_R_FLAGS] = u8(PING_REPLY_FLAG_REPLY_TTL)
        fields[_R_TTL] = u8(ttl)
    if size is not None:
        fields[_R_SIZE] = u16(size)
    if rtt_us is not None:
        fields[_R_RTT] = u32(max(0, round(rtt_us)))
    fields[_R_ADDR] = table.encode(addr)
    if route is not None:
        fields[_R_V4RR] = _v4rr(route, table)
    if stamps is not None:
        fields[_R_V4TS] = _v4ts(stamps, table)
    if send_ns:
        fields[_R_TX] = timeval(send_ns)
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
    table = AddressTable()
    start_ns = result.start_ns or min(
        (r.probe_send_ns for r in result.replies if r.probe_send_ns), default=0
    )
    wait_us = max(0, round(interval_s * 1_000_000))
    fields: dict[int, bytes] = {
        _P_LIST: u32(list_id),
        _P_CYCLE: u32(cycle_id),
        _P_START: timeval(start_ns),
        _P_STOP_R: u8(PING_STOP_HALTED if interrupted else PING_STOP_COMPLETED),
        _P_STOP_D: u8(0),
        _P_COUNT: u16(count if count is not None else result.sent),
        _P_SIZE: u16(size + header + options_len),
        _P_WAIT: u8(min(255, wait_us // 1_000_000)),
        _P_TTL: u8(ttl if ttl is not None else 64),
        _P_SENT: u16(result.sent),
    }
    if result.src is not None:
        fields[_P_SRC] = table.encode(result.src)
    fields[_P_DST] = table.encode(result.dst)
    if ip_option == "tsprespec" and tsps:
        fields[_P_TSPS] = u8(len(tsps)) + b"".join(table.encode(a) for a in tsps)
    if ip_option in PING_FLAGS8:
        fields[_P_FLAGS8] = u8(PING_FLAGS8[ip_option])
    if timeout_s is not None:
        fields[_P_TIMEOUT] = u8(whole_seconds(timeout_s))
    fields[_P_WAIT_US] = u32(wait_us)
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
    body = b"".join(params(rec[2]()) for rec in records)
    if len(records) > 0xFFFF:
        raise WartsError("more than 65535 replies for one warts ping")
    return record(OBJ_PING, params(fields) + u16(len(records)) + body)


def ping_warts(
    result: PingResult, *, stop_s: int | None = None, hostname: str = "", **ping: Any
) -> bytes:
    """A whole warts file for one ping: list, cycle start, ping, cycle stop; `ping`:
    `ping_object`'s keywords (count, size, interval_s, timeout_s, ttl, interrupted).
    `stop_s` (Unix seconds): default the last reply or request, on the endpoint's clock."""
    start_s = (result.start_ns or 0) // 1_000_000_000
    if stop_s is None:
        times = [start_s * 1_000_000_000]
        times += [r.reply_recv_ns or r.probe_send_ns or 0 for r in result.replies]
        stop_s = max(times) // 1_000_000_000
    return (
        list_object()
        + cycle_start_object(start_s, hostname=hostname)
        + ping_object(result, **ping)
        + cycle_stop_object(stop_s)
    )
